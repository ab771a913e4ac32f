//! Plans as limits and tenant statuses, enforced live: each refusal's code
//! and message, and that the other tenants keep working.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mysql_async::prelude::*;
use silo::limits::Refusal;

use crate::common::{APP_PASSWORD, Setup, Silo, Tenant, bounded, error_code, servers};

fn refused_with(err: &mysql_async::Error, code: u16, words: &[&str]) {
    assert_eq!(error_code(err), Some(code), "{err}");
    for w in words {
        assert!(err.to_string().contains(w), "{err} should mention {w}");
    }
}

async fn opts_for(silo: &Silo, tenant: &Tenant) -> mysql_async::Opts {
    silo.opts(&format!("app.{}", tenant.slug), APP_PASSWORD)
        .into()
}

/// Polls `check` every 10 ms for at most 5 s.
async fn eventually(what: &str, check: impl FnMut() -> bool) {
    assert!(
        crate::common::eventually(Duration::from_secs(5), check).await,
        "timed out waiting for {what}"
    );
}

#[tokio::test]
async fn max_client_connections_refuses_the_next_login_only() {
    let mut setup = Setup::new().plan("tiny", "max_client_connections = 2");
    let acme = setup.tenant("cap", 1).await;
    let other = setup.tenant("capother", 1).await;
    setup.set_plan(&acme.slug, "tiny");
    let silo = setup.start().await;
    let a1 = silo.app(&acme).await;
    let mut a2 = silo.app(&acme).await;
    let err = silo.connect_err(opts_for(&silo, &acme).await).await;
    refused_with(&err, 1226, &["max_client_connections", "tiny", &acme.slug]);
    assert_eq!(silo.live(&acme).refused(Refusal::ClientConnections), 1);
    // The tenant's clients and the other tenants are unaffected.
    let n: Option<u64> = a2.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    assert_eq!(n, Some(3));
    silo.assert_serves(&other).await;
    // A freed slot is usable again.
    drop(a1);
    let live = silo.live(&acme);
    eventually("the slot to free", || {
        live.clients.load(Ordering::Relaxed) == 1
    })
    .await;
    silo.assert_serves(&acme).await;
}

#[tokio::test]
async fn max_backend_leases_queues_then_refuses_and_the_client_goes_on() {
    let mut setup = Setup::new().plan("narrow", "max_backend_leases = 1\nqueue_timeout_ms = 300");
    let acme = setup.tenant("leases", 2).await;
    let other = setup.tenant("leasesother", 2).await;
    setup.set_plan(&acme.slug, "narrow");
    let silo = setup.start().await;
    let mut holder = silo.app(&acme).await;
    let mut waiter = silo.app(&acme).await;
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop("UPDATE items SET name = 'held' WHERE id = 1")
        .await
        .unwrap();
    let err = waiter.query_drop("SELECT 1").await.unwrap_err();
    refused_with(
        &err,
        1203,
        &["max_backend_leases", "narrow", "1 statements"],
    );
    assert_eq!(silo.live(&acme).refused(Refusal::BackendLeases), 1);
    silo.assert_serves(&other).await;
    // A command that waits is served as soon as the slot frees.
    let queued = tokio::spawn(async move {
        let n: Option<u64> = waiter.query_first("SELECT COUNT(*) FROM items").await?;
        Ok::<_, mysql_async::Error>(n)
    });
    let live = silo.live(&acme);
    eventually("the command to queue", || {
        live.queued.load(Ordering::Relaxed) == 1
    })
    .await;
    holder.query_drop("COMMIT").await.unwrap();
    let n = bounded("queued command", queued).await.unwrap().unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test]
