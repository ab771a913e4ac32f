//! Reading the catalog: the four catalog tables, read in one consistent
//! snapshot together with the catalog version, turned into a [`Config`]
//! validated whole. Every problem names its table, its row (id, slug or
//! username) and its column.

use std::collections::HashMap;

use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Row, TxOpts};

use crate::config::{
    BackendConfig, Config, Limit, LimitOverrides, PlanConfig, PoolMode, TenantConfig, TenantStatus,
    UserConfig,
};
use crate::secret::Secret;
use crate::secret_box::SecretKey;

pub(super) const VERSION_QUERY: &str = "SELECT version FROM silo_catalog_version WHERE id = 1";

const BACKENDS: &str = "SELECT id, host, port, max_connections, connect_timeout_ms, \
     idle_timeout_ms, draining FROM backends ORDER BY id";
const PLANS: &str = "SELECT plan_name, weight, max_client_connections, max_backend_leases, \
     queue_timeout_ms, max_queries_per_second, burst, max_query_time_ms, max_queries_per_day, \
     pool_mode FROM subscription_plans ORDER BY plan_name";
const TENANTS: &str = "SELECT tenant_id, tenant_slug, status, subscription_plan, backend_id, \
     db_name, db_user, db_password_encrypted, limit_overrides, pool_mode \
     FROM tenants WHERE status <> 'deleted' ORDER BY tenant_slug";
const USERS: &str = "SELECT t.tenant_slug, u.username, u.password_hash \
     FROM tenant_users u JOIN tenants t ON t.tenant_id = u.tenant_id \
     WHERE t.status <> 'deleted' ORDER BY t.tenant_slug, u.username";

/// The catalog's rows as read, before conversion.
pub(super) struct RawRows {
    pub version: u64,
    backends: Vec<Row>,
    plans: Vec<Row>,
    tenants: Vec<Row>,
    users: Vec<Row>,
}

/// Reads the version and the four tables in one read-only snapshot, so the
/// rows are exactly those of that version.
pub(super) async fn read(conn: &mut Conn) -> Result<RawRows, mysql_async::Error> {
    let mut options = TxOpts::default();
    options.with_consistent_snapshot(true).with_readonly(true);
    let mut tx = conn.start_transaction(options).await?;
    let version: Option<u64> = tx.query_first(VERSION_QUERY).await?;
    let backends = tx.query(BACKENDS).await?;
    let plans = tx.query(PLANS).await?;
    let tenants = tx.query(TENANTS).await?;
    let users = tx.query(USERS).await?;
    tx.commit().await?;
    Ok(RawRows {
        // No row: init was interrupted; treated as version 0.
        version: version.unwrap_or(0),
        backends,
        plans,
        tenants,
        users,
    })
}

/// A catalog built from the rows.
pub(super) struct Loaded {
    pub version: u64,
    pub config: Config,
    /// tenant slug → tenant_id, for usage rows and write-through.
    pub tenant_ids: HashMap<String, String>,
}

/// Where a problem was found, for messages.
#[derive(Default)]
struct Labels {
    backends: Vec<String>,
    plans: Vec<String>,
    tenants: Vec<String>,
    users: Vec<String>,
}

