//! Where a relayed exchange ends, read from the raw bytes without decoding rows.
//!
//! [`ResponseScanner`] follows a backend's response packet by packet, looking
//! only at each packet's header and first bytes (OK / ERR / EOF / column count
//! / LOCAL INFILE request, status flags), so the relay can stream any amount of
//! data and still know when the response is complete. [`RequestScanner`] does
//! the same for what a client sends (a command, or a LOCAL INFILE file).
//!
//! Both are fed whatever bytes have arrived and say how many of them may be
//! forwarded now; partial state lives in the scanner, so a read may stop
//! anywhere, even inside a header.
//!
//! See <https://mariadb.com/kb/en/result-set-packets/> and
//! <https://mariadb.com/kb/en/com_stmt_prepare/>.

use mysql_common::constants::StatusFlags;

use super::ProtocolError;
use super::command::CommandKind;
use super::packet::{HEADER_LEN, MAX_PAYLOAD, header, lenenc_int};

/// Bytes of a packet's payload looked at to classify it: enough for an OK
/// packet's two length-encoded integers and its status flags.
const PEEK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The first `forward` bytes may be relayed; the response goes on.
    NeedMore { forward: usize },
    /// The response is complete after the first `end` bytes.
    Done { end: usize },
    /// The server asks for a LOCAL INFILE file: relay the first `end` bytes,
    /// then the client's file, then call [`ResponseScanner::resume_after_infile`].
    LocalInfile { end: usize },
    /// Bytes before `at` may be relayed; `at..end` is a whole OK packet
    /// (header included) that carries session-state information. Scan on
    /// from `end` unless `last`: it ends the response.
    Tracked { at: usize, end: usize, last: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First packet of a result: OK, ERR, LOCAL INFILE or a column count.
    First,
    ColumnDefs(u64),
    /// The EOF after column definitions (no CLIENT_DEPRECATE_EOF).
    MetaEof,
    Rows,
    PrepareFirst,
    /// Exactly this many more packets, then the end.
    Packets(u64),
    Single,
    LocalInfile,
    Done,
}

#[derive(Debug, Clone)]
pub struct ResponseScanner {
    state: State,
    deprecate_eof: bool,
    /// Payload bytes of the current physical packet not yet passed.
    skip: usize,
    /// The current packet is 0xFFFFFF bytes long: the next one continues it.
    continued: bool,
    status: StatusFlags,
    has_status: bool,
    error: bool,
    /// The last non-zero last-insert-id of the OK packets seen.
    insert_id: u64,
}

impl ResponseScanner {
    /// A scanner for the response to a command of `kind`. `None` for commands
    /// that get no response.
    pub fn for_command(kind: CommandKind, deprecate_eof: bool) -> Option<Self> {
        let state = match kind {
            CommandKind::ResultSets => State::First,
            CommandKind::Prepare => State::PrepareFirst,
            CommandKind::Rows => State::Rows,
            CommandKind::SinglePacket
            | CommandKind::Ping
            | CommandKind::ResetConnection
            | CommandKind::ChangeUser
            | CommandKind::ProcessKill => State::Single,
            CommandKind::NoResponse | CommandKind::Quit | CommandKind::Unsupported => {
                return None;
            }
        };
        Some(Self {
            state,
            deprecate_eof,
            skip: 0,
            continued: false,
            status: StatusFlags::empty(),
            has_status: false,
            error: false,
            insert_id: 0,
        })
    }

    /// Status flags of the last OK or EOF packet seen.
    pub fn status(&self) -> StatusFlags {
        self.status
    }

    /// The status flags the response ended with: `None` after an ERR, or
    /// when it carried none (a prepare without metadata, a statistics
    /// string).
    pub fn final_status(&self) -> Option<StatusFlags> {
        (self.has_status && !self.error).then_some(self.status)
    }

    /// The id `LAST_INSERT_ID()` returns after this response, when one of
    /// its statements generated one (0 otherwise).
    pub fn insert_id(&self) -> u64 {
        self.insert_id
    }

    /// Whether the response ended with an ERR packet.
    pub fn ended_with_error(&self) -> bool {
        self.error
    }

    /// Call once the client's LOCAL INFILE data has been relayed: the server
    /// now answers with OK or ERR (and possibly further results).
    pub fn resume_after_infile(&mut self) {
        self.state = State::First;
    }

