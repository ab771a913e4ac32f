//! One logged-in client: the command loop as explicit phases,
//! read → (lease) → relay → (release at the end of the session).
//!
//! Commands silo owns (COM_PING, COM_QUIT, COM_CHANGE_USER, KILL on silo ids)
//! are answered here; everything else is relayed raw to the leased backend
//! connection and the response streamed back, its end found by the
//! [`ResponseScanner`]. In `session` mode the lease is taken at the first
//! command that needs a backend and held until the client leaves; the
//! lease/release seam is where `transaction` mode will hand connections back
//! after each response.

use std::sync::Arc;

use bytes::Buf;
use mysql_common::constants::CapabilityFlags;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use super::Context;
use super::login::{self, Credentials, LoggedIn, MAX_LOGIN_PACKET};
use super::registry::{BackendTarget, SessionHandle};
use super::stream::{ClientConn, PacketError};
use crate::backend::connection::Profile;
use crate::backend::{BackendConn, BackendError, Lease};
use crate::protocol::auth;
use crate::protocol::command::{self, COM_QUERY, CommandKind, Kill, MAX_KILL_LEN};
use crate::protocol::error_code::sanitize;
use crate::protocol::handshake;
use crate::protocol::packet::{self, HEADER_LEN};
use crate::protocol::response::{Progress, RequestScanner, ResponseScanner};
use crate::protocol::{ProtocolError, ServerError};
use crate::routing::TenantRoute;

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    End,
}

/// Read buffers grow by this much when they run low.
const READ_CHUNK: usize = 64 * 1024;

pub struct Session {
    ctx: Arc<Context>,
    handle: Arc<SessionHandle>,
    client: ClientConn,
    tenant: Arc<TenantRoute>,
    username: String,
    capabilities: CapabilityFlags,
    profile: Profile,
    database: Option<String>,
    attributes: std::collections::HashMap<String, String>,
    sni: Option<String>,
    scramble: [u8; auth::SCRAMBLE_LEN],
    lease: Option<Lease>,
    /// Commands relayed on the current lease. A first command that could not
    /// be written may be retried on a fresh connection: nothing depends on
    /// the old one yet.
    lease_commands: u64,
}

impl Session {
    pub fn new(
        ctx: Arc<Context>,
        handle: Arc<SessionHandle>,
        client: ClientConn,
        login: LoggedIn,
    ) -> Self {
        handle.set_tenant(Some(login.tenant.id.clone()));
        Self {
            ctx,
            handle,
            client,
            tenant: login.tenant,
            username: login.username,
            capabilities: login.capabilities,
            profile: login.profile,
            database: login.database,
            attributes: login.attributes,
            sni: login.sni,
            scramble: login.scramble,
            lease: None,
            lease_commands: 0,
        }
    }

    /// Serves commands until the client quits, is killed, or fails.
    pub async fn run(mut self) {
        loop {
            match self.next_command().await {
                Ok(Flow::Continue) => {}
                Ok(Flow::End) => break,
                Err(PacketError::Closed) => break,
                Err(PacketError::Protocol(e)) => {
                    info!(conn = self.handle.id, error = %e, "bad packet from the client; closing");
                    let error = match e {
                        ProtocolError::TooLarge { .. } => ServerError::packet_too_large(),
                        _ => ServerError::malformed_packet(),
                    };
                    self.client.send_error(1, &error).await;
                    break;
                }
                Err(e) => {
                    debug!(conn = self.handle.id, error = %e, "client connection ended");
                    break;
                }
            }
        }
        self.end_lease();
    }

    /// Waits for a command's header and first byte, or a kill.
    async fn read_head(&mut self) -> Result<Option<(usize, u8, u8)>, PacketError> {
        loop {
            if let Some((len, seq)) = packet::header(&self.client.rbuf) {
                if let Some(&cmd) = self.client.rbuf.get(HEADER_LEN) {
                    return Ok(Some((len, seq, cmd)));
                }
                if len == 0 {
                    return Err(ProtocolError::EmptyCommand.into());
                }
            }
            tokio::select! {
                biased;
                () = self.handle.killed() => return Ok(None),
                filled = self.client.fill() => filled?,
            }
        }
    }

