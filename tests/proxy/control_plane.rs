//! The control-plane database as the catalog's source: schema init, start,
//! live refresh, outages, refused rows, keys, write-through and usage.
//! Each test makes its own control-plane database on shared server 1.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};
use silo::catalog::{Catalog, CatalogError, Change, database};
use silo::config::{Config, TenantStatus};
use silo::secret_box::{SecretKey, to_hex};
use silo::server::Server;

use crate::common::faults::FaultProxy;
use crate::common::mariadb::{Backend, TenantDb, provision_copy, tcp_opts};
use crate::common::{
    APP_PASSWORD, Silo, Tenant, bounded, error_code, provision_tenant, serve, servers, unique,
};

const POLL_MS: u64 = 100;

/// Evaluates `check` (which may await) every 20 ms for at most 10 s.
macro_rules! eventually {
    ($what:expr, $check:expr) => {{
        let mut met = false;
        for _ in 0..500 {
            if $check {
                met = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(met, "{}: not within 10 s", $what);
    }};
}

async fn catalog_version(root: &mut Conn, database: &str) -> u64 {
    root.query_first(format!(
        "SELECT version FROM `{database}`.silo_catalog_version"
    ))
    .await
    .expect("version read")
    .expect("version row")
}

/// The URL of control-plane database `database` through `addr` (the
/// server, or a relay in front of it).
fn cp_url(addr: std::net::SocketAddr, database: &str) -> String {
    format!(
        "mysql://root@{}:{}/{database}?prefer_socket=false",
        addr.ip(),
        addr.port()
    )
}

/// A control-plane database of its own, initialised, with backends 1 and 2
/// (the shared servers) and a plan "open" without limits.
struct ControlPlane {
    name: String,
    server: &'static Backend,
    key: SecretKey,
    _dir: tempfile::TempDir,
    key_file: PathBuf,
}

impl ControlPlane {
    async fn new() -> ControlPlane {
        let server = &servers()[0];
        let name = unique("cp");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SecretKey::generate().expect("a key");
        let key_file = dir.path().join("silo.key");
        std::fs::write(&key_file, key.to_base64()).expect("key written");
        let cp = ControlPlane {
            name,
            server,
            key,
            _dir: dir,
            key_file,
        };
        let url = silo::secret::Secret::new(cp.url(server.addr()));
        let outcome = bounded("init", database::init(&url, Duration::from_secs(20)))
            .await
            .expect("init");
        assert!(
            matches!(outcome, database::InitOutcome::Applied { version: 1, .. }),
            "{outcome:?}"
        );
        let s = servers();
        for (id, backend) in [(1, &s[0]), (2, &s[1])] {
            cp.sql(&format!(
                "INSERT INTO backends (id, host, port, max_connections, connect_timeout_ms, idle_timeout_ms) \
                 VALUES ({id}, '127.0.0.1', {}, 20, 2000, 60000)",
                backend.port
            ))
            .await;
        }
        cp.plan("open", "weight = 2, queue_timeout_ms = 2000").await;
        cp
    }

    /// The URL of this control plane through `addr`.
    fn url(&self, addr: std::net::SocketAddr) -> String {
        cp_url(addr, &self.name)
    }

    async fn conn(&self) -> Conn {
        let opts: Opts = tcp_opts(self.server.addr())
            .user(Some("root"))
            .db_name(Some(self.name.clone()))
            .into();
        bounded("control-plane connection", Conn::new(opts))
            .await
            .expect("control plane reachable")
    }

    async fn sql(&self, statement: &str) {
        let mut conn = self.conn().await;
        bounded("control-plane SQL", conn.query_drop(statement))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = conn.disconnect().await;
    }

    async fn value<T: FromRow + Send + 'static>(&self, query: &str) -> Option<T> {
        let mut conn = self.conn().await;
        let v = bounded("control-plane query", conn.query_first(query))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let _ = conn.disconnect().await;
        v
    }

    /// `UPDATE tenants SET {set}` of tenant `slug`.
    async fn set_tenant(&self, slug: &str, set: &str) {
        self.sql(&format!(
            "UPDATE tenants SET {set} WHERE tenant_slug = '{slug}'"
        ))
        .await;
    }

    /// Column `column` of tenant `slug`'s row.
    async fn stored(&self, slug: &str, column: &str) -> Option<String> {
        self.value(&format!(
            "SELECT {column} FROM tenants WHERE tenant_slug = '{slug}'"
        ))
        .await
    }

    /// Adds (or replaces) plan `name`, e.g. `set = "max_client_connections = 1"`.
    async fn plan(&self, name: &str, set: &str) {
        self.sql(&format!(
            "INSERT INTO subscription_plans SET plan_name = '{name}', display_name = '{name}', {set}"
        ))
        .await;
    }

    /// Provisions a tenant on `backend` with user `app` / [`APP_PASSWORD`]
    /// and adds its rows.
    async fn tenant(&self, prefix: &str, backend: u32, plan: &str) -> Tenant {
        let slug = unique(prefix).replace('_', "");
        let db = provision_tenant(&servers()[(backend - 1) as usize], &slug).await;
        let sealed = to_hex(&self.key.seal(db.password.as_bytes()).expect("sealed"));
        self.tenant_row(&slug, backend, plan, &db, &sealed).await;
        self.user(&slug, "app", APP_PASSWORD).await;
        Tenant {
            slug,
            backend,
            db,
            status: "active",
            plan: plan.to_string(),
        }
    }

    /// An active tenant's row, its password already encrypted (`sealed`,
    /// in hex).
    async fn tenant_row(&self, slug: &str, backend: u32, plan: &str, db: &TenantDb, sealed: &str) {
        self.sql(&format!(
            "INSERT INTO tenants (tenant_slug, company_name, status, subscription_plan, backend_id, \
             db_name, db_user, db_password_encrypted) \
             VALUES ('{slug}', 'Co {slug}', 'active', '{plan}', {backend}, '{}', '{}', UNHEX('{sealed}'))",
            db.database, db.user
        ))
        .await;
    }

    async fn user(&self, slug: &str, username: &str, password: &str) {
        self.sql(&format!(
            "INSERT INTO tenant_users (tenant_id, username, password_hash) \
             SELECT tenant_id, '{username}', PASSWORD('{password}') FROM tenants \
             WHERE tenant_slug = '{slug}'"
        ))
        .await;
    }

    /// silo's configuration reading this control plane at `url`, its key
    /// from `SILO_SECRET_KEY`.
    fn toml_without_key_file(&self, url: &str) -> String {
        format!(
            "[listen]\nmysql = \"127.0.0.1:0\"\n\
             [control_plane]\nurl = \"{url}\"\npoll_interval_ms = {POLL_MS}\n\
             usage_flush_interval_ms = {POLL_MS}\ntimeout_ms = 1000\n"
        )
    }

    /// As [`ControlPlane::toml_without_key_file`], the key from this
    /// control plane's key file.
    fn toml(&self, url: &str) -> String {
        self.toml_without_key_file(url)
            + &format!("secret_key_file = \"{}\"\n", self.key_file.display())
    }

    /// silo in this test's runtime, its catalog read from this control
    /// plane through `addr`.
    async fn start_via(&self, addr: std::net::SocketAddr) -> Silo {
        self.start_with(&self.toml(&self.url(addr))).await
    }

    /// As [`ControlPlane::start`], with the admin port on (`admin` / `admin-pass`).
    async fn start_with_admin(&self) -> Silo {
        let toml = self.toml(&self.url(self.server.addr()))
            + "[admin]\nlisten = \"127.0.0.1:0\"\nuser = \"admin\"\npassword = \"admin-pass\"\n";
        self.start_with(&toml).await
    }

    async fn start_with(&self, toml: &str) -> Silo {
        let config = Config::from_toml(toml).expect("valid config");
        let (db, config) = bounded("open", database::open(&config))
            .await
            .expect("catalog read");
        let catalog = Catalog::database(db, config);
        serve(Server::bind_with(catalog).await.expect("silo binds"))
    }

    async fn start(&self) -> Silo {
        self.start_via(self.server.addr()).await
    }
}

fn route_plan(silo: &Silo, slug: &str) -> Option<String> {
    silo.ctx
        .router
        .load()
        .tenant(slug)
        .map(|t| t.plan.name.clone())
}

fn route_status(silo: &Silo, slug: &str) -> Option<TenantStatus> {
    silo.ctx.router.load().tenant(slug).map(|t| t.status)
}

async fn login_error(silo: &Silo, user: &str, password: &str) -> mysql_async::Error {
    silo.connect_err(silo.opts(user, password)).await
}

#[tokio::test]
async fn init_is_idempotent_and_keeps_the_url_secret() {
    let cp = ControlPlane::new().await;
    let run = |url: String| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_silo"))
            .args(["control-plane", "init"])
            .env("SILO_CONTROL_PLANE_URL", url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        bounded("silo control-plane init", out)
            .await
            .expect("silo runs")
    };
    // Already initialised by ControlPlane::new: nothing to do, twice.
    for _ in 0..2 {
        let out = run(cp.url(cp.server.addr())).await;
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("already at version 1: nothing to do"),
            "{stdout}"
        );
    }
    // A fresh database: created, then every step applied once.
    let fresh = unique("cpfresh");
    let url = cp_url(cp.server.addr(), &fresh);
    let out = run(url.clone()).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied 0001_control_plane"));
    let out = run(url).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
    let mut root = cp.server.root_conn().await;
    let migrations: Option<u64> = root
        .query_first(format!(
            "SELECT COUNT(*) FROM `{fresh}`.silo_schema_migrations"
        ))
        .await
        .unwrap();
    assert_eq!(migrations, Some(1));
    let triggers: Option<u64> = root
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (&fresh,),
        )
        .await
        .unwrap();
    assert_eq!(triggers, Some(12));
    let plans: Vec<String> = root
        .query(format!(
            "SELECT plan_name FROM `{fresh}`.subscription_plans ORDER BY monthly_price_cents"
        ))
        .await
        .unwrap();
    assert_eq!(plans, ["free", "starter", "professional", "enterprise"]);
    // Events and usage do not move the catalog version; catalog rows do.
    let v0 = catalog_version(&mut root, &fresh).await;
    root.query_drop(format!(
        "INSERT INTO `{fresh}`.tenant_events (tenant_id, event_type) VALUES (NULL, 'x')"
    ))
    .await
    .unwrap();
    assert_eq!(catalog_version(&mut root, &fresh).await, v0);
    root.query_drop(format!(
        "UPDATE `{fresh}`.subscription_plans SET weight = 3 WHERE plan_name = 'free'"
    ))
    .await
    .unwrap();
    assert_eq!(catalog_version(&mut root, &fresh).await, v0 + 1);

    // A URL without a database is refused, its password never repeated.
    let out = run(format!(
        "mysql://root:Sup3rS3cretPw@127.0.0.1:{}",
        cp.server.port
    ))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must name the database"), "{stderr}");
    assert!(
        !stderr.contains("Sup3rS3cretPw"),
        "the password leaked: {stderr}"
    );
}

