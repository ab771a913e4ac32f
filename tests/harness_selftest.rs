//! Tests of the test harness itself: the shared `mariadbd` servers, tenant
//! provisioning and isolation, and the fault relay.

#[path = "common/faults.rs"]
mod faults;
#[path = "common/mariadb.rs"]
mod mariadb;

use std::future::Future;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, WhiteListFsHandler};

use faults::FaultProxy;
use mariadb::{
    Backend, TenantDb, connect, error_code, kill_user_connections, processlist_count,
    provision_tenant, servers, tcp_opts, unique,
};

/// Bound on any single step of these tests.
const STEP: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

async fn tenant_conn(backend: &Backend, tenant: &TenantDb) -> Conn {
    connect(tenant.direct_opts(backend), &tenant.user).await
}

async fn item_names(conn: &mut Conn) -> Vec<String> {
    within(
        "reading items",
        conn.query("SELECT name FROM items ORDER BY id"),
    )
    .await
    .expect("reading items")
}

#[test]
fn unique_names_are_short_distinct_identifiers() {
    let a = unique("Acme-Corp.example");
    let b = unique("Acme-Corp.example");
    let c = unique("9lives");
    assert_ne!(a, b);
    for name in [&a, &b, &c] {
        assert!(name.len() <= mariadb::UNIQUE_MAX_LEN, "{name} too long");
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
            "{name} has unsafe characters"
        );
        assert!(
            name.starts_with(|ch: char| ch.is_ascii_lowercase()),
            "{name}"
        );
    }
    assert!(a.starts_with("acme_corp_"), "{a}");
    assert!(c.starts_with("x9lives_"), "{c}");
}

#[tokio::test]
async fn both_servers_answer_as_mariadb() {
    let [first, second] = servers();
    assert_ne!(first.port, second.port);
    for backend in servers() {
        let mut conn = backend.root_conn().await;
        let row: Option<(String, u64, u64, u64)> = within(
            "reading version and settings",
            conn.query_first(
                "SELECT VERSION(), @@max_allowed_packet, @@local_infile, @@max_connections",
            ),
        )
        .await
        .expect("reading version and settings");
        let (version, max_packet, local_infile, max_connections) =
            row.expect("one row of settings");
        assert!(version.contains("MariaDB"), "version {version}");
        assert_eq!(max_packet, 64 * 1024 * 1024);
        assert_eq!(local_infile, 1);
        assert_eq!(max_connections, 500);
        let anonymous: Option<u64> = within(
            "counting anonymous users",
            conn.query_first("SELECT COUNT(*) FROM mysql.user WHERE User = ''"),
        )
        .await
        .expect("counting anonymous users");
        assert_eq!(anonymous, Some(0));
        within("disconnecting", conn.disconnect())
            .await
            .expect("disconnecting");
    }
}

#[tokio::test]
async fn tenant_reads_its_own_rows_and_is_denied_the_others() {
    let backend = &servers()[0];
    let acme_slug = unique("acme");
    let acme = provision_tenant(backend, &acme_slug).await;
    let globex = provision_tenant(backend, &unique("globex")).await;

    let mut conn = tenant_conn(backend, &acme).await;
    let names = item_names(&mut conn).await;
    assert_eq!(
        names,
        [
            format!("{acme_slug} one"),
            format!("{acme_slug} two"),
            format!("{acme_slug} three"),
        ]
    );

    // Another tenant's table: SELECT command denied (1142).
    let err = within(
        "reading the other tenant's items",
        conn.query_drop(format!("SELECT * FROM `{}`.items", globex.database)),
    )
    .await
    .expect_err("another tenant's table must be denied");
    assert_eq!(error_code(&err), Some(1142), "{err}");

    // Another tenant's database: access denied to database (1044).
    let err = within(
        "switching to the other tenant's database",
        conn.query_drop(format!("USE `{}`", globex.database)),
    )
    .await
    .expect_err("another tenant's database must be denied");
    assert_eq!(error_code(&err), Some(1044), "{err}");

    // Logging in with the other tenant's database as default is refused too.
    let opts: Opts = OptsBuilder::from_opts(acme.direct_opts(backend))
        .db_name(Some(globex.database.clone()))
        .into();
    let err = within("logging in to the other database", Conn::new(opts))
        .await
        .expect_err("login into another tenant's database must be denied");
    assert_eq!(error_code(&err), Some(1044), "{err}");

    // A wrong password is refused.
    let opts: Opts = OptsBuilder::from_opts(acme.direct_opts(backend))
        .pass(Some("not-the-password"))
        .into();
    let err = within("logging in with a wrong password", Conn::new(opts))
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(error_code(&err), Some(1045), "{err}");

    within("disconnecting", conn.disconnect())
        .await
        .expect("disconnecting");
}

