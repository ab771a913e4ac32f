//! Integration tests: silo in-process, two real `mariadbd` servers shared by
//! the whole binary, real clients (mysql_async and the `mariadb` CLI).
//! Each test provisions its own tenants, so tests run in parallel.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod caching_sha2;
mod commands;
mod control_plane;
mod faults;
mod health;
mod isolation;
mod limits;
mod live_change;
mod login;
mod metrics;
mod multiplex;
mod pool;
mod relay;
mod secrets;
mod shutdown;
