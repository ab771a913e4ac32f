//! What the tenant's plan and status allow a session to do: the route
//! re-read when the table changes, the per-statement limits (daily quota,
//! rate), the gate before a new lease (pause, `max_backend_leases`), and the
//! plan's statement time cap kept in the session's variables.

use tracing::info;

use super::session::Session;
use crate::config::TenantStatus;
use crate::limits::{LeaseSlot, Refusal};
use crate::protocol::ServerError;

use super::enforce::ended_status;

impl Session {
    /// Applies the plan's `max_query_time` as the session's
    /// `max_statement_time`, unless the client asked for less.
    pub(super) fn with_plan_vars(mut self) -> Self {
        self.apply_plan_vars();
        self
    }

    pub(super) fn apply_plan_vars(&mut self) {
        let Some(cap) = self.tenant.limits.max_statement_time() else {
            return;
        };
        let seconds = |v: &str| v.parse::<f64>().ok();
        let current = self.state.vars.get("max_statement_time").and_then(seconds);
        let cap_seconds = seconds(&cap).unwrap_or(0.0);
        // 0 means no limit to the server.
        if current.is_none_or(|c| c == 0.0 || c > cap_seconds) {
            let _ = self
                .state
                .vars
                .record(b"max_statement_time", cap.as_bytes());
        }
    }

    /// Picks up a new route table: the tenant's status, plan, backend. A
    /// tenant that is gone or no longer served ends the session.
    pub(super) fn refresh_route(&mut self) -> Result<(), ServerError> {
        let table = self.ctx.router.load();
        if table.version == self.table_version {
            return Ok(());
        }
        let version = table.version;
        let Some(route) = table.tenant(self.tenant.slug()).cloned() else {
            return Err(ServerError::tenant_ended(self.tenant.slug(), "was removed"));
        };
        drop(table);
        if let Some(why) = ended_status(route.status) {
            // The version is not recorded: every later check fails too.
            return Err(ServerError::tenant_ended(route.slug(), why));
        }
        self.table_version = version;
        let limits_changed = route.limits != self.tenant.limits;
        self.tenant = route;
        if limits_changed {
            self.apply_plan_vars();
        }
        Ok(())
    }

    /// The per-query limits: daily quota, then rate (waiting up to the
    /// queue timeout).
    pub(super) async fn admit_query(&mut self) -> Result<(), ServerError> {
        let limits = &self.tenant.limits;
        let deadline = tokio::time::Instant::now() + limits.queue_timeout;
        let refused = match self.live.count_query(limits) {
            Ok(()) => self.live.take_rate(limits, deadline).await.err(),
            Err(refusal) => Some(refusal),
        };
        let Some(refusal) = refused else {
            return Ok(());
        };
        let limits = &self.tenant.limits;
        let (value, detail) = match refusal {
            Refusal::QueriesPerDay => (
                crate::limits::finite(limits.max_queries_per_day),
                "; the count starts again at 00:00 UTC",
            ),
            _ => (
                crate::limits::finite(limits.max_queries_per_second),
                "; retry later or ask for a larger plan",
            ),
        };
        info!(conn = self.handle.id, tenant = %self.tenant.id, limit = refusal.name(), "statement refused: limit reached");
        Err(ServerError::limit_reached(
            self.tenant.slug(),
            &limits.plan,
            refusal.name(),
            value.unwrap_or_default(),
            detail,
        ))
    }

    /// Before a new lease: waits while the tenant is paused, then for one
    /// of the tenant's `max_backend_leases`, both within the queue timeout.
    pub(super) async fn lease_gate(&mut self) -> Result<LeaseSlot, ServerError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.tenant.limits.queue_timeout;
        while self.tenant.status == TenantStatus::Paused {
            let changed = self.live.wait_route_change(deadline).await;
            self.refresh_route()?;
            if !changed && self.tenant.status == TenantStatus::Paused {
                self.live.count_refusal(Refusal::Paused);
                return Err(ServerError::tenant_paused(
                    self.tenant.slug(),
                    started.elapsed().as_millis() as u64,
                ));
            }
        }
        let limits = &self.tenant.limits;
        self.live.lease_slot(limits, deadline).await.map_err(|_| {
            let max = crate::limits::finite(limits.max_backend_leases).unwrap_or_default();
            info!(conn = self.handle.id, tenant = %self.tenant.id, max, "statement refused: max_backend_leases busy");
            ServerError::lease_slots_busy(
                self.tenant.slug(),
                &limits.plan,
                max,
                started.elapsed().as_millis() as u64,
            )
        })
    }
}
