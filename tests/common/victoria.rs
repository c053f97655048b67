//! A throw-away single-node VictoriaMetrics on loopback (Debian package `victoria-metrics`),
//! loaded through `/api/v1/import/prometheus`, stopped by a watchdog when the test process ends.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running VictoriaMetrics.
pub struct LocalVictoria {
    url: String,
    watchdog: Child,
    dir: std::path::PathBuf,
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

/// OpenMetrics text with second timestamps → Prometheus text with millisecond timestamps, as
/// VictoriaMetrics' import endpoint wants.
pub fn to_import_format(openmetrics: &str) -> String {
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (rest, ts) = line.rsplit_once(' ').expect("sample line with a timestamp");
        let secs: i64 = ts.parse().expect("integer timestamp");
        out.push_str(&format!("{rest} {}\n", secs * 1000));
    }
    out
}

impl LocalVictoria {
    /// Starts VictoriaMetrics and imports `openmetrics`.
    pub fn start(openmetrics: &str) -> Result<LocalVictoria, String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let dir = std::env::temp_dir().join(format!(
            "prom-metrics-adapter-vm-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                r#"victoria-metrics "$@" & child=$!
stop() { kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; rm -rf "$DATA_DIR"; exit 0; }
trap stop TERM INT HUP
while kill -0 "$OWNER_PID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
stop"#,
            )
            .arg("sh")
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-retentionPeriod=1y")
            .arg("-loggerLevel=ERROR")
            .env("OWNER_PID", std::process::id().to_string())
            .env("DATA_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting victoria-metrics: {e}"))?;
        let vm = LocalVictoria {
            url: format!("http://{addr}"),
            watchdog,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(addr, "GET", "/health", b"") {
                break;
            }
            if Instant::now() > deadline {
                return Err("VictoriaMetrics did not become healthy in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let body = to_import_format(openmetrics);
        let (code, text) = http(addr, "POST", "/api/v1/import/prometheus", body.as_bytes())
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&code) {
            return Err(format!("import failed: {text}"));
        }
        http(addr, "GET", "/internal/force_flush", b"").map_err(|e| e.to_string())?;
        Ok(vm)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for LocalVictoria {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .status();
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