#[tokio::test]
async fn serves_from_the_control_plane_and_follows_its_changes() {
    let cp = ControlPlane::new().await;
    cp.plan("tiny", "max_client_connections = 1").await;
    let acme = cp.tenant("cpacme", 1, "open").await;
    let other = cp.tenant("cpother", 1, "open").await;
    let silo = cp.start().await;
    silo.assert_serves(&acme).await;
    silo.assert_serves(&other).await;
    let reloads = silo.ctx.catalog.health.reloads.load(Ordering::Relaxed);

    // A plan change.
    cp.set_tenant(&acme.slug, "subscription_plan = 'tiny'")
        .await;
    eventually!("the plan change", {
        route_plan(&silo, &acme.slug).as_deref() == Some("tiny")
    });
    // The connection of assert_serves may still be closing.
    let acme_user = format!("app.{}", acme.slug);
    let mut held = None;
    eventually!("one connection on the tiny plan", {
        held = Conn::new(silo.opts(&acme_user, APP_PASSWORD)).await.ok();
        held.is_some()
    });
    let err = login_error(&silo, &acme_user, APP_PASSWORD).await;
    assert_eq!(error_code(&err), Some(1226), "{err}");
    drop(held);

    // A new user row.
    cp.user(&other.slug, "reporter", "rep-pass").await;
    let reporter = format!("reporter.{}", other.slug);
    eventually!("the new user", {
        Conn::new(silo.opts(&reporter, "rep-pass")).await.is_ok()
    });

    // A move to the other backend, where the tenant's database was copied.
    let s = servers();
    provision_copy(&s[1], &other.slug, &other.db).await;
    cp.set_tenant(&other.slug, "backend_id = 2").await;
    eventually!("the move", {
        silo.ctx
            .router
            .load()
            .tenant(&other.slug)
            .is_some_and(|t| t.backend == 2)
    });
    let mut conn = silo.app(&other).await;
    let port: Option<u16> = conn.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(s[1].port));
    drop(conn);

    // Suspended, then deleted: not served, then not routed at all.
    cp.set_tenant(&other.slug, "status = 'suspended'").await;
    eventually!("the suspension", {
        route_status(&silo, &other.slug) == Some(TenantStatus::Suspended)
    });
    let err = login_error(&silo, &format!("app.{}", other.slug), APP_PASSWORD).await;
    assert_eq!(error_code(&err), Some(1045));
    assert!(err.to_string().contains("is suspended"), "{err}");
    cp.set_tenant(&other.slug, "status = 'deleted', deleted_at = NOW(6)")
        .await;
    eventually!("the deletion", {
        silo.ctx.router.load().tenant(&other.slug).is_none()
    });
    let err = login_error(&silo, &format!("app.{}", other.slug), APP_PASSWORD).await;
    assert!(err.to_string().contains("unknown tenant"), "{err}");

    silo.assert_serves(&acme).await;
    let health = &silo.ctx.catalog.health;
    assert!(health.reloads.load(Ordering::Relaxed) >= reloads + 5);
    assert_eq!(health.rejected.load(Ordering::Relaxed), 0);
    assert!(!health.unreachable.load(Ordering::Relaxed));
    assert_eq!(silo.ctx.catalog.kind(), "database");
}

