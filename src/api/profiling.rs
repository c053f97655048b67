//! `/debug/pprof/profile`: a CPU profile of the running adapter, as k8s.io/apiserver serves
//! with `--profiling` (on by default there and here).
//!
//! The answer is a pprof protobuf (`go tool pprof` and other pprof viewers read it), or with
//! `?format=svg` a flame graph. It is a non-resource path, so the server authorizes it like
//! `/metrics`: RBAC needs `get` on the non-resource URL `/debug/pprof/profile`.
//!
//! The sampling itself is the `pprof` crate's (SIGPROF, 100 Hz like Go's default); this module
//! only validates the request, keeps one profile at a time, and encodes the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Go's default profile length.
const DEFAULT_SECONDS: u64 = 30;
/// Go's (and the kernel's usual) sampling rate.
const FREQUENCY_HZ: i32 = 100;
/// Time left after the sampling, within the request timeout, to symbolize and send.
const MARGIN: Duration = Duration::from_secs(5);

/// Set while a profile is taken: the process has one SIGPROF timer, so a second profile would
/// disturb the first.
static BUSY: AtomicBool = AtomicBool::new(false);

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProfileRequest {
    seconds: u64,
    svg: bool,
}

fn parse(query: Option<&str>, longest: Duration) -> Result<ProfileRequest, ApiError> {
    let mut req = ProfileRequest {
        seconds: DEFAULT_SECONDS,
        svg: false,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "seconds" => {
                req.seconds = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "seconds={value:?}: expected a whole number of seconds above 0"
                    ))
                })?
            }
            "format" => {
                req.svg = match value.as_ref() {
                    "svg" => true,
                    "proto" | "pprof" | "" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "format={other:?}: expected svg or proto"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    if Duration::from_secs(req.seconds) > longest {
        return Err(ApiError::BadRequest(format!(
            "a {}s profile would outlast the request timeout; at most {}s (raise --request-timeout for longer ones)",
            req.seconds,
            longest.as_secs()
        )));
    }
    Ok(req)
}

/// The longest profile a server with `request_timeout` can send, or `None` when the timeout is
/// too short for any.
pub fn longest_profile(request_timeout: Duration) -> Option<Duration> {
    request_timeout
        .checked_sub(MARGIN)
        .filter(|d| d.as_secs() >= 1)
}

/// Releases [`BUSY`] however the profile ends.
struct Busy;

impl Busy {
    fn take() -> Option<Busy> {
        (!BUSY.swap(true, Ordering::AcqRel)).then_some(Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

fn take_profile(req: ProfileRequest) -> Result<(Vec<u8>, &'static str), String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        // Unwinding through these from a signal handler can deadlock or crash.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("unable to start the CPU profiler: {e}"))?;
    std::thread::sleep(Duration::from_secs(req.seconds));
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("unable to build the CPU profile: {e}"))?;
    drop(guard);
    let mut body = Vec::new();
    if req.svg && report.data.is_empty() {
        // inferno draws nothing at all for no stacks; say so instead of an empty image.
        let idle = format!(
            "no CPU samples in {}s: the adapter was idle; take the profile under load\n",
            req.seconds
        );
        return Ok((idle.into_bytes(), "text/plain; charset=utf-8"));
    }
    if req.svg {
        report
            .flamegraph(&mut body)
            .map_err(|e| format!("unable to draw the flame graph: {e}"))?;
        Ok((body, "image/svg+xml"))
    } else {
        use pprof::protos::Message as _;
        let profile = report
            .pprof()
            .map_err(|e| format!("unable to encode the CPU profile: {e}"))?;
        profile
            .encode(&mut body)
            .map_err(|e| format!("unable to encode the CPU profile: {e}"))?;
        Ok((body, "application/octet-stream"))
    }
}

/// `GET /debug/pprof/profile?seconds=N[&format=svg]`.
pub async fn profile(State(app): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let Some(longest) = app.profiling else {
        return Err(ApiError::NotFound(
            "profiling is off (--profiling=false)".into(),
        ));
    };
    let req = parse(uri.query(), longest)?;
    let busy = Busy::take().ok_or_else(|| {
        ApiError::Unavailable("a CPU profile is already being taken; try again when it ends".into())
    })?;
    tracing::info!(seconds = req.seconds, svg = req.svg, "taking a CPU profile");
    // The sampling waits and the symbolization is CPU work: neither belongs on a runtime worker.
    let taken = tokio::task::spawn_blocking(move || {
        let _busy = busy;
        take_profile(req)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the profiler stopped: {e}")))?;
    let (body, content_type) = taken.map_err(ApiError::Internal)?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !req.svg {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"profile\""),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn seconds_default_to_go_s_thirty_and_format_to_protobuf() {
        assert_eq!(
            parse(None, MINUTE).unwrap(),
            ProfileRequest {
                seconds: 30,
                svg: false
            }
        );
        assert_eq!(
            parse(Some("seconds=5&format=svg"), MINUTE).unwrap(),
            ProfileRequest {
                seconds: 5,
                svg: true
            }
        );
    }

    #[test]
    fn bad_or_too_long_profiles_are_client_errors_that_say_why() {
        for (q, says) in [
            ("seconds=abc", "whole number"),
            ("seconds=0", "above 0"),
            ("seconds=-3", "whole number"),
            ("format=pdf", "svg or proto"),
            ("seconds=120", "--request-timeout"),
        ] {
            match parse(Some(q), longest_profile(MINUTE).unwrap()) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(says), "{q}: {m}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_longest_profile_leaves_time_to_send_it() {
        assert_eq!(longest_profile(MINUTE), Some(Duration::from_secs(55)));
        assert_eq!(longest_profile(Duration::from_secs(3)), None);
    }

    #[test]
    fn one_profile_at_a_time() {
        let first = Busy::take().expect("free");
        assert!(Busy::take().is_none());
        drop(first);
        assert!(Busy::take().is_some());
    }
}
