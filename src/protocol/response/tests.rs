use bytes::BytesMut;

use super::*;
use crate::protocol::packet::write_packet;

const MORE: u16 = 0x0008;
const CURSOR: u16 = 0x0040;

fn ok(header: u8, status: u16) -> Vec<u8> {
    let mut p = vec![header, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn eof(status: u16) -> Vec<u8> {
    let mut p = vec![0xFE, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p
}

fn err() -> Vec<u8> {
    let mut p = vec![0xFF, 0x15, 0x04, b'#'];
    p.extend_from_slice(b"28000denied");
    p
}

fn frame(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = 1u8;
    for p in payloads {
        seq = write_packet(&mut out, seq, p);
    }
    out.to_vec()
}

fn result_set(columns: usize, rows: &[Vec<u8>], deprecate_eof: bool, status: u16) -> Vec<Vec<u8>> {
    let mut packets = vec![vec![columns as u8]];
    for _ in 0..columns {
        packets.push(
            b"\x03def\x00\x00\x00\x01a\x00\x0c\x21\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00"
                .to_vec(),
        );
    }
    if !deprecate_eof {
        packets.push(eof(0x0002));
    }
    packets.extend(rows.iter().cloned());
    packets.push(if deprecate_eof {
        ok(0xFE, status)
    } else {
        eof(status)
    });
    packets
}

/// Feeds `bytes` in chunks of `step` and returns where the scanner said the
/// response ended, checking that everything before was forwarded in order.
fn feed(scanner: &mut ResponseScanner, bytes: &[u8], step: usize) -> Progress {
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for chunk in bytes.chunks(step) {
        pending.extend_from_slice(chunk);
        loop {
            match scanner.scan(&pending).unwrap() {
                Progress::NeedMore { forward } => {
                    consumed += forward;
                    pending.drain(..forward);
                    break;
                }
                Progress::Done { end } => {
                    return Progress::Done {
                        end: consumed + end,
                    };
                }
                Progress::LocalInfile { end } => {
                    return Progress::LocalInfile {
                        end: consumed + end,
                    };
                }
                Progress::Tracked { at, end, last } => {
                    // Handed over whole, header included.
                    let (len, _) = header(&pending[at..]).unwrap();
                    assert_eq!(end - at, HEADER_LEN + len);
                    consumed += end;
                    pending.drain(..end);
                    if last {
                        return Progress::Done { end: consumed };
                    }
                }
            }
        }
    }
    Progress::NeedMore { forward: consumed }
}

fn ends_exactly(kind: CommandKind, deprecate_eof: bool, bytes: &[u8]) {
    for step in [1, 2, 3, 5, 7, 64, bytes.len().max(1)] {
        let mut s = ResponseScanner::for_command(kind, deprecate_eof).unwrap();
        assert_eq!(
            feed(&mut s, bytes, step),
            Progress::Done { end: bytes.len() },
            "step {step}"
        );
    }
    // And a response is not complete one byte early.
    let mut s = ResponseScanner::for_command(kind, deprecate_eof).unwrap();
    assert!(matches!(
        feed(&mut s, &bytes[..bytes.len() - 1], 4),
        Progress::NeedMore { .. }
    ));
}

#[test]
fn ok_and_err_end_at_once() {
    ends_exactly(CommandKind::ResultSets, true, &frame(&[ok(0, 2)]));
    ends_exactly(CommandKind::ResultSets, false, &frame(&[err()]));
    ends_exactly(
        CommandKind::SinglePacket,
        false,
        &frame(&[b"Uptime: 5".to_vec()]),
    );
}

#[test]
fn result_sets_with_and_without_deprecate_eof() {
    let rows = vec![b"\x011".to_vec(), b"\x012".to_vec(), b"\xfb".to_vec()];
    for deprecate in [true, false] {
        let bytes = frame(&result_set(2, &rows, deprecate, 0x0002));
        ends_exactly(CommandKind::ResultSets, deprecate, &bytes);
        let mut s = ResponseScanner::for_command(CommandKind::ResultSets, deprecate).unwrap();
        feed(&mut s, &bytes, 1000);
        assert!(s.status().contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT));
        assert!(!s.ended_with_error());
    }
}

#[test]
fn multiple_results_continue_until_the_last() {
    for deprecate in [true, false] {
        let mut packets = result_set(1, &[b"\x011".to_vec()], deprecate, MORE | 2);
        packets.push(ok(0, MORE | 2));
        packets.extend(result_set(1, &[], deprecate, 2));
        ends_exactly(CommandKind::ResultSets, deprecate, &frame(&packets));
    }
}

#[test]
fn error_mid_stream_ends_the_response() {
    for deprecate in [true, false] {
        let mut packets = result_set(1, &[b"\x011".to_vec()], deprecate, 2);
        packets.pop();
        packets.push(err());
        let bytes = frame(&packets);
        ends_exactly(CommandKind::ResultSets, deprecate, &bytes);
        let mut s = ResponseScanner::for_command(CommandKind::ResultSets, deprecate).unwrap();
        feed(&mut s, &bytes, 1000);
        assert!(s.ended_with_error());
    }
}

#[test]
fn rows_starting_with_0xfe_are_not_terminators() {
    // A text row whose first column has an 8-byte length prefix.
    let mut row = vec![0xFE];
    row.extend_from_slice(&5u64.to_le_bytes());
    row.extend_from_slice(b"hello");
    let bytes = frame(&result_set(1, &[row], false, 2));
    ends_exactly(CommandKind::ResultSets, false, &bytes);
}

#[test]
fn packets_larger_than_16_mib_are_followed() {
    // One 20 MiB row: a 0xFFFFFF packet and its continuation. The continuation
    // starts with 0xFE and 0xFF bytes that must not be taken as terminators.
    let mut row = vec![0xFD, 0, 0, 0x40];
    row.resize(20 << 20, 0xFE);
    let n = row.len();
    row[n - 1] = 0xFF;
    for deprecate in [true, false] {
        let bytes = frame(&result_set(1, &[row.clone()], deprecate, 2));
        for step in [1 << 16, 1 << 20, bytes.len()] {
            let mut s = ResponseScanner::for_command(CommandKind::ResultSets, deprecate).unwrap();
            assert_eq!(
                feed(&mut s, &bytes, step),
                Progress::Done { end: bytes.len() }
            );
        }
    }
}

#[test]
fn local_infile_hands_over_then_resumes() {
    let request = frame(&[b"\xfb/tmp/data.csv".to_vec()]);
    let mut s = ResponseScanner::for_command(CommandKind::ResultSets, true).unwrap();
    assert_eq!(
        s.scan(&request).unwrap(),
        Progress::LocalInfile { end: request.len() }
    );
    s.resume_after_infile();
    let done = frame(&[ok(0, 2)]);
    assert_eq!(s.scan(&done).unwrap(), Progress::Done { end: done.len() });
}

#[test]
fn prepare_responses_count_their_definitions() {
    let mut prep = vec![0x00, 1, 0, 0, 0];
    prep.extend_from_slice(&2u16.to_le_bytes()); // columns
    prep.extend_from_slice(&1u16.to_le_bytes()); // params
    prep.extend_from_slice(&[0, 0, 0]);
    let def = b"\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00\x00\x00\x00\x00\xfd\x80\x00\x00\x00\x00"
        .to_vec();
    let with_eof = frame(&[
        prep.clone(),
        def.clone(),
        eof(2),
        def.clone(),
        def.clone(),
        eof(2),
    ]);
    ends_exactly(CommandKind::Prepare, false, &with_eof);
    let without = frame(&[prep.clone(), def.clone(), def.clone(), def.clone()]);
    ends_exactly(CommandKind::Prepare, true, &without);
    let mut none = prep.clone();
    none[5] = 0;
    none[7] = 0;
    ends_exactly(CommandKind::Prepare, false, &frame(&[none]));
    ends_exactly(CommandKind::Prepare, false, &frame(&[err()]));
}

#[test]
fn cursor_open_ends_after_metadata() {
    let mut packets = vec![vec![1u8], b"\x03def".to_vec()];
    packets.push(eof(CURSOR | 2));
    ends_exactly(CommandKind::ResultSets, false, &frame(&packets));
    let fetch = frame(&[b"\x00\x00\x01".to_vec(), eof(0x0080 | CURSOR)]);
    ends_exactly(CommandKind::Rows, false, &fetch);
}

#[test]
fn nonsense_is_an_error_not_a_panic() {
    let mut s = ResponseScanner::for_command(CommandKind::ResultSets, false).unwrap();
    assert!(s.scan(&frame(&[vec![]])).is_err());
    let mut s = ResponseScanner::for_command(CommandKind::ResultSets, false).unwrap();
    assert!(s.scan(&frame(&[vec![0x00]])).is_err());
    let mut s = ResponseScanner::for_command(CommandKind::ResultSets, false).unwrap();
    assert!(s.scan(&frame(&[vec![1], vec![1], vec![0x42]])).is_err());
    // Random bytes never panic.
    let mut seed = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut bytes = vec![0u8; 64];
        for b in bytes.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (seed >> 16) as u8;
        }
        bytes[0] %= 40;
        bytes[1] = 0;
        bytes[2] = 0;
        for kind in [
            CommandKind::ResultSets,
            CommandKind::Prepare,
            CommandKind::Rows,
        ] {
            let mut s = ResponseScanner::for_command(kind, seed.is_multiple_of(2)).unwrap();
            let _ = s.scan(&bytes);
        }
    }
}

