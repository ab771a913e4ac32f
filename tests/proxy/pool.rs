//! Pool caps, waiting, and reuse across clients and tenants.

use std::time::Duration;

use mysql_async::prelude::*;

use crate::common::mariadb::processlist_count;
use crate::common::{Setup, bounded, error_code, eventually, servers};

#[tokio::test]
async fn a_full_pool_makes_clients_wait_then_time_out_clearly() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let silo = setup
        .backend(2, servers()[1].addr(), 1)
        .lease_timeout_ms(2_000)
        .mode("session")
        .start()
        .await;
    let mut holder = silo.app(&acme).await;
    let _: Option<u8> = holder.query_first("SELECT 1").await.unwrap();

    // mysql_async runs a query at connect: with the only connection taken,
    // the login itself waits, then gets ER_CON_COUNT_ERROR.
    let err = silo
        .connect_err(silo.opts(&format!("app.{}", acme.slug), crate::common::APP_PASSWORD))
        .await;
    assert_eq!(error_code(&err), Some(1040), "{err}");
    assert!(
        err.to_string()
            .contains("no database connection became free"),
        "{err}"
    );

    // A client that waits is served as soon as the holder leaves, on the
    // same (reset) connection.
    let waiter = tokio::spawn({
        let opts = silo.opts(&format!("app.{}", acme.slug), crate::common::APP_PASSWORD);
        async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            c.query_first::<u64, _>("SELECT COUNT(*) FROM items").await
        }
    });
    while silo.pool(2).snapshot().waiting == 0 {
        assert!(!waiter.is_finished(), "the waiter did not wait");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder.disconnect().await.unwrap();
    let n = bounded("waiter", waiter)
        .await
        .unwrap()
        .expect("waiter served");
    assert_eq!(n, Some(3));
    assert_eq!(silo.pool(2).snapshot().opened, 1);
}

