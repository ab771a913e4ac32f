//! Plans as limits, enforced at the proxy: what a tenant may use
//! ([`Limits`], resolved from its plan and its own overrides) and what it
//! uses now ([`TenantLive`], kept per tenant across route-table swaps).
//!
//! Every refusal is an ERR packet naming the limit; nothing here holds a
//! lock across an await.

mod live;

pub use live::{ClientSlot, LeaseSlot, Refusal, TenantLive, Tenants, utc_day};

use std::time::Duration;

use crate::config::{Limit, LimitOverrides, PlanConfig};

/// One tenant's limits: its plan's, with the tenant's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub plan: String,
    /// Share of a saturated backend relative to other tenants.
    pub weight: u32,
    pub max_client_connections: Limit,
    pub max_backend_leases: Limit,
    pub queue_timeout: Duration,
    pub max_queries_per_second: Limit,
    pub burst: Limit,
    pub max_query_time_ms: Limit,
    pub max_queries_per_day: Limit,
}

impl Limits {
    pub fn resolve(plan: &PlanConfig, overrides: &LimitOverrides) -> Self {
        Self {
            plan: plan.name.clone(),
            weight: plan.weight,
            max_client_connections: overrides
                .max_client_connections
                .unwrap_or(plan.max_client_connections),
            max_backend_leases: overrides
                .max_backend_leases
                .unwrap_or(plan.max_backend_leases),
            queue_timeout: Duration::from_millis(
                overrides.queue_timeout_ms.unwrap_or(plan.queue_timeout_ms),
            ),
            max_queries_per_second: overrides
                .max_queries_per_second
                .unwrap_or(plan.max_queries_per_second),
            burst: overrides.burst.unwrap_or(plan.burst),
            max_query_time_ms: overrides
                .max_query_time_ms
                .unwrap_or(plan.max_query_time_ms),
            max_queries_per_day: overrides
                .max_queries_per_day
                .unwrap_or(plan.max_queries_per_day),
        }
    }

    /// `max_statement_time` (seconds) for the plan's max query time.
    pub fn max_statement_time(&self) -> Option<String> {
        match self.max_query_time_ms {
            Limit::Value(ms) => Some(format!("{}.{:03}000", ms / 1000, ms % 1000)),
            Limit::Unlimited => None,
        }
    }
}

/// `Some(n)` for a finite limit.
pub fn finite(limit: Limit) -> Option<u64> {
    match limit {
        Limit::Value(n) => Some(n),
        Limit::Unlimited => None,
    }
}
