//! A round-robin TCP proxy standing in for a Kubernetes Service in front of several adapter
//! processes: new connections go, in turn, to the backends whose `/readyz` answers 200 (polled
//! every 50 ms, as endpoints follow readiness probes); a connection stays with its backend until
//! either side closes it, as kube-proxy's does.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One backend: where it listens, and whether its last readiness probe passed.
#[derive(Clone, Debug)]
struct Backend {
    addr: SocketAddr,
    ready: bool,
}

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<Backend>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn probe(client: &reqwest::Client, addr: SocketAddr) -> bool {
    client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `backends`.
    pub async fn start(backends: &[SocketAddr]) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(Mutex::new(
            backends
                .iter()
                .map(|a| Backend {
                    addr: *a,
                    ready: false,
                })
                .collect::<Vec<_>>(),
        ));
        let prober = {
            let backends = backends.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_millis(500))
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                loop {
                    let addrs: Vec<SocketAddr> =
                        backends.lock().unwrap().iter().map(|b| b.addr).collect();
                    for a in addrs {
                        let ready = probe(&client, a).await;
                        for b in backends.lock().unwrap().iter_mut().filter(|b| b.addr == a) {
                            b.ready = ready;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let acceptor = {
            let backends = backends.clone();
            let next = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let ready: Vec<SocketAddr> = backends
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|b| b.ready)
                        .map(|b| b.addr)
                        .collect();
                    if ready.is_empty() {
                        // No endpoints: the connection is refused, as a Service without
                        // ready endpoints does.
                        continue;
                    }
                    let target = ready[next.fetch_add(1, Ordering::Relaxed) % ready.len()];
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            backends,
            tasks: vec![prober, acceptor],
        }
    }

    /// Adds a backend (a new pod); it takes connections once its readiness probe passes.
    pub fn add(&self, addr: SocketAddr) {
        self.backends
            .lock()
            .unwrap()
            .push(Backend { addr, ready: false });
    }

    /// Removes a backend (a deleted pod).
    pub fn remove(&self, addr: SocketAddr) {
        self.backends.lock().unwrap().retain(|b| b.addr != addr);
    }

    /// How many backends passed their last probe.
    pub fn ready(&self) -> usize {
        self.backends
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.ready)
            .count()
    }
}
