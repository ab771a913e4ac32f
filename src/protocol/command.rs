//! Command bytes, and the one piece of SQL silo reads: `KILL`, because client
//! connection ids are silo's own and must be mapped before reaching a backend.
//!
//! See <https://mariadb.com/kb/en/clientserver-protocol/> (text and binary commands).

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_REFRESH: u8 = 0x07;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0A;
pub const COM_PROCESS_KILL: u8 = 0x0C;
pub const COM_DEBUG: u8 = 0x0D;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1A;
pub const COM_SET_OPTION: u8 = 0x1B;
pub const COM_STMT_FETCH: u8 = 0x1C;
pub const COM_RESET_CONNECTION: u8 = 0x1F;

/// How silo treats a command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Relayed; the backend answers with one or more result sets (or OK/ERR).
    ResultSets,
    /// Relayed; the backend answers with a prepare response.
    Prepare,
    /// Relayed; rows then a terminator (COM_STMT_FETCH, COM_FIELD_LIST).
    Rows,
    /// Relayed; the backend answers with exactly one packet.
    SinglePacket,
    /// Relayed; the backend sends nothing back.
    NoResponse,
    /// Handled by silo itself.
    Quit,
    Ping,
    ChangeUser,
    ProcessKill,
    ResetConnection,
    /// Refused: replication, shutdown and other commands a tenant has no use for.
    Unsupported,
}

pub fn classify(command: u8) -> CommandKind {
    match command {
        COM_QUERY | COM_STMT_EXECUTE => CommandKind::ResultSets,
        COM_STMT_PREPARE => CommandKind::Prepare,
        COM_STMT_FETCH | COM_FIELD_LIST => CommandKind::Rows,
        COM_INIT_DB | COM_STATISTICS | COM_STMT_RESET | COM_SET_OPTION | COM_DEBUG
        | COM_REFRESH => CommandKind::SinglePacket,
        COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA => CommandKind::NoResponse,
        COM_QUIT => CommandKind::Quit,
        COM_PING => CommandKind::Ping,
        COM_CHANGE_USER => CommandKind::ChangeUser,
        COM_PROCESS_KILL => CommandKind::ProcessKill,
        COM_RESET_CONNECTION => CommandKind::ResetConnection,
        _ => CommandKind::Unsupported,
    }
}

/// A `KILL` statement aimed at a silo connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// `KILL [HARD|SOFT] [CONNECTION] <id>`
    Connection(u64),
    /// `KILL [HARD|SOFT] QUERY <id>`
    Query(u64),
    /// A KILL form silo cannot map (`KILL USER`, `KILL QUERY ID`).
    Unsupported(&'static str),
}

/// The longest `KILL` statement worth parsing; longer queries are relayed.
pub const MAX_KILL_LEN: usize = 128;

/// Recognises a KILL statement in a COM_QUERY body, skipping leading spaces
/// and comments. Anything else, including a statement that merely starts
/// with "KILL" as part of a longer word, returns `None` and is relayed.
pub fn parse_kill(sql: &[u8]) -> Option<Kill> {
    if sql.len() > MAX_KILL_LEN {
        return None;
    }
    let mut words = Words::new(sql);
    if !words.next()?.eq_ignore_ascii_case(b"kill") {
        return None;
    }
    let mut word = words.next()?;
    if word.eq_ignore_ascii_case(b"hard") || word.eq_ignore_ascii_case(b"soft") {
        word = words.next()?;
    }
    let query = if word.eq_ignore_ascii_case(b"query") {
        word = words.next()?;
        if word.eq_ignore_ascii_case(b"id") {
            return Some(Kill::Unsupported("KILL QUERY ID"));
        }
        true
    } else if word.eq_ignore_ascii_case(b"connection") {
        word = words.next()?;
        false
    } else {
        false
    };
    if word.eq_ignore_ascii_case(b"user") {
        return Some(Kill::Unsupported("KILL USER"));
    }
    let id: u64 = std::str::from_utf8(word).ok()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(if query {
        Kill::Query(id)
    } else {
        Kill::Connection(id)
    })
}

/// Splits SQL into words, dropping whitespace, comments and a trailing `;`.
struct Words<'a> {
    rest: &'a [u8],
}

impl<'a> Words<'a> {
    fn new(sql: &'a [u8]) -> Self {
        Self { rest: sql }
    }

    fn skip_blank(&mut self) {
        loop {
            let trimmed = self.rest.trim_ascii_start();
            if let Some(after) = trimmed.strip_prefix(b"/*") {
                let end = after.windows(2).position(|w| w == b"*/");
                self.rest = end.and_then(|e| after.get(e + 2..)).unwrap_or_default();
            } else if let Some(after) = trimmed
                .strip_prefix(b"-- ")
                .or_else(|| trimmed.strip_prefix(b"#"))
            {
                let end = after.iter().position(|&b| b == b'\n');
                self.rest = end.and_then(|e| after.get(e + 1..)).unwrap_or_default();
            } else if let Some(after) = trimmed.strip_prefix(b";") {
                self.rest = after;
            } else {
                self.rest = trimmed;
                return;
            }
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.skip_blank();
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b';' || *b == b'/')
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kill_forms() {
        assert_eq!(parse_kill(b"KILL 12"), Some(Kill::Connection(12)));
        assert_eq!(
            parse_kill(b"kill connection 12;"),
            Some(Kill::Connection(12))
        );
        assert_eq!(parse_kill(b"  /* x */ KILL QUERY 7 "), Some(Kill::Query(7)));
        assert_eq!(parse_kill(b"KILL HARD QUERY 7"), Some(Kill::Query(7)));
        assert_eq!(parse_kill(b"KILL SOFT 7"), Some(Kill::Connection(7)));
        assert_eq!(
            parse_kill(b"KILL QUERY ID 7"),
            Some(Kill::Unsupported("KILL QUERY ID"))
        );
        assert_eq!(
            parse_kill(b"KILL USER app"),
            Some(Kill::Unsupported("KILL USER"))
        );
    }

    #[test]
    fn leaves_other_statements_alone() {
        assert_eq!(parse_kill(b"SELECT 1"), None);
        assert_eq!(parse_kill(b"KILLER 1"), None);
        assert_eq!(parse_kill(b"KILL 1; SELECT 2"), None);
        assert_eq!(parse_kill(b"KILL abc"), None);
        assert_eq!(parse_kill(b"KILL"), None);
        assert_eq!(parse_kill(b"/* unterminated"), None);
        assert_eq!(parse_kill(&[b' '; 300]), None);
    }

    #[test]
    fn classifies_commands() {
        assert_eq!(classify(COM_QUERY), CommandKind::ResultSets);
        assert_eq!(classify(COM_STMT_CLOSE), CommandKind::NoResponse);
        assert_eq!(classify(0x12), CommandKind::Unsupported); // COM_BINLOG_DUMP
        assert_eq!(classify(0xFF), CommandKind::Unsupported);
    }
}