#[test]
fn request_scanner_finds_command_and_file_ends() {
    let cmd = frame(&[b"\x03SELECT 1".to_vec()]);
    let mut both = cmd.clone();
    both.extend_from_slice(&frame(&[b"\x0e".to_vec()]));
    assert_eq!(
        RequestScanner::command().scan(&both),
        Progress::Done { end: cmd.len() }
    );

    let big = frame(&[vec![0x03; 0xFF_FFFF + 10]]);
    let mut r = RequestScanner::command();
    let mut consumed = 0;
    let mut end = None;
    for chunk in big.chunks(1 << 20) {
        match r.scan(chunk) {
            Progress::NeedMore { forward } => consumed += forward,
            Progress::Done { end: e } => end = Some(consumed + e),
            Progress::LocalInfile { .. } | Progress::Tracked { .. } => unreachable!(),
        }
    }
    assert_eq!(end, Some(big.len()));

    let file = frame(&[b"1,a\n".to_vec(), b"2,b\n".to_vec(), vec![]]);
    assert_eq!(
        RequestScanner::infile().scan(&file),
        Progress::Done { end: file.len() }
    );
    assert_eq!(
        RequestScanner::infile().scan(&file[..file.len() - 4]),
        Progress::NeedMore {
            forward: file.len() - 4
        }
    );
}

