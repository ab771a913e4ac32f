//! Why a login failed, with the one place that turns it into what the client
//! is told and what the log says.

use std::sync::Arc;

use crate::config::TenantStatus;
use crate::frontend::stream::PacketError;
use crate::protocol::{ProtocolError, ServerError};
use crate::routing::TenantRoute;

/// Why a login was refused, as operators count it (`silo_logins_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownTenant,
    /// Wrong password or unknown user: the client is not told which.
    BadPassword,
    /// The tenant's status does not allow logins.
    NotActive(TenantStatus),
    /// A plan limit (`max_client_connections`).
    Limit,
    /// TLS (or an RSA key for caching_sha2_password) was needed.
    TlsRequired,
    /// The client broke the login conversation.
    BadHandshake,
}

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
        refusal: LoginRefusal,
        /// The tenant the client was identified as, when it was.
        tenant: Option<Arc<TenantRoute>>,
    },
    #[error("login timed out")]
    Timeout,
    #[error("operating system random source failed")]
    Random,
}

impl LoginError {
    pub fn refused(refusal: LoginRefusal, error: ServerError, reason: &'static str) -> Self {
        LoginError::Refused {
            error,
            reason,
            refusal,
            tenant: None,
        }
    }

    /// Names the tenant a refused client was identified as.
    pub fn of_tenant(mut self, who: &Arc<TenantRoute>) -> Self {
        if let LoginError::Refused { tenant, .. } = &mut self {
            *tenant = Some(who.clone());
        }
        self
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
        let refused = LoginError::refused(
            LoginRefusal::BadPassword,
            ServerError::access_denied("u"),
            "wrong password",
        );
        assert_eq!(refused.to_server_error().map(|e| e.code), Some(1045));
    }
}
