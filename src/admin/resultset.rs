//! What the admin port answers with: text result sets (column definitions
//! from `mysql_common`, text rows, then an EOF packet, or an OK packet with
//! the 0xFE header for clients that set CLIENT_DEPRECATE_EOF) and OK packets
//! carrying an info message.
//!
//! The admin port never offers CLIENT_SESSION_TRACK: OK packets carry no
//! session state.
//! See <https://mariadb.com/kb/en/result-set-packets/>.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use mysql_common::constants::{ColumnFlags, ColumnType, StatusFlags};
use mysql_common::packets::Column;
use mysql_common::proto::MySerialize;

use crate::protocol::packet::{put_lenenc_bytes, put_lenenc_int, write_packet};

/// The `binary` character set, which numeric columns carry.
const BINARY: u16 = 63;
/// Widest unsigned 64-bit number in decimal digits.
const UINT_WIDTH: u32 = 20;

/// How a column's values are typed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// An unsigned integer: clients may read it as a number.
    UInt,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    UInt(u64),
}

impl Value {
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Null => None,
            Value::Text(s) => Some(Cow::Borrowed(s)),
            Value::UInt(n) => Some(Cow::Owned(n.to_string())),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::UInt(n)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::UInt(n as u64)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::UInt(u64::from(n))
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::UInt(u64::from(n))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `yes` / `no`, as the admin port shows flags.
pub fn yes_no(on: bool) -> Value {
    Value::Text(if on { "yes" } else { "no" }.to_string())
}

/// A complete result: column names and kinds, and rows of cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    columns: Vec<(String, Kind)>,
    rows: Vec<Vec<Value>>,
}

impl ResultSet {
    pub fn new(columns: &[(&str, Kind)]) -> Self {
        Self::with_columns(
            columns
                .iter()
                .map(|(name, kind)| ((*name).to_string(), *kind))
                .collect(),
        )
    }

    /// Text columns named `names`.
    pub fn text(names: &[&str]) -> Self {
        Self::with_columns(
            names
                .iter()
                .map(|n| ((*n).to_string(), Kind::Text))
                .collect(),
        )
    }

    /// Columns whose names are only known at run time (`SELECT @@x AS y`).
    pub fn with_columns(columns: Vec<(String, Kind)>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are NULL, extra ones dropped, so the
    /// packets always match the column count.
    pub fn push(&mut self, mut row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        row.resize(self.columns.len(), Value::Null);
        self.rows.push(row);
    }

    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(name, _)| name.as_str())
    }

    pub fn rows(&self) -> &[Vec<Value>] {
        &self.rows
    }

    /// Appends the whole result as packets with sequence ids from 1 (the
    /// answer to a command) and returns the next sequence id.
    pub fn write(&self, out: &mut BytesMut, deprecate_eof: bool) -> u8 {
        let mut count = BytesMut::new();
        put_lenenc_int(&mut count, self.columns.len() as u64);
        let mut seq = write_packet(out, 1, &count);
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let widest = self
                .rows
                .iter()
                .filter_map(|row| row.get(i).and_then(Value::text))
                .map(|text| text.chars().count())
                .chain([name.chars().count(), 1])
                .max()
                .unwrap_or(1);
            let column = match kind {
                Kind::Text => Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
                    .with_character_set(u16::from(super::COLLATION))
                    // Bytes, as servers report: four per utf8mb4 character.
                    .with_column_length(
                        u32::try_from(widest.saturating_mul(4)).unwrap_or(u32::MAX),
                    ),
                Kind::UInt => Column::new(ColumnType::MYSQL_TYPE_LONGLONG)
                    .with_character_set(BINARY)
                    .with_column_length(UINT_WIDTH)
                    .with_flags(ColumnFlags::UNSIGNED_FLAG | ColumnFlags::NUM_FLAG),
            }
            .with_name(name.as_bytes())
            .with_org_name(name.as_bytes());
            let mut payload = Vec::with_capacity(32 + name.len());
            column.serialize(&mut payload);
            seq = write_packet(out, seq, &payload);
        }
        if !deprecate_eof {
            seq = write_packet(out, seq, &eof_payload());
        }
        let mut row_payload = BytesMut::new();
        for row in &self.rows {
            row_payload.clear();
            for value in row {
                match value.text() {
                    // NULL in a text row.
                    None => row_payload.put_u8(0xFB),
                    Some(text) => put_lenenc_bytes(&mut row_payload, text.as_bytes()),
                }
            }
            seq = write_packet(out, seq, &row_payload);
        }
        let end = if deprecate_eof {
            ok_payload(0xFE, 0, "")
        } else {
            BytesMut::from(&eof_payload()[..])
        };
        write_packet(out, seq, &end)
    }
}

fn status() -> StatusFlags {
    StatusFlags::SERVER_STATUS_AUTOCOMMIT
}

/// EOF packet: header, no warnings, status flags.
fn eof_payload() -> [u8; 5] {
    let [lo, hi] = status().bits().to_le_bytes();
    [0xFE, 0, 0, lo, hi]
}

