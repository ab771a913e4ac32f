//! The accept loop: each client gets a silo connection id, a bounded login,
//! then its own session task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::Context;
use super::login;
use super::registry::Registered;
use super::session::Session;
use super::stream::{ClientConn, ClientStream};

/// A client must finish the login conversation within this time.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where accepted clients go: sessions run on the thread that accepted them,
/// or are handed round-robin to worker threads, each with its own
/// single-threaded runtime.
pub type Handoff = tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>;

/// Accepts clients until `shutdown` resolves, then closes the listening
/// socket (new connections are refused). With `workers` empty every
/// session runs on the current runtime; otherwise sessions are spread over
/// this runtime and the workers in turn.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    workers: Vec<Handoff>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    next = (next + 1) % (workers.len() + 1);
                    let local = match workers.get(next) {
                        None => Some(tcp),
                        Some(worker) => match tcp.into_std() {
                            // A worker that is gone leaves the client here.
                            Ok(std) => worker.send(std).err().and_then(|e| TcpStream::from_std(e.0).ok()),
                            Err(e) => {
                                warn!(error = %e, "cannot hand a client to a worker");
                                None
                            }
                        },
                    };
                    if let Some(tcp) = local {
                        spawn_client(&ctx, tcp);
                    }
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// A worker thread's loop: runs the sessions of the clients handed to it
/// until the acceptor goes away.
pub async fn work(
    ctx: Arc<Context>,
    mut clients: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
) {
    while let Some(std) = clients.recv().await {
        match TcpStream::from_std(std) {
            Ok(tcp) => spawn_client(&ctx, tcp),
            Err(e) => warn!(error = %e, "cannot adopt a client socket"),
        }
    }
}

/// Registers the client and runs it in a task of its own, which the
/// registry can end at the shutdown deadline.
fn spawn_client(ctx: &Arc<Context>, tcp: TcpStream) {
    let registered = ctx.registry.register();
    let handle = registered.handle.clone();
    let task = tokio::spawn(handle_client(ctx.clone(), tcp, registered));
    handle.set_task(task.abort_handle());
}

async fn handle_client(ctx: Arc<Context>, tcp: TcpStream, registered: Registered) {
    let _ = tcp.set_nodelay(true);
    let id = registered.handle.id;
    let mut client = ClientConn::new(ClientStream::Plain(tcp));
    let mut seq = 1u8;
    // Boxed: the login's state is freed once it is done instead of staying
    // reserved in every idle session's task.
    let outcome = tokio::time::timeout(
        LOGIN_TIMEOUT,
        Box::pin(login::login(&ctx, &mut client, id, &mut seq)),
    )
    .await
    .unwrap_or(Err(super::error::LoginError::Timeout));
    match outcome {
        Ok(logged_in) => {
            info!(conn = id, tenant = %logged_in.tenant.id, user = %logged_in.username, tls = matches!(client.stream, ClientStream::Tls(_)), "login");
            Session::new(ctx.clone(), registered.handle.clone(), client, logged_in)
                .run()
                .await;
            debug!(conn = id, "session ended");
        }
        Err(e) => {
            ctx.metrics.count_failed_login(&e);
            // Refusals were logged with their user and tenant by login.
            if matches!(e, super::error::LoginError::Refused { .. }) {
                debug!(conn = id, error = %e, "login failed");
            } else {
                info!(conn = id, error = %e, "login failed");
            }
            if let Some(error) = e.to_server_error() {
                client.send_error(seq, &error).await;
            }
        }
    }
    drop(registered);
}
