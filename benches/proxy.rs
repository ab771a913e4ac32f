//! `cargo bench --bench proxy`: the load benchmark of benches/run.sh (direct
//! MariaDB vs HAProxy vs silo, sysbench point selects, 1,000 clients through
//! a small backend pool, idle-connection memory), driven by cargo so that it
//! uses the silo binary cargo has just built in the bench (release) profile.
//!
//! Declared in Cargo.toml as
//!
//! ```toml
//! [[bench]]
//! name = "proxy"
//! harness = false
//! ```
//!
//! All of run.sh's environment variables (BENCH_SECONDS, BENCH_ROUNDS,
//! BENCH_MANY, ...) apply, as run.sh inherits the environment; SILO_BIN,
//! when set, wins over cargo's binary. `cargo test --benches` (no `--bench`
//! argument) only prints that it skipped: the benchmark takes minutes and
//! starts servers.

use std::path::Path;
use std::process::{Command, ExitCode};

// Until the [[bench]] stanza sets `harness = false`, cargo builds this file
// with the libtest harness, which brings its own main.
#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("proxy benchmark skipped: run it with `cargo bench --bench proxy`");
        return ExitCode::SUCCESS;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("benches/run.sh")).current_dir(root);
    if let (None, Some(bin)) = (
        std::env::var_os("SILO_BIN"),
        option_env!("CARGO_BIN_EXE_silo"),
    ) {
        cmd.env("SILO_BIN", bin);
    }
    match cmd.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("benches/run.sh failed: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run bash benches/run.sh: {e}");
            ExitCode::FAILURE
        }
    }
}
