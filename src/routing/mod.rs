//! Control-plane data as immutable snapshots: the route table, the router
//! that swaps it atomically, and tenant identification.

pub mod identify;
pub mod router;
pub mod table;

pub use router::Router;
pub use table::{BackendRoute, RouteTable, TenantId, TenantRoute};
