//! One logged-in client: the command loop as explicit phases,
//! read → lease → sync → relay → give back or keep.
//!
//! Commands silo owns (COM_PING, COM_QUIT, COM_CHANGE_USER,
//! COM_RESET_CONNECTION, KILL on silo ids) are answered here; everything
//! else is relayed raw to a leased backend connection and the response
//! streamed back, its end found by the [`ResponseScanner`].
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
use super::enforce::ended_status;
use super::login::{self, Credentials, LoggedIn, MAX_LOGIN_PACKET};
use super::registry::{BackendTarget, SessionHandle};
use super::session_state::{ResponseNotes, SessionState};
use super::stream::{ClientConn, PacketError};
use crate::backend::connection::Profile;
use crate::backend::fair::WaitKey;
use crate::backend::pins::{PinReason, Pins};
use crate::backend::{BackendConn, BackendError, Lease};
use crate::config::{PoolMode, TenantStatus};
use crate::limits::{ClientSlot, LeaseSlot, Refusal, TenantLive};
use crate::protocol::auth;
use crate::protocol::command::{
    self, COM_QUERY, COM_SET_OPTION, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH,
    COM_STMT_PREPARE, COM_STMT_RESET, COM_STMT_SEND_LONG_DATA, CommandKind, Kill, MAX_KILL_LEN,
};
use crate::protocol::error_code::sanitize;
use crate::protocol::handshake;
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

/// ER_CONNECTION_KILLED: the session ends after it is sent.
const KILLED: u16 = 1927;

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
    username: String,
    capabilities: CapabilityFlags,
    pub(super) profile: Profile,
    attributes: std::collections::HashMap<String, String>,
    sni: Option<String>,
    scramble: [u8; auth::SCRAMBLE_LEN],
    pub(super) lease: Option<Lease>,
    /// Commands relayed on the current lease. A first command that could not
    /// be written may be retried on a fresh connection: nothing depends on
    /// the old one yet.
    lease_commands: u64,
    /// Variables, schema, statements and what pins the session.
    pub(super) state: SessionState,
    /// Why the current lease is kept (empty: given back after the response).
    pinned: Pins,
    /// The tenant's live usage and limits' state.
    pub(super) live: Arc<TenantLive>,
    /// Counts against `max_client_connections` while the session lives.
    client_slot: ClientSlot,
    /// Counts against `max_backend_leases` while `lease` is held.
    lease_slot: Option<LeaseSlot>,
    /// The route table the session's `tenant` was read from.
    table_version: u64,
    /// The client reads session-state information in OK packets.
    session_track: bool,
}

