//! Whatever a client sends at login or as a command must parse to Ok or Err.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use silo::protocol::{command, handshake};

fuzz_target!(|data: &[u8]| {
    let _ = handshake::parse_first_response(data);
    let _ = handshake::parse_login(data);
    let _ = handshake::parse_greeting(data);
    let _ = handshake::parse_err(data);
    let _ = handshake::parse_auth_switch(data);
    // Every capability bit, so every optional field is attempted.
    let _ = handshake::parse_change_user(data, CapabilityFlags::all());
    let _ = handshake::parse_change_user(data, CapabilityFlags::empty());
    let _ = command::parse_kill(data);
});
