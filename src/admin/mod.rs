//! The admin port: operators connect with any MySQL client
//! (`mariadb -P6032 -uadmin -p…`) to see tenants, backends, pools and
//! clients, and to change routes, plans and statuses live.
//!
//! Built on silo's own protocol layer (greeting, login parsing, native
//! password check) with a small result-set writer; off unless `[admin]` is
//! configured. Only the configured user with its password gets in.
//!
//! - `session`: the login and the command loop of one operator.
//! - [`parse`]: the command grammar.
//! - `commands`: runs a command; `reports`: the `SHOW` reports;
//!   `variables`: what connectors ask on connect.
//! - [`resultset`]: result sets and OK packets.

mod commands;
pub mod parse;
mod reports;
pub mod resultset;
mod session;
mod variables;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::config::AdminConfig;
use crate::frontend::Context;
use crate::protocol::auth::NativeHash;

/// Largest command packet the admin port reads; admin commands are short.
pub const MAX_COMMAND: usize = 1 << 20;
/// utf8mb4_general_ci: offered in the greeting, and the character set of
/// every text column the admin port sends.
const COLLATION: u8 = 45;

/// The one account of the admin port.
pub struct AdminAuth {
    user: String,
    hash: NativeHash,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AdminAuth {
    /// # Errors
    /// Neither or both of `password` and `password_hash`, or a malformed hash.
    pub fn from_config(config: &AdminConfig) -> Result<Self, String> {
        Ok(Self {
            user: config.user.clone(),
            hash: config.native_hash()?,
        })
    }
}

/// Who runs a command, and what `SELECT @@…` tells them about the session.
#[derive(Debug, Clone)]
pub struct Operator {
    pub user: String,
    pub peer: SocketAddr,
    /// The admin port's own port, for `@@port`.
    pub local_port: u16,
    /// The admin session's id (admin sessions have their own numbering).
    pub connection_id: u32,
    pub server_version: String,
    /// Set by the handshake or COM_INIT_DB; nothing depends on it.
    pub database: Option<String>,
}

impl Operator {
    /// How changes are attributed in events and logs: `user@ip`.
    pub fn performed_by(&self) -> String {
        format!("{}@{}", self.user, self.peer.ip())
    }
}

/// Accepts operators until every sender of `stop` is gone; sessions end
/// then too.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    auth: Arc<AdminAuth>,
    mut stop: watch::Receiver<()>,
) {
    let next_id = AtomicU32::new(0);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                    tokio::spawn(session::run(
                        ctx.clone(),
                        auth.clone(),
                        tcp,
                        peer,
                        id,
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "admin port: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
