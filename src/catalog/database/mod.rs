//! The control-plane database as the catalog's source.
//!
//! - **Loading**: [`open`] reads `backends`, `subscription_plans`,
//!   `tenants` (all but `deleted` ones) and `tenant_users` in one snapshot,
//!   decrypts tenant passwords and validates the whole catalog; silo does
//!   not start without a first good table.
//! - **Polling**: every `poll_interval_ms` one primary-key read of
//!   `silo_catalog_version` (bumped by triggers on the four catalog
//!   tables); the catalog is read again only when it moved. A catalog that
//!   does not validate is refused with its problems logged, and that
//!   version is not read again until it changes.
//! - **Outages**: the last good table keeps serving; the first failure is
//!   logged at warn and sets `health.unreachable`, later ones only count
//!   in `health.failures`; the first success after logs once and catches up.
//! - **Usage**: every `usage_flush_interval_ms` the queries counted since
//!   the last flush are added to today's (UTC) `tenant_usage_metrics` row,
//!   and at start each tenant's daily counter is seeded from that row, so
//!   `max_queries_per_day` survives restarts. With several silo instances
//!   the row is their sum (each adds its own deltas), and each instance
//!   seeds from the sum at its start.
//! - **Write-through**: an operator's [`Change`] is checked against the
//!   running catalog, written with its `tenant_events` row in one
//!   transaction, then the catalog is read again at once.
//!
//! Every call is bounded by `timeout_ms`. The URL is never logged: only
//! host, port and database are.

mod rows;
pub mod schema;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, TxOpts, UrlError};
use serde_json::json;

pub use schema::InitOutcome;

use super::{Applied, Catalog, CatalogError, Change, Event, Source};
use crate::config::{Config, ControlPlaneConfig};
use crate::frontend::Context;
use crate::limits::utc_day;
use crate::routing::TenantId;
use crate::secret::Secret;
use crate::secret_box::SecretKey;

/// Connections kept to the control plane: a poll, a flush and an
/// operator's change may overlap.
const MAX_CONNECTIONS: usize = 4;
/// Rows per usage `INSERT`.
const USAGE_BATCH: usize = 500;

/// The control plane: a small connection pool, the key of tenant
/// passwords, and what was last read.
pub struct Database {
    pool: Pool,
    /// `host:port/database`, the only form of the URL ever logged.
    endpoint: String,
    timeout: Duration,
    poll_interval: Duration,
    flush_interval: Duration,
    key: SecretKey,
    /// One catalog read at a time (poll, `RELOAD`, after a change).
    refreshing: tokio::sync::Mutex<()>,
    /// One usage flush at a time (the periodic one, the one at shutdown).
    flushing: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Catalog version last read, installed or refused.
    seen: Option<u64>,
    /// tenant slug → tenant_id, of every tenant read since start.
    tenant_ids: HashMap<String, String>,
    /// tenant slug → its query counter as last written to the usage table.
    flushed: HashMap<String, u64>,
    /// Today's query counts read at start (UTC day, slug → count), applied
    /// once the tenants' live state exists.
    seed: Option<(u64, HashMap<String, u64>)>,
}

/// A control-plane call that failed.
#[derive(Debug)]
pub(super) enum DbError {
    Sql(mysql_async::Error),
    Timeout(Duration),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sql(mysql_async::Error::Server(e)) if e.code == 1146 => write!(
                f,
                "{} (run `silo control-plane init` to create the schema)",
                e.message
            ),
            DbError::Sql(e) => write!(f, "{e}"),
            DbError::Timeout(t) => write!(f, "no answer within {} ms", t.as_millis()),
        }
    }
}

/// Awaits a control-plane call for at most `timeout`.
pub(super) async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, DbError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(DbError::Sql),
        Err(_) => Err(DbError::Timeout(timeout)),
    }
}

