//! The errors silo itself sends to clients: MariaDB error number, SQLSTATE and
//! message, built by named constructors so codes stay consistent.
//!
//! Messages name what the client sent or what it may do; they never contain
//! passwords, scrambles, backend credentials or internal error text.

use bytes::{BufMut, BytesMut};

use super::packet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

/// Bounds a client-supplied string before it is echoed in an error or a log,
/// replacing control characters so it cannot forge log lines.
pub fn sanitize(input: &[u8]) -> String {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(input.get(..MAX).unwrap_or(input));
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if input.len() > MAX {
        out.push('…');
    }
    out
}

/// ER_CONNECT_TO_FOREIGN_DATA_SOURCE: the tenant's database server cannot be
/// reached (see [`ServerError::backend_down`]).
const UNREACHABLE: u16 = 1429;

/// ER_CONNECTION_KILLED.
const KILLED: u16 = 1927;

impl ServerError {
    pub fn new(code: u16, sqlstate: &[u8; 5], message: impl Into<String>) -> Self {
        // Client-library codes: libmariadb turns a server ERR carrying one
        // into "Received malformed packet".
        debug_assert!(
            !(2000..3000).contains(&code),
            "{code} is a client-library error code"
        );
        Self {
            code,
            sqlstate: *sqlstate,
            message: message.into(),
        }
    }

    /// Wrong password, or a user that does not exist for the tenant.
    pub fn access_denied(user: &str) -> Self {
        Self::new(
            1045,
            b"28000",
            format!("Access denied for user '{user}' (using password: YES)"),
        )
    }

    /// No identification method found a tenant for this login.
    pub fn unknown_tenant(user: &str, candidate: Option<&str>) -> Self {
        let message = match candidate {
            Some(slug) => format!("Access denied for user '{user}': unknown tenant '{slug}'"),
            None => format!(
                "Access denied for user '{user}': no tenant could be identified (use user.tenant, the connect attribute 'tenant', or a tenant database)"
            ),
        };
        Self::new(1045, b"28000", message)
    }

    /// The tenant exists and the password is right, but its status forbids logins.
    pub fn tenant_not_active(slug: &str, status: &str) -> Self {
        let why = match status {
            "provisioning" => "is not ready yet (provisioning)".to_string(),
            "paused" => "is paused for maintenance".to_string(),
            other => format!("is {other}"),
        };
        Self::new(
            1045,
            b"28000",
            format!("Access denied: tenant '{slug}' {why}"),
        )
    }

    pub fn tls_required() -> Self {
        Self::new(
            3159,
            b"HY000",
            "Connections using insecure transport are prohibited: this silo requires TLS",
        )
    }

    pub fn unsupported_auth_plugin(plugin: &str) -> Self {
        Self::new(
            1251,
            b"08004",
            format!(
                "Client does not support authentication protocol requested by server ('{plugin}'); use mysql_native_password"
            ),
        )
    }

    /// caching_sha2_password full authentication on plain TCP when silo has
    /// no RSA key to receive the password with.
    pub fn full_auth_needs_tls() -> Self {
        Self::new(
            1251,
            b"08004",
            "caching_sha2_password full authentication over plain TCP is not available (silo has no RSA key): connect with TLS",
        )
    }

    /// A caching_sha2_password client that sent its password unencrypted on
    /// plain TCP, where it must be RSA-encrypted.
    pub fn password_sent_unencrypted() -> Self {
        Self::new(
            1251,
            b"08004",
            "caching_sha2_password over plain TCP needs the password RSA-encrypted and this client sent it unencrypted: connect with TLS",
        )
    }

    pub fn bad_handshake() -> Self {
        Self::new(1043, b"08S01", "Bad handshake")
    }

    pub fn malformed_packet() -> Self {
        Self::new(1835, b"HY000", "Malformed communication packet")
    }

