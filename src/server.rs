//! Wiring: builds the shared handles from a configuration, binds the
//! listener and runs it. The only module that knows all the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::admin::AdminAuth;
use crate::backend::Pools;
use crate::catalog::Catalog;
use crate::config::{BackendConfig, Config};
use crate::frontend::caching_sha2::{RsaKeys, Sha2Auth};
use crate::frontend::registry::Registry;
use crate::frontend::stream::read_packet_exact;
use crate::frontend::{Context, listener, tls};
use crate::metrics::Metrics;
use crate::protocol::handshake;
use crate::routing::{RouteTable, Router};

/// Greeting version when no backend answers at start.
const FALLBACK_VERSION: &str = "5.5.5-10.11.0-MariaDB-silo";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("auth.rsa_private_key: {0}")]
    Auth(String),
    #[error("admin: {0}")]
    Admin(String),
    #[error("cannot start a worker: {0}")]
    Runtime(std::io::Error),
}

pub struct Server {
    listener: TcpListener,
    ctx: Arc<Context>,
    admin: Option<AdminPort>,
    metrics_addr: Option<SocketAddr>,
    /// How long sessions get to finish after the listener closes.
    shutdown_deadline: Duration,
}

/// The running admin port: its address, and the handle whose drop stops it
/// and its sessions.
struct AdminPort {
    addr: SocketAddr,
    _stop: tokio::sync::watch::Sender<()>,
}

