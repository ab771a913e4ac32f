//! What a client's session holds on the server, learnt from the server's
//! own reports (status flags and session tracking in OK packets), completed
//! by the statement classifier where the server stays silent.
//!
//! From it follow the variables and schema to replay on the next leased
//! connection, and the reasons the session must keep its connection.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::constants::StatusFlags;

use crate::backend::pins::{PinReason, Pins};
use crate::backend::session_vars::SessionVars;
use crate::backend::statements::StatementKey;
use crate::protocol::session_track::{OkPacket, StateItem};
use crate::protocol::sql::{Keyword, SqlTraits};

/// A statement a client prepared, under the id silo gave it.
#[derive(Debug)]
pub struct ClientStatement {
    pub key: Arc<StatementKey>,
    pub params: u16,
    pub traits: SqlTraits,
    /// Parameter types of the client's last execute that sent them.
    pub types: Vec<u8>,
    pub cursor: bool,
    pub long_data: bool,
    /// Long data could not be delivered; the next execute must fail.
    pub long_data_lost: bool,
}

/// Notes taken while one response streams by.
#[derive(Debug, Default)]
pub struct ResponseNotes {
    state_changed: bool,
    /// A variable or schema change accounts for the state change.
    explained: bool,
    /// Some OK packet carried session-state information.
    pub tracked: bool,
}

#[derive(Debug, Default)]
pub struct SessionState {
    /// Variables the client changed, to replay.
    pub vars: SessionVars,
    /// The client's current database.
    pub schema: String,
    /// What LAST_INSERT_ID() returns in the client's session (0: unset).
    pub last_insert_id: u64,
    in_transaction: bool,
    /// `SET TRANSACTION …` applies to the next transaction only.
    next_transaction: bool,
    lock_tables: bool,
    read_lock: bool,
    user_locks: u32,
    temporary_tables: u32,
    user_variables: bool,
    unknown: bool,
    statements: HashMap<u32, ClientStatement>,
    last_statement_id: u32,
    cursors: u32,
    long_data: u32,
}

impl SessionState {
    pub fn new(schema: String) -> Self {
        Self {
            schema,
            ..Self::default()
        }
    }

    /// Reads one OK packet's session-state entries.
    pub fn on_ok(&mut self, ok: &OkPacket<'_>, notes: &mut ResponseNotes) {
        let mut reported_charset = [false; 2];
        for item in ok.items() {
            match item {
                StateItem::SystemVariable { name, value } => {
                    notes.explained = true;
                    if name == b"character_set_connection" {
                        reported_charset[0] = true;
                    }
                    if name == b"collation_connection" {
                        reported_charset[1] = true;
                    }
                    if self.vars.record(name, value).is_err() {
                        self.unknown = true;
                    }
                }
                StateItem::Schema(name) => {
                    notes.explained = true;
                    self.schema = String::from_utf8_lossy(name).into_owned();
                }
                StateItem::StateChanged => notes.state_changed = true,
                StateItem::TransactionState(state) => {
                    self.in_transaction = state.first().is_some_and(|&c| c != b'_');
                    self.lock_tables = state.get(7) == Some(&b'L');
                }
                StateItem::TransactionCharacteristics(text) => {
                    self.next_transaction = !text.is_empty();
                }
                StateItem::Other => {}
            }
        }
        self.vars.settle_implied(|name| match name {
            "character_set_connection" => reported_charset[0],
            "collation_connection" => reported_charset[1],
            _ => false,
        });
    }

