//! The route table swapped hundreds of times while clients of two tenants
//! run without pause: plans changed, one tenant moved between backends and
//! back, a user added and removed. No statement may fail; only logins of the
//! user while it is withdrawn may be refused; every client ends up on the
//! backend its tenant is routed to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::common::mariadb::provision_copy;
use crate::common::{APP_PASSWORD, Setup, Silo, Tenant, bounded, error_code, servers};

const SWAPS: u32 = 400;
const SWAP_EVERY: Duration = Duration::from_millis(10);
/// The moving tenant changes backend every this many swaps.
const MOVE_EVERY: u32 = 50;
const WORKERS_PER_TENANT: usize = 3;
/// Statements between two logins of a worker (but the first).
const RECONNECT_EVERY: u64 = 40;
const CHURN_USER: &str = "churn";
const CHURN_PASSWORD: &str = "churn-pass";

#[derive(Default)]
struct Tally {
    statements: AtomicU64,
    transactions: AtomicU64,
    logins: AtomicU64,
    churn_logins: AtomicU64,
    churn_refused: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

#[tokio::test]
async fn hundreds_of_swaps_under_load_fail_no_statement() {
    let mut setup = Setup::new()
        .plan("calm", "weight = 1")
        .plan("busy", "weight = 4\nmax_backend_leases = 16");
    let mover = setup.tenant("mover", 1).await;
    // The same database and user on the other server, as a move finds them.
    provision_copy(&servers()[1], &mover.slug, &mover.db).await;
    let stayer = setup.tenant("stayer", 2).await;
    setup.add_user(CHURN_USER, &stayer.slug, CHURN_PASSWORD);
    let silo = Arc::new(setup.start().await);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for tenant in [&mover, &stayer] {
        for n in 0..WORKERS_PER_TENANT {
            workers.push(tokio::spawn(work(
                silo.clone(),
                tenant.clone(),
                n,
                stop.clone(),
                tally.clone(),
            )));
        }
    }
    let churn = tokio::spawn(churn_logins(
        silo.clone(),
        stayer.clone(),
        stop.clone(),
        tally.clone(),
    ));

    let started = Instant::now();
    let mut moves = 0;
    for swap in 1..=SWAPS {
        setup.set_plan(&mover.slug, if swap % 2 == 0 { "calm" } else { "busy" });
        setup.set_plan(&stayer.slug, if swap % 3 == 0 { "busy" } else { "starter" });
        if swap % MOVE_EVERY == 0 {
            let backend = if (swap / MOVE_EVERY) % 2 == 1 { 2 } else { 1 };
            setup.set_backend(&mover.slug, backend);
            moves += 1;
        }
        if swap % 2 == 0 {
            setup.remove_user(CHURN_USER, &stayer.slug);
        } else {
            setup.add_user(CHURN_USER, &stayer.slug, CHURN_PASSWORD);
        }
        silo.reload(&setup);
        tokio::time::sleep(SWAP_EVERY).await;
    }
    // Ends with the mover on backend 2, where it did not start.
    setup.set_backend(&mover.slug, 2);
    let version = silo.reload(&setup);
    let swapping = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ports = Vec::new();
    for w in workers {
        ports.push(bounded("worker ends", w).await.expect("worker task"));
    }
    bounded("churn ends", churn).await.expect("churn task");

    let failures = tally.failures.lock().unwrap().clone();
    let statements = tally.statements.load(Ordering::Relaxed);
    println!(
        "live change: {} swaps ({moves} moves) in {:.1} s, table version {version}; {statements} statements, {} transactions, {} logins; churn user: {} logins, {} refused while withdrawn; {} failures",
        SWAPS + 1,
        swapping.as_secs_f64(),
        tally.transactions.load(Ordering::Relaxed),
        tally.logins.load(Ordering::Relaxed),
        tally.churn_logins.load(Ordering::Relaxed),
        tally.churn_refused.load(Ordering::Relaxed),
        failures.len(),
    );
    assert!(failures.is_empty(), "failed during swaps: {failures:#?}");
    assert!(
        statements > 1_000,
        "too little load to mean anything: {statements}"
    );
    assert!(tally.churn_logins.load(Ordering::Relaxed) > 0);
    assert!(tally.churn_refused.load(Ordering::Relaxed) > 0);
    let backend2 = servers()[1].addr().port();
    for (tenant, port) in &ports {
        assert_eq!(
            *port, backend2,
            "a client of {tenant} ended on the wrong backend"
        );
    }
}

/// Runs statements and short transactions until told to stop; returns the
/// tenant and the port of the server its last statement ran on.
async fn work(
    silo: Arc<Silo>,
    tenant: Tenant,
    n: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> (String, u16) {
    let expected = format!("{} one", tenant.slug);
    let mut conn = silo.app(&tenant).await;
    let mut done: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        done += 1;
        // Worker 0 keeps its first connection throughout: it must follow
        // the moves without logging in again.
        if n > 0 && done.is_multiple_of(RECONNECT_EVERY) {
            let _ = conn.disconnect().await;
            conn = match login(&silo, &tenant).await {
                Ok(c) => c,
                Err(e) => {
                    tally.fail(format!("{} login: {e}", tenant.slug));
                    return (tenant.slug, 0);
                }
            };
            tally.logins.fetch_add(1, Ordering::Relaxed);
        }
        let result = if done.is_multiple_of(5) {
            transaction(&mut conn, n, done).await.map(|()| {
                tally.transactions.fetch_add(1, Ordering::Relaxed);
            })
        } else {
            match conn
                .query_first::<String, _>("SELECT name FROM items WHERE id = 1")
                .await
            {
                Ok(Some(name)) if name == expected => Ok(()),
                Ok(other) => Err(format!("read {other:?}, expected {expected:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        match result {
            Ok(()) => {
                tally.statements.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.fail(format!("{} worker {n}: {e}", tenant.slug)),
        }
    }
    let port: Option<u16> = conn.query_first("SELECT @@port").await.unwrap_or(None);
    let _ = conn.disconnect().await;
    (tenant.slug, port.unwrap_or(0))
}

async fn login(silo: &Silo, tenant: &Tenant) -> Result<mysql_async::Conn, String> {
    let opts = silo.opts(&format!("app.{}", tenant.slug), APP_PASSWORD);
    tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts))
        .await
        .map_err(|_| "login timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// A write and a read of it inside a transaction, rolled back so the
/// tenant's rows stay the same on both servers.
async fn transaction(conn: &mut mysql_async::Conn, n: usize, done: u64) -> Result<(), String> {
    let id = 1_000_000 + (n as u64) * 1_000_000 + done;
    let steps = async {
        conn.query_drop("BEGIN").await?;
        conn.query_drop(format!("INSERT INTO items VALUES ({id}, 'in flight')"))
            .await?;
        let seen: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM items WHERE id = {id}"))
            .await?;
        conn.query_drop("ROLLBACK").await?;
        Ok::<_, mysql_async::Error>(seen)
    };
    match steps.await {
        Ok(Some(1)) => Ok(()),
        Ok(seen) => Err(format!("own insert seen {seen:?} times in its transaction")),
        Err(e) => Err(format!("transaction: {e}")),
    }
}

/// Logs in as the user that comes and goes: accepted while declared,
/// refused with 1045 while withdrawn, never anything else.
async fn churn_logins(silo: Arc<Silo>, tenant: Tenant, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let user = format!("{CHURN_USER}.{}", tenant.slug);
    while !stop.load(Ordering::Relaxed) {
        let opts = silo.opts(&user, CHURN_PASSWORD);
        match tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts)).await {
            Ok(Ok(mut conn)) => {
                match conn.query_first::<u8, _>("SELECT 1").await {
                    Ok(Some(1)) => {
                        tally.churn_logins.fetch_add(1, Ordering::Relaxed);
                    }
                    other => tally.fail(format!("churn user's statement: {other:?}")),
                }
                let _ = conn.disconnect().await;
            }
            Ok(Err(e)) if error_code(&e) == Some(1045) => {
                tally.churn_refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => tally.fail(format!("churn login: {e}")),
            Err(_) => tally.fail("churn login timed out".into()),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
