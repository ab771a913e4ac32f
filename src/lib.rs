//! silo: a MySQL/MariaDB wire-protocol routing proxy for database-per-tenant SaaS.
//!
//! A client logs in to silo as if it were MariaDB; silo authenticates it, works
//! out which tenant it belongs to, and relays its commands raw to that tenant's
//! database through connection pools shared per backend server.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, parsed, validated as a whole and frozen.
//! - [`routing`]: the route table (tenants, users, plans, backends) as an
//!   immutable snapshot behind `ArcSwap`, and tenant identification.
//! - [`protocol`]: the MySQL wire layer, free of I/O: framing, handshake,
//!   authentication, the response-end scanner, the error catalogue.
//! - [`backend`]: connections to MariaDB servers and the per-backend pools.
//! - [`frontend`]: one client connection, from accept through login to quit.
//! - [`admin`]: the operators' MySQL-protocol port (`SHOW TENANTS`, live
//!   changes through the [`catalog`]).
//! - [`metrics`]: Prometheus metrics and health endpoints over HTTP.
//! - [`server`]: wiring; the only module that knows all the others.
#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::await_holding_lock)]

pub mod admin;
pub mod backend;
pub mod catalog;
pub mod config;
pub mod frontend;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod routing;
pub mod secret;
pub mod secret_box;
pub mod server;
