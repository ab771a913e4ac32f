//! The control-plane database as the catalog's source.

use std::sync::{Arc, Weak};

use crate::frontend::Context;

use super::{Applied, Catalog, CatalogError, Change, Event};

/// A connection to the control plane (not yet built).
#[derive(Debug)]
pub struct Database {}

impl Database {
    pub(super) async fn refresh(
        &self,
        _catalog: &Catalog,
        _ctx: &Context,
        _forced: bool,
    ) -> Result<u64, CatalogError> {
        Err(CatalogError::Unavailable("not built yet".into()))
    }

    pub(super) async fn apply(
        &self,
        _catalog: &Catalog,
        _ctx: &Context,
        _change: &Change,
        _performed_by: &str,
    ) -> Result<Applied, CatalogError> {
        Err(CatalogError::Unavailable("not built yet".into()))
    }

    pub(super) async fn events(
        &self,
        _tenant: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<Event>, CatalogError> {
        Err(CatalogError::Unavailable("not built yet".into()))
    }
}

pub(super) async fn watch(_catalog: Arc<Catalog>, _ctx: Weak<Context>) {}