/// Turns the rows into `base` with their catalog, validated whole.
///
/// # Errors
/// Every problem found, one per line-free clause, joined with `; `.
pub(super) fn build(raw: RawRows, key: &SecretKey, base: &Config) -> Result<Loaded, String> {
    let mut problems = Vec::new();
    let mut labels = Labels::default();

    let mut backends = Vec::new();
    for row in raw.backends {
        let mut r = Cells::new(row, &mut problems);
        let id: Option<u32> = r.get(0, "id");
        let label = format!(
            "backends row id={}",
            id.map_or("?".into(), |i| i.to_string())
        );
        r.label = label.clone();
        let host: Option<String> = r.get(1, "host");
        let port: Option<u16> = r.get(2, "port");
        let max_connections: Option<u32> = r.get(3, "max_connections");
        let connect_timeout_ms: Option<u64> = r.get(4, "connect_timeout_ms");
        let idle_timeout_ms: Option<u64> = r.get(5, "idle_timeout_ms");
        let draining: Option<bool> = r.get(6, "draining");
        if let (
            Some(id),
            Some(host),
            Some(port),
            Some(max_connections),
            Some(connect_timeout_ms),
            Some(idle_timeout_ms),
            Some(draining),
        ) = (
            id,
            host,
            port,
            max_connections,
            connect_timeout_ms,
            idle_timeout_ms,
            draining,
        ) {
            labels.backends.push(label);
            backends.push(BackendConfig {
                id,
                host,
                port,
                max_connections,
                connect_timeout_ms,
                idle_timeout_ms,
                draining,
            });
        }
    }

    let mut plans = Vec::new();
    for row in raw.plans {
        let mut r = Cells::new(row, &mut problems);
        let name: Option<String> = r.get(0, "plan_name");
        let label = format!(
            "subscription_plans row '{}'",
            name.as_deref().unwrap_or("?")
        );
        r.label = label.clone();
        let weight: Option<u32> = r.get(1, "weight");
        let limit = |r: &mut Cells<'_>, i: usize, column: &str| {
            r.get::<Option<u64>>(i, column)
                .map(|v| v.map_or(Limit::Unlimited, Limit::Value))
        };
        let max_client_connections = limit(&mut r, 2, "max_client_connections");
        let max_backend_leases = limit(&mut r, 3, "max_backend_leases");
        let queue_timeout_ms: Option<u64> = r.get(4, "queue_timeout_ms");
        let max_queries_per_second = limit(&mut r, 5, "max_queries_per_second");
        let burst = limit(&mut r, 6, "burst");
        let max_query_time_ms = limit(&mut r, 7, "max_query_time_ms");
        let max_queries_per_day = limit(&mut r, 8, "max_queries_per_day");
        let pool_mode = r.pool_mode(9);
        if let (
            Some(name),
            Some(weight),
            Some(max_client_connections),
            Some(max_backend_leases),
            Some(queue_timeout_ms),
            Some(max_queries_per_second),
            Some(burst),
            Some(max_query_time_ms),
            Some(max_queries_per_day),
            Some(pool_mode),
        ) = (
            name,
            weight,
            max_client_connections,
            max_backend_leases,
            queue_timeout_ms,
            max_queries_per_second,
            burst,
            max_query_time_ms,
            max_queries_per_day,
            pool_mode,
        ) {
            labels.plans.push(label);
            plans.push(PlanConfig {
                name,
                weight,
                max_client_connections,
                max_backend_leases,
                queue_timeout_ms,
                max_queries_per_second,
                burst,
                max_query_time_ms,
                max_queries_per_day,
                pool_mode,
            });
        }
    }

    let mut tenants = Vec::new();
    let mut tenant_ids = HashMap::new();
    for row in raw.tenants {
        let mut r = Cells::new(row, &mut problems);
        let id: Option<String> = r.get(0, "tenant_id");
        let slug: Option<String> = r.get(1, "tenant_slug");
        let label = match (&slug, &id) {
            (Some(slug), _) => format!("tenants row '{slug}'"),
            (None, Some(id)) => format!("tenants row tenant_id={id}"),
            (None, None) => "tenants row ?".to_string(),
        };
        r.label = label.clone();
        let status = r.get::<String>(2, "status").and_then(|s| {
            let parsed = parse_word::<TenantStatus>(&s);
            if parsed.is_none() {
                r.problem("status", format!("unknown status '{s}'"));
            }
            parsed
        });
        let plan: Option<String> = r.get(3, "subscription_plan");
        let backend: Option<u32> = r.get(4, "backend_id");
        let database: Option<String> = r.get(5, "db_name");
        let db_user: Option<String> = r.get(6, "db_user");
        let sealed: Option<Option<Vec<u8>>> = r.get(7, "db_password_encrypted");
        let db_password = match (sealed, status) {
            (Some(Some(sealed)), _) => match key.open(&sealed) {
                Ok(password) => Some(password),
                Err(e) => {
                    r.problem("db_password_encrypted", e.to_string());
                    None
                }
            },
            // Not routed yet: a login gets "being provisioned", never a backend.
            (Some(None), Some(TenantStatus::Provisioning)) => Some(Secret::new(String::new())),
            (Some(None), _) => {
                r.problem(
                    "db_password_encrypted",
                    "is NULL (only a tenant still provisioning may have no password)",
                );
                None
            }
            (None, _) => None,
        };
        let limits = r
            .get::<Option<String>>(8, "limit_overrides")
            .and_then(|text| match text.as_deref().map(str::trim) {
                None | Some("" | "null") => Some(LimitOverrides::default()),
                Some(json) => match serde_json::from_str::<LimitOverrides>(json) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        r.problem("limit_overrides", format!("{e}"));
                        None
                    }
                },
            });
        let pool_mode = r.pool_mode(9);
        if let (
            Some(id),
            Some(slug),
            Some(status),
            Some(plan),
            Some(backend),
            Some(database),
            Some(db_user),
            Some(db_password),
            Some(limits),
            Some(pool_mode),
        ) = (
            id,
            slug,
            status,
            plan,
            backend,
            database,
            db_user,
            db_password,
            limits,
            pool_mode,
        ) {
            labels.tenants.push(label);
            tenant_ids.insert(slug.clone(), id);
            tenants.push(TenantConfig {
                slug,
                status,
                plan,
                backend,
                database,
                db_user,
                db_password,
                pool_mode,
                limits,
            });
        }
    }

    let mut users = Vec::new();
    for row in raw.users {
        let mut r = Cells::new(row, &mut problems);
        let tenant: Option<String> = r.get(0, "tenant_slug");
        let username: Option<String> = r.get(1, "username");
        let label = format!(
            "tenant_users row '{}' of tenant '{}'",
            username.as_deref().unwrap_or("?"),
            tenant.as_deref().unwrap_or("?")
        );
        r.label = label.clone();
        let hash: Option<String> = r.get(2, "password_hash");
        if let (Some(tenant), Some(username), Some(hash)) = (tenant, username, hash) {
            labels.users.push(label);
            users.push(UserConfig {
                username,
                tenant,
                password: None,
                password_hash: Some(Secret::new(hash)),
            });
        }
    }

    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let config = base
        .with_catalog(backends, plans, tenants, users)
        .map_err(|errors| {
            errors
                .errors
                .iter()
                .map(|e| name_row(&e.key, &e.message, &labels))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    Ok(Loaded {
        version: raw.version,
        config,
        tenant_ids,
    })
}

/// A word of the configuration's vocabulary (`active`, `session`…), read
/// by the enum's own `Deserialize` so a file and the control plane accept
/// the same words.
fn parse_word<T: serde::de::DeserializeOwned>(word: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let word: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        word.into_deserializer();
    T::deserialize(word).ok()
}

/// The cells of one row, taken by index; a cell that is missing or of
/// the wrong type is a problem of the row, never a panic.
struct Cells<'a> {
    row: Row,
    label: String,
    problems: &'a mut Vec<String>,
}

