//! Backend health checks: one task per pool probes its server through a side
//! connection every `[health] interval_ms`. After `down_after` consecutive
//! failures the pool is marked down (leases fail fast, idle connections are
//! closed); the first success puts it back in rotation.
//!
//! # What a check is
//! Connect, read the greeting, then log in as `[health] user` with an empty
//! password and read the server's answer (OK, access denied, auth switch:
//! any answer means the server is up), all within `timeout_ms`. No tenant
//! credentials are needed, and nothing is kept open between checks.
//!
//! Reading only the greeting and hanging up would be enough to see that the
//! server answers, but MariaDB counts such a connection as an interrupted
//! handshake against `max_connect_errors`: when no real login from silo's
//! host comes in between (pools keep their connections for long), the
//! server blocks the host after 100 checks by default, and every new
//! connection from silo fails with error 1129. A completed login attempt,
//! even a refused one, is not a handshake error. With the check user
//! created on the server the check is a clean login and COM_QUIT.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mysql_common::constants::CapabilityFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::Pool;
use crate::config::HealthConfig;
use crate::protocol::command::COM_QUIT;
use crate::protocol::handshake;
use crate::protocol::packet::{self, HEADER_LEN};

/// Greetings and login replies are small; a bigger packet is not a MySQL server.
const MAX_PACKET: usize = 16 * 1024;
/// utf8mb4_general_ci: the check sends no text, any collation would do.
const COLLATION: u8 = 45;
/// Shown in the server's processlist while a check is logged in.
const ATTRIBUTES: &[(&str, &str)] = &[("program_name", "silo-health")];

/// Starts the checker of `pool`. It holds only a weak reference, so it
/// ends at its next tick once the pool is dropped. `kick` asks for a check
/// now (a lease failed to connect).
pub(super) fn spawn(pool: Weak<Pool>, kick: Arc<Notify>, config: HealthConfig) {
    tokio::spawn(run(pool, kick, config));
}

async fn run(pool: Weak<Pool>, kick: Arc<Notify>, config: HealthConfig) {
    let mut tick = tokio::time::interval(config.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut verdict = Verdict::new(config.down_after);
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = kick.notified() => {}
        }
        // Only the address is held across the check, not the pool.
        let Some((id, host, port)) = pool.upgrade().map(|p| {
            let b = p.backend();
            (b.id, b.host.clone(), b.port)
        }) else {
            return;
        };
        let outcome = check(&host, port, &config.user, config.timeout()).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let addr = format!("{host}:{port}");
        match (verdict.record(outcome.is_ok()), outcome) {
            (Change::Up, _) => {
                pool.set_healthy(true);
                let down_ms = down_since
                    .take()
                    .map_or(0, |t| t.elapsed().as_millis() as u64);
                info!(
                    backend = id,
                    addr, down_ms, "backend answers health checks again: back in rotation"
                );
            }
            (Change::Down, Err(reason)) => {
                pool.set_healthy(false);
                down_since = Some(Instant::now());
                warn!(
                    backend = id,
                    addr,
                    failures = config.down_after,
                    reason,
                    "backend marked down: leases for it fail at once until it answers again"
                );
            }
            (_, Err(reason)) => {
                debug!(backend = id, addr, reason, "backend health check failed");
            }
            (_, Ok(())) => {}
        }
    }
}

/// Consecutive-failure counting, apart from the I/O so it can be tested.
#[derive(Debug)]
struct Verdict {
    down_after: u32,
    failures: u32,
    down: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    Down,
    Up,
}

impl Verdict {
    fn new(down_after: u32) -> Self {
        Self {
            down_after: down_after.max(1),
            failures: 0,
            down: false,
        }
    }

    fn record(&mut self, ok: bool) -> Change {
        if ok {
            self.failures = 0;
            if std::mem::replace(&mut self.down, false) {
                return Change::Up;
            }
            return Change::None;
        }
        self.failures = self.failures.saturating_add(1);
        if !self.down && self.failures >= self.down_after {
            self.down = true;
            return Change::Down;
        }
        Change::None
    }
}

/// One check, bounded by `timeout`; the error says why it failed.
async fn check(host: &str, port: u16, user: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe(host, port, user)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn probe(host: &str, port: u16, user: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (seq, greeting) = read_packet(&mut stream)
        .await
        .map_err(|e| format!("no greeting: {e}"))?;
    if let Some((code, _, message)) = handshake::parse_err(&greeting) {
        // Too many connections, host blocked: the server runs and answers,
        // and connections silo already holds keep working.
        debug!(
            host,
            port, code, message, "backend answered the health check with an error"
        );
        return Ok(());
    }
    let greeting = handshake::parse_greeting(&greeting)
        .map_err(|e| format!("not a MySQL server greeting: {e}"))?;
    let wanted = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS;
    let capabilities = wanted & (greeting.capabilities | CapabilityFlags::CLIENT_LONG_PASSWORD);
    let login = handshake::backend_login(
        capabilities,
        COLLATION,
        user.as_bytes(),
        &[],
        None,
        ATTRIBUTES,
    );
    let mut seq = seq.wrapping_add(1);
    write_packet(&mut stream, seq, &login).await?;
    for _ in 0..2 {
        let (got, reply) = read_packet(&mut stream)
            .await
            .map_err(|e| format!("no answer to the login: {e}"))?;
        seq = got.wrapping_add(1);
        match reply.first() {
            Some(0x00) => {
                // Best effort: the verdict is already in.
                let mut quit = BytesMut::new();
                packet::write_command(&mut quit, COM_QUIT, &[]);
                let _ = stream.write_all(&quit).await;
                return Ok(());
            }
            // Another plugin for the check user: answer with an empty
            // password, so the login ends with the server's verdict rather
            // than a dropped handshake.
            Some(0xFE) => write_packet(&mut stream, seq, &[]).await?,
            // Access denied, or any other answer: the server is up.
            _ => return Ok(()),
        }
    }
    Ok(())
}

async fn write_packet(stream: &mut TcpStream, seq: u8, payload: &[u8]) -> Result<(), String> {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    packet::write_packet(&mut out, seq, payload);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("connection lost: {e}"))
}

async fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let (len, seq) =
        packet::header(&header).ok_or_else(|| std::io::Error::other("malformed packet header"))?;
    if len > MAX_PACKET {
        return Err(std::io::Error::other(format!(
            "packet of {len} bytes, larger than a greeting"
        )));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((seq, payload))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn down_after_consecutive_failures_and_up_at_the_first_success() {
        let mut v = Verdict::new(2);
        assert_eq!(v.record(false), Change::None);
        assert_eq!(v.record(true), Change::None);
        assert_eq!(v.record(false), Change::None);
        assert_eq!(v.record(false), Change::Down);
        assert_eq!(v.record(false), Change::None);
        assert_eq!(v.record(true), Change::Up);
        assert_eq!(v.record(true), Change::None);
        let mut once = Verdict::new(1);
        assert_eq!(once.record(false), Change::Down);
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = check("127.0.0.1", port, "silo_health", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot connect"), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_or_stays_silent_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // First connection: closed at once; second: held open, silent.
            let (first, _) = listener.accept().await.unwrap();
            drop(first);
            let (second, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(second);
        });
        let err = check("127.0.0.1", port, "silo_health", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.starts_with("no greeting"), "{err}");
        let err = check("127.0.0.1", port, "silo_health", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err, "no answer within 200 ms");
        server.abort();
    }
}
