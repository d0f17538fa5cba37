//! A loopback TCP proxy to a service (Redis, PostgreSQL) that a test can cut
//! and restore, to play an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A loopback TCP proxy to a service (Redis, PostgreSQL) that a test can cut
/// and restore, to play an outage.
#[derive(Debug)]
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<port>` to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused in effect
                }
                let target = target.clone();
                links2.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { addr, up, links }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The `host:port` a service URL names (`postgres://user@host:port/db`,
/// `redis://host:port`), with `default_port` when it names none.
pub fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if authority.contains(':') { authority.to_owned() } else { format!("{authority}:{default_port}") }
}

/// `url` with its `host:port` replaced by the proxy's address.
pub fn through(url: &str, proxy: &Proxy, default_port: u16) -> String {
    let target = host_port(url, default_port);
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(user, rest)| (user, rest));
    let path = rest.strip_prefix(target.as_str()).or_else(|| rest.strip_prefix(target.split(':').next().unwrap()));
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    format!("{scheme}://{at}{}{}", proxy.addr, path.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_reads_service_urls() {
        assert_eq!(host_port("postgres://postgres@127.0.0.1:55432/test", 5432), "127.0.0.1:55432");
        assert_eq!(host_port("postgres://u:p@db.local/test?sslmode=disable", 5432), "db.local:5432");
        assert_eq!(host_port("redis://127.0.0.1:6379", 6379), "127.0.0.1:6379");
        assert_eq!(host_port("redis://127.0.0.1/", 6379), "127.0.0.1:6379");
    }
}