impl Session {
    pub fn new(
        ctx: Arc<Context>,
        handle: Arc<SessionHandle>,
        client: ClientConn,
        login: LoggedIn,
    ) -> Self {
        handle.set_tenant(Some(login.tenant.id.clone()));
        let schema = login
            .database
            .unwrap_or_else(|| login.tenant.identity.database.clone());
        let live = ctx.tenants.of(&login.tenant.id);
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
            lease_commands: 0,
            state: SessionState::new(schema),
            pinned: Pins::default(),
            live,
            client_slot: login.client_slot,
            lease_slot: None,
            table_version,
        }
        .with_plan_vars()
    }

    /// Applies the plan's `max_query_time` as the session's
    /// `max_statement_time`, unless the client asked for less.
    fn with_plan_vars(mut self) -> Self {
        self.apply_plan_vars();
        self
    }

    fn apply_plan_vars(&mut self) {
        let Some(cap) = self.tenant.limits.max_statement_time() else {
            return;
        };
        let seconds = |v: &str| v.parse::<f64>().ok();
        let current = self.state.vars.get("max_statement_time").and_then(seconds);
        let cap_seconds = seconds(&cap).unwrap_or(0.0);
        // 0 means no limit to the server.
        if current.is_none_or(|c| c == 0.0 || c > cap_seconds) {
            let _ = self
                .state
                .vars
                .record(b"max_statement_time", cap.as_bytes());
        }
    }

    /// Picks up a new route table: the tenant's status, plan, backend. A
    /// tenant that is gone or no longer served ends the session.
    fn refresh_route(&mut self) -> Result<(), ServerError> {
        let table = self.ctx.router.load();
        if table.version == self.table_version {
            return Ok(());
        }
        let version = table.version;
        let Some(route) = table.tenant(self.tenant.slug()).cloned() else {
            return Err(ServerError::tenant_ended(self.tenant.slug(), "was removed"));
        };
        drop(table);
        if let Some(why) = ended_status(route.status) {
            // The version is not recorded: every later check fails too.
            return Err(ServerError::tenant_ended(route.slug(), why));
        }
        self.table_version = version;
        let limits_changed = route.limits != self.tenant.limits;
        self.tenant = route;
        if limits_changed {
            self.apply_plan_vars();
        }
        Ok(())
    }

    /// The per-query limits: daily quota, then rate (waiting up to the
    /// queue timeout).
    pub(super) async fn admit_query(&mut self) -> Result<(), ServerError> {
        let limits = &self.tenant.limits;
        let deadline = tokio::time::Instant::now() + limits.queue_timeout;
        let refused = match self.live.count_query(limits) {
            Ok(()) => self.live.take_rate(limits, deadline).await.err(),
            Err(refusal) => Some(refusal),
        };
        let Some(refusal) = refused else {
            return Ok(());
        };
        let limits = &self.tenant.limits;
        let (value, detail) = match refusal {
            Refusal::QueriesPerDay => (
                crate::limits::finite(limits.max_queries_per_day),
                "; the count starts again at 00:00 UTC",
            ),
            _ => (
                crate::limits::finite(limits.max_queries_per_second),
                "; retry later or ask for a larger plan",
            ),
        };
        info!(conn = self.handle.id, tenant = %self.tenant.id, limit = refusal.name(), "statement refused: limit reached");
        Err(ServerError::limit_reached(
            self.tenant.slug(),
            &limits.plan,
            refusal.name(),
            value.unwrap_or_default(),
            detail,
        ))
    }

    /// Before a new lease: waits while the tenant is paused, then for one
    /// of the tenant's `max_backend_leases`, both within the queue timeout.
    async fn lease_gate(&mut self) -> Result<LeaseSlot, ServerError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.tenant.limits.queue_timeout;
        while self.tenant.status == TenantStatus::Paused {
            let changed = self.live.wait_route_change(deadline).await;
            self.refresh_route()?;
            if !changed && self.tenant.status == TenantStatus::Paused {
                self.live.count_refusal(Refusal::Paused);
                return Err(ServerError::tenant_paused(
                    self.tenant.slug(),
                    started.elapsed().as_millis() as u64,
                ));
            }
        }
        let limits = &self.tenant.limits;
        self.live.lease_slot(limits, deadline).await.map_err(|_| {
            let max = crate::limits::finite(limits.max_backend_leases).unwrap_or_default();
            info!(conn = self.handle.id, tenant = %self.tenant.id, max, "statement refused: max_backend_leases busy");
            ServerError::lease_slots_busy(
                self.tenant.slug(),
                &limits.plan,
                max,
                started.elapsed().as_millis() as u64,
            )
        })
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
                let error = self
                    .refresh_route()
                    .err()
                    .unwrap_or_else(ServerError::connection_killed);
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
            self.skip_command().await?;
            return self.reply_error(&error).await;
        }
        let traits = if len < MAX_CLASSIFIED {
            self.fill_packet(len).await?;
            SqlTraits::of(
                self.client
                    .rbuf
                    .get(HEADER_LEN + 1..HEADER_LEN + len)
                    .unwrap_or_default(),
            )
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

    /// Answers the current command with `error`; ER_CONNECTION_KILLED
    /// also ends the session.
    pub(super) async fn reply_error(&mut self, error: &ServerError) -> Result<Flow, PacketError> {
        self.client.queue_error(1, error);
        self.client.flush().await?;
        Ok(if error.code == KILLED {
            Flow::End
        } else {
            Flow::Continue
        })
    }

    /// Leases a backend connection for this client's tenant and brings it
    /// to the client's session (variables, schema).
    pub(super) async fn acquire(&mut self) -> Result<(), ServerError> {
        let Some(pool) = self.ctx.pools.get(self.tenant.backend) else {
            warn!(tenant = %self.tenant.id, backend = self.tenant.backend, "tenant routed to an unknown backend");
            return Err(ServerError::backend_unavailable(self.tenant.slug()));
        };
        let identity = self.tenant.identity.clone();
        let slot = self.lease_gate().await?;
        let key = WaitKey {
            tenant: self.tenant.id.0.clone(),
            weight: self.tenant.limits.weight,
        };
        let mut lease = pool
            .lease_for(&key, &identity, self.profile, self.ctx.lease_timeout)
            .await
            .map_err(|e| self.backend_error(&e))?;
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
        if let Err(error) = self.ensure_lease().await {
            self.skip_command().await?;
            return self.reply_error(&error).await;
        }
        if let Err(error) = self.sync_lease().await {
            self.skip_command().await?;
            return self.reply_error(&error).await;
        }
        if let Err(error) = self.replay_insert_id(traits).await {
            self.skip_command().await?;
            return self.reply_error(&error).await;
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
            self.settle();
            return Ok((Flow::Continue, None));
        };
        let mut notes = ResponseNotes::default();
        let started = std::time::Instant::now();
        let flow = self.relay_response(&mut scanner, &mut notes).await?;
        self.live.query_time_us.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if flow == Flow::End {
            return Ok((flow, None));
        }
        let status = scanner.final_status();
        self.state.on_response_end(status, traits, &notes);
        // Recorded as the server has it; the plan's cap is put back (and
        // sent before the next statement) if the client lifted it.
        if notes.tracked
            && let Some(lease) = self.lease.as_mut()
        {
            lease
                .conn()
                .note_state(&self.state.vars, Some(&self.state.schema));
        }
        if notes.tracked {
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
        let pins = self.state.pins().with(
            PinReason::SessionMode,
            self.tenant.pool_mode == PoolMode::Session,
        );
        let Some(lease) = self.lease.as_ref() else {
            self.pinned = Pins::default();
            return;
        };
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
            self.unpin_gauges();
            self.handle.set_backend(None);
            if let Some(lease) = self.lease.take() {
                lease.give_back();
            }
            self.lease_slot = None;
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

    /// COM_CHANGE_USER: authenticate again (caching_sha2_password for clients
    /// that name it, else mysql_native_password) and route to the (possibly
    /// new) tenant; the old backend connection is released and reset first.
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
        let sha2 = self
            .capabilities
            .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
            && super::caching_sha2::wants_caching_sha2(parsed.auth_plugin.as_deref());
        let result = if sha2 {
            let who = login::Who {
                user: &user,
                database: database.as_deref(),
                attributes: &attributes,
                sni: self.sni.as_deref(),
            };
            super::caching_sha2::change_user(&self.ctx, &mut self.client, &mut seq, &who).await
        } else {
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
            login::authenticate(
                &self.ctx,
                &Credentials {
                    user: &user,
                    database: database.as_deref(),
                    attributes: &attributes,
                    sni: self.sni.as_deref(),
                    scramble: &scramble,
                    token: &token,
                },
            )
        };
        // Another tenant's client connection is counted against its limit;
        // the same tenant's is kept.
        let result = result.and_then(|(tenant, username)| {
            let slot = if tenant.id == self.tenant.id {
                None
            } else {
                Some(login::admit_client(&self.ctx, &tenant, &user)?)
            };
            Ok((tenant, username, slot))
        });
        match result {
            Ok((tenant, username, slot)) => {
                self.end_lease();
                info!(conn = self.handle.id, from = %self.tenant.id, to = %tenant.id, "COM_CHANGE_USER");
                self.handle.set_tenant(Some(tenant.id.clone()));
                if let Some(slot) = slot {
                    self.client_slot = slot;
                    self.live = self.ctx.tenants.of(&tenant.id);
                }
                self.table_version = self.ctx.router.load().version;
                self.state =
                    SessionState::new(database.unwrap_or_else(|| tenant.identity.database.clone()));
                self.tenant = tenant;
                self.apply_plan_vars();
                self.username = username;
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
        let mut side = BackendConn::connect(pool.backend(), &self.tenant.identity, profile).await?;
        match side
            .execute(&format!("KILL QUERY {}", target.thread_id))
            .await
        {
            // The statement already finished: nothing left to stop.
            Err(BackendError::Refused { code: 1094, .. }) => Ok(()),
            other => other,
        }
    }

    pub(super) fn drop_lease(&mut self) {
        self.unpin_gauges();
        self.handle.set_backend(None);
        if let Some(lease) = self.lease.take() {
            lease.discard();
        }
        self.lease_slot = None;
    }

    /// Gives the backend connection back at the end of the client's use of
    /// it: as is when its session holds only what silo replays, else reset
    /// before reuse.
    fn end_lease(&mut self) {
        let clean = self.state.pins().is_empty();
        self.unpin_gauges();
        self.handle.set_backend(None);
        if let Some(lease) = self.lease.take() {
            if clean {
                lease.give_back();
            } else {
                lease.release();
            }
        }
        self.lease_slot = None;
    }
}
