//! Real `mariadbd` servers for integration tests: two per test process, started once
//! and shared through a process-wide static, plus per-test tenant provisioning
//! (database, user, grants, rows) so tests running in parallel never share objects.
//!
//! Isolation between tenants is MariaDB's own (ARCHITECTURE.md decision 2): each
//! tenant user has `ALL` on its own database only.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// Number of servers every test binary gets.
const SERVER_COUNT: usize = 2;
/// Upper bound on `mariadb-install-db` plus both servers becoming ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts per server when the port picked turns out to be taken.
const PORT_ATTEMPTS: u32 = 5;
/// Upper bound on any single SQL round trip done by these helpers.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// One running `mariadbd`, shared by every test of the process.
#[derive(Debug)]
pub struct Backend {
    /// TCP port on 127.0.0.1 (the server listens nowhere else).
    pub port: u16,
    /// The server's own unix socket.
    pub socket: PathBuf,
    pub datadir: PathBuf,
    /// `--log-error` file, for diagnostics.
    pub error_log: PathBuf,
    /// Process id of `mariadbd`, for SIGSTOP/SIGCONT style faults. Never SIGKILL a
    /// shared server: every other test of the process uses it.
    pub pid: u32,
}

/// Database, user and password of one provisioned tenant.
#[derive(Clone)]
pub struct TenantDb {
    pub database: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for TenantDb {
    /// Never shows the password: test failures print `Debug` output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl TenantDb {
    /// Options to log in as this tenant directly on `backend` (TCP, default
    /// database set, `LOCAL INFILE` off unless the caller adds a handler).
    pub fn direct_opts(&self, backend: &Backend) -> Opts {
        tcp_opts(backend.addr())
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(Some(self.database.clone()))
            .into()
    }
}

impl Backend {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `root` (no password) over TCP to 127.0.0.1.
    pub fn root_opts(&self) -> Opts {
        tcp_opts(self.addr()).user(Some("root")).into()
    }

    /// A fresh `root` connection; panics after [`CONNECT_TIMEOUT`].
    pub async fn root_conn(&self) -> Conn {
        connect(self.root_opts(), &format!("root@127.0.0.1:{}", self.port)).await
    }
}

/// TCP options that stay on TCP: mysql_async otherwise reconnects through the
/// server's unix socket when it sees a loopback address (`prefer_socket`), which
/// would bypass silo and the fault relay.
pub fn tcp_opts(addr: SocketAddr) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .prefer_socket(false)
}

/// Opens a connection within [`CONNECT_TIMEOUT`]; `what` names it in the panic
/// message (never put a password in it).
pub async fn connect(opts: Opts, what: &str) -> Conn {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => panic!("connecting as {what}: {err}"),
        Err(_) => panic!("connecting as {what}: no answer within {CONNECT_TIMEOUT:?}"),
    }
}

/// The MySQL error code of a server error (`ERR` packet), if `err` is one.
pub fn error_code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(server) => Some(server.code),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Shared servers
// ---------------------------------------------------------------------------

/// A failed start is remembered too, so every test fails fast with the same
/// message instead of each retrying a 60 s startup.
static SERVERS: OnceLock<Result<[Backend; SERVER_COUNT], String>> = OnceLock::new();

/// The two shared servers, started on first use.
///
/// Synchronous, so it works from any tokio runtime or none: the start runs on its
/// own thread (with its own small runtime for the login check) and this call
/// blocks until both servers accept a real login, or panics with the tail of the
/// error log after [`STARTUP_DEADLINE`].
///
/// The servers die with the test process: a watchdog shell, holding the read end
/// of a pipe whose only writer is this process, kills them and removes their
/// directory when the pipe reports EOF, however the process ended.
pub fn servers() -> &'static [Backend; SERVER_COUNT] {
    let started = SERVERS.get_or_init(|| {
        let handle = std::thread::Builder::new()
            .name("mariadbd-start".into())
            .spawn(start_servers)
            .expect("spawning the mariadbd start thread");
        match handle.join() {
            Ok(result) => result,
            Err(panic) => Err(panic_message(panic.as_ref())),
        }
    });
    match started {
        Ok(servers) => servers,
        Err(msg) => panic!("shared mariadbd servers unavailable: {msg}"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "start thread panicked".to_string()
    }
}

