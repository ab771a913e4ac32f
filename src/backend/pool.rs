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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{Notify, oneshot};

use super::connection::{Identity, Profile};
use super::fair::{FairQueue, WaitKey};
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

/// What a waiting lease is handed when the pool frees something.
// Moved once per hand-off into a oneshot: boxing the connection would cost
// an allocation each time for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Handoff {
    /// A connection given back (any tenant's: re-authenticated if needed).
    Conn(BackendConn),
    /// A freed slot: the waiter opens a connection in it.
    Slot,
}

#[derive(Debug)]
struct PoolState {
    /// Idle connections, least recently used first.
    idle: VecDeque<BackendConn>,
    /// Connections that exist or are being opened: idle, leased, resetting.
    open: u32,
    /// Leases waiting for a full pool, served fairly between tenants.
    waiters: FairQueue<oneshot::Sender<Handoff>>,
}

#[derive(Debug)]
pub struct Pool {
    backend: BackendConfig,
    max_lifetime: Duration,
    reset_timeout: Duration,
    state: Mutex<PoolState>,
    /// Out of rotation (see [`Pool::set_draining`]).
    draining: AtomicBool,
    /// Last verdict of the health checker; a pool starts healthy.
    healthy: AtomicBool,
    /// Asks the health checker for a check now.
    health_kick: Arc<Notify>,
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
                waiters: FairQueue::default(),
            }),
            draining: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            health_kick: Arc::new(Notify::new()),
            stats: PoolStats::default(),
        });
        pool.set_draining(pool.backend.draining);
        spawn_reaper(Arc::downgrade(&pool));
        super::health::spawn(
            Arc::downgrade(&pool),
            pool.health_kick.clone(),
            config.health.clone(),
        );
        pool
    }

    pub fn backend(&self) -> &BackendConfig {
        &self.backend
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records the health checker's verdict; returns the previous one.
    /// Marked down, the backend is out of rotation as when draining, but
    /// leases fail with [`BackendError::Down`]: idle connections are closed
    /// now (the server is gone or about to be), waiting leases refused.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let was = self.healthy.swap(healthy, Ordering::AcqRel);
        if was && !healthy {
            self.evict();
        }
        was
    }

    /// Takes the backend out of rotation (or back in): no new leases, idle
    /// connections closed now, connections given back closed; leases held
    /// (pinned sessions) finish. Waiting leases are refused.
    pub fn set_draining(&self, on: bool) {
        if self.draining.swap(on, Ordering::AcqRel) == on || !on {
            return;
        }
        self.evict();
    }

    /// Out of rotation: what waits is refused and idle connections closed.
    fn evict(&self) {
        let idle: Vec<BackendConn> = {
            let mut state = self.lock();
            // Dropping the senders tells the waiters.
            while state.waiters.pop().is_some() {}
            self.stats.waiting.store(0, Ordering::Relaxed);
            self.stats.idle.store(0, Ordering::Relaxed);
            state.idle.drain(..).collect()
        };
        for conn in idle {
            self.close(conn);
        }
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

    /// Why no lease can be had now, if the backend is out of rotation.
    fn out_of_rotation(&self) -> Option<BackendError> {
        if self.is_draining() {
            Some(BackendError::Draining(self.backend.id))
        } else if !self.is_healthy() {
            Some(BackendError::Down(self.backend.id))
        } else {
            None
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection logged in as `identity` with `profile`, waiting as a
    /// tenant of its own with weight 1 (see [`Pool::lease_for`]).
    ///
    /// # Errors
    /// As [`Pool::lease_for`].
    pub async fn lease(
        self: &Arc<Self>,
        identity: &Identity,
        profile: Profile,
        timeout: Duration,
    ) -> Result<Lease, BackendError> {
        let key = WaitKey {
            tenant: identity.user.as_str().into(),
            weight: 1,
        };
        self.lease_for(&key, identity, profile, timeout).await
    }

    /// A connection logged in as `identity` with `profile`. When the pool
    /// is full the lease waits in `key`'s tenant queue, served by weighted
    /// fair queueing against the other tenants waiting for this backend.
    ///
    /// # Errors
    /// [`BackendError::LeaseTimeout`] when the pool stays full for `timeout`;
    /// [`BackendError::Draining`] or [`BackendError::Down`] at once when the
    /// backend is out of rotation; connect and login failures otherwise.
    ///
    /// # Cancel safety
    /// Cancel-safe: a connection being opened or re-authenticated when the
    /// future is dropped is closed and its slot freed; a connection or slot
    /// handed to a waiter that gave up goes to the next one.
    pub async fn lease_for(
        self: &Arc<Self>,
        key: &WaitKey,
        identity: &Identity,
        profile: Profile,
        timeout: Duration,
    ) -> Result<Lease, BackendError> {
        // Read from the clock only when the lease has to wait.
        let mut waiting_since = None;
        loop {
            if let Some(refused) = self.out_of_rotation() {
                return Err(refused);
            }
            let grant = match self.take_or_wait(key, identity, profile) {
                Ok(grant) => grant,
                Err((id, rx)) => {
                    let started = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
                    let deadline = started + timeout;
                    let mut waiter = Waiter {
                        pool: self,
                        key,
                        id,
                        rx,
                        done: false,
                    };
                    match tokio::time::timeout_at(deadline, waiter.wait()).await {
                        Ok(Some(Handoff::Conn(conn))) => Grant::Other(conn),
                        Ok(Some(Handoff::Slot)) => Grant::NewSlot,
                        Ok(None) => {
                            // The queue was emptied: out of rotation.
                            return Err(self.out_of_rotation().unwrap_or(
                                BackendError::LeaseTimeout {
                                    waited_ms: started.elapsed().as_millis() as u64,
                                },
                            ));
                        }
                        Err(_) => {
                            return Err(BackendError::LeaseTimeout {
                                waited_ms: started.elapsed().as_millis() as u64,
                            });
                        }
                    }
                }
            };
            let grant = match grant {
                // Capabilities are fixed at connect: a connection of another
                // profile gives its slot to a new one.
                Grant::Other(conn) if conn.profile != profile => {
                    drop(conn);
                    self.stats.closed.fetch_add(1, Ordering::Relaxed);
                    Grant::NewSlot
                }
                grant => grant,
            };
            let mut lease = match grant {
                Grant::Matching(conn) | Grant::Other(conn) => self.lease_of(conn, true),
                Grant::NewSlot => {
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
                            if e.is_disconnect() {
                                // First-hand news for the health checker.
                                self.health_kick.notify_one();
                            }
                            return Err(e);
                        }
                    }
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

    /// Under one lock: an idle connection, a free slot, or a place in the
    /// tenant's queue (so nothing freed in between is missed).
    #[allow(clippy::type_complexity)]
    fn take_or_wait(
        &self,
        key: &WaitKey,
        identity: &Identity,
        profile: Profile,
    ) -> Result<Grant, (u64, oneshot::Receiver<Handoff>)> {
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
        if let Some(conn) = found.and_then(|i| state.idle.remove(i)) {
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
            return Ok(Grant::Matching(conn));
        }
        if state.open < self.backend.max_connections {
            state.open += 1;
            return Ok(Grant::NewSlot);
        }
        if let Some(conn) = state.idle.pop_front() {
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
            return Ok(Grant::Other(conn));
        }
        let (tx, rx) = oneshot::channel();
        let id = state.waiters.push(key, tx);
        self.stats
            .waiting
            .store(state.waiters.len(), Ordering::Relaxed);
        Err((id, rx))
    }

    /// Hands `handoff` to the fairest waiter, if any; gives it back otherwise.
    fn hand_off(&self, state: &mut PoolState, mut handoff: Handoff) -> Option<Handoff> {
        while let Some(tx) = state.waiters.pop() {
            match tx.send(handoff) {
                Ok(()) => {
                    self.stats
                        .waiting
                        .store(state.waiters.len(), Ordering::Relaxed);
                    return None;
                }
                // That waiter just gave up: the next one.
                Err(back) => handoff = back,
            }
        }
        self.stats.waiting.store(0, Ordering::Relaxed);
        Some(handoff)
    }

    fn lease_of(self: &Arc<Self>, conn: BackendConn, reused: bool) -> Lease {
        self.stats.in_use.fetch_add(1, Ordering::Relaxed);
        Lease {
            conn: Some(conn),
            pool: self.clone(),
            reused,
        }
    }

    /// Returns a clean connection to a waiter or the idle list, or closes
    /// it when it has lived too long.
    fn checkin(&self, mut conn: BackendConn) {
        // One clock read serves the age check and the idle mark.
        let now = Instant::now();
        if now.saturating_duration_since(conn.created) >= self.max_lifetime {
            self.close(conn);
            return;
        }
        if self.is_draining() || !self.is_healthy() {
            self.close(conn);
            return;
        }
        conn.idle_since = now;
        let mut state = self.lock();
        if let Some(Handoff::Conn(conn)) = self.hand_off(&mut state, Handoff::Conn(conn)) {
            state.idle.push_back(conn);
            self.stats.idle.store(state.idle.len(), Ordering::Relaxed);
        }
    }

    fn close(&self, conn: BackendConn) {
        drop(conn);
        self.free_slot();
    }

    fn free_slot(&self) {
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.release_slot();
    }

    /// A slot is free: a waiter opens a connection in it, or it is returned.
    fn release_slot(&self) {
        let mut state = self.lock();
        if self.hand_off(&mut state, Handoff::Slot).is_some() {
            state.open = state.open.saturating_sub(1);
        }
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

/// A lease waiting in the pool's fair queue. Dropped before it was served
/// (timeout, cancellation), it leaves the queue; whatever was handed to it
/// meanwhile goes back to the pool.
struct Waiter<'a> {
    pool: &'a Pool,
    key: &'a WaitKey,
    id: u64,
    rx: oneshot::Receiver<Handoff>,
    done: bool,
}

impl Waiter<'_> {
    async fn wait(&mut self) -> Option<Handoff> {
        let got = (&mut self.rx).await.ok();
        self.done = true;
        got
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut state = self.pool.lock();
            if state.waiters.remove(self.key, self.id).is_some() {
                self.pool
                    .stats
                    .waiting
                    .store(state.waiters.len(), Ordering::Relaxed);
                return;
            }
        }
        // Already served: hand-offs are sent under the pool's lock, so it
        // is in the channel now.
        match self.rx.try_recv() {
            Ok(Handoff::Conn(conn)) => self.pool.checkin(conn),
            Ok(Handoff::Slot) => self.pool.release_slot(),
            Err(_) => {}
        }
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

    /// The pool of `backend`, created when a reloaded route table brings a
    /// backend silo has not served yet. Needs a running tokio runtime.
    pub fn ensure(&self, backend: &BackendConfig, config: &Config) -> Arc<Pool> {
        self.pools
            .entry(backend.id)
            .or_insert_with(|| Pool::new(backend.clone(), config))
            .value()
            .clone()
    }

    /// A new pool for `backend`, whose address or limits changed: new
    /// leases go to it, while the old pool drains (connections in use
    /// finish where they are, then close). Needs a running tokio runtime.
    pub fn replace(&self, backend: &BackendConfig, config: &Config) -> Arc<Pool> {
        let pool = Pool::new(backend.clone(), config);
        if let Some(old) = self.pools.insert(backend.id, pool.clone()) {
            old.set_draining(true);
        }
        pool
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools.iter().map(|p| p.value().clone()).collect()
    }
}
