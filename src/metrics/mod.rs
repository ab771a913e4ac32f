//! Prometheus metrics, served over HTTP (`/metrics`, `/healthz`, `/readyz`)
//! when `[metrics]` is configured.
//!
//! Most figures already live in atomics that silo keeps for its own work
//! ([`crate::limits::TenantLive`] per tenant, [`crate::backend::PoolStats`]
//! per backend, the route table, the catalog's
//! [`crate::catalog::SourceHealth`]): they are read at scrape time by
//! [`collect`], not counted twice. Only what has no atomic elsewhere is
//! recorded on the way, in a [`TenantSeries`] each session resolves once at
//! login: the command-duration and lease-wait histograms, bytes relayed
//! (added once per response from session-local counts) and login results.
//! Recording costs a few relaxed atomic adds per command, whether or not
//! the HTTP port is configured.
//!
//! # Cardinality
//!
//! The first `max_tenant_labels` tenants silo sees (at a login attempt or
//! a scrape, whichever comes first) get their own `tenant` label for the
//! life of the process. Every later tenant is summed into
//! `tenant="_other:<plan>"`, by the plan it had when first seen, so ten
//! thousand tenants yield at most `max_tenant_labels` + one series per plan
//! for each metric. The assignment never changes while silo runs, which
//! keeps every counter monotonic; a restart may pick a different first set.
//! A colon cannot appear in a slug, so `_other:…` never names a real
//! tenant. Login attempts that named no known tenant carry `tenant=""`.

pub mod collect;
pub mod histogram;
pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{MetricsConfig, TenantStatus};
use crate::frontend::error::{LoginError, LoginRefusal};
use crate::routing::{TenantId, TenantRoute};

pub use histogram::{Histogram, HistogramSnapshot};

/// `max_tenant_labels` when `[metrics]` is absent (figures are still kept
/// for the admin port and tests).
const DEFAULT_MAX_TENANT_LABELS: usize = 100;

/// The outcome of a login, the `result` label of `silo_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Ok,
    UnknownTenant,
    BadPassword,
    Suspended,
    Provisioning,
    PendingDeletion,
    /// A status that never refuses a login today (kept total).
    NotActive,
    Limit,
    TlsRequired,
    BadHandshake,
    /// The client went away or its TLS handshake failed.
    Aborted,
    Timeout,
    Internal,
}

impl LoginResult {
    pub const ALL: [LoginResult; 13] = [
        LoginResult::Ok,
        LoginResult::UnknownTenant,
        LoginResult::BadPassword,
        LoginResult::Suspended,
        LoginResult::Provisioning,
        LoginResult::PendingDeletion,
        LoginResult::NotActive,
        LoginResult::Limit,
        LoginResult::TlsRequired,
        LoginResult::BadHandshake,
        LoginResult::Aborted,
        LoginResult::Timeout,
        LoginResult::Internal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::UnknownTenant => "unknown_tenant",
            LoginResult::BadPassword => "bad_password",
            LoginResult::Suspended => "suspended",
            LoginResult::Provisioning => "provisioning",
            LoginResult::PendingDeletion => "pending_deletion",
            LoginResult::NotActive => "not_active",
            LoginResult::Limit => "limit",
            LoginResult::TlsRequired => "tls_required",
            LoginResult::BadHandshake => "bad_handshake",
            LoginResult::Aborted => "aborted",
            LoginResult::Timeout => "timeout",
            LoginResult::Internal => "internal",
        }
    }

    /// The result of a failed login.
    pub fn of(error: &LoginError) -> Self {
        match error {
            LoginError::Refused { refusal, .. } => match refusal {
                LoginRefusal::UnknownTenant => LoginResult::UnknownTenant,
                LoginRefusal::BadPassword => LoginResult::BadPassword,
                LoginRefusal::NotActive(TenantStatus::Suspended) => LoginResult::Suspended,
                LoginRefusal::NotActive(TenantStatus::Provisioning) => LoginResult::Provisioning,
                LoginRefusal::NotActive(TenantStatus::PendingDeletion) => {
                    LoginResult::PendingDeletion
                }
                LoginRefusal::NotActive(_) => LoginResult::NotActive,
                LoginRefusal::Limit => LoginResult::Limit,
                LoginRefusal::TlsRequired => LoginResult::TlsRequired,
                LoginRefusal::BadHandshake => LoginResult::BadHandshake,
            },
            LoginError::Packet(crate::frontend::stream::PacketError::Protocol(_)) => {
                LoginResult::BadHandshake
            }
            LoginError::Packet(_) | LoginError::Tls(_) => LoginResult::Aborted,
            LoginError::Timeout => LoginResult::Timeout,
            LoginError::Random => LoginResult::Internal,
        }
    }
}

