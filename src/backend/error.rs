//! Failures talking to a backend, classified so callers decide on retries
//! and client messages without matching on strings.

use std::io;

use crate::protocol::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("connect or login timed out")]
    ConnectTimeout,
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by the server")]
    Closed,
    /// The server answered a login, COM_CHANGE_USER or control command with ERR.
    #[error("server refused with error {code}: {message}")]
    Refused {
        code: u16,
        sqlstate: [u8; 5],
        message: String,
    },
    #[error("server asked for unsupported authentication plugin {0}")]
    UnsupportedAuth(String),
    #[error("server lacks capability {0}")]
    Incompatible(&'static str),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("no connection became free within {waited_ms} ms")]
    LeaseTimeout { waited_ms: u64 },
    #[error("backend {0} is not configured")]
    UnknownBackend(u32),
    #[error("backend {0} is draining")]
    Draining(u32),
    /// Marked down by the health checker: refused without trying to connect.
    #[error("backend {0} is down (not answering health checks)")]
    Down(u32),
}

impl BackendError {
    /// Whether the server could not be reached or the connection broke, as
    /// opposed to the server answering with a refusal.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            BackendError::Connect(_)
                | BackendError::ConnectTimeout
                | BackendError::Io(_)
                | BackendError::Closed
        )
    }

    /// A refusal of the tenant's credentials or database by the server.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self,
            BackendError::Refused {
                code: 1044 | 1045 | 1049,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(BackendError::Closed.is_disconnect());
        assert!(BackendError::Io(io::Error::other("x")).is_disconnect());
        let denied = BackendError::Refused {
            code: 1045,
            sqlstate: *b"28000",
            message: "no".into(),
        };
        assert!(!denied.is_disconnect());
        assert!(denied.is_access_denied());
        assert!(!BackendError::LeaseTimeout { waited_ms: 1 }.is_disconnect());
    }
}