    async fn next_command(&mut self) -> Result<Flow, PacketError> {
        let head = match self.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => {
                // Killed while idle: the ERR is read as the answer to the
                // client's next command, then the connection closes.
                self.client
                    .send_error(1, &ServerError::connection_killed())
                    .await;
                return Ok(Flow::End);
            }
            Err(PacketError::Protocol(e)) => {
                info!(conn = self.handle.id, error = %e, "malformed command; closing");
                self.client
                    .send_error(1, &ServerError::malformed_packet())
                    .await;
                return Ok(Flow::End);
            }
            Err(e) => return Err(e),
        };
        let (len, seq, cmd) = head;
        if seq != 0 {
            info!(
                conn = self.handle.id,
                seq, "command with a non-zero sequence id; closing"
            );
            self.client
                .send_error(seq.wrapping_add(1), &ServerError::malformed_packet())
                .await;
            return Ok(Flow::End);
        }
        if self.handle.is_killed() {
            self.client
                .send_error(1, &ServerError::connection_killed())
                .await;
            return Ok(Flow::End);
        }
        match command::classify(cmd) {
            CommandKind::Quit => Ok(Flow::End),
            CommandKind::Ping => {
                self.skip_command().await?;
                self.reply_ok().await
            }
            CommandKind::ChangeUser => {
                let (_, payload) = self.client.read_packet(MAX_LOGIN_PACKET).await?;
                self.change_user(&payload).await
            }
            CommandKind::ProcessKill => {
                let (_, payload) = self.client.read_packet(64).await?;
                let id = payload
                    .get(1..5)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes);
                match id {
                    Some(id) => self.kill(Kill::Connection(u64::from(id))).await,
                    None => self.reply_error(&ServerError::malformed_packet()).await,
                }
            }
            CommandKind::ResetConnection if self.lease.is_none() => {
                self.skip_command().await?;
                self.reply_ok().await
            }
            CommandKind::Unsupported => {
                self.skip_command().await?;
                self.reply_error(&ServerError::unknown_command(cmd)).await
            }
            CommandKind::ResultSets if cmd == COM_QUERY && len <= MAX_KILL_LEN + 1 => {
                self.fill_packet(len).await?;
                let sql = self
                    .client
                    .rbuf
                    .get(HEADER_LEN + 1..HEADER_LEN + len)
                    .unwrap_or_default();
                match command::parse_kill(sql) {
                    Some(kill) => {
                        self.client.rbuf.advance(HEADER_LEN + len);
                        self.kill(kill).await
                    }
                    None => self.relay(CommandKind::ResultSets).await,
                }
            }
            kind => self.relay(kind).await,
        }
    }

    /// Waits until the whole packet of `len` bytes is buffered.
    async fn fill_packet(&mut self, len: usize) -> Result<(), PacketError> {
        while self.client.rbuf.len() < HEADER_LEN + len {
            self.client.fill().await?;
        }
        Ok(())
    }

    /// Discards the client's current command, however long.
    async fn skip_command(&mut self) -> Result<(), PacketError> {
        let mut scanner = RequestScanner::command();
        loop {
            match scanner.scan(&self.client.rbuf) {
                // The request scanner never asks for a file; both mean "ends here".
                Progress::Done { end } | Progress::LocalInfile { end } => {
                    self.client.rbuf.advance(end);
                    return Ok(());
                }
                Progress::NeedMore { forward } => {
                    self.client.rbuf.advance(forward);
                    self.client.fill().await?;
                }
            }
        }
    }

    async fn reply_ok(&mut self) -> Result<Flow, PacketError> {
        self.client.queue_packet(1, &login::ok_payload());
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    async fn reply_error(&mut self, error: &ServerError) -> Result<Flow, PacketError> {
        self.client.queue_error(1, error);
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    /// Leases a backend connection for this client's tenant.
    async fn acquire(&mut self) -> Result<(), ServerError> {
        let Some(pool) = self.ctx.pools.get(self.tenant.backend) else {
            warn!(tenant = %self.tenant.id, backend = self.tenant.backend, "tenant routed to an unknown backend");
            return Err(ServerError::backend_unavailable(self.tenant.slug()));
        };
        let identity = self.tenant.identity.clone();
        let mut lease = pool
            .lease(&identity, self.profile, self.ctx.lease_timeout)
            .await
            .map_err(|e| self.backend_error(&e))?;
        if let Some(db) = self
            .database
            .as_deref()
            .filter(|db| *db != identity.database)
            && let Err(e) = lease.conn().init_db(db).await
        {
            lease.release();
            return Err(match e {
                BackendError::Refused {
                    code,
                    sqlstate,
                    message,
                } => ServerError::new(code, &sqlstate, message),
                other => self.backend_error(&other),
            });
        }
        let conn = lease.conn();
        self.handle.set_backend(Some(BackendTarget {
            backend_id: conn.backend_id,
            thread_id: conn.thread_id,
            identity,
        }));
        self.lease = Some(lease);
        self.lease_commands = 0;
        Ok(())
    }

    /// What the client is told about a backend failure; details go to the log.
    fn backend_error(&self, e: &BackendError) -> ServerError {
        let slug = self.tenant.slug();
        match e {
            BackendError::LeaseTimeout { waited_ms } => {
                info!(
                    conn = self.handle.id,
                    tenant = slug,
                    waited_ms,
                    "no backend connection became free"
                );
                ServerError::lease_timeout(*waited_ms)
            }
            BackendError::Refused { code, .. } if e.is_access_denied() => {
                warn!(
                    conn = self.handle.id,
                    tenant = slug,
                    code,
                    "backend refused the tenant's database credentials"
                );
                ServerError::backend_login_failed(slug)
            }
            other => {
                warn!(conn = self.handle.id, tenant = slug, error = %other, "backend unavailable");
                ServerError::backend_unavailable(slug)
            }
        }
    }

    /// Relays one command and its whole response.
    async fn relay(&mut self, kind: CommandKind) -> Result<Flow, PacketError> {
        if self.lease.is_none()
            && let Err(error) = self.acquire().await
        {
            self.skip_command().await?;
            return self.reply_error(&error).await;
        }
        match self.forward_command().await? {
            Flow::Continue => {}
            Flow::End => return Ok(Flow::End),
        }
        self.lease_commands += 1;
        let Some(mut scanner) = ResponseScanner::for_command(kind, self.profile.deprecate_eof())
        else {
            return Ok(Flow::Continue);
        };
        self.relay_response(&mut scanner).await
    }

    /// Streams the client's command to the backend. A command whose first
    /// write fails on a connection that served nothing yet is sent again on a
    /// fresh connection, once; otherwise the client gets an error.
    async fn forward_command(&mut self) -> Result<Flow, PacketError> {
        let retry = self.lease_commands == 0;
        self.forward_from_client(RequestScanner::command(), retry)
            .await
    }

    /// Relays the client's LOCAL INFILE file (packets up to an empty one).
    async fn forward_infile(&mut self) -> Result<Flow, PacketError> {
        self.forward_from_client(RequestScanner::infile(), false)
            .await
    }

    /// Streams client packets to the backend until `scanner` says they end.
    async fn forward_from_client(
        &mut self,
        mut scanner: RequestScanner,
        mut may_retry: bool,
    ) -> Result<Flow, PacketError> {
        let fresh = scanner.clone();
        let mut written = false;
        loop {
            let (n, done) = match scanner.scan(&self.client.rbuf) {
                Progress::NeedMore { forward } => (forward, false),
                Progress::Done { end } | Progress::LocalInfile { end } => (end, true),
            };
            if n > 0 {
                let Some(lease) = self.lease.as_mut() else {
                    return Ok(Flow::End);
                };
                let (stream, _) = lease.conn().io();
                let chunk = self.client.rbuf.get(..n).unwrap_or_default();
                if let Err(e) = stream.write_all(chunk).await {
                    self.drop_lease();
                    if may_retry && !written && done {
                        may_retry = false;
                        debug!(conn = self.handle.id, error = %e, "backend write failed before the command reached it; retrying on a fresh connection");
                        if let Err(error) = self.acquire().await {
                            self.client.rbuf.advance(n);
                            return self.reply_error(&error).await;
                        }
                        scanner = fresh.clone();
                        continue;
                    }
                    info!(conn = self.handle.id, tenant = %self.tenant.id, error = %e, "backend connection lost while sending");
                    self.client
                        .send_error(1, &ServerError::backend_lost())
                        .await;
                    return Ok(Flow::End);
                }
                self.client.rbuf.advance(n);
                written = true;
            }
            if done {
                return Ok(Flow::Continue);
            }
            if let Err(e) = self.client.fill().await {
                // The backend holds half a command: its connection is useless.
                self.drop_lease();
                return Err(e);
            }
        }
    }

    /// Streams the backend's response to the client until its end.
    async fn relay_response(&mut self, scanner: &mut ResponseScanner) -> Result<Flow, PacketError> {
        let mut forwarded = false;
        loop {
            let Some(lease) = self.lease.as_mut() else {
                return Ok(Flow::End);
            };
            let (stream, buf) = lease.conn().io();
            let progress = match scanner.scan(buf) {
                Ok(p) => p,
                Err(e) => {
                    warn!(conn = self.handle.id, tenant = %self.tenant.id, error = %e, "unexpected response from the backend; closing");
                    return Ok(self.lose_backend(forwarded).await);
                }
            };
            let n = match progress {
                Progress::NeedMore { forward } => forward,
                Progress::Done { end } | Progress::LocalInfile { end } => end,
            };
            if n > 0 {
                if let Err(e) = self
                    .client
                    .write_through(buf.get(..n).unwrap_or_default())
                    .await
                {
                    self.drop_lease();
                    return Err(e.into());
                }
                buf.advance(n);
                forwarded = true;
            }
            match progress {
                Progress::Done { .. } => return Ok(Flow::Continue),
                Progress::LocalInfile { .. } => {
                    if self.forward_infile().await? == Flow::End {
                        return Ok(Flow::End);
                    }
                    scanner.resume_after_infile();
                    continue;
                }
                Progress::NeedMore { .. } => {}
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_CHUNK);
            }
            let read = crate::net::read_available(stream, buf).await;
            if !matches!(read, Ok(n) if n > 0) {
                info!(conn = self.handle.id, tenant = %self.tenant.id, "backend connection lost during a response");
                return Ok(self.lose_backend(forwarded).await);
            }
        }
    }

    /// Ends a session whose backend connection broke mid-response. The
    /// client is told why unless part of the response already reached it,
    /// in which case an ERR could not be told apart from the rows.
    async fn lose_backend(&mut self, forwarded: bool) -> Flow {
        self.drop_lease();
        if !forwarded {
            self.client
                .send_error(1, &ServerError::backend_lost())
                .await;
        }
        Flow::End
    }

    /// COM_CHANGE_USER: authenticate again and route to the (possibly new)
    /// tenant; the old backend connection is released and reset first.
    async fn change_user(&mut self, payload: &[u8]) -> Result<Flow, PacketError> {
        let parsed = match handshake::parse_change_user(
            payload.get(1..).unwrap_or_default(),
            self.capabilities,
        ) {
            Ok(p) => p,
            Err(_) => {
                self.client
                    .send_error(1, &ServerError::malformed_packet())
                    .await;
                return Ok(Flow::End);
            }
        };
        let mut seq = 1u8;
        let mut scramble = self.scramble;
        let token = if login::wants_switch(parsed.auth_plugin.as_deref(), self.capabilities) {
            scramble = match auth::new_scramble() {
                Ok(s) => s,
                Err(_) => {
                    self.client
                        .send_error(1, &ServerError::internal(u64::from(self.handle.id)))
                        .await;
                    return Ok(Flow::End);
                }
            };
            match login::switch_to_native(&mut self.client, &scramble, &mut seq).await {
                Ok(token) => token,
                Err(_) => return Ok(Flow::End),
            }
        } else {
            parsed.auth_response.clone()
        };
        let user = String::from_utf8_lossy(&parsed.user).into_owned();
        let database = parsed
            .database
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned());
        let attributes = if parsed.attributes.is_empty() {
            self.attributes.clone()
        } else {
            parsed.attributes.clone()
        };
        let result = login::authenticate(
            &self.ctx,
            &Credentials {
                user: &user,
                database: database.as_deref(),
                attributes: &attributes,
                sni: self.sni.as_deref(),
                scramble: &scramble,
                token: &token,
            },
        );
        match result {
            Ok((tenant, username)) => {
                self.end_lease();
                info!(conn = self.handle.id, from = %self.tenant.id, to = %tenant.id, "COM_CHANGE_USER");
                self.handle.set_tenant(Some(tenant.id.clone()));
                self.tenant = tenant;
                self.username = username;
                self.database = database;
                self.attributes = attributes;
                if let Some(c) = parsed.collation.and_then(|c| u8::try_from(c).ok()) {
                    self.profile = Profile::new(self.capabilities, c);
                }
                self.client.queue_packet(seq, &login::ok_payload());
                self.client.flush().await?;
                Ok(Flow::Continue)
            }
            Err(e) => {
                info!(conn = self.handle.id, user = %sanitize(user.as_bytes()), error = %e, "COM_CHANGE_USER refused; closing");
                if let Some(error) = e.to_server_error() {
                    self.client.send_error(seq, &error).await;
                }
                Ok(Flow::End)
            }
        }
    }

    /// `KILL [QUERY] <id>` and COM_PROCESS_KILL on silo connection ids. A
    /// client may only reach sessions of its own tenant; the running
    /// statement is stopped on the backend through a side connection.
    async fn kill(&mut self, kill: Kill) -> Result<Flow, PacketError> {
        let (target_id, query) = match kill {
            Kill::Connection(id) => (id, false),
            Kill::Query(id) => (id, true),
            Kill::Unsupported(what) => {
                return self.reply_error(&ServerError::kill_unsupported(what)).await;
            }
        };
        let target = u32::try_from(target_id)
            .ok()
            .and_then(|id| self.ctx.registry.get(id))
            .filter(|t| t.tenant().as_ref() == Some(&self.tenant.id));
        let Some(target) = target else {
            return self
                .reply_error(&ServerError::no_such_thread(target_id))
                .await;
        };
        if target.id == self.handle.id && !query {
            self.client
                .send_error(1, &ServerError::connection_killed())
                .await;
            return Ok(Flow::End);
        }
        if let Some(backend) = target.backend()
            && let Err(e) = self.kill_backend_query(&backend).await
        {
            warn!(conn = self.handle.id, target = target.id, error = %e, "could not stop the backend statement");
            return self.reply_error(&self.backend_error(&e)).await;
        }
        if !query {
            target.kill();
        }
        info!(conn = self.handle.id, target = target.id, query, "KILL");
        self.reply_ok().await
    }

    async fn kill_backend_query(&self, target: &BackendTarget) -> Result<(), BackendError> {
        let pool = self
            .ctx
            .pools
            .get(target.backend_id)
            .ok_or(BackendError::UnknownBackend(target.backend_id))?;
        let profile = Profile::new(CapabilityFlags::empty(), self.profile.collation);
        let mut side = BackendConn::connect(pool.backend(), &target.identity, profile).await?;
        match side
            .execute(&format!("KILL QUERY {}", target.thread_id))
            .await
        {
            // The statement already finished: nothing left to stop.
            Err(BackendError::Refused { code: 1094, .. }) => Ok(()),
            other => other,
        }
    }

    fn drop_lease(&mut self) {
        self.handle.set_backend(None);
        if let Some(lease) = self.lease.take() {
            lease.discard();
        }
    }

    /// Gives the backend connection back (reset before reuse).
    fn end_lease(&mut self) {
        self.handle.set_backend(None);
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}