    /// Applies what a whole response says. `status` is that of its last
    /// OK or EOF packet, `None` when it ended with an error or had none.
    pub fn on_response_end(
        &mut self,
        status: Option<StatusFlags>,
        traits: &SqlTraits,
        notes: &ResponseNotes,
    ) {
        let ok = status.is_some();
        if let Some(status) = status {
            self.in_transaction = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS);
        }
        // What creates state pins even after an error (the safe side);
        // what releases it only after success.
        self.user_locks = self.user_locks.saturating_add(u32::from(traits.get_lock));
        if traits.temporary && traits.first == Keyword::Create {
            self.temporary_tables = self.temporary_tables.saturating_add(1);
        }
        if traits.user_variable_assigned || (traits.user_variable && notes.state_changed) {
            self.user_variables = true;
        }
        if traits.first == Keyword::Handler {
            self.unknown = true;
        }
        let classified = traits.temporary || traits.user_variable;
        if notes.state_changed && !notes.explained && !classified {
            self.unknown = true;
        }
        if ok {
            self.read_lock |= traits.read_lock;
            self.lock_tables |= traits.first == Keyword::Lock;
            if traits.release_all_locks {
                self.user_locks = 0;
            }
            self.user_locks = self
                .user_locks
                .saturating_sub(u32::from(traits.release_lock));
            if traits.temporary && traits.first == Keyword::Drop {
                self.temporary_tables = self.temporary_tables.saturating_sub(1);
            }
            if traits.first == Keyword::Unlock {
                self.lock_tables = false;
                self.read_lock = false;
            }
        }
    }

    /// A change silo cannot replay (connection options).
    pub fn mark_unknown(&mut self) {
        self.unknown = true;
    }

    /// Why the session must keep its backend connection now.
    pub fn pins(&self) -> Pins {
        Pins::default()
            .with(
                PinReason::Transaction,
                self.in_transaction || self.next_transaction,
            )
            .with(
                PinReason::Lock,
                self.lock_tables || self.read_lock || self.user_locks > 0,
            )
            .with(PinReason::TemporaryTable, self.temporary_tables > 0)
            .with(PinReason::UserVariable, self.user_variables)
            .with(PinReason::Cursor, self.cursors > 0)
            .with(PinReason::LongData, self.long_data > 0)
            .with(PinReason::Unknown, self.unknown)
    }

    /// The server dropped the session's state (COM_RESET_CONNECTION,
    /// COM_CHANGE_USER, or its connection was reset); the schema stays.
    pub fn reset(&mut self) {
        *self = Self {
            schema: std::mem::take(&mut self.schema),
            last_statement_id: self.last_statement_id,
            ..Self::default()
        };
    }

    /// Registers a prepared statement and returns the id the client sees.
    pub fn add_statement(&mut self, statement: ClientStatement) -> u32 {
        loop {
            self.last_statement_id = self.last_statement_id.wrapping_add(1).max(1);
            if !self.statements.contains_key(&self.last_statement_id) {
                break;
            }
        }
        self.statements.insert(self.last_statement_id, statement);
        self.last_statement_id
    }

    pub fn statement(&self, id: u32) -> Option<&ClientStatement> {
        self.statements.get(&id)
    }

    pub fn statement_mut(&mut self, id: u32) -> Option<&mut ClientStatement> {
        self.statements.get_mut(&id)
    }

    pub fn remove_statement(&mut self, id: u32) -> Option<ClientStatement> {
        let statement = self.statements.remove(&id)?;
        self.cursors -= u32::from(statement.cursor);
        self.long_data -= u32::from(statement.long_data);
        Some(statement)
    }

    pub fn set_cursor(&mut self, id: u32, open: bool) {
        if let Some(s) = self.statements.get_mut(&id) {
            flip(&mut s.cursor, &mut self.cursors, open);
        }
    }

    pub fn set_long_data(&mut self, id: u32, pending: bool) {
        if let Some(s) = self.statements.get_mut(&id) {
            flip(&mut s.long_data, &mut self.long_data, pending);
        }
    }
}