/// An OK packet (`header` 0x00, or 0xFE where it ends a result set) with
/// `affected` rows and an info message.
fn ok_payload(header: u8, affected: u64, info: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(8 + info.len());
    out.put_u8(header);
    put_lenenc_int(&mut out, affected);
    put_lenenc_int(&mut out, 0); // last insert id
    out.put_u16_le(status().bits());
    out.put_u16_le(0); // warnings
    if !info.is_empty() {
        // Length-encoded, as servers send it and clients read it, whatever
        // the protocol documentation says of clients without session tracking.
        put_lenenc_bytes(&mut out, info.as_bytes());
    }
    out
}

/// Appends the OK packet answering a command (sequence id 1).
pub fn write_ok(out: &mut BytesMut, affected: u64, info: &str) {
    write_packet(out, 1, &ok_payload(0x00, affected, info));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::MyDeserialize;

    use super::*;
    use crate::protocol::packet::{lenenc_int, take_packet};

    fn packets(mut out: BytesMut) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        while let Some((seq, payload)) = take_packet(&mut out, 1 << 20).unwrap() {
            all.push((seq, payload.to_vec()));
        }
        assert!(out.is_empty(), "trailing bytes");
        all
    }

    fn sample() -> ResultSet {
        let mut rs = ResultSet::new(&[("slug", Kind::Text), ("clients", Kind::UInt)]);
        rs.push(vec!["acme".into(), 3u64.into()]);
        rs.push(vec![Value::Null, 0u64.into()]);
        rs
    }

    #[test]
    fn classic_result_has_eof_after_columns_and_rows() {
        let mut out = BytesMut::new();
        let next = sample().write(&mut out, false);
        let p = packets(out);
        // count, 2 columns, EOF, 2 rows, EOF
        assert_eq!(p.len(), 7);
        assert_eq!(next, 8);
        for (i, (seq, _)) in p.iter().enumerate() {
            assert_eq!(usize::from(*seq), i + 1, "sequence ids run from 1");
        }
        assert_eq!(p[0].1, vec![2]);
        let slug = Column::deserialize((), &mut ParseBuf(&p[1].1)).unwrap();
        assert_eq!(slug.name_str(), "slug");
        assert_eq!(slug.column_type(), ColumnType::MYSQL_TYPE_VAR_STRING);
        let clients = Column::deserialize((), &mut ParseBuf(&p[2].1)).unwrap();
        assert_eq!(clients.name_str(), "clients");
        assert_eq!(clients.column_type(), ColumnType::MYSQL_TYPE_LONGLONG);
        assert!(clients.flags().contains(ColumnFlags::UNSIGNED_FLAG));
        assert_eq!(p[3].1, vec![0xFE, 0, 0, 2, 0]);
        assert_eq!(p[4].1, b"\x04acme\x013".to_vec());
        assert_eq!(p[5].1, b"\xFB\x010".to_vec());
        assert_eq!(p[6].1, vec![0xFE, 0, 0, 2, 0]);
    }

    #[test]
    fn deprecate_eof_drops_the_middle_eof_and_ends_with_an_ok() {
        let mut out = BytesMut::new();
        sample().write(&mut out, true);
        let p = packets(out);
        // count, 2 columns, 2 rows, OK
        assert_eq!(p.len(), 6);
        assert_eq!(p[3].1, b"\x04acme\x013".to_vec());
        assert_eq!(p[5].1, vec![0xFE, 0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn empty_result_and_ragged_rows() {
        let mut rs = ResultSet::text(&["a", "b"]);
        let mut out = BytesMut::new();
        rs.write(&mut out, true);
        assert_eq!(packets(out).len(), 4);
        rs.rows.push(vec!["only".into()]);
        rs.rows.last_mut().unwrap().resize(2, Value::Null);
        let mut out = BytesMut::new();
        rs.write(&mut out, true);
        assert_eq!(packets(out)[3].1, b"\x04only\xFB".to_vec());
    }

    #[test]
    fn long_values_use_wider_length_prefixes() {
        let mut rs = ResultSet::text(&["detail"]);
        let long = "x".repeat(300);
        rs.push(vec![long.clone().into()]);
        let mut out = BytesMut::new();
        rs.write(&mut out, true);
        let row = &packets(out)[2].1;
        assert_eq!(lenenc_int(row), Some((300, 3)));
        assert_eq!(&row[3..], long.as_bytes());
    }

    #[test]
    fn ok_carries_affected_rows_and_info() {
        let mut out = BytesMut::new();
        write_ok(&mut out, 1, "route table version 7");
        let p = packets(out);
        assert_eq!(p[0].0, 1);
        assert_eq!(&p[0].1[..7], &[0, 1, 0, 2, 0, 0, 0]);
        assert_eq!(&p[0].1[7..], b"\x15route table version 7");
        let mut out = BytesMut::new();
        write_ok(&mut out, 0, "");
        assert_eq!(packets(out)[0].1, vec![0, 0, 0, 2, 0, 0, 0]);
    }
}
