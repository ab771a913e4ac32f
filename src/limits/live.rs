//! A tenant's live usage: client connections, backend leases, the query
//! rate and the daily quota, and why commands were refused. One
//! [`TenantLive`] per tenant, resolved once per session; its counters are
//! relaxed atomics, its two small locks are never held across an await.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Limits, finite};
use crate::backend::pins::PinCounters;
use crate::routing::TenantId;

/// Why a login or a command was refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ClientConnections,
    BackendLeases,
    QueriesPerSecond,
    QueriesPerDay,
    /// Still paused when the queue timeout ran out.
    Paused,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::ClientConnections,
        Refusal::BackendLeases,
        Refusal::QueriesPerSecond,
        Refusal::QueriesPerDay,
        Refusal::Paused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::ClientConnections => "max_client_connections",
            Refusal::BackendLeases => "max_backend_leases",
            Refusal::QueriesPerSecond => "max_queries_per_second",
            Refusal::QueriesPerDay => "max_queries_per_day",
            Refusal::Paused => "paused",
        }
    }
}

/// The rate limiter's state: generic cell rate algorithm, i.e. the time at
/// which the bucket would be empty again ("theoretical arrival time").
#[derive(Debug)]
struct Rate {
    tat: Instant,
}

#[derive(Debug)]
pub struct TenantLive {
    pub pins: PinCounters,
    pub clients: AtomicUsize,
    /// Backend connections the tenant holds now.
    pub leases: AtomicUsize,
    /// Commands waiting for a lease slot, a rate token or the end of a pause.
    pub queued: AtomicUsize,
    pub queries: AtomicU64,
    /// Time statements spent between being sent to the backend and the end
    /// of their response, in microseconds.
    pub query_time_us: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    lease_freed: Notify,
    /// Woken when the route table changes (pause lifted, limits changed).
    pub(crate) route_changed: Notify,
    rate: Mutex<Rate>,
    /// `utc_day << 40 | queries counted that day`.
    day: AtomicU64,
}

impl Default for TenantLive {
    fn default() -> Self {
        Self {
            pins: PinCounters::default(),
            clients: AtomicUsize::new(0),
            leases: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            queries: AtomicU64::new(0),
            query_time_us: AtomicU64::new(0),
            refused: Default::default(),
            lease_freed: Notify::new(),
            route_changed: Notify::new(),
            rate: Mutex::new(Rate {
                tat: Instant::now(),
            }),
            day: AtomicU64::new(0),
        }
    }
}

const DAY_SHIFT: u32 = 40;
const COUNT_MASK: u64 = (1 << DAY_SHIFT) - 1;