/// Log lines of this test's thread (the test runtime runs silo's tasks).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn an_outage_keeps_the_last_table_and_is_caught_up_after() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cp = ControlPlane::new().await;
    let acme = cp.tenant("outacme", 1, "open").await;
    let other = cp.tenant("outother", 2, "open").await;
    let relay = FaultProxy::start(cp.server.addr()).await;
    let silo = cp.start_via(relay.addr()).await;
    let health = &silo.ctx.catalog.health;
    silo.assert_serves(&acme).await;

    relay.set_refuse(true);
    relay.sever_all();
    eventually!("the outage noticed", {
        health.unreachable.load(Ordering::Relaxed)
    });
    // Changed while silo cannot see it.
    cp.set_tenant(&other.slug, "status = 'suspended'").await;
    let failures = health.failures.load(Ordering::Relaxed);
    eventually!("more failed polls", {
        health.failures.load(Ordering::Relaxed) >= failures + 3
    });
    // The last good table keeps serving.
    silo.assert_serves(&acme).await;
    silo.assert_serves(&other).await;
    // An operator's change cannot be written: refused, nothing changes.
    let version = silo.ctx.router.load().version;
    let err = silo
        .ctx
        .catalog
        .apply(
            &silo.ctx,
            Change::TenantPlan {
                tenant: acme.slug.clone(),
                plan: "open".into(),
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Unavailable(_)), "{err}");
    assert_eq!(silo.ctx.router.load().version, version);
    assert!(matches!(
        silo.ctx.catalog.reload(&silo.ctx).await,
        Err(CatalogError::Unavailable(_))
    ));

    relay.set_refuse(false);
    eventually!("the catch-up", {
        !health.unreachable.load(Ordering::Relaxed)
            && route_status(&silo, &other.slug) == Some(TenantStatus::Suspended)
    });
    silo.assert_serves(&acme).await;
    assert!(health.staleness_seconds() < 5.0);

    let text = logs.text();
    assert_eq!(
        text.matches("control plane unreachable").count(),
        1,
        "logged once per outage:\n{text}"
    );
    assert_eq!(
        text.matches("control plane reachable again").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("mysql://"), "the URL was logged:\n{text}");
}

