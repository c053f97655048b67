//! A throw-away Prometheus on loopback, loaded with backfilled samples.
//!
//! Used by the `demo` subcommand (and by the integration tests, which need the same thing). It
//! runs the Debian `prometheus` and `promtool` binaries: samples are written as OpenMetrics text,
//! turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`, and served by a
//! Prometheus listening on a free 127.0.0.1 port. A small shell watchdog stops Prometheus and
//! removes its data directory when the owning process exits, even if it exits abruptly.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a local Prometheus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalPrometheusError {
    /// A binary is missing.
    #[error(
        "{0} not found on PATH: install the Debian package with `apt-get install -y --no-install-recommends prometheus`"
    )]
    Missing(&'static str),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// promtool rejected the samples.
    #[error("promtool could not backfill the samples: {0}")]
    Backfill(String),
    /// Prometheus did not become ready.
    #[error("Prometheus did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalPrometheusError {
    let what = what.into();
    move |source| LocalPrometheusError::Io { what, source }
}

fn find_binary(name: &'static str) -> Result<PathBuf, LocalPrometheusError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(LocalPrometheusError::Missing(name))
}

/// A free loopback port. Another process could take it before Prometheus binds it; the start-up
/// check would then fail loudly rather than talk to the wrong server, since readiness is
/// checked on the child's own output directory too.
fn free_port() -> Result<u16, LocalPrometheusError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading the bound port"))?.port())
}

/// A running Prometheus; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct LocalPrometheus {
    url: String,
    addr: SocketAddr,
    watchdog: Child,
    dir: PathBuf,
}

/// Polls `GET path` on `addr` until it answers 200 or `timeout` passes.
fn wait_http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match http_get_status(addr, path) {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last)
}

fn http_get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected answer {head:?}")))
}

impl LocalPrometheus {
    /// Backfills `openmetrics` (OpenMetrics text with timestamps in seconds, ending `# EOF`) and
    /// starts Prometheus on it.
    pub fn start(openmetrics: &str) -> Result<Self, LocalPrometheusError> {
        Self::start_with_config(
            openmetrics,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
    }

    /// [`LocalPrometheus::start`] with `prometheus_yml` as its configuration (scrape jobs, for
    /// a Prometheus that scrapes the adapter).
    pub fn start_with_config(
        openmetrics: &str,
        prometheus_yml: &str,
    ) -> Result<Self, LocalPrometheusError> {
        let prometheus = find_binary("prometheus")?;
        let promtool = find_binary("promtool")?;
        let dir = std::env::temp_dir().join(format!(
            "prom-metrics-adapter-prometheus-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let cleanup_on_error = |e| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        Self::prepare(&dir, &promtool, openmetrics, prometheus_yml).map_err(cleanup_on_error)?;
        let port = free_port().map_err(cleanup_on_error)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                r#"prom="$1"; shift
"$prom" "$@" & child=$!
stop() { kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; rm -rf "$DATA_DIR"; exit 0; }
trap stop TERM INT HUP
while kill -0 "$OWNER_PID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
stop"#,
            )
            .arg("sh")
            .arg(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=30d")
            .arg("--log.level=warn")
            .env("OWNER_PID", std::process::id().to_string())
            .env("DATA_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("prometheus.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .map_err(io("starting prometheus"))
            .map_err(cleanup_on_error)?;
        let mut me = LocalPrometheus {
            url: format!("http://{addr}"),
            addr,
            watchdog,
            dir,
        };
        let timeout = Duration::from_secs(30);
        if let Err(last) = wait_http_ok(addr, "/-/ready", timeout) {
            let log = std::fs::read_to_string(me.dir.join("prometheus.log")).unwrap_or_default();
            me.stop();
            return Err(LocalPrometheusError::NotReady(
                timeout,
                format!("{last}; log: {}", log.trim()),
            ));
        }
        Ok(me)
    }

    fn prepare(
        dir: &Path,
        promtool: &Path,
        openmetrics: &str,
        prometheus_yml: &str,
    ) -> Result<(), LocalPrometheusError> {
        let samples = dir.join("samples.om");
        std::fs::write(&samples, openmetrics).map_err(io("writing samples"))?;
        std::fs::write(dir.join("prometheus.yml"), prometheus_yml)
            .map_err(io("writing prometheus.yml"))?;
        let out = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&samples)
            .arg(dir.join("data"))
            .output()
            .map_err(io("running promtool"))?;
        if !out.status.success() {
            return Err(LocalPrometheusError::Backfill(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops Prometheus and removes its data (also done on drop).
    pub fn stop(&mut self) {
        // SIGTERM lets the watchdog stop Prometheus and remove the directory.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .status();
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for LocalPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
