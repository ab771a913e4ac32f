//! One connection to a MariaDB server, logged in as a tenant's database user.
//!
//! silo speaks the client side of the login here (mysql_native_password,
//! with AuthSwitchRequest handled), re-authenticates pooled connections with
//! COM_CHANGE_USER, and resets them with COM_RESET_CONNECTION. The relay
//! reaches the socket and read buffer directly through [`BackendConn::io`].

use std::time::{Duration, Instant};

use bytes::BytesMut;
use mysql_common::constants::CapabilityFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BackendError;
use super::session_vars::{SessionVars, replay_statement};
use super::statements::{StatementCache, StatementKey};
use crate::config::BackendConfig;
use crate::protocol::ProtocolError;
use crate::protocol::auth::{NATIVE_PLUGIN, native_token};
use crate::protocol::command::{
    COM_INIT_DB, COM_QUERY, COM_QUIT, COM_RESET_CONNECTION, COM_STMT_CLOSE, COM_STMT_PREPARE,
    COM_STMT_RESET,
};
use crate::protocol::handshake::{self, PROFILE_FLAGS};
use crate::protocol::packet::{self, HEADER_LEN};
use crate::protocol::session_track::{OkPacket, StateItem};
use crate::protocol::statement::PrepareOk;
use crate::secret::Secret;

/// Who a backend connection is logged in as.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub password: Secret<String>,
    pub database: String,
}

impl Identity {
    pub fn new(user: &str, password: Secret<String>, database: &str) -> Self {
        Self {
            user: user.to_string(),
            password,
            database: database.to_string(),
        }
    }
}

/// The capabilities and collation a client negotiated that shape the bytes
/// of every response. A client is relayed only to connections of its profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    pub capabilities: CapabilityFlags,
    pub collation: u8,
}

impl Profile {
    pub fn new(client_capabilities: CapabilityFlags, collation: u8) -> Self {
        Self {
            capabilities: client_capabilities & PROFILE_FLAGS,
            collation,
        }
    }

    pub fn deprecate_eof(&self) -> bool {
        self.capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }
}

/// Replies to control packets are small; anything larger is a desync.
const MAX_CONTROL_PACKET: usize = 1 << 20;
const ATTRIBUTES: &[(&str, &str)] = &[("program_name", "silo"), ("_client_name", "silo")];
/// Turns on the session tracking silo reads from every OK packet, and makes
/// the server report the login's character-set variables (the baseline a
/// replay returns to): assigning a variable to itself counts as a change.
const TRACKING_SETUP: &str = "SET session_track_schema = 1, session_track_state_change = 1, \
    session_track_system_variables = '*', session_track_transaction_info = 'CHARACTERISTICS', \
    character_set_client = @@character_set_client, character_set_results = @@character_set_results, \
    character_set_connection = @@character_set_connection, collation_connection = @@collation_connection";

pub struct BackendConn {
    stream: TcpStream,
    rbuf: BytesMut,
    pub backend_id: u32,
    /// The server's id for this connection, the target of `KILL QUERY`.
    pub thread_id: u32,
    pub profile: Profile,
    /// The user currently logged in.
    user: String,
    /// The current database, when known for sure.
    database: Option<String>,
    /// Nonce of the greeting, reused by COM_CHANGE_USER.
    scramble: Vec<u8>,
    pub server_version: String,
    pub created: Instant,
    pub idle_since: Instant,
    /// The worker runtime whose reactor watches this socket.
    worker: usize,
    /// Session tracking is on (off again after a reset or change of user).
    tracking: bool,
    /// Variables changed on this connection, as the server reported them.
    vars: SessionVars,
    /// The character-set variables of its login.
    baseline: SessionVars,
    pub statements: StatementCache,
    /// What LAST_INSERT_ID() returns on this connection, when silo knows it
    /// to be non-zero.
    pub last_insert_id: u64,
}