    /// Scans newly available bytes. `buf` starts where the previous call's
    /// `forward`/`end` stopped.
    ///
    /// # Errors
    /// A packet that cannot occur at this point of a response.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Progress, ProtocolError> {
        let mut pos = 0;
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            self.skip -= n;
            if self.skip > 0 {
                return Ok(Progress::NeedMore { forward: n });
            }
            pos = n;
            if let Some(end) = self.packet_complete(pos) {
                return Ok(end);
            }
        }
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let Some((len, _seq)) = header(rest) else {
                return Ok(Progress::NeedMore { forward: pos });
            };
            let Some(peek) = rest.get(HEADER_LEN..HEADER_LEN + len.min(PEEK)) else {
                return Ok(Progress::NeedMore { forward: pos });
            };
            if !self.continued && self.carries_state(len, peek) {
                if rest.len() < HEADER_LEN + len {
                    return Ok(Progress::NeedMore { forward: pos });
                }
                self.on_packet(len, peek)?;
                let end = pos + HEADER_LEN + len;
                return Ok(Progress::Tracked {
                    at: pos,
                    end,
                    last: self.state == State::Done,
                });
            }
            if !self.continued {
                self.on_packet(len, peek)?;
            }
            self.continued = len == MAX_PAYLOAD;
            pos += HEADER_LEN;
            let available = buf.len() - pos;
            if available < len {
                self.skip = len - available;
                return Ok(Progress::NeedMore { forward: buf.len() });
            }
            pos += len;
            if let Some(end) = self.packet_complete(pos) {
                return Ok(end);
            }
        }
    }

    fn packet_complete(&self, pos: usize) -> Option<Progress> {
        if self.continued {
            return None;
        }
        match self.state {
            State::Done => Some(Progress::Done { end: pos }),
            State::LocalInfile => Some(Progress::LocalInfile { end: pos }),
            _ => None,
        }
    }

    fn on_packet(&mut self, len: usize, peek: &[u8]) -> Result<(), ProtocolError> {
        let first = peek.first().copied();
        self.state = match (self.state, first) {
            (_, None) => return Err(ProtocolError::malformed("empty response")),
            (State::First, Some(0x00)) => {
                self.status = ok_status(peek)?;
                self.has_status = true;
                if let Some(id) = ok_insert_id(peek).filter(|id| *id != 0) {
                    self.insert_id = id;
                }
                self.after_result()
            }
            (State::First, Some(0xFF)) => self.on_error(),
            (State::First, Some(0xFB)) => State::LocalInfile,
            (State::First, Some(_)) => match lenenc_int(peek) {
                Some((n, _)) if n > 0 => State::ColumnDefs(n),
                _ => return Err(ProtocolError::malformed("column count")),
            },
            (State::ColumnDefs(n), Some(_)) => {
                if n > 1 {
                    State::ColumnDefs(n - 1)
                } else if self.deprecate_eof {
                    State::Rows
                } else {
                    State::MetaEof
                }
            }
            (State::MetaEof, Some(0xFE)) => {
                self.status = eof_status(peek)?;
                self.has_status = true;
                if self
                    .status
                    .contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS)
                {
                    State::Done
                } else {
                    State::Rows
                }
            }
            (State::MetaEof | State::Rows, Some(0xFF)) => self.on_error(),
            (State::MetaEof, Some(_)) => {
                return Err(ProtocolError::malformed("EOF after column definitions"));
            }
            (State::Rows, Some(0xFE)) if self.is_terminator(len) => {
                self.status = if self.deprecate_eof {
                    ok_status(peek)?
                } else {
                    eof_status(peek)?
                };
                self.has_status = true;
                self.after_result()
            }
            (State::Rows, Some(_)) => State::Rows,
            (State::PrepareFirst, Some(0xFF)) => self.on_error(),
            (State::PrepareFirst, Some(0x00)) => {
                let follow = self.prepare_follow_up(peek)?;
                if follow == 0 {
                    State::Done
                } else {
                    State::Packets(follow)
                }
            }
            (State::PrepareFirst, Some(_)) => {
                return Err(ProtocolError::malformed("prepare response"));
            }
            (State::Packets(n), Some(_)) => {
                if n > 1 {
                    State::Packets(n - 1)
                } else {
                    State::Done
                }
            }
            (State::Single, Some(first)) => {
                if first == 0xFF {
                    self.error = true;
                }
                State::Done
            }
            (State::LocalInfile | State::Done, Some(_)) => {
                return Err(ProtocolError::malformed(
                    "packet after the end of a response",
                ));
            }
        };
        Ok(())
    }

    /// Whether the packet about to be read is an OK packet with
    /// SERVER_SESSION_STATE_CHANGED (whose state information follows the
    /// fields peeked at, so it is only handed over whole).
    fn carries_state(&self, len: usize, peek: &[u8]) -> bool {
        let ok = match (self.state, peek.first()) {
            (State::First | State::Single, Some(0x00)) => true,
            (State::Rows, Some(0xFE)) => self.deprecate_eof && self.is_terminator(len),
            _ => false,
        };
        ok && len < MAX_PAYLOAD
            && ok_status(peek).is_ok_and(|s| s.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED))
    }

    fn on_error(&mut self) -> State {
        self.error = true;
        State::Done
    }

    fn after_result(&self) -> State {
        if self
            .status
            .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
        {
            State::First
        } else {
            State::Done
        }
    }

    /// A 0xFE packet in a row stream is a terminator unless it is a row whose
    /// first column starts with an 8-byte length (so at least 9 bytes long, and
    /// with CLIENT_DEPRECATE_EOF, a full 0xFFFFFF-byte packet).
    fn is_terminator(&self, len: usize) -> bool {
        if self.deprecate_eof {
            len < MAX_PAYLOAD
        } else {
            len < 9
        }
    }

    /// Packets that follow a COM_STMT_PREPARE OK: parameter and column
    /// definitions, each block closed by an EOF unless CLIENT_DEPRECATE_EOF.
    fn prepare_follow_up(&self, peek: &[u8]) -> Result<u64, ProtocolError> {
        let field = |at: usize| {
            peek.get(at..at + 2)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_le_bytes)
                .ok_or(ProtocolError::malformed("prepare response"))
        };
        let columns = u64::from(field(5)?);
        let params = u64::from(field(7)?);
        let eof = |n: u64| u64::from(n > 0 && !self.deprecate_eof);
        Ok(params + eof(params) + columns + eof(columns))
    }
}

