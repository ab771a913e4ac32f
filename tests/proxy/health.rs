//! Backend health checks: a backend that stops answering is marked down,
//! its tenants' statements fail at once, and it is used again once it answers.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::common::faults::FaultProxy;
use crate::common::{Setup, bounded, error_code, eventually, servers};

/// The log text without terminal colours.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_backend_that_stops_answering_is_marked_down_and_served_again_when_back() {
    let proxy = FaultProxy::start(servers()[1].addr()).await;
    let mut setup = Setup::new().health(150, 500, 2);
    let acme = setup.tenant("acme", 2).await;
    let globex = setup.tenant("globex", 1).await;
    let silo = setup.backend(2, proxy.addr(), 5).start().await;
    let pool = silo.pool(2);

    // A client logged in while the backend is up; its connection goes back
    // to the pool after each statement.
    let mut client = silo.app(&acme).await;
    let n: Option<u64> = bounded("count", client.query_first("SELECT COUNT(*) FROM items"))
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    assert!(
        eventually(Duration::from_secs(5), || pool.snapshot().idle == 1).await,
        "{:?}",
        pool.snapshot()
    );
    assert!(pool.is_healthy());

    proxy.set_refuse(true);
    assert!(
        eventually(Duration::from_secs(5), || !pool.is_healthy()).await,
        "backend 2 not marked down"
    );
    // Its idle connections are closed.
    assert_eq!(pool.snapshot().idle, 0);
    assert_eq!(pool.open_connections(), 0);
    assert!(proxy.wait_for_connections(0, Duration::from_secs(5)).await);

    // A statement for its tenant fails at once, without a connect attempt.
    let before = pool.snapshot();
    let started = Instant::now();
    let err = bounded(
        "query on a down backend",
        client.query_drop("SELECT COUNT(*) FROM items"),
    )
    .await
    .expect_err("the backend is down");
    let took = started.elapsed();
    assert_eq!(error_code(&err), Some(1429), "{err}");
    assert!(err.to_string().contains("health checks"), "{err}");
    assert!(err.to_string().contains(&acme.slug), "{err}");
    // The backends' connect timeout is 2 s in these tests.
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let after = pool.snapshot();
    assert_eq!((after.opened, after.errors), (before.opened, before.errors));
    // libmariadb shows it as sent (a client-library code, 2000-2999, would
    // read "2027 Received malformed packet").
    let out = silo
        .cli(
            &format!("app.{}", acme.slug),
            crate::common::APP_PASSWORD,
            &["-e", "SELECT 1"],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR 1429 (HY000)") && stderr.contains("health checks"),
        "{stderr}"
    );

    // The other backend's tenant is unaffected.
    silo.assert_serves(&globex).await;
    assert!(silo.pool(1).is_healthy());

    proxy.set_refuse(false);
    assert!(
        eventually(Duration::from_secs(5), || pool.is_healthy()).await,
        "backend 2 not marked up again"
    );
    // The same client, still connected, is served again, as are new ones.
    let n: Option<u64> = bounded("count", client.query_first("SELECT COUNT(*) FROM items"))
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    silo.assert_serves(&acme).await;
}

#[tokio::test]
async fn down_and_up_are_each_logged_once() {
    let proxy = FaultProxy::start(servers()[0].addr()).await;
    let mut setup = Setup::new().health(100, 500, 2);
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.backend(1, proxy.addr(), 5);
    let silo = setup.spawn(Some("info")).await;
    let opts = silo.opts(&format!("app.{}", acme.slug), crate::common::APP_PASSWORD);

    proxy.set_refuse(true);
    // Many failed checks (down after the second), then the backend answers.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.set_refuse(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Bounded by `deadline`: served again after the next successful check.
    let mut served = false;
    while Instant::now() < deadline && !served {
        if let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone())).await
        {
            served = conn
                .query_first::<u64, _>("SELECT COUNT(*) FROM items")
                .await
                .is_ok_and(|n| n == Some(3));
        }
        if !served {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(served, "tenant not served again");

    let logs = strip_ansi(&silo.stop_and_read_logs().await);
    let down: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("backend marked down"))
        .collect();
    assert_eq!(down.len(), 1, "{logs}");
    assert!(down[0].contains("WARN"), "{}", down[0]);
    assert!(down[0].contains("backend=1"), "{}", down[0]);
    assert!(down[0].contains(&proxy.addr().to_string()), "{}", down[0]);
    assert!(down[0].contains("reason="), "{}", down[0]);
    let up: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("answers health checks again"))
        .collect();
    assert_eq!(up.len(), 1, "{logs}");
    assert!(
        up[0].contains("INFO") && up[0].contains("backend=1"),
        "{}",
        up[0]
    );
}