#[tokio::test]
async fn bad_rows_are_refused_and_the_running_table_stays() {
    let cp = ControlPlane::new().await;
    let acme = cp.tenant("badacme", 1, "open").await;
    let silo = cp.start().await;
    let health = &silo.ctx.catalog.health;
    let version = silo.ctx.router.load().version;
    let slug = &acme.slug;

    for (set, words) in [
        (
            r#"limit_overrides = '{"max_conns": 3}'"#,
            &["limit_overrides", "max_conns"][..],
        ),
        (
            r#"limit_overrides = '{"burst": 0}'"#,
            &["limit_overrides.burst", "at least 1"][..],
        ),
        (
            "db_password_encrypted = UNHEX(CONCAT('01', REPEAT('00', 40)))",
            &["db_password_encrypted", "cannot be decrypted"][..],
        ),
        (
            "db_password_encrypted = NULL",
            &["db_password_encrypted", "NULL"][..],
        ),
    ] {
        let rejected = health.rejected.load(Ordering::Relaxed);
        cp.set_tenant(slug, &format!("limit_overrides = NULL, {set}"))
            .await;
        eventually!("the refusal", {
            health.rejected.load(Ordering::Relaxed) > rejected
        });
        assert_eq!(silo.ctx.router.load().version, version, "{set}");
        silo.assert_serves(&acme).await;
        // A forced reload says why, naming table, row and column.
        let Err(CatalogError::Rejected(why)) = silo.ctx.catalog.reload(&silo.ctx).await else {
            panic!("{set}: not refused");
        };
        assert!(why.contains(&format!("tenants row '{slug}'")), "{why}");
        for w in words {
            assert!(why.contains(w), "{why} should mention {w}");
        }
        assert!(!why.contains(&acme.db.password));
    }

    // Repaired: installed at the next poll.
    let sealed = to_hex(&cp.key.seal(acme.db.password.as_bytes()).unwrap());
    cp.set_tenant(slug, &format!("db_password_encrypted = UNHEX('{sealed}')"))
        .await;
    eventually!("the repaired row", {
        silo.ctx.router.load().version > version
    });
    silo.assert_serves(&acme).await;
    // Each bad version once by the poll, once by the forced reload.
    assert_eq!(health.rejected.load(Ordering::Relaxed), 8);
}

