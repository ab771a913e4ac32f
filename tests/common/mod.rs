//! Shared test support: real `mariadbd` servers ([`mariadb`]), a fault relay
//! ([`faults`]), and silo instances started in-process on port 0.
#![allow(dead_code)]

pub mod faults;
pub mod mariadb;
pub mod raw;
pub mod sha2;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder};
use silo::config::Config;
use silo::frontend::Context;
use silo::server::Server;

pub use mariadb::{TenantDb, error_code, provision_tenant, servers, unique};

/// Upper bound for any single client operation in a test.
pub const STEP: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds or `within` passes; whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    // Bounded by `deadline`.
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `fut` for at most [`STEP`], panicking with `what` otherwise.
pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

pub const APP_PASSWORD: &str = "app-pass";

/// A tenant provisioned on a real server plus its silo declaration.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub slug: String,
    pub backend: u32,
    pub db: TenantDb,
    pub status: &'static str,
    pub plan: String,
}

/// Builds a silo configuration around the shared servers.
#[derive(Debug, Clone)]
pub struct Setup {
    backends: Vec<(u32, SocketAddr, u32)>,
    /// Extra `[[plans]]` bodies (the "starter" plan is always there).
    plans: Vec<String>,
    draining: std::collections::HashSet<u32>,
    tenants: Vec<Tenant>,
    /// (username, tenant slug, password)
    users: Vec<(String, String, String)>,
    /// (username, tenant slug, MariaDB `*HEX` password hash)
    hashed_users: Vec<(String, String, String)>,
    order: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
    lease_timeout_ms: u64,
    mode: &'static str,
    idle_timeout_ms: u64,
    max_lifetime_ms: u64,
    /// `[admin]` user and password, listening on a free port.
    admin: Option<(String, String)>,
    /// `[metrics] max_tenant_labels`, on a free port; `None`: no metrics port.
    metrics: Option<usize>,
    /// `[health]` (interval_ms, timeout_ms, down_after); silo's defaults without.
    health: Option<(u64, u64, u32)>,
    /// `[shutdown] deadline_ms`; silo's default without.
    shutdown_deadline_ms: Option<u64>,
}

