//! A TCP proxy between zerodrop and its database that a test cuts and restores, as a
//! database restart would, without touching the shared PostgreSQL server.
//!
//! Cut: the proxy stops listening (new connections are refused, as by a server that is
//! down) and closes every connection it carried (as a server's restart does). Restored:
//! it listens again on the same port.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Attempts to listen on the proxy's port again after a cut (the port is briefly held).
const REBIND_TRIES_MAX: u32 = 50;
const REBIND_PAUSE_MS: u64 = 100;
/// Pending connections the listener queues.
const BACKLOG: u32 = 128;

pub struct Proxy {
    listen: SocketAddr,
    target: SocketAddr,
    /// The accept loop while the proxy is up; it owns every carried connection.
    running: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// A proxy to `target` that is up.
    pub async fn up(target: SocketAddr) -> Proxy {
        let proxy = Proxy::down(target).await;
        proxy.restore().await;
        proxy
    }

    /// A proxy to `target` that is cut from the start: its port is chosen, but nothing
    /// listens there until [`Proxy::restore`].
    pub async fn down(target: SocketAddr) -> Proxy {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let listen = probe.local_addr().expect("its address");
        drop(probe);
        Proxy { listen, target, running: Mutex::new(None) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Refuses new connections and closes every open one.
    pub fn cut(&self) {
        if let Some(task) = self.running.lock().expect("proxy state").take() {
            // Aborting the loop drops its listener and its JoinSet, which aborts every
            // connection's task and so closes both of its sockets.
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let listener = self.bind().await;
        let target = self.target;
        let task = tokio::spawn(async move {
            let mut carried = JoinSet::new();
            loop {
                match listener.accept().await {
                    Ok((inbound, _)) => {
                        carried.spawn(carry(inbound, target));
                    }
                    // Out of descriptors, say: pause rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(REBIND_PAUSE_MS)).await,
                }
                while carried.try_join_next().is_some() {}
            }
        });
        if let Some(old) = self.running.lock().expect("proxy state").replace(task) {
            old.abort();
        }
    }

    async fn bind(&self) -> TcpListener {
        for _ in 0..REBIND_TRIES_MAX {
            let socket = TcpSocket::new_v4().expect("socket");
            // Connections closed by a cut linger in TIME_WAIT on this port.
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            if socket.bind(self.listen).is_ok() {
                if let Ok(listener) = socket.listen(BACKLOG) {
                    return listener;
                }
            }
            tokio::time::sleep(Duration::from_millis(REBIND_PAUSE_MS)).await;
        }
        panic!("the proxy could not listen on {} again", self.listen);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies bytes both ways until either side closes.
async fn carry(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

/// `url` (postgres://user@host:port/db…) with its host and port replaced by `addr`, and
/// `password` set (the test server trusts local users, so it is never checked; it is
/// there to prove that logs never show it).
pub fn postgres_url_through(url: &str, addr: SocketAddr, password: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let user = authority.rsplit_once('@').map_or("postgres", |(user, _)| user);
    let user = user.split(':').next().unwrap_or(user);
    format!("{}{user}:{password}@{addr}{}", &url[..scheme_end], &rest[authority_end..])
}

/// The address of the PostgreSQL server a URL names.
pub async fn postgres_addr(url: &str) -> SocketAddr {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    tokio::net::lookup_host(host_port).await.expect("resolve").next().expect("an address")
}

#[test]
fn urls_are_pointed_through_the_proxy() {
    let addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    assert_eq!(
        postgres_url_through("postgres://postgres@127.0.0.1:5432/zd_test_1", addr, "pw"),
        "postgres://postgres:pw@127.0.0.1:6000/zd_test_1"
    );
    assert_eq!(
        postgres_url_through("postgres://u:old@db.example/zd?sslmode=disable", addr, "pw"),
        "postgres://u:pw@127.0.0.1:6000/zd?sslmode=disable"
    );
}
