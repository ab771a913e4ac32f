//! The live route table: an immutable snapshot behind `ArcSwap`, read without
//! locks on the hot path and replaced whole by writers.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use super::RouteTable;

#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RouteTable>,
    /// The version of the table just installed, for whoever must react.
    changes: tokio::sync::watch::Sender<u64>,
    /// Serialises writers so a reload never overwrites a newer table built
    /// concurrently; readers never take it.
    writer: Mutex<()>,
}

impl Router {
    pub fn new(table: RouteTable) -> Self {
        Self {
            changes: tokio::sync::watch::Sender::new(table.version),
            table: ArcSwap::from_pointee(table),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot. Drop the guard before any `.await`; clone out
    /// the `Arc`s to keep.
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Installs a new table built by `build` from the current one, atomically.
    /// Sessions see it at their next login or lease.
    pub fn update(&self, build: impl FnOnce(&RouteTable) -> RouteTable) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.table.load_full();
        let next = Arc::new(build(&current));
        let version = next.version;
        self.table.store(next);
        self.changes.send_replace(version);
    }

    /// Tells of every table installed from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
