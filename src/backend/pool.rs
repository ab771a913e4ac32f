//! One pool per backend server, shared by every tenant on it and capped by
//! the backend's `max_connections`.
//!
//! Leasing for a tenant prefers an idle connection already logged in as the
//! tenant's database user with the client's profile; else opens one under
//! the cap; else re-authenticates an idle connection of another tenant with
//! COM_CHANGE_USER; else waits, bounded by the lease timeout. The lock is a
//! std mutex around tiny sections, never held across an await: all I/O
//! (connect, change user, reset) happens outside it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;

use super::connection::{Identity, Profile};
use super::pins::PinCounters;
use super::{BackendConn, BackendError};
use crate::config::{BackendConfig, Config};

/// Counters kept per backend for operators, tests and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub idle: AtomicUsize,
    pub in_use: AtomicUsize,
    pub waiting: AtomicUsize,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub errors: AtomicU64,
    /// Leases and pins of the sessions served by this backend.
    pub pins: PinCounters,
}

/// A point-in-time copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSnapshot {
    pub idle: usize,
    pub in_use: usize,
    pub waiting: usize,
    pub opened: u64,
    pub closed: u64,
    pub errors: u64,
}

#[derive(Debug)]
struct PoolState {
    /// Idle connections, least recently used first.
    idle: VecDeque<BackendConn>,
    /// Connections that exist or are being opened: idle, leased, resetting.
    open: u32,
}

#[derive(Debug)]
pub struct Pool {
    backend: BackendConfig,
    max_lifetime: Duration,
    reset_timeout: Duration,
    state: Mutex<PoolState>,
    /// Woken when a connection returns to idle or a slot frees up.
    returned: Notify,
    pub stats: PoolStats,
}

enum Grant {
    Matching(BackendConn),
    Other(BackendConn),
    NewSlot,
}

impl Pool {
    pub fn new(backend: BackendConfig, config: &Config) -> Arc<Self> {
        let pool = Arc::new(Pool {
            backend,
            max_lifetime: config.pool.max_lifetime(),
            reset_timeout: config.pool.reset_timeout(),
            state: Mutex::new(PoolState {
                idle: VecDeque::new(),
                open: 0,
            }),
            returned: Notify::new(),
            stats: PoolStats::default(),
        });
        spawn_reaper(Arc::downgrade(&pool));
        pool
    }

