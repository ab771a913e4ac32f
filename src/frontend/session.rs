//! One logged-in client: the command loop as explicit phases,
//! read → lease → sync → relay → give back or keep.
//!
//! COM_PING, COM_QUIT and COM_RESET_CONNECTION are answered here,
//! COM_CHANGE_USER and KILL on silo ids in `control.rs`; everything else is
//! relayed raw to a leased backend connection and the response streamed
//! back, its end found by the [`ResponseScanner`]. What the tenant's plan
//! and status allow is checked in `admission.rs`.
//!
//! In `transaction` mode a connection is leased for a command and given
//! back when its response ends, unless the server reported state silo
//! cannot replay ([`SessionState::pins`]): then it stays with the client
//! until the state is gone. Variables and schema the client changed are
//! replayed on the next connection it leases. In `session` mode the lease
//! simply lasts as long as the client. Prepared statements (their ids are
//! silo's) live in `statements.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Buf;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use super::Context;
use super::login::{self, LoggedIn, MAX_LOGIN_PACKET};
use super::registry::{BackendTarget, SessionHandle};
use super::session_state::{ResponseNotes, SessionState};
use super::stream::{ClientConn, PacketError};
use crate::backend::connection::Profile;
use crate::backend::fair::WaitKey;
use crate::backend::pins::{PinReason, Pins};
use crate::backend::{BackendError, Lease, Pool};
use crate::config::PoolMode;
use crate::limits::{ClientSlot, LeaseSlot, TenantLive};
use crate::metrics::{LoginResult, TenantSeries};
use crate::protocol::auth;
use crate::protocol::command::{
    self, COM_QUERY, COM_SET_OPTION, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH,
    COM_STMT_PREPARE, COM_STMT_RESET, COM_STMT_SEND_LONG_DATA, CommandKind, Kill, MAX_KILL_LEN,
};
use crate::protocol::packet::{self, HEADER_LEN};
use crate::protocol::response::{Progress, RequestScanner, ResponseScanner};
use crate::protocol::session_track::OkPacket;
use crate::protocol::sql::SqlTraits;
use crate::protocol::{ProtocolError, ServerError};
use crate::routing::TenantRoute;

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    End,
}

/// Read buffers grow by this much when they run low.
const READ_CHUNK: usize = 64 * 1024;
/// Statements longer than this are relayed without a look at their text
/// (the server's own report still pins what it reports).
const MAX_CLASSIFIED: usize = 1 << 20;

pub struct Session {
    pub(super) ctx: Arc<Context>,
    pub(super) handle: Arc<SessionHandle>,
    pub(super) client: ClientConn,
    pub(super) tenant: Arc<TenantRoute>,
    pub(super) username: String,
    pub(super) capabilities: CapabilityFlags,
    pub(super) profile: Profile,
    pub(super) attributes: std::collections::HashMap<String, String>,
    pub(super) sni: Option<String>,
    pub(super) scramble: [u8; auth::SCRAMBLE_LEN],
    pub(super) lease: Option<Lease>,
    /// The pool leases were last taken from (see [`Session::tenant_pool`]).
    pool: Option<Arc<Pool>>,
    /// Commands relayed on the current lease. A first command that could not
    /// be written may be retried on a fresh connection: nothing depends on
    /// the old one yet.
    pub(super) lease_commands: u64,
    /// Variables, schema, statements and what pins the session.
    pub(super) state: SessionState,
    /// Why the current lease is kept (empty: given back after the response).
    pub(super) pinned: Pins,
    /// The tenant's live usage and limits' state.
    pub(super) live: Arc<TenantLive>,
    /// Counts against `max_client_connections` while the session lives.
    pub(super) client_slot: ClientSlot,
    /// Counts against `max_backend_leases` while `lease` is held.
    pub(super) lease_slot: Option<LeaseSlot>,
    /// The route table the session's `tenant` was read from.
    pub(super) table_version: u64,
    /// The client reads session-state information in OK packets.
    pub(super) session_track: bool,
    /// Where this session's command and lease-wait times, bytes and
    /// logins are recorded; resolved once at login.
    pub(super) series: Arc<TenantSeries>,
    /// Bytes relayed since the last response ended, added to `series`
    /// then (one atomic add per response, not per packet).
    pub(super) relayed_from_client: u64,
    pub(super) relayed_to_client: u64,
}

