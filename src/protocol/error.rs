//! Framing and parse failures. They never carry payload bytes, which may hold secrets.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("malformed {what} packet")]
    Malformed { what: &'static str },
    #[error("packet sequence id {got} where {expected} was expected")]
    Sequence { expected: u8, got: u8 },
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("client does not speak protocol 4.1")]
    Pre41Client,
    #[error("empty packet where a command was expected")]
    EmptyCommand,
}

impl ProtocolError {
    pub fn malformed(what: &'static str) -> Self {
        ProtocolError::Malformed { what }
    }
}
