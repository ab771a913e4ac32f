//! Where the catalog (backends, plans, tenants, users) comes from, and how
//! operators change it live.
//!
//! Two sources: the TOML file (the embedded default; reloaded on SIGHUP and
//! when the file changes; operator changes are runtime-only) and the
//! control-plane database (polled for its version; operator changes are
//! written through, each with a `tenant_events` row). Either way a new
//! catalog is validated whole as a [`Config`] and installed by
//! [`crate::server::reload`]; an invalid one is refused and the running
//! table stays.

pub mod change;
pub mod database;
pub mod events;
pub mod file;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use change::Change;
pub use events::Event;
use events::EventLog;

use crate::config::Config;
use crate::frontend::Context;

/// Why a reload or an operator's change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The change names something that does not exist or is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The resulting catalog does not validate; nothing was changed.
    #[error("refused: {0}")]
    Rejected(String),
    /// The source could not be read or written (control plane down).
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

/// What an operator's change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The route-table version now serving.
    pub version: u64,
    /// Where the change lives: written to the control plane, or runtime only.
    pub persistence: &'static str,
}

/// The source's standing, for logs, metrics and `/readyz`.
#[derive(Debug, Default)]
pub struct SourceHealth {
    /// False while the control plane cannot be reached; the last good table
    /// keeps serving.
    pub unreachable: AtomicBool,
    /// When the source was last read successfully (Unix ms).
    pub last_success_unix_ms: AtomicU64,
    /// Failed reads or polls of the source.
    pub failures: AtomicU64,
    /// Tables installed from the source after start.
    pub reloads: AtomicU64,
    /// Catalogs refused because they did not validate.
    pub rejected: AtomicU64,
}

impl SourceHealth {
    pub fn record_success(&self) {
        self.last_success_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
    }

    /// Seconds since the source was last read, 0 for a file.
    pub fn staleness_seconds(&self) -> f64 {
        let last = self.last_success_unix_ms.load(Ordering::Relaxed);
        if last == 0 {
            return 0.0;
        }
        now_unix_ms().saturating_sub(last) as f64 / 1000.0
    }
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Source {
    /// Built from a configuration handed in (tests, embedding): no file to
    /// reload; changes are runtime-only.
    Fixed,
    File(file::FileSource),
    Database(Box<database::Database>),
}

/// The catalog's source and the configuration behind the running table.
pub struct Catalog {
    source: Source,
    /// Static sections and the catalog that built the running table.
    current: Mutex<Arc<Config>>,
    /// Operator changes, newest last (the database source keeps
    /// its own in `tenant_events`).
    events: EventLog,
    pub health: SourceHealth,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("source", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog that only the running process changes.
    pub fn fixed(config: Config) -> Catalog {
        Self::with_source(Source::Fixed, config)
    }

    /// The TOML file `path`, whose content is `config`.
    pub fn file(path: std::path::PathBuf, config: Config) -> Catalog {
        Self::with_source(Source::File(file::FileSource::new(path)), config)
    }

    /// The control-plane database, already read once into `config`.
    pub fn database(db: database::Database, config: Config) -> Catalog {
        let catalog = Self::with_source(Source::Database(Box::new(db)), config);
        catalog.health.record_success();
        catalog
    }

    fn with_source(source: Source, config: Config) -> Catalog {
        Catalog {
            source,
            current: Mutex::new(Arc::new(config)),
            events: EventLog::default(),
            health: SourceHealth::default(),
        }
    }

    /// `file`, `database` or `fixed`.
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Fixed => "fixed",
            Source::File(_) => "file",
            Source::Database(_) => "database",
        }
    }

    /// The configuration behind the running table.
    pub fn current(&self) -> Arc<Config> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Config>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs the table of `config`, an already validated [`Config`], and
    /// remembers it as current.
    ///
    /// # Errors
    /// The table cannot be installed; the running one stays.
    pub fn install(&self, ctx: &Context, config: Config) -> Result<u64, CatalogError> {
        let version = crate::server::reload(ctx, &config).map_err(CatalogError::Rejected)?;
        *self.lock() = Arc::new(config);
        Ok(version)
    }

    /// Re-reads the source now (SIGHUP, the file changed, admin `RELOAD`).
    ///
    /// # Errors
    /// The source cannot be read or its catalog does not validate; the
    /// running table stays.
    pub async fn reload(&self, ctx: &Context) -> Result<u64, CatalogError> {
        let result = match &self.source {
            Source::Fixed => Ok(ctx.router.load().version),
            Source::File(f) => f.reload(self, ctx),
            Source::Database(db) => db.refresh(self, ctx, true).await,
        };
        match &result {
            Ok(_) => {
                self.health.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(CatalogError::Rejected(_)) => {
                self.health.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }

    /// Applies an operator's change: written through to the control plane
    /// (with an event row), or to the running catalog only for a file.
    ///
    /// # Errors
    /// The change names an unknown tenant, plan or backend, the resulting
    /// catalog does not validate, or the control plane cannot be written.
    pub async fn apply(
        &self,
        ctx: &Context,
        change: Change,
        performed_by: &str,
    ) -> Result<Applied, CatalogError> {
        match &self.source {
            Source::Database(db) => db.apply(self, ctx, &change, performed_by).await,
            Source::Fixed | Source::File(_) => {
                let current = self.current();
                let next = change.apply_to(&current)?;
                let version = self.install(ctx, next)?;
                self.events.record(&change, performed_by);
                Ok(Applied {
                    version,
                    persistence: "runtime only: the configuration file is unchanged, and a reload or restart reverts this",
                })
            }
        }
    }

    /// The latest events, newest first, of one tenant or all.
    ///
    /// # Errors
    /// The control plane cannot be read.
    pub async fn recent_events(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, CatalogError> {
        match &self.source {
            Source::Database(db) => db.events(tenant, limit).await,
            Source::Fixed | Source::File(_) => Ok(self.events.recent(tenant, limit)),
        }
    }

    /// Starts the source's background work: file watching, or polling and
    /// usage flushing for the control plane. Ends when `ctx` is dropped.
    pub fn spawn_watchers(self: &Arc<Self>, ctx: std::sync::Weak<Context>) {
        match &self.source {
            Source::Fixed => {}
            Source::File(_) => {
                tokio::spawn(file::watch(self.clone(), ctx));
            }
            Source::Database(_) => database::start(self, ctx),
        }
    }

    /// The source's last work at shutdown: the control plane gets the
    /// usage counted since its last flush.
    pub async fn finish(&self, ctx: &Context) {
        if let Source::Database(db) = &self.source {
            match db.flush_usage(self, ctx).await {
                Ok(tenants) => tracing::debug!(tenants, "usage flushed to the control plane"),
                Err(e) => tracing::warn!("usage since the last flush is lost: {e}"),
            }
        }
    }

    pub(crate) fn file_source(&self) -> Option<&file::FileSource> {
        match &self.source {
            Source::File(f) => Some(f),
            _ => None,
        }
    }
}
