//! Why a login failed, with the one place that turns it into what the client
//! is told and what the log says.

use crate::frontend::stream::PacketError;
use crate::protocol::{ProtocolError, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("login refused: {reason}")]
    Refused {
        error: ServerError,
        reason: &'static str,
    },
    #[error("login timed out")]
    Timeout,
    #[error("operating system random source failed")]
    Random,
}

impl LoginError {
    pub fn refused(error: ServerError, reason: &'static str) -> Self {
        LoginError::Refused { error, reason }
    }

    /// The ERR packet the client gets, if it can still be told anything.
    pub fn to_server_error(&self) -> Option<ServerError> {
        match self {
            LoginError::Refused { error, .. } => Some(error.clone()),
            LoginError::Packet(PacketError::Protocol(ProtocolError::TooLarge { .. })) => {
                Some(ServerError::packet_too_large())
            }
            LoginError::Packet(PacketError::Protocol(_)) => Some(ServerError::bad_handshake()),
            LoginError::Packet(PacketError::Io(_) | PacketError::Closed) => None,
            LoginError::Tls(_) => None,
            LoginError::Timeout => Some(ServerError::bad_handshake()),
            LoginError::Random => Some(ServerError::internal(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_logins_get_bad_handshake_and_closed_ones_nothing() {
        let bad = LoginError::Packet(PacketError::Protocol(ProtocolError::malformed("x")));
        assert_eq!(bad.to_server_error().map(|e| e.code), Some(1043));
        assert!(
            LoginError::Packet(PacketError::Closed)
                .to_server_error()
                .is_none()
        );
        let refused = LoginError::refused(ServerError::access_denied("u"), "wrong password");
        assert_eq!(refused.to_server_error().map(|e| e.code), Some(1045));
    }
}
