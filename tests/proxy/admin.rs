//! The admin port: login, every `SHOW`, every change and what it does to
//! application clients, through mysql_async, the `mariadb` client and a
//! byte-level client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use crate::common::raw::{RawClient, err_code};
use crate::common::sha2::Sha2Client;
use crate::common::{APP_PASSWORD, Setup, Silo, Tenant, bounded, error_code, servers};

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-pass";

fn setup() -> Setup {
    Setup::new().admin(ADMIN_USER, ADMIN_PASSWORD)
}

/// A silo with the admin port and one tenant, `acme`, on backend 1.
async fn acme_silo() -> (Tenant, Silo) {
    let mut setup = setup();
    let acme = setup.tenant("acme", 1).await;
    (acme, setup.start().await)
}

async fn admin(silo: &Silo) -> Conn {
    silo.connect(silo.admin_opts(ADMIN_USER, ADMIN_PASSWORD))
        .await
}

/// A row as column name → text (NULL as `None`).
type Record = HashMap<String, Option<String>>;

fn record(row: Row) -> Record {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let values: Vec<Option<String>> = (0..names.len())
        .map(|i| row.get::<Option<String>, usize>(i).flatten())
        .collect();
    names.into_iter().zip(values).collect()
}

async fn query(conn: &mut Conn, sql: &str) -> Vec<Record> {
    let rows: Vec<Row> = bounded(sql, conn.query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(record).collect()
}

/// The row whose `key` column is `value`.
async fn row_of(conn: &mut Conn, sql: &str, key: &str, value: &str) -> Record {
    query(conn, sql)
        .await
        .into_iter()
        .find(|r| r.get(key).cloned().flatten().as_deref() == Some(value))
        .unwrap_or_else(|| panic!("{sql}: no row with {key} = {value}"))
}

fn cell<'a>(record: &'a Record, column: &str) -> &'a str {
    match record.get(column) {
        Some(Some(v)) => v,
        Some(None) => "NULL",
        None => panic!("no column {column} in {record:?}"),
    }
}

/// `SHOW TENANT <slug>` as name → value.
async fn tenant_facts(conn: &mut Conn, slug: &str) -> HashMap<String, String> {
    query(conn, &format!("SHOW TENANT {slug}"))
        .await
        .into_iter()
        .map(|r| (cell(&r, "name").to_string(), cell(&r, "value").to_string()))
        .collect()
}