impl Setup {
    /// Backends 1 and 2 are the two shared servers, 20 connections each.
    pub fn new() -> Self {
        let s = servers();
        Self {
            backends: vec![(1, s[0].addr(), 20), (2, s[1].addr(), 20)],
            plans: Vec::new(),
            draining: Default::default(),
            tenants: Vec::new(),
            users: Vec::new(),
            hashed_users: Vec::new(),
            order: None,
            tls: None,
            lease_timeout_ms: 5_000,
            mode: "transaction",
            idle_timeout_ms: 60_000,
            max_lifetime_ms: 3_600_000,
            admin: None,
            metrics: None,
            health: None,
            shutdown_deadline_ms: None,
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on a free port
    /// ([`Silo::metrics_addr`]), with at most `max_tenant_labels` tenants
    /// labelled by name.
    pub fn metrics(mut self, max_tenant_labels: usize) -> Self {
        self.metrics = Some(max_tenant_labels);
        self
    }

    /// `[health]`: check every `interval_ms`, a check failing after
    /// `timeout_ms`, down after `down_after` failures in a row.
    pub fn health(mut self, interval_ms: u64, timeout_ms: u64, down_after: u32) -> Self {
        self.health = Some((interval_ms, timeout_ms, down_after));
        self
    }

    /// `[shutdown] deadline_ms`.
    pub fn shutdown_deadline_ms(mut self, ms: u64) -> Self {
        self.shutdown_deadline_ms = Some(ms);
        self
    }

    /// Replaces backend `id` (e.g. to point it at a fault relay or to cap it).
    pub fn backend(mut self, id: u32, addr: SocketAddr, max_connections: u32) -> Self {
        self.backends.retain(|b| b.0 != id);
        self.backends.push((id, addr, max_connections));
        self
    }

    /// Turns the admin port on (`[admin]` on a free port) for `user`.
    pub fn admin(mut self, user: &str, password: &str) -> Self {
        self.admin = Some((user.to_string(), password.to_string()));
        self
    }

    pub fn order(mut self, order: &str) -> Self {
        self.order = Some(order.to_string());
        self
    }

    pub fn tls(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.tls = Some((cert, key));
        self
    }

    pub fn max_lifetime_ms(mut self, ms: u64) -> Self {
        self.max_lifetime_ms = ms;
        self
    }

    pub fn idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = ms;
        self
    }

    /// Adds a plan: `name` with the given limits (TOML lines), unlimited
    /// rates and a 2 s queue timeout unless `body` says otherwise.
    pub fn plan(mut self, name: &str, body: &str) -> Self {
        let mut plan = format!("name = \"{name}\"\n{body}\n");
        for (key, default) in [
            ("weight", "1"),
            ("max_client_connections", "\"unlimited\""),
            ("max_backend_leases", "\"unlimited\""),
            ("queue_timeout_ms", "2000"),
            ("max_queries_per_second", "\"unlimited\""),
            ("burst", "\"unlimited\""),
            ("max_query_time_ms", "\"unlimited\""),
            ("max_queries_per_day", "\"unlimited\""),
        ] {
            if !body.contains(&format!("{key} =")) {
                plan += &format!("{key} = {default}\n");
            }
        }
        self.plans.push(plan);
        self
    }

    /// Puts tenant `slug` on `plan` (takes effect at start or [`Silo::reload`]).
    pub fn set_plan(&mut self, slug: &str, plan: &str) {
        self.tenant_mut(slug).plan = plan.to_string();
    }

    /// Routes tenant `slug` to `backend` (takes effect at [`Silo::reload`]).
    pub fn set_backend(&mut self, slug: &str, backend: u32) {
        self.tenant_mut(slug).backend = backend;
    }

    /// Marks backend `id` as draining (takes effect at start or [`Silo::reload`]).
    pub fn drain(&mut self, id: u32, on: bool) {
        if on {
            self.draining.insert(id);
        } else {
            self.draining.remove(&id);
        }
    }

    /// Sets tenant `slug`'s status (takes effect at start or [`Silo::reload`]).
    pub fn set_status(&mut self, slug: &str, status: &'static str) {
        self.tenant_mut(slug).status = status;
    }

    fn tenant_mut(&mut self, slug: &str) -> &mut Tenant {
        self.tenants
            .iter_mut()
            .find(|t| t.slug == slug)
            .expect("a tenant of this setup")
    }

    /// `[pool] mode`: "transaction" (the default) or "session".
    pub fn mode(mut self, mode: &'static str) -> Self {
        self.mode = mode;
        self
    }

    pub fn lease_timeout_ms(mut self, ms: u64) -> Self {
        self.lease_timeout_ms = ms;
        self
    }

    /// Provisions a fresh tenant on backend `backend` (1 or 2) with user
    /// `app` / [`APP_PASSWORD`].
    pub async fn tenant(&mut self, prefix: &str, backend: u32) -> Tenant {
        self.tenant_with_status(prefix, backend, "active").await
    }

    pub async fn tenant_with_status(
        &mut self,
        prefix: &str,
        backend: u32,
        status: &'static str,
    ) -> Tenant {
        // No '_': a slug is also a DNS label when it travels in TLS SNI.
        let slug = unique(prefix).replace('_', "");
        let server = &servers()[(backend - 1) as usize];
        let db = provision_tenant(server, &slug).await;
        let tenant = Tenant {
            slug: slug.clone(),
            backend,
            db,
            status,
            plan: "starter".into(),
        };
        self.tenants.push(tenant.clone());
        self.users
            .push(("app".into(), slug, APP_PASSWORD.to_string()));
        tenant
    }

    pub fn user(mut self, username: &str, tenant: &str, password: &str) -> Self {
        self.users
            .push((username.into(), tenant.into(), password.into()));
        self
    }

    /// Declares `username` for `tenant` from now on (see [`Silo::reload`]).
    pub fn add_user(&mut self, username: &str, tenant: &str, password: &str) {
        self.remove_user(username, tenant);
        self.users
            .push((username.into(), tenant.into(), password.into()));
    }

    /// Withdraws `username` of `tenant` (see [`Silo::reload`]).
    pub fn remove_user(&mut self, username: &str, tenant: &str) {
        self.users
            .retain(|(u, t, _)| !(u == username && t == tenant));
    }

    /// A user declared by `password_hash` (MariaDB's `PASSWORD()` form) of
    /// `password`, so silo never learns the clear text from its config.
    pub fn user_with_hash(mut self, username: &str, tenant: &str, password: &str) -> Self {
        use sha1::{Digest, Sha1};
        let stage2 = Sha1::digest(Sha1::digest(password.as_bytes()));
        let hex: String = stage2.iter().map(|b| format!("{b:02X}")).collect();
        self.hashed_users
            .push((username.into(), tenant.into(), format!("*{hex}")));
        self
    }

    pub fn toml(&self) -> String {
        let mut t = String::from("[listen]\nmysql = \"127.0.0.1:0\"\n");
        t += &format!(
            "[pool]\nmode = \"{}\"\nlease_timeout_ms = {}\nreset_timeout_ms = 2000\nmax_lifetime_ms = {}\n",
            self.mode, self.lease_timeout_ms, self.max_lifetime_ms
        );
        if let Some((user, password)) = &self.admin {
            t += &format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\nuser = \"{user}\"\npassword = \"{password}\"\n"
            );
        }
        if let Some(max) = self.metrics {
            t += &format!("[metrics]\nlisten = \"127.0.0.1:0\"\nmax_tenant_labels = {max}\n");
        }
        if let Some(order) = &self.order {
            t += &format!("[identification]\norder = {order}\n");
        }
        if let Some((cert, key)) = &self.tls {
            t += &format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            );
        }
        if let Some((interval, timeout, down_after)) = self.health {
            t += &format!(
                "[health]\ninterval_ms = {interval}\ntimeout_ms = {timeout}\ndown_after = {down_after}\n"
            );
        }
        if let Some(deadline) = self.shutdown_deadline_ms {
            t += &format!("[shutdown]\ndeadline_ms = {deadline}\n");
        }
        for (id, addr, max) in &self.backends {
            t += &format!(
                "[[backends]]\nid = {id}\nhost = \"{}\"\nport = {}\nmax_connections = {max}\nconnect_timeout_ms = 2000\nidle_timeout_ms = {}\ndraining = {}\n",
                addr.ip(),
                addr.port(),
                self.idle_timeout_ms,
                self.draining.contains(id)
            );
        }
        t += r#"[[plans]]
name = "starter"
weight = 2
max_client_connections = "unlimited"
max_backend_leases = "unlimited"
queue_timeout_ms = 2000
max_queries_per_second = "unlimited"
burst = "unlimited"
max_query_time_ms = "unlimited"
max_queries_per_day = "unlimited"
"#;
        for plan in &self.plans {
            t += &format!("[[plans]]\n{plan}\n");
        }
        for tenant in &self.tenants {
            t += &format!(
                "[[tenants]]\nslug = \"{}\"\nstatus = \"{}\"\nplan = \"{}\"\nbackend = {}\ndatabase = \"{}\"\ndb_user = \"{}\"\ndb_password = \"{}\"\n",
                tenant.slug,
                tenant.status,
                tenant.plan,
                tenant.backend,
                tenant.db.database,
                tenant.db.user,
                tenant.db.password
            );
        }
        for (user, tenant, password) in &self.users {
            t += &format!(
                "[[users]]\nusername = \"{user}\"\ntenant = \"{tenant}\"\npassword = \"{password}\"\n"
            );
        }
        for (user, tenant, hash) in &self.hashed_users {
            t += &format!(
                "[[users]]\nusername = \"{user}\"\ntenant = \"{tenant}\"\npassword_hash = \"{hash}\"\n"
            );
        }
        t
    }

    /// Starts silo in this test's runtime on a free port.
    pub async fn start(&self) -> Silo {
        let config = Config::from_toml(&self.toml()).expect("test config is valid");
        serve(Server::bind(config).await.expect("silo binds"))
    }

    /// Starts silo in this test's runtime with its configuration in a file
    /// (the catalog's file source: `RELOAD` and SIGHUP re-read it).
    pub async fn start_from_file(&self) -> (Silo, ConfigFile) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("silo.toml");
        std::fs::write(&path, self.toml()).expect("config written");
        let config = Config::load(&path).expect("test config is valid");
        let catalog = silo::catalog::Catalog::file(path.clone(), config);
        let server = Server::bind_with(catalog).await.expect("silo binds");
        (serve(server), ConfigFile { path, _dir: dir })
    }
}

