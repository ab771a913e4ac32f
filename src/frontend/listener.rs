//! The accept loop: each client gets a silo connection id, a bounded login,
//! then its own session task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::Context;
use super::login;
use super::session::Session;
use super::stream::{ClientConn, ClientStream};

/// A client must finish the login conversation within this time.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts clients until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        debug!(%peer, "client connected");
                        handle_client(ctx, tcp).await;
                    });
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

async fn handle_client(ctx: Arc<Context>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let registered = ctx.registry.register();
    let id = registered.handle.id;
    let mut client = ClientConn::new(ClientStream::Plain(tcp));
    let mut seq = 1u8;
    let outcome =
        tokio::time::timeout(LOGIN_TIMEOUT, login::login(&ctx, &mut client, id, &mut seq))
            .await
            .unwrap_or(Err(super::error::LoginError::Timeout));
    match outcome {
        Ok(logged_in) => {
            info!(conn = id, tenant = %logged_in.tenant.id, user = %logged_in.username, tls = logged_in.sni.is_some() || matches!(client.stream, ClientStream::Tls(_)), "login");
            Session::new(ctx.clone(), registered.handle.clone(), client, logged_in)
                .run()
                .await;
            debug!(conn = id, "session ended");
        }
        Err(e) => {
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