/// Runs `silo serve` on `config` and returns its exit status and stderr;
/// for configurations that must not start.
async fn serve_fails(config: &str, key: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silo.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_silo"));
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("SILO_SECRET_KEY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(key) = key {
        command.env("SILO_SECRET_KEY", key);
    }
    let out = bounded("silo serve", command.output())
        .await
        .expect("silo runs");
    assert!(!out.status.success(), "silo started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_missing_or_wrong_key_or_schema_stops_the_start() {
    let cp = ControlPlane::new().await;
    let acme = cp.tenant("keyacme", 1, "open").await;
    let url = cp.url(cp.server.addr());
    let without_file = cp.toml_without_key_file(&url);
    assert!(!without_file.contains("secret_key_file"));

    let stderr = serve_fails(&without_file, None).await;
    assert!(stderr.contains("SILO_SECRET_KEY"), "{stderr}");

    let stderr = serve_fails(&without_file, Some("not-a-key")).await;
    assert!(stderr.contains("expected 32 bytes"), "{stderr}");
    assert!(!stderr.contains("not-a-key"), "{stderr}");

    let wrong = SecretKey::generate().unwrap().to_base64();
    let stderr = serve_fails(&without_file, Some(&wrong)).await;
    assert!(
        stderr.contains(&format!("tenants row '{}'", acme.slug))
            && stderr.contains("db_password_encrypted")
            && stderr.contains("cannot be decrypted"),
        "{stderr}"
    );
    for secret in [wrong.as_str(), acme.db.password.as_str()] {
        assert!(!stderr.contains(secret), "a secret leaked: {stderr}");
    }

    // A database never initialised.
    let empty = unique("cpempty");
    let mut root = cp.server.root_conn().await;
    root.query_drop(format!("CREATE DATABASE {empty}"))
        .await
        .unwrap();
    let config = cp.toml(&cp_url(cp.server.addr(), &empty));
    let stderr = serve_fails(&config, None).await;
    assert!(stderr.contains("silo control-plane init"), "{stderr}");

    // Nothing listening there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stderr = serve_fails(
        &cp.toml(&format!(
            "mysql://root:Sup3rS3cretPw@{closed}/{}?prefer_socket=false",
            cp.name
        )),
        None,
    )
    .await;
    assert!(stderr.contains("control plane"), "{stderr}");
    assert!(stderr.contains(&closed.to_string()), "{stderr}");
    assert!(!stderr.contains("Sup3rS3cretPw"), "{stderr}");
}

