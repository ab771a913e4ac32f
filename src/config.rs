//! The TOML configuration: `read → toml (unknown keys refused) → validate → Config`.
//!
//! Only [`Config::from_toml`] builds a [`Config`], and it checks the whole file,
//! collecting every problem with the key it concerns, so an operator fixes a
//! file in one pass. A missing file is an error, never a fall-back to defaults.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::auth::NativeHash;
use crate::secret::Secret;

/// A validated configuration. Fields are public for reading; construction
/// goes through [`Config::from_toml`] or [`Config::load`] only.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub runtime: RuntimeConfig,
    pub pool: PoolConfig,
    pub identification: IdentificationConfig,
    pub tls: Option<TlsConfig>,
    pub auth: AuthConfig,
    /// The control-plane database; without it the file's own tenants,
    /// plans, users and backends are the catalog.
    pub control_plane: Option<ControlPlaneConfig>,
    /// The admin SQL port; off without this section.
    pub admin: Option<AdminConfig>,
    /// The Prometheus HTTP endpoint; off without this section.
    pub metrics: Option<MetricsConfig>,
    pub health: HealthConfig,
    pub shutdown: ShutdownConfig,
    pub backends: Vec<BackendConfig>,
    pub plans: Vec<PlanConfig>,
    pub tenants: Vec<TenantConfig>,
    pub users: Vec<UserConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: ListenConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    pool: PoolConfig,
    #[serde(default)]
    identification: IdentificationConfig,
    tls: Option<TlsConfig>,
    #[serde(default)]
    auth: AuthConfig,
    control_plane: Option<ControlPlaneConfig>,
    admin: Option<AdminConfig>,
    metrics: Option<MetricsConfig>,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    shutdown: ShutdownConfig,
    #[serde(default)]
    backends: Vec<BackendConfig>,
    #[serde(default)]
    plans: Vec<PlanConfig>,
    #[serde(default)]
    tenants: Vec<TenantConfig>,
    #[serde(default)]
    users: Vec<UserConfig>,
    /// Refuse catalog sections next to `[control_plane]`: true for a file,
    /// false for a catalog that came from the control plane.
    #[serde(skip_deserializing, default = "default_true")]
    check_file_catalog: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// The MySQL-protocol listener for applications.
    #[serde(default = "default_mysql_listen")]
    pub mysql: SocketAddr,
}

fn default_mysql_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6033))
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            mysql: default_mysql_listen(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads serving clients, each with its own single-threaded runtime;
    /// 0 means one per CPU core.
    #[serde(default)]
    pub threads: usize,
}

impl RuntimeConfig {
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// A backend connection is leased to a client for its whole session.
    Session,
    /// A backend connection is leased per command and kept only while the
    /// session holds state on it (a transaction, locks, temporary tables…).
    Transaction,
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_pool_mode")]
    pub mode: PoolMode,
    /// How long a command may wait for a backend connection when the pool is full.
    #[serde(default = "default_lease_timeout_ms")]
    pub lease_timeout_ms: u64,
    /// How long the COM_RESET_CONNECTION of a released connection may take.
    #[serde(default = "default_reset_timeout_ms")]
    pub reset_timeout_ms: u64,
    /// Backend connections older than this are closed on release.
    #[serde(default = "default_max_lifetime_ms")]
    pub max_lifetime_ms: u64,
    /// Prepared statements kept per backend connection; past it the least
    /// recently used is closed (keep it well under the server's
    /// `max_prepared_stmt_count` / max_connections).
    #[serde(default = "default_statement_cache_size")]
    pub statement_cache_size: usize,
}

fn default_pool_mode() -> PoolMode {
    PoolMode::Transaction
}
fn default_statement_cache_size() -> usize {
    // × a backend's max_connections should stay under the server's
    // max_prepared_stmt_count (16382 by default).
    128
}
fn default_lease_timeout_ms() -> u64 {
    5_000
}
fn default_reset_timeout_ms() -> u64 {
    2_000
}
fn default_max_lifetime_ms() -> u64 {
    3_600_000
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            mode: default_pool_mode(),
            lease_timeout_ms: default_lease_timeout_ms(),
            reset_timeout_ms: default_reset_timeout_ms(),
            max_lifetime_ms: default_max_lifetime_ms(),
            statement_cache_size: default_statement_cache_size(),
        }
    }
}