/// An OK packet whose status says the session state changed, with a state
/// block (`SET time_zone='+05:00'`).
fn tracked_ok(header: u8, status: u16) -> Vec<u8> {
    let mut p = vec![header, 0, 0];
    p.extend_from_slice(&(status | 0x4000).to_le_bytes());
    p.extend_from_slice(b"\x00\x00\x00\x16\x00\x11\x09time_zone\x06+05:00\x02\x011");
    p
}

#[test]
fn ok_packets_with_session_state_are_handed_over_whole() {
    ends_exactly(CommandKind::ResultSets, true, &frame(&[tracked_ok(0, 2)]));
    ends_exactly(CommandKind::SinglePacket, true, &frame(&[tracked_ok(0, 2)]));
    let mut rows = result_set(1, &[b"\x011".to_vec()], true, 2);
    *rows.last_mut().unwrap() = tracked_ok(0xFE, 2);
    ends_exactly(CommandKind::ResultSets, true, &frame(&rows));
    // Multi-results: a tracked OK in the middle is not the end.
    let bytes = frame(&[tracked_ok(0, 2 | MORE), ok(0, 2)]);
    ends_exactly(CommandKind::ResultSets, true, &bytes);
    let mut s = ResponseScanner::for_command(CommandKind::ResultSets, true).unwrap();
    let first_len = HEADER_LEN + tracked_ok(0, 0).len();
    assert_eq!(
        s.scan(&bytes).unwrap(),
        Progress::Tracked {
            at: 0,
            end: first_len,
            last: false
        }
    );
    assert!(matches!(
        s.scan(&bytes[first_len..]).unwrap(),
        Progress::Done { .. }
    ));
}