#[tokio::test]
async fn the_binary_serves_a_tenant_whose_password_it_encrypted() {
    let cp = ControlPlane::new().await;
    let silo_bin = env!("CARGO_BIN_EXE_silo");
    let key = bounded(
        "generate-key",
        tokio::process::Command::new(silo_bin)
            .args(["secret", "generate-key"])
            .output(),
    )
    .await
    .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();

    let slug = unique("binacme").replace('_', "");
    let db = provision_tenant(&servers()[0], &slug).await;
    let mut encrypt = tokio::process::Command::new(silo_bin)
        .args(["secret", "encrypt"])
        .env("SILO_SECRET_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = encrypt.stdin.take().unwrap();
        stdin
            .write_all(format!("{}\n", db.password).as_bytes())
            .await
            .unwrap();
    }
    let sealed = bounded("encrypt", encrypt.wait_with_output())
        .await
        .unwrap();
    assert!(sealed.status.success());
    let sealed = String::from_utf8(sealed.stdout).unwrap().trim().to_string();
    assert!(sealed.bytes().all(|b| b.is_ascii_hexdigit()), "{sealed}");
    assert!(!sealed.contains(&to_hex(db.password.as_bytes())));
    cp.tenant_row(&slug, 1, "open", &db, &sealed).await;
    cp.user(&slug, "app", APP_PASSWORD).await;

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("silo.toml");
    let text = cp
        .toml_without_key_file(&cp.url(cp.server.addr()))
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).unwrap();
    let _child = tokio::process::Command::new(silo_bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("SILO_SECRET_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let opts: Opts = tcp_opts(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .user(Some(format!("app.{slug}")))
        .pass(Some(APP_PASSWORD))
        .into();
    let mut conn = None;
    for _ in 0..200 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), Conn::new(opts.clone())).await
        {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = conn.expect("silo serves the tenant within 10 s");
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
}

