//! Packet framing: the 4-byte header (3-byte little-endian length, sequence id),
//! payloads split at 0xFFFFFF bytes, and length-encoded integers.
//!
//! See <https://mariadb.com/kb/en/0-packet/>.

use bytes::{Buf, BufMut, BytesMut};

use super::ProtocolError;

/// Largest payload of one physical packet; a payload of exactly this size is
/// continued by the next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
pub const HEADER_LEN: usize = 4;

/// Length and sequence id of the packet whose header starts `buf`, if complete.
#[inline]
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    match buf {
        [a, b, c, seq, ..] => Some((
            usize::from(*a) | (usize::from(*b) << 8) | (usize::from(*c) << 16),
            *seq,
        )),
        _ => None,
    }
}

/// Takes one whole packet of at most `max` payload bytes off the front of
/// `buf`: `Ok(None)` until it has fully arrived. For login and control
/// packets, which are never continued over 0xFFFFFF-byte packets.
///
/// # Errors
/// A packet longer than `max` (checked before waiting for its bytes).
pub fn take_packet(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(u8, BytesMut)>, ProtocolError> {
    let Some((len, seq)) = header(buf) else {
        return Ok(None);
    };
    if len > max || len >= MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge { len, max });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    Ok(Some((seq, buf.split_to(len))))
}

/// Appends `payload` framed as one logical packet starting at `seq`, split into
/// 0xFFFFFF-byte physical packets (with an empty final one when the payload is
/// a multiple of that size). Returns the next sequence id.
pub fn write_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    out.reserve(payload.len() + HEADER_LEN);
    let mut chunks = payload.chunks(MAX_PAYLOAD);
    let mut last_len = 0;
    for chunk in &mut chunks {
        put_header(out, chunk.len(), seq);
        out.put_slice(chunk);
        seq = seq.wrapping_add(1);
        last_len = chunk.len();
    }
    if payload.is_empty() || last_len == MAX_PAYLOAD {
        put_header(out, 0, seq);
        seq = seq.wrapping_add(1);
    }
    seq
}

/// Appends a command packet (sequence id 0): the command byte followed by
/// `argument`, framed without copying the argument twice.
pub fn write_command(out: &mut BytesMut, command: u8, argument: &[u8]) {
    if argument.len() + 1 < MAX_PAYLOAD {
        out.reserve(HEADER_LEN + 1 + argument.len());
        put_header(out, argument.len() + 1, 0);
        out.put_u8(command);
        out.put_slice(argument);
    } else {
        let mut payload = Vec::with_capacity(argument.len() + 1);
        payload.push(command);
        payload.extend_from_slice(argument);
        write_packet(out, 0, &payload);
    }
}

fn put_header(out: &mut BytesMut, len: usize, seq: u8) {
    let len = len.to_le_bytes();
    out.put_slice(&[
        len.first().copied().unwrap_or(0),
        len.get(1).copied().unwrap_or(0),
        len.get(2).copied().unwrap_or(0),
        seq,
    ]);
}

/// Reads a length-encoded integer; returns the value and the bytes it used.
/// `None` for a truncated integer or the 0xFB/0xFF markers.
pub fn lenenc_int(buf: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = buf.split_first()?;
    let width = match first {
        0..=0xFA => return Some((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        value |= u64::from(*b) << (8 * i);
    }
    Some((value, width + 1))
}

pub fn put_lenenc_int(out: &mut BytesMut, value: u64) {
    match value {
        0..=0xFA => out.put_u8(value as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(value as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(value, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(value);
        }
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_lenenc_int(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// Reads a NUL-terminated string, returning it and the rest after the NUL.
pub fn null_terminated(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = buf.iter().position(|&b| b == 0)?;
    Some((buf.get(..end)?, buf.get(end + 1..)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    #[test]
    fn command_packets_match_write_packet() {
        let mut a = BytesMut::new();
        write_command(&mut a, 0x03, b"SELECT 1");
        let mut b = BytesMut::new();
        write_packet(&mut b, 0, b"\x03SELECT 1");
        assert_eq!(a, b);
    }

    use super::*;

    #[test]
    fn header_reads_length_and_sequence() {
        assert_eq!(header(&[0x01, 0x02, 0x03, 0x07]), Some((0x030201, 7)));
        assert_eq!(header(&[0xFF, 0xFF, 0xFF, 0x00, 9]), Some((MAX_PAYLOAD, 0)));
        assert_eq!(header(&[1, 0, 0]), None);
    }

    #[test]
    fn write_packet_splits_at_the_boundary() {
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 0, b"abc"), 1);
        assert_eq!(&out[..], &[3, 0, 0, 0, b'a', b'b', b'c']);

        for (len, packets) in [
            (MAX_PAYLOAD - 1, 1),
            (MAX_PAYLOAD, 2),
            (MAX_PAYLOAD + 1, 2),
            (2 * MAX_PAYLOAD, 3),
        ] {
            let mut out = BytesMut::new();
            let next = write_packet(&mut out, 255, &vec![7u8; len]);
            assert_eq!(next, 255u8.wrapping_add(packets), "len {len}");
            assert_eq!(out.len(), len + 4 * packets as usize, "len {len}");
            // Walk the frames back.
            let (mut pos, mut total, mut seq) = (0, 0, 255u8);
            loop {
                let (l, s) = header(&out[pos..]).unwrap();
                assert_eq!(s, seq);
                seq = seq.wrapping_add(1);
                total += l;
                pos += 4 + l;
                if l < MAX_PAYLOAD {
                    break;
                }
            }
            assert_eq!((pos, total), (out.len(), len));
        }
    }

    #[test]
    fn empty_payload_is_one_empty_packet() {
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 3, b""), 4);
        assert_eq!(&out[..], &[0, 0, 0, 3]);
    }

    #[test]
    fn lenenc_round_trips_at_each_width() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(lenenc_int(&out), Some((v, out.len())), "{v}");
            // One byte short is always "incomplete", never a wrong value.
            assert_eq!(lenenc_int(&out[..out.len() - 1]), None, "{v} truncated");
        }
        assert_eq!(lenenc_int(&[0xFB]), None);
        assert_eq!(lenenc_int(&[0xFF]), None);
        assert_eq!(lenenc_int(&[]), None);
    }

    #[test]
    fn take_packet_waits_for_whole_packets_and_bounds_them() {
        let mut buf = BytesMut::from(&[3, 0, 0, 1, b'a', b'b'][..]);
        assert_eq!(take_packet(&mut buf, 16), Ok(None));
        buf.extend_from_slice(b"c\x01");
        let (seq, payload) = take_packet(&mut buf, 16).unwrap().unwrap();
        assert_eq!((seq, &payload[..]), (1, &b"abc"[..]));
        assert_eq!(&buf[..], b"\x01");
        let mut big = BytesMut::from(&[0xFF, 0xFF, 0x00, 0][..]);
        assert!(matches!(
            take_packet(&mut big, 16),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn null_terminated_splits() {
        assert_eq!(null_terminated(b"ab\0cd"), Some((&b"ab"[..], &b"cd"[..])));
        assert_eq!(null_terminated(b"ab"), None);
    }
}