async fn the_query_rate_is_limited_with_a_clear_error() {
    let mut setup = Setup::new().plan(
        "slow",
        "max_queries_per_second = 5\nburst = 5\nqueue_timeout_ms = 100",
    );
    let acme = setup.tenant("rate", 1).await;
    let other = setup.tenant("rateother", 1).await;
    setup.set_plan(&acme.slug, "slow");
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    let mut ok = 0;
    let mut refused = None;
    for _ in 0..30 {
        match c.query_drop("DO 1").await {
            Ok(()) => ok += 1,
            Err(e) => refused = Some(e),
        }
    }
    let err = refused.expect("some statements refused");
    refused_with(
        &err,
        1226,
        &["max_queries_per_second", "slow", "(current value: 5)"],
    );
    assert!((4..30).contains(&ok), "{ok} statements passed");
    assert!(silo.live(&acme).refused(Refusal::QueriesPerSecond) >= 1);
    silo.assert_serves(&other).await;
    // The connection stays usable once the rate allows again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test]
async fn the_daily_quota_survives_reloads() {
    let mut setup = Setup::new().plan("quota", "max_queries_per_day = 6");
    let acme = setup.tenant("quota", 2).await;
    let other = setup.tenant("quotaother", 2).await;
    setup.set_plan(&acme.slug, "quota");
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    let mut ok = 0;
    let err = loop {
        match c.query_drop("DO 1").await {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 10, "the quota is not enforced");
    };
    // mysql_async's own query at connect counted as well.
    assert_eq!(ok, 5);
    refused_with(&err, 1226, &["max_queries_per_day", "00:00 UTC"]);
    assert_eq!(silo.live(&acme).queries_today(), 6);
    // A reload keeps the count.
    silo.reload(&setup);
    let err = c.query_drop("DO 1").await.unwrap_err();
    refused_with(&err, 1226, &["max_queries_per_day"]);
    silo.assert_serves(&other).await;
}

#[tokio::test]
async fn max_query_time_stops_long_statements_and_caps_the_client() {
    let mut setup = Setup::new().plan("quick", "max_query_time_ms = 300");
    let acme = setup.tenant("qtime", 1).await;
    setup.set_plan(&acme.slug, "quick");
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    let err = bounded(
        "a long statement",
        c.query_drop("SELECT SLEEP(3) FROM items"),
    )
    .await
    .unwrap_err();
    refused_with(&err, 1969, &["max_statement_time"]);
    let spent = silo.live(&acme).query_time_us.load(Ordering::Relaxed);
    assert!(spent >= 250_000, "query time counted: {spent} µs");
    // Still usable, and the client cannot lift the cap.
    c.query_drop("SET max_statement_time = 0").await.unwrap();
    let cap: Option<f64> = c.query_first("SELECT @@max_statement_time").await.unwrap();
    assert_eq!(cap, Some(0.3));
    // A lower value of its own is kept.
    c.query_drop("SET max_statement_time = 0.1").await.unwrap();
    let cap: Option<f64> = c.query_first("SELECT @@max_statement_time").await.unwrap();
    assert_eq!(cap, Some(0.1));
}

#[tokio::test]
async fn suspending_a_tenant_ends_its_sessions_and_rolls_back() {
    let mut setup = Setup::new();
    let acme = setup.tenant("susp", 2).await;
    let other = setup.tenant("suspother", 2).await;
    let silo = setup.start().await;
    let mut idle = silo.app(&acme).await;
    let mut busy = silo.app(&acme).await;
    let mut bystander = silo.app(&other).await;
    busy.query_drop("BEGIN").await.unwrap();
    busy.query_drop("INSERT INTO items VALUES (30, 'half')")
        .await
        .unwrap();
    setup.set_status(&acme.slug, "suspended");
    silo.reload(&setup);
    // Within a second, every session of the tenant is gone.
    let registry = silo.ctx.registry.clone();
    let slug = acme.slug.clone();
    eventually("the sessions to end", || {
        !registry
            .sessions()
            .iter()
            .any(|h| h.tenant().is_some_and(|t| *t.0 == *slug))
    })
    .await;
    for c in [&mut idle, &mut busy] {
        let err = c.query_drop("SELECT 1").await.unwrap_err();
        refused_with(&err, 1927, &["was suspended"]);
    }
    // The transaction was rolled back by the server, not half-applied.
    let mut root = servers()[1].root_conn().await;
    let n: Option<u64> = root
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}`.items WHERE id = 30",
            acme.db.database
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(0));
    // New logins are refused; the other tenant is served throughout.
    let err = silo.connect_err(opts_for(&silo, &acme).await).await;
    refused_with(&err, 1045, &["suspended"]);
    let n: Option<u64> = bystander
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test]
async fn a_paused_tenant_waits_and_resumes_in_order() {
    let mut setup = Setup::new().plan("patient", "queue_timeout_ms = 5000");
    let acme = setup.tenant("pause", 1).await;
    setup.set_plan(&acme.slug, "patient");
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    setup.set_status(&acme.slug, "paused");
    silo.reload(&setup);
    let waiting = tokio::spawn(async move {
        let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM items").await?;
        Ok::<_, mysql_async::Error>((n, c))
    });
    let live = silo.live(&acme);
    eventually("the command to wait", || {
        live.queued.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(!waiting.is_finished());
    setup.set_status(&acme.slug, "active");
    silo.reload(&setup);
    let (n, mut c) = bounded("resumed command", waiting).await.unwrap().unwrap();
    assert_eq!(n, Some(3));

    // Paused beyond the queue timeout: a clear error, the client goes on.
    let mut setup2 = setup.clone().plan("hasty", "queue_timeout_ms = 200");
    setup2.set_plan(&acme.slug, "hasty");
    setup2.set_status(&acme.slug, "paused");
    silo.reload(&setup2);
    let err = c.query_drop("SELECT 1").await.unwrap_err();
    refused_with(&err, 1040, &["paused"]);
    setup2.set_status(&acme.slug, "active");
    silo.reload(&setup2);
    let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test]
async fn a_noisy_tenant_does_not_starve_a_quiet_one() {
    const CAP: u32 = 4;
    const NOISY_CLIENTS: usize = 16;
    let mut setup = Setup::new();
    let noisy = setup.tenant("noisy", 2).await;
    let quiet = setup.tenant("quiet", 2).await;
    let silo = setup
        .backend(2, servers()[1].addr(), CAP)
        .lease_timeout_ms(15_000)
        .start()
        .await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..NOISY_CLIENTS {
        let opts = opts_for(&silo, &noisy).await;
        let done = done.clone();
        flood.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            for _ in 0..5 {
                c.query_drop("SELECT SLEEP(0.2)").await?;
                done.fetch_add(1, Ordering::SeqCst);
            }
            c.disconnect().await
        }));
    }
    // Wait until the flood saturates the backend and queues.
    eventually("the flood to queue", || {
        silo.pool(2).snapshot().waiting >= 4
    })
    .await;
    let mut c = silo.app(&quiet).await;
    let users = [noisy.db.user.clone(), quiet.db.user.clone()];
    let mut worst = 0;
    for _ in 0..10 {
        let before = done.load(Ordering::SeqCst);
        let n: Option<u64> = bounded("quiet query", c.query_first("SELECT COUNT(*) FROM items"))
            .await
            .unwrap();
        assert_eq!(n, Some(3));
        worst = worst.max(done.load(Ordering::SeqCst) - before);
        // The backend's own view: never more than the cap, both tenants together.
        let mut seen = 0;
        for user in &users {
            seen += crate::common::mariadb::processlist_count(&servers()[1], user).await;
        }
        assert!(seen <= CAP as usize, "{seen} connections on the backend");
    }
    eprintln!(
        "fairness: a quiet statement waited for at most {worst} noisy statements (backend cap {CAP}, {NOISY_CLIENTS} noisy clients)"
    );
    // Each quiet statement waited behind the statements running when it
    // arrived and at most one more of the noisy tenant, not its whole queue.
    assert!(
        worst <= CAP as usize + 2,
        "a quiet statement waited for {worst} noisy ones"
    );
    for t in flood {
        bounded("noisy client", t).await.unwrap().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), NOISY_CLIENTS * 5);
}

#[tokio::test]
async fn a_moved_tenant_finishes_its_transaction_then_follows() {
    let mut setup = Setup::new();
    let acme = setup.tenant("moved", 1).await;
    crate::common::mariadb::provision_copy(&servers()[1], &acme.slug, &acme.db).await;
    let silo = setup.start().await;
    let mut pinned = silo.app(&acme).await;
    let mut idle = silo.app(&acme).await;
    let server_of = async |c: &mut mysql_async::Conn| -> u16 {
        let port: Option<u16> = c.query_first("SELECT @@port").await.unwrap();
        port.unwrap()
    };
    let old_port = server_of(&mut pinned).await;
    assert_eq!(old_port, servers()[0].addr().port());
    pinned.query_drop("BEGIN").await.unwrap();
    pinned
        .query_drop("INSERT INTO items VALUES (40, 'before the move')")
        .await
        .unwrap();
    setup.set_backend(&acme.slug, 2);
    silo.reload(&setup);
    // New statements go to the new backend; the open transaction stays on
    // the old one until it ends.
    assert_eq!(server_of(&mut idle).await, servers()[1].addr().port());
    assert_eq!(server_of(&mut pinned).await, old_port);
    pinned.query_drop("COMMIT").await.unwrap();
    assert_eq!(server_of(&mut pinned).await, servers()[1].addr().port());
    let mut root = servers()[0].root_conn().await;
    let n: Option<u64> = root
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}`.items WHERE id = 40",
            acme.db.database
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(1), "committed where it started");
}

