//! Why sessions hold on to backend connections, counted per backend and per
//! tenant, so operators can see why multiplexing degrades.
//!
//! Counters are plain relaxed atomics resolved once per session (the
//! tenant's) or reached through the pool (the backend's): no map lookup and
//! no lock per command.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A reason a session keeps its backend connection between commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// `session` pool mode: the lease lasts as long as the client.
    SessionMode,
    /// A transaction is open, or characteristics for the next one are set.
    Transaction,
    /// LOCK TABLES, FLUSH TABLES WITH READ LOCK or GET_LOCK.
    Lock,
    TemporaryTable,
    UserVariable,
    /// A prepared statement's cursor is open.
    Cursor,
    /// COM_STMT_SEND_LONG_DATA sent data the next execute will use.
    LongData,
    /// The server reported a change silo cannot replay (SQL PREPARE,
    /// HANDLER, a session_track_* variable, …).
    Unknown,
}

impl PinReason {
    pub const ALL: [PinReason; 8] = [
        PinReason::SessionMode,
        PinReason::Transaction,
        PinReason::Lock,
        PinReason::TemporaryTable,
        PinReason::UserVariable,
        PinReason::Cursor,
        PinReason::LongData,
        PinReason::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PinReason::SessionMode => "session_mode",
            PinReason::Transaction => "transaction",
            PinReason::Lock => "lock",
            PinReason::TemporaryTable => "temporary_table",
            PinReason::UserVariable => "user_variable",
            PinReason::Cursor => "cursor",
            PinReason::LongData => "long_data",
            PinReason::Unknown => "unknown_state",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of pin reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pins(u16);

impl Pins {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, reason: PinReason, on: bool) -> Self {
        if on {
            Pins(self.0 | reason.bit())
        } else {
            Pins(self.0 & !reason.bit())
        }
    }

    pub fn contains(self, reason: PinReason) -> bool {
        self.0 & reason.bit() != 0
    }

    /// Reasons in `self` that are not in `before`.
    pub fn added_since(self, before: Pins) -> Pins {
        Pins(self.0 & !before.0)
    }

    pub fn iter(self) -> impl Iterator<Item = PinReason> {
        PinReason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

impl std::fmt::Display for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, reason) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(reason.name())?;
        }
        Ok(())
    }
}

/// Lease and pin counters of one backend or one tenant.
#[derive(Debug, Default)]
pub struct PinCounters {
    /// Backend connections leased (one per command or transaction in
    /// `transaction` mode, one per session in `session` mode).
    pub leases: AtomicU64,
    /// Sessions holding a pinned connection now.
    pub pinned: AtomicUsize,
    by_reason: [AtomicU64; PinReason::ALL.len()],
}

/// A point-in-time copy of [`PinCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinSnapshot {
    pub leases: u64,
    pub pinned: usize,
    pub by_reason: [u64; PinReason::ALL.len()],
}

impl PinSnapshot {
    pub fn pins(&self, reason: PinReason) -> u64 {
        self.by_reason
            .get(reason as usize)
            .copied()
            .unwrap_or_default()
    }
}

impl PinCounters {
    pub fn count_lease(&self) {
        self.leases.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts each reason newly pinning a session.
    pub fn count_pins(&self, added: Pins) {
        for reason in added.iter() {
            if let Some(c) = self.by_reason.get(reason as usize) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn snapshot(&self) -> PinSnapshot {
        let mut by_reason = [0; PinReason::ALL.len()];
        for (out, c) in by_reason.iter_mut().zip(&self.by_reason) {
            *out = c.load(Ordering::Relaxed);
        }
        PinSnapshot {
            leases: self.leases.load(Ordering::Relaxed),
            pinned: self.pinned.load(Ordering::Relaxed),
            by_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_sets() {
        let p = Pins::default()
            .with(PinReason::Transaction, true)
            .with(PinReason::Lock, true);
        assert!(p.contains(PinReason::Lock) && !p.is_empty());
        let q = p.with(PinReason::Lock, false);
        assert_eq!(
            p.added_since(q).iter().collect::<Vec<_>>(),
            vec![PinReason::Lock]
        );
        let c = PinCounters::default();
        c.count_pins(p);
        assert_eq!(c.snapshot().pins(PinReason::Transaction), 1);
        assert_eq!(c.snapshot().pins(PinReason::Cursor), 0);
    }
}
