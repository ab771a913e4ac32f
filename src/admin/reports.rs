//! The `SHOW …` reports: read from the running route table, the pools, the
//! session registry, the tenants' live counters and the catalog, never from
//! a backend. No report shows a password or a hash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::resultset::{Kind, ResultSet, Value, yes_no};
use crate::backend::pins::PinReason;
use crate::catalog::Event;
use crate::config::Limit;
use crate::frontend::Context;
use crate::limits::{Refusal, TenantLive};
use crate::routing::TenantRoute;

/// A limit as operators read it: the number, or `unlimited`.
fn limit(limit: Limit) -> Value {
    match limit {
        Limit::Value(n) => Value::UInt(n),
        Limit::Unlimited => Value::Text("unlimited".into()),
    }
}

fn refusals(live: &TenantLive) -> u64 {
    Refusal::ALL.iter().map(|r| live.refused(*r)).sum()
}

/// The running tenants, by slug.
fn tenants(ctx: &Context) -> Vec<Arc<TenantRoute>> {
    let table = ctx.router.load();
    let mut all: Vec<Arc<TenantRoute>> = table.tenants().cloned().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// `SHOW TENANTS`: one row per tenant with its route and what it uses now.
pub fn show_tenants(ctx: &Context) -> ResultSet {
    use Kind::{Text, UInt};
    let mut rs = ResultSet::new(&[
        ("slug", Text),
        ("status", Text),
        ("plan", Text),
        ("backend", UInt),
        ("pool_mode", Text),
        ("clients", UInt),
        ("leases", UInt),
        ("queued", UInt),
        ("pinned", UInt),
        ("queries_today", UInt),
        ("queries", UInt),
        ("refusals", UInt),
    ]);
    for tenant in tenants(ctx) {
        let live = ctx.tenants.of(&tenant.id);
        rs.push(vec![
            tenant.slug().into(),
            tenant.status.to_string().into(),
            tenant.limits.plan.as_str().into(),
            tenant.backend.into(),
            tenant.pool_mode.to_string().into(),
            live.clients.load(Ordering::Relaxed).into(),
            live.leases.load(Ordering::Relaxed).into(),
            live.queued.load(Ordering::Relaxed).into(),
            live.pins.pinned.load(Ordering::Relaxed).into(),
            live.queries_today().into(),
            live.queries.load(Ordering::Relaxed).into(),
            refusals(&live).into(),
        ]);
    }
    rs
}

/// `SHOW TENANT <slug>`: every fact about one tenant as name / value rows.
/// `None` for a tenant the running table does not know.
pub fn show_tenant(ctx: &Context, slug: &str) -> Option<ResultSet> {
    let tenant = ctx.router.load().tenant(slug).cloned()?;
    let live = ctx.tenants.of(&tenant.id);
    let limits = &tenant.limits;
    let pins = live.pins.snapshot();
    let sessions = ctx
        .registry
        .sessions()
        .iter()
        .filter(|s| s.tenant().as_ref() == Some(&tenant.id))
        .count();
    let mut rows: Vec<(String, Value)> = vec![
        ("slug".into(), tenant.slug().into()),
        ("status".into(), tenant.status.to_string().into()),
        ("plan".into(), limits.plan.as_str().into()),
        ("backend".into(), tenant.backend.into()),
        ("database".into(), tenant.identity.database.as_str().into()),
        ("db_user".into(), tenant.identity.user.as_str().into()),
        ("pool_mode".into(), tenant.pool_mode.to_string().into()),
        ("weight".into(), limits.weight.into()),
        (
            "max_client_connections".into(),
            limit(limits.max_client_connections),
        ),
        (
            "max_backend_leases".into(),
            limit(limits.max_backend_leases),
        ),
        (
            "queue_timeout_ms".into(),
            (limits.queue_timeout.as_millis() as u64).into(),
        ),
        (
            "max_queries_per_second".into(),
            limit(limits.max_queries_per_second),
        ),
        ("burst".into(), limit(limits.burst)),
        ("max_query_time_ms".into(), limit(limits.max_query_time_ms)),
        (
            "max_queries_per_day".into(),
            limit(limits.max_queries_per_day),
        ),
        ("sessions".into(), sessions.into()),
        (
            "clients".into(),
            live.clients.load(Ordering::Relaxed).into(),
        ),
        ("leases".into(), live.leases.load(Ordering::Relaxed).into()),
        ("queued".into(), live.queued.load(Ordering::Relaxed).into()),
        (
            "queries".into(),
            live.queries.load(Ordering::Relaxed).into(),
        ),
        ("queries_today".into(), live.queries_today().into()),
        (
            "backend_time_ms".into(),
            (live.query_time_us.load(Ordering::Relaxed) / 1000).into(),
        ),
    ];
    for reason in Refusal::ALL {
        rows.push((
            format!("refused_{}", reason.name()),
            live.refused(reason).into(),
        ));
    }
    rows.push(("backend_leases_total".into(), pins.leases.into()));
    rows.push(("pinned".into(), pins.pinned.into()));
    for reason in PinReason::ALL {
        rows.push((format!("pins_{}", reason.name()), pins.pins(reason).into()));
    }
    let mut rs = ResultSet::text(&["name", "value"]);
    for (name, value) in rows {
        rs.push(vec![name.into(), value]);
    }
    Some(rs)
}

/// `SHOW BACKENDS`: the backends of the running table and their state.
pub fn show_backends(ctx: &Context) -> ResultSet {
    use Kind::{Text, UInt};
    let table = ctx.router.load();
    let mut routed: HashMap<u32, usize> = HashMap::new();
    for tenant in table.tenants() {
        *routed.entry(tenant.backend).or_default() += 1;
    }
    let mut backends: Vec<_> = table.backends().cloned().collect();
    backends.sort_by_key(|b| b.id);
    let mut rs = ResultSet::new(&[
        ("id", UInt),
        ("host", Text),
        ("port", UInt),
        ("max_connections", UInt),
        ("draining", Text),
        ("healthy", Text),
        ("tenants", UInt),
    ]);
    for b in backends {
        let pool = ctx.pools.get(b.id);
        rs.push(vec![
            b.id.into(),
            b.host.as_str().into(),
            b.port.into(),
            b.max_connections.into(),
            yes_no(pool.as_ref().map_or(b.draining, |p| p.is_draining())),
            pool.as_ref().map(|p| yes_no(p.is_healthy())).into(),
            routed.get(&b.id).copied().unwrap_or_default().into(),
        ]);
    }
    rs
}

/// `SHOW POOLS`: each backend pool's connections and waiters.
pub fn show_pools(ctx: &Context) -> ResultSet {
    let mut pools = ctx.pools.all();
    pools.sort_by_key(|p| p.backend().id);
    let mut rs = ResultSet::new(&[
        ("backend", Kind::UInt),
        ("idle", Kind::UInt),
        ("in_use", Kind::UInt),
        ("pinned", Kind::UInt),
        ("waiting", Kind::UInt),
        ("opened", Kind::UInt),
        ("closed", Kind::UInt),
        ("errors", Kind::UInt),
        ("leases", Kind::UInt),
    ]);
    for pool in pools {
        let s = pool.snapshot();
        let pins = pool.stats.pins.snapshot();
        rs.push(vec![
            pool.backend().id.into(),
            s.idle.into(),
            s.in_use.into(),
            pins.pinned.into(),
            s.waiting.into(),
            s.opened.into(),
            s.closed.into(),
            s.errors.into(),
            pins.leases.into(),
        ]);
    }
    rs
}

/// `SHOW CLIENTS [FOR <slug>]`: client sessions by silo connection id.
/// `None` when `tenant` names no running tenant.
pub fn show_clients(ctx: &Context, tenant: Option<&str>) -> Option<ResultSet> {
    let table = ctx.router.load();
    if let Some(slug) = tenant {
        table.tenant(slug)?;
    }
    let mut sessions = ctx.registry.sessions();
    sessions.sort_by_key(|s| s.id);
    let mut rs = ResultSet::new(&[
        ("id", Kind::UInt),
        ("tenant", Kind::Text),
        ("user", Kind::Text),
        ("backend", Kind::UInt),
        ("backend_thread_id", Kind::UInt),
    ]);
    for session in sessions {
        let session_tenant = session.tenant();
        if tenant.is_some() && session_tenant.as_ref().map(|t| &*t.0) != tenant {
            continue;
        }
        let target = session.backend();
        // Between commands a session holds no connection: its tenant's
        // backend is where the next one runs.
        let backend = target.map(|t| t.backend_id).or_else(|| {
            session_tenant
                .as_ref()
                .and_then(|t| table.tenant(&t.0))
                .map(|t| t.backend)
        });
        rs.push(vec![
            session.id.into(),
            session_tenant.map(|t| t.0.to_string()).into(),
            session.user().map(|u| u.to_string()).into(),
            backend.into(),
            target.map(|t| t.thread_id).into(),
        ]);
    }
    Some(rs)
}

/// `SHOW PLANS`: each plan's limits and how many tenants are on it.
pub fn show_plans(ctx: &Context) -> ResultSet {
    use Kind::{Text, UInt};
    let config = ctx.catalog.current();
    let table = ctx.router.load();
    let mut on_plan: HashMap<&str, usize> = HashMap::new();
    for tenant in table.tenants() {
        *on_plan.entry(tenant.limits.plan.as_str()).or_default() += 1;
    }
    let mut rs = ResultSet::new(&[
        ("name", Text),
        ("weight", UInt),
        ("max_client_connections", Text),
        ("max_backend_leases", Text),
        ("queue_timeout_ms", UInt),
        ("max_queries_per_second", Text),
        ("burst", Text),
        ("max_query_time_ms", Text),
        ("max_queries_per_day", Text),
        ("pool_mode", Text),
        ("tenants", UInt),
    ]);
    for plan in &config.plans {
        rs.push(vec![
            plan.name.as_str().into(),
            plan.weight.into(),
            limit(plan.max_client_connections),
            limit(plan.max_backend_leases),
            plan.queue_timeout_ms.into(),
            limit(plan.max_queries_per_second),
            limit(plan.burst),
            limit(plan.max_query_time_ms),
            limit(plan.max_queries_per_day),
            plan.pool_mode
                .unwrap_or(config.pool.mode)
                .to_string()
                .into(),
            on_plan
                .get(plan.name.as_str())
                .copied()
                .unwrap_or_default()
                .into(),
        ]);
    }
    rs
}

/// `SHOW USAGE`: what each tenant used since silo started (today's queries
/// against the daily quota).
pub fn show_usage(ctx: &Context) -> ResultSet {
    use Kind::{Text, UInt};
    let mut rs = ResultSet::new(&[
        ("tenant", Text),
        ("plan", Text),
        ("queries_today", UInt),
        ("max_queries_per_day", Text),
        ("queries", UInt),
        ("backend_time_ms", UInt),
        ("refusals", UInt),
    ]);
    for tenant in tenants(ctx) {
        let live = ctx.tenants.of(&tenant.id);
        rs.push(vec![
            tenant.slug().into(),
            tenant.limits.plan.as_str().into(),
            live.queries_today().into(),
            limit(tenant.limits.max_queries_per_day),
            live.queries.load(Ordering::Relaxed).into(),
            (live.query_time_us.load(Ordering::Relaxed) / 1000).into(),
            refusals(&live).into(),
        ]);
    }
    rs
}

/// `SHOW EVENTS`: operator changes and reloads, newest first.
pub fn show_events(events: &[Event]) -> ResultSet {
    use Kind::{Text, UInt};
    let mut rs = ResultSet::new(&[
        ("id", UInt),
        ("at", Text),
        ("tenant", Text),
        ("event", Text),
        ("detail", Text),
        ("performed_by", Text),
    ]);
    for e in events {
        rs.push(vec![
            e.id.into(),
            utc_datetime(e.at_unix_ms).into(),
            e.tenant.clone().into(),
            e.event_type.as_str().into(),
            e.detail.as_str().into(),
            e.performed_by.as_str().into(),
        ]);
    }
    rs
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC, as MariaDB prints a DATETIME(3).
fn utc_datetime(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, in_day) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_utc() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc_datetime(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(utc_datetime(1_767_225_599_999), "2025-12-31 23:59:59.999");
    }

    #[test]
    fn limits_read_as_numbers_or_unlimited() {
        assert_eq!(limit(Limit::Value(5)), Value::UInt(5));
        assert_eq!(limit(Limit::Unlimited), Value::Text("unlimited".into()));
    }
}
