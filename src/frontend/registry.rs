//! Live client sessions by silo connection id: the id clients see in the
//! handshake and use with `KILL [QUERY] <id>`; and the shutdown of them all.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::routing::TenantId;

/// Where a session's statements currently run. The database user is the
/// session's tenant's (a KILL only reaches sessions of its own tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTarget {
    pub backend_id: u32,
    pub thread_id: u32,
}

#[derive(Debug)]
pub struct SessionHandle {
    pub id: u32,
    tenant: Mutex<Option<TenantId>>,
    /// The login name within the tenant, for operators.
    user: Mutex<Option<Arc<str>>>,
    /// `backend_id << 32 | thread_id`, 0 when none: set at every lease in
    /// `transaction` mode, so two atomic stores rather than a lock.
    backend: AtomicU64,
    killed: AtomicBool,
    /// Wakes a session waiting for a command: a kill, or a shutdown.
    kill_signal: Notify,
    /// The session's task, ended at once when the shutdown deadline passes.
    task: OnceLock<AbortHandle>,
}

impl SessionHandle {
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_tenant(&self, tenant: Option<TenantId>) {
        *self.tenant.lock().unwrap_or_else(|p| p.into_inner()) = tenant;
    }

    pub fn user(&self) -> Option<Arc<str>> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_user(&self, user: &str) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(user.into());
    }

    pub fn backend(&self) -> Option<BackendTarget> {
        match self.backend.load(Ordering::Acquire) {
            0 => None,
            packed => Some(BackendTarget {
                backend_id: (packed >> 32) as u32,
                thread_id: packed as u32,
            }),
        }
    }

    pub fn set_backend(&self, target: Option<BackendTarget>) {
        let packed = target.map_or(0, |t| {
            (u64::from(t.backend_id) << 32) | u64::from(t.thread_id)
        });
        self.backend.store(packed, Ordering::Release);
    }

    /// Asks the session to end after its current statement.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_signal.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once [`SessionHandle::kill`] was called (even before this
    /// call), or when a shutdown asks the session to look whether it may
    /// end: the caller checks which.
    ///
    /// # Cancel safety
    /// Cancel-safe: the signal is kept until a call observes it.
    pub async fn interrupted(&self) {
        if self.is_killed() {
            return;
        }
        self.kill_signal.notified().await;
    }

    /// Records the task serving this session, for [`Registry::close_all`].
    pub fn set_task(&self, task: AbortHandle) {
        let _ = self.task.set(task);
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    sessions: DashMap<u32, Arc<SessionHandle>>,
    next_id: AtomicU32,
    /// Silo is shutting down: sessions end once idle with no backend state.
    closing: AtomicBool,
}

impl Registry {
    /// Every live session.
    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.sessions.iter().map(|s| s.value().clone()).collect()
    }

    /// Registers a new session under a fresh id; the returned guard
    /// unregisters it when dropped.
    pub fn register(self: &Arc<Self>) -> Registered {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id == 0 || self.sessions.contains_key(&id) {
                continue;
            }
            let handle = Arc::new(SessionHandle {
                id,
                tenant: Mutex::new(None),
                user: Mutex::new(None),
                backend: AtomicU64::new(0),
                killed: AtomicBool::new(false),
                kill_signal: Notify::new(),
                task: OnceLock::new(),
            });
            self.sessions.insert(id, handle.clone());
            return Registered {
                registry: self.clone(),
                handle,
            };
        }
    }

    pub fn get(&self, id: u32) -> Option<Arc<SessionHandle>> {
        self.sessions.get(&id).map(|h| h.value().clone())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether a graceful shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Begins a graceful shutdown: each session ends as soon as it waits
    /// for a command holding no backend state; idle ones are woken to end now.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for handle in self.sessions() {
            handle.kill_signal.notify_one();
        }
    }

    /// Ends every session still open at once, whatever it is doing: its
    /// task is dropped, which closes the client's socket and its backend
    /// connection (the server rolls back an open transaction). Returns how
    /// many were closed.
    pub fn close_all(&self) -> usize {
        let mut closed = 0;
        for handle in self.sessions() {
            if let Some(task) = handle.task.get() {
                task.abort();
                closed += 1;
            }
        }
        closed
    }
}

pub struct Registered {
    registry: Arc<Registry>,
    pub handle: Arc<SessionHandle>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.handle.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_unique_and_unregistered_on_drop() {
        let registry = Arc::new(Registry::default());
        let a = registry.register();
        let b = registry.register();
        assert_ne!(a.handle.id, b.handle.id);
        assert_eq!(registry.len(), 2);
        let id = a.handle.id;
        drop(a);
        assert!(registry.get(id).is_none());
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test]
    async fn kill_is_observed_even_when_signalled_first() {
        let registry = Arc::new(Registry::default());
        let s = registry.register();
        s.handle.kill();
        tokio::time::timeout(std::time::Duration::from_secs(1), s.handle.interrupted())
            .await
            .expect("kill observed");
    }

    #[tokio::test]
    async fn shutdown_wakes_sessions_and_close_all_ends_their_tasks() {
        let registry = Arc::new(Registry::default());
        let s = registry.register();
        let handle = s.handle.clone();
        let task = tokio::spawn(async move {
            let _registered = s;
            std::future::pending::<()>().await;
        });
        handle.set_task(task.abort_handle());
        registry.begin_shutdown();
        assert!(registry.is_closing());
        assert!(!handle.is_killed());
        tokio::time::timeout(std::time::Duration::from_secs(1), handle.interrupted())
            .await
            .expect("woken by the shutdown");
        assert_eq!(registry.close_all(), 1);
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert!(registry.is_empty());
    }
}