/// The configuration file of a silo started by [`Setup::start_from_file`].
pub struct ConfigFile {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    /// Writes `text` in its place (an operator's edit; picked up at reload).
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("config written");
    }
}

/// Runs a bound server in this test's runtime until the returned [`Silo`]
/// is dropped.
pub fn serve(server: Server) -> Silo {
    let addr = server.local_addr();
    let admin_addr = server.admin_addr();
    let metrics_addr = server.metrics_addr();
    let ctx = server.context();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Silo {
        addr,
        admin_addr,
        metrics_addr,
        ctx,
        _stop: stop,
    }
}

/// The `silo` binary run as its own process on a free port, its
/// configuration in a file the test may rewrite; killed when dropped.
pub struct SiloProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl SiloProcess {
    /// Writes `setup`'s configuration, on this process's port, to its file.
    pub fn write_config(&self, setup: &Setup) {
        write_config_file(setup, self.addr, &self.config);
    }

    /// Stops the process and returns what it logged (spawned with a log level).
    pub async fn stop_and_read_logs(mut self) -> String {
        self.child.start_kill().expect("silo stops");
        self.read_logs().await
    }

    /// Sends SIGTERM, as a service manager stopping silo would.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("silo still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Whether the process's MySQL listener is open.
    pub fn is_listening(&self) -> bool {
        listening(self.addr.port())
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("silo's exit status"),
            Err(_) => panic!("silo did not exit within {within:?}"),
        }
    }

    /// What a stopped process logged (spawned with a log level).
    pub async fn read_logs(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut stderr = self.child.stderr.take().expect("spawned with a log level");
        let mut logs = String::new();
        bounded("silo's logs", stderr.read_to_string(&mut logs))
            .await
            .expect("logs read");
        logs
    }

    /// mysql_async options for `user` through this process.
    pub fn opts(&self, user: &str, password: &str) -> OptsBuilder {
        mariadb::tcp_opts(self.addr)
            .user(Some(user.to_string()))
            .pass(Some(password.to_string()))
    }
}