impl PoolConfig {
    pub fn lease_timeout(&self) -> Duration {
        Duration::from_millis(self.lease_timeout_ms)
    }
    pub fn reset_timeout(&self) -> Duration {
        Duration::from_millis(self.reset_timeout_ms)
    }
    pub fn max_lifetime(&self) -> Duration {
        Duration::from_millis(self.max_lifetime_ms)
    }
}

/// `[control_plane]`: tenants, plans, users and backends are read from the
/// control-plane database instead of this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// `mysql://user:password@host:port/database`; never logged.
    pub url: Secret<String>,
    /// How often the route-table version is polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often today's per-tenant query counts are written to
    /// `tenant_usage_metrics`.
    #[serde(default = "default_usage_flush_interval_ms")]
    pub usage_flush_interval_ms: u64,
    /// File holding the AES-256-GCM key of tenant database passwords;
    /// without it the key comes from `SILO_SECRET_KEY`.
    pub secret_key_file: Option<PathBuf>,
    /// Bound on connecting to and querying the control plane.
    #[serde(default = "default_control_plane_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    1_000
}
fn default_usage_flush_interval_ms() -> u64 {
    10_000
}
fn default_control_plane_timeout_ms() -> u64 {
    3_000
}

impl ControlPlaneConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[admin]`: the MySQL-protocol admin port and its own credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    pub user: String,
    /// Clear-text password, hashed at load.
    pub password: Option<Secret<String>>,
    /// MariaDB `PASSWORD()` form: `*` and 40 hex digits.
    pub password_hash: Option<Secret<String>>,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6032))
}

impl AdminConfig {
    /// SHA1(SHA1(password)), as MariaDB keeps it.
    /// Read as a user's is, except that an empty password is refused.
    pub fn native_hash(&self) -> Result<NativeHash, String> {
        let required = || "a non-empty password or a password_hash is required".to_string();
        if self.password.is_none() && self.password_hash.is_none() {
            return Err(required());
        }
        stored_native_hash(&self.password, &self.password_hash)?.ok_or_else(required)
    }
}

/// `[metrics]`: the Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// Tenants that get their own `tenant` label; the others are summed
    /// per plan, so thousands of tenants do not flood Prometheus.
    #[serde(default = "default_max_tenant_labels")]
    pub max_tenant_labels: usize,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_max_tenant_labels() -> usize {
    100
}

/// `[health]`: backend health checks through a side connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// A check that takes longer has failed.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed checks before the backend is marked down.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// The account the check logs in as, with an empty password. Create
    /// it on each backend (`CREATE USER 'silo_health'@'<silo host>'`, no
    /// grants) and the checks leave no trace in the server's error log; a
    /// check refused with "access denied" still proves the server answers.
    #[serde(default = "default_health_user")]
    pub user: String,
}

fn default_health_interval_ms() -> u64 {
    1_000
}
fn default_health_timeout_ms() -> u64 {
    1_000
}
fn default_down_after() -> u32 {
    2
}
fn default_health_user() -> String {
    "silo_health".to_string()
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_health_interval_ms(),
            timeout_ms: default_health_timeout_ms(),
            down_after: default_down_after(),
            user: default_health_user(),
        }
    }
}

impl HealthConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[shutdown]`: what SIGTERM / SIGINT wait for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// In-flight statements and open transactions get this long to finish
    /// after the listener closes; then every connection is closed.
    #[serde(default = "default_shutdown_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_shutdown_deadline_ms() -> u64 {
    30_000
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            deadline_ms: default_shutdown_deadline_ms(),
        }
    }
}

impl ShutdownConfig {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// Client authentication: the RSA key of caching_sha2_password's full
/// authentication over plain TCP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM private key (PKCS#8 or PKCS#1). Without it a key is generated at
    /// first need, so it changes at every restart.
    pub rsa_private_key: Option<PathBuf>,
    /// `false`: no RSA exchange; a first caching_sha2_password login must
    /// come over TLS (later ones take the fast path on any transport).
    #[serde(default = "default_true")]
    pub rsa_key_exchange: bool,
}

fn default_true() -> bool {
    true
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            rsa_private_key: None,
            rsa_key_exchange: true,
        }
    }
}

