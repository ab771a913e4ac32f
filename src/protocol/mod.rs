//! The MySQL wire layer, free of I/O: framing, handshake and login packets,
//! authentication, command classification, the response-end scanner and the
//! catalogue of errors silo sends. No sockets, no config, no tenants here.
//!
//! Everything in this module reads bytes from peers that may be hostile, so
//! no function may panic on its input.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod auth;
pub mod caching_sha2;
pub mod command;
pub mod error;
pub mod error_code;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod session_track;
pub mod sql;
pub mod statement;

pub use error::ProtocolError;
pub use error_code::ServerError;