struct Binaries {
    mariadbd: PathBuf,
    install_db: PathBuf,
}

fn find_binary(names: &[&str]) -> Result<PathBuf, String> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    // Non-root PATHs often lack the sbin directories where mariadbd lives.
    for extra in ["/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "none of {names:?} found in PATH or sbin directories; install the \
         distribution's mariadb-server and mariadb-client packages"
    ))
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective uid; avoids a libc dependency.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Options shared by `mariadb-install-db` and `mariadbd`: small InnoDB so that
/// startup is fast on 2 cores. The data is throwaway, so durability is relaxed.
fn engine_args() -> Vec<String> {
    [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=8M",
        "--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
        "--innodb-flush-log-at-trx-commit=2",
        "--innodb-doublewrite=0",
        "--innodb-buffer-pool-load-at-startup=0",
        "--innodb-buffer-pool-dump-at-shutdown=0",
        "--skip-log-bin",
        "--performance-schema=OFF",
        "--skip-name-resolve",
        // Debian's packaged defaults (50-server.cnf), which --no-defaults skips.
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn start_servers() -> Result<[Backend; SERVER_COUNT], String> {
    let began = Instant::now();
    let deadline = began + STARTUP_DEADLINE;
    let bins = Binaries {
        mariadbd: find_binary(&["mariadbd", "mysqld"])?,
        install_db: find_binary(&["mariadb-install-db", "mysql_install_db"])?,
    };
    let root = tempfile::Builder::new()
        .prefix("silo-mariadb-")
        .tempdir()
        .map_err(|e| format!("creating the servers' temp dir: {e}"))?
        .keep();
    // The watchdog first: from here on, whatever we start dies with this process.
    spawn_watchdog(&root)?;

    let template = root.join("template");
    install_template(&bins, &root, &template, deadline)?;

    let mut pending: Vec<Starting> = (0..SERVER_COUNT)
        .map(|index| Starting {
            index,
            attempt: 0,
            child: None,
            port: 0,
            datadir: root.join(format!("s{index}")),
            socket: root.join(format!("s{index}.sock")),
            error_log: PathBuf::new(),
        })
        .collect();
    for server in &mut pending {
        if server.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(format!(
                "unix socket path {} is too long; set TMPDIR to a shorter directory",
                server.socket.display()
            ));
        }
        if let Err(msg) = server.launch(&bins, &root, &template) {
            kill_all(&mut pending);
            return Err(msg);
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the start runtime: {e}"))?;
    let mut ready = [false; SERVER_COUNT];
    // Bounded by `deadline`.
    while !ready.iter().all(|r| *r) {
        if Instant::now() > deadline {
            let mut msg = format!("mariadbd did not become ready within {STARTUP_DEADLINE:?}");
            for server in pending.iter().filter(|s| !ready[s.index]) {
                msg.push_str(&server.describe());
            }
            kill_all(&mut pending);
            return Err(msg);
        }
        for server in &mut pending {
            if ready[server.index] {
                continue;
            }
            match server.poll(&bins, &root, &template, &runtime) {
                Ok(true) => ready[server.index] = true,
                Ok(false) => {}
                Err(msg) => {
                    kill_all(&mut pending);
                    return Err(msg);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The template was only needed for retries.
    let _ = fs::remove_dir_all(&template);
    let backends: Vec<Backend> = pending
        .into_iter()
        .map(|mut s| {
            let pid = s.child.as_ref().map_or(0, Child::id);
            // Dropping a `Child` neither kills nor waits; the watchdog owns its end.
            drop(s.child.take());
            Backend {
                port: s.port,
                socket: s.socket,
                datadir: s.datadir,
                error_log: s.error_log,
                pid,
            }
        })
        .collect();
    for backend in &backends {
        runtime.block_on(drop_anonymous_users(backend))?;
    }
    eprintln!(
        "silo tests: {SERVER_COUNT} mariadbd ready in {:?} (ports {:?}, dir {})",
        began.elapsed(),
        backends.iter().map(|b| b.port).collect::<Vec<_>>(),
        root.display()
    );
    backends
        .try_into()
        .map_err(|_| "server count mismatch".to_string())
}

/// Runs a shell that waits for EOF on its stdin (a pipe only this process writes),
/// then SIGKILLs every `mariadbd` whose command line names `root` and removes
/// `root`. It runs in its own process group so that a Ctrl-C aimed at the test
/// run does not kill it before it has cleaned up.
fn spawn_watchdog(root: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
dir=$1
# Returns at EOF: the test process, the only writer of this pipe, has exited.
while read -r _line; do :; done
sweep() {
    found=0
    for p in /proc/[0-9]*; do
        read -r comm < "$p/comm" 2>/dev/null || continue
        case $comm in mariadbd|mysqld) ;; *) continue ;; esac
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
        case $cmd in
            *"$dir/"*) found=1; kill -KILL "${p#/proc/}" 2>/dev/null ;;
        esac
    done
}
i=0
while [ $i -lt 50 ]; do
    sweep
    [ $found -eq 0 ] && break
    i=$((i + 1))
    sleep 0.1
done
rm -rf "$dir"
"#;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("silo-mariadb-watchdog")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the mariadbd watchdog: {e}"))?;
    // Keep the write end open until this process exits: the kernel closes it then,
    // which is the watchdog's signal. (std creates it close-on-exec, so no other
    // child inherits it.)
    std::mem::forget(child.stdin.take());
    // Never reaped; it outlives us by design.
    std::mem::forget(child);
    Ok(())
}

fn install_template(
    bins: &Binaries,
    root: &Path,
    template: &Path,
    deadline: Instant,
) -> Result<(), String> {
    let log_path = root.join("install-db.log");
    let log =
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cloning {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(&bins.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", template.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db");
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = cmd
        .args(engine_args())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("running {}: {e}", bins.install_db.display()))?;
    // Bounded by `deadline`.
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "{} failed ({status}); its output ends with:\n{}",
                    bins.install_db.display(),
                    tail(&log_path, 40)
                ));
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {STARTUP_DEADLINE:?}; output:\n{}",
                    bins.install_db.display(),
                    tail(&log_path, 40)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for mariadb-install-db: {e}")),
        }
    }
}

