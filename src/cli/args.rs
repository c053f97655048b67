//! Command-line compatibility with the Go adapter's pflag/klog conventions.
//!
//! Existing Deployments pass flags we do not act on yet (or never will: audit webhooks, profiling), and
//! sometimes klog flags that upstream itself has since dropped. Refusing them would make the
//! binary not drop-in, so [`normalize`] removes them before clap sees the arguments and returns a
//! warning for each.

/// Flags of prometheus-adapter (or its apiserver and klog libraries) that are accepted and
/// ignored, with whether they take a value.
const IGNORED_FLAGS: &[(&str, bool)] = &[
    ("vmodule", true),
    ("log-flush-frequency", true),
    ("logtostderr", false),
    ("alsologtostderr", false),
    ("log-dir", true),
    ("log_dir", true),
    ("log_file", true),
    ("log_file_max_size", true),
    ("log_backtrace_at", true),
    ("log-backtrace-at", true),
    ("log-file", true),
    ("log-file-max-size", true),
    ("stderrthreshold", true),
    ("skip-headers", false),
    ("one-output", false),
    ("add-dir-header", false),
    ("skip-log-headers", false),
    ("tls-sni-cert-key", true),
    ("http2-max-streams-per-connection", true),
    ("permit-port-sharing", false),
    ("permit-address-sharing", false),
    ("contention-profiling", false),
    ("debug-socket-path", true),
    ("enable-priority-and-fairness", false),
    ("kubeconfig", true),
];

/// Audit flags acted on, so not dropped.
const AUDIT_FLAGS: &[&str] = &[
    "audit-log-path",
    "audit-policy-file",
    "audit-log-maxage",
    "audit-log-maxbackup",
    "audit-log-maxsize",
    "audit-log-format",
];

/// Audit flags are many; all but these booleans take a value.
const AUDIT_BOOLEANS: &[&str] = &[
    "audit-log-compress",
    "audit-log-batch-throttle-enable",
    "audit-webhook-batch-throttle-enable",
    "audit-log-truncate-enabled",
    "audit-webhook-truncate-enabled",
];

fn ignored(name: &str) -> Option<bool> {
    if let Some((_, takes)) = IGNORED_FLAGS.iter().find(|(n, _)| *n == name) {
        return Some(*takes);
    }
    if name.starts_with("audit-") && !AUDIT_FLAGS.contains(&name) {
        return Some(!AUDIT_BOOLEANS.contains(&name));
    }
    None
}

/// Rewrites Go-style arguments for clap and drops the ignored flags.
///
/// - `-flag=value` and `-flag` (single dash, long name) become `--flag…`, as Go's `flag`
///   package allows; `-v=4` and `-v 4` keep working as the short `v`.
/// - Ignored flags are removed with their values; the returned warnings name each one.
/// - Everything after a bare `--` is left alone.
pub fn normalize(args: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut iter = args.into_iter().peekable();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        let arg = if arg.starts_with('-')
            && !arg.starts_with("--")
            && arg.len() > 2
            && !arg.as_bytes()[1].is_ascii_digit()
            && arg.as_bytes()[2] != b'='
            && !(arg.as_bytes()[1] == b'v' && arg[2..].bytes().all(|b| b.is_ascii_digit()))
        {
            format!("-{arg}")
        } else {
            arg
        };
        let Some(body) = arg.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, has_inline_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        match ignored(name) {
            Some(takes_value) => {
                if takes_value
                    && !has_inline_value
                    && iter.peek().is_some_and(|next| !next.starts_with("--"))
                {
                    iter.next();
                }
                warnings.push(format!(
                    "flag --{name} is accepted for compatibility with prometheus-adapter and has no effect here"
                ));
            }
            None => out.push(arg),
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (Vec<String>, Vec<String>) {
        normalize(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn ignored_flags_are_dropped_with_their_values() {
        let (args, warnings) = run(&[
            "adapter",
            "--tls-sni-cert-key=x",
            "--profiling",
            "--permit-port-sharing",
            "--logtostderr",
            "--config=/etc/adapter/config.yaml",
            "--audit-webhook-config-file",
            "/etc/webhook.yaml",
            "--audit-log-compress",
            "--audit-log-path",
            "-",
            "/adapter",
        ]);
        // The audit log flags and --profiling are acted on; webhook and compression ones are not.
        assert_eq!(
            args,
            [
                "adapter",
                "--profiling",
                "--config=/etc/adapter/config.yaml",
                "--audit-log-path",
                "-",
                "/adapter"
            ]
        );
        assert_eq!(warnings.len(), 5);
        assert!(warnings[0].contains("--tls-sni-cert-key"));
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        let (args, _) = run(&[
            "a",
            "-config=x.yaml",
            "-v=4",
            "-v4",
            "-v",
            "2",
            "-prometheus-url",
            "http://p",
            "--log_dir=/tmp",
        ]);
        assert_eq!(
            args,
            [
                "a",
                "--config=x.yaml",
                "-v=4",
                "-v4",
                "-v",
                "2",
                "--prometheus-url",
                "http://p"
            ]
        );
    }

    #[test]
    fn a_value_that_looks_like_a_flag_is_not_swallowed() {
        let (args, _) = run(&["a", "--log-dir", "--config=c"]);
        assert_eq!(args, ["a", "--config=c"]);
    }
}
