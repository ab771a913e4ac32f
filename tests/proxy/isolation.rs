//! Isolation between tenants (enforced by MariaDB's grants) and between
//! successive clients of one pooled connection.

use std::time::{Duration, Instant};

use mysql_async::ChangeUserOpts;
use mysql_async::prelude::*;

use crate::common::{APP_PASSWORD, Setup, bounded, error_code, servers};

#[tokio::test]
async fn a_tenant_cannot_read_another_tenants_database() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 1).await;
    let silo = setup.start().await;
    let mut a = silo.app(&acme).await;

    let by_use = a
        .query_drop(format!("USE {}", globex.db.database))
        .await
        .unwrap_err();
    assert_eq!(error_code(&by_use), Some(1044), "{by_use}");

    let qualified = a
        .query_drop(format!("SELECT * FROM {}.items", globex.db.database))
        .await
        .unwrap_err();
    assert_eq!(error_code(&qualified), Some(1142), "{qualified}");

    // Asking for the other database at login: mysql_async's first statement
    // (it reads @@max_allowed_packet) already meets MariaDB's refusal.
    let err = silo
        .connect_err(
            silo.opts(&format!("app.{}", acme.slug), APP_PASSWORD)
                .db_name(Some(globex.db.database.clone())),
        )
        .await;
    assert_eq!(error_code(&err), Some(1044), "{err}");
}

#[tokio::test]
async fn change_user_reauthenticates_and_reroutes() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let silo = setup.start().await;
    let mut conn = silo.app(&acme).await;
    let before: Option<String> = conn
        .query_first("SELECT name FROM items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(before, Some(format!("{} one", acme.slug)));

    bounded(
        "change user",
        conn.change_user(
            ChangeUserOpts::default()
                .with_user(Some(format!("app.{}", globex.slug)))
                .with_pass(Some(APP_PASSWORD.to_string())),
        ),
    )
    .await
    .expect("change to globex");
    let after: Option<String> = conn
        .query_first("SELECT name FROM items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(after, Some(format!("{} one", globex.slug)));

    // A wrong password on change user is refused.
    let err = bounded(
        "change user",
        conn.change_user(
            ChangeUserOpts::default()
                .with_user(Some(format!("app.{}", acme.slug)))
                .with_pass(Some("wrong".to_string())),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error_code(&err), Some(1045), "{err}");
}

#[tokio::test]
async fn no_session_state_reaches_the_next_client_of_a_pooled_connection() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    // One connection: the second client must get the first one's.
    let silo = setup.backend(1, servers()[0].addr(), 1).start().await;

    let mut first = silo.app(&acme).await;
    let thread: u64 = first
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    first.query_drop("SET @secret = 42").await.unwrap();
    first
        .query_drop("CREATE TEMPORARY TABLE scratch (i INT)")
        .await
        .unwrap();
    first.query_drop("SET time_zone = '+05:00'").await.unwrap();
    first.query_drop("BEGIN").await.unwrap();
    first
        .query_drop("INSERT INTO items VALUES (99, 'uncommitted')")
        .await
        .unwrap();
    first.disconnect().await.unwrap();

    // The released connection is reset, then idle again.
    let pool = silo.pool(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.snapshot().idle != 1 {
        assert!(
            Instant::now() < deadline,
            "connection never returned: {:?}",
            pool.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut second = silo.app(&acme).await;
    let same: u64 = second
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, thread, "the pooled connection was reused");
    let secret: Option<Option<i64>> = second.query_first("SELECT @secret").await.unwrap();
    assert_eq!(secret, Some(None));
    let tz: Option<String> = second.query_first("SELECT @@time_zone").await.unwrap();
    assert_eq!(tz.as_deref(), Some("SYSTEM"));
    let scratch = second
        .query_drop("SELECT * FROM scratch")
        .await
        .unwrap_err();
    assert_eq!(error_code(&scratch), Some(1146), "{scratch}");
    let leaked: Option<u64> = second
        .query_first("SELECT COUNT(*) FROM items WHERE id = 99")
        .await
        .unwrap();
    assert_eq!(leaked, Some(0), "an uncommitted row survived the reset");
}
