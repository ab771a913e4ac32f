//! One client connection, from accept through TLS upgrade and login to quit.

mod admission;
pub mod caching_sha2;
mod control;
pub mod enforce;
pub mod error;
pub mod listener;
pub mod login;
pub mod registry;
pub mod session;
pub mod session_state;
mod statements;
pub mod stream;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::backend::Pools;
use crate::limits::Tenants;
use crate::routing::Router;

/// What every client session shares, built once by the server.
pub struct Context {
    pub router: Arc<Router>,
    pub pools: Arc<Pools>,
    pub registry: Arc<registry::Registry>,
    pub tls: Option<TlsAcceptor>,
    pub tls_required: bool,
    /// Sent in the greeting, in the backend's style.
    pub server_version: String,
    pub lease_timeout: Duration,
    /// Live usage per tenant (clients, leases, rate, quota, pins), kept
    /// across route-table swaps.
    pub tenants: Arc<Tenants>,
    /// Prepared statements kept per backend connection.
    pub statement_cache_size: usize,
    /// caching_sha2_password: the fast-path digest cache and the RSA key.
    pub sha2: caching_sha2::Sha2Auth,
    /// Where the route table comes from, and how operators change it.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// What sessions record for Prometheus (histograms, bytes, logins).
    pub metrics: Arc<crate::metrics::Metrics>,
}