/// Parses the control-plane URL; the error never repeats it.
///
/// # Errors
/// Not a `mysql://` URL mysql_async accepts, or no database named.
pub fn parse_url(url: &Secret<String>) -> Result<Opts, String> {
    let opts = Opts::from_url(url.expose()).map_err(|e| {
        let why = match e {
            UrlError::Parse(p) => p.to_string(),
            UrlError::UnsupportedScheme { scheme } => {
                format!("unsupported scheme '{scheme}' (use mysql://)")
            }
            UrlError::UnknownParameter { param } => format!("unknown parameter '{param}'"),
            UrlError::InvalidParamValue { param, .. } => {
                format!("invalid value of parameter '{param}'")
            }
            UrlError::FeatureRequired { param, .. } => {
                format!("parameter '{param}' is not supported by this build")
            }
            _ => "invalid or incomplete".to_string(),
        };
        format!("control_plane.url: not a usable mysql:// URL: {why}")
    })?;
    if opts.db_name().is_none_or(str::is_empty) {
        return Err(
            "control_plane.url must name the database: mysql://user:password@host:port/database"
                .into(),
        );
    }
    Ok(opts)
}

/// `host:port/database` of `opts`.
pub(super) fn endpoint(opts: &Opts) -> String {
    format!(
        "{}:{}/{}",
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or("")
    )
}

/// Applies the schema steps the control plane at `url` lacks (creating its
/// database if needed); each statement is bounded by `timeout`.
///
/// # Errors
/// A bad URL, an unreachable server, or a failed statement.
pub async fn init(url: &Secret<String>, timeout: Duration) -> Result<InitOutcome, String> {
    let opts = parse_url(url)?;
    schema::init(&opts, timeout).await
}

/// Connects to the control plane of `config`, reads and validates its
/// catalog, and returns the source with `config` carrying that catalog.
/// The first read uses its own connection, so the source's pool starts on
/// the runtime that serves.
///
/// # Errors
/// No `[control_plane]`, a bad URL, a missing or malformed key
/// ([`CatalogError::Invalid`]); the control plane cannot be read or lacks
/// its schema ([`CatalogError::Unavailable`]); a row does not convert or
/// the catalog does not validate ([`CatalogError::Rejected`], naming
/// table, row and column).
pub async fn open(config: &Config) -> Result<(Database, Config), CatalogError> {
    let cp = config
        .control_plane
        .as_ref()
        .ok_or_else(|| CatalogError::Invalid("no [control_plane] section".into()))?;
    let opts = parse_url(&cp.url).map_err(CatalogError::Invalid)?;
    let key = SecretKey::load(cp.secret_key_file.as_deref())
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
    let db = Database::new(opts.clone(), key, cp);
    let mut conn = bounded(db.timeout, Conn::new(opts))
        .await
        .map_err(|e| db.unavailable(&e))?;
    let result = db.first_read(&mut conn, config).await;
    let _ = bounded(db.timeout, conn.disconnect()).await;
    let config = result?;
    Ok((db, config))
}

/// What a poll found.
enum Refreshed {
    Unchanged(u64),
    Installed(u64),
}

impl Database {
    fn new(opts: Opts, key: SecretKey, cp: &ControlPlaneConfig) -> Database {
        let constraints = PoolConstraints::new(0, MAX_CONNECTIONS).unwrap_or_default();
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            // Nothing silo does leaves session state behind.
            .with_reset_connection(false)
            .with_inactive_connection_ttl(Duration::from_secs(60));
        let opts: Opts = OptsBuilder::from_opts(opts).pool_opts(pool_opts).into();
        Database {
            endpoint: endpoint(&opts),
            pool: Pool::new(opts),
            timeout: cp.timeout(),
            poll_interval: cp.poll_interval(),
            flush_interval: cp.usage_flush_interval(),
            key,
            refreshing: tokio::sync::Mutex::new(()),
            flushing: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
        }
    }

