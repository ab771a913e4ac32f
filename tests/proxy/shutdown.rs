//! Graceful shutdown of the `silo` process on SIGTERM: the listener closes,
//! idle sessions end, statements in flight and open transactions finish
//! until the deadline, then what is left is closed and silo exits with 0.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::common::mariadb::connect;
use crate::common::raw::{RawClient, err_code};
use crate::common::{APP_PASSWORD, SiloProcess, Tenant, bounded, error_code, servers};
use crate::health::strip_ansi;

/// Waits (bounded) until the listener is closed, then checks that a new
/// connection is refused.
async fn assert_refuses_new_connections(silo: &SiloProcess) {
    let deadline = Instant::now() + Duration::from_secs(5);
    // Bounded by `deadline`.
    while silo.is_listening() {
        assert!(
            Instant::now() < deadline,
            "silo still listens 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = bounded(
        "connecting after SIGTERM",
        tokio::net::TcpStream::connect(silo.addr),
    )
    .await
    .expect_err("silo accepted a connection after SIGTERM");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// Rows with `id` in the tenant's `items`, read on its server directly.
async fn count_direct(tenant: &Tenant, id: u32) -> Option<u64> {
    let server = &servers()[(tenant.backend - 1) as usize];
    let mut conn = connect(tenant.db.direct_opts(server), "direct to the tenant's db").await;
    let n = bounded(
        "count directly",
        conn.exec_first("SELECT COUNT(*) FROM items WHERE id = ?", (id,)),
    )
    .await
    .expect("count directly");
    let _ = conn.disconnect().await;
    n
}

/// Waits (bounded) until the tenant's user runs `SELECT SLEEP` on its server.
async fn wait_for_sleep(tenant: &Tenant) {
    let server = &servers()[(tenant.backend - 1) as usize];
    let mut root = server.root_conn().await;
    for _ in 0..250 {
        let running: Option<u64> = root
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT SLEEP%'",
                (&tenant.db.user,),
            )
            .await
            .expect("processlist");
        if running.unwrap_or(0) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the statement never started on the backend");
}

/// A client with an open transaction holding an uncommitted row 10.
async fn open_transaction(silo: &SiloProcess, user: &str, text: &str) -> mysql_async::Conn {
    let mut tx = connect(silo.opts(user, APP_PASSWORD).into(), "tx client").await;
    bounded("begin", tx.query_drop("BEGIN")).await.unwrap();
    bounded(
        "insert",
        tx.query_drop(format!("INSERT INTO items VALUES (10, '{text}')")),
    )
    .await
    .unwrap();
    tx
}

#[tokio::test]
async fn sigterm_lets_statements_and_transactions_finish_then_exits_cleanly() {
    let mut setup = crate::common::Setup::new().shutdown_deadline_ms(20_000);
    let acme = setup.tenant("acme", 1).await;
    let mut silo = setup.spawn(Some("info")).await;
    let user = format!("app.{}", acme.slug);

    let mut tx = open_transaction(&silo, &user, "committed while stopping").await;
    // An idle client, which is closed at once.
    let mut idle = RawClient::login(silo.addr, &user, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("raw login refused: {:?}", err_code(&e)));
    // A statement in flight.
    let mut sleeper = connect(silo.opts(&user, APP_PASSWORD).into(), "sleeper").await;
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<u64>, _> = sleeper.query_first("SELECT SLEEP(1)").await;
        r
    });
    wait_for_sleep(&acme).await;

    silo.terminate();
    assert_refuses_new_connections(&silo).await;

    // The idle session is told why and closed.
    let (seq, err) = bounded("idle client's notice", idle.read_packet())
        .await
        .expect("an ERR before the close");
    assert_eq!((seq, err_code(&err)), (1, Some(1053)), "{err:?}");
    assert!(
        bounded("idle client's close", idle.read_packet())
            .await
            .is_none()
    );

    // The statement in flight returns its result.
    let slept = bounded("in-flight statement", sleeping)
        .await
        .unwrap()
        .expect("the statement finishes");
    assert_eq!(slept, Some(0));

    // The transaction can still commit, and its row is there.
    bounded("commit", tx.query_drop("COMMIT"))
        .await
        .expect("commit during shutdown");
    assert_eq!(count_direct(&acme, 10).await, Some(1));

    // Nothing holds silo any more: it exits well before the deadline.
    let status = silo.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    let logs = strip_ansi(&silo.read_logs().await);
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(!logs.contains("shutdown deadline reached"), "{logs}");
    let last = logs.lines().last().unwrap_or_default();
    assert!(last.contains("shut down"), "last line: {last}");
}

#[tokio::test]
async fn a_transaction_left_open_past_the_deadline_is_closed_and_silo_exits_cleanly() {
    let mut setup = crate::common::Setup::new().shutdown_deadline_ms(1_000);
    let acme = setup.tenant("acme", 1).await;
    let mut silo = setup.spawn(Some("info")).await;
    let user = format!("app.{}", acme.slug);

    let mut tx = open_transaction(&silo, &user, "never committed").await;

    let stopped = Instant::now();
    silo.terminate();
    assert_refuses_new_connections(&silo).await;
    let status = silo.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    // The open transaction held silo until the deadline.
    assert!(
        stopped.elapsed() >= Duration::from_millis(900),
        "{:?}",
        stopped.elapsed()
    );

    // The client's connection is gone and its transaction was not committed.
    let err = bounded("query after the deadline", tx.query_drop("COMMIT"))
        .await
        .expect_err("the session was closed");
    assert!(
        !matches!(error_code(&err), Some(c) if c < 2000 && c != 1053),
        "{err}"
    );
    assert_eq!(count_direct(&acme, 10).await, Some(0));

    let logs = strip_ansi(&silo.read_logs().await);
    let closed = logs
        .lines()
        .find(|l| l.contains("shutdown deadline reached"))
        .unwrap_or_else(|| panic!("no deadline line:\n{logs}"));
    assert!(closed.contains("sessions=1"), "{closed}");
    let last = logs.lines().last().unwrap_or_default();
    assert!(last.contains("shut down"), "last line: {last}");
}