/// Runs a change and returns its OK's info message.
async fn change(conn: &mut Conn, sql: &str) -> String {
    bounded(sql, conn.query_drop(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.info().into_owned()
}

async fn refused(conn: &mut Conn, sql: &str) -> (u16, String) {
    match bounded(sql, conn.query_drop(sql)).await {
        Ok(()) => panic!("{sql}: unexpectedly accepted"),
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The first byte of a packet (OK 0x00, ERR 0xFF, …).
fn head(payload: &[u8]) -> Option<u8> {
    payload.split_first().map(|(first, _)| *first)
}

/// The port of the backend that serves `tenant`'s queries now.
async fn serving_port(silo: &Silo, tenant: &Tenant) -> u16 {
    let mut app = silo.app(tenant).await;
    let port: Option<u16> = bounded("SELECT @@port", app.query_first("SELECT @@port"))
        .await
        .expect("SELECT @@port");
    let _ = app.disconnect().await;
    port.expect("a port")
}

/// Runs the `mariadb` client on the admin port as the admin; it must
/// succeed. Returns what it printed.
async fn admin_cli_ok(silo: &Silo, args: &[&str]) -> String {
    let out = silo.admin_cli(ADMIN_USER, ADMIN_PASSWORD, args).await;
    crate::common::stdout_of_success(&out)
}

/// Waits until silo counts `n` client connections for `slug`.
async fn wait_for_clients(conn: &mut Conn, slug: &str, n: usize) {
    for _ in 0..250 {
        if tenant_facts(conn, slug).await["clients"] == n.to_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tenant {slug} never had {n} clients");
}

#[tokio::test]
async fn only_the_admin_account_gets_in() {
    let (acme, silo) = acme_silo().await;

    // mysql_async asks for @@max_allowed_packet and @@wait_timeout on connect.
    let mut conn = admin(&silo).await;
    let (packet, timeout): (u64, u64) = conn
        .query_first("SELECT @@max_allowed_packet,@@wait_timeout")
        .await
        .unwrap()
        .unwrap();
    assert!(packet >= 64 * 1024 && timeout > 0, "{packet} {timeout}");
    conn.ping().await.expect("COM_PING");
    conn.query_drop("SET NAMES utf8mb4")
        .await
        .expect("SET NAMES");
    conn.query_drop("SET autocommit=1")
        .await
        .expect("SET autocommit");

    let app_user = format!("app.{}", acme.slug);
    for (user, password) in [
        (ADMIN_USER, "wrong"),
        (ADMIN_USER, ""),
        ("root", ADMIN_PASSWORD),
        (app_user.as_str(), APP_PASSWORD),
    ] {
        let err = silo.connect_err(silo.admin_opts(user, password)).await;
        assert_eq!(error_code(&err), Some(1045), "{user}: {err}");
        assert!(err.to_string().contains("Access denied"), "{err}");
    }
    // The admin account is no tenant user on the application port.
    let err = silo
        .connect_err(silo.opts(ADMIN_USER, ADMIN_PASSWORD))
        .await;
    assert_eq!(error_code(&err), Some(1045), "{err}");
    // Without [admin] there is no admin port.
    assert!(Setup::new().start().await.admin_addr.is_none());
}

#[tokio::test]
async fn a_client_naming_another_plugin_is_switched_to_native_password() {
    let silo = setup().start().await;
    let addr = silo.admin_addr.expect("admin port");
    let (mut client, _) = Sha2Client::start(addr, ADMIN_USER, &[1; 32]).await;
    let (seq, switch) = client.read_packet().await.expect("AuthSwitchRequest");
    let (plugin, nonce) = silo::protocol::handshake::parse_auth_switch(&switch).expect("switch");
    assert_eq!(plugin, b"mysql_native_password");
    let token = silo::protocol::auth::native_token(nonce, ADMIN_PASSWORD.as_bytes());
    client.send(seq + 1, &token).await;
    let (_, ok) = client.read_packet().await.expect("login reply");
    assert_eq!(head(&ok), Some(0x00), "{ok:?}");
    // This client reads EOF-terminated results (no CLIENT_DEPRECATE_EOF).
    assert_eq!(
        client.query_one("select @@version_comment limit 1").await,
        "silo admin port"
    );
}

#[tokio::test]
async fn show_reports_describe_tenants_backends_pools_clients_plans_and_usage() {
    let mut setup = setup().plan(
        "pro",
        "weight = 4\nmax_client_connections = 50\nmax_backend_leases = 8\nmax_queries_per_day = 100000",
    );
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    setup.set_plan(&globex.slug, "pro");
    let silo = setup.start().await;
    let mut app = silo.app(&acme).await;
    let app_id = app.id();
    for _ in 0..3 {
        let _: Vec<u32> = app.query("SELECT id FROM items").await.unwrap();
    }
    let mut conn = admin(&silo).await;
    // mysql_async's own query on connect counts too: compare with silo's
    // counters rather than with 3.
    let queries = silo.live(&acme).queries.load(Ordering::Relaxed).to_string();
    let leases = silo.pool(1).stats.pins.snapshot().leases.to_string();
    assert!(queries.parse::<u64>().unwrap() >= 3);

    let tenants = query(&mut conn, "SHOW TENANTS").await;
    let a = tenants
        .iter()
        .find(|r| cell(r, "slug") == acme.slug)
        .expect("acme listed");
    assert_eq!(cell(a, "status"), "active");
    assert_eq!(cell(a, "plan"), "starter");
    assert_eq!(cell(a, "backend"), "1");
    assert_eq!(cell(a, "pool_mode"), "transaction");
    assert_eq!(cell(a, "clients"), "1");
    assert_eq!(cell(a, "queued"), "0");
    assert_eq!(cell(a, "queries_today"), queries);
    assert_eq!(cell(a, "queries"), queries);
    let g = row_of(&mut conn, "SHOW TENANTS", "slug", &globex.slug).await;
    assert_eq!((cell(&g, "plan"), cell(&g, "backend")), ("pro", "2"));
    assert_eq!(cell(&g, "clients"), "0");

    let facts = tenant_facts(&mut conn, &acme.slug).await;
    assert_eq!(facts["status"], "active");
    assert_eq!(facts["database"], acme.db.database);
    assert_eq!(facts["db_user"], acme.db.user);
    assert_eq!(facts["max_client_connections"], "unlimited");
    assert_eq!(facts["queue_timeout_ms"], "2000");
    assert_eq!(facts["sessions"], "1");
    assert_eq!(facts["queries"], queries);
    assert_eq!(facts["refused_max_client_connections"], "0");
    assert!(facts.contains_key("pins_transaction"), "{facts:?}");
    let pro = tenant_facts(&mut conn, &globex.slug).await;
    assert_eq!(pro["max_client_connections"], "50");
    assert_eq!(pro["max_backend_leases"], "8");
    assert_eq!(pro["weight"], "4");
    assert!(
        !facts.values().any(|v| v.contains(&acme.db.password)),
        "a password in SHOW TENANT"
    );

    let backends = query(&mut conn, "SHOW BACKENDS").await;
    assert_eq!(backends.len(), 2);
    for (row, server) in backends.iter().zip(servers()) {
        assert_eq!(cell(row, "port"), server.port.to_string());
        assert_eq!(cell(row, "host"), "127.0.0.1");
        assert_eq!(cell(row, "max_connections"), "20");
        assert_eq!(cell(row, "draining"), "no");
        assert_eq!(cell(row, "healthy"), "yes");
        assert_eq!(cell(row, "tenants"), "1");
    }

    let pool = row_of(&mut conn, "SHOW POOLS", "backend", "1").await;
    assert!(cell(&pool, "opened").parse::<u64>().unwrap() >= 1);
    assert_eq!(cell(&pool, "leases"), leases);
    assert_eq!(cell(&pool, "in_use"), "0");
    assert_eq!(cell(&pool, "waiting"), "0");
    assert_eq!(cell(&pool, "errors"), "0");
    let pool2 = row_of(&mut conn, "SHOW POOLS", "backend", "2").await;
    assert_eq!(cell(&pool2, "opened"), "0");

    let client = row_of(&mut conn, "SHOW CLIENTS", "id", &app_id.to_string()).await;
    assert_eq!(cell(&client, "tenant"), acme.slug);
    assert_eq!(cell(&client, "user"), "app");
    assert_eq!(cell(&client, "backend"), "1");
    assert_eq!(cell(&client, "backend_thread_id"), "NULL");
    let for_acme = query(&mut conn, &format!("show clients for '{}'", acme.slug)).await;
    assert_eq!(for_acme.len(), 1);
    let for_globex = query(&mut conn, &format!("SHOW CLIENTS FOR `{}`;", globex.slug)).await;
    assert!(for_globex.is_empty());
    let (code, message) = refused(&mut conn, "SHOW CLIENTS FOR nobody").await;
    assert_eq!((code, message.as_str()), (1210, "unknown tenant 'nobody'"));

    let plans = query(&mut conn, "SHOW PLANS").await;
    let starter = plans.iter().find(|r| cell(r, "name") == "starter").unwrap();
    assert_eq!(cell(starter, "max_backend_leases"), "unlimited");
    assert_eq!(cell(starter, "weight"), "2");
    assert_eq!(cell(starter, "tenants"), "1");
    let pro = plans.iter().find(|r| cell(r, "name") == "pro").unwrap();
    assert_eq!(cell(pro, "max_queries_per_day"), "100000");
    assert_eq!(cell(pro, "queue_timeout_ms"), "2000");
    assert_eq!(cell(pro, "pool_mode"), "transaction");

    let usage = row_of(&mut conn, "SHOW USAGE", "tenant", &acme.slug).await;
    assert_eq!(cell(&usage, "queries_today"), queries);
    assert_eq!(cell(&usage, "queries"), queries);
    assert_eq!(cell(&usage, "max_queries_per_day"), "unlimited");
    assert_eq!(cell(&usage, "refusals"), "0");
    let usage = row_of(&mut conn, "SHOW USAGE", "tenant", &globex.slug).await;
    assert_eq!(cell(&usage, "max_queries_per_day"), "100000");
    assert_eq!(cell(&usage, "queries"), "0");

    // Typed columns: numbers read as numbers.
    let counts: Vec<(String, u64)> = conn
        .query("SHOW USAGE")
        .await
        .unwrap()
        .into_iter()
        .map(|row: Row| (row.get("tenant").unwrap(), row.get("queries").unwrap()))
        .collect();
    let expected = (acme.slug.clone(), queries.parse::<u64>().unwrap());
    assert!(counts.contains(&expected), "{counts:?}");
    assert!(query(&mut conn, "SHOW EVENTS").await.is_empty());
}

#[tokio::test]
async fn suspend_resume_and_pause_change_what_the_tenant_gets() {
    let (acme, silo) = acme_silo().await;
    let mut app = silo.app(&acme).await;
    let mut conn = admin(&silo).await;

    let info = change(&mut conn, &format!("SUSPEND TENANT {}", acme.slug)).await;
    assert!(info.contains("status set to suspended"), "{info}");
    assert!(info.contains("route table version 2"), "{info}");
    assert!(info.contains("runtime only"), "{info}");
    assert_eq!(conn.affected_rows(), 1);
    // The idle client is ended; new logins are refused.
    let err = app.query_drop("SELECT 1").await.unwrap_err();
    assert_eq!(error_code(&err), Some(1927), "{err}");
    let err = silo
        .connect_err(silo.opts(&format!("app.{}", acme.slug), APP_PASSWORD))
        .await;
    assert_eq!(error_code(&err), Some(1045), "{err}");
    assert!(err.to_string().contains("suspended"), "{err}");
    assert_eq!(
        tenant_facts(&mut conn, &acme.slug).await["status"],
        "suspended"
    );

    let info = change(&mut conn, &format!("resume tenant `{}`;", acme.slug)).await;
    assert!(info.contains("status set to active"), "{info}");
    assert_eq!(
        tenant_facts(&mut conn, &acme.slug).await["status"],
        "active"
    );
    silo.assert_serves(&acme).await;

    change(&mut conn, &format!("PAUSE TENANT '{}'", acme.slug)).await;
    let t = row_of(&mut conn, "SHOW TENANTS", "slug", &acme.slug).await;
    assert_eq!(cell(&t, "status"), "paused");
    change(&mut conn, &format!("RESUME TENANT {}", acme.slug)).await;
    silo.assert_serves(&acme).await;

    // Each change is an event, newest first, attributed to admin@ip.
    let events = query(&mut conn, &format!("SHOW EVENTS FOR {}", acme.slug)).await;
    let kinds: Vec<&str> = events.iter().map(|e| cell(e, "event")).collect();
    assert_eq!(kinds, ["reactivated", "paused", "reactivated", "suspended"]);
    assert!(
        events
            .iter()
            .all(|e| cell(e, "performed_by") == "admin@127.0.0.1")
    );
    assert!(events.iter().all(|e| cell(e, "tenant") == acme.slug));
    assert_eq!(query(&mut conn, "SHOW EVENTS LIMIT 1").await.len(), 1);
    assert!(query(&mut conn, "SHOW EVENTS FOR nobody").await.is_empty());

    let (code, message) = refused(&mut conn, "SUSPEND TENANT nobody").await;
    assert_eq!(code, 1210);
    assert_eq!(message, "unknown tenant 'nobody'");
}

#[tokio::test]
async fn set_backend_moves_the_tenant_and_set_plan_changes_its_limits() {
    let mut setup = setup().plan("solo", "max_client_connections = 1");
    let acme = setup.tenant("acme", 1).await;
    crate::common::mariadb::provision_copy(&servers()[1], &acme.slug, &acme.db).await;
    let silo = setup.start().await;
    let mut conn = admin(&silo).await;
    assert_eq!(serving_port(&silo, &acme).await, servers()[0].port);

    let info = change(&mut conn, &format!("SET TENANT {} BACKEND 2", acme.slug)).await;
    assert!(info.contains("moved to backend 2"), "{info}");
    assert_eq!(serving_port(&silo, &acme).await, servers()[1].port);
    let t = row_of(&mut conn, "SHOW TENANTS", "slug", &acme.slug).await;
    assert_eq!(cell(&t, "backend"), "2");
    let b2 = row_of(&mut conn, "SHOW BACKENDS", "id", "2").await;
    assert_eq!(cell(&b2, "tenants"), "1");

    let info = change(&mut conn, &format!("set tenant {} plan solo", acme.slug)).await;
    assert!(info.contains("plan set to solo"), "{info}");
    let facts = tenant_facts(&mut conn, &acme.slug).await;
    assert_eq!(
        (
            facts["plan"].as_str(),
            facts["max_client_connections"].as_str()
        ),
        ("solo", "1")
    );
    wait_for_clients(&mut conn, &acme.slug, 0).await;
    let _first = silo.app(&acme).await;
    let err = silo
        .connect_err(silo.opts(&format!("app.{}", acme.slug), APP_PASSWORD))
        .await;
    assert_eq!(error_code(&err), Some(1226), "{err}");

    let (code, message) = refused(&mut conn, &format!("SET TENANT {} PLAN gold", acme.slug)).await;
    assert_eq!(code, 1210);
    assert!(
        message.starts_with("unknown plan 'gold' (plans: "),
        "{message}"
    );
    let (code, message) = refused(&mut conn, &format!("SET TENANT {} BACKEND 9", acme.slug)).await;
    assert_eq!(code, 1210);
    assert!(message.starts_with("unknown backend 9"), "{message}");
}

#[tokio::test]
async fn drain_takes_a_backend_out_of_rotation_until_undrain() {
    let mut setup = setup();
    let globex = setup.tenant("globex", 2).await;
    let silo = setup.start().await;
    let mut conn = admin(&silo).await;
    // Logged in before: mysql_async's own query on connect needs the backend.
    let mut app = silo.app(&globex).await;

    let info = change(&mut conn, "DRAIN BACKEND 2").await;
    assert!(info.contains("backend 2: draining"), "{info}");
    let b2 = row_of(&mut conn, "SHOW BACKENDS", "id", "2").await;
    assert_eq!(cell(&b2, "draining"), "yes");
    let err = app.query_drop("SELECT 1").await.unwrap_err();
    assert_eq!(error_code(&err), Some(1053), "{err}");

    let info = change(&mut conn, "undrain backend 2;").await;
    assert!(info.contains("back in rotation"), "{info}");
    let b2 = row_of(&mut conn, "SHOW BACKENDS", "id", "2").await;
    assert_eq!(cell(&b2, "draining"), "no");
    silo.assert_serves(&globex).await;

    let (code, message) = refused(&mut conn, "DRAIN BACKEND 9").await;
    assert_eq!(code, 1210);
    assert!(
        message.starts_with("unknown backend 9 (backends: "),
        "{message}"
    );
}

#[tokio::test]
async fn kill_client_ends_that_client_only() {
    let (acme, silo) = acme_silo().await;
    let mut victim = silo.app(&acme).await;
    let mut bystander = silo.app(&acme).await;
    let victim_id = victim.id();
    let mut conn = admin(&silo).await;
    assert_eq!(
        query(&mut conn, &format!("SHOW CLIENTS FOR {}", acme.slug))
            .await
            .len(),
        2
    );

    let info = change(&mut conn, &format!("KILL CLIENT {victim_id}")).await;
    assert!(
        info.contains(&format!("client {victim_id} of tenant {}", acme.slug)),
        "{info}"
    );
    let err = victim.query_drop("SELECT 1").await.unwrap_err();
    assert_eq!(error_code(&err), Some(1927), "{err}");
    bystander
        .query_drop("SELECT 1")
        .await
        .expect("the other client goes on");

    // The session leaves the registry once it has ended.
    let mut listed = true;
    for _ in 0..100 {
        let clients = query(&mut conn, "SHOW CLIENTS").await;
        listed = clients
            .iter()
            .any(|c| cell(c, "id") == victim_id.to_string());
        if !listed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!listed, "killed client still listed");

    let (code, message) = refused(&mut conn, "KILL CLIENT 999999").await;
    assert_eq!(
        (code, message.as_str()),
        (1094, "Unknown thread id: 999999")
    );
    let (code, _) = refused(&mut conn, "KILL CLIENT 99999999999").await;
    assert_eq!(code, 1094);
}

#[tokio::test]
async fn reload_rereads_the_file_and_refuses_a_broken_one() {
    let mut setup = setup();
    let acme = setup.tenant("acme", 1).await;
    let fixed = setup.start().await;
    let mut conn = admin(&fixed).await;
    let info = change(&mut conn, "RELOAD").await;
    assert!(info.contains("nothing to reload"), "{info}");
    drop(conn);

    let (silo, file) = setup.start_from_file().await;
    let mut conn = admin(&silo).await;
    setup.set_status(&acme.slug, "suspended");
    file.write(&setup.toml());
    let info = change(&mut conn, "RELOAD").await;
    assert!(info.contains("reloaded from the file source"), "{info}");
    assert_eq!(
        tenant_facts(&mut conn, &acme.slug).await["status"],
        "suspended"
    );

    file.write(
        &setup
            .toml()
            .replace("max_connections = 20", "max_connections = 0"),
    );
    let (code, message) = refused(&mut conn, "RELOAD").await;
    assert_eq!(code, 1105);
    assert!(message.contains("max_connections"), "{message}");
    assert_eq!(
        tenant_facts(&mut conn, &acme.slug).await["status"],
        "suspended"
    );
}

#[tokio::test]
async fn bad_commands_get_errors_and_the_session_goes_on() {
    let (acme, silo) = acme_silo().await;
    let mut conn = admin(&silo).await;

    let (code, message) = refused(&mut conn, "DROP TABLE tenants").await;
    assert_eq!(code, 1064);
    assert!(
        message.starts_with("unknown admin command; accepted: SHOW TENANTS | SHOW TENANT <slug> |"),
        "{message}"
    );
    assert!(message.contains("KILL CLIENT <id> | RELOAD"), "{message}");
    let (code, message) = refused(&mut conn, "SHOW TENANT").await;
    assert_eq!(code, 1064);
    assert!(message.contains("usage: SHOW TENANT <slug>"), "{message}");
    let (code, message) = refused(&mut conn, "SHOW TENANT nobody").await;
    assert_eq!((code, message.as_str()), (1210, "unknown tenant 'nobody'"));
    let (code, _) = refused(&mut conn, "SET TENANT x BACKEND two").await;
    assert_eq!(code, 1064);
    let (code, _) = refused(&mut conn, "SELECT @@no_such_variable").await;
    assert_eq!(code, 1193);
    let (code, _) = refused(&mut conn, "SHOW TENANTS; SHOW POOLS").await;
    assert_eq!(code, 1064);
    // Prepared statements are not spoken here.
    let err = conn.exec_drop("SHOW TENANTS", ()).await.unwrap_err();
    assert_eq!(error_code(&err), Some(1047), "{err}");
    assert_eq!(
        query(&mut conn, "SHOW TENANTS").await.len(),
        1,
        "the session still works"
    );

    // Byte-level: odd commands and non-UTF-8 text get ERRs; a packet out of
    // sequence ends the session.
    let addr = silo.admin_addr.expect("admin port");
    let mut raw = RawClient::login(addr, ADMIN_USER, ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("raw admin login refused: {:?}", err_code(&e)));
    assert_eq!(
        err_code(&raw.command(&[0x03, 0xFF, 0xFE]).await.unwrap()),
        Some(1064)
    );
    assert_eq!(err_code(&raw.command(&[0x0A]).await.unwrap()), Some(1047));
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
    let mut init_db = vec![0x02];
    init_db.extend_from_slice(b"anything");
    assert_eq!(head(&raw.command(&init_db).await.unwrap()), Some(0x00));
    raw.send(3, b"\x03SHOW TENANTS").await;
    let (_, reply) = raw.read_packet().await.expect("an ERR before closing");
    assert_eq!(err_code(&reply), Some(1835));
    assert!(raw.read_packet().await.is_none(), "session closed");

    let mut raw = RawClient::login(addr, ADMIN_USER, ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("raw admin login refused: {:?}", err_code(&e)));
    raw.send(0, b"").await;
    let (_, reply) = raw.read_packet().await.expect("an ERR before closing");
    assert_eq!(err_code(&reply), Some(1835));
    assert!(raw.read_packet().await.is_none(), "session closed");
    // COM_QUIT closes quietly.
    let mut raw = RawClient::login(addr, ADMIN_USER, ADMIN_PASSWORD)
        .await
        .unwrap();
    raw.send(0, &[0x01]).await;
    assert!(raw.read_packet().await.is_none());

    // None of that disturbed the tenant.
    silo.assert_serves(&acme).await;
}

#[tokio::test]
async fn the_mariadb_client_reads_reports_and_makes_changes() {
    let (acme, silo) = acme_silo().await;

    let text = admin_cli_ok(&silo, &["--batch", "-e", "SHOW TENANTS"]).await;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "slug\tstatus\tplan\tbackend\tpool_mode\tclients\tleases\tqueued\tpinned\tqueries_today\tqueries\trefusals"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "{}\tactive\tstarter\t1\ttransaction\t0\t0\t0\t0\t0\t0\t0",
                acme.slug
            )
            .as_str()
        )
    );

    let text = admin_cli_ok(
        &silo,
        &[
            "--table",
            "-e",
            "SHOW POOLS; select @@version_comment limit 1",
        ],
    )
    .await;
    assert!(
        text.contains("| backend | idle | in_use | pinned | waiting |"),
        "{text}"
    );
    assert!(text.contains("| silo admin port   |"), "{text}");

    let suspend = format!("SUSPEND TENANT {}", acme.slug);
    admin_cli_ok(&silo, &["--batch", "-e", &suspend]).await;
    let show = format!("SHOW TENANT {}", acme.slug);
    let out = silo
        .admin_cli(
            ADMIN_USER,
            ADMIN_PASSWORD,
            &["--batch", "--skip-column-names", "-e", &show],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "status\tsuspended"), "{text}");

    let out = silo
        .admin_cli(ADMIN_USER, ADMIN_PASSWORD, &["-e", "SHOW DATABASES"])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR 1064 (42000)") && err.contains("accepted: SHOW TENANTS |"),
        "{err}"
    );

    let out = silo
        .admin_cli(ADMIN_USER, "wrong", &["-e", "SHOW TENANTS"])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");
}