fn write_config_file(setup: &Setup, addr: SocketAddr, path: &std::path::Path) {
    let text = setup
        .toml()
        .replace("mysql = \"127.0.0.1:0\"", &format!("mysql = \"{addr}\""));
    std::fs::write(path, text).expect("config written");
}

impl Setup {
    /// Runs `silo serve` on this setup and waits until it listens. With
    /// `log`, `RUST_LOG` is set to it and stderr is piped for the test to
    /// read; without, logs are discarded.
    pub async fn spawn(&self, log: Option<&str>) -> SiloProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("silo.toml");
        write_config_file(self, addr, &config);
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_silo"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match log {
            Some(level) => command.env("RUST_LOG", level).stderr(Stdio::piped()),
            None => command.stderr(Stdio::null()),
        };
        let process = SiloProcess {
            child: command.spawn().expect("silo starts"),
            addr,
            config,
            _dir: dir,
        };
        for _ in 0..200 {
            if listening(port) {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("silo did not listen on {} within 5 s", process.addr);
    }
}

/// Whether a socket listens on 127.0.0.1:`port`, read from the kernel's
/// table rather than by connecting (a probe would be a login attempt in
/// the logs the tests read).
fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
        })
    })
}

/// A running silo; it stops accepting when dropped.
pub struct Silo {
    pub addr: SocketAddr,
    /// The admin port, when the setup turned it on.
    pub admin_addr: Option<SocketAddr>,
    /// The metrics port, when the setup asked for one.
    pub metrics_addr: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Silo {
    /// mysql_async options for `user` through silo, staying on TCP.
    pub fn opts(&self, user: &str, password: &str) -> OptsBuilder {
        mariadb::tcp_opts(self.addr)
            .user(Some(user.to_string()))
            .pass(Some(password.to_string()))
    }

    /// Connects as `app.<slug>`.
    pub async fn app(&self, tenant: &Tenant) -> Conn {
        self.connect(self.opts(&format!("app.{}", tenant.slug), APP_PASSWORD))
            .await
    }

    /// A byte-level client logged in as `app.<slug>`.
    pub async fn raw_app(&self, tenant: &Tenant) -> raw::RawClient {
        raw::RawClient::login(self.addr, &format!("app.{}", tenant.slug), APP_PASSWORD)
            .await
            .unwrap_or_else(|err| panic!("raw login refused: {:?}", raw::err_code(&err)))
    }

    /// Asserts that `tenant` is served: its `items` table has its 3 rows.
    pub async fn assert_serves(&self, tenant: &Tenant) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.app(tenant).await;
        let n: Option<u64> = bounded(
            "count items",
            conn.query_first("SELECT COUNT(*) FROM items"),
        )
        .await
        .expect("count items");
        assert_eq!(n, Some(3), "tenant {} not served", tenant.slug);
    }

