//! Transaction mode: what pins a session and what unpins it, replay of
//! variables and schema on another connection, prepared statements across
//! connections, many clients on a small pool, tenants sharing a connection.

use std::collections::HashSet;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use silo::backend::pins::{PinReason, PinSnapshot};
use silo::routing::TenantId;

use crate::common::mariadb::{kill_user_connections, processlist_count};
use crate::common::raw::err_code;
use crate::common::{Setup, Silo, Tenant, bounded, error_code, servers};

fn pins(silo: &Silo, tenant: &Tenant) -> PinSnapshot {
    silo.ctx
        .tenants
        .get(&TenantId(tenant.slug.as_str().into()))
        .map(|live| live.pins.snapshot())
        .unwrap_or_default()
}

async fn run(conn: &mut Conn, sql: &str) {
    bounded(sql, conn.query_drop(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A statement's response reaches the client just before silo decides to
/// keep or give back its connection; a second statement is read only after.
async fn settled(conn: &mut Conn) {
    run(conn, "DO 0").await;
}

async fn backend_thread(conn: &mut Conn) -> u64 {
    bounded(
        "CONNECTION_ID()",
        conn.query_first("SELECT CONNECTION_ID()"),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn each_pin_reason_holds_the_connection_until_its_state_is_gone() {
    let mut setup = Setup::new();
    let acme = setup.tenant("pins", 1).await;
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    type Case = (
        &'static str,
        &'static [&'static str],
        PinReason,
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "transaction",
            &["BEGIN", "INSERT INTO items VALUES (10, 'ten')"],
            PinReason::Transaction,
            &["ROLLBACK"],
        ),
        (
            "next transaction's characteristics",
            &["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
            PinReason::Transaction,
            &["BEGIN", "COMMIT"],
        ),
        (
            "LOCK TABLES",
            &["LOCK TABLES items WRITE"],
            PinReason::Lock,
            &["UNLOCK TABLES"],
        ),
        (
            "GET_LOCK",
            &["SELECT GET_LOCK('silo-test', 0)"],
            PinReason::Lock,
            &["SELECT RELEASE_LOCK('silo-test')"],
        ),
        (
            "temporary table",
            &["CREATE TEMPORARY TABLE scratch (a INT)"],
            PinReason::TemporaryTable,
            &["DROP TEMPORARY TABLE scratch"],
        ),
    ];
    for (name, pin, reason, unpin) in cases {
        let before = pins(&silo, &acme);
        let backend_before = silo.pool(1).stats.pins.snapshot();
        for sql in *pin {
            run(&mut c, sql).await;
        }
        let thread = backend_thread(&mut c).await;
        settled(&mut c).await;
        let during = pins(&silo, &acme);
        assert_eq!(during.pinned, 1, "{name}: pinned");
        assert_eq!(
            during.pins(*reason),
            before.pins(*reason) + 1,
            "{name}: counted as {reason:?}"
        );
        let backend = silo.pool(1).stats.pins.snapshot();
        assert_eq!(backend.pinned, 1, "{name}: pinned on the backend");
        assert_eq!(
            backend.pins(*reason),
            backend_before.pins(*reason) + 1,
            "{name}: counted for the backend"
        );
        assert!(backend.leases > backend_before.leases);
        assert_eq!(
            backend_thread(&mut c).await,
            thread,
            "{name}: same connection"
        );
        for sql in *unpin {
            run(&mut c, sql).await;
        }
        settled(&mut c).await;
        assert_eq!(pins(&silo, &acme).pinned, 0, "{name}: unpinned");
        assert_eq!(silo.pool(1).snapshot().in_use, 0, "{name}: given back");
    }
    // The rolled-back row never landed.
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM items WHERE id = 10")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}

#[tokio::test]
async fn user_variables_and_unreplayable_state_pin_until_reset() {
    let mut setup = Setup::new();
    let acme = setup.tenant("uvars", 2).await;
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    let cases: &[(&str, &str, PinReason, &str)] = &[
        (
            "SET @x",
            "SET @x = 42",
            PinReason::UserVariable,
            "SELECT @x = 42",
        ),
        (
            "assignment in a SELECT",
            "SELECT @y := 42",
            PinReason::UserVariable,
            "SELECT @y = 42",
        ),
        (
            "SQL PREPARE",
            "PREPARE s FROM 'SELECT 1'",
            PinReason::Unknown,
            "EXECUTE s",
        ),
        (
            "HANDLER",
            "HANDLER items OPEN",
            PinReason::Unknown,
            "HANDLER items READ FIRST",
        ),
    ];
    for (name, sql, reason, check) in cases {
        let before = pins(&silo, &acme).pins(*reason);
        run(&mut c, sql).await;
        settled(&mut c).await;
        let during = pins(&silo, &acme);
        assert_eq!(during.pinned, 1, "{name}: pinned");
        assert_eq!(during.pins(*reason), before + 1, "{name}: reason");
        let seen: Row = bounded(check, c.query_first(*check))
            .await
            .unwrap_or_else(|e| panic!("{name}: {check}: {e}"))
            .expect("a row");
        assert!(!seen.is_empty(), "{name}: state still there");
        // COM_RESET_CONNECTION drops the state and the pin.
        bounded("reset", c.reset()).await.unwrap();
        settled(&mut c).await;
        assert_eq!(pins(&silo, &acme).pinned, 0, "{name}: unpinned by reset");
    }
    let x: Option<Option<i64>> = c.query_first("SELECT @x").await.unwrap();
    assert_eq!(x, Some(None), "user variable gone after reset");
}

#[tokio::test]
async fn a_global_read_lock_pins_until_unlock() {
    let mut setup = Setup::new();
    let acme = setup.tenant("ftwrl", 2).await;
    let silo = setup.start().await;
    // FLUSH TABLES WITH READ LOCK needs RELOAD, which tenants normally lack.
    let mut root = servers()[1].root_conn().await;
    root.query_drop(format!("GRANT RELOAD ON *.* TO '{}'@'%'", acme.db.user))
        .await
        .unwrap();
    let mut c = silo.app(&acme).await;
    run(&mut c, "FLUSH TABLES WITH READ LOCK").await;
    settled(&mut c).await;
    assert_eq!(pins(&silo, &acme).pinned, 1);
    assert_eq!(pins(&silo, &acme).pins(PinReason::Lock), 1);
    run(&mut c, "UNLOCK TABLES").await;
    settled(&mut c).await;
    assert_eq!(pins(&silo, &acme).pinned, 0);
}

#[tokio::test]
async fn quitting_while_pinned_resets_the_connection_for_the_next_client() {
    let mut setup = Setup::new();
    let acme = setup.tenant("quitpin", 2).await;
    let silo = setup.backend(2, servers()[1].addr(), 1).start().await;
    let mut a = silo.app(&acme).await;
    run(&mut a, "SET @secret = 'a'").await;
    run(&mut a, "CREATE TEMPORARY TABLE mine (x INT)").await;
    run(&mut a, "BEGIN").await;
    run(&mut a, "INSERT INTO items VALUES (20, 'half done')").await;
    let thread = backend_thread(&mut a).await;
    a.disconnect().await.unwrap();
    // The pool's only connection, reset before b gets it.
    let mut b = silo.app(&acme).await;
    assert_eq!(backend_thread(&mut b).await, thread, "the same connection");
    let leaked: Option<Option<String>> = b.query_first("SELECT @secret").await.unwrap();
    assert_eq!(leaked, Some(None), "user variable gone");
    let err = b.query_drop("SELECT * FROM mine").await.unwrap_err();
    assert_eq!(error_code(&err), Some(1146), "temporary table gone: {err}");
    let n: Option<u64> = b
        .query_first("SELECT COUNT(*) FROM items WHERE id = 20")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the open transaction was rolled back");
    assert_eq!(pins(&silo, &acme).pinned, 0);
}

#[tokio::test]
async fn a_statement_whose_table_changed_gets_fresh_metadata() {
    let mut setup = Setup::new();
    let acme = setup.tenant("ddl", 1).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    let stmt = a.prep("SELECT * FROM items WHERE id = ?").await.unwrap();
    let row: Row = a.exec_first(&stmt, (1,)).await.unwrap().unwrap();
    assert_eq!(row.len(), 2);
    run(
        &mut b,
        "ALTER TABLE items ADD COLUMN note VARCHAR(8) DEFAULT 'new'",
    )
    .await;
    // b takes a's connection: a's statement is prepared again elsewhere.
    run(&mut b, "BEGIN").await;
    let row: Row = a.exec_first(&stmt, (1,)).await.unwrap().unwrap();
    assert_eq!(row.len(), 3, "the new column is there");
    let note: Option<String> = row.get(2);
    assert_eq!(note.as_deref(), Some("new"));
    run(&mut b, "COMMIT").await;
}

#[tokio::test]
async fn a_pinned_connection_is_not_lent_to_anyone_else() {
    let mut setup = Setup::new();
    let acme = setup.tenant("held", 2).await;
    let silo = setup
        .backend(2, servers()[1].addr(), 1)
        .lease_timeout_ms(300)
        .start()
        .await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    // Idle clients hold nothing: both logged in on a pool of one.
    assert_eq!(silo.pool(2).open_connections(), 1);
    run(&mut a, "BEGIN").await;
    run(&mut a, "UPDATE items SET name = 'changed' WHERE id = 1").await;
    let err = b.query_drop("SELECT 1").await.unwrap_err();
    assert_eq!(error_code(&err), Some(1040), "{err}");
    // b's connection is still usable once a commits.
    run(&mut a, "COMMIT").await;
    settled(&mut a).await;
    let name: Option<String> = b
        .query_first("SELECT name FROM items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("changed"));
}

#[tokio::test]
async fn a_new_connection_already_in_the_schema_gets_no_init_db() {
    let mut setup = Setup::new();
    let acme = setup.tenant("noinitdb", 1).await;
    let silo = setup.start().await;
    let mut c = silo.app(&acme).await;
    // COM_INIT_DB counts as Com_change_db on the backend session.
    let (_, changes): (String, u64) = bounded(
        "Com_change_db",
        c.query_first("SHOW SESSION STATUS LIKE 'Com_change_db'"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(changes, 0);
}

#[tokio::test]
async fn variables_and_schema_follow_the_client_to_another_connection() {
    let mut setup = Setup::new();
    let acme = setup.tenant("replay", 1).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    let defaults: (String, String, String) = b
        .query_first("SELECT @@time_zone, @@character_set_client, @@sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(defaults.1, "latin1", "the test needs another default");
    for sql in [
        "SET time_zone = '+05:00'",
        "SET NAMES latin1",
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET max_statement_time = 10",
    ] {
        run(&mut a, sql).await;
    }
    assert_eq!(pins(&silo, &acme).pinned, 0, "variables do not pin");
    let first = backend_thread(&mut a).await;
    // b takes the connection a just gave back (the most recently used) and
    // keeps it: a must move to another one.
    run(&mut b, "BEGIN").await;
    assert_eq!(backend_thread(&mut b).await, first);
    let row: (String, String, String, String, f64, u64) = a
        .query_first(
            "SELECT @@time_zone, @@character_set_client, @@character_set_results, @@sql_mode, @@max_statement_time, CONNECTION_ID()",
        )
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.5, first, "a moved to another connection");
    assert_eq!(
        (
            row.0.as_str(),
            row.1.as_str(),
            row.2.as_str(),
            row.3.as_str(),
            row.4
        ),
        ("+05:00", "latin1", "latin1", "ANSI_QUOTES", 10.0)
    );
    // ANSI_QUOTES really applies: "id" is a column, not a string.
    let id: Option<u32> = a
        .query_first("SELECT \"id\" FROM items WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(id, Some(2));
    // And b, on a's old connection, sees its own (default) session.
    let row: (String, String, String) = b
        .query_first("SELECT @@time_zone, @@character_set_client, @@sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, defaults);
    run(&mut b, "COMMIT").await;

    // The schema follows too (USE of another database of the tenant).
    let mut root = servers()[0].root_conn().await;
    let other = format!("{}_other", acme.db.database);
    root.query_drop(format!("CREATE DATABASE `{other}`"))
        .await
        .unwrap();
    root.query_drop(format!(
        "GRANT ALL ON `{other}`.* TO '{}'@'%'",
        acme.db.user
    ))
    .await
    .unwrap();
    run(&mut a, &format!("USE `{other}`")).await;
    run(&mut b, "BEGIN").await;
    let db: Option<String> = a.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some(other.as_str()));
    let db: Option<String> = b.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some(acme.db.database.as_str()));
    run(&mut b, "COMMIT").await;
}

#[tokio::test]
async fn last_insert_id_follows_the_client() {
    let mut setup = Setup::new();
    let acme = setup.tenant("lastid", 1).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    run(
        &mut a,
        "CREATE TABLE auto (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await;
    run(&mut a, "INSERT INTO auto (v) VALUES (1), (2)").await;
    run(&mut a, "INSERT INTO auto (v) VALUES (3)").await;
    let first = backend_thread(&mut a).await;
    run(&mut b, "BEGIN").await;
    assert_eq!(
        backend_thread(&mut b).await,
        first,
        "b holds a's connection"
    );
    let (id, thread): (u64, u64) = a
        .query_first("SELECT LAST_INSERT_ID(), CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(thread, first, "a moved");
    assert_eq!(id, 3, "a's own last insert id");
    let theirs: Option<u64> = b.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(theirs, Some(0), "b's session generated none");
    run(&mut b, "COMMIT").await;
}

#[tokio::test]
async fn autocommit_off_pins_each_implicit_transaction() {
    let mut setup = Setup::new();
    let acme = setup.tenant("autocommit", 2).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    run(&mut a, "SET autocommit = 0").await;
    settled(&mut a).await;
    assert_eq!(pins(&silo, &acme).pinned, 0, "no transaction yet");
    let count = |id: u32| format!("SELECT COUNT(*) FROM items WHERE id = {id}");
    for (id, end, kept) in [(11, "COMMIT", 1u64), (12, "ROLLBACK", 0)] {
        run(&mut a, &format!("INSERT INTO items VALUES ({id}, 'x')")).await;
        settled(&mut a).await;
        assert_eq!(pins(&silo, &acme).pinned, 1, "implicit transaction pins");
        let seen: Option<u64> = b.query_first(count(id)).await.unwrap();
        assert_eq!(seen, Some(0), "uncommitted row invisible to others");
        run(&mut a, end).await;
        settled(&mut a).await;
        assert_eq!(pins(&silo, &acme).pinned, 0, "{end} unpins");
        let seen: Option<u64> = b.query_first(count(id)).await.unwrap();
        assert_eq!(seen, Some(kept), "after {end}");
        let autocommit: Option<u8> = a.query_first("SELECT @@autocommit").await.unwrap();
        assert_eq!(autocommit, Some(0));
    }
}

#[tokio::test]
async fn prepared_statements_move_between_connections() {
    let mut setup = Setup::new();
    let acme = setup.tenant("stmts", 1).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;
    let mut b = silo.app(&acme).await;
    let stmt = a.prep("SELECT name FROM items WHERE id = ?").await.unwrap();
    let name = |n: &str| Some(format!("{} {n}", acme.slug));
    let got: Option<String> = a.exec_first(&stmt, (1,)).await.unwrap();
    assert_eq!(got, name("one"));
    let first = backend_thread(&mut a).await;
    // b holds the connection a prepared on: a's execute runs elsewhere.
    run(&mut b, "BEGIN").await;
    assert_eq!(backend_thread(&mut b).await, first);
    let got: Option<String> = a.exec_first(&stmt, (2,)).await.unwrap();
    assert_eq!(got, name("two"));
    assert!(silo.pool(1).snapshot().opened >= 2);
    run(&mut b, "COMMIT").await;

    // Every backend connection of the tenant dies: the statement is
    // prepared again on a fresh one, transparently.
    drop(b);
    let killed = kill_user_connections(&servers()[0], &acme.db.user).await;
    assert!(killed >= 1);
    let got: Option<String> = bounded("execute after kill", a.exec_first(&stmt, (3,)))
        .await
        .unwrap();
    assert_eq!(got, name("three"));
    a.close(stmt).await.unwrap();
    settled(&mut a).await;
    assert_eq!(pins(&silo, &acme).pinned, 0);
}

#[tokio::test]
async fn an_execute_reusing_types_gets_them_on_a_new_connection() {
    let mut setup = Setup::new();
    let acme = setup.tenant("types", 2).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;
    let mut other = silo.app(&acme).await;
    let mut prepare = vec![0x16];
    prepare.extend_from_slice(b"SELECT name FROM items WHERE id = ?");
    let ok = raw.command(&prepare).await.unwrap();
    assert_eq!(ok[0], 0x00, "prepare: {:?}", err_code(&ok));
    let stmt = ok[1..5].to_vec();
    for _ in 0..4 {
        raw.read_packet().await.expect("definitions");
    }
    let execute = |types: bool, id: u32| {
        let mut p = vec![0x17];
        p.extend_from_slice(&stmt);
        p.extend_from_slice(&[0x00, 1, 0, 0, 0, 0x00]); // flags, iterations, null bitmap
        if types {
            p.extend_from_slice(&[1, 0x03, 0x00]); // bound: LONG
        } else {
            p.push(0);
        }
        p.extend_from_slice(&id.to_le_bytes());
        p
    };
    let read_name = async |raw: &mut crate::common::raw::RawClient, first: Vec<u8>| {
        assert_eq!(first, [1], "one column, not {:?}", err_code(&first));
        raw.read_packet().await.expect("column definition");
        raw.read_packet().await.expect("EOF");
        let (_, row) = raw.read_packet().await.expect("row");
        raw.read_packet().await.expect("EOF");
        String::from_utf8_lossy(&row[3..]).into_owned()
    };
    let first = raw.command(&execute(true, 1)).await.unwrap();
    assert_eq!(
        read_name(&mut raw, first).await,
        format!("{} one", acme.slug)
    );
    // Another client takes the connection that knows the types.
    run(&mut other, "BEGIN").await;
    let first = raw.command(&execute(false, 2)).await.unwrap();
    assert_eq!(
        read_name(&mut raw, first).await,
        format!("{} two", acme.slug)
    );
    run(&mut other, "COMMIT").await;
    // Unknown ids get the server's error for them.
    let mut bad = execute(true, 1);
    bad[1..5].copy_from_slice(&999u32.to_le_bytes());
    let err = raw.command(&bad).await.unwrap();
    assert_eq!(err_code(&err), Some(1243));
}

#[tokio::test]
async fn session_state_is_cut_from_ok_packets_for_clients_without_tracking() {
    let mut setup = Setup::new();
    let acme = setup.tenant("okstrip", 1).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;
    let mut set = vec![0x03];
    set.extend_from_slice(b"SET time_zone = '+01:00'");
    let ok = raw.command(&set).await.unwrap();
    // OK, 0 rows, no insert id, status without SESSION_STATE_CHANGED,
    // no warnings, and nothing after the (empty) info.
    assert_eq!(ok[0], 0x00);
    let status = u16::from_le_bytes([ok[3], ok[4]]);
    assert_eq!(status & 0x4000, 0, "state flag cleared");
    assert!(ok.len() <= 8, "state information removed: {ok:?}");
}

#[tokio::test]
async fn two_hundred_clients_share_a_pool_of_ten() {
    const CLIENTS: usize = 200;
    const POOL: u32 = 10;
    let mut setup = Setup::new();
    let acme = setup.tenant("many", 1).await;
    let silo = setup.backend(1, servers()[0].addr(), POOL).start().await;
    let user = acme.db.user.clone();
    let done = std::sync::Arc::new(tokio::sync::Notify::new());
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut max = 0;
            loop {
                max = max.max(processlist_count(&servers()[0], &user).await);
                tokio::select! {
                    () = done.notified() => return max,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    });
    let all_connected = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let opts = silo.opts(&format!("app.{}", acme.slug), crate::common::APP_PASSWORD);
        let all_connected = all_connected.clone();
        let slug = acme.slug.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(opts).await?;
            all_connected.wait().await;
            let id = (i % 3) as u32 + 1;
            let expected = format!("{slug} {}", ["one", "two", "three"][id as usize - 1]);
            for _ in 0..5 {
                let name: Option<String> = c
                    .exec_first("SELECT name FROM items WHERE id = ?", (id,))
                    .await?;
                assert_eq!(name.as_deref(), Some(expected.as_str()));
                let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM items").await?;
                assert_eq!(n, Some(3));
            }
            c.disconnect().await?;
            Ok::<_, mysql_async::Error>(())
        }));
    }
    let mut served = 0;
    for t in tasks {
        bounded("a client's work", t).await.unwrap().unwrap();
        served += 1;
    }
    done.notify_one();
    let max_backend = bounded("sampler", sampler).await.unwrap();
    assert_eq!(served, CLIENTS);
    assert!(
        max_backend <= POOL as usize,
        "{max_backend} backend connections"
    );
    let stats = silo.pool(1).snapshot();
    assert!(stats.opened <= u64::from(POOL), "{stats:?}");
    assert!(
        pins(&silo, &acme).leases >= (CLIENTS * 10) as u64,
        "a lease per statement"
    );
}

#[tokio::test]
async fn tenants_interleave_on_one_backend_connection() {
    let mut setup = Setup::new();
    let t1 = setup.tenant("mixa", 2).await;
    let t2 = setup.tenant("mixb", 2).await;
    let silo = setup.backend(2, servers()[1].addr(), 1).start().await;
    let mut c1 = silo.app(&t1).await;
    let mut c2 = silo.app(&t2).await;
    let s1 = c1
        .prep("SELECT name FROM items WHERE id = ?")
        .await
        .unwrap();
    let s2 = c2
        .prep("SELECT name FROM items WHERE id = ?")
        .await
        .unwrap();
    let mut threads = HashSet::new();
    for round in 0..5 {
        for (c, s, t) in [(&mut c1, &s1, &t1), (&mut c2, &s2, &t2)] {
            let name: Option<String> = c.exec_first(s, (2,)).await.unwrap();
            assert_eq!(name, Some(format!("{} two", t.slug)), "round {round}");
            let who: (String, String) = c
                .query_first("SELECT DATABASE(), SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who, (t.db.database.clone(), t.db.user.clone()));
            threads.insert(backend_thread(c).await);
        }
    }
    // One connection, re-authenticated between the tenants.
    assert_eq!(silo.pool(2).snapshot().opened, 1);
    assert_eq!(threads.len(), 1);
}
