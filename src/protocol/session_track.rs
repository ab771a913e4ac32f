//! The session-state information the server appends to OK packets when the
//! connection negotiated CLIENT_SESSION_TRACK, and the rewrite that removes
//! it for clients that did not.
//!
//! OK packet: header (0x00 or 0xFE), affected rows, last insert id (both
//! length-encoded), status flags (2), warnings (2), then with
//! CLIENT_SESSION_TRACK the info string (length-encoded) and, when the status
//! has SERVER_SESSION_STATE_CHANGED, the state information: a length-encoded
//! block of entries `type (1) · data (length-encoded)`.
//!
//! Servers write the info string length-encoded whatever the client's
//! capabilities (MariaDB's `net_send_ok`), so stripping the state block and
//! the flag leaves exactly the packet a client without CLIENT_SESSION_TRACK
//! expects.
//!
//! See <https://mariadb.com/kb/en/ok_packet/>.

use mysql_common::constants::StatusFlags;

use super::ProtocolError;
use bytes::BytesMut;

use super::packet::{HEADER_LEN, lenenc_int};

const SYSTEM_VARIABLES: u8 = 0;
const SCHEMA: u8 = 1;
const STATE_CHANGE: u8 = 2;
const TRANSACTION_CHARACTERISTICS: u8 = 4;
const TRANSACTION_STATE: u8 = 5;

/// One entry of the session-state block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateItem<'a> {
    SystemVariable {
        name: &'a [u8],
        value: &'a [u8],
    },
    Schema(&'a [u8]),
    /// Some session state changed (user variables, temporary tables,
    /// prepared statements, system variables…), without saying which.
    StateChanged,
    /// Eight characters, `_` when a property is absent: `T`/`I` explicit or
    /// implicit transaction, … , `L` (8th) tables locked with LOCK TABLES.
    TransactionState(&'a [u8]),
    /// The statements that would recreate the characteristics of the current
    /// or next transaction (`SET TRANSACTION ISOLATION LEVEL …;`), empty
    /// when there are none.
    TransactionCharacteristics(&'a [u8]),
    Other,
}

/// The parts of an OK packet payload silo looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkPacket<'a> {
    pub status: StatusFlags,
    /// Where the info string starts (its length prefix), when present.
    info_at: Option<usize>,
    /// The session-state entries, empty unless the state changed.
    state: &'a [u8],
    /// Where the state block (with its length prefix) starts.
    state_at: usize,
}

impl<'a> OkPacket<'a> {
    /// Parses an OK payload from a connection with CLIENT_SESSION_TRACK.
    ///
    /// # Errors
    /// A truncated or inconsistent packet.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        let malformed = || ProtocolError::malformed("OK");
        let mut at = 1;
        for _ in 0..2 {
            let (_, used) =
                lenenc_int(payload.get(at..).ok_or_else(malformed)?).ok_or_else(malformed)?;
            at += used;
        }
        let flags: [u8; 2] = payload
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        let status = StatusFlags::from_bits_truncate(u16::from_le_bytes(flags));
        at += 4;
        let mut ok = OkPacket {
            status,
            info_at: None,
            state: &[],
            state_at: payload.len(),
        };
        if at >= payload.len() {
            return Ok(ok);
        }
        ok.info_at = Some(at);
        let (info_len, used) =
            lenenc_int(payload.get(at..).unwrap_or_default()).ok_or_else(malformed)?;
        at = usize::try_from(info_len)
            .ok()
            .and_then(|n| n.checked_add(at + used))
            .ok_or_else(malformed)?;
        if at > payload.len() {
            return Err(malformed());
        }
        if status.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) && at < payload.len() {
            ok.state_at = at;
            let (block, _) =
                lenenc_bytes(payload.get(at..).unwrap_or_default()).ok_or_else(malformed)?;
            ok.state = block;
        }
        Ok(ok)
    }

    /// The session-state entries.
    pub fn items(&self) -> StateItems<'a> {
        StateItems { rest: self.state }
    }

    /// Whether a client without CLIENT_SESSION_TRACK needs a rewritten packet.
    pub fn carries_state(&self) -> bool {
        self.status
            .contains(StatusFlags::SERVER_SESSION_STATE_CHANGED)
    }

    /// Appends `payload` framed with `seq` as a client without
    /// CLIENT_SESSION_TRACK expects it: the state block cut off and
    /// SERVER_SESSION_STATE_CHANGED cleared.
    pub fn write_without_state(&self, payload: &[u8], seq: u8, out: &mut BytesMut) {
        let len = self.state_at.min(payload.len());
        let status = self.status - StatusFlags::SERVER_SESSION_STATE_CHANGED;
        let status_at = self.status_offset(payload).unwrap_or(len).min(len);
        let before = payload.get(..status_at).unwrap_or_default();
        let after = payload.get(status_at + 2..len).unwrap_or_default();
        let mut header = [0u8; HEADER_LEN];
        if let Some(b) = header.get_mut(..3) {
            b.copy_from_slice(len.to_le_bytes().get(..3).unwrap_or(&[0, 0, 0]));
        }
        if let Some(b) = header.get_mut(3) {
            *b = seq;
        }
        out.extend_from_slice(&header);
        out.extend_from_slice(before);
        if status_at + 2 <= len {
            out.extend_from_slice(&status.bits().to_le_bytes());
        }
        out.extend_from_slice(after);
    }

    fn status_offset(&self, payload: &[u8]) -> Option<usize> {
        let mut at = 1;
        for _ in 0..2 {
            let (_, used) = lenenc_int(payload.get(at..)?)?;
            at += used;
        }
        Some(at)
    }
}

