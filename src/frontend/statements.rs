//! Prepared statements that survive multiplexing.
//!
//! The ids a client sees are silo's. Each statement's text is kept, so that
//! on a leased connection that has not prepared it, silo prepares it first
//! (and caches it there, see [`crate::backend::statements`]). Ids in
//! COM_STMT_EXECUTE, SEND_LONG_DATA, FETCH and RESET are rewritten in place
//! in the client's read buffer before the packet is relayed. A client that
//! executes with "same parameter types as before" on a connection that last
//! saw other types gets its types put back into the packet.

use std::sync::Arc;

use bytes::Buf;
use tokio::io::AsyncWriteExt;

use super::session::{Flow, Session};
use super::session_state::ClientStatement;
use super::stream::PacketError;
use crate::backend::BackendError;
use crate::backend::statements::StatementKey;
use crate::protocol::ServerError;
use crate::protocol::command::CommandKind;
use crate::protocol::packet::{HEADER_LEN, MAX_PAYLOAD};
use crate::protocol::response::RequestScanner;
use crate::protocol::sql::SqlTraits;
use crate::protocol::statement::{ExecuteLayout, PrepareOk, set_statement_id, statement_id};
use mysql_common::constants::StatusFlags;

/// What a statement command needs of the statement it names.
struct Named {
    id: u32,
    key: Arc<StatementKey>,
    params: u16,
    traits: SqlTraits,
    cursor: bool,
    /// A cursor or long data waits on the server for it.
    holds_state: bool,
    long_data_lost: bool,
}

impl Session {
    /// COM_STMT_PREPARE: relayed, with the server's statement id in the
    /// response replaced by a new silo id.
    pub(super) async fn prepare(&mut self, len: usize) -> Result<Flow, PacketError> {
        if len >= MAX_PAYLOAD {
            return self
                .refuse(&ServerError::statement_too_long(MAX_PAYLOAD - 2))
                .await;
        }
        self.fill_packet(len).await?;
        let sql = self.command_text(len);
        let key = StatementKey::new(&self.state.schema, sql);
        let traits = SqlTraits::of(sql);
        if let Err(error) = self.ensure_lease().await {
            return self.refuse(&error).await;
        }
        if self.forward_command(true).await? == Flow::End {
            return Ok(Flow::End);
        }
        let Some(first) = self.backend_packet_ready().await else {
            return Ok(self.lose_backend(false).await);
        };
        let mut evicted = Vec::new();
        if let Some(lease) = self.lease.as_mut() {
            let conn = lease.conn();
            let (_, buf) = conn.io();
            let payload = buf
                .get_mut(HEADER_LEN..HEADER_LEN + first)
                .unwrap_or_default();
            if let Some(ok) = PrepareOk::parse(payload) {
                let id = self.state.add_statement(ClientStatement {
                    key: key.clone(),
                    params: ok.params,
                    traits,
                    types: Vec::new(),
                    cursor: false,
                    long_data: false,
                    long_data_lost: false,
                });
                set_statement_id(payload, id);
                evicted = conn.statements.insert(
                    key,
                    ok.statement_id,
                    ok.params,
                    self.ctx.statement_cache_size,
                );
            }
        }
        let (flow, _) = self
            .relay_after_forward(CommandKind::Prepare, &SqlTraits::default())
            .await?;
        if flow == Flow::Continue {
            for id in evicted {
                self.close_on_backend(id).await;
            }
        }
        self.settle();
        Ok(flow)
    }