/// Session mode keeps a connection per client, but not on a backend its
/// tenant left: the client follows after the statement in course, with its
/// session variables, unless it holds real state there.
#[tokio::test]
async fn a_session_mode_client_follows_its_moved_tenant() {
    let mut setup = Setup::new().mode("session");
    let acme = setup.tenant("sessmoved", 1).await;
    crate::common::mariadb::provision_copy(&servers()[1], &acme.slug, &acme.db).await;
    let silo = setup.start().await;
    let mut plain = silo.app(&acme).await;
    let mut stateful = silo.app(&acme).await;
    let server_of = async |c: &mut mysql_async::Conn| -> u16 {
        let port: Option<u16> = c.query_first("SELECT @@port").await.unwrap();
        port.unwrap()
    };
    let (old_port, new_port) = (servers()[0].addr().port(), servers()[1].addr().port());
    plain
        .query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    assert_eq!(server_of(&mut plain).await, old_port);
    stateful.query_drop("SET @kept = 7").await.unwrap();
    assert_eq!(server_of(&mut stateful).await, old_port);
    setup.set_backend(&acme.slug, 2);
    silo.reload(&setup);
    // The statement in course runs on the connection it holds; the next
    // one on the new backend, with the session's variables replayed.
    server_of(&mut plain).await;
    assert_eq!(server_of(&mut plain).await, new_port);
    let mode: Option<String> = plain.query_first("SELECT @@sql_mode").await.unwrap();
    assert_eq!(mode.as_deref(), Some("ANSI_QUOTES"));
    // A user variable lives on the old connection: that session stays.
    assert_eq!(server_of(&mut stateful).await, old_port);
    let kept: Option<u8> = stateful.query_first("SELECT @kept").await.unwrap();
    assert_eq!(kept, Some(7));
}