    /// `host:port/database` of the control plane.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unavailable(&self, e: &DbError) -> CatalogError {
        CatalogError::Unavailable(format!("{}: {e}", self.endpoint))
    }

    async fn first_read(&self, conn: &mut Conn, base: &Config) -> Result<Config, CatalogError> {
        let unavailable = |e| self.unavailable(&e);
        let recorded = bounded(self.timeout, schema::recorded_version(conn))
            .await
            .map_err(unavailable)?;
        match recorded {
            None => {
                return Err(CatalogError::Unavailable(format!(
                    "{}: the control-plane schema is missing: run `silo control-plane init`",
                    self.endpoint
                )));
            }
            Some(v) if v < schema::latest_version() => {
                return Err(CatalogError::Unavailable(format!(
                    "{}: the control-plane schema is at version {v}, this silo needs {}: run `silo control-plane init`",
                    self.endpoint,
                    schema::latest_version()
                )));
            }
            Some(_) => {}
        }
        let raw = bounded(self.timeout, rows::read(conn))
            .await
            .map_err(unavailable)?;
        let loaded = rows::build(raw, &self.key, base).map_err(CatalogError::Rejected)?;
        let day = utc_day();
        let today = bounded(self.timeout, read_usage(conn, day))
            .await
            .map_err(unavailable)?;
        let mut state = self.state();
        state.seen = Some(loaded.version);
        state.tenant_ids = loaded.tenant_ids;
        state.seed = Some((day, today));
        Ok(loaded.config)
    }

    fn failed(&self, catalog: &Catalog, e: &DbError) -> CatalogError {
        catalog.health.failures.fetch_add(1, Ordering::Relaxed);
        if !catalog.health.unreachable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                control_plane = %self.endpoint,
                error = %e,
                "control plane unreachable: serving the last good route table until it answers again"
            );
        }
        self.unavailable(e)
    }

    fn succeeded(&self, catalog: &Catalog) {
        catalog.health.record_success();
        if catalog.health.unreachable.swap(false, Ordering::Relaxed) {
            tracing::info!(control_plane = %self.endpoint, "control plane reachable again");
        }
    }

    pub(super) async fn refresh(
        &self,
        catalog: &Catalog,
        ctx: &Context,
        forced: bool,
    ) -> Result<u64, CatalogError> {
        match self.check(catalog, ctx, forced).await? {
            Refreshed::Unchanged(v) | Refreshed::Installed(v) => Ok(v),
        }
    }

    /// Reads the catalog if its version moved (or `forced`) and installs it.
    async fn check(
        &self,
        catalog: &Catalog,
        ctx: &Context,
        forced: bool,
    ) -> Result<Refreshed, CatalogError> {
        let _one = self.refreshing.lock().await;
        let seen = self.state().seen;
        let read = bounded(self.timeout, async {
            let mut conn = self.pool.get_conn().await?;
            if !forced {
                let version: Option<u64> = conn.query_first(rows::VERSION_QUERY).await?;
                if version.is_some() && version == seen {
                    return Ok(None);
                }
            }
            rows::read(&mut conn).await.map(Some)
        })
        .await;
        let read = read.map_err(|e| self.failed(catalog, &e))?;
        self.succeeded(catalog);
        let Some(raw) = read else {
            return Ok(Refreshed::Unchanged(ctx.router.load().version));
        };
        let version = raw.version;
        let built = rows::build(raw, &self.key, &catalog.current());
        // A refused version is not read again until it changes.
        self.state().seen = Some(version);
        let loaded = built.map_err(|problems| {
            CatalogError::Rejected(format!(
                "control-plane catalog version {version}: {problems}"
            ))
        })?;
        let installed = catalog.install(ctx, loaded.config)?;
        self.state().tenant_ids.extend(loaded.tenant_ids);
        Ok(Refreshed::Installed(installed))
    }

    pub(super) async fn apply(
        &self,
        catalog: &Catalog,
        ctx: &Context,
        change: &Change,
        performed_by: &str,
    ) -> Result<Applied, CatalogError> {
        // Same checks and messages as for a file; nothing is written if
        // the running catalog says no.
        let next = change.apply_to(&catalog.current())?;
        let written = bounded(self.timeout, async {
            let mut conn = self.pool.get_conn().await?;
            write_change(&mut conn, change, performed_by).await
        })
        .await;
        written
            .map_err(|e| self.failed(catalog, &e))?
            .map_err(CatalogError::Invalid)?;
        let version = match self.refresh(catalog, ctx, true).await {
            Ok(version) => version,
            Err(e) => {
                // The change is committed; serve it now, the next poll
                // brings the rest of the control plane's catalog.
                tracing::warn!(change = %change.describe(), error = %e, "change written to the control plane but not read back; applied to the running table");
                catalog.install(ctx, next)?
            }
        };
        tracing::info!(change = %change.describe(), performed_by, version, "catalog change written to the control plane");
        Ok(Applied {
            version,
            persistence: "written to the control-plane database",
        })
    }

    pub(super) async fn events(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, CatalogError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let rows: Vec<mysql_async::Row> = bounded(self.timeout, async {
            let mut conn = self.pool.get_conn().await?;
            let select = "SELECT e.event_id, CAST(UNIX_TIMESTAMP(e.created_at) * 1000 AS UNSIGNED), \
                 t.tenant_slug, e.event_type, e.event_data, e.performed_by, e.reason \
                 FROM tenant_events e LEFT JOIN tenants t ON t.tenant_id = e.tenant_id";
            match tenant {
                Some(slug) => {
                    conn.exec(
                        format!("{select} WHERE t.tenant_slug = ? ORDER BY e.event_id DESC LIMIT ?"),
                        (slug, limit),
                    )
                    .await
                }
                None => {
                    conn.exec(format!("{select} ORDER BY e.event_id DESC LIMIT ?"), (limit,))
                        .await
                }
            }
        })
        .await
        .map_err(|e| self.unavailable(&e))?;
        Ok(rows.into_iter().filter_map(event_from_row).collect())
    }

    /// Gives each tenant's daily counter today's count read at start.
    fn seed_usage(&self, ctx: &Context) {
        let Some((day, counts)) = self.state().seed.take() else {
            return;
        };
        if day != utc_day() {
            return;
        }
        for (slug, count) in counts {
            ctx.tenants
                .of(&TenantId(slug.as_str().into()))
                .seed_today(count);
        }
    }

    /// Adds the queries counted since the last flush to today's usage rows.
    /// Returns how many tenants had new queries.
    pub(super) async fn flush_usage(
        &self,
        catalog: &Catalog,
        ctx: &Context,
    ) -> Result<usize, CatalogError> {
        let _one = self.flushing.lock().await;
        let pending: Vec<(String, String, u64, u64)> = {
            let state = self.state();
            ctx.tenants
                .snapshot()
                .into_iter()
                .filter_map(|(tenant, live)| {
                    let slug = tenant.0.to_string();
                    let total = live.queries.load(Ordering::Relaxed);
                    let delta =
                        total.checked_sub(state.flushed.get(&slug).copied().unwrap_or(0))?;
                    let id = state.tenant_ids.get(&slug)?.clone();
                    (delta > 0).then_some((slug, id, total, delta))
                })
                .collect()
        };
        if pending.is_empty() {
            return Ok(0);
        }
        let day = utc_day();
        for batch in pending.chunks(USAGE_BATCH) {
            let values =
                vec!["(?, DATE('1970-01-01') + INTERVAL ? DAY, ?)"; batch.len()].join(", ");
            let statement = format!(
                "INSERT INTO tenant_usage_metrics (tenant_id, metric_date, query_count) VALUES {values} \
                 ON DUPLICATE KEY UPDATE query_count = query_count + VALUES(query_count)"
            );
            let params: Vec<mysql_async::Value> = batch
                .iter()
                .flat_map(|(_, id, _, delta)| [id.as_str().into(), day.into(), (*delta).into()])
                .collect();
            let written = bounded(self.timeout, async {
                let mut conn = self.pool.get_conn().await?;
                conn.exec_drop(statement, params).await
            })
            .await;
            written.map_err(|e| self.failed(catalog, &e))?;
            self.succeeded(catalog);
            let mut state = self.state();
            for (slug, _, total, _) in batch {
                state.flushed.insert(slug.clone(), *total);
            }
        }
        Ok(pending.len())
    }
}