/// Sets a statement's flag, keeping the session's count of set flags.
fn flip(flag: &mut bool, count: &mut u32, on: bool) {
    if *flag != on {
        *flag = on;
        if on {
            *count += 1;
        } else {
            *count -= 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok_with(items: &[u8], status: u16) -> Vec<u8> {
        let mut p = vec![0, 0, 0];
        p.extend_from_slice(&(status | 0x4000).to_le_bytes());
        p.extend_from_slice(&[0, 0, 0, items.len() as u8]);
        p.extend_from_slice(items);
        p
    }

    fn run(state: &mut SessionState, sql: &str, oks: &[Vec<u8>], status: Option<u16>) {
        let mut notes = ResponseNotes::default();
        for p in oks {
            state.on_ok(&OkPacket::parse(p).unwrap(), &mut notes);
        }
        state.on_response_end(
            status.map(StatusFlags::from_bits_truncate),
            &SqlTraits::of(sql.as_bytes()),
            &notes,
        );
    }

    const CHANGED: &[u8] = b"\x02\x011";

    #[test]
    fn transaction_pins_until_commit() {
        let mut s = SessionState::new("db".into());
        run(&mut s, "BEGIN", &[], Some(0x0003));
        assert!(s.pins().contains(PinReason::Transaction));
        run(&mut s, "COMMIT", &[], Some(0x0002));
        assert!(s.pins().is_empty());
    }

    #[test]
    fn variables_are_recorded_not_pinned() {
        let mut s = SessionState::new("db".into());
        let ok = ok_with(b"\x00\x11\x09time_zone\x06+05:00\x02\x011", 2);
        run(&mut s, "SET time_zone='+05:00'", &[ok], Some(2));
        assert!(s.pins().is_empty());
        assert_eq!(s.vars.get("time_zone"), Some("+05:00"));
    }

    #[test]
    fn user_variables_temp_tables_and_unknown_changes_pin() {
        let mut s = SessionState::new("db".into());
        run(&mut s, "SET @x = 1", &[ok_with(CHANGED, 2)], Some(2));
        assert!(s.pins().contains(PinReason::UserVariable));

        let mut s = SessionState::new("db".into());
        run(&mut s, "select @y := 1", &[], Some(2));
        assert!(s.pins().contains(PinReason::UserVariable));

        let mut s = SessionState::new("db".into());
        run(
            &mut s,
            "create temporary table t (a int)",
            &[ok_with(CHANGED, 2)],
            Some(2),
        );
        assert!(s.pins().contains(PinReason::TemporaryTable));
        run(
            &mut s,
            "drop temporary table t",
            &[ok_with(CHANGED, 2)],
            Some(2),
        );
        assert!(s.pins().is_empty());

        let mut s = SessionState::new("db".into());
        run(
            &mut s,
            "prepare p from 'select 1'",
            &[ok_with(CHANGED, 2)],
            Some(2),
        );
        assert!(s.pins().contains(PinReason::Unknown));
    }

    #[test]
    fn locks_pin_until_released() {
        let mut s = SessionState::new("db".into());
        run(&mut s, "select get_lock('a', 0)", &[], Some(2));
        assert!(s.pins().contains(PinReason::Lock));
        run(&mut s, "select release_lock('a')", &[], Some(2));
        assert!(s.pins().is_empty());

        run(
            &mut s,
            "lock tables t write",
            &[ok_with(b"\x05\x09\x08_______L", 2)],
            Some(2),
        );
        assert!(s.pins().contains(PinReason::Lock));
        run(
            &mut s,
            "unlock tables",
            &[ok_with(b"\x05\x09\x08________", 2)],
            Some(2),
        );
        assert!(s.pins().is_empty());

        run(&mut s, "flush tables with read lock", &[], Some(2));
        assert!(s.pins().contains(PinReason::Lock));
        // A failed unlock keeps the pin.
        run(&mut s, "unlock tables", &[], None);
        assert!(s.pins().contains(PinReason::Lock));
        run(&mut s, "unlock tables", &[], Some(2));
        assert!(s.pins().is_empty());
    }

    #[test]
    fn errors_do_not_end_a_transaction() {
        let mut s = SessionState::new("db".into());
        run(&mut s, "begin", &[], Some(3));
        run(&mut s, "insert into missing values (1)", &[], None);
        assert!(s.pins().contains(PinReason::Transaction));
    }

    #[test]
    fn reset_forgets_everything_but_the_schema() {
        let mut s = SessionState::new("db".into());
        run(
            &mut s,
            "use other",
            &[ok_with(b"\x01\x06\x05other\x02\x011", 2)],
            Some(2),
        );
        assert_eq!(s.schema, "other");
        run(&mut s, "set @x=1", &[ok_with(CHANGED, 2)], Some(2));
        s.reset();
        assert!(s.pins().is_empty());
        assert_eq!(s.schema, "other");
    }

    #[test]
    fn statement_ids_and_cursor_pins() {
        let mut s = SessionState::new("db".into());
        let statement = || ClientStatement {
            key: StatementKey::new("db", b"select 1"),
            params: 0,
            traits: SqlTraits::default(),
            types: Vec::new(),
            cursor: false,
            long_data: false,
            long_data_lost: false,
        };
        let a = s.add_statement(statement());
        let b = s.add_statement(statement());
        assert_ne!(a, b);
        s.set_cursor(a, true);
        s.set_cursor(a, true);
        assert!(s.pins().contains(PinReason::Cursor));
        s.set_long_data(b, true);
        s.remove_statement(a);
        assert!(!s.pins().contains(PinReason::Cursor));
        assert!(s.pins().contains(PinReason::LongData));
        s.set_long_data(b, false);
        assert!(s.pins().is_empty());
    }
}
