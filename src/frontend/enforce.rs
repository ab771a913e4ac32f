//! Applies a new route table to what is already running: backends marked
//! `draining` leave rotation, sessions of a tenant that is no longer served
//! (suspended, being deleted, provisioning again, removed) end after their
//! current statement, and commands waiting while their tenant is paused look
//! again.

use std::sync::{Arc, Weak};

use super::Context;
use crate::config::TenantStatus;

/// Why a tenant's sessions are ended, for statuses that end them.
pub(super) fn ended_status(status: TenantStatus) -> Option<&'static str> {
    match status {
        TenantStatus::Active | TenantStatus::Paused => None,
        TenantStatus::Suspended => Some("was suspended"),
        TenantStatus::PendingDeletion => Some("is being deleted"),
        TenantStatus::Provisioning => Some("is being provisioned again"),
    }
}

/// Runs until the context is dropped; holds it only while applying a table.
pub async fn watch_routes(ctx: Weak<Context>) {
    let Some(mut changes) = ctx.upgrade().map(|c| c.router.subscribe()) else {
        return;
    };
    while changes.changed().await.is_ok() {
        match ctx.upgrade() {
            Some(ctx) => apply(&ctx),
            None => return,
        }
    }
}

/// Marks the sessions of tenants no longer served as killed: an idle one
/// ends at once, a busy one when its statement is done (its transaction, if
/// any, is rolled back by the reset of its connection).
pub fn apply(ctx: &Arc<Context>) {
    ctx.tenants.route_changed();
    let table = ctx.router.load();
    for backend in table.backends() {
        if let Some(pool) = ctx.pools.get(backend.id) {
            pool.set_draining(backend.draining);
        }
    }
    for handle in ctx.registry.sessions() {
        let Some(tenant) = handle.tenant() else {
            continue;
        };
        let served = table
            .tenant(&tenant.0)
            .is_some_and(|t| ended_status(t.status).is_none());
        if !served {
            handle.kill();
        }
    }
}
