//! No secret reaches silo's logs, even at debug level.

use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::*;
use tokio::io::AsyncReadExt;

use crate::common::{APP_PASSWORD, Setup, bounded, error_code};

#[tokio::test]
async fn debug_logs_carry_no_password() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = setup.toml().replace(
        "mysql = \"127.0.0.1:0\"",
        &format!("mysql = \"127.0.0.1:{port}\""),
    );
    let path = dir.path().join("silo.toml");
    std::fs::write(&path, &config).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("silo starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let opts = |password: &str| {
        crate::common::mariadb::tcp_opts(addr)
            .user(Some(format!("app.{}", acme.slug)))
            .pass(Some(password.to_string()))
    };
    // Wait until it listens, then exercise logins, a refusal and a query.
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = mysql_async::Conn::new(opts(APP_PASSWORD)).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = conn.expect("silo answers");
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    let wrong = "Wr0ng-Secret-Passw0rd";
    let err = bounded("wrong password", mysql_async::Conn::new(opts(wrong)))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), Some(1045));
    conn.disconnect().await.unwrap();

    child.start_kill().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut logs = String::new();
    bounded("silo's logs", stderr.read_to_string(&mut logs))
        .await
        .unwrap();
    assert!(logs.contains("login"), "no login logged:\n{logs}");
    assert!(
        logs.contains("wrong password"),
        "refusal not logged:\n{logs}"
    );
    for secret in [APP_PASSWORD, wrong, acme.db.password.as_str()] {
        assert!(!logs.contains(secret), "a password appears in the logs");
    }
}