/// Login outcomes, one counter per [`LoginResult`].
#[derive(Debug, Default)]
pub struct LoginCounts([AtomicU64; LoginResult::ALL.len()]);

impl LoginCounts {
    pub fn count(&self, result: LoginResult) {
        if let Some(c) = self.0.get(result as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, result: LoginResult) -> u64 {
        self.0
            .get(result as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The figures recorded on the way for one `tenant` label value: one
/// tenant's, or the sum of a plan's tenants past `max_tenant_labels`.
#[derive(Debug)]
pub struct TenantSeries {
    /// The `tenant` label value.
    pub label: Arc<str>,
    /// Position in [`Metrics`]' list, for summing at scrape time.
    index: usize,
    /// From a command's forwarding to the end of its response.
    pub query_duration: Histogram,
    /// From asking for a backend connection to holding one (plan gate,
    /// fair queue, connect or re-authentication).
    pub lease_wait: Histogram,
    pub bytes_from_clients: AtomicU64,
    pub bytes_to_clients: AtomicU64,
    pub logins: LoginCounts,
}

impl TenantSeries {
    fn new(label: Arc<str>, index: usize) -> Self {
        Self {
            label,
            index,
            query_duration: Histogram::new(histogram::QUERY_BOUNDS_US),
            lease_wait: Histogram::new(histogram::LEASE_WAIT_BOUNDS_US),
            bytes_from_clients: AtomicU64::new(0),
            bytes_to_clients: AtomicU64::new(0),
            logins: LoginCounts::default(),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Adds a session's byte counts (once per response, not per packet).
    pub fn add_bytes(&self, from_client: u64, to_client: u64) {
        if from_client > 0 {
            self.bytes_from_clients
                .fetch_add(from_client, Ordering::Relaxed);
        }
        if to_client > 0 {
            self.bytes_to_clients
                .fetch_add(to_client, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct Labels {
    by_tenant: HashMap<TenantId, Arc<TenantSeries>>,
    /// Aggregates of tenants past the limit, by plan.
    by_plan: HashMap<String, Arc<TenantSeries>>,
    /// Tenants with a label of their own.
    named: usize,
    /// Every series, in creation order (`TenantSeries::index`).
    all: Vec<Arc<TenantSeries>>,
}

/// The metrics' own state, shared by every session (`Context::metrics`).
#[derive(Debug)]
pub struct Metrics {
    max_tenant_labels: usize,
    labels: Mutex<Labels>,
    /// Logins that named no known tenant (and failures before one was
    /// named).
    pub unidentified_logins: LoginCounts,
    /// The MySQL listener is accepting clients (for `/readyz`).
    accepting: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TENANT_LABELS)
    }
}

impl Metrics {
    pub fn new(max_tenant_labels: usize) -> Self {
        Self {
            max_tenant_labels,
            labels: Mutex::default(),
            unidentified_logins: LoginCounts::default(),
            accepting: AtomicBool::new(false),
        }
    }

    pub fn from_config(config: Option<&MetricsConfig>) -> Self {
        Self::new(config.map_or(DEFAULT_MAX_TENANT_LABELS, |m| m.max_tenant_labels))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Labels> {
        self.labels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The series `tenant` records into; resolved once per login, never per
    /// command.
    pub fn tenant(&self, tenant: &TenantRoute) -> Arc<TenantSeries> {
        self.series(&tenant.id, &tenant.plan.name)
    }

    /// The series of tenant `id`, assigned on first sight: its own label
    /// while fewer than `max_tenant_labels` tenants have one, else its
    /// plan's aggregate.
    pub fn series(&self, id: &TenantId, plan: &str) -> Arc<TenantSeries> {
        let mut labels = self.lock();
        self.assign(&mut labels, id, || plan.to_string())
    }

    /// The series of each of `tenants` under one lock (a scrape), unseen
    /// ones assigned with the plan `plan_of` names.
    pub fn series_of_each<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a TenantId>,
        plan_of: impl Fn(&TenantId) -> String,
    ) -> Vec<Arc<TenantSeries>> {
        let mut labels = self.lock();
        tenants
            .into_iter()
            .map(|id| self.assign(&mut labels, id, || plan_of(id)))
            .collect()
    }

    fn assign(
        &self,
        labels: &mut Labels,
        id: &TenantId,
        plan: impl FnOnce() -> String,
    ) -> Arc<TenantSeries> {
        if let Some(series) = labels.by_tenant.get(id) {
            return series.clone();
        }
        let series = if labels.named < self.max_tenant_labels {
            labels.named += 1;
            new_series(labels, Arc::clone(&id.0))
        } else {
            let plan = plan();
            match labels.by_plan.get(&plan) {
                Some(aggregate) => aggregate.clone(),
                None => {
                    let aggregate = new_series(labels, Arc::from(format!("_other:{plan}")));
                    labels.by_plan.insert(plan, aggregate.clone());
                    aggregate
                }
            }
        };
        labels.by_tenant.insert(id.clone(), series.clone());
        series
    }

    /// Every series, in creation order.
    pub fn all_series(&self) -> Vec<Arc<TenantSeries>> {
        self.lock().all.clone()
    }

    /// Counts a login that did not succeed, under the tenant the client
    /// was identified as, if any.
    pub fn count_failed_login(&self, error: &LoginError) {
        let result = LoginResult::of(error);
        match error {
            LoginError::Refused {
                tenant: Some(tenant),
                ..
            } => self.tenant(tenant).logins.count(result),
            _ => self.unidentified_logins.count(result),
        }
    }

    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }
}

fn new_series(labels: &mut Labels, label: Arc<str>) -> Arc<TenantSeries> {
    let series = Arc::new(TenantSeries::new(label, labels.all.len()));
    labels.all.push(series.clone());
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId(Arc::from(s))
    }

    #[test]
    fn tenants_past_the_limit_share_their_plan_series() {
        let m = Metrics::new(2);
        let a = m.series(&id("a"), "free");
        let b = m.series(&id("b"), "pro");
        let c = m.series(&id("c"), "free");
        let d = m.series(&id("d"), "free");
        let e = m.series(&id("e"), "pro");
        assert_eq!(&*a.label, "a");
        assert_eq!(&*b.label, "b");
        assert_eq!(&*c.label, "_other:free");
        assert!(Arc::ptr_eq(&c, &d));
        assert_eq!(&*e.label, "_other:pro");
        // Stable: a tenant keeps its series, whatever its plan becomes.
        assert!(Arc::ptr_eq(&m.series(&id("a"), "pro"), &a));
        assert!(Arc::ptr_eq(&m.series(&id("c"), "pro"), &c));
        let labels: Vec<_> = m.all_series().iter().map(|s| s.label.clone()).collect();
        assert_eq!(
            labels.iter().map(|l| &**l).collect::<Vec<_>>(),
            ["a", "b", "_other:free", "_other:pro"]
        );
        assert!(
            m.all_series()
                .iter()
                .enumerate()
                .all(|(i, s)| s.index() == i)
        );
    }

    #[test]
    fn failed_logins_count_under_the_tenant_or_unidentified() {
        let m = Metrics::new(10);
        let unknown = LoginError::refused(
            LoginRefusal::UnknownTenant,
            crate::protocol::ServerError::bad_handshake(),
            "unknown tenant",
        );
        m.count_failed_login(&unknown);
        m.count_failed_login(&LoginError::Timeout);
        assert_eq!(m.unidentified_logins.get(LoginResult::UnknownTenant), 1);
        assert_eq!(m.unidentified_logins.get(LoginResult::Timeout), 1);
        assert_eq!(LoginResult::of(&unknown).name(), "unknown_tenant");
    }
}