impl std::fmt::Debug for BackendConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConn")
            .field("backend_id", &self.backend_id)
            .field("thread_id", &self.thread_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl BackendConn {
    /// Opens a connection and logs in as `identity`, bounded by the
    /// backend's connect timeout.
    ///
    /// # Errors
    /// Unreachable server, timeout, refused credentials, or a server missing
    /// a capability the profile needs.
    pub async fn connect(
        backend: &BackendConfig,
        identity: &Identity,
        profile: Profile,
    ) -> Result<Self, BackendError> {
        tokio::time::timeout(
            backend.connect_timeout(),
            Self::connect_inner(backend, identity, profile),
        )
        .await
        .map_err(|_| BackendError::ConnectTimeout)?
    }

    async fn connect_inner(
        backend: &BackendConfig,
        identity: &Identity,
        profile: Profile,
    ) -> Result<Self, BackendError> {
        let stream = TcpStream::connect((backend.host.as_str(), backend.port))
            .await
            .map_err(BackendError::Connect)?;
        stream.set_nodelay(true).map_err(BackendError::Connect)?;
        let mut conn = BackendConn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            backend_id: backend.id,
            thread_id: 0,
            profile,
            user: identity.user.clone(),
            database: Some(identity.database.clone()),
            scramble: Vec::new(),
            server_version: String::new(),
            created: Instant::now(),
            idle_since: Instant::now(),
            worker: crate::net::worker(),
            tracking: false,
            vars: SessionVars::default(),
            baseline: SessionVars::default(),
            statements: StatementCache::default(),
            last_insert_id: 0,
        };
        let (_, greeting) = conn.read_control_packet().await?;
        if greeting.first() == Some(&0xFF) {
            return Err(refused(&greeting));
        }
        let greeting = handshake::parse_greeting(&greeting)?;
        let wanted = handshake::backend_capabilities(profile.capabilities, true);
        let required = (wanted & PROFILE_FLAGS)
            | CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_SESSION_TRACK;
        if !greeting.capabilities.contains(required) {
            return Err(BackendError::Incompatible(
                "a capability silo or the client needs (CLIENT_SESSION_TRACK: MariaDB 10.2+; or e.g. CLIENT_DEPRECATE_EOF)",
            ));
        }
        conn.thread_id = greeting.connection_id;
        conn.scramble = greeting.scramble;
        conn.server_version = greeting.version;
        let capabilities = wanted & (greeting.capabilities | CapabilityFlags::CLIENT_LONG_PASSWORD);
        let token = native_token(&conn.scramble, identity.password.expose().as_bytes());
        let login = handshake::backend_login(
            capabilities,
            profile.collation,
            identity.user.as_bytes(),
            &token,
            Some(identity.database.as_bytes()),
            ATTRIBUTES,
        );
        conn.write_control_packet(1, &login).await?;
        conn.finish_auth(identity).await?;
        Ok(conn)
    }

    /// Reads the outcome of a login or COM_CHANGE_USER, answering an
    /// AuthSwitchRequest to mysql_native_password (the answer's sequence id
    /// follows the server's packet).
    async fn finish_auth(&mut self, identity: &Identity) -> Result<(), BackendError> {
        for _ in 0..2 {
            let (got, reply) = self.read_control_packet().await?;
            let seq = got.wrapping_add(1);
            match reply.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(refused(&reply)),
                Some(0xFE) => {
                    let Some((plugin, nonce)) = handshake::parse_auth_switch(&reply) else {
                        return Err(ProtocolError::malformed("auth switch").into());
                    };
                    if plugin != NATIVE_PLUGIN.as_bytes() {
                        return Err(BackendError::UnsupportedAuth(
                            String::from_utf8_lossy(plugin).into_owned(),
                        ));
                    }
                    self.scramble = nonce.to_vec();
                    let token = native_token(nonce, identity.password.expose().as_bytes());
                    self.write_control_packet(seq, &token).await?;
                }
                _ => return Err(ProtocolError::malformed("login reply").into()),
            }
        }
        Err(ProtocolError::malformed("repeated auth switch").into())
    }

    /// Re-authenticates as `identity` (COM_CHANGE_USER), which also resets
    /// all session state, and selects the identity's database.
    ///
    /// # Errors
    /// The server refused, or the connection broke.
    pub async fn change_user(&mut self, identity: &Identity) -> Result<(), BackendError> {
        let token = native_token(&self.scramble, identity.password.expose().as_bytes());
        let packet = handshake::change_user(
            identity.user.as_bytes(),
            &token,
            Some(identity.database.as_bytes()),
            self.profile.collation,
            ATTRIBUTES,
        );
        self.user.clear();
        self.database = None;
        self.forget_session();
        self.write_control_packet(0, &packet).await?;
        self.finish_auth(identity).await?;
        self.user = identity.user.clone();
        self.database = Some(identity.database.clone());
        Ok(())
    }

    /// COM_RESET_CONNECTION: drops session variables, temporary tables,
    /// user variables, prepared statements and open transactions. The
    /// current database is kept by the server but silo stops trusting it.
    ///
    /// # Errors
    /// The server refused, or the connection broke.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.database = None;
        self.forget_session();
        self.command(COM_RESET_CONNECTION, &[]).await
    }

    /// The server is about to drop this connection's session state.
    fn forget_session(&mut self) {
        self.tracking = false;
        self.vars.clear();
        self.statements.clear();
        self.last_insert_id = 0;
    }

    /// Whether [`BackendConn::sync`] would send nothing.
    pub fn in_sync(&self, vars: &SessionVars, schema: &str) -> bool {
        self.tracking && self.vars == *vars && (schema.is_empty() || self.database_is(schema))
    }

    /// Brings the session to what a client expects: tracking on, the
    /// client's variables, its schema. Everything needed goes out in one
    /// write and is answered in one round trip; nothing is sent when the
    /// connection already matches.
    ///
    /// # Errors
    /// The server refused a step (its error is the client's answer), or the
    /// connection broke. Either way the connection's state is unknown.
    pub async fn sync(&mut self, vars: &SessionVars, schema: &str) -> Result<(), BackendError> {
        let setup = !self.tracking;
        let replay = replay_statement(vars, &self.vars, &self.baseline);
        let init_db = !schema.is_empty() && !self.database_is(schema);
        if !setup && replay.is_none() && !init_db {
            return Ok(());
        }
        let mut out = BytesMut::new();
        if setup {
            packet::write_command(&mut out, COM_QUERY, TRACKING_SETUP.as_bytes());
        }
        if let Some(sql) = &replay {
            packet::write_command(&mut out, COM_QUERY, sql.as_bytes());
        }
        if init_db {
            packet::write_command(&mut out, COM_INIT_DB, schema.as_bytes());
        }
        // Only a schema change leaves the database unknown until answered:
        // the other steps do not touch it.
        if init_db {
            self.database = None;
        }
        self.stream.write_all(&out).await?;
        // Every reply is read, even after a refusal, so none is left behind.
        let mut outcome = Ok(());
        if setup {
            match self.read_ok().await {
                Ok(reply) => {
                    let mut baseline = SessionVars::default();
                    if let Ok(ok) = OkPacket::parse(&reply) {
                        for item in ok.items() {
                            if let StateItem::SystemVariable { name, value } = item {
                                let _ = baseline.record(name, value);
                            }
                        }
                    }
                    self.baseline = baseline;
                    self.tracking = true;
                }
                Err(e) => outcome = Err(e),
            }
        }
        if replay.is_some() {
            match self.read_ok().await {
                Ok(_) => self.vars = vars.clone(),
                Err(e) => outcome = outcome.and(Err(e)),
            }
        }
        if init_db {
            match self.read_ok().await {
                Ok(_) => self.database = Some(schema.to_string()),
                Err(e) => outcome = outcome.and(Err(e)),
            }
        }
        outcome
    }

    /// Records what a relayed response reported about this connection.
    pub fn note_state(&mut self, vars: &SessionVars, schema: &str) {
        if self.vars != *vars {
            self.vars = vars.clone();
        }
        if !self.database_is(schema) {
            self.database = Some(schema.to_string());
        }
    }

    /// Prepares `key` on this connection (COM_STMT_PREPARE, metadata read
    /// and dropped) and caches it, closing what the cache evicts.
    ///
    /// # Errors
    /// The server refused the statement (its error is the client's answer),
    /// or the connection broke.
    pub async fn prepare(
        &mut self,
        key: &std::sync::Arc<StatementKey>,
        capacity: usize,
    ) -> Result<PrepareOk, BackendError> {
        self.send_command(COM_STMT_PREPARE, &key.sql).await?;
        let (_, first) = self.read_control_packet().await?;
        if first.first() == Some(&0xFF) {
            return Err(refused(&first));
        }
        let ok = PrepareOk::parse(&first).ok_or(ProtocolError::malformed("prepare reply"))?;
        let deprecate_eof = self.profile.deprecate_eof();
        let eof = |n: u16| usize::from(n > 0 && !deprecate_eof);
        let follow =
            usize::from(ok.params) + eof(ok.params) + usize::from(ok.columns) + eof(ok.columns);
        for _ in 0..follow {
            self.read_control_packet().await?;
        }
        let evicted = self
            .statements
            .insert(key.clone(), ok.statement_id, ok.params, capacity);
        for id in evicted {
            self.close_statement(id).await?;
        }
        Ok(ok)
    }

    /// COM_STMT_CLOSE (the server sends no reply).
    ///
    /// # Errors
    /// The connection broke.
    pub async fn close_statement(&mut self, id: u32) -> Result<(), BackendError> {
        self.send_command(COM_STMT_CLOSE, &id.to_le_bytes()).await
    }

    /// COM_STMT_RESET: drops a statement's cursor and long data.
    ///
    /// # Errors
    /// The server refused, or the connection broke.
    pub async fn reset_statement(&mut self, id: u32) -> Result<(), BackendError> {
        self.command(COM_STMT_RESET, &id.to_le_bytes()).await
    }

    async fn read_ok(&mut self) -> Result<BytesMut, BackendError> {
        let (_, reply) = self.read_control_packet().await?;
        match reply.first() {
            Some(0x00) => Ok(reply),
            Some(0xFF) => Err(refused(&reply)),
            _ => Err(ProtocolError::malformed("command reply").into()),
        }
    }

    /// Runs a statement that answers with OK or ERR (such as `KILL QUERY n`).
    ///
    /// # Errors
    /// The server refused, or the connection broke.
    pub async fn execute(&mut self, sql: &str) -> Result<(), BackendError> {
        self.command(COM_QUERY, sql.as_bytes()).await
    }

    /// Sends a command and reads its OK or ERR.
    async fn command(&mut self, command: u8, argument: &[u8]) -> Result<(), BackendError> {
        self.send_command(command, argument).await?;
        self.read_ok().await.map(drop)
    }

    async fn send_command(&mut self, command: u8, argument: &[u8]) -> Result<(), BackendError> {
        let mut out = BytesMut::with_capacity(HEADER_LEN + 1 + argument.len());
        packet::write_command(&mut out, command, argument);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Whether the connection is logged in as `identity`'s user (the
    /// database is checked separately: it may have been changed).
    pub fn matches(&self, identity: &Identity) -> bool {
        self.user == identity.user
    }

    pub fn database_is(&self, database: &str) -> bool {
        self.database.as_deref() == Some(database)
    }

    /// A cheap check that the server has not closed the connection while it
    /// sat idle (wait_timeout, restart, KILL).
    ///
    /// # Performance
    /// An idle connection has nothing to read; the event loop already knows
    /// whether the socket became readable (a closed connection is), so the
    /// system call that confirms it is only made then.
    pub fn is_alive(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if self.stream.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Makes the current worker's runtime watch this socket, if another did.
    ///
    /// # Errors
    /// The socket cannot be re-registered; the connection is then unusable.
    pub fn adopt(&mut self) -> Result<(), BackendError> {
        let here = crate::net::worker();
        if self.worker != here {
            crate::net::rebind(&mut self.stream)?;
            self.worker = here;
        }
        Ok(())
    }

    /// The worker runtime whose event loop watches the socket.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The socket and its read buffer, for the relay.
    pub fn io(&mut self) -> (&mut TcpStream, &mut BytesMut) {
        (&mut self.stream, &mut self.rbuf)
    }

    async fn write_control_packet(&mut self, seq: u8, payload: &[u8]) -> Result<(), BackendError> {
        let mut out = BytesMut::with_capacity(payload.len() + HEADER_LEN);
        packet::write_packet(&mut out, seq, payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads one small packet (login and control replies).
    async fn read_control_packet(&mut self) -> Result<(u8, BytesMut), BackendError> {
        loop {
            if let Some(packet) = packet::take_packet(&mut self.rbuf, MAX_CONTROL_PACKET)? {
                return Ok(packet);
            }
            self.rbuf.reserve(4096);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// How long this connection has existed.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

impl Drop for BackendConn {
    fn drop(&mut self) {
        // A polite COM_QUIT so the server does not log an aborted connection;
        // best effort, never blocking.
        let _ = self.stream.try_write(&[1, 0, 0, 0, COM_QUIT]);
    }
}

fn refused(payload: &[u8]) -> BackendError {
    match handshake::parse_err(payload) {
        Some((code, sqlstate, message)) => BackendError::Refused {
            code,
            sqlstate,
            message,
        },
        None => ProtocolError::malformed("ERR").into(),
    }
}
