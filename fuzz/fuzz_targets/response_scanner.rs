//! Any backend bytes, split anywhere, must give Ok/Err from the scanners,
//! never a panic, and never claim more bytes than were given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silo::protocol::command::CommandKind;
use silo::protocol::response::{Progress, RequestScanner, ResponseScanner};

const KINDS: [CommandKind; 4] = [
    CommandKind::ResultSets,
    CommandKind::Prepare,
    CommandKind::Rows,
    CommandKind::SinglePacket,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(control & 3)];
    let deprecate_eof = control & 4 != 0;
    let step = usize::from(control >> 3) + 1;
    let Some(mut scanner) = ResponseScanner::for_command(kind, deprecate_eof) else {
        return;
    };
    let mut request = RequestScanner::command();
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_request: Vec<u8> = Vec::new();
    for chunk in bytes.chunks(step) {
        pending.extend_from_slice(chunk);
        pending_request.extend_from_slice(chunk);
        match scanner.scan(&pending) {
            Ok(Progress::NeedMore { forward }) => {
                assert!(forward <= pending.len());
                pending.drain(..forward);
            }
            Ok(Progress::Done { end } | Progress::LocalInfile { end }) => {
                assert!(end <= pending.len());
                break;
            }
            Err(_) => break,
        }
        match request.scan(&pending_request) {
            Progress::NeedMore { forward } => {
                assert!(forward <= pending_request.len());
                pending_request.drain(..forward);
            }
            Progress::Done { end } | Progress::LocalInfile { end } => {
                assert!(end <= pending_request.len());
                pending_request.drain(..end);
                request = RequestScanner::command();
            }
        }
    }
});