#[tokio::test]
async fn changes_are_written_through_with_their_event() {
    let cp = ControlPlane::new().await;
    cp.plan("gold", "weight = 5").await;
    let acme = cp.tenant("wtacme", 1, "open").await;
    let silo = cp.start().await;
    let catalog = &silo.ctx.catalog;

    let applied = catalog
        .apply(
            &silo.ctx,
            Change::TenantPlan {
                tenant: acme.slug.clone(),
                plan: "gold".into(),
            },
            "admin@127.0.0.1",
        )
        .await
        .expect("applied");
    assert_eq!(applied.persistence, "written to the control-plane database");
    // Already live when apply returns.
    assert_eq!(applied.version, silo.ctx.router.load().version);
    assert_eq!(route_plan(&silo, &acme.slug).as_deref(), Some("gold"));
    let stored: Option<String> = cp.stored(&acme.slug, "subscription_plan").await;
    assert_eq!(stored.as_deref(), Some("gold"));
    let mut conn = cp.conn().await;
    let event: Option<(String, String, String)> = conn
        .exec_first(
            "SELECT e.event_type, e.performed_by, e.event_data FROM tenant_events e \
             JOIN tenants t USING (tenant_id) WHERE t.tenant_slug = ? ORDER BY e.event_id DESC",
            (&acme.slug,),
        )
        .await
        .unwrap();
    let (event_type, by, data) = event.expect("an event row");
    assert_eq!(event_type, "plan_changed");
    assert_eq!(by, "admin@127.0.0.1");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["subscription_plan"]["old"], "open");
    assert_eq!(data["subscription_plan"]["new"], "gold");

    catalog
        .apply(
            &silo.ctx,
            Change::TenantStatus {
                tenant: acme.slug.clone(),
                status: TenantStatus::Suspended,
            },
            "admin@127.0.0.1",
        )
        .await
        .expect("applied");
    catalog
        .apply(
            &silo.ctx,
            Change::BackendDraining {
                backend: 2,
                draining: true,
            },
            "ops",
        )
        .await
        .expect("applied");
    let draining: Option<bool> = cp.value("SELECT draining FROM backends WHERE id = 2").await;
    assert_eq!(draining, Some(true));

    // Refused before anything is written.
    let events_before: Option<u64> = cp.value("SELECT COUNT(*) FROM tenant_events").await;
    let err = catalog
        .apply(
            &silo.ctx,
            Change::TenantPlan {
                tenant: acme.slug.clone(),
                plan: "platinum".into(),
            },
            "ops",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("unknown plan 'platinum'"), "{err}");
    let events_after: Option<u64> = cp.value("SELECT COUNT(*) FROM tenant_events").await;
    assert_eq!(events_before, events_after);
    assert_eq!(events_after, Some(3));

    let events = catalog.recent_events(Some(&acme.slug), 10).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["suspended", "plan_changed"]);
    assert!(events[0].id > events[1].id);
    assert!(
        events[0].detail.contains("status set to suspended"),
        "{events:?}"
    );
    assert_eq!(events[0].tenant.as_deref(), Some(acme.slug.as_str()));
    assert!(events[0].at_unix_ms > 1_600_000_000_000);
    let all = catalog.recent_events(None, 2).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].event_type, "backend_drained");
    assert_eq!(all[0].tenant, None);
}

#[tokio::test]
async fn usage_is_flushed_and_the_daily_quota_survives_a_restart() {
    let cp = ControlPlane::new().await;
    cp.plan("quota", "max_queries_per_day = 8").await;
    let acme = cp.tenant("useacme", 2, "quota").await;
    let usage = format!(
        "SELECT m.query_count FROM tenant_usage_metrics m JOIN tenants t USING (tenant_id) \
         WHERE t.tenant_slug = '{}' AND m.metric_date = UTC_DATE()",
        acme.slug
    );

    let first = cp.start().await;
    let mut conn = first.app(&acme).await;
    for _ in 0..3 {
        conn.query_drop("DO 1").await.unwrap();
    }
    let counted = first.live(&acme).queries_today();
    // mysql_async's own query at connect counts too.
    assert_eq!(counted, 4);
    eventually!("the flush", {
        cp.value::<u64>(&usage).await == Some(counted)
    });
    drop(conn);
    drop(first);

    let second = cp.start().await;
    assert_eq!(
        second.live(&acme).queries_today(),
        counted,
        "seeded at start"
    );
    let mut conn = second.app(&acme).await;
    let mut ok = 0;
    let err = loop {
        match conn.query_drop("DO 1").await {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 8, "the quota is not enforced");
    };
    assert_eq!(error_code(&err), Some(1226), "{err}");
    assert!(err.to_string().contains("max_queries_per_day"), "{err}");
    // 4 before the restart, this connection's own query, then 3 more.
    assert_eq!(ok, 3);
    eventually!("the second flush", {
        cp.value::<u64>(&usage).await == Some(8)
    });
}