/// One way of telling which tenant a login belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentificationMethod {
    /// Connect attribute `tenant`.
    ConnectAttribute,
    /// First label of the TLS server name (`acme.db.example.com` → `acme`).
    Sni,
    /// Text after the last `.` of the username (`app.acme` → `acme`).
    UsernameSuffix,
    /// A username that belongs to exactly one tenant in the users table.
    UserTable,
    /// The default database named in the handshake.
    Database,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentificationConfig {
    #[serde(default = "default_identification_order")]
    pub order: Vec<IdentificationMethod>,
}

fn default_identification_order() -> Vec<IdentificationMethod> {
    use IdentificationMethod::*;
    vec![ConnectAttribute, Sni, UsernameSuffix, UserTable, Database]
}

impl Default for IdentificationConfig {
    fn default() -> Self {
        Self {
            order: default_identification_order(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain offered to clients that send an SSLRequest.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// Refuse logins that did not upgrade to TLS.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub id: u32,
    pub host: String,
    pub port: u16,
    /// Cap on connections silo opens to this server, all tenants together.
    pub max_connections: u32,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Idle pooled connections older than this are closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Out of rotation: no new leases, idle connections closed, sessions
    /// pinned to it finish there.
    #[serde(default)]
    pub draining: bool,
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}

impl BackendConfig {
    /// Whether a pool built for `self` can serve `other` as is: everything
    /// but `draining`, which a pool applies live.
    pub fn same_server(&self, other: &BackendConfig) -> bool {
        (
            &self.host,
            self.port,
            self.max_connections,
            self.connect_timeout_ms,
            self.idle_timeout_ms,
        ) == (
            &other.host,
            other.port,
            other.max_connections,
            other.connect_timeout_ms,
            other.idle_timeout_ms,
        )
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// A plan limit: a number, or the string `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Limit::Value(n)),
            Raw::Word(w) if w == "unlimited" => Ok(Limit::Unlimited),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a non-negative number or \"unlimited\", found \"{w}\""
            ))),
        }
    }
}

/// A plan's limits. Enforced by the limits layer; parsed and validated here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    /// Share of a saturated backend relative to other plans.
    pub weight: u32,
    pub max_client_connections: Limit,
    pub max_backend_leases: Limit,
    pub queue_timeout_ms: u64,
    pub max_queries_per_second: Limit,
    pub burst: Limit,
    pub max_query_time_ms: Limit,
    pub max_queries_per_day: Limit,
    /// Overrides `[pool] mode` for the plan's tenants.
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
    Provisioning,
    Paused,
    PendingDeletion,
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Paused => "paused",
            TenantStatus::PendingDeletion => "pending_deletion",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub slug: String,
    pub status: TenantStatus,
    pub plan: String,
    pub backend: u32,
    pub database: String,
    pub db_user: String,
    pub db_password: Secret<String>,
    /// Overrides the plan's and `[pool] mode` for this tenant.
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Overrides of the plan's limits for this tenant alone.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// A tenant's exceptions to its plan (`limits = { max_client_connections = 30 }`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub max_client_connections: Option<Limit>,
    pub max_backend_leases: Option<Limit>,
    pub queue_timeout_ms: Option<u64>,
    pub max_queries_per_second: Option<Limit>,
    pub burst: Option<Limit>,
    pub max_query_time_ms: Option<Limit>,
    pub max_queries_per_day: Option<Limit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub tenant: String,
    /// Clear-text password; hashed at load, never kept in clear after that.
    pub password: Option<Secret<String>>,
    /// MariaDB `PASSWORD()` form: `*` and 40 hex digits of SHA1(SHA1(password)).
    pub password_hash: Option<Secret<String>>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret::new)
    }
}

impl UserConfig {
    /// The stored form of the password: SHA1(SHA1(password)), as MariaDB keeps it.
    /// `None` for a user declared with an empty password.
    pub fn native_hash(&self) -> Result<Option<NativeHash>, String> {
        stored_native_hash(&self.password, &self.password_hash)
    }
}

/// SHA1(SHA1(password)) from a clear-text password or MariaDB's `PASSWORD()`
/// form, whichever of the two is given; `None` for an empty password.
fn stored_native_hash(
    password: &Option<Secret<String>>,
    password_hash: &Option<Secret<String>>,
) -> Result<Option<NativeHash>, String> {
    match (password, password_hash) {
        (Some(p), None) if p.expose().is_empty() => Ok(None),
        (Some(p), None) => Ok(Some(NativeHash::from_password(p.expose().as_bytes()))),
        (None, Some(h)) => NativeHash::parse_mariadb_hex(h.expose())
            .map(Some)
            .ok_or_else(|| "password_hash must be '*' followed by 40 hex digits".to_string()),
        (Some(_), Some(_)) => Err("give either password or password_hash, not both".into()),
        (None, None) => Err("one of password or password_hash is required".into()),
    }
}