/// Iterator over the entries of a session-state block; stops at the first
/// malformed entry.
#[derive(Debug, Clone)]
pub struct StateItems<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StateItems<'a> {
    type Item = StateItem<'a>;

    fn next(&mut self) -> Option<StateItem<'a>> {
        let (&kind, rest) = self.rest.split_first()?;
        let Some((data, rest)) = lenenc_bytes(rest) else {
            self.rest = &[];
            return None;
        };
        self.rest = rest;
        Some(match kind {
            SYSTEM_VARIABLES => {
                let parsed =
                    lenenc_bytes(data).and_then(|(name, rest)| Some((name, lenenc_bytes(rest)?.0)));
                match parsed {
                    Some((name, value)) => StateItem::SystemVariable { name, value },
                    None => StateItem::Other,
                }
            }
            SCHEMA => match lenenc_bytes(data) {
                Some((name, _)) => StateItem::Schema(name),
                None => StateItem::Other,
            },
            STATE_CHANGE => StateItem::StateChanged,
            TRANSACTION_STATE => match lenenc_bytes(data) {
                Some((state, _)) => StateItem::TransactionState(state),
                None => StateItem::Other,
            },
            TRANSACTION_CHARACTERISTICS => match lenenc_bytes(data) {
                Some((text, _)) => StateItem::TransactionCharacteristics(text),
                None => StateItem::Other,
            },
            _ => StateItem::Other,
        })
    }
}

/// A length-encoded string and what follows it.
fn lenenc_bytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = lenenc_int(buf)?;
    let len = usize::try_from(len).ok()?;
    let rest = buf.get(used..)?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// `SET time_zone='+05:00'` on MariaDB 10.11 with tracking on.
    const SET_TIME_ZONE: &[u8] =
        b"\x00\x00\x00\x02\x40\x00\x00\x00\x16\x00\x11\x09time_zone\x06+05:00\x02\x011";

    #[test]
    fn reads_state_items() {
        let ok = OkPacket::parse(SET_TIME_ZONE).unwrap();
        assert!(ok.carries_state());
        let items: Vec<_> = ok.items().collect();
        assert_eq!(
            items,
            vec![
                StateItem::SystemVariable {
                    name: b"time_zone",
                    value: b"+05:00"
                },
                StateItem::StateChanged
            ]
        );
    }

    #[test]
    fn strips_state_for_old_clients() {
        let ok = OkPacket::parse(SET_TIME_ZONE).unwrap();
        let mut out = BytesMut::new();
        ok.write_without_state(SET_TIME_ZONE, 1, &mut out);
        // Empty info kept, flag cleared, state gone, header rewritten.
        assert_eq!(
            &out[..],
            b"\x08\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00"
        );
        let again = OkPacket::parse(&out[4..]).unwrap();
        assert!(!again.carries_state());
        assert_eq!(again.items().count(), 0);
    }

    #[test]
    fn plain_ok_without_info() {
        let ok = OkPacket::parse(b"\x00\x01\x00\x02\x00\x00\x00").unwrap();
        assert_eq!(ok.status, StatusFlags::SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(ok.items().count(), 0);
    }

    #[test]
    fn transaction_state_and_schema() {
        let payload = b"\x00\x00\x00\x03\x40\x00\x00\x00\x13\x05\x09\x08T_______\x01\x06\x05mysql";
        let ok = OkPacket::parse(payload).unwrap();
        let items: Vec<_> = ok.items().collect();
        assert_eq!(
            items,
            vec![
                StateItem::TransactionState(b"T_______"),
                StateItem::Schema(b"mysql")
            ]
        );
    }

    #[test]
    fn truncated_packets_are_errors_not_panics() {
        for cut in 0..SET_TIME_ZONE.len() {
            let _ = OkPacket::parse(&SET_TIME_ZONE[..cut]).map(|ok| ok.items().count());
        }
        assert!(OkPacket::parse(b"\x00\x00").is_err());
        // Info length beyond the packet.
        assert!(OkPacket::parse(b"\x00\x00\x00\x02\x00\x00\x00\x09ab").is_err());
    }
}