/// Days since the Unix epoch, UTC: the day the daily quota counts in.
pub fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl TenantLive {
    /// How many times `reason` refused this tenant.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused
            .get(reason as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn count_refusal(&self, reason: Refusal) {
        if let Some(c) = self.refused.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queries counted today (UTC).
    pub fn queries_today(&self) -> u64 {
        let packed = self.day.load(Ordering::Relaxed);
        if packed >> DAY_SHIFT == utc_day() {
            packed & COUNT_MASK
        } else {
            0
        }
    }

    /// Raises today's count to `count` (queries already made today, e.g.
    /// read from the control plane's usage table at start), so the daily
    /// quota survives a restart. A higher count already kept stays.
    pub fn seed_today(&self, count: u64) {
        let today = utc_day();
        let count = count.min(COUNT_MASK);
        let mut current = self.day.load(Ordering::Relaxed);
        loop {
            let kept = if current >> DAY_SHIFT == today {
                current & COUNT_MASK
            } else {
                0
            };
            if kept >= count {
                return;
            }
            match self.day.compare_exchange_weak(
                current,
                (today << DAY_SHIFT) | count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// A client connection, within `max_client_connections`.
    ///
    /// # Errors
    /// The limit is reached; the refusal is counted.
    pub fn admit_client(self: &Arc<Self>, limits: &Limits) -> Result<ClientSlot, Refusal> {
        let now = self.clients.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = ClientSlot { live: self.clone() };
        if finite(limits.max_client_connections).is_some_and(|max| now as u64 > max) {
            drop(slot);
            self.count_refusal(Refusal::ClientConnections);
            return Err(Refusal::ClientConnections);
        }
        Ok(slot)
    }

    /// Counts one query against the daily quota.
    ///
    /// # Errors
    /// The quota of the current UTC day is used up (the query is not counted).
    pub fn count_query(&self, limits: &Limits) -> Result<(), Refusal> {
        let quota = finite(limits.max_queries_per_day);
        let today = utc_day();
        let mut current = self.day.load(Ordering::Relaxed);
        loop {
            let count = if current >> DAY_SHIFT == today {
                current & COUNT_MASK
            } else {
                0
            };
            if quota.is_some_and(|q| count >= q) {
                self.count_refusal(Refusal::QueriesPerDay);
                return Err(Refusal::QueriesPerDay);
            }
            let next = (today << DAY_SHIFT) | ((count + 1) & COUNT_MASK);
            match self.day.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the rate limit to allow one more query, at most until
    /// `deadline`.
    ///
    /// # Errors
    /// The query could not be allowed before the deadline; nothing is
    /// reserved and the refusal is counted.
    pub async fn take_rate(&self, limits: &Limits, deadline: Instant) -> Result<(), Refusal> {
        let Some(qps) = finite(limits.max_queries_per_second) else {
            return Ok(());
        };
        let interval = Duration::from_secs(1) / u32::try_from(qps).unwrap_or(u32::MAX).max(1);
        let burst = finite(limits.burst).unwrap_or(qps).max(1);
        let tolerance = interval * u32::try_from(burst - 1).unwrap_or(u32::MAX);
        let allowed_at = {
            let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let tat = rate.tat.max(now);
            let allowed_at = tat.checked_sub(tolerance).unwrap_or(now).max(now);
            if allowed_at > deadline {
                drop(rate);
                self.count_refusal(Refusal::QueriesPerSecond);
                return Err(Refusal::QueriesPerSecond);
            }
            rate.tat = tat + interval;
            allowed_at
        };
        if allowed_at > Instant::now() {
            let _queued = Queued::new(&self.queued);
            tokio::time::sleep_until(allowed_at).await;
        }
        Ok(())
    }

    /// A backend lease slot within `max_backend_leases`, waiting (FIFO) at
    /// most until `deadline`.
    ///
    /// # Errors
    /// No slot freed up in time; the refusal is counted.
    ///
    /// # Cancel safety
    /// Cancel-safe: a slot is only taken when the future completes.
    pub async fn lease_slot(
        self: &Arc<Self>,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<LeaseSlot, Refusal> {
        let Some(max) = finite(limits.max_backend_leases) else {
            self.leases.fetch_add(1, Ordering::AcqRel);
            return Ok(LeaseSlot { live: self.clone() });
        };
        let mut queued = None;
        loop {
            let freed = self.lease_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let current = self.leases.load(Ordering::Acquire);
            if (current as u64) < max {
                if self
                    .leases
                    .compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(LeaseSlot { live: self.clone() });
                }
                continue;
            }
            queued.get_or_insert_with(|| Queued::new(&self.queued));
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.count_refusal(Refusal::BackendLeases);
                return Err(Refusal::BackendLeases);
            }
        }
    }

    /// Waits until the route table changes or `deadline` passes; for
    /// commands of a paused tenant.
    pub async fn wait_route_change(&self, deadline: Instant) -> bool {
        let _queued = Queued::new(&self.queued);
        tokio::time::timeout_at(deadline, self.route_changed.notified())
            .await
            .is_ok()
    }
}

/// One of the tenant's client connections; freed on drop.
#[derive(Debug)]
pub struct ClientSlot {
    live: Arc<TenantLive>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.live.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of the tenant's backend leases; freed on drop, waking the next
/// command of the tenant waiting for one.
#[derive(Debug)]
pub struct LeaseSlot {
    live: Arc<TenantLive>,
}

impl Drop for LeaseSlot {
    fn drop(&mut self) {
        self.live.leases.fetch_sub(1, Ordering::AcqRel);
        self.live.lease_freed.notify_one();
    }
}

/// Counts a waiter for as long as it lives.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Queued(gauge)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Live state per tenant, kept across route-table swaps.
#[derive(Debug, Default)]
pub struct Tenants {
    tenants: DashMap<TenantId, Arc<TenantLive>>,
}

impl Tenants {
    /// The tenant's live state, created on first use (once per session).
    pub fn of(&self, tenant: &TenantId) -> Arc<TenantLive> {
        if let Some(live) = self.tenants.get(tenant) {
            return live.clone();
        }
        self.tenants.entry(tenant.clone()).or_default().clone()
    }

    pub fn get(&self, tenant: &TenantId) -> Option<Arc<TenantLive>> {
        self.tenants.get(tenant).map(|l| l.clone())
    }

    /// Every tenant's live state (usage reports, metrics, operators).
    pub fn snapshot(&self) -> Vec<(TenantId, Arc<TenantLive>)> {
        self.tenants
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Wakes every command waiting on a route change (after a swap).
    pub fn route_changed(&self) {
        for live in &self.tenants {
            live.route_changed.notify_waiters();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Limit, LimitOverrides, PlanConfig};

    fn limits(edit: impl FnOnce(&mut PlanConfig)) -> Limits {
        let mut plan = PlanConfig {
            name: "p".into(),
            weight: 1,
            max_client_connections: Limit::Unlimited,
            max_backend_leases: Limit::Unlimited,
            queue_timeout_ms: 100,
            max_queries_per_second: Limit::Unlimited,
            burst: Limit::Unlimited,
            max_query_time_ms: Limit::Unlimited,
            max_queries_per_day: Limit::Unlimited,
            pool_mode: None,
        };
        edit(&mut plan);
        Limits::resolve(&plan, &LimitOverrides::default())
    }

    #[test]
    fn client_connections_are_capped_and_freed() {
        let live = Arc::new(TenantLive::default());
        let l = limits(|p| p.max_client_connections = Limit::Value(2));
        let a = live.admit_client(&l).unwrap();
        let _b = live.admit_client(&l).unwrap();
        assert_eq!(
            live.admit_client(&l).unwrap_err(),
            Refusal::ClientConnections
        );
        drop(a);
        assert!(live.admit_client(&l).is_ok());
        assert_eq!(live.refused(Refusal::ClientConnections), 1);
    }

    #[test]
    fn daily_quota() {
        let live = TenantLive::default();
        let l = limits(|p| p.max_queries_per_day = Limit::Value(3));
        for _ in 0..3 {
            live.count_query(&l).unwrap();
        }
        assert_eq!(live.count_query(&l), Err(Refusal::QueriesPerDay));
        assert_eq!(live.queries_today(), 3);
        // Yesterday's count does not carry over.
        live.day
            .store(((utc_day() - 1) << DAY_SHIFT) | 3, Ordering::Relaxed);
        assert!(live.count_query(&l).is_ok());
        assert_eq!(live.queries_today(), 1);
    }

    #[test]
    fn seeding_raises_today_and_never_lowers_it() {
        let live = TenantLive::default();
        let l = limits(|p| p.max_queries_per_day = Limit::Value(5));
        live.seed_today(4);
        assert_eq!(live.queries_today(), 4);
        live.count_query(&l).unwrap();
        assert_eq!(live.count_query(&l), Err(Refusal::QueriesPerDay));
        live.seed_today(2);
        assert_eq!(live.queries_today(), 5);
        // Seeding is not counting: nothing to report as new usage.
        assert_eq!(live.queries.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_allows_the_burst_then_spaces_queries() {
        let live = TenantLive::default();
        let l = limits(|p| {
            p.max_queries_per_second = Limit::Value(10);
            p.burst = Limit::Value(3);
        });
        let start = Instant::now();
        let far = start + Duration::from_secs(10);
        for _ in 0..3 {
            live.take_rate(&l, far).await.unwrap();
        }
        assert_eq!(Instant::now(), start, "the burst passes at once");
        live.take_rate(&l, far).await.unwrap();
        assert!(Instant::now() >= start + Duration::from_millis(100));
        // A deadline too close: refused without waiting.
        let before = Instant::now();
        assert_eq!(
            live.take_rate(&l, before).await,
            Err(Refusal::QueriesPerSecond)
        );
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn lease_slots_queue_then_time_out() {
        let live = Arc::new(TenantLive::default());
        let l = limits(|p| p.max_backend_leases = Limit::Value(1));
        let far = Instant::now() + Duration::from_secs(10);
        let held = live.lease_slot(&l, far).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            live.lease_slot(&l, soon).await.unwrap_err(),
            Refusal::BackendLeases
        );
        let waiter = tokio::spawn({
            let live = live.clone();
            let l = l.clone();
            async move { live.lease_slot(&l, far).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(live.queued.load(Ordering::Relaxed), 1);
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(live.leases.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn statement_time_in_seconds() {
        let l = limits(|p| p.max_query_time_ms = Limit::Value(2500));
        assert_eq!(l.max_statement_time().as_deref(), Some("2.500000"));
    }
}