impl Session {
    pub fn new(
        ctx: Arc<Context>,
        handle: Arc<SessionHandle>,
        client: ClientConn,
        login: LoggedIn,
    ) -> Self {
        handle.set_tenant(Some(login.tenant.id.clone()));
        handle.set_user(&login.username);
        let schema = login
            .database
            .unwrap_or_else(|| login.tenant.identity.database.clone());
        let live = ctx.tenants.of(&login.tenant.id);
        let series = ctx.metrics.tenant(&login.tenant);
        series.logins.count(LoginResult::Ok);
        let table_version = ctx.router.load().version;
        Self {
            ctx,
            handle,
            client,
            tenant: login.tenant,
            username: login.username,
            session_track: login
                .capabilities
                .contains(CapabilityFlags::CLIENT_SESSION_TRACK),
            capabilities: login.capabilities,
            profile: login.profile,
            attributes: login.attributes,
            sni: login.sni,
            scramble: login.scramble,
            lease: None,
            pool: None,
            lease_commands: 0,
            state: SessionState::new(schema),
            pinned: Pins::default(),
            live,
            client_slot: login.client_slot,
            lease_slot: None,
            table_version,
            series,
            relayed_from_client: 0,
            relayed_to_client: 0,
        }
        .with_plan_vars()
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
                    let error = ServerError::for_bad_packet(&e);
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
        self.flush_relayed();
    }

    /// Adds the bytes relayed since the last call to the tenant's counters.
    pub(super) fn flush_relayed(&mut self) {
        self.series
            .add_bytes(self.relayed_from_client, self.relayed_to_client);
        self.relayed_from_client = 0;
        self.relayed_to_client = 0;
    }

