//! Runs one parsed admin command: reports, operator changes through the
//! catalog, `KILL CLIENT`, `RELOAD`, and the queries clients send on
//! connect.

use std::sync::Arc;

use tracing::info;

use super::Operator;
use super::parse::{ParseError, Statement};
use super::reports;
use super::resultset::ResultSet;
use super::variables;
use crate::catalog::{CatalogError, Change};
use crate::frontend::{Context, enforce};
use crate::protocol::ServerError;

/// What a command is answered with.
#[derive(Debug)]
pub enum Reply {
    Rows(ResultSet),
    Ok { affected: u64, info: String },
    Error(ServerError),
}

impl Reply {
    /// An OK with nothing to report.
    pub fn ok() -> Self {
        Reply::Ok {
            affected: 0,
            info: String::new(),
        }
    }
}

/// A command the admin port did not understand (ER_PARSE_ERROR's code).
pub fn syntax_error(e: &ParseError) -> ServerError {
    ServerError::new(1064, b"42000", e.to_string())
}

fn unknown_tenant(slug: &str) -> ServerError {
    ServerError::new(
        1210,
        b"HY000",
        format!("unknown tenant '{}'", printable(slug)),
    )
}

/// A refused reload or change, with the catalog's own message.
fn catalog_error(e: &CatalogError) -> ServerError {
    let code = match e {
        // ER_WRONG_ARGUMENTS: an unknown tenant, plan or backend.
        CatalogError::Invalid(_) => 1210,
        // ER_UNKNOWN_ERROR: the catalog would not validate, or its source
        // cannot be reached.
        CatalogError::Rejected(_) | CatalogError::Unavailable(_) => 1105,
    };
    ServerError::new(code, b"HY000", e.to_string())
}

/// Operator text as it may appear in a log line: control characters would
/// let it forge lines.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub async fn execute(ctx: &Arc<Context>, operator: &Operator, statement: Statement) -> Reply {
    match statement {
        Statement::ShowTenants => Reply::Rows(reports::show_tenants(ctx)),
        Statement::ShowTenant(slug) => match reports::show_tenant(ctx, &slug) {
            Some(rows) => Reply::Rows(rows),
            None => Reply::Error(unknown_tenant(&slug)),
        },
        Statement::ShowBackends => Reply::Rows(reports::show_backends(ctx)),
        Statement::ShowPools => Reply::Rows(reports::show_pools(ctx)),
        Statement::ShowClients { tenant } => match reports::show_clients(ctx, tenant.as_deref()) {
            Some(rows) => Reply::Rows(rows),
            None => Reply::Error(unknown_tenant(tenant.as_deref().unwrap_or_default())),
        },
        Statement::ShowPlans => Reply::Rows(reports::show_plans(ctx)),
        Statement::ShowUsage => Reply::Rows(reports::show_usage(ctx)),
        Statement::ShowEvents { tenant, limit } => {
            match ctx.catalog.recent_events(tenant.as_deref(), limit).await {
                Ok(events) => Reply::Rows(reports::show_events(&events)),
                Err(e) => Reply::Error(catalog_error(&e)),
            }
        }
        Statement::Change(change) => apply(ctx, operator, change).await,
        Statement::KillClient(id) => kill(ctx, operator, id),
        Statement::Reload => reload(ctx, operator).await,
        Statement::Select { items, limit } => match variables::select(operator, &items, limit) {
            Ok(rows) => Reply::Rows(rows),
            Err(e) => Reply::Error(e),
        },
        Statement::SessionSetting => Reply::ok(),
    }
}

async fn apply(ctx: &Arc<Context>, operator: &Operator, change: Change) -> Reply {
    let who = operator.performed_by();
    let what = printable(&change.describe());
    match ctx.catalog.apply(ctx, change, &who).await {
        Ok(applied) => {
            // Also done by the route watcher; done here first so that the
            // OK means the change is in force (draining, sessions ended).
            enforce::apply(ctx);
            info!(admin = %who, change = %what, version = applied.version, persistence = applied.persistence, "admin change applied");
            Reply::Ok {
                affected: 1,
                info: format!(
                    "{what}; route table version {}; {}",
                    applied.version, applied.persistence
                ),
            }
        }
        Err(e) => {
            info!(admin = %who, change = %what, error = %printable(&e.to_string()), "admin change refused");
            Reply::Error(catalog_error(&e))
        }
    }
}

fn kill(ctx: &Context, operator: &Operator, id: u64) -> Reply {
    let Some(handle) = u32::try_from(id).ok().and_then(|id| ctx.registry.get(id)) else {
        return Reply::Error(ServerError::no_such_thread(id));
    };
    handle.kill();
    let tenant = handle
        .tenant()
        .map_or_else(|| "-".to_string(), |t| t.to_string());
    info!(admin = %operator.performed_by(), client = id, tenant = %tenant, "admin killed a client");
    Reply::Ok {
        affected: 0,
        info: format!("client {id} of tenant {tenant} killed: it ends after its current statement"),
    }
}

async fn reload(ctx: &Arc<Context>, operator: &Operator) -> Reply {
    let who = operator.performed_by();
    let source = ctx.catalog.kind();
    match ctx.catalog.reload(ctx).await {
        Ok(version) => {
            enforce::apply(ctx);
            info!(admin = %who, source, version, "admin reload");
            let info = if source == "fixed" {
                format!(
                    "nothing to reload: this catalog was handed in at start, with no file or control plane behind it; route table version {version}"
                )
            } else {
                format!("reloaded from the {source} source; route table version {version}")
            };
            Reply::Ok { affected: 0, info }
        }
        Err(e) => {
            info!(admin = %who, source, error = %printable(&e.to_string()), "admin reload refused");
            Reply::Error(catalog_error(&e))
        }
    }
}