#[tokio::test]
async fn the_backend_cap_holds_with_many_clients_of_two_tenants() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 1).await;
    let silo = setup
        .backend(1, servers()[0].addr(), 3)
        .lease_timeout_ms(10_000)
        .start()
        .await;

    let mut tasks = Vec::new();
    for i in 0..12 {
        let tenant = if i % 2 == 0 {
            acme.clone()
        } else {
            globex.clone()
        };
        let opts = silo.opts(&format!("app.{}", tenant.slug), crate::common::APP_PASSWORD);
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let name: Option<String> = c.query_first("SELECT name FROM items WHERE id = 1").await?;
            c.query_drop("DO SLEEP(0.05)").await?;
            c.disconnect().await?;
            Ok::<_, mysql_async::Error>((tenant.slug, name))
        }));
    }
    let mut peak = 0;
    // One query for both users: a connection switched by COM_CHANGE_USER
    // between two queries would be counted twice.
    let mut root = servers()[0].root_conn().await;
    for task in tasks {
        while !task.is_finished() {
            let open: Option<u64> = root
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER IN (?, ?)",
                    (acme.db.user.clone(), globex.db.user.clone()),
                )
                .await
                .unwrap();
            peak = peak.max(open.unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (slug, name) = bounded("client", task)
            .await
            .unwrap()
            .expect("client served");
        assert_eq!(name, Some(format!("{slug} one")));
    }
    let snap = silo.pool(1).snapshot();
    assert!(
        peak <= 3,
        "backend saw {peak} connections with a cap of 3: {snap:?}"
    );
    assert!(snap.opened <= 3 + snap.closed, "{snap:?}");
    // Released connections are reset in the background, then idle.
    eventually(Duration::from_secs(4), || {
        silo.pool(1).snapshot().in_use == 0
    })
    .await;
    assert_eq!(
        silo.pool(1).snapshot().in_use,
        0,
        "{:?}",
        silo.pool(1).snapshot()
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.idle_timeout_ms(200).start().await;
    let mut conn = silo.app(&acme).await;
    let _: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    conn.disconnect().await.unwrap();
    let backend = &servers()[0];
    let mut closed = false;
    for _ in 0..200 {
        let snap = silo.pool(1).snapshot();
        if snap.closed >= 1
            && snap.idle == 0
            && processlist_count(backend, &acme.db.user).await == 0
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        closed,
        "idle connection still open: {:?}",
        silo.pool(1).snapshot()
    );
    assert_eq!(silo.pool(1).open_connections(), 0);
}

#[tokio::test]
async fn threaded_runtimes_share_pools_across_worker_threads() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 1).await;
    let config = silo::config::Config::from_toml(&setup.toml()).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        silo::server::run_threaded(
            silo::catalog::Catalog::fixed(config),
            3,
            move |addr, _| addr_tx.send(addr).unwrap(),
            async {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("bound");
    let opts = |slug: &str| {
        crate::common::mariadb::tcp_opts(addr)
            .user(Some(format!("app.{slug}")))
            .pass(Some(crate::common::APP_PASSWORD.to_string()))
    };
    // Rounds of clients land on every worker in turn; each round reuses
    // connections released by clients that ran on other workers.
    let mut threads_seen = std::collections::HashSet::new();
    for round in 0..4 {
        let mut clients = Vec::new();
        for i in 0..3 {
            let slug = if (round + i) % 2 == 0 {
                &acme.slug
            } else {
                &globex.slug
            };
            let mut c = bounded("connect", mysql_async::Conn::new(opts(slug)))
                .await
                .expect("login");
            let name: Option<String> = c
                .query_first("SELECT name FROM items WHERE id = 2")
                .await
                .unwrap();
            assert_eq!(name, Some(format!("{slug} two")));
            let thread: Option<u64> = c.query_first("SELECT CONNECTION_ID()").await.unwrap();
            threads_seen.insert(thread.unwrap());
            clients.push(c);
        }
        for c in clients {
            c.disconnect().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 12 sessions, never more than 3 at once: the pool reused connections.
    assert!(
        threads_seen.len() <= 6,
        "{} backend connections for 12 sessions",
        threads_seen.len()
    );
    stop_tx.send(()).unwrap();
    let joined = tokio::task::spawn_blocking(move || server.join())
        .await
        .unwrap();
    assert!(joined.unwrap().is_ok());
}

#[tokio::test]
async fn connections_are_retired_after_their_max_lifetime() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let silo = setup.max_lifetime_ms(300).start().await;
    let mut first = silo.app(&acme).await;
    let old: Option<u64> = first.query_first("SELECT CONNECTION_ID()").await.unwrap();
    first.disconnect().await.unwrap();
    // The reaper retires the connection once it is older than 300 ms.
    let retired = eventually(Duration::from_secs(5), || {
        silo.pool(2).snapshot().closed >= 1
    })
    .await;
    assert!(retired, "{:?}", silo.pool(2).snapshot());
    let mut second = silo.app(&acme).await;
    let new: Option<u64> = second.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_ne!(old, new, "a retired connection was reused");
}

#[tokio::test]
async fn a_lease_dropped_at_any_point_leaks_no_slot() {
    use std::future::Future;
    use std::task::Poll;

    use mysql_common::constants::CapabilityFlags;
    use silo::backend::Identity;
    use silo::backend::connection::Profile;
    use silo::secret::Secret;

    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.backend(1, servers()[0].addr(), 1).start().await;
    let pool = silo.pool(1);
    let identity = Identity::new(
        &acme.db.user,
        Secret::new(acme.db.password.clone()),
        &acme.db.database,
    );
    let profile = Profile::new(CapabilityFlags::CLIENT_PROTOCOL_41, 45);

    // Poll a lease 0, 1, 2, ... times, then drop it mid-flight: connect,
    // login and waiting must all give their slot back.
    for polls in 0..12 {
        let mut lease = Box::pin(pool.lease(&identity, profile, Duration::from_secs(5)));
        let mut finished = None;
        for _ in 0..polls {
            let step = std::future::poll_fn(|cx| Poll::Ready(lease.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = step {
                finished = Some(result);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(lease);
        drop(finished);
        let snap = pool.snapshot();
        assert_eq!(
            (snap.in_use, snap.waiting),
            (0, 0),
            "after {polls} polls: {snap:?}"
        );
        assert!(pool.open_connections() <= 1, "after {polls} polls");
    }
    // A waiter dropped while the only connection is held stops counting.
    let held = bounded(
        "held lease",
        pool.lease(&identity, profile, Duration::from_secs(5)),
    )
    .await
    .expect("the slot was not leaked");
    let mut waiter = Box::pin(pool.lease(&identity, profile, Duration::from_secs(5)));
    for _ in 0..3 {
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx).is_pending())).await;
        assert!(
            pending,
            "the waiter cannot be served while the connection is held"
        );
    }
    assert_eq!(pool.snapshot().waiting, 1);
    drop(waiter);
    assert_eq!(pool.snapshot().waiting, 0);
    held.release();
    // Once reset and idle, the connection serves the next lease.
    let lease = bounded(
        "final lease",
        pool.lease(&identity, profile, Duration::from_secs(5)),
    )
    .await
    .expect("the released connection serves again");
    drop(lease);
    assert_eq!(pool.snapshot().in_use, 0);
    assert_eq!(
        pool.open_connections(),
        0,
        "a dropped lease closes its connection"
    );
}
