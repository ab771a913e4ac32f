//! The TOML file as the catalog's source: reloaded on SIGHUP and when its
//! content changes (checked once a second: a stat, and a read only when the
//! size or modification time moved, so an editor's or a ConfigMap's atomic
//! rename is seen too).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::frontend::Context;

use super::{Catalog, CatalogError};

const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    /// Size, modification time and content of the file last read.
    seen: Mutex<Option<Seen>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    content: Vec<u8>,
}

impl FileSource {
    pub fn new(path: PathBuf) -> FileSource {
        let seen = read_seen(&path);
        FileSource {
            path,
            seen: Mutex::new(seen),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(super) fn reload(&self, catalog: &Catalog, ctx: &Context) -> Result<u64, CatalogError> {
        let seen = read_seen(&self.path);
        // The content just read is parsed; reading again only to say why
        // the file cannot be read.
        let loaded = match seen.as_ref().map(|s| std::str::from_utf8(&s.content)) {
            Some(Ok(text)) => Config::from_file_text(&self.path, text),
            _ => Config::load(&self.path),
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        let config = loaded.map_err(|errors| {
            let problems: Vec<String> = errors
                .to_string()
                .lines()
                .map(|line| format!("{}: {line}", self.path.display()))
                .collect();
            CatalogError::Rejected(problems.join("; "))
        })?;
        catalog.install(ctx, config)
    }

    /// Whether the file's content differs from what was last read.
    fn changed(&self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return false;
        };
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match &*seen {
            Some(s) if s.len == meta.len() && s.modified == meta.modified().ok() => false,
            Some(s) => std::fs::read(&self.path).is_ok_and(|content| content != s.content),
            None => true,
        }
    }
}

fn read_seen(path: &std::path::Path) -> Option<Seen> {
    let meta = std::fs::metadata(path).ok()?;
    let content = std::fs::read(path).ok()?;
    Some(Seen {
        len: meta.len(),
        modified: meta.modified().ok(),
        content,
    })
}

/// Reloads on SIGHUP and when the file changes, until the server is gone.
pub(super) async fn watch(catalog: Arc<Catalog>, ctx: Weak<Context>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: the file is still reloaded when it changes");
            None
        }
    };
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick() => {
                let changed = catalog.file_source().is_some_and(FileSource::changed);
                if !changed {
                    if ctx.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
                "file changed"
            }
        };
        let Some(ctx) = ctx.upgrade() else { return };
        let path = catalog
            .file_source()
            .map(|f| f.path().display().to_string())
            .unwrap_or_default();
        match catalog.reload(&ctx).await {
            Ok(version) => tracing::info!(path, version, trigger = why, "configuration reloaded"),
            Err(e) => tracing::error!(path, trigger = why, "configuration reload {e}"),
        }
    }
}