    pub async fn connect(&self, opts: impl Into<Opts>) -> Conn {
        bounded("connecting through silo", Conn::new(opts.into()))
            .await
            .expect("login through silo")
    }

    /// Tries to connect and returns the login error.
    pub async fn connect_err(&self, opts: impl Into<Opts>) -> mysql_async::Error {
        match bounded("connecting through silo", Conn::new(opts.into())).await {
            Ok(_) => panic!("login unexpectedly succeeded"),
            Err(e) => e,
        }
    }

    /// Swaps in the route table `setup` describes now, as an operator's
    /// reload would; returns the new table version.
    pub fn reload(&self, setup: &Setup) -> u64 {
        let config = Config::from_toml(&setup.toml()).expect("test config is valid");
        self.ctx
            .catalog
            .install(&self.ctx, config)
            .expect("the table installs")
    }

    /// The tenant's live usage.
    pub fn live(&self, tenant: &Tenant) -> Arc<silo::limits::TenantLive> {
        self.ctx
            .tenants
            .of(&silo::routing::TenantId(tenant.slug.as_str().into()))
    }

    pub fn pool(&self, backend: u32) -> Arc<silo::backend::Pool> {
        self.ctx.pools.get(backend).expect("backend pool exists")
    }

    /// Runs the `mariadb` command-line client against silo.
    pub async fn cli(&self, user: &str, password: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--batch", "--skip-column-names"];
        all.extend_from_slice(args);
        mariadb_cli(self.addr, user, password, &all).await
    }

    /// mysql_async options for `user` on the admin port.
    pub fn admin_opts(&self, user: &str, password: &str) -> OptsBuilder {
        mariadb::tcp_opts(self.admin_addr.expect("the admin port is on"))
            .user(Some(user.to_string()))
            .pass(Some(password.to_string()))
    }

    /// Runs the `mariadb` command-line client against the admin port.
    pub async fn admin_cli(
        &self,
        user: &str,
        password: &str,
        args: &[&str],
    ) -> std::process::Output {
        let addr = self.admin_addr.expect("the admin port is on");
        mariadb_cli(addr, user, password, args).await
    }
}

/// The standard output of a command that must have succeeded (its standard
/// error otherwise, in the panic).
pub fn stdout_of_success(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the `mariadb` command-line client against `addr`, bounded by [`STEP`].
async fn mariadb_cli(
    addr: SocketAddr,
    user: &str,
    password: &str,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.arg("--protocol=TCP")
        .arg(format!("-h{}", addr.ip()))
        .arg(format!("-P{}", addr.port()))
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    bounded("mariadb client", cmd.output())
        .await
        .expect("mariadb client runs")
}

/// Self-signed certificate for `*.db.example.com`, written to a temp dir.
pub fn tls_files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["*.db.example.com".into(), "localhost".into()])
            .expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (dir, cert, key)
}