impl Server {
    /// Builds the route table and pools, probes the backends' version and
    /// binds the MySQL listener. Needs a running tokio runtime.
    ///
    /// # Errors
    /// The listener cannot be bound, or the TLS files are unusable.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Self::bind_with(Catalog::fixed(config)).await
    }

    /// As [`Server::bind`], serving the configuration of `catalog`, whose
    /// source (file or control plane) is then watched.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub async fn bind_with(catalog: Catalog) -> Result<Server, StartError> {
        let config = catalog.current();
        let tls = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(
                tls::load_server_config(t).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let listener = bind(config.listen.mysql).map_err(|source| StartError::Bind {
            addr: config.listen.mysql,
            source,
        })?;
        let admin = match &config.admin {
            Some(admin) => {
                let auth = AdminAuth::from_config(admin).map_err(StartError::Admin)?;
                let listener = bind(admin.listen).map_err(|source| StartError::Bind {
                    addr: admin.listen,
                    source,
                })?;
                Some((listener, auth))
            }
            None => None,
        };
        let metrics_listener = match &config.metrics {
            Some(m) => Some(bind_metrics(m.listen).map_err(|source| StartError::Bind {
                addr: m.listen,
                source,
            })?),
            None => None,
        };
        let server_version = probe_version(&config.backends).await;
        let ctx = Arc::new(Context {
            router: Arc::new(Router::new(RouteTable::from_config(&config, 1))),
            pools: Arc::new(Pools::new(&config)),
            registry: Arc::new(Registry::default()),
            tls,
            tls_required: config.tls.as_ref().is_some_and(|t| t.required),
            server_version,
            lease_timeout: config.pool.lease_timeout(),
            tenants: Arc::default(),
            statement_cache_size: config.pool.statement_cache_size,
            sha2: Sha2Auth::new(RsaKeys::from_config(&config.auth).map_err(StartError::Auth)?),
            catalog: Arc::new(catalog),
            metrics: Arc::new(Metrics::from_config(config.metrics.as_ref())),
        });
        ctx.catalog.spawn_watchers(Arc::downgrade(&ctx));
        tokio::spawn(crate::frontend::enforce::watch_routes(Arc::downgrade(&ctx)));
        let admin = admin.map(|(listener, auth)| start_admin(listener, auth, &ctx));
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                info!(addr = ?addr, "metrics listening (/metrics, /healthz, /readyz)");
                tokio::spawn(crate::metrics::http::serve(listener, Arc::downgrade(&ctx)));
                addr
            }
            None => None,
        };
        Ok(Server {
            listener,
            ctx,
            admin,
            metrics_addr,
            shutdown_deadline: config.shutdown.deadline(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Where the admin port listens, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The metrics port's address, when `[metrics]` is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shared handles (route table, pools, sessions), for tests and
    /// operator surfaces.
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// Serves clients on the current runtime until `shutdown` resolves,
    /// then shuts down gracefully (see [`drain`]); returns once every
    /// session has ended.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        self.run_with_workers(Vec::new(), shutdown).await;
    }

    async fn run_with_workers(
        self,
        workers: Vec<listener::Handoff>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        info!(addr = %self.local_addr(), version = %self.ctx.server_version, threads = workers.len() + 1, "silo listening");
        let Server {
            listener,
            ctx,
            admin,
            metrics_addr: _,
            shutdown_deadline,
        } = self;
        // The admin port stops with the client listener.
        let _admin = admin;
        ctx.metrics.set_accepting(true);
        listener::serve(listener, ctx.clone(), workers, shutdown).await;
        ctx.metrics.set_accepting(false);
        drain(&ctx, shutdown_deadline).await;
        ctx.catalog.finish(&ctx).await;
    }
}

/// How often the shutdown looks whether the sessions are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Sessions closed at the deadline are gone once their tasks are dropped,
/// which takes one turn of their thread's event loop.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The graceful part of a shutdown, once the listener is closed: each
/// session ends as soon as it waits for a command holding no backend state
/// (in-flight statements finish, open transactions can still commit); at
/// `deadline` the sessions left are closed.
async fn drain(ctx: &Context, deadline: Duration) {
    let open = ctx.registry.len();
    info!(
        sessions = open,
        deadline_ms = deadline.as_millis() as u64,
        "shutting down: listener closed, letting sessions finish"
    );
    ctx.registry.begin_shutdown();
    let until = tokio::time::Instant::now() + deadline;
    if !sessions_gone(ctx, until).await {
        let closed = ctx.registry.close_all();
        warn!(
            sessions = closed,
            "shutdown deadline reached: closing the sessions still open"
        );
        if !sessions_gone(ctx, tokio::time::Instant::now() + CLOSE_GRACE).await {
            warn!(
                sessions = ctx.registry.len(),
                "sessions did not end after being closed"
            );
        }
    }
    info!("all client sessions ended");
}

/// Waits until no session is registered, or `until`; returns whether none is.
async fn sessions_gone(ctx: &Context, until: tokio::time::Instant) -> bool {
    // Bounded by `until`.
    loop {
        if ctx.registry.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Serves the admin port on the current runtime until the returned handle
/// is dropped.
fn start_admin(listener: TcpListener, auth: AdminAuth, ctx: &Arc<Context>) -> AdminPort {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (stop, stopped) = tokio::sync::watch::channel(());
    tokio::spawn(crate::admin::serve(
        listener,
        ctx.clone(),
        Arc::new(auth),
        stopped,
    ));
    info!(addr = %addr, "admin port listening");
    AdminPort { addr, _stop: stop }
}

/// Runs silo on `threads` threads until `shutdown` resolves, blocking the
/// caller; `on_bound` learns the listener's address once it is bound.
///
/// # Performance
/// Each thread runs its own single-threaded runtime and owns the sockets of
/// the clients it was handed, so a relayed query is read, forwarded and
/// answered without waking another thread. A work-stealing runtime moved
/// tasks between cores on every readiness event, which on this kind of
/// machine cost more than the relay itself.
///
/// # Errors
/// The runtime cannot be built, or [`Server::bind`] fails.
pub fn run_threaded(
    catalog: Catalog,
    threads: usize,
    on_bound: impl FnOnce(SocketAddr, Arc<Context>),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let runtime = single_threaded_runtime().map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let server = Server::bind_with(catalog).await?;
        on_bound(server.local_addr(), server.context());
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        for i in 1..threads.max(1) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let ctx = server.context();
            let worker_runtime = single_threaded_runtime().map_err(StartError::Runtime)?;
            let join = std::thread::Builder::new()
                .name(format!("silo-worker-{i}"))
                .spawn(move || {
                    crate::net::set_worker(i);
                    worker_runtime.block_on(listener::work(ctx, rx));
                })
                .map_err(StartError::Runtime)?;
            workers.push(tx);
            joins.push(join);
        }
        // The workers' runtimes live on (their sessions with them) until
        // the shutdown is over: the acceptor holds clones of the channels.
        server.run_with_workers(workers.clone(), shutdown).await;
        // Every session has ended: dropping the hand-off channels ends the
        // workers' loops, and with them their runtimes.
        drop(workers);
        for join in joins {
            let _ = join.join();
        }
        Ok(())
    })
}