#[tokio::test]
async fn processlist_counts_and_kill_ends_connections() {
    let backend = &servers()[1];
    let tenant = provision_tenant(backend, &unique("plist")).await;
    assert_eq!(processlist_count(backend, &tenant.user).await, 0);

    let mut first = tenant_conn(backend, &tenant).await;
    let second = tenant_conn(backend, &tenant).await;
    assert_eq!(processlist_count(backend, &tenant.user).await, 2);
    within("disconnecting", second.disconnect())
        .await
        .expect("disconnecting");
    // The server drops the thread shortly after COM_QUIT.
    let mut count = usize::MAX;
    for _ in 0..100 {
        count = processlist_count(backend, &tenant.user).await;
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count, 1);

    assert_eq!(kill_user_connections(backend, &tenant.user).await, 1);
    assert_eq!(processlist_count(backend, &tenant.user).await, 0);
    let result = within("querying a killed connection", first.query_drop("SELECT 1")).await;
    assert!(result.is_err(), "a killed connection must fail");
}

#[tokio::test]
async fn tenant_can_kill_its_own_query() {
    let backend = &servers()[0];
    let tenant = provision_tenant(backend, &unique("killq")).await;
    let mut sleeper = tenant_conn(backend, &tenant).await;
    let mut killer = tenant_conn(backend, &tenant).await;
    let sleeper_id = sleeper.id();

    let sleeping = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let result: Result<Option<u64>, _> = sleeper.query_first("SELECT SLEEP(30)").await;
        (result, started.elapsed())
    });
    // Wait until the server runs the sleep, so the KILL hits it.
    let mut running = false;
    for _ in 0..250 {
        let state: Option<String> = within(
            "watching the sleeper",
            killer.exec_first(
                "SELECT COALESCE(INFO, '') FROM information_schema.PROCESSLIST WHERE ID = ?",
                (sleeper_id,),
            ),
        )
        .await
        .expect("watching the sleeper");
        if state.is_some_and(|info| info.contains("SLEEP")) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the sleep never showed up in the processlist");

    within(
        "killing its own query",
        killer.query_drop(format!("KILL QUERY {sleeper_id}")),
    )
    .await
    .expect("a user may kill its own query");
    let (result, elapsed) = within("joining the sleeper", sleeping)
        .await
        .expect("sleeper task");
    // MariaDB ends an interrupted SLEEP() either with ER_QUERY_INTERRUPTED (1317)
    // or by returning 1; both prove the kill landed.
    match result {
        Ok(value) => assert_eq!(value, Some(1)),
        Err(err) => assert_eq!(error_code(&err), Some(1317), "{err}"),
    }
    assert!(
        elapsed < Duration::from_secs(25),
        "sleep was not interrupted"
    );
}

#[tokio::test]
async fn tenant_can_load_data_local_infile() {
    let backend = &servers()[1];
    let tenant = provision_tenant(backend, &unique("infile")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rows.tsv");
    std::fs::write(&path, "4\tloaded four\n5\tloaded five\n").expect("writing rows");

    let opts: Opts = OptsBuilder::from_opts(tenant.direct_opts(backend))
        .local_infile_handler(Some(WhiteListFsHandler::new([path.clone()])))
        .into();
    let mut conn = connect(opts, &tenant.user).await;
    within(
        "loading rows",
        conn.query_drop(format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE items",
            path.display()
        )),
    )
    .await
    .expect("LOAD DATA LOCAL INFILE into the tenant's own table");
    let names = item_names(&mut conn).await;
    assert_eq!(names.len(), 5);
    assert_eq!(names[3], "loaded four");
    within("disconnecting", conn.disconnect())
        .await
        .expect("disconnecting");
}

#[tokio::test]
async fn fault_proxy_relays_severs_and_refuses() {
    let backend = &servers()[0];
    let tenant = provision_tenant(backend, &unique("fault")).await;
    let proxy = FaultProxy::start(backend.addr()).await;
    let via_proxy = || -> Opts {
        tcp_opts(proxy.addr())
            .user(Some(tenant.user.clone()))
            .pass(Some(tenant.password.clone()))
            .db_name(Some(tenant.database.clone()))
            .into()
    };

    let mut conn = connect(via_proxy(), "tenant via proxy").await;
    assert_eq!(item_names(&mut conn).await.len(), 3);
    assert_eq!(proxy.connections(), 1);

    proxy.sever_all();
    assert_eq!(proxy.connections(), 0);
    let result = within("querying a severed connection", conn.query_drop("SELECT 1")).await;
    assert!(result.is_err(), "a severed connection must fail");
    drop(conn);

    let mut conn = connect(via_proxy(), "tenant via proxy after sever").await;
    assert_eq!(item_names(&mut conn).await.len(), 3);
    assert_eq!(proxy.connections(), 1);

    proxy.set_refuse(true);
    let refused = within("connecting while refused", Conn::new(via_proxy())).await;
    assert!(refused.is_err(), "a refusing proxy must fail the login");
    // The relayed connection survives refusal of new ones.
    assert_eq!(item_names(&mut conn).await.len(), 3);
    proxy.set_refuse(false);

    let mut again = connect(via_proxy(), "tenant via proxy after refusal").await;
    assert_eq!(item_names(&mut again).await.len(), 3);
    assert!(proxy.wait_for_connections(2, STEP).await);
    within("disconnecting", again.disconnect())
        .await
        .expect("disconnecting");
    assert!(
        proxy.wait_for_connections(1, STEP).await,
        "a closed relay must leave the count"
    );
    drop(proxy);
    let result = within(
        "querying after the proxy is dropped",
        conn.query_drop("SELECT 1"),
    )
    .await;
    assert!(
        result.is_err(),
        "dropping the proxy must sever its connections"
    );
}