/// Today's query counts per tenant slug.
async fn read_usage(conn: &mut Conn, day: u64) -> Result<HashMap<String, u64>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT t.tenant_slug, m.query_count FROM tenant_usage_metrics m \
             JOIN tenants t ON t.tenant_id = m.tenant_id \
             WHERE m.metric_date = DATE('1970-01-01') + INTERVAL ? DAY",
            (day,),
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| mysql_async::from_row_opt::<(String, Option<u64>)>(row).ok())
        .map(|(slug, count)| (slug, count.unwrap_or(0)))
        .collect())
}

/// One change and its event row, in one transaction. `Ok(Err(_))`: the
/// row the change names is gone from the control plane.
async fn write_change(
    conn: &mut Conn,
    change: &Change,
    performed_by: &str,
) -> Result<Result<(), String>, mysql_async::Error> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let (tenant_id, mut data) = match change {
        Change::TenantPlan { tenant, plan } => {
            let Some((id, old)) = update_tenant(&mut tx, tenant, "subscription_plan", plan).await?
            else {
                return Ok(Err(format!("unknown tenant '{tenant}'")));
            };
            (
                Some(id),
                json!({ "subscription_plan": { "old": old, "new": plan } }),
            )
        }
        Change::TenantBackend { tenant, backend } => {
            let new = backend.to_string();
            let Some((id, old)) = update_tenant(&mut tx, tenant, "backend_id", &new).await? else {
                return Ok(Err(format!("unknown tenant '{tenant}'")));
            };
            let old = old.parse::<u64>().map_or_else(|_| json!(old), |n| json!(n));
            (
                Some(id),
                json!({ "backend_id": { "old": old, "new": backend } }),
            )
        }
        Change::TenantStatus { tenant, status } => {
            let new = status.to_string();
            let Some((id, old)) = update_tenant(&mut tx, tenant, "status", &new).await? else {
                return Ok(Err(format!("unknown tenant '{tenant}'")));
            };
            (Some(id), json!({ "status": { "old": old, "new": new } }))
        }
        Change::BackendDraining { backend, draining } => {
            let old: Option<bool> = tx
                .exec_first(
                    "SELECT draining FROM backends WHERE id = ? FOR UPDATE",
                    (backend,),
                )
                .await?;
            let Some(old) = old else {
                return Ok(Err(format!("unknown backend {backend}")));
            };
            tx.exec_drop(
                "UPDATE backends SET draining = ? WHERE id = ?",
                (draining, backend),
            )
            .await?;
            (
                None,
                json!({ "backend_id": backend, "draining": { "old": old, "new": draining } }),
            )
        }
    };
    data["change"] = json!(change.describe());
    let performed_by: String = performed_by.chars().take(255).collect();
    tx.exec_drop(
        "INSERT INTO tenant_events (tenant_id, event_type, event_data, performed_by) VALUES (?, ?, ?, ?)",
        (tenant_id, change.event_type(), data.to_string(), performed_by),
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Sets one column of a routed tenant's row; returns its id and the old
/// value, `None` for no such tenant.
async fn update_tenant(
    tx: &mut mysql_async::Transaction<'_>,
    slug: &str,
    column: &'static str,
    new: &str,
) -> Result<Option<(String, String)>, mysql_async::Error> {
    let row: Option<(String, Option<String>)> = tx
        .exec_first(
            format!(
                "SELECT tenant_id, CAST({column} AS CHAR) FROM tenants \
                 WHERE tenant_slug = ? AND status <> 'deleted' FOR UPDATE"
            ),
            (slug,),
        )
        .await?;
    let Some((id, old)) = row else {
        return Ok(None);
    };
    tx.exec_drop(
        format!("UPDATE tenants SET {column} = ? WHERE tenant_id = ?"),
        (new, &id),
    )
    .await?;
    Ok(Some((id, old.unwrap_or_default())))
}

fn event_from_row(row: mysql_async::Row) -> Option<Event> {
    type Cells = (
        u64,
        Option<u64>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (id, at, tenant, event_type, data, performed_by, reason) =
        mysql_async::from_row_opt::<Cells>(row).ok()?;
    let mut detail = data
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v.get("change").and_then(|c| c.as_str()).map(str::to_string))
        .or(data)
        .unwrap_or_default();
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        detail = format!("{detail} (reason: {reason})");
    }
    Some(Event {
        id,
        at_unix_ms: at.unwrap_or(0),
        tenant,
        event_type,
        detail,
        performed_by: performed_by.unwrap_or_default(),
    })
}

