//! Weighted fair queueing of the commands waiting for a saturated backend.
//!
//! Each tenant has its own FIFO queue. A waiter gets a virtual finish tag,
//! `max(virtual time, the tenant's last tag) + 1 / weight`, and a freed
//! connection goes to the waiter with the smallest tag (start-time fair
//! queueing). A tenant that floods the backend only lengthens its own queue:
//! a quiet tenant's next waiter is tagged near the current virtual time and
//! is served after at most one waiter of each other tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Who waits, and with which share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitKey {
    pub tenant: Arc<str>,
    pub weight: u32,
}

#[derive(Debug)]
struct Waiting<T> {
    id: u64,
    tag: f64,
    item: T,
}

#[derive(Debug)]
struct TenantQueue<T> {
    waiting: VecDeque<Waiting<T>>,
    last_tag: f64,
}

/// The waiters of one pool, fair between tenants, FIFO within one.
#[derive(Debug)]
pub struct FairQueue<T> {
    tenants: HashMap<Arc<str>, TenantQueue<T>>,
    virtual_time: f64,
    len: usize,
    next_id: u64,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            tenants: HashMap::new(),
            virtual_time: 0.0,
            len: 0,
            next_id: 0,
        }
    }
}

impl<T> FairQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` for `key`'s tenant; returns an id to [`FairQueue::remove`] it.
    pub fn push(&mut self, key: &WaitKey, item: T) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let virtual_time = self.virtual_time;
        let queue = self
            .tenants
            .entry(key.tenant.clone())
            .or_insert_with(|| TenantQueue {
                waiting: VecDeque::new(),
                last_tag: 0.0,
            });
        let tag = virtual_time.max(queue.last_tag) + 1.0 / f64::from(key.weight.max(1));
        queue.last_tag = tag;
        queue.waiting.push_back(Waiting { id, tag, item });
        self.len += 1;
        id
    }

    /// The next waiter to serve: the smallest tag among the tenants' heads.
    pub fn pop(&mut self) -> Option<T> {
        let tenant = self
            .tenants
            .iter()
            .filter_map(|(t, q)| q.waiting.front().map(|w| (w.tag, t)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, t)| t.clone())?;
        let queue = self.tenants.get_mut(&tenant)?;
        let waiting = queue.waiting.pop_front()?;
        if queue.waiting.is_empty() {
            // Idle tenants re-enter at the current virtual time.
            self.tenants.remove(&tenant);
        }
        self.virtual_time = self.virtual_time.max(waiting.tag);
        self.len -= 1;
        Some(waiting.item)
    }

    /// Takes a waiter out (it gave up); `None` if it was already served.
    pub fn remove(&mut self, key: &WaitKey, id: u64) -> Option<T> {
        let queue = self.tenants.get_mut(&key.tenant)?;
        let at = queue.waiting.iter().position(|w| w.id == id)?;
        let waiting = queue.waiting.remove(at)?;
        if queue.waiting.is_empty() {
            self.tenants.remove(&key.tenant);
        }
        self.len -= 1;
        Some(waiting.item)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(tenant: &str, weight: u32) -> WaitKey {
        WaitKey {
            tenant: tenant.into(),
            weight,
        }
    }

    #[test]
    fn fifo_within_a_tenant() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push(&key("a", 1), i);
        }
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(0), Some(1), Some(2), None)
        );
    }

    #[test]
    fn a_flood_does_not_starve_a_quiet_tenant() {
        let mut q = FairQueue::default();
        for i in 0..100 {
            q.push(&key("noisy", 1), format!("noisy{i}"));
        }
        q.pop();
        q.push(&key("quiet", 1), "quiet".to_string());
        // Served within the next two, not after the 99 noisy ones.
        let next: Vec<_> = (0..2).map(|_| q.pop().unwrap()).collect();
        assert!(next.contains(&"quiet".to_string()), "{next:?}");
    }

    #[test]
    fn weights_share_the_backend() {
        let mut q = FairQueue::default();
        for _ in 0..40 {
            q.push(&key("heavy", 3), "heavy");
            q.push(&key("light", 1), "light");
        }
        let first: Vec<_> = (0..40).map(|_| q.pop().unwrap()).collect();
        let heavy = first.iter().filter(|s| **s == "heavy").count();
        assert_eq!(heavy, 30, "3:1 while both wait");
    }

    #[test]
    fn removed_waiters_are_skipped() {
        let mut q = FairQueue::default();
        let a = q.push(&key("a", 1), 1);
        q.push(&key("a", 1), 2);
        assert_eq!(q.remove(&key("a", 1), a), Some(1));
        assert_eq!(q.remove(&key("a", 1), a), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(2));
        assert!(q.is_empty());
    }
}