/// Status flags of an OK packet (header 0x00 or 0xFE).
fn ok_status(peek: &[u8]) -> Result<StatusFlags, ProtocolError> {
    let malformed = || ProtocolError::malformed("OK");
    let rest = peek.get(1..).ok_or_else(malformed)?;
    let (_, a) = lenenc_int(rest).ok_or_else(malformed)?;
    let rest = rest.get(a..).ok_or_else(malformed)?;
    let (_, b) = lenenc_int(rest).ok_or_else(malformed)?;
    flags_at(rest, b).ok_or_else(malformed)
}

/// The last-insert-id field of an OK packet.
fn ok_insert_id(peek: &[u8]) -> Option<u64> {
    let rest = peek.get(1..)?;
    let (_, a) = lenenc_int(rest)?;
    lenenc_int(rest.get(a..)?).map(|(id, _)| id)
}

/// Status flags of a classic EOF packet: 0xFE, warnings (2), status (2).
fn eof_status(peek: &[u8]) -> Result<StatusFlags, ProtocolError> {
    flags_at(peek, 3).ok_or(ProtocolError::malformed("EOF"))
}

/// The two little-endian status-flag bytes at `at`.
fn flags_at(bytes: &[u8], at: usize) -> Option<StatusFlags> {
    let pair: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(StatusFlags::from_bits_truncate(u16::from_le_bytes(pair)))
}

/// Where a client's command (or LOCAL INFILE file) ends.
#[derive(Debug, Clone)]
pub struct RequestScanner {
    skip: usize,
    continued: bool,
    until_empty: bool,
}

impl RequestScanner {
    /// A command: one logical packet (continued while packets are 0xFFFFFF long).
    pub fn command() -> Self {
        Self {
            skip: 0,
            continued: false,
            until_empty: false,
        }
    }

    /// The last `remaining` bytes of a command packet whose start was
    /// already sent (`remaining` > 0).
    pub fn remainder(remaining: usize) -> Self {
        Self {
            skip: remaining,
            continued: false,
            until_empty: false,
        }
    }

    /// A LOCAL INFILE file: packets until an empty one.
    pub fn infile() -> Self {
        Self {
            skip: 0,
            continued: false,
            until_empty: true,
        }
    }

    /// Same contract as [`ResponseScanner::scan`], never returning `LocalInfile`.
    pub fn scan(&mut self, buf: &[u8]) -> Progress {
        let mut pos = 0;
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            self.skip -= n;
            if self.skip > 0 {
                return Progress::NeedMore { forward: n };
            }
            pos = n;
            if !self.continued && !self.until_empty {
                return Progress::Done { end: pos };
            }
        }
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let Some((len, _seq)) = header(rest) else {
                return Progress::NeedMore { forward: pos };
            };
            self.continued = len == MAX_PAYLOAD;
            pos += HEADER_LEN;
            let available = buf.len() - pos;
            if available < len {
                self.skip = len - available;
                return Progress::NeedMore { forward: buf.len() };
            }
            pos += len;
            let ends = if self.until_empty {
                len == 0
            } else {
                !self.continued
            };
            if ends {
                return Progress::Done { end: pos };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
