//! No secret reaches silo's logs, even at debug level.
use mysql_async::prelude::*;

use crate::common::{APP_PASSWORD, Setup, bounded, error_code};

#[tokio::test]
async fn debug_logs_carry_no_password() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.spawn(Some("debug")).await;
    let user = format!("app.{}", acme.slug);
    let opts = |password: &str| silo.opts(&user, password);
    // Logins, a refusal and a query.
    let mut conn = bounded("login", mysql_async::Conn::new(opts(APP_PASSWORD)))
        .await
        .expect("silo answers");
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

    let logs = silo.stop_and_read_logs().await;
    assert!(logs.contains("login"), "no login logged:\n{logs}");
    assert!(
        logs.contains("wrong password"),
        "refusal not logged:\n{logs}"
    );
    for secret in [APP_PASSWORD, wrong, acme.db.password.as_str()] {
        assert!(!logs.contains(secret), "a password appears in the logs");
    }
}