    /// Waits for a command's header and first byte; `None` when the
    /// session must end first: killed, or silo is shutting down and the
    /// session holds nothing on a backend.
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
            if self.handle.is_killed() || self.may_close_for_shutdown() {
                return Ok(None);
            }
            tokio::select! {
                biased;
                () = self.handle.interrupted() => {}
                filled = self.client.fill() => filled?,
            }
        }
    }

    /// During a shutdown, a session waiting for a command may end unless it
    /// holds state on its backend connection (a transaction, locks, ...):
    /// such a client can still finish, e.g. COMMIT, until the deadline.
    fn may_close_for_shutdown(&self) -> bool {
        self.ctx.registry.is_closing() && self.state.pins().is_empty()
    }

    async fn next_command(&mut self) -> Result<Flow, PacketError> {
        let head = match self.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => {
                // Killed or shut down while idle: the ERR is read as the
                // answer to the client's next command, then the connection
                // closes. A bare close would only say "gone away"; the ERR
                // says why.
                let error = if self.handle.is_killed() {
                    self.refresh_route()
                        .err()
                        .unwrap_or_else(ServerError::connection_killed)
                } else {
                    debug!(
                        conn = self.handle.id,
                        "silo is shutting down: closing the idle session"
                    );
                    ServerError::server_shutdown()
                };
                self.client.send_error(1, &error).await;
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
        if let Err(error) = self.refresh_route() {
            info!(conn = self.handle.id, tenant = %self.tenant.id, "tenant no longer served; ending the session");
            self.client.send_error(1, &error).await;
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
                // Boxed: rare, and its state would otherwise enlarge every
                // idle session.
                Box::pin(self.change_user(&payload)).await
            }
            CommandKind::ProcessKill => {
                let (_, payload) = self.client.read_packet(64).await?;
                let id = payload
                    .get(1..5)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes);
                match id {
                    Some(id) => Box::pin(self.kill(Kill::Connection(u64::from(id)))).await,
                    None => self.reply_error(&ServerError::malformed_packet()).await,
                }
            }
            CommandKind::ResetConnection => {
                // The server-side session goes with the lease (reset before
                // reuse); silo's record of it is dropped with it.
                self.skip_command().await?;
                self.end_lease();
                self.state.reset();
                self.reply_ok().await
            }
            CommandKind::Unsupported => self.refuse(&ServerError::unknown_command(cmd)).await,
            CommandKind::ResultSets if cmd == COM_QUERY && len <= MAX_KILL_LEN + 1 => {
                self.fill_packet(len).await?;
                match command::parse_kill(self.command_text(len)) {
                    Some(kill) => {
                        self.client.rbuf.advance(HEADER_LEN + len);
                        Box::pin(self.kill(kill)).await
                    }
                    None => self.relay_query(len).await,
                }
            }
            _ if cmd == COM_QUERY => self.relay_query(len).await,
            _ if cmd == COM_STMT_PREPARE => self.prepare(len).await,
            _ if cmd == COM_STMT_EXECUTE => self.execute(len).await,
            _ if cmd == COM_STMT_SEND_LONG_DATA => self.send_long_data().await,
            _ if cmd == COM_STMT_CLOSE => self.close_statement().await,
            _ if cmd == COM_STMT_RESET => self.reset_statement().await,
            _ if cmd == COM_STMT_FETCH => self.fetch().await,
            kind => {
                let flow = self.relay(kind, &SqlTraits::default()).await?;
                if cmd == COM_SET_OPTION {
                    // Multi-statements on or off: connection state.
                    self.state.mark_unknown();
                }
                self.settle();
                Ok(flow)
            }
        }
    }

    /// COM_QUERY: its text is read for what the server does not report.
    async fn relay_query(&mut self, len: usize) -> Result<Flow, PacketError> {
        if let Err(error) = self.admit_query().await {
            return self.refuse(&error).await;
        }
        let traits = if len < MAX_CLASSIFIED {
            self.fill_packet(len).await?;
            SqlTraits::of(self.command_text(len))
        } else {
            SqlTraits::default()
        };
        let flow = self.relay(CommandKind::ResultSets, &traits).await?;
        self.settle();
        Ok(flow)
    }

    /// Waits until the whole packet of `len` bytes is buffered.
    pub(super) async fn fill_packet(&mut self, len: usize) -> Result<(), PacketError> {
        while self.client.rbuf.len() < HEADER_LEN + len {
            self.client.fill().await?;
        }
        Ok(())
    }

    /// Discards the client's current command, however long.
    pub(super) async fn skip_command(&mut self) -> Result<(), PacketError> {
        let mut scanner = RequestScanner::command();
        loop {
            match scanner.scan(&self.client.rbuf) {
                // The request scanner only ever says Done or NeedMore.
                Progress::Done { end }
                | Progress::LocalInfile { end }
                | Progress::Tracked { end, .. } => {
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

    pub(super) async fn reply_ok(&mut self) -> Result<Flow, PacketError> {
        self.client.queue_packet(1, &login::ok_payload());
        self.client.flush().await?;
        Ok(Flow::Continue)
    }

    /// Discards the current command and answers it with `error`.
    pub(super) async fn refuse(&mut self, error: &ServerError) -> Result<Flow, PacketError> {
        self.skip_command().await?;
        self.reply_error(error).await
    }

    /// The text of the current command (after its command byte), once
    /// [`Session::fill_packet`] buffered its `len` bytes.
    pub(super) fn command_text(&self, len: usize) -> &[u8] {
        self.client
            .rbuf
            .get(HEADER_LEN + 1..HEADER_LEN + len)
            .unwrap_or_default()
    }

    /// Answers the current command with `error`, ending the session when
    /// the error says the connection is gone.
    pub(super) async fn reply_error(&mut self, error: &ServerError) -> Result<Flow, PacketError> {
        self.client.queue_error(1, error);
        self.client.flush().await?;
        Ok(if error.ends_connection() {
            Flow::End
        } else {
            Flow::Continue
        })
    }

    /// Leases a backend connection for this client's tenant and brings it
    /// to the client's session (variables, schema).
    pub(super) async fn acquire(&mut self) -> Result<(), ServerError> {
        let Some(pool) = self.tenant_pool() else {
            warn!(tenant = %self.tenant.id, backend = self.tenant.backend, "tenant routed to an unknown backend");
            return Err(ServerError::backend_unavailable(self.tenant.slug()));
        };
        // The route the lease was asked under: the gate may pick up a new one.
        let route = Arc::clone(&self.tenant);
        let asked = std::time::Instant::now();
        let slot = self
            .lease_gate()
            .await
            .inspect_err(|_| self.series.lease_wait.observe(asked.elapsed()))?;
        let key = WaitKey {
            tenant: self.tenant.id.0.clone(),
            weight: self.tenant.limits.weight,
        };
        let leased = pool
            .lease_for(&key, &route.identity, self.profile, self.ctx.lease_timeout)
            .await;
        self.series.lease_wait.observe(asked.elapsed());
        let mut lease = leased.map_err(|e| self.backend_error(&e))?;
        pool.stats.pins.count_lease();
        self.live.pins.count_lease();
        let conn = lease.conn();
        let synced = if conn.in_sync(&self.state.vars, &self.state.schema) {
            Ok(())
        } else {
            // Boxed: only allocated when something must be sent, and its
            // state would otherwise enlarge every idle session.
            Box::pin(conn.sync(&self.state.vars, &self.state.schema)).await
        };
        if let Err(e) = synced {
            lease.discard();
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
        }));
        self.lease = Some(lease);
        self.lease_slot = Some(slot);
        self.lease_commands = 0;
        Ok(())
    }

    /// The pool of the tenant's backend, kept between leases and looked up
    /// again only when the tenant moved or the pool drains (a replaced pool
    /// does), so a transaction-mode command does not search the pool map.
    fn tenant_pool(&mut self) -> Option<Arc<Pool>> {
        if let Some(pool) = &self.pool
            && pool.backend().id == self.tenant.backend
            && !pool.is_draining()
        {
            return Some(Arc::clone(pool));
        }
        self.pool = self.ctx.pools.get(self.tenant.backend);
        self.pool.clone()
    }

    /// Brings a kept (pinned) connection in line with the session again
    /// when silo changed what it should be (the plan's statement time cap).
    pub(super) async fn sync_lease(&mut self) -> Result<(), ServerError> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        let conn = lease.conn();
        if conn.in_sync(&self.state.vars, &self.state.schema) {
            return Ok(());
        }
        match Box::pin(conn.sync(&self.state.vars, &self.state.schema)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = self.backend_error(&e);
                self.drop_lease();
                Err(error)
            }
        }
    }

    /// Makes sure a connection is leased (and in sync).
    pub(super) async fn ensure_lease(&mut self) -> Result<(), ServerError> {
        if self.lease.is_none() {
            self.acquire().await?;
        }
        Ok(())
    }

    /// What the client is told about a backend failure; details go to the log.
    pub(super) fn backend_error(&self, e: &BackendError) -> ServerError {
        let slug = self.tenant.slug();
        match e {
            BackendError::Draining(backend) => {
                info!(
                    conn = self.handle.id,
                    tenant = slug,
                    backend,
                    "backend draining: lease refused"
                );
                ServerError::backend_draining(slug)
            }
            // The transition was logged once by the health checker.
            BackendError::Down(backend) => {
                debug!(
                    conn = self.handle.id,
                    tenant = slug,
                    backend,
                    "backend down: lease refused"
                );
                ServerError::backend_down(slug)
            }
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
            BackendError::Refused {
                code,
                sqlstate,
                message,
            } => ServerError::new(*code, sqlstate, message.clone()),
            other => {
                warn!(conn = self.handle.id, tenant = slug, error = %other, "backend unavailable");
                ServerError::backend_unavailable(slug)
            }
        }
    }

    /// Relays one command and its whole response, then decides whether the
    /// connection stays with the client.
    pub(super) async fn relay(
        &mut self,
        kind: CommandKind,
        traits: &SqlTraits,
    ) -> Result<Flow, PacketError> {
        // A new lease is synced as it is taken; a kept one may lag behind.
        let ready = if self.lease.is_none() {
            self.acquire().await
        } else {
            self.sync_lease().await
        };
        if let Err(error) = ready {
            return self.refuse(&error).await;
        }
        if let Err(error) = self.replay_insert_id(traits).await {
            return self.refuse(&error).await;
        }
        match self.forward_command(true).await? {
            Flow::Continue => {}
            Flow::End => return Ok(Flow::End),
        }
        self.relay_after_forward(kind, traits)
            .await
            .map(|(flow, _)| flow)
    }

    /// LAST_INSERT_ID() belongs to the connection: before a statement that
    /// calls it runs on a connection whose value is not the client's, the
    /// client's is set there (`DO LAST_INSERT_ID(n)`, 0 for none).
    pub(super) async fn replay_insert_id(&mut self, traits: &SqlTraits) -> Result<(), ServerError> {
        let wanted = self.state.last_insert_id;
        if !traits.last_insert_id {
            return Ok(());
        }
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        let conn = lease.conn();
        if conn.last_insert_id == wanted {
            return Ok(());
        }
        match conn.execute(&format!("DO LAST_INSERT_ID({wanted})")).await {
            Ok(()) => {
                conn.last_insert_id = wanted;
                Ok(())
            }
            Err(e) => {
                let error = self.backend_error(&e);
                self.drop_lease();
                Err(error)
            }
        }
    }

    /// The response part of [`Session::relay`], for callers that forwarded
    /// the command themselves. Returns the status the response ended with.
    pub(super) async fn relay_after_forward(
        &mut self,
        kind: CommandKind,
        traits: &SqlTraits,
    ) -> Result<(Flow, Option<StatusFlags>), PacketError> {
        self.lease_commands += 1;
        let Some(mut scanner) = ResponseScanner::for_command(kind, self.profile.deprecate_eof())
        else {
            self.flush_relayed();
            self.settle();
            return Ok((Flow::Continue, None));
        };
        let mut notes = ResponseNotes::default();
        let started = std::time::Instant::now();
        let flow = self.relay_response(&mut scanner, &mut notes).await?;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.live.query_time_us.fetch_add(us, Ordering::Relaxed);
        self.series.query_duration.observe_us(us);
        self.flush_relayed();
        if flow == Flow::End {
            return Ok((flow, None));
        }
        let status = scanner.final_status();
        self.state.on_response_end(status, traits, &notes);
        // Recorded as the server has it; the plan's cap is put back (and
        // sent before the next statement) if the client lifted it.
        if notes.tracked {
            if let Some(lease) = self.lease.as_mut() {
                lease
                    .conn()
                    .note_state(&self.state.vars, &self.state.schema);
            }
            self.apply_plan_vars();
        }
        if scanner.insert_id() != 0 {
            self.state.last_insert_id = scanner.insert_id();
            if let Some(lease) = self.lease.as_mut() {
                lease.conn().last_insert_id = scanner.insert_id();
            }
        }
        Ok((flow, status))
    }

    /// After a response: keeps the connection while the session holds state
    /// on it, gives it back otherwise, and counts what pins it.
    pub(super) fn settle(&mut self) {
        let Some(lease) = self.lease.as_ref() else {
            self.pinned = Pins::default();
            return;
        };
        // Session mode keeps the connection for the session's life, but not
        // on a backend the tenant was moved away from or that is draining:
        // without real state on it the session follows, as a transaction
        // mode one does.
        let pool = lease.pool();
        let stays = pool.backend().id == self.tenant.backend && !pool.is_draining();
        let pins = self.state.pins().with(
            PinReason::SessionMode,
            self.tenant.pool_mode == PoolMode::Session && stays,
        );
        let added = pins.added_since(self.pinned);
        if !added.is_empty() {
            debug!(conn = self.handle.id, tenant = %self.tenant.id, reasons = %added, "session pinned to its backend connection");
            let backend = &lease.pool().stats.pins;
            backend.count_pins(added);
            self.live.pins.count_pins(added);
            if self.pinned.is_empty() {
                backend.pinned.fetch_add(1, Ordering::Relaxed);
                self.live.pins.pinned.fetch_add(1, Ordering::Relaxed);
            }
        }
        if pins.is_empty() {
            self.let_go(Lease::give_back);
        }
        self.pinned = pins;
    }

    fn unpin_gauges(&mut self) {
        if self.pinned.is_empty() {
            return;
        }
        if let Some(lease) = self.lease.as_ref() {
            lease
                .pool()
                .stats
                .pins
                .pinned
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.live.pins.pinned.fetch_sub(1, Ordering::Relaxed);
        self.pinned = Pins::default();
    }

    /// Streams the client's command to the backend. A command whose first
    /// write fails on a connection that served nothing yet is sent again on a
    /// fresh connection, once (when `may_retry`); otherwise the client gets
    /// an error.
    pub(super) async fn forward_command(&mut self, may_retry: bool) -> Result<Flow, PacketError> {
        let retry = may_retry && self.lease_commands == 0;
        self.forward_from_client(RequestScanner::command(), retry)
            .await
    }

    /// Relays the client's LOCAL INFILE file (packets up to an empty one).
    async fn forward_infile(&mut self) -> Result<Flow, PacketError> {
        self.forward_from_client(RequestScanner::infile(), false)
            .await
    }

    /// Streams client packets to the backend until `scanner` says they end.
    pub(super) async fn forward_from_client(
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
                Progress::Tracked { end, .. } => (end, true),
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
                self.relayed_from_client += n as u64;
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

    /// Streams the backend's response to the client until its end, reading
    /// the session state the server reports on the way.
    async fn relay_response(
        &mut self,
        scanner: &mut ResponseScanner,
        notes: &mut ResponseNotes,
    ) -> Result<Flow, PacketError> {
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
            if let Progress::Tracked { at, end, last } = progress {
                let before = buf.get(..at).unwrap_or_default();
                let packet = buf.get(at..end).unwrap_or_default();
                let seq = packet.get(3).copied().unwrap_or_default();
                let payload = packet.get(HEADER_LEN..).unwrap_or_default();
                self.client.queue_raw(before);
                match OkPacket::parse(payload) {
                    Ok(ok) => {
                        notes.tracked = true;
                        self.state.on_ok(&ok, notes);
                        if self.session_track {
                            self.client.queue_raw(packet);
                        } else {
                            ok.write_without_state(payload, seq, self.client.wbuf());
                        }
                    }
                    Err(_) => self.client.queue_raw(packet),
                }
                buf.advance(end);
                self.relayed_to_client += end as u64;
                if let Err(e) = self.client.flush().await {
                    self.drop_lease();
                    return Err(e.into());
                }
                forwarded = true;
                if last {
                    return Ok(Flow::Continue);
                }
                continue;
            }
            let n = match progress {
                Progress::NeedMore { forward } => forward,
                Progress::Done { end } | Progress::LocalInfile { end } => end,
                Progress::Tracked { .. } => 0,
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
                self.relayed_to_client += n as u64;
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
                Progress::NeedMore { .. } | Progress::Tracked { .. } => {}
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
    pub(super) async fn lose_backend(&mut self, forwarded: bool) -> Flow {
        self.drop_lease();
        if !forwarded {
            self.client
                .send_error(1, &ServerError::backend_lost())
                .await;
        }
        Flow::End
    }

    pub(super) fn drop_lease(&mut self) {
        self.let_go(Lease::discard);
    }

    /// Gives the backend connection back at the end of the client's use of
    /// it: as is when its session holds only what silo replays, else reset
    /// before reuse.
    pub(super) fn end_lease(&mut self) {
        if self.state.pins().is_empty() {
            self.let_go(Lease::give_back);
        } else {
            self.let_go(Lease::release);
        }
    }

    /// Ends the lease with `end` (give back, reset, or close), and what
    /// counted it: pin gauges, the session's backend, the lease slot.
    fn let_go(&mut self, end: fn(Lease)) {
        self.unpin_gauges();
        self.handle.set_backend(None);
        if let Some(lease) = self.lease.take() {
            end(lease);
        }
        self.lease_slot = None;
    }
}
