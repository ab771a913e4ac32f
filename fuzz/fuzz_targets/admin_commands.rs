//! Whatever an operator types on the admin port must parse to Ok or Err.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = silo::admin::parse::parse(text);
    }
});
