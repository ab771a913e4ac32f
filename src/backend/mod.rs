//! Connections to MariaDB servers and the per-backend pools that share them
//! between tenants.

pub mod connection;
pub mod error;
pub mod fair;
mod health;
pub mod pins;
pub mod pool;
pub mod session_vars;
pub mod statements;

pub use connection::{BackendConn, Identity};
pub use error::BackendError;
pub use pool::{Lease, Pool, PoolStats, Pools};
