//! An operator's change to the catalog, as the admin port expresses it.

use crate::config::{Config, TenantStatus};

use super::CatalogError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    TenantPlan {
        tenant: String,
        plan: String,
    },
    TenantBackend {
        tenant: String,
        backend: u32,
    },
    TenantStatus {
        tenant: String,
        status: TenantStatus,
    },
    BackendDraining {
        backend: u32,
        draining: bool,
    },
}

impl Change {
    /// The tenant the change concerns, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Change::TenantPlan { tenant, .. }
            | Change::TenantBackend { tenant, .. }
            | Change::TenantStatus { tenant, .. } => Some(tenant),
            Change::BackendDraining { .. } => None,
        }
    }

    /// The event type, in the seeds' `tenant_events.event_type` vocabulary.
    pub fn event_type(&self) -> &'static str {
        match self {
            Change::TenantPlan { .. } => "plan_changed",
            Change::TenantBackend { .. } => "backend_changed",
            Change::TenantStatus {
                status: TenantStatus::Suspended,
                ..
            } => "suspended",
            Change::TenantStatus {
                status: TenantStatus::Active,
                ..
            } => "reactivated",
            Change::TenantStatus {
                status: TenantStatus::Paused,
                ..
            } => "paused",
            Change::TenantStatus { .. } => "status_changed",
            Change::BackendDraining { draining: true, .. } => "backend_drained",
            Change::BackendDraining {
                draining: false, ..
            } => "backend_undrained",
        }
    }

    /// One line saying what changed, for events and logs.
    pub fn describe(&self) -> String {
        match self {
            Change::TenantPlan { tenant, plan } => format!("tenant {tenant}: plan set to {plan}"),
            Change::TenantBackend { tenant, backend } => {
                format!("tenant {tenant}: moved to backend {backend}")
            }
            Change::TenantStatus { tenant, status } => {
                format!("tenant {tenant}: status set to {status}")
            }
            Change::BackendDraining { backend, draining } => format!(
                "backend {backend}: {}",
                if *draining {
                    "draining"
                } else {
                    "back in rotation"
                }
            ),
        }
    }

    /// `config` with the change made, validated whole.
    ///
    /// # Errors
    /// An unknown tenant, plan or backend, or a catalog that no longer
    /// validates (e.g. two tenants' databases on one backend).
    pub fn apply_to(&self, config: &Config) -> Result<Config, CatalogError> {
        let mut backends = config.backends.clone();
        let mut tenants = config.tenants.clone();
        let tenant_index = |slug: &str| {
            tenants
                .iter()
                .position(|t| t.slug == slug)
                .ok_or_else(|| CatalogError::Invalid(format!("unknown tenant '{slug}'")))
        };
        match self {
            Change::TenantPlan { tenant, plan } => {
                let i = tenant_index(tenant)?;
                if !config.plans.iter().any(|p| &p.name == plan) {
                    let known: Vec<&str> = config.plans.iter().map(|p| p.name.as_str()).collect();
                    return Err(CatalogError::Invalid(format!(
                        "unknown plan '{plan}' (plans: {})",
                        known.join(", ")
                    )));
                }
                tenants[i].plan = plan.clone();
            }
            Change::TenantBackend { tenant, backend } => {
                let i = tenant_index(tenant)?;
                check_backend(config, *backend)?;
                tenants[i].backend = *backend;
            }
            Change::TenantStatus { tenant, status } => {
                let i = tenant_index(tenant)?;
                tenants[i].status = *status;
            }
            Change::BackendDraining { backend, draining } => {
                check_backend(config, *backend)?;
                for b in backends.iter_mut().filter(|b| b.id == *backend) {
                    b.draining = *draining;
                }
            }
        }
        config
            .with_catalog(
                backends,
                config.plans.clone(),
                tenants,
                config.users.clone(),
            )
            .map_err(|e| CatalogError::Rejected(e.to_string().replace('\n', "; ")))
    }
}

fn check_backend(config: &Config, backend: u32) -> Result<(), CatalogError> {
    if config.backends.iter().any(|b| b.id == backend) {
        return Ok(());
    }
    let known: Vec<String> = config.backends.iter().map(|b| b.id.to_string()).collect();
    Err(CatalogError::Invalid(format!(
        "unknown backend {backend} (backends: {})",
        known.join(", ")
    )))
}
