//! Prepared statements as they exist on one backend connection.
//!
//! A client's statement ids are silo's own; the statement's text (with the
//! schema it was prepared in) is the key under which each backend connection
//! keeps its own server-side statement. Clients of a tenant that prepare the
//! same text share it on a connection. The cache is bounded: past its
//! capacity the least recently used statement is closed, so a backend never
//! reaches `max_prepared_stmt_count` because of silo.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What identifies a statement across connections.
#[derive(Debug, PartialEq, Eq)]
pub struct StatementKey {
    pub schema: Box<str>,
    pub sql: Box<[u8]>,
    hash: u64,
}

impl StatementKey {
    pub fn new(schema: &str, sql: &[u8]) -> Arc<Self> {
        // Deterministic: equal keys made by different clients must meet.
        let mut h = std::hash::DefaultHasher::new();
        schema.hash(&mut h);
        sql.hash(&mut h);
        Arc::new(Self {
            schema: schema.into(),
            sql: sql.into(),
            hash: h.finish(),
        })
    }
}

/// One statement prepared on a backend connection.
#[derive(Debug)]
pub struct Prepared {
    pub key: Arc<StatementKey>,
    pub id: u32,
    pub params: u16,
    /// The parameter types the server last received for it, so an execute
    /// that says "same types as before" can be checked against them.
    pub types: Vec<u8>,
    last_used: u64,
}

#[derive(Debug, Default)]
pub struct StatementCache {
    by_hash: HashMap<u64, Prepared>,
    clock: u64,
}

impl StatementCache {
    pub fn get(&mut self, key: &StatementKey) -> Option<&mut Prepared> {
        self.clock += 1;
        let clock = self.clock;
        let prepared = self.by_hash.get_mut(&key.hash).filter(|p| *p.key == *key)?;
        prepared.last_used = clock;
        Some(prepared)
    }

    /// Adds a statement the server just prepared. Returns the ids of
    /// statements to close on the server: a hash collision's previous
    /// holder, and the least recently used when the cache is full.
    pub fn insert(
        &mut self,
        key: Arc<StatementKey>,
        id: u32,
        params: u16,
        capacity: usize,
    ) -> Vec<u32> {
        let mut closed = Vec::new();
        self.clock += 1;
        let hash = key.hash;
        if let Some(old) = self.by_hash.remove(&hash) {
            closed.push(old.id);
        }
        while self.by_hash.len() >= capacity.max(1) {
            let Some(oldest) = self
                .by_hash
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(h, _)| *h)
            else {
                break;
            };
            if let Some(old) = self.by_hash.remove(&oldest) {
                closed.push(old.id);
            }
        }
        self.by_hash.insert(
            hash,
            Prepared {
                key,
                id,
                params,
                types: Vec::new(),
                last_used: self.clock,
            },
        );
        closed
    }

    /// Forgets a statement (closed on the server by the caller).
    pub fn remove(&mut self, key: &StatementKey) -> Option<u32> {
        match self.by_hash.get(&key.hash) {
            Some(p) if *p.key == *key => self.by_hash.remove(&key.hash).map(|p| p.id),
            _ => None,
        }
    }

    /// The server dropped every statement (reset, change user).
    pub fn clear(&mut self) {
        self.by_hash.clear();
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_key_schema_matters() {
        let a = StatementKey::new("db", b"select ?");
        let b = StatementKey::new("db", b"select ?");
        let c = StatementKey::new("other", b"select ?");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut cache = StatementCache::default();
        assert!(cache.insert(a.clone(), 7, 1, 4).is_empty());
        assert_eq!(cache.get(&b).map(|p| p.id), Some(7));
        assert!(cache.get(&c).is_none());
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut cache = StatementCache::default();
        let keys: Vec<_> = (0..3)
            .map(|i| StatementKey::new("db", format!("select {i}").as_bytes()))
            .collect();
        cache.insert(keys[0].clone(), 1, 0, 2);
        cache.insert(keys[1].clone(), 2, 0, 2);
        cache.get(&keys[0]);
        assert_eq!(cache.insert(keys[2].clone(), 3, 0, 2), vec![2]);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&keys[1]).is_none());
        assert_eq!(cache.remove(&keys[0]), Some(1));
        assert_eq!(cache.len(), 1);
    }
}