impl<'a> Cells<'a> {
    fn new(row: Row, problems: &'a mut Vec<String>) -> Self {
        Cells {
            row,
            label: String::new(),
            problems,
        }
    }

    fn problem(&mut self, column: &str, message: impl std::fmt::Display) {
        self.problems
            .push(format!("{}: {column}: {message}", self.label));
    }

    fn get<T: FromValue>(&mut self, index: usize, column: &str) -> Option<T> {
        match self.row.take_opt::<T, usize>(index) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.problem(column, "NULL, out of range or of the wrong type");
                None
            }
            None => {
                self.problem(column, "missing from the result");
                None
            }
        }
    }

    /// An optional `pool_mode` cell: `Some(None)` when NULL.
    fn pool_mode(&mut self, index: usize) -> Option<Option<PoolMode>> {
        let Some(word) = self.get::<Option<String>>(index, "pool_mode")? else {
            return Some(None);
        };
        let parsed = parse_word::<PoolMode>(&word);
        if parsed.is_none() {
            self.problem("pool_mode", format!("unknown pool mode '{word}'"));
        }
        parsed.map(Some)
    }
}

/// A validation problem keyed like the configuration file (`tenants[2].plan`)
/// said of the row and column it came from.
fn name_row(key: &str, message: &str, labels: &Labels) -> String {
    let parsed = key.split_once('[').and_then(|(section, rest)| {
        let (index, field) = rest.split_once(']')?;
        let index: usize = index.parse().ok()?;
        let field = field.strip_prefix('.').unwrap_or(field);
        let rows = match section {
            "backends" => &labels.backends,
            "plans" => &labels.plans,
            "tenants" => &labels.tenants,
            "users" => &labels.users,
            _ => return None,
        };
        Some((section, rows.get(index)?, field))
    });
    let Some((section, label, field)) = parsed else {
        return if key.is_empty() {
            message.to_string()
        } else {
            format!("{key}: {message}")
        };
    };
    let column = match (section, field) {
        (_, "") => return format!("{label}: {message}"),
        ("plans", "name") => "plan_name".to_string(),
        ("tenants", "slug") => "tenant_slug".to_string(),
        ("tenants", "plan") => "subscription_plan".to_string(),
        ("tenants", "backend") => "backend_id".to_string(),
        ("tenants", "database") => "db_name".to_string(),
        ("tenants", "db_password") => "db_password_encrypted".to_string(),
        ("tenants", f) if f.starts_with("limits.") => {
            format!("limit_overrides.{}", &f["limits.".len()..])
        }
        ("users", "tenant") => "tenant_id".to_string(),
        (_, f) => f.to_string(),
    };
    format!("{label}: {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_become_table_row_and_column() {
        let labels = Labels {
            tenants: vec!["tenants row 'acme'".into()],
            users: vec!["tenant_users row 'app' of tenant 'acme'".into()],
            ..Labels::default()
        };
        assert_eq!(
            name_row("tenants[0].plan", "unknown plan \"gold\"", &labels),
            "tenants row 'acme': subscription_plan: unknown plan \"gold\""
        );
        assert_eq!(
            name_row("tenants[0].limits.burst", "must be at least 1", &labels),
            "tenants row 'acme': limit_overrides.burst: must be at least 1"
        );
        assert_eq!(
            name_row("users[0]", "password_hash must be '*'", &labels),
            "tenant_users row 'app' of tenant 'acme': password_hash must be '*'"
        );
        assert_eq!(
            name_row("pool.mode", "bad", &labels),
            "pool.mode: bad",
            "other keys are kept"
        );
    }

    #[test]
    fn status_and_pool_mode_words_are_those_of_the_file() {
        assert_eq!(
            parse_word::<TenantStatus>("pending_deletion"),
            Some(TenantStatus::PendingDeletion)
        );
        assert_eq!(
            parse_word::<PoolMode>("transaction"),
            Some(PoolMode::Transaction)
        );
        assert_eq!(parse_word::<TenantStatus>("deleted"), None);
        assert_eq!(parse_word::<PoolMode>("Session"), None);
    }

    #[test]
    fn overrides_parse_from_json() {
        let o: LimitOverrides =
            serde_json::from_str(r#"{"max_client_connections": 30, "burst": "unlimited"}"#)
                .unwrap();
        assert_eq!(o.max_client_connections, Some(Limit::Value(30)));
        assert_eq!(o.burst, Some(Limit::Unlimited));
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"max_conns": 3}"#).is_err());
    }
}