/// One server on its way up.
struct Starting {
    index: usize,
    attempt: u32,
    child: Option<Child>,
    port: u16,
    datadir: PathBuf,
    socket: PathBuf,
    error_log: PathBuf,
}

impl Starting {
    /// Fresh copy of the template, a newly picked port, and a new `mariadbd`.
    fn launch(&mut self, bins: &Binaries, root: &Path, template: &Path) -> Result<(), String> {
        self.attempt += 1;
        if self.datadir.exists() {
            fs::remove_dir_all(&self.datadir)
                .map_err(|e| format!("removing {}: {e}", self.datadir.display()))?;
        }
        copy_dir(template, &self.datadir).map_err(|e| {
            format!(
                "copying {} to {}: {e}",
                template.display(),
                self.datadir.display()
            )
        })?;
        self.port = free_port()?;
        self.error_log = root.join(format!("s{}.{}.err", self.index, self.attempt));
        let mut cmd = Command::new(&bins.mariadbd);
        // --no-defaults must come first.
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", self.datadir.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!(
                "--pid-file={}",
                root.join(format!("s{}.pid", self.index)).display()
            ))
            .arg(format!("--log-error={}", self.error_log.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .args(engine_args())
            .arg("--max-connections=500")
            .arg("--max-allowed-packet=64M")
            .arg("--local-infile=1")
            // Fault tests abort many handshakes from 127.0.0.1; without this the
            // host cache would block the address after max_connect_errors (100).
            .arg("--host-cache-size=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("running {}: {e}", bins.mariadbd.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `Ok(true)` once the server accepts a real root login.
    fn poll(
        &mut self,
        bins: &Binaries,
        root: &Path,
        template: &Path,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<bool, String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("server s{} has no process", self.index));
        };
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                let log = tail(&self.error_log, 30);
                let port_taken = log.contains("Address already in use") || log.contains("Bind on");
                if port_taken && self.attempt < PORT_ATTEMPTS {
                    self.child = None;
                    self.launch(bins, root, template)?;
                    return Ok(false);
                }
                return Err(format!(
                    "mariadbd s{} exited ({status}) on attempt {}; error log {}:\n{log}",
                    self.index,
                    self.attempt,
                    self.error_log.display()
                ));
            }
            Err(e) => return Err(format!("waiting for mariadbd s{}: {e}", self.index)),
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return Ok(false);
        }
        let opts: Opts = tcp_opts(addr).user(Some("root")).into();
        let login = runtime.block_on(async {
            let conn = tokio::time::timeout(Duration::from_secs(2), Conn::new(opts)).await;
            match conn {
                Ok(Ok(mut conn)) => {
                    let ok = conn.query_drop("SELECT 1").await.is_ok();
                    let _ = conn.disconnect().await;
                    ok
                }
                _ => false,
            }
        });
        Ok(login)
    }

    fn describe(&self) -> String {
        format!(
            "\n--- s{} (port {}, attempt {}), error log {}:\n{}",
            self.index,
            self.port,
            self.attempt,
            self.error_log.display(),
            tail(&self.error_log, 30)
        )
    }
}