    pub fn backend(&self) -> &BackendConfig {
        &self.backend
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let s = &self.stats;
        PoolSnapshot {
            idle: s.idle.load(Ordering::Relaxed),
            in_use: s.in_use.load(Ordering::Relaxed),
            waiting: s.waiting.load(Ordering::Relaxed),
            opened: s.opened.load(Ordering::Relaxed),
            closed: s.closed.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection logged in as `identity` with `profile`, in the
    /// identity's database.
    ///
    /// # Errors
    /// [`BackendError::LeaseTimeout`] when the pool stays full for `timeout`;
    /// connect and login failures otherwise.
    ///
    /// # Cancel safety
    /// Cancel-safe: a connection being opened or re-authenticated when the
    /// future is dropped is closed and its slot freed.
    pub async fn lease(
        self: &Arc<Self>,
        identity: &Identity,
        profile: Profile,
        timeout: Duration,
    ) -> Result<Lease, BackendError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        // Fast path, the common case in transaction mode: an idle connection
        // is there, no need to register as a waiter first.
        let mut ready = self.take(identity, profile);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            let taken = match ready.take() {
                Some(grant) => Some(grant),
                None => {
                    // Registered before looking, so a return in between wakes us.
                    returned.as_mut().enable();
                    self.take(identity, profile)
                }
            };
            let grant = match taken {
                // Capabilities are fixed at connect: a connection of another
                // profile gives its slot to a new one.
                Some(Grant::Other(conn)) if conn.profile != profile => {
                    drop(conn);
                    self.stats.closed.fetch_add(1, Ordering::Relaxed);
                    Some(Grant::NewSlot)
                }
                grant => grant,
            };
            let mut lease = match grant {
                Some(Grant::Matching(conn) | Grant::Other(conn)) => self.lease_of(conn, true),
                Some(Grant::NewSlot) => {
                    let slot = Slot {
                        pool: Some(self.clone()),
                    };
                    // Boxed: rare, and large next to the fast path.
                    match Box::pin(BackendConn::connect(&self.backend, identity, profile)).await {
                        Ok(conn) => {
                            self.stats.opened.fetch_add(1, Ordering::Relaxed);
                            slot.keep();
                            self.lease_of(conn, false)
                        }
                        Err(e) => {
                            self.stats.errors.fetch_add(1, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                None => {
                    let _waiting = Counted::new(&self.stats.waiting);
                    if tokio::time::timeout_at(deadline, returned).await.is_err() {
                        return Err(BackendError::LeaseTimeout {
                            waited_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                    continue;
                }
            };
            match lease.prepare(identity).await {
                Ok(()) => return Ok(lease),
                // A stale idle connection: drop it and try again.
                Err(e) if lease.reused && e.is_disconnect() => {
                    lease.discard();
                    continue;
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    lease.discard();
                    return Err(e);
                }
            }
        }
    }

    fn take(&self, identity: &Identity, profile: Profile) -> Option<Grant> {
        let mut state = self.lock();
        // Most recently used first: its server-side caches are warm. One
        // already watched by this worker's event loop saves moving it.
        let worker = crate::net::worker();
        let fits = |c: &BackendConn| c.profile == profile && c.matches(identity);
        let found = state
            .idle
            .iter()
            .rposition(|c| fits(c) && c.worker() == worker)
            .or_else(|| state.idle.iter().rposition(fits));
        if let Some(i) = found {
            let conn = state.idle.remove(i)?;
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
            return Some(Grant::Matching(conn));
        }
        if state.open < self.backend.max_connections {
            state.open += 1;
            return Some(Grant::NewSlot);
        }
        let conn = state.idle.pop_front()?;
        self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
        Some(Grant::Other(conn))
    }

    fn lease_of(self: &Arc<Self>, conn: BackendConn, reused: bool) -> Lease {
        self.stats.in_use.fetch_add(1, Ordering::Relaxed);
        Lease {
            conn: Some(conn),
            pool: self.clone(),
            reused,
        }
    }

    /// Returns a clean connection to the idle list, or closes it when it has
    /// lived too long.
    fn checkin(&self, mut conn: BackendConn) {
        if conn.age() >= self.max_lifetime {
            self.close(conn);
            return;
        }
        conn.idle_since = Instant::now();
        {
            let mut state = self.lock();
            state.idle.push_back(conn);
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
        }
        self.returned.notify_one();
    }

    fn close(&self, conn: BackendConn) {
        drop(conn);
        self.free_slot();
    }

    fn free_slot(&self) {
        {
            let mut state = self.lock();
            state.open = state.open.saturating_sub(1);
        }
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.returned.notify_one();
    }

    /// Closes idle connections past the idle timeout or the max lifetime.
    fn reap(&self) {
        let idle_timeout = self.backend.idle_timeout();
        let expired: Vec<BackendConn> = {
            let mut state = self.lock();
            let (keep, expired): (Vec<_>, Vec<_>) =
                state.idle.drain(..).partition(|c: &BackendConn| {
                    c.idle_since.elapsed() < idle_timeout && c.age() < self.max_lifetime
                });
            state.idle = keep.into();
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
            expired
        };
        for conn in expired {
            self.close(conn);
        }
    }

    /// Opens connections currently held (idle, leased or resetting).
    pub fn open_connections(&self) -> u32 {
        self.lock().open
    }
}

/// Ends by itself when the pool is dropped.
fn spawn_reaper(pool: Weak<Pool>) {
    let Some(strong) = pool.upgrade() else {
        return;
    };
    let every = (strong.backend.idle_timeout().min(strong.max_lifetime) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    drop(strong);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match pool.upgrade() {
                Some(pool) => pool.reap(),
                None => return,
            }
        }
    });
}

/// A slot counted in `open` for a connection being opened; freed on drop
/// unless the connection was opened.
struct Slot {
    pool: Option<Arc<Pool>>,
}

impl Slot {
    fn keep(mut self) {
        self.pool = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.free_slot();
        }
    }
}

/// Increments a gauge for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend connection leased to one client. Dropping a lease without
/// [`Lease::release`] closes the connection: its session state is unknown.
#[derive(Debug)]
pub struct Lease {
    conn: Option<BackendConn>,
    pool: Arc<Pool>,
    /// Came from the idle list (as opposed to freshly opened).
    pub reused: bool,
}

impl Lease {
    pub fn conn(&mut self) -> &mut BackendConn {
        // Invariant: `conn` is Some until release/discard consume the lease.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("lease used after release"))
    }

    pub fn conn_ref(&self) -> Option<&BackendConn> {
        self.conn.as_ref()
    }

    /// Brings a granted connection to the identity. Its session (variables,
    /// schema) is the leaseholder's to bring in line ([`BackendConn::sync`]).
    async fn prepare(&mut self, identity: &Identity) -> Result<(), BackendError> {
        let conn = self.conn();
        if !conn.is_alive() {
            return Err(BackendError::Closed);
        }
        conn.adopt()?;
        if !conn.matches(identity) {
            // Boxed: rare, and large next to the fast path.
            return Box::pin(conn.change_user(identity)).await;
        }
        Ok(())
    }

    /// The pool the connection came from.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Gives back a connection whose session holds nothing silo cannot
    /// replay (`transaction` mode): no reset, straight to the idle list.
    pub fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.stats.in_use.fetch_sub(1, Ordering::Relaxed);
            self.pool.checkin(conn);
        }
    }

    /// Gives the connection back: it is reset with COM_RESET_CONNECTION in
    /// the background (bounded by the reset timeout) so no state of this
    /// client reaches the next, then returns to the idle list.
    pub fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let reset = tokio::time::timeout(pool.reset_timeout, conn.reset()).await;
            pool.stats.in_use.fetch_sub(1, Ordering::Relaxed);
            match reset {
                Ok(Ok(())) => pool.checkin(conn),
                _ => {
                    pool.stats.errors.fetch_add(1, Ordering::Relaxed);
                    pool.close(conn);
                }
            }
        });
    }

    /// Closes a connection that broke or whose state cannot be trusted.
    pub fn discard(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.stats.in_use.fetch_sub(1, Ordering::Relaxed);
            self.pool.close(conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.close_now();
    }
}

/// All pools, keyed by backend id. Pools outlive route-table swaps.
#[derive(Debug, Default)]
pub struct Pools {
    pools: DashMap<u32, Arc<Pool>>,
}

impl Pools {
    /// Creates a pool per configured backend. Needs a running tokio runtime
    /// (each pool spawns its idle reaper).
    pub fn new(config: &Config) -> Self {
        let pools = DashMap::new();
        for b in &config.backends {
            pools.insert(b.id, Pool::new(b.clone(), config));
        }
        Self { pools }
    }

    pub fn get(&self, backend: u32) -> Option<Arc<Pool>> {
        self.pools.get(&backend).map(|p| p.value().clone())
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools.iter().map(|p| p.value().clone()).collect()
    }
}
