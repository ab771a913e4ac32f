//! The route table: everything a login or a lease needs to know about
//! tenants, their users, plans and backends, built whole from a [`Config`]
//! and never mutated afterwards.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Identity;
use crate::config::{
    BackendConfig, Config, IdentificationMethod, PlanConfig, PoolMode, TenantStatus,
};
use crate::limits::Limits;
use crate::protocol::auth::NativeHash;
use crate::protocol::caching_sha2::Sha2Digest;

/// Stable key of a tenant across route-table swaps (its slug).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Arc<str>);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
pub struct TenantRoute {
    pub id: TenantId,
    pub status: TenantStatus,
    pub plan: Arc<PlanConfig>,
    pub backend: u32,
    /// The tenant's, else its plan's, else `[pool] mode`.
    pub pool_mode: PoolMode,
    /// The plan's limits with the tenant's overrides.
    pub limits: Limits,
    /// Who silo logs in as on the backend: the tenant's own database user,
    /// whose grants cover the tenant's database alone.
    pub identity: Arc<Identity>,
}

impl TenantRoute {
    pub fn slug(&self) -> &str {
        &self.id.0
    }
}

pub type BackendRoute = Arc<BackendConfig>;

/// A user's stored password forms.
#[derive(Debug)]
struct UserAuth {
    /// SHA1(SHA1(password)); `None` for an empty password.
    native: Option<NativeHash>,
    /// SHA256(SHA256(password)) for caching_sha2_password's fast path, known
    /// at build only for users configured with a clear-text password.
    sha2: Option<Sha2Digest>,
}

#[derive(Debug)]
pub struct RouteTable {
    pub version: u64,
    pub identification: Vec<IdentificationMethod>,
    tenants: HashMap<Arc<str>, Arc<TenantRoute>>,
    /// Database name → tenant, for names that belong to one tenant only.
    by_database: HashMap<String, Arc<str>>,
    /// (tenant slug, username) → what its password is checked against.
    users: HashMap<(Arc<str>, String), UserAuth>,
    /// Username → its tenant, for usernames that belong to one tenant only.
    unique_users: HashMap<String, Arc<str>>,
    backends: HashMap<u32, BackendRoute>,
}

impl RouteTable {
    /// Builds a table from a validated configuration.
    pub fn from_config(config: &Config, version: u64) -> RouteTable {
        let plans: HashMap<&str, Arc<PlanConfig>> = config
            .plans
            .iter()
            .map(|p| (p.name.as_str(), Arc::new(p.clone())))
            .collect();
        let mut tenants = HashMap::new();
        let mut databases: HashMap<String, Vec<Arc<str>>> = HashMap::new();
        for t in &config.tenants {
            let slug: Arc<str> = Arc::from(t.slug.as_str());
            let Some(plan) = plans.get(t.plan.as_str()) else {
                continue; // validation guarantees the plan exists
            };
            databases
                .entry(t.database.clone())
                .or_default()
                .push(slug.clone());
            tenants.insert(
                slug.clone(),
                Arc::new(TenantRoute {
                    id: TenantId(slug),
                    status: t.status,
                    plan: plan.clone(),
                    backend: t.backend,
                    pool_mode: t.pool_mode.or(plan.pool_mode).unwrap_or(config.pool.mode),
                    limits: Limits::resolve(plan, &t.limits),
                    identity: Arc::new(Identity::new(
                        &t.db_user,
                        t.db_password.clone(),
                        &t.database,
                    )),
                }),
            );
        }
        let mut users = HashMap::new();
        let mut user_tenants: HashMap<String, Vec<Arc<str>>> = HashMap::new();
        for u in &config.users {
            let Some((slug, _)) = tenants.get_key_value(u.tenant.as_str()) else {
                continue;
            };
            let native = u.native_hash().unwrap_or(None);
            let sha2 = u
                .password
                .as_ref()
                .filter(|p| !p.expose().is_empty())
                .map(|p| Sha2Digest::from_password(p.expose().as_bytes()));
            users.insert(
                (slug.clone(), u.username.clone()),
                UserAuth { native, sha2 },
            );
            user_tenants
                .entry(u.username.clone())
                .or_default()
                .push(slug.clone());
        }
        RouteTable {
            version,
            identification: config.identification.order.clone(),
            tenants,
            by_database: only_unique(databases),
            users,
            unique_users: only_unique(user_tenants),
            backends: config
                .backends
                .iter()
                .map(|b| (b.id, Arc::new(b.clone())))
                .collect(),
        }
    }

    pub fn tenant(&self, slug: &str) -> Option<&Arc<TenantRoute>> {
        self.tenants.get(slug)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantRoute>> {
        self.tenants.values()
    }

    pub fn tenant_for_database(&self, database: &str) -> Option<&Arc<TenantRoute>> {
        self.by_database
            .get(database)
            .and_then(|slug| self.tenants.get(slug))
    }

    pub fn tenant_for_unique_user(&self, username: &str) -> Option<&Arc<TenantRoute>> {
        self.unique_users
            .get(username)
            .and_then(|slug| self.tenants.get(slug))
    }

    /// The password hash of `username` in `tenant`: `None` if there is no such
    /// user, `Some(None)` for a user with an empty password.
    pub fn user(&self, tenant: &TenantId, username: &str) -> Option<Option<&NativeHash>> {
        self.users
            .get(&(tenant.0.clone(), username.to_string()))
            .map(|u| u.native.as_ref())
    }

    /// The caching_sha2_password fast-path digest of `username` in `tenant`,
    /// when the configuration gave its password in clear text.
    pub fn user_sha2(&self, tenant: &TenantId, username: &str) -> Option<&Sha2Digest> {
        self.users
            .get(&(tenant.0.clone(), username.to_string()))
            .and_then(|u| u.sha2.as_ref())
    }

    pub fn backend(&self, id: u32) -> Option<&BackendRoute> {
        self.backends.get(&id)
    }

    pub fn backends(&self) -> impl Iterator<Item = &BackendRoute> {
        self.backends.values()
    }
}

fn only_unique(map: HashMap<String, Vec<Arc<str>>>) -> HashMap<String, Arc<str>> {
    map.into_iter()
        .filter_map(|(k, mut v)| (v.len() == 1).then(|| (k, v.remove(0))))
        .collect()
}