impl Catalog {
    pub(super) fn database_source(&self) -> Option<&Database> {
        match &self.source {
            Source::Database(db) => Some(db),
            _ => None,
        }
    }
}

/// Seeds today's query counts, then polls and flushes usage until the
/// server is gone.
pub(super) fn start(catalog: &Arc<Catalog>, ctx: Weak<Context>) {
    if let (Some(db), Some(ctx)) = (catalog.database_source(), ctx.upgrade()) {
        // Before the first client is served: the spawned tasks start later.
        db.seed_usage(&ctx);
    }
    tokio::spawn(watch(catalog.clone(), ctx));
}

pub(super) async fn watch(catalog: Arc<Catalog>, ctx: Weak<Context>) {
    let Some(db) = catalog.database_source() else {
        return;
    };
    tokio::join!(poll(&catalog, db, &ctx), flush(&catalog, db, &ctx));
}

async fn poll(catalog: &Catalog, db: &Database, ctx: &Weak<Context>) {
    let mut tick = tokio::time::interval(db.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        match db.check(catalog, &ctx, false).await {
            Ok(Refreshed::Unchanged(_)) => {}
            Ok(Refreshed::Installed(version)) => {
                catalog.health.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(control_plane = %db.endpoint, version, "catalog reloaded from the control plane");
            }
            Err(CatalogError::Rejected(problems)) => {
                catalog.health.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(control_plane = %db.endpoint, "catalog refused, the running table stays: {problems}");
            }
            // Logged once per outage by `failed`.
            Err(CatalogError::Unavailable(_)) => {}
            Err(e) => tracing::error!(control_plane = %db.endpoint, "catalog not installed: {e}"),
        }
    }
}

async fn flush(catalog: &Catalog, db: &Database, ctx: &Weak<Context>) {
    let mut tick = tokio::time::interval(db.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        // Failures are counted and logged once per outage by `failed`; the
        // deltas stay and go with the next flush.
        let _ = db.flush_usage(catalog, &ctx).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_never_repeat_the_url() {
        for url in [
            "mysql://root:Pw-S3cret@127.0.0.1:3306",
            "mysql://root:Pw-S3cret@127.0.0.1:99999/cp",
            "postgres://root:Pw-S3cret@127.0.0.1/cp",
            "mysql://root:Pw-S3cret@127.0.0.1/cp?pool_min=Pw-S3cret",
            "Pw-S3cret",
        ] {
            let err = parse_url(&Secret::new(url.to_string())).unwrap_err();
            assert!(err.starts_with("control_plane.url"), "{err}");
            assert!(!err.contains("Pw-S3cret"), "{err}");
        }
        let opts = parse_url(&Secret::new(
            "mysql://silo:Pw-S3cret@cp.internal:3307/control".to_string(),
        ))
        .unwrap();
        assert_eq!(endpoint(&opts), "cp.internal:3307/control");
    }
}
