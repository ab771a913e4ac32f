//! In-process TCP relay between silo and a `mariadbd`, for fault injection
//! (Docker and toxiproxy are unavailable): sever every relayed connection as if
//! the server died, or refuse new ones as a down backend would.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the relay tries to reach the target before dropping the client.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP relay on 127.0.0.1 to one target. Dropping it stops accepting and severs
/// every relayed connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    refuse: AtomicBool,
    /// Bumped by `sever_all` before it drains `live`, so a relay that registers
    /// after the drain still sees that it was severed.
    epoch: AtomicU64,
    next_id: AtomicU64,
    /// Duplicated handles of both sockets of every live relay, so that
    /// `sever_all` can shut them down synchronously, from any thread, with no
    /// race against a client that sends right after it returns.
    live: Mutex<HashMap<u64, Relayed>>,
}

struct Relayed {
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    severed: Arc<AtomicBool>,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, Relayed>> {
        // A panic elsewhere must not hide the relay's state from the test.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FaultProxy {
    /// Starts relaying from a fresh port on 127.0.0.1 to `target`. Must be called
    /// inside a tokio runtime; relay tasks run on it.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fault proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("fault proxy local address");
        let shared = Arc::new(Shared {
            target,
            refuse: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    /// Where clients (silo's backend pool) should connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relayed server.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Abruptly closes every relayed connection, both sides, as if the server
    /// died. Synchronous: when it returns both peers have been sent a FIN and the
    /// relay can no longer move a byte (the sockets are reset when the relay
    /// tasks drop them). Connections accepted but not yet relayed are severed too.
    pub fn sever_all(&self) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        let drained: Vec<Relayed> = self.shared.live().drain().map(|(_, r)| r).collect();
        for relayed in drained {
            relayed.severed.store(true, Ordering::SeqCst);
            let _ = relayed.client.shutdown(Shutdown::Both);
            let _ = relayed.server.shutdown(Shutdown::Both);
        }
    }

    /// While set, new connections are accepted and closed at once, before any
    /// byte is sent, as a backend that is down. Relayed connections stay.
    pub fn set_refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Connections currently relayed (both sides connected). A relay leaves this
    /// count at once on `sever_all`, and shortly after either peer closes.
    pub fn connections(&self) -> usize {
        self.shared.live().len()
    }

    /// Polls until [`connections`](Self::connections) equals `expected` or
    /// `within` has passed; returns whether it did.
    pub async fn wait_for_connections(&self, expected: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        // Bounded by `deadline`.
        loop {
            if self.connections() == expected {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.sever_all();
    }
}

/// Runs until the proxy is dropped (the task is aborted).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // EMFILE and the like: back off rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let epoch = shared.epoch.load(Ordering::SeqCst);
        tokio::spawn(relay(client, Arc::clone(&shared), epoch));
    }
}

fn dup(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    Ok(std::net::TcpStream::from(
        stream.as_fd().try_clone_to_owned()?,
    ))
}

/// Removes a relay from `live` however its task ends (including abort).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.live().remove(&self.id);
    }
}

/// Relays one connection until either side closes or errors, or it is severed.
async fn relay(mut client: TcpStream, shared: Arc<Shared>, epoch: u64) {
    let server = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(shared.target));
    let Ok(Ok(mut server)) = server.await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client_dup), Ok(server_dup)) = (dup(&client), dup(&server)) else {
        return;
    };
    let severed = Arc::new(AtomicBool::new(false));
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let registration = Registration {
        shared: Arc::clone(&shared),
        id,
    };
    {
        let mut live = shared.live();
        if shared.epoch.load(Ordering::SeqCst) != epoch {
            // sever_all ran between accept and now.
            severed.store(true, Ordering::SeqCst);
        } else {
            live.insert(
                id,
                Relayed {
                    client: client_dup,
                    server: server_dup,
                    severed: Arc::clone(&severed),
                },
            );
        }
    }
    if !severed.load(Ordering::SeqCst) {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        tokio::select! {
            _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
            _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
        }
    }
    if severed.load(Ordering::SeqCst) {
        // The peers already got a FIN from sever_all; closing with SO_LINGER 0
        // adds a RST, so their next write fails at once instead of being
        // silently absorbed.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    drop(registration);
}