    /// COM_STMT_EXECUTE on a silo id.
    pub(super) async fn execute(&mut self, len: usize) -> Result<Flow, PacketError> {
        let statement = match self.named_statement("mysqld_stmt_execute").await? {
            Ok(statement) => statement,
            Err(flow) => return Ok(flow),
        };
        let id = statement.id;
        if statement.long_data_lost {
            self.skip_command().await?;
            self.state.set_long_data(id, false);
            if let Some(s) = self.state.statement_mut(id) {
                s.long_data_lost = false;
            }
            return self
                .reply_error(&ServerError::backend_unavailable(self.tenant.slug()))
                .await;
        }
        let Named {
            key,
            params,
            traits,
            ..
        } = statement;
        if let Err(error) = self.admit_query().await {
            return self.refuse(&error).await;
        }
        let layout = ExecuteLayout::new(params);
        let mut reuses_types = false;
        if let Some(layout) = layout {
            let head = len.min(layout.head_len());
            self.fill_packet(head).await?;
            let payload = self
                .client
                .rbuf
                .get(HEADER_LEN..HEADER_LEN + head)
                .unwrap_or_default();
            reuses_types = layout.reuses_types(payload);
            if let Some(types) = layout.bound_types(payload)
                && let Some(s) = self.state.statement_mut(id)
                && s.types != types
            {
                s.types = types.to_vec();
            }
        }
        let backend_id = match self.backend_statement(&key, params).await {
            Ok(backend_id) => backend_id,
            Err(error) => {
                self.settle();
                return self.refuse(&error).await;
            }
        };
        if let Err(error) = self.replay_insert_id(&traits).await {
            self.settle();
            return self.refuse(&error).await;
        }
        self.rewrite_id(backend_id);
        let server_has_types = {
            let types = self.state.statement(id).map_or(&[][..], |s| &s.types);
            self.lease
                .as_mut()
                .and_then(|l| l.conn().statements.get(&key).map(|p| p.types == types))
                .unwrap_or(false)
        };
        // Copied only when the server must be sent or told them.
        let types = if server_has_types {
            Vec::new()
        } else {
            self.state
                .statement(id)
                .map(|s| s.types.clone())
                .unwrap_or_default()
        };
        let flow = match layout {
            Some(layout) if reuses_types && !server_has_types && !types.is_empty() => {
                self.forward_with_types(len, layout, &types).await?
            }
            _ => self.forward_command(false).await?,
        };
        if flow == Flow::End {
            return Ok(Flow::End);
        }
        if !server_has_types
            && let Some(lease) = self.lease.as_mut()
            && let Some(prepared) = lease.conn().statements.get(&key)
        {
            prepared.types = types;
        }
        let (flow, status) = self
            .relay_after_forward(CommandKind::ResultSets, &traits)
            .await?;
        if let Some(status) = status {
            self.state.set_cursor(
                id,
                status.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS),
            );
        }
        self.state.set_long_data(id, false);
        self.settle();
        Ok(flow)
    }

    /// COM_STMT_SEND_LONG_DATA: no reply; the data waits on the server for
    /// the next execute, so the session keeps its connection until then.
    pub(super) async fn send_long_data(&mut self) -> Result<Flow, PacketError> {
        let len = self.command_len();
        let Some(id) = self.command_statement_id(len).await? else {
            return self.malformed().await;
        };
        let Some(statement) = self.state.statement(id) else {
            // The server ignores unknown ids here too: errors come with the execute.
            self.skip_command().await?;
            return Ok(Flow::Continue);
        };
        let (key, params) = (statement.key.clone(), statement.params);
        let backend_id = match self.backend_statement(&key, params).await {
            Ok(backend_id) => backend_id,
            Err(_) => {
                // Nothing may be answered now: the execute reports it.
                self.skip_command().await?;
                if let Some(s) = self.state.statement_mut(id) {
                    s.long_data_lost = true;
                }
                self.settle();
                return Ok(Flow::Continue);
            }
        };
        self.rewrite_id(backend_id);
        if self.forward_command(false).await? == Flow::End {
            return Ok(Flow::End);
        }
        self.state.set_long_data(id, true);
        self.settle();
        Ok(Flow::Continue)
    }

    /// COM_STMT_CLOSE: no reply. The server-side statement stays cached on
    /// its connection for other clients; a cursor or long data it still has
    /// for this client is dropped.
    pub(super) async fn close_statement(&mut self) -> Result<Flow, PacketError> {
        let len = self.command_len();
        let id = self.command_statement_id(len).await?;
        self.skip_command().await?;
        if let Some(statement) = id.and_then(|id| self.state.remove_statement(id))
            && (statement.cursor || statement.long_data)
        {
            self.reset_on_backend(&statement.key).await;
        }
        self.settle();
        Ok(Flow::Continue)
    }

    /// COM_STMT_RESET: relayed when the statement holds a cursor or long
    /// data on the session's connection, else answered here.
    pub(super) async fn reset_statement(&mut self) -> Result<Flow, PacketError> {
        let statement = match self.named_statement("mysqld_stmt_reset").await? {
            Ok(statement) => statement,
            Err(flow) => return Ok(flow),
        };
        let id = statement.id;
        let backend_id = self.leased_statement_id(&statement.key);
        self.state.set_cursor(id, false);
        self.state.set_long_data(id, false);
        let flow = match backend_id {
            Some(backend_id) if statement.holds_state => {
                self.rewrite_id(backend_id);
                if self.forward_command(false).await? == Flow::End {
                    return Ok(Flow::End);
                }
                self.relay_after_forward(CommandKind::SinglePacket, &SqlTraits::default())
                    .await?
                    .0
            }
            _ => {
                self.skip_command().await?;
                self.reply_ok().await?
            }
        };
        self.settle();
        Ok(flow)
    }

    /// COM_STMT_FETCH: only meaningful on the connection holding the cursor.
    pub(super) async fn fetch(&mut self) -> Result<Flow, PacketError> {
        let statement = match self.named_statement("mysqld_stmt_fetch").await? {
            Ok(statement) => statement,
            Err(flow) => return Ok(flow),
        };
        let id = statement.id;
        let backend_id = self
            .leased_statement_id(&statement.key)
            .filter(|_| statement.cursor);
        let Some(backend_id) = backend_id else {
            return self.refuse(&ServerError::no_open_cursor(id)).await;
        };
        self.rewrite_id(backend_id);
        if self.forward_command(false).await? == Flow::End {
            return Ok(Flow::End);
        }
        let (flow, status) = self
            .relay_after_forward(CommandKind::Rows, &SqlTraits::default())
            .await?;
        if status.is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_LAST_ROW_SENT)) {
            self.state.set_cursor(id, false);
        }
        self.settle();
        Ok(flow)
    }

    /// The backend id of `key` on the leased connection (leasing one if
    /// needed), preparing it there first when it has not been.
    async fn backend_statement(
        &mut self,
        key: &std::sync::Arc<StatementKey>,
        params: u16,
    ) -> Result<u32, ServerError> {
        self.ensure_lease().await?;
        let capacity = self.ctx.statement_cache_size;
        let Some(lease) = self.lease.as_mut() else {
            return Err(ServerError::backend_unavailable(self.tenant.slug()));
        };
        if let Some(prepared) = lease.conn().statements.get(key) {
            return Ok(prepared.id);
        }
        match Box::pin(lease.conn().prepare(key, capacity)).await {
            Ok(PrepareOk {
                statement_id,
                params: now,
                ..
            }) => {
                if now == params {
                    Ok(statement_id)
                } else {
                    Err(ServerError::need_reprepare())
                }
            }
            Err(BackendError::Refused {
                code,
                sqlstate,
                message,
            }) => Err(ServerError::new(code, &sqlstate, message)),
            Err(other) => {
                let error = self.backend_error(&other);
                self.drop_lease();
                Err(error)
            }
        }
    }

    /// Relays an execute that relies on earlier parameter types, with the
    /// types put in (flag set), for a server statement that has not seen them.
    async fn forward_with_types(
        &mut self,
        len: usize,
        layout: ExecuteLayout,
        types: &[u8],
    ) -> Result<Flow, PacketError> {
        let new_len = len + types.len();
        if len < layout.bound_flag_at + 1 || new_len >= MAX_PAYLOAD {
            return self.refuse(&ServerError::need_reprepare()).await;
        }
        let head = layout.bound_flag_at;
        let mut prefix = Vec::with_capacity(HEADER_LEN + head + 1 + types.len());
        prefix.extend_from_slice(&(new_len as u32).to_le_bytes()[..3]);
        prefix.push(0);
        prefix.extend_from_slice(
            self.client
                .rbuf
                .get(HEADER_LEN..HEADER_LEN + head)
                .unwrap_or_default(),
        );
        prefix.push(1);
        prefix.extend_from_slice(types);
        let Some(lease) = self.lease.as_mut() else {
            return Ok(Flow::End);
        };
        let (stream, _) = lease.conn().io();
        if stream.write_all(&prefix).await.is_err() {
            return Ok(self.lose_backend(false).await);
        }
        self.relayed_from_client += prefix.len() as u64;
        self.client.rbuf.advance(HEADER_LEN + head + 1);
        let rest = len - head - 1;
        if rest == 0 {
            return Ok(Flow::Continue);
        }
        self.forward_from_client(RequestScanner::remainder(rest), false)
            .await
    }

    /// Drops a cursor or long data a closed statement left on the session's
    /// connection.
    async fn reset_on_backend(&mut self, key: &StatementKey) {
        let Some(backend_id) = self.leased_statement_id(key) else {
            return;
        };
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        if let Err(e) = lease.conn().reset_statement(backend_id).await
            && e.is_disconnect()
        {
            self.drop_lease();
        }
    }

    async fn close_on_backend(&mut self, backend_id: u32) {
        if let Some(lease) = self.lease.as_mut()
            && lease.conn().close_statement(backend_id).await.is_err()
        {
            self.drop_lease();
        }
    }

    /// The server's id of `key` on the leased connection, if it has it.
    fn leased_statement_id(&mut self, key: &StatementKey) -> Option<u32> {
        let lease = self.lease.as_mut()?;
        lease.conn().statements.get(key).map(|p| p.id)
    }

    /// The session's statement named by the statement command at the head
    /// of the buffer. Otherwise the command is answered (a malformed packet,
    /// or ER_UNKNOWN_STMT_HANDLER naming `command`) and `Err` says how the
    /// session goes on.
    async fn named_statement(&mut self, command: &str) -> Result<Result<Named, Flow>, PacketError> {
        let len = self.command_len();
        let Some(id) = self.command_statement_id(len).await? else {
            return self.malformed().await.map(Err);
        };
        let Some(s) = self.state.statement(id) else {
            let error = ServerError::unknown_statement(id, command);
            return self.refuse(&error).await.map(Err);
        };
        Ok(Ok(Named {
            id,
            key: s.key.clone(),
            params: s.params,
            traits: s.traits,
            cursor: s.cursor,
            holds_state: s.cursor || s.long_data,
            long_data_lost: s.long_data_lost,
        }))
    }

    fn rewrite_id(&mut self, backend_id: u32) {
        if let Some(payload) = self.client.rbuf.get_mut(HEADER_LEN..) {
            set_statement_id(payload, backend_id);
        }
    }

    /// Payload length of the command at the head of the read buffer.
    fn command_len(&self) -> usize {
        crate::protocol::packet::header(&self.client.rbuf).map_or(0, |(len, _)| len)
    }

    /// The statement id of the command at the head of the read buffer, once
    /// buffered; `None` for a packet too short to hold one.
    async fn command_statement_id(&mut self, len: usize) -> Result<Option<u32>, PacketError> {
        if len < 5 {
            return Ok(None);
        }
        self.fill_packet(5).await?;
        Ok(statement_id(
            self.client.rbuf.get(HEADER_LEN..).unwrap_or_default(),
        ))
    }

    async fn malformed(&mut self) -> Result<Flow, PacketError> {
        self.refuse(&ServerError::malformed_packet()).await
    }

    /// Waits until the first packet of the backend's response is buffered;
    /// returns its payload length, or `None` if the connection broke.
    async fn backend_packet_ready(&mut self) -> Option<usize> {
        loop {
            let lease = self.lease.as_mut()?;
            let (stream, buf) = lease.conn().io();
            if let Some((len, _)) = crate::protocol::packet::header(buf)
                && buf.len() >= HEADER_LEN + len
            {
                return Some(len);
            }
            buf.reserve(4096);
            match crate::net::read_available(stream, buf).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    }
}
