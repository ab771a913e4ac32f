//! The binary-protocol packets whose statement ids silo maps between the
//! ids a client sees (silo's own) and those of each backend connection.
//!
//! See <https://mariadb.com/kb/en/com_stmt_prepare/> and
//! <https://mariadb.com/kb/en/com_stmt_execute/>.

/// Offset of the statement id in COM_STMT_EXECUTE, FETCH, CLOSE, RESET and
/// SEND_LONG_DATA payloads (after the command byte).
pub const ID_AT: usize = 1;
/// Command byte, statement id, flags (1), iteration count (4).
const EXECUTE_FIXED: usize = 10;

/// The statement id of a statement command's payload.
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(ID_AT..ID_AT + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Overwrites the statement id of a statement command's payload.
pub fn set_statement_id(payload: &mut [u8], id: u32) {
    if let Some(bytes) = payload.get_mut(ID_AT..ID_AT + 4) {
        bytes.copy_from_slice(&id.to_le_bytes());
    }
}

/// The first packet of a successful COM_STMT_PREPARE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
}

impl PrepareOk {
    /// Parses `0x00, id (4), columns (2), params (2), filler, warnings (2)`.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.first() != Some(&0x00) {
            return None;
        }
        let u16_at = |at: usize| {
            payload
                .get(at..at + 2)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_le_bytes)
        };
        Some(Self {
            statement_id: statement_id(payload)?,
            columns: u16_at(5)?,
            params: u16_at(7)?,
        })
    }
}

/// Where the parameter types of a COM_STMT_EXECUTE for a statement with
/// `params` parameters sit, when the packet carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteLayout {
    /// Offset of the new-params-bound flag.
    pub bound_flag_at: usize,
    /// Bytes of type information (two per parameter).
    pub types_len: usize,
}

impl ExecuteLayout {
    /// `None` for a statement without parameters (no bitmap, no flag).
    pub fn new(params: u16) -> Option<Self> {
        if params == 0 {
            return None;
        }
        let params = usize::from(params);
        Some(Self {
            bound_flag_at: EXECUTE_FIXED + params.div_ceil(8),
            types_len: 2 * params,
        })
    }

    /// Bytes of the payload needed to read the flag and the types.
    pub fn head_len(&self) -> usize {
        self.bound_flag_at + 1 + self.types_len
    }

    /// The types the packet binds, `None` when it reuses earlier ones
    /// (flag 0) or is too short.
    pub fn bound_types<'a>(&self, payload: &'a [u8]) -> Option<&'a [u8]> {
        match payload.get(self.bound_flag_at) {
            Some(1) => payload.get(self.bound_flag_at + 1..self.head_len()),
            _ => None,
        }
    }

    /// Whether the packet says "same types as last time".
    pub fn reuses_types(&self, payload: &[u8]) -> bool {
        payload.get(self.bound_flag_at) == Some(&0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn prepare_ok() {
        let ok = PrepareOk::parse(&[0, 7, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            ok,
            PrepareOk {
                statement_id: 7,
                columns: 2,
                params: 3
            }
        );
        assert!(PrepareOk::parse(&[0xFF, 1, 2]).is_none());
        assert!(PrepareOk::parse(&[0, 1]).is_none());
    }

    #[test]
    fn ids_round_trip() {
        let mut payload = [0x17, 1, 0, 0, 0, 0];
        assert_eq!(statement_id(&payload), Some(1));
        set_statement_id(&mut payload, 0x0102_0304);
        assert_eq!(statement_id(&payload), Some(0x0102_0304));
        set_statement_id(&mut [0u8; 2], 5);
    }

    #[test]
    fn execute_layout() {
        assert!(ExecuteLayout::new(0).is_none());
        let layout = ExecuteLayout::new(9).unwrap();
        assert_eq!(layout.bound_flag_at, 12);
        let mut payload = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        payload.extend_from_slice(&[8, 0].repeat(9));
        assert_eq!(layout.bound_types(&payload), Some(&[8, 0].repeat(9)[..]));
        payload[12] = 0;
        assert!(layout.reuses_types(&payload));
        assert_eq!(layout.bound_types(&payload), None);
    }
}
