//! Backends that fail: a connection cut mid-query, a server that is down.

use std::time::Duration;

use mysql_async::prelude::*;

use crate::common::faults::FaultProxy;
use crate::common::{APP_PASSWORD, Setup, bounded, error_code, eventually, servers};

#[tokio::test]
async fn a_backend_lost_mid_query_gives_an_error_and_later_clients_work() {
    let proxy = FaultProxy::start(servers()[0].addr()).await;
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.backend(1, proxy.addr(), 5).start().await;

    let mut victim = silo.app(&acme).await;
    let running = tokio::spawn(async move {
        let r: Result<Option<u8>, _> = victim.query_first("SELECT SLEEP(10)").await;
        r
    });
    assert!(proxy.wait_for_connections(1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.sever_all();
    let outcome = bounded("victim's query", running).await.unwrap();
    let err = outcome.expect_err("the query must fail, not hang or succeed");
    assert!(matches!(error_code(&err), Some(1158) | None), "{err}");

    silo.assert_serves(&acme).await;
}

#[tokio::test]
async fn a_down_backend_is_reported_and_recovery_is_seen() {
    let proxy = FaultProxy::start(servers()[1].addr()).await;
    proxy.set_refuse(true);
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let silo = setup.backend(2, proxy.addr(), 5).start().await;

    let err = silo
        .connect_err(silo.opts(&format!("app.{}", acme.slug), APP_PASSWORD))
        .await;
    assert_eq!(error_code(&err), Some(1429), "{err}");
    assert!(err.to_string().contains(&acme.slug), "{err}");

    proxy.set_refuse(false);
    // The failed connects may have had the backend marked down already:
    // it is served again after its next health check.
    let pool = silo.pool(2);
    eventually(Duration::from_secs(5), || pool.is_healthy()).await;
    assert!(pool.is_healthy(), "backend 2 answers again");
    silo.assert_serves(&acme).await;
    // The failed attempts did not leak pool slots.
    assert_eq!(silo.pool(2).open_connections(), 1);
}

#[tokio::test]
async fn a_stale_idle_connection_is_replaced_transparently() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let mut first = silo.app(&acme).await;
    let _: Option<u8> = first.query_first("SELECT 1").await.unwrap();
    first.disconnect().await.unwrap();
    // Wait for the reset connection to be idle, then kill it server-side.
    eventually(Duration::from_secs(2), || silo.pool(1).snapshot().idle == 1).await;
    crate::common::mariadb::kill_user_connections(&servers()[0], &acme.db.user).await;
    silo.assert_serves(&acme).await;
}