#[tokio::test]
async fn a_draining_backend_takes_no_new_leases_and_lets_pinned_sessions_finish() {
    let mut setup = Setup::new();
    let acme = setup.tenant("drain", 2).await;
    let silo = setup.start().await;
    let mut pinned = silo.app(&acme).await;
    let mut other = silo.app(&acme).await;
    pinned.query_drop("BEGIN").await.unwrap();
    pinned
        .query_drop("UPDATE items SET name = 'drained' WHERE id = 2")
        .await
        .unwrap();
    setup.drain(2, true);
    silo.reload(&setup);
    let pool = silo.pool(2);
    eventually("idle connections to close", || pool.snapshot().idle == 0).await;
    let err = other.query_drop("SELECT 1").await.unwrap_err();
    refused_with(&err, 1053, &["drained", &acme.slug]);
    // The pinned session finishes its transaction on it; its connection is
    // closed when given back.
    pinned.query_drop("COMMIT").await.unwrap();
    eventually("the last connection to close", || {
        pool.open_connections() == 0
    })
    .await;
    setup.drain(2, false);
    silo.reload(&setup);
    let name: Option<String> = other
        .query_first("SELECT name FROM items WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("drained"));
}

#[tokio::test]
async fn deleting_or_reprovisioning_a_tenant_ends_its_sessions_too() {
    for (status, why) in [
        ("pending_deletion", "is being deleted"),
        ("provisioning", "is being provisioned again"),
    ] {
        let mut setup = Setup::new();
        let acme = setup.tenant("ending", 1).await;
        let other = setup.tenant("endingother", 1).await;
        let silo = setup.start().await;
        let mut c = silo.app(&acme).await;
        setup.set_status(&acme.slug, status);
        silo.reload(&setup);
        let err = c.query_drop("SELECT 1").await.unwrap_err();
        refused_with(&err, 1927, &[why]);
        let err = silo.connect_err(opts_for(&silo, &acme).await).await;
        assert_eq!(error_code(&err), Some(1045), "{status}: {err}");
        silo.assert_serves(&other).await;
    }
}

/// The binary reloads its file on SIGHUP: a bad file is refused and the
/// running table stays; a good one suspends a tenant live.
#[tokio::test]
async fn sighup_reloads_the_file_live() {
    let mut setup = Setup::new();
    let acme = setup.tenant("hup", 1).await;
    let other = setup.tenant("hupother", 1).await;
    let silo = setup.spawn(None).await;
    let pid = silo.child.id().expect("a pid").to_string();
    let opts = |t: &Tenant| silo.opts(&format!("app.{}", t.slug), APP_PASSWORD);
    let mut c = bounded("login", mysql_async::Conn::new(opts(&acme)))
        .await
        .expect("silo answers");
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    // An invalid file is refused: nothing changes.
    std::fs::write(&silo.config, "this is not toml [").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.query_drop("SELECT 1").await.unwrap();
    // A valid one suspends acme; its session ends, globex goes on.
    setup.set_status(&acme.slug, "suspended");
    silo.write_config(&setup);
    hangup();
    let ended = first_error(&mut c, 100).await;
    let err = ended.expect("the session ends after the reload");
    refused_with(&err, 1927, &["was suspended"]);
    let mut g = mysql_async::Conn::new(opts(&other)).await.unwrap();
    let n: Option<u64> = g.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    assert_eq!(n, Some(3));
}

/// The binary also reloads its file when the file changes, no signal
/// needed: a bad edit is refused with a log line, a good one applies.
#[tokio::test]
async fn an_edited_file_is_reloaded_without_a_signal() {
    let mut setup = Setup::new();
    let acme = setup.tenant("edit", 1).await;
    let silo = setup.spawn(Some("info")).await;
    let opts = silo.opts(&format!("app.{}", acme.slug), APP_PASSWORD);
    let mut c = bounded("login", mysql_async::Conn::new(opts))
        .await
        .expect("silo answers");
    std::fs::write(&silo.config, "this is not toml [").unwrap();
    // The file is checked every second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    c.query_drop("SELECT 1")
        .await
        .expect("the bad edit changed nothing");
    setup.set_status(&acme.slug, "suspended");
    silo.write_config(&setup);
    let ended = first_error(&mut c, 250).await;
    let err = ended.expect("the session ends once the edit is read");
    refused_with(&err, 1927, &["was suspended"]);
    let logs = silo.stop_and_read_logs().await;
    assert!(
        logs.contains("configuration reload refused") && logs.contains("file changed"),
        "{logs}"
    );
    assert!(logs.contains("configuration reloaded"), "{logs}");
}

#[tokio::test]
async fn a_reload_can_add_a_backend() {
    let mut setup = Setup::new();
    let acme = setup.tenant("newbackend", 1).await;
    crate::common::mariadb::provision_copy(&servers()[1], &acme.slug, &acme.db).await;
    let silo = setup.start().await;
    assert!(silo.ctx.pools.get(3).is_none());
    let mut grown = setup.clone().backend(3, servers()[1].addr(), 5);
    grown.set_backend(&acme.slug, 3);
    silo.reload(&grown);
    let pool = silo.ctx.pools.get(3).expect("a pool for the new backend");
    silo.assert_serves(&acme).await;
    assert!(
        pool.snapshot().opened >= 1,
        "the tenant was served through the new backend's pool"
    );
}

/// A backend's address changes live (a failover to a new primary, say): new
/// connections go to the new address, a transaction open on the old
/// connection finishes there, and the old connections close after.
#[tokio::test]
async fn a_backend_address_change_applies_live() {
    let mut setup = Setup::new();
    let acme = setup.tenant("failover", 1).await;
    let silo = setup.start().await;
    let mut in_tx = silo.app(&acme).await;
    let mut idle = silo.app(&acme).await;
    in_tx.query_drop("BEGIN").await.unwrap();
    in_tx
        .query_drop("INSERT INTO items VALUES (50, 'across the change')")
        .await
        .unwrap();
    idle.query_drop("SELECT 1").await.unwrap();
    let old_pool = silo.pool(1);
    // The same server, reached through a relay: a new address for backend 1.
    let relay = crate::common::faults::FaultProxy::start(servers()[0].addr()).await;
    let moved = setup.clone().backend(1, relay.addr(), 20);
    silo.reload(&moved);
    let new_pool = silo.pool(1);
    assert!(
        !std::sync::Arc::ptr_eq(&old_pool, &new_pool),
        "a new pool for the new address"
    );
    assert!(old_pool.is_draining());
    // New statements go through the new address.
    let n: Option<u64> = idle
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    assert!(
        relay.connections() >= 1,
        "no connection through the new address"
    );
    // The transaction finishes on its connection, which then closes.
    in_tx.query_drop("COMMIT").await.unwrap();
    let n: Option<u64> = in_tx
        .query_first("SELECT COUNT(*) FROM items WHERE id = 50")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    assert_eq!(old_pool.open_connections(), 0, "{:?}", old_pool.snapshot());
    let mut fresh = silo.app(&acme).await;
    let n: Option<u64> = fresh
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    assert_eq!(n, Some(4), "the committed row and the three others");
}

/// Runs `SELECT 1` every 20 ms, at most `tries` times, until one fails.
async fn first_error(c: &mut mysql_async::Conn, tries: usize) -> Option<mysql_async::Error> {
    for _ in 0..tries {
        match c.query_drop("SELECT 1").await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Some(e),
        }
    }
    None
}