/// Every problem found in a configuration, each with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `tenants[2].plan`; empty for whole-file errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.key.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.key, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    fn single(key: &str, message: impl Into<String>) -> Self {
        Self {
            errors: vec![ConfigError {
                key: key.to_string(),
                message: message.into(),
            }],
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// A missing or unreadable file, a syntax error (with line and column), or
    /// every validation problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single("", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_file_text(path, &text)
    }

    /// As [`Config::load`], with the file's content already read.
    ///
    /// # Errors
    /// As [`Config::load`], but for reading.
    pub fn from_file_text(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut config = Self::from_toml(text)?;
        // Relative TLS paths are relative to the config file, not the cwd.
        if let (Some(tls), Some(dir)) = (config.tls.as_mut(), path.parent()) {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
        }
        if let (Some(key), Some(dir)) = (config.auth.rsa_private_key.as_mut(), path.parent()) {
            *key = dir.join(&*key);
        }
        if let (Some(cp), Some(dir)) = (config.control_plane.as_mut(), path.parent())
            && let Some(key) = cp.secret_key_file.as_mut()
        {
            *key = dir.join(&*key);
        }
        crate::frontend::caching_sha2::RsaKeys::from_config(&config.auth)
            .map_err(|e| ConfigErrors::single("auth.rsa_private_key", e))?;
        if let Some(tls) = &config.tls {
            crate::frontend::tls::load_server_config(tls)
                .map_err(|e| ConfigErrors::single("tls", e))?;
        }
        Ok(config)
    }

    /// Parses and validates configuration text.
    ///
    /// # Errors
    /// A syntax error or unknown key (with line and column), or every
    /// validation problem found.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigErrors::single("", format_toml_error(&e)))?;
        raw.validate()
    }

    /// This configuration with another catalog (tenants, plans, users,
    /// backends: from the control plane, or changed by an operator),
    /// validated whole as a file would be.
    ///
    /// # Errors
    /// Every problem the new catalog has.
    pub fn with_catalog(
        &self,
        backends: Vec<BackendConfig>,
        plans: Vec<PlanConfig>,
        tenants: Vec<TenantConfig>,
        users: Vec<UserConfig>,
    ) -> Result<Config, ConfigErrors> {
        let mut raw = RawConfig::from(self.clone());
        raw.backends = backends;
        raw.plans = plans;
        raw.tenants = tenants;
        raw.users = users;
        raw.check_file_catalog = false;
        raw.validate()
    }
}

impl From<Config> for RawConfig {
    fn from(c: Config) -> Self {
        RawConfig {
            listen: c.listen,
            runtime: c.runtime,
            pool: c.pool,
            identification: c.identification,
            tls: c.tls,
            auth: c.auth,
            control_plane: c.control_plane,
            admin: c.admin,
            metrics: c.metrics,
            health: c.health,
            shutdown: c.shutdown,
            backends: c.backends,
            plans: c.plans,
            tenants: c.tenants,
            users: c.users,
            check_file_catalog: true,
        }
    }
}

fn format_toml_error(e: &toml::de::Error) -> String {
    // toml's Display already carries "line N, column M" and the offending text.
    e.to_string().trim_end().to_string()
}

struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigErrors> {
        let mut p = Problems(Vec::new());

        if self.runtime.threads > 1024 {
            p.add(
                "runtime.threads",
                "must be at most 1024 (0 = one per CPU core)",
            );
        }
        if self.pool.statement_cache_size == 0 {
            p.add("pool.statement_cache_size", "must be greater than 0");
        }
        if self.pool.lease_timeout_ms == 0 {
            p.add("pool.lease_timeout_ms", "must be greater than 0");
        }
        if self.pool.reset_timeout_ms == 0 {
            p.add("pool.reset_timeout_ms", "must be greater than 0");
        }
        if self.pool.max_lifetime_ms == 0 {
            p.add("pool.max_lifetime_ms", "must be greater than 0");
        }

        let order = &self.identification.order;
        if order.is_empty() {
            p.add("identification.order", "must name at least one method");
        }
        let mut seen_methods = HashSet::new();
        for (i, m) in order.iter().enumerate() {
            if !seen_methods.insert(*m) {
                p.add(
                    format!("identification.order[{i}]"),
                    format!("{m:?} is listed twice"),
                );
            }
        }
        if let Some(cp) = &self.control_plane {
            if cp.url.expose().is_empty() {
                p.add("control_plane.url", "must be a mysql:// URL");
            }
            if cp.poll_interval_ms == 0 {
                p.add("control_plane.poll_interval_ms", "must be greater than 0");
            }
            if cp.usage_flush_interval_ms == 0 {
                p.add(
                    "control_plane.usage_flush_interval_ms",
                    "must be greater than 0",
                );
            }
            if cp.timeout_ms == 0 {
                p.add("control_plane.timeout_ms", "must be greater than 0");
            }
            if self.check_file_catalog {
                for (section, count) in [
                    ("backends", self.backends.len()),
                    ("plans", self.plans.len()),
                    ("tenants", self.tenants.len()),
                    ("users", self.users.len()),
                ] {
                    if count > 0 {
                        p.add(
                            section,
                            "comes from the control-plane database when [control_plane] is set: remove it from the file",
                        );
                    }
                }
            }
        }
        if let Some(admin) = &self.admin {
            if admin.user.is_empty() {
                p.add("admin.user", "must not be empty");
            }
            if let Err(message) = admin.native_hash() {
                p.add("admin", message);
            }
        }
        if self.health.interval_ms == 0 {
            p.add("health.interval_ms", "must be greater than 0");
        }
        if self.health.timeout_ms == 0 {
            p.add("health.timeout_ms", "must be greater than 0");
        }
        if self.health.down_after == 0 {
            p.add("health.down_after", "must be at least 1");
        }
        if self.health.user.is_empty() || self.health.user.contains('\0') {
            p.add("health.user", "must be a non-empty user name");
        }
        if let Some(tls) = &self.tls {
            if tls.cert.as_os_str().is_empty() {
                p.add("tls.cert", "must be a path to a PEM certificate");
            }
            if tls.key.as_os_str().is_empty() {
                p.add("tls.key", "must be a path to a PEM private key");
            }
        }

        let mut backend_ids = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let key = format!("backends[{i}]");
            if !backend_ids.insert(b.id) {
                p.add(
                    format!("{key}.id"),
                    format!("backend id {} is declared twice", b.id),
                );
            }
            if b.host.trim().is_empty() {
                p.add(format!("{key}.host"), "must not be empty");
            }
            if b.port == 0 {
                p.add(format!("{key}.port"), "must be between 1 and 65535");
            }
            if b.max_connections == 0 {
                p.add(format!("{key}.max_connections"), "must be at least 1");
            }
            if b.connect_timeout_ms == 0 {
                p.add(
                    format!("{key}.connect_timeout_ms"),
                    "must be greater than 0",
                );
            }
            if b.idle_timeout_ms == 0 {
                p.add(format!("{key}.idle_timeout_ms"), "must be greater than 0");
            }
        }

        let mut plan_names = HashSet::new();
        for (i, plan) in self.plans.iter().enumerate() {
            let key = format!("plans[{i}]");
            if !valid_slug(&plan.name) {
                p.add(
                    format!("{key}.name"),
                    "must be 1-64 characters of a-z, 0-9, '_' or '-'",
                );
            }
            if !plan_names.insert(plan.name.as_str()) {
                p.add(
                    format!("{key}.name"),
                    format!("plan \"{}\" is declared twice", plan.name),
                );
            }
            if plan.weight == 0 {
                p.add(format!("{key}.weight"), "must be at least 1");
            }
            if plan.queue_timeout_ms == 0 {
                p.add(format!("{key}.queue_timeout_ms"), "must be greater than 0");
            }
            for (name, limit) in [
                ("max_client_connections", plan.max_client_connections),
                ("max_backend_leases", plan.max_backend_leases),
                ("max_queries_per_second", plan.max_queries_per_second),
                ("burst", plan.burst),
                ("max_query_time_ms", plan.max_query_time_ms),
                ("max_queries_per_day", plan.max_queries_per_day),
            ] {
                if limit == Limit::Value(0) {
                    p.add(
                        format!("{key}.{name}"),
                        "must be at least 1 (write \"unlimited\" for no limit)",
                    );
                }
            }
        }

        let mut slugs = HashSet::new();
        let mut databases: HashMap<(u32, &str), &str> = HashMap::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            if !valid_slug(&t.slug) {
                p.add(
                    format!("{key}.slug"),
                    "must be 1-64 characters of a-z, 0-9, '_' or '-' (no '.': it separates user and tenant)",
                );
            }
            if !slugs.insert(t.slug.as_str()) {
                p.add(
                    format!("{key}.slug"),
                    format!("tenant \"{}\" is declared twice", t.slug),
                );
            }
            if !plan_names.contains(t.plan.as_str()) {
                p.add(
                    format!("{key}.plan"),
                    format!("unknown plan \"{}\"", t.plan),
                );
            }
            if !backend_ids.contains(&t.backend) {
                p.add(
                    format!("{key}.backend"),
                    format!("unknown backend id {}", t.backend),
                );
            }
            let o = &t.limits;
            for (name, limit) in [
                ("max_client_connections", o.max_client_connections),
                ("max_backend_leases", o.max_backend_leases),
                ("max_queries_per_second", o.max_queries_per_second),
                ("burst", o.burst),
                ("max_query_time_ms", o.max_query_time_ms),
                ("max_queries_per_day", o.max_queries_per_day),
            ] {
                if limit == Some(Limit::Value(0)) {
                    p.add(
                        format!("{key}.limits.{name}"),
                        "must be at least 1 (write \"unlimited\" for no limit)",
                    );
                }
            }
            if o.queue_timeout_ms == Some(0) {
                p.add(
                    format!("{key}.limits.queue_timeout_ms"),
                    "must be greater than 0",
                );
            }
            if t.database.is_empty() || t.database.len() > 64 || t.database.contains('\0') {
                p.add(format!("{key}.database"), "must be 1-64 characters");
            }
            if let Some(other) = databases.insert((t.backend, t.database.as_str()), &t.slug) {
                p.add(
                    format!("{key}.database"),
                    format!(
                        "database \"{}\" on backend {} already belongs to tenant \"{other}\"",
                        t.database, t.backend
                    ),
                );
            }
            if t.db_user.is_empty() || t.db_user.len() > 80 || t.db_user.contains('\0') {
                p.add(format!("{key}.db_user"), "must be 1-80 characters");
            }
        }

        let mut user_keys = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.username.is_empty() || u.username.len() > 80 || u.username.contains('\0') {
                p.add(format!("{key}.username"), "must be 1-80 characters");
            }
            if !slugs.contains(u.tenant.as_str()) {
                p.add(
                    format!("{key}.tenant"),
                    format!("unknown tenant \"{}\"", u.tenant),
                );
            }
            if !user_keys.insert((u.username.as_str(), u.tenant.as_str())) {
                p.add(
                    format!("{key}.username"),
                    format!(
                        "user \"{}\" is declared twice for tenant \"{}\"",
                        u.username, u.tenant
                    ),
                );
            }
            if let Err(message) = u.native_hash() {
                p.add(key, message);
            }
        }

        if !p.0.is_empty() {
            return Err(ConfigErrors { errors: p.0 });
        }
        Ok(Config {
            listen: self.listen,
            runtime: self.runtime,
            pool: self.pool,
            identification: self.identification,
            tls: self.tls,
            auth: self.auth,
            control_plane: self.control_plane,
            admin: self.admin,
            metrics: self.metrics,
            health: self.health,
            shutdown: self.shutdown,
            backends: self.backends,
            plans: self.plans,
            tenants: self.tenants,
            users: self.users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[[backends]]
id = 1
host = "127.0.0.1"
port = 3307
max_connections = 8

[[plans]]
name = "free"
weight = 1
max_client_connections = 10
max_backend_leases = 2
queue_timeout_ms = 1000
max_queries_per_second = 50
burst = "unlimited"
max_query_time_ms = 5000
max_queries_per_day = "unlimited"

[[tenants]]
slug = "acme"
status = "active"
plan = "free"
backend = 1
database = "tenant_acme"
db_user = "acme_rw"
db_password = "s3cret"

[[users]]
username = "app"
tenant = "acme"
password = "app-pass"
"#;

    #[test]
    fn a_valid_file_loads_with_defaults() {
        let c = Config::from_toml(VALID).expect("valid");
        assert_eq!(c.listen.mysql, "127.0.0.1:6033".parse().unwrap());
        assert_eq!(c.pool.mode, PoolMode::Transaction);
        assert_eq!(c.pool.statement_cache_size, 128);
        assert_eq!(c.identification.order.len(), 5);
        assert_eq!(c.plans[0].burst, Limit::Unlimited);
        assert_eq!(c.plans[0].max_backend_leases, Limit::Value(2));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = VALID.replace("max_connections = 8", "max_connections = 8\nmax_conns = 3");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("max_conns"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = VALID
            .replace("plan = \"free\"", "plan = \"gold\"")
            .replace("backend = 1", "backend = 9")
            .replace("tenant = \"acme\"", "tenant = \"nope\"")
            .replace("weight = 1", "weight = 0");
        let errs = Config::from_toml(&text).unwrap_err();
        let keys: Vec<&str> = errs.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plans[0].weight",
                "tenants[0].plan",
                "tenants[0].backend",
                "users[0].tenant"
            ]
        );
    }

    #[test]
    fn limits_reject_zero_and_words_other_than_unlimited() {
        let zero = VALID.replace("max_backend_leases = 2", "max_backend_leases = 0");
        let errs = Config::from_toml(&zero).unwrap_err();
        assert_eq!(errs.errors[0].key, "plans[0].max_backend_leases");
        let word = VALID.replace("burst = \"unlimited\"", "burst = \"lots\"");
        let err = Config::from_toml(&word).unwrap_err().to_string();
        assert!(err.contains("unlimited"), "{err}");
    }

    #[test]
    fn password_hash_must_be_mariadb_form_and_exclusive() {
        let bad = VALID.replace("password = \"app-pass\"", "password_hash = \"*XYZ\"");
        let errs = Config::from_toml(&bad).unwrap_err();
        assert_eq!(errs.errors[0].key, "users[0]");
        let both = VALID.replace(
            "password = \"app-pass\"",
            "password = \"a\"\npassword_hash = \"*00\"",
        );
        assert!(Config::from_toml(&both).is_err());
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = Config::from_toml(VALID).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("s3cret"));
        assert!(!dump.contains("app-pass"));
    }

    #[test]
    fn auth_section() {
        let c = Config::from_toml(VALID).unwrap();
        assert!(c.auth.rsa_key_exchange && c.auth.rsa_private_key.is_none());
        let text = format!("[auth]\nrsa_key_exchange = false\n{VALID}");
        assert!(!Config::from_toml(&text).unwrap().auth.rsa_key_exchange);
        let text = format!("[auth]\nrsa_key = \"x\"\n{VALID}");
        assert!(Config::from_toml(&text).is_err());
    }

    #[test]
    fn pool_modes_parse_and_bad_ones_are_refused() {
        let text = format!("[pool]\nmode = \"session\"\n{VALID}");
        assert_eq!(
            Config::from_toml(&text).unwrap().pool.mode,
            PoolMode::Session
        );
        let text = format!("[pool]\nmode = \"statement\"\n{VALID}");
        let errs = Config::from_toml(&text).unwrap_err();
        assert!(errs.to_string().contains("mode"), "{errs}");
        let text = format!("[pool]\nstatement_cache_size = 0\n{VALID}");
        let errs = Config::from_toml(&text).unwrap_err();
        assert_eq!(errs.errors[0].key, "pool.statement_cache_size");
    }

    #[test]
    fn duplicate_tenant_slugs_and_bad_slugs_are_refused() {
        let text = format!(
            "{VALID}\n[[tenants]]\nslug = \"acme\"\nstatus = \"active\"\nplan = \"free\"\nbackend = 1\ndatabase = \"other\"\ndb_user = \"x\"\ndb_password = \"y\"\n[[tenants]]\nslug = \"a.b\"\nstatus = \"active\"\nplan = \"free\"\nbackend = 1\ndatabase = \"third\"\ndb_user = \"x\"\ndb_password = \"y\"\n"
        );
        let errs = Config::from_toml(&text).unwrap_err();
        let keys: Vec<&str> = errs.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tenants[1].slug", "tenants[2].slug"]);
    }
}

#[cfg(test)]
mod shipped_files {
    use super::*;

    #[test]
    fn the_shipped_configs_are_valid() {
        for (name, text) in [
            ("example.toml", include_str!("../config/example.toml")),
            ("demo.toml", include_str!("../config/demo.toml")),
            ("../docker/silo.toml", include_str!("../docker/silo.toml")),
        ] {
            if let Err(e) = Config::from_toml(text) {
                panic!("config/{name}: {e}");
            }
        }
    }
}
