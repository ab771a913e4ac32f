//! Operator changes, kept in memory for a file-backed catalog
//! (the control plane keeps its own in `tenant_events`).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{Change, now_unix_ms};

/// Events kept in memory; older ones are dropped.
const KEPT: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    pub at_unix_ms: u64,
    pub tenant: Option<String>,
    pub event_type: String,
    pub detail: String,
    pub performed_by: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
}

impl EventLog {
    pub fn record(&self, change: &Change, performed_by: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 += 1;
        let id = inner.0;
        if inner.1.len() == KEPT {
            inner.1.pop_front();
        }
        inner.1.push_back(Event {
            id,
            at_unix_ms: now_unix_ms(),
            tenant: change.tenant().map(str::to_string),
            event_type: change.event_type().to_string(),
            detail: change.describe(),
            performed_by: performed_by.to_string(),
        });
    }

    /// Newest first.
    pub fn recent(&self, tenant: Option<&str>, limit: usize) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .1
            .iter()
            .rev()
            .filter(|e| tenant.is_none() || e.tenant.as_deref() == tenant)
            .take(limit)
            .cloned()
            .collect()
    }
}