fn kill_all(servers: &mut [Starting]) {
    for server in servers {
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Binds 127.0.0.1:0 and releases it. Racy by nature; callers retry on a clash.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("picking a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("picking a free port: {e}"))
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last `lines` lines of a log file (reads at most its last 64 KiB).
fn tail(path: &Path, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// `mariadb-install-db` of some versions adds anonymous users, which would shadow
/// `u_x@'%'` for local connections. 10.11 with these flags adds none; this keeps
/// it that way whatever the version. Then creates the user silo's health
/// checks log in as.
async fn drop_anonymous_users(backend: &Backend) -> Result<(), String> {
    let mut conn = backend.root_conn().await;
    let hosts: Vec<String> = sql(
        conn.query("SELECT Host FROM mysql.user WHERE User = ''"),
        "listing anonymous users",
    )
    .await;
    for host in hosts {
        let host = host.replace('\'', "''");
        sql(
            conn.query_drop(format!("DROP USER ''@'{host}'")),
            "dropping an anonymous user",
        )
        .await;
    }
    // What silo's health checks log in as (README "Backend health checks").
    sql(
        conn.query_drop("CREATE USER IF NOT EXISTS 'silo_health'@'%'"),
        "creating the health-check user",
    )
    .await;
    let _ = conn.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Per-test provisioning
// ---------------------------------------------------------------------------

/// Awaits one SQL round trip within [`SQL_TIMEOUT`], panicking with `what` (never
/// the SQL text, which may hold a password) and the server's error.
async fn sql<T>(
    fut: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    what: &str,
) -> T {
    match tokio::time::timeout(SQL_TIMEOUT, fut).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what}: {err}"),
        Err(_) => panic!("{what}: no answer within {SQL_TIMEOUT:?}"),
    }
}

/// 64 unpredictable bits from std alone: `RandomState` is seeded from the OS.
fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// Longest name [`unique`] returns, so that `u_<name>` fits MariaDB's 80-char
/// user names and also the 32 chars of MySQL and older tooling.
pub const UNIQUE_MAX_LEN: usize = 30;

/// A short name unique in this process and across runs: `<prefix>_<pid><random><n>`,
/// lowercase letters, digits and `_` only, at most [`UNIQUE_MAX_LEN`] chars. Safe
/// unquoted as a MariaDB identifier and user name.
pub fn unique(prefix: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let random = base36(random_u64() % (36u64.pow(4)));
        format!("{}{random:0>4}", base36(u64::from(std::process::id())))
    });
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(10)
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert(0, 'x');
    }
    let n = base36(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut name = format!("{clean}_{run}{n}");
    if name.len() > UNIQUE_MAX_LEN {
        // Keep the unique tail, shorten the prefix.
        let tail = format!("_{run}{n}");
        let keep = UNIQUE_MAX_LEN.saturating_sub(tail.len()).max(1);
        name = format!("{}{tail}", &clean[..keep.min(clean.len())]);
    }
    name
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..24)
        .map(|_| ALPHABET[(random_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn check_slug(slug: &str) {
    let ok = !slug.is_empty()
        && slug.len() <= UNIQUE_MAX_LEN
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    assert!(
        ok,
        "tenant slug {slug:?} must be 1..={UNIQUE_MAX_LEN} chars of [a-z0-9_]; use unique()"
    );
}

/// Creates database `t_<slug>` with table `items` (rows 1..=3 named
/// `'<slug> one'`, `'<slug> two'`, `'<slug> three'`) and user `u_<slug>@'%'`
/// with a random password and `ALL` on that database only.
///
/// `ALL` on the database covers `LOAD DATA LOCAL INFILE` into its tables (needs
/// `INSERT`, and the server runs with `local_infile=1`); `KILL [QUERY]` of the
/// user's own threads needs no privilege in MariaDB.
pub async fn provision_tenant(backend: &Backend, slug: &str) -> TenantDb {
    check_slug(slug);
    let tenant = TenantDb {
        database: format!("t_{slug}"),
        user: format!("u_{slug}"),
        password: random_password(),
    };
    provision_copy(backend, slug, &tenant).await;
    tenant
}

/// Creates `tenant`'s database, user (same password) and rows on `backend`
/// too, as a tenant moved between servers would find them.
pub async fn provision_copy(backend: &Backend, slug: &str, tenant: &TenantDb) {
    let (db, user) = (&tenant.database, &tenant.user);
    let mut conn = backend.root_conn().await;
    sql(
        conn.query_drop(format!("CREATE DATABASE `{db}`")),
        &format!("creating database {db}"),
    )
    .await;
    sql(
        conn.query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{}'",
            tenant.password
        )),
        &format!("creating user {user}"),
    )
    .await;
    sql(
        conn.query_drop(format!("GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%'")),
        &format!("granting {db} to {user}"),
    )
    .await;
    sql(
        conn.query_drop(format!(
            "CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(64))"
        )),
        &format!("creating {db}.items"),
    )
    .await;
    sql(
        conn.query_drop(format!(
            "INSERT INTO `{db}`.items VALUES (1, '{slug} one'), (2, '{slug} two'), (3, '{slug} three')"
        )),
        &format!("filling {db}.items"),
    )
    .await;
    let _ = conn.disconnect().await;
}

/// Rows of `information_schema.PROCESSLIST` for `user` (every host), as seen by
/// root. Threads already killed but not yet gone still count.
pub async fn processlist_count(backend: &Backend, user: &str) -> usize {
    let mut conn = backend.root_conn().await;
    let count: Option<u64> = sql(
        conn.exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
        ),
        &format!("counting {user}'s connections"),
    )
    .await;
    let _ = conn.disconnect().await;
    usize::try_from(count.unwrap_or(0)).expect("count fits usize")
}

/// As root, `KILL CONNECTION` every thread of `user`, then waits (bounded) until
/// those threads have left the processlist. Returns how many were killed.
/// Connections the user opens meanwhile are left alone.
pub async fn kill_user_connections(backend: &Backend, user: &str) -> usize {
    const GONE_DEADLINE: Duration = Duration::from_secs(10);
    let mut conn = backend.root_conn().await;
    let ids: Vec<u64> = sql(
        conn.exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
        ),
        &format!("listing {user}'s connections"),
    )
    .await;
    for id in &ids {
        let result = tokio::time::timeout(
            SQL_TIMEOUT,
            conn.query_drop(format!("KILL CONNECTION {id}")),
        )
        .await;
        match result {
            Ok(Ok(())) => {}
            // ER_NO_SUCH_THREAD: it ended on its own meanwhile.
            Ok(Err(err)) if error_code(&err) == Some(1094) => {}
            Ok(Err(err)) => panic!("killing connection {id} of {user}: {err}"),
            Err(_) => panic!("killing connection {id} of {user}: no answer within {SQL_TIMEOUT:?}"),
        }
    }
    let deadline = Instant::now() + GONE_DEADLINE;
    // Bounded by `deadline`.
    loop {
        let live: Vec<u64> = sql(
            conn.exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (user,),
            ),
            &format!("listing {user}'s connections"),
        )
        .await;
        if !live.iter().any(|id| ids.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "killed connections of {user} still listed after {GONE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.disconnect().await;
    ids.len()
}