    pub fn packet_too_large() -> Self {
        Self::new(
            1153,
            b"08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        )
    }

    /// What a client that sent a bad command packet is told before the
    /// connection closes.
    pub fn for_bad_packet(error: &super::ProtocolError) -> Self {
        match error {
            super::ProtocolError::TooLarge { .. } => Self::packet_too_large(),
            _ => Self::malformed_packet(),
        }
    }

    pub fn unknown_command(command: u8) -> Self {
        Self::new(
            1047,
            b"08S01",
            format!("Unknown command 0x{command:02x}: not supported through silo"),
        )
    }

    pub fn no_such_thread(id: u64) -> Self {
        Self::new(1094, b"HY000", format!("Unknown thread id: {id}"))
    }

    pub fn kill_unsupported(what: &str) -> Self {
        Self::new(
            1235,
            b"42000",
            format!(
                "This version of silo doesn't yet support '{what}': use KILL [CONNECTION|QUERY] <id>"
            ),
        )
    }

    pub fn connection_killed() -> Self {
        Self::new(KILLED, b"70100", "Connection was killed")
    }

    /// ER_CONNECTION_KILLED tells the client its connection is gone, so
    /// the connection must close once this error is sent, whoever sends it.
    pub fn ends_connection(&self) -> bool {
        self.code == KILLED
    }

    /// The session's tenant left the active states while it was connected.
    pub fn tenant_ended(slug: &str, why: &str) -> Self {
        Self::new(
            KILLED,
            b"70100",
            format!("Connection was killed: tenant '{slug}' {why}"),
        )
    }

    /// A limit of the tenant's plan refused a login or a command
    /// (ER_USER_LIMIT_REACHED's wording, with the tenant and plan named).
    pub fn limit_reached(slug: &str, plan: &str, limit: &str, value: u64, detail: &str) -> Self {
        Self::new(
            1226,
            b"42000",
            format!(
                "Tenant '{slug}' has exceeded the '{limit}' resource of plan '{plan}' (current value: {value}){detail}"
            ),
        )
    }

    /// No backend lease slot of the tenant freed up within its queue timeout.
    pub fn lease_slots_busy(slug: &str, plan: &str, max: u64, waited_ms: u64) -> Self {
        Self::new(
            1203,
            b"42000",
            format!(
                "Tenant '{slug}' already runs {max} statements at once ('max_backend_leases' of plan '{plan}'); none finished within {waited_ms} ms"
            ),
        )
    }

    /// The tenant's backend is out of rotation.
    pub fn backend_draining(slug: &str) -> Self {
        Self::new(
            1053,
            b"08S01",
            format!("The database server of tenant '{slug}' is being drained; try again shortly"),
        )
    }

    /// Silo is shutting down: sent to a session closed while idle
    /// (ER_SERVER_SHUTDOWN; 08S01, a connection failure, makes drivers
    /// reconnect, to another silo behind the load balancer).
    pub fn server_shutdown() -> Self {
        Self::new(
            1053,
            b"08S01",
            "Server shutdown in progress: silo is stopping; reconnect",
        )
    }

    /// The tenant stayed paused for the whole queue timeout.
    pub fn tenant_paused(slug: &str, waited_ms: u64) -> Self {
        Self::new(
            1040,
            b"08004",
            format!(
                "Tenant '{slug}' is paused for maintenance; the statement waited {waited_ms} ms and was not run"
            ),
        )
    }

    /// The tenant's backend is marked down by the health checks: refused
    /// at once rather than after a connect timeout, with the code a failed
    /// connect gets ([`ServerError::backend_unavailable`]), so an
    /// application sees one code for "database server unreachable" (the
    /// statement never reached a server: safe to retry).
    ///
    /// Not 2003: codes 2000-2999 are the client library's own, and
    /// libmariadb reports a server ERR carrying one as "2027 Received
    /// malformed packet". ER_CONNECT_TO_FOREIGN_DATA_SOURCE (1429) is what
    /// MariaDB's own routing engine (Spider) answers when a data node cannot
    /// be reached.
    pub fn backend_down(slug: &str) -> Self {
        Self::new(
            UNREACHABLE,
            b"HY000",
            format!(
                "Can't connect to the database server of tenant '{slug}': it is not answering health checks; try again shortly"
            ),
        )
    }

    pub fn backend_unavailable(slug: &str) -> Self {
        Self::new(
            UNREACHABLE,
            b"HY000",
            format!("Can't connect to the database server of tenant '{slug}'"),
        )
    }

    /// The backend connection broke during a command; the client
    /// connection is closed after it. ER_NET_READ_ERROR, as MariaDB answers
    /// when its own read fails; SQLSTATE 08S01 tells drivers the connection
    /// is gone. (2013 is a client-library code; see [`ServerError::backend_down`].)
    pub fn backend_lost() -> Self {
        Self::new(
            1158,
            b"08S01",
            "Lost connection to the database server during query",
        )
    }

    pub fn lease_timeout(waited_ms: u64) -> Self {
        Self::new(
            1040,
            b"08004",
            format!(
                "Too many connections: no database connection became free within {waited_ms} ms"
            ),
        )
    }

    pub fn backend_login_failed(slug: &str) -> Self {
        Self::new(
            1045,
            b"28000",
            format!(
                "Access denied: silo could not log in to the database of tenant '{slug}' (check its credentials)"
            ),
        )
    }

    /// An internal failure; the details go to the log under `reference`.
    /// A statement command naming an id the client never prepared (or closed).
    pub fn unknown_statement(id: u32, command: &str) -> Self {
        Self::new(
            1243,
            b"HY000",
            format!("Unknown prepared statement handler ({id}) given to {command}"),
        )
    }

    /// COM_STMT_FETCH on a statement without an open cursor.
    pub fn no_open_cursor(id: u32) -> Self {
        Self::new(
            1421,
            b"HY000",
            format!("The statement ({id}) has no open cursor."),
        )
    }

    /// Re-preparing a statement on another connection gave a different
    /// parameter count (the tables changed): the client must prepare again.
    pub fn need_reprepare() -> Self {
        Self::new(1615, b"HY000", "Prepared statement needs to be re-prepared")
    }

    /// A statement too long to keep for re-preparing.
    pub fn statement_too_long(max: usize) -> Self {
        Self::new(
            1153,
            b"08S01",
            format!("Prepared statement text longer than {max} bytes is not supported"),
        )
    }

    pub fn internal(reference: u64) -> Self {
        Self::new(
            1105,
            b"HY000",
            format!("Internal proxy error (reference {reference})"),
        )
    }

    /// Appends this error as an ERR packet with sequence id `seq`.
    /// See <https://mariadb.com/kb/en/err_packet/>.
    pub fn encode(&self, seq: u8, out: &mut BytesMut) {
        let mut payload = BytesMut::with_capacity(9 + self.message.len());
        payload.put_u8(0xFF);
        payload.put_u16_le(self.code);
        payload.put_u8(b'#');
        payload.put_slice(&self.sqlstate);
        payload.put_slice(self.message.as_bytes());
        packet::write_packet(out, seq, &payload);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_layout() {
        let mut out = BytesMut::new();
        ServerError::access_denied("app").encode(2, &mut out);
        let (len, seq) = packet::header(&out).unwrap();
        assert_eq!((len, seq), (out.len() - 4, 2));
        assert_eq!(out[4], 0xFF);
        assert_eq!(u16::from_le_bytes([out[5], out[6]]), 1045);
        assert_eq!(&out[7..13], b"#28000");
        assert!(out[13..].starts_with(b"Access denied for user 'app'"));
    }

    #[test]
    fn sanitize_bounds_and_neutralises_control_characters() {
        assert_eq!(sanitize(b"app\nroot"), "app?root");
        let long = vec![b'a'; 200];
        assert_eq!(sanitize(&long).chars().count(), 65);
        assert_eq!(sanitize(&[0xFF, b'x']), "\u{FFFD}x");
    }
}