#[tokio::test]
async fn admin_changes_are_written_to_the_control_plane() {
    let cp = ControlPlane::new().await;
    cp.plan(
        "tight",
        "weight = 1, queue_timeout_ms = 2000, max_client_connections = 1",
    )
    .await;
    let acme = cp.tenant("adminwt", 1, "open").await;
    let silo = cp.start_with_admin().await;
    let mut admin = silo.connect(silo.admin_opts("admin", "admin-pass")).await;

    bounded(
        "SET TENANT … PLAN",
        admin.query_drop(format!("SET TENANT {} PLAN tight", acme.slug)),
    )
    .await
    .expect("plan changed");
    let info = admin.info().to_string();
    assert!(
        info.contains("written to the control-plane database"),
        "{info}"
    );
    let stored: Option<String> = cp.stored(&acme.slug, "subscription_plan").await;
    assert_eq!(stored.as_deref(), Some("tight"));
    // In force when the OK arrives: the plan's single client is enforced.
    let _first = silo.app(&acme).await;
    let refused = login_error(&silo, &format!("app.{}", acme.slug), APP_PASSWORD).await;
    assert_eq!(error_code(&refused), Some(1226), "{refused}");

    bounded(
        "SUSPEND TENANT",
        admin.query_drop(format!("SUSPEND TENANT {}", acme.slug)),
    )
    .await
    .expect("suspended");
    let status: Option<String> = cp.stored(&acme.slug, "status").await;
    assert_eq!(status.as_deref(), Some("suspended"));

    let events: Vec<(String, String)> = bounded(
        "SHOW EVENTS",
        admin.query(format!("SHOW EVENTS FOR {}", acme.slug)),
    )
    .await
    .expect("events")
    .into_iter()
    .map(|row: mysql_async::Row| {
        let event: String = row.get("event").expect("event column");
        let by: String = row.get("performed_by").expect("performed_by column");
        (event, by)
    })
    .collect();
    assert_eq!(
        events,
        vec![
            ("suspended".to_string(), "admin@127.0.0.1".to_string()),
            ("plan_changed".to_string(), "admin@127.0.0.1".to_string()),
        ],
        "newest first, from tenant_events"
    );
    let rows: Option<u64> = cp
        .value(&format!(
            "SELECT COUNT(*) FROM tenant_events e JOIN tenants t USING (tenant_id) \
             WHERE t.tenant_slug = '{}' AND e.performed_by = 'admin@127.0.0.1'",
            acme.slug
        ))
        .await;
    assert_eq!(rows, Some(2));
}

/// Two instances sharing one control plane (scale-out): a change made
/// through one's admin port reaches the other at its next poll.
#[tokio::test]
async fn two_instances_share_the_control_plane() {
    let cp = ControlPlane::new().await;
    let acme = cp.tenant("twoinst", 1, "open").await;
    let first = cp.start_with_admin().await;
    let second = cp.start().await;
    first.assert_serves(&acme).await;
    second.assert_serves(&acme).await;
    let mut admin = first.connect(first.admin_opts("admin", "admin-pass")).await;
    bounded(
        "SUSPEND TENANT",
        admin.query_drop(format!("SUSPEND TENANT {}", acme.slug)),
    )
    .await
    .expect("suspended");
    eventually!(
        "the second instance sees the suspension",
        route_status(&second, &acme.slug) == Some(TenantStatus::Suspended)
    );
    let refused = login_error(&second, &format!("app.{}", acme.slug), APP_PASSWORD).await;
    assert_eq!(error_code(&refused), Some(1045), "{refused}");
    assert!(refused.to_string().contains("suspended"), "{refused}");
}
