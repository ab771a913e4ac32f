//! The raw relay: result sets, prepared statements, multi-statements, LOCAL
//! INFILE, packets over 16 MiB, and clients with different capabilities.

use mysql_async::prelude::*;

use crate::common::{APP_PASSWORD, Setup, bounded};

#[tokio::test]
async fn prepared_statements_execute_with_parameters() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let mut conn = silo.app(&acme).await;

    let stmt = conn
        .prep("SELECT name FROM items WHERE id = ?")
        .await
        .unwrap();
    for id in 1..=3u32 {
        let name: Option<String> = conn.exec_first(&stmt, (id,)).await.unwrap();
        let word = ["one", "two", "three"][id as usize - 1];
        assert_eq!(name, Some(format!("{} {word}", acme.slug)));
    }
    conn.exec_drop("INSERT INTO items VALUES (?, ?)", (10u32, "via prepare"))
        .await
        .unwrap();
    let rows: Vec<(u32, Option<String>)> = conn
        .exec(
            "SELECT id, name FROM items WHERE id >= ? ORDER BY id",
            (3u32,),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1], (10, Some("via prepare".to_string())));
    conn.close(stmt).await.unwrap();
    // NULLs, dates and decimals go through the binary protocol untouched.
    let row: Option<(Option<u8>, String, String)> = conn
        .exec_first(
            "SELECT NULL, CAST(? AS DATE), CAST(? AS DECIMAL(10,3))",
            ("2026-11-24", "12.5"),
        )
        .await
        .unwrap()
        .map(
            |(a, b, c): (Option<u8>, mysql_async::Value, mysql_async::Value)| {
                (a, format!("{b:?}"), format!("{c:?}"))
            },
        );
    let (null, date, dec) = row.unwrap();
    assert_eq!(null, None);
    assert!(date.contains("2026"), "{date}");
    assert!(dec.contains("12.500"), "{dec}");
}

#[tokio::test]
async fn multi_statements_and_procedures_return_every_result_set() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let silo = setup.start().await;
    let mut conn = silo.app(&acme).await;

    let mut result = conn
        .query_iter("SELECT 1 AS a; SELECT 2 AS b, 3 AS c; UPDATE items SET name = name WHERE id = 0; SELECT COUNT(*) FROM items")
        .await
        .unwrap();
    let first: Vec<u8> = result.collect().await.unwrap();
    let second: Vec<(u8, u8)> = result.collect().await.unwrap();
    let third: Vec<u8> = result.collect().await.unwrap();
    let fourth: Vec<u64> = result.collect().await.unwrap();
    drop(result);
    assert_eq!(first, [1]);
    assert_eq!(second, [(2, 3)]);
    assert!(third.is_empty());
    assert_eq!(fourth, [3]);

    conn.query_drop(
        "CREATE PROCEDURE two_sets() BEGIN SELECT 'x'; SELECT id FROM items ORDER BY id; END",
    )
    .await
    .unwrap();
    let mut result = conn.query_iter("CALL two_sets()").await.unwrap();
    let x: Vec<String> = result.collect().await.unwrap();
    let ids: Vec<u32> = result.collect().await.unwrap();
    drop(result);
    assert_eq!(x, ["x"]);
    assert_eq!(ids, [1, 2, 3]);
    // An error in the middle of a batch ends it and leaves the session usable.
    let err = conn
        .query_iter("SELECT 1; SELECT * FROM no_such_table; SELECT 3")
        .await;
    let err = match err {
        Ok(mut r) => {
            let _: Vec<u8> = r.collect().await.unwrap();
            r.collect::<u8>().await.unwrap_err()
        }
        Err(e) => e,
    };
    assert_eq!(crate::common::error_code(&err), Some(1146));
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test]
async fn blobs_of_20_mib_round_trip_both_ways() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let mut conn = silo.app(&acme).await;
    conn.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();

    let size = 20 << 20;
    let blob: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    bounded(
        "prepared insert",
        conn.exec_drop("INSERT INTO blobs VALUES (1, ?)", (blob.clone(),)),
    )
    .await
    .unwrap();
    // A text-protocol command bigger than one 16 MiB packet.
    let text = "z".repeat(size);
    bounded(
        "text insert",
        conn.query_drop(format!("INSERT INTO blobs VALUES (2, '{text}')")),
    )
    .await
    .unwrap();

    let back: Option<Vec<u8>> = bounded(
        "text select",
        conn.query_first("SELECT b FROM blobs WHERE id = 1"),
    )
    .await
    .unwrap();
    assert_eq!(back.as_ref().map(Vec::len), Some(size));
    assert!(back.unwrap() == blob, "blob changed in transit");
    let back: Option<Vec<u8>> = bounded(
        "binary select",
        conn.exec_first("SELECT b FROM blobs WHERE id = ?", (2u32,)),
    )
    .await
    .unwrap();
    assert_eq!(back.as_ref().map(Vec::len), Some(size));
    assert!(back.unwrap().iter().all(|&b| b == b'z'));
    let lengths: Vec<u64> = conn
        .query("SELECT LENGTH(b) FROM blobs ORDER BY id")
        .await
        .unwrap();
    assert_eq!(lengths, [size as u64, size as u64]);
}

#[tokio::test]
async fn load_data_local_infile_goes_through() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    let mut csv = String::new();
    for id in 100..1100 {
        csv += &format!("{id},row {id}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let sql = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE items FIELDS TERMINATED BY ','; SELECT COUNT(*) FROM items",
        file.display()
    );
    let out = silo
        .cli(
            &format!("app.{}", acme.slug),
            APP_PASSWORD,
            &["--local-infile=1", "-e", &sql],
        )
        .await;
    assert_eq!(crate::common::stdout_of_success(&out).trim(), "1003");

    // A file the client refuses to send ends with an error, not a hang.
    let missing = format!(
        "LOAD DATA LOCAL INFILE '{}/missing.csv' INTO TABLE items",
        dir.path().display()
    );
    let out = silo
        .cli(
            &format!("app.{}", acme.slug),
            APP_PASSWORD,
            &["--local-infile=1", "-e", &missing],
        )
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ERROR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn cli_and_mysql_async_share_a_backend_at_the_same_time() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    // mysql_async negotiates CLIENT_DEPRECATE_EOF; libmariadb does not.
    let mut conn = silo.app(&acme).await;
    let before: Vec<String> = conn
        .query("SELECT name FROM items ORDER BY id")
        .await
        .unwrap();
    let sql = "SELECT id, name FROM items ORDER BY id; SELECT 'second', 2";
    let user = format!("app.{}", acme.slug);
    let args = ["-e", sql];
    let (out, during) = tokio::join!(
        silo.cli(&user, APP_PASSWORD, &args),
        conn.query::<(u32, String), _>("SELECT id, name FROM items ORDER BY id")
    );
    let text = crate::common::stdout_of_success(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], format!("1\t{} one", acme.slug));
    assert_eq!(lines[3], "second\t2");
    assert_eq!(during.unwrap().len(), before.len());
    // Two capability profiles, two backend connections.
    assert!(silo.pool(1).snapshot().opened >= 2);
}