/// Installs the route table of `config` (a reloaded file, a control-plane
/// refresh, an operator's change): pools are created for new backends,
/// draining flags applied, and the table swapped in whole.
///
/// # Errors
/// None today; kept fallible so a source can be told why a table was not
/// installed.
pub fn reload(ctx: &Context, config: &Config) -> Result<u64, String> {
    for backend in &config.backends {
        match ctx.pools.get(backend.id) {
            Some(pool) if pool.backend().same_server(backend) => {}
            Some(_) => {
                ctx.pools.replace(backend, config);
                tracing::info!(
                    backend = backend.id,
                    host = %backend.host,
                    port = backend.port,
                    max_connections = backend.max_connections,
                    "backend changed: new connections use it; connections in use finish on the old settings"
                );
            }
            None => {
                ctx.pools.ensure(backend, config);
                tracing::info!(backend = backend.id, host = %backend.host, port = backend.port, "backend added");
            }
        }
    }
    let mut version = 0;
    ctx.router.update(|current| {
        version = current.version + 1;
        RouteTable::from_config(config, version)
    });
    Ok(version)
}

fn single_threaded_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Binds with a deep accept queue: thousands of clients may connect at once
/// when an application fleet restarts.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The metrics port: a plain listener (scrapers are few).
fn bind_metrics(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// The greeting version in the backend's style (`5.5.5-10.11.6-MariaDB-silo`):
/// clients key behaviour on it.
async fn probe_version(backends: &[BackendConfig]) -> String {
    for b in backends {
        match tokio::time::timeout(
            b.connect_timeout().min(Duration::from_secs(2)),
            read_greeting(b),
        )
        .await
        {
            Ok(Ok(version)) => return silo_version(&version),
            Ok(Err(e)) => {
                warn!(backend = b.id, error = %e, "backend did not answer the version probe")
            }
            Err(_) => warn!(backend = b.id, "backend version probe timed out"),
        }
    }
    FALLBACK_VERSION.to_string()
}

async fn read_greeting(b: &BackendConfig) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((b.host.as_str(), b.port)).await?;
    let (_, payload) = read_packet_exact(&mut stream, 4096)
        .await
        .map_err(std::io::Error::other)?;
    handshake::parse_greeting(&payload)
        .map(|g| g.version)
        .map_err(std::io::Error::other)
}

fn silo_version(backend: &str) -> String {
    let bare = backend.strip_prefix("5.5.5-").unwrap_or(backend);
    let number: String = bare
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if number.is_empty() {
        return FALLBACK_VERSION.to_string();
    }
    format!("5.5.5-{number}-MariaDB-silo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_follows_the_backend() {
        assert_eq!(
            silo_version("5.5.5-10.11.19-MariaDB-0+deb12u1"),
            "5.5.5-10.11.19-MariaDB-silo"
        );
        assert_eq!(silo_version("11.4.2-MariaDB"), "5.5.5-11.4.2-MariaDB-silo");
        assert_eq!(silo_version("garbage"), FALLBACK_VERSION);
    }
}
