//! Commands silo answers itself, rarely used commands, KILL on silo ids, and
//! malformed input.

use std::time::Duration;

use mysql_async::prelude::*;
use silo::backend::pins::PinReason;
use silo::routing::TenantId;

use crate::common::mariadb::processlist_count;
use crate::common::raw::{RawClient, err_code};
use crate::common::{Setup, bounded, error_code, servers};

#[tokio::test]
async fn ping_is_answered_without_a_backend_connection() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;
    for _ in 0..3 {
        let reply = raw.command(&[0x0E]).await.expect("ping reply");
        assert_eq!(head(&reply), Some(0x00));
    }
    assert_eq!(processlist_count(&servers()[0], &acme.db.user).await, 0);
    assert_eq!(silo.pool(1).snapshot().opened, 0);
    // COM_RESET_CONNECTION without a lease is answered too.
    assert_eq!(head(&raw.command(&[0x1F]).await.unwrap()), Some(0x00));
}

#[tokio::test]
async fn statistics_field_list_init_db_reset_and_unknown_commands() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 1).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;

    let stats = raw.command(&[0x09]).await.unwrap();
    assert!(
        stats.starts_with(b"Uptime"),
        "{}",
        String::from_utf8_lossy(&stats)
    );

    // COM_FIELD_LIST: column definitions then EOF (no DEPRECATE_EOF here).
    let mut field_list = vec![0x04];
    field_list.extend_from_slice(b"items\0");
    raw.send(0, &field_list).await;
    let mut columns = 0;
    loop {
        let (_, p) = raw.read_packet().await.expect("field list packet");
        if head(&p) == Some(0xFE) && p.len() < 9 {
            break;
        }
        assert_ne!(head(&p), Some(0xFF), "field list failed");
        columns += 1;
    }
    assert_eq!(columns, 2);

    let mut init_db = vec![0x02];
    init_db.extend_from_slice(acme.db.database.as_bytes());
    assert_eq!(head(&raw.command(&init_db).await.unwrap()), Some(0x00));
    let mut other = vec![0x02];
    other.extend_from_slice(globex.db.database.as_bytes());
    assert_eq!(err_code(&raw.command(&other).await.unwrap()), Some(1044));

    assert_eq!(head(&raw.command(&[0x1F]).await.unwrap()), Some(0x00));

    // COM_BINLOG_DUMP and an unknown byte: refused, session still usable.
    assert_eq!(
        err_code(&raw.command(&[0x12, 0, 0, 0, 0]).await.unwrap()),
        Some(1047)
    );
    assert_eq!(err_code(&raw.command(&[0xEE]).await.unwrap()), Some(1047));
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
    // COM_QUIT closes.
    raw.send(0, &[0x01]).await;
    assert!(raw.read_packet().await.is_none());
}

#[tokio::test]
async fn kill_query_stops_a_running_statement_of_the_same_tenant_only() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 1).await;
    let silo = setup.start().await;
    let mut sleeper = silo.app(&acme).await;
    let sleeper_id = sleeper.id();
    let running = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let outcome: Result<Option<u8>, _> = sleeper.query_first("SELECT SLEEP(30)").await;
        (outcome, started.elapsed(), sleeper)
    });
    // Wait until the statement runs on the backend.
    let mut root = servers()[0].root_conn().await;
    for _ in 0..200 {
        let n: Option<u64> = root
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT SLEEP%'",
                (acme.db.user.clone(),),
            )
            .await
            .unwrap();
        if n == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Another tenant cannot see or kill it.
    let mut stranger = silo.app(&globex).await;
    let err = stranger
        .query_drop(format!("KILL QUERY {sleeper_id}"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), Some(1094), "{err}");

    let mut killer = silo.app(&acme).await;
    killer
        .query_drop(format!("KILL QUERY {sleeper_id}"))
        .await
        .expect("kill query");
    let (outcome, took, mut sleeper) = bounded("killed sleep", running).await.unwrap();
    assert!(took < Duration::from_secs(20), "sleep was not interrupted");
    match outcome {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert_eq!(error_code(&e), Some(1317), "{e}"),
    }
    // The victim's session survives a KILL QUERY.
    let one: Option<u8> = sleeper.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    // KILL CONNECTION ends it: its next command fails.
    killer
        .query_drop(format!("KILL {sleeper_id}"))
        .await
        .expect("kill connection");
    let err = bounded("after kill", sleeper.query_drop("SELECT 1"))
        .await
        .unwrap_err();
    assert!(matches!(error_code(&err), Some(1927) | None), "{err}");
    // Unknown ids get ER_NO_SUCH_THREAD.
    let err = killer
        .query_drop("KILL QUERY 4000000000")
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), Some(1094));
}

#[tokio::test]
async fn garbage_and_malformed_packets_never_take_silo_down() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;

    // Garbage instead of a handshake response.
    let (mut raw, _) = RawClient::connect(silo.addr).await;
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    if let Some((_, p)) = raw.read_packet().await {
        assert_eq!(head(&p), Some(0xFF));
    }

    // A handshake response claiming 16 MiB.
    let (mut raw, _) = RawClient::connect(silo.addr).await;
    raw.send_raw(&[0xFF, 0xFF, 0xFF, 0x01, 0x00]).await;
    let (_, p) = raw.read_packet().await.expect("an error, not silence");
    assert_eq!(err_code(&p), Some(1153));

    // Truncated login payloads of every length.
    for len in 0..40 {
        let (mut raw, _) = RawClient::connect(silo.addr).await;
        let mut payload = vec![0x0Au8; len];
        if len > 1 {
            payload[1] = 0x02; // CLIENT_PROTOCOL_41
        }
        raw.send(1, &payload).await;
        if let Some((_, p)) = raw.read_packet().await {
            assert_eq!(head(&p), Some(0xFF), "len {len}");
        }
    }

    // Hang up right after connecting.
    for _ in 0..5 {
        let (raw, _) = RawClient::connect(silo.addr).await;
        drop(raw);
    }

    // After login: a command with a wrong sequence id, then garbage.
    let mut raw = silo.raw_app(&acme).await;
    raw.send(7, b"\x03SELECT 1").await;
    let (_, p) = raw
        .read_packet()
        .await
        .expect("error for a bad sequence id");
    assert_eq!(err_code(&p), Some(1835));
    assert!(
        raw.read_packet().await.is_none(),
        "connection closed after desync"
    );

    let mut raw = silo.raw_app(&acme).await;
    raw.send_raw(&[0, 0, 0, 0]).await;
    let (_, p) = raw.read_packet().await.expect("error for an empty command");
    assert_eq!(err_code(&p), Some(1835));

    // silo still serves.
    silo.assert_serves(&acme).await;
}

/// First byte of a packet (mysql_async's prelude shadows `first` on `Vec<u8>`).
fn head(packet: &[u8]) -> Option<u8> {
    <[u8]>::first(packet).copied()
}

#[tokio::test]
async fn cursors_and_long_data_are_relayed() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;

    // COM_STMT_PREPARE: OK, then one column definition and its EOF.
    let mut prepare = vec![0x16];
    prepare.extend_from_slice(b"SELECT id FROM items ORDER BY id");
    let ok = raw.command(&prepare).await.unwrap();
    assert_eq!(head(&ok), Some(0x00), "prepare failed");
    let stmt = ok[1..5].to_vec();
    for _ in 0..2 {
        raw.read_packet().await.expect("column definition / EOF");
    }

    // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: metadata, then an EOF
    // saying a cursor is open, and no rows.
    let mut execute = vec![0x17];
    execute.extend_from_slice(&stmt);
    execute.extend_from_slice(&[0x01, 1, 0, 0, 0]);
    assert_eq!(raw.command(&execute).await.unwrap(), [1]);
    raw.read_packet().await.expect("column definition");
    let (_, eof) = raw.read_packet().await.expect("EOF");
    assert_eq!(head(&eof), Some(0xFE));
    assert_ne!(
        u16::from_le_bytes([eof[3], eof[4]]) & 0x0040,
        0,
        "cursor exists"
    );
    // The cursor pins the session to its backend connection.
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
    let pins = || {
        silo.ctx
            .tenants
            .get(&TenantId(acme.slug.as_str().into()))
            .map(|live| live.pins.snapshot())
            .unwrap_or_default()
    };
    assert_eq!(pins().pinned, 1);
    assert_eq!(pins().pins(PinReason::Cursor), 1);

    // COM_STMT_FETCH two rows at a time: 2 rows, then the last one.
    let mut fetch = vec![0x1C];
    fetch.extend_from_slice(&stmt);
    fetch.extend_from_slice(&2u32.to_le_bytes());
    for expected in [2, 1] {
        raw.send(0, &fetch).await;
        let mut rows = 0;
        loop {
            let (_, p) = raw.read_packet().await.expect("fetched packet");
            if head(&p) == Some(0xFE) && p.len() < 9 {
                break;
            }
            rows += 1;
        }
        assert_eq!(rows, expected);
    }
    // The last row was sent: the cursor is closed and the pin gone.
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
    assert_eq!(pins().pinned, 0);
    let mut close = vec![0x19];
    close.extend_from_slice(&stmt);
    raw.send(0, &close).await;

    // COM_STMT_SEND_LONG_DATA has no response; the execute sees all chunks.
    let mut prepare = vec![0x16];
    prepare.extend_from_slice(b"SELECT LENGTH(?)");
    let ok = raw.command(&prepare).await.unwrap();
    assert_eq!(head(&ok), Some(0x00), "prepare failed");
    let stmt = ok[1..5].to_vec();
    for _ in 0..4 {
        raw.read_packet()
            .await
            .expect("parameter and column definitions");
    }
    for chunk in [vec![b'a'; 100_000], vec![b'b'; 23_456]] {
        let mut long_data = vec![0x18];
        long_data.extend_from_slice(&stmt);
        long_data.extend_from_slice(&[0, 0]);
        long_data.extend_from_slice(&chunk);
        raw.send(0, &long_data).await;
    }
    // Long data waits on the server: pinned until the execute.
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
    assert_eq!(pins().pins(PinReason::LongData), 1);
    assert_eq!(pins().pinned, 1);
    let mut execute = vec![0x17];
    execute.extend_from_slice(&stmt);
    execute.extend_from_slice(&[0x00, 1, 0, 0, 0]);
    execute.extend_from_slice(&[0x00, 0x01, 0xFC, 0x00]); // null bitmap, types bound, BLOB
    assert_eq!(raw.command(&execute).await.unwrap(), [1]);
    raw.read_packet().await.expect("column definition");
    raw.read_packet().await.expect("EOF");
    let (_, row) = raw.read_packet().await.expect("row");
    assert_eq!(head(&row), Some(0x00));
    // LENGTH() is a MYSQL_TYPE_LONG: 4 bytes after the header and null bitmap.
    let length = u32::from_le_bytes(row[2..6].try_into().unwrap());
    assert_eq!(length, 123_456);
    let (_, eof) = raw.read_packet().await.expect("final EOF");
    assert_eq!(head(&eof), Some(0xFE));
    // COM_STMT_RESET answers OK; COM_SET_OPTION answers with one packet.
    let mut reset = vec![0x1A];
    reset.extend_from_slice(&stmt);
    assert_eq!(head(&raw.command(&reset).await.unwrap()), Some(0x00));
    let set_option = raw.command(&[0x1B, 0x01, 0x00]).await.unwrap();
    assert!(
        matches!(head(&set_option), Some(0x00 | 0xFE)),
        "{set_option:?}"
    );
    // Still in step with the server.
    assert_eq!(head(&raw.command(&[0x0E]).await.unwrap()), Some(0x00));
}

#[tokio::test]
async fn oversized_control_packets_get_an_error() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let mut raw = silo.raw_app(&acme).await;
    // A COM_PROCESS_KILL of 100 bytes (it has 4).
    let mut kill = vec![0x0C];
    kill.extend_from_slice(&[0u8; 99]);
    raw.send(0, &kill).await;
    let (_, p) = raw.read_packet().await.expect("an error, not silence");
    assert_eq!(err_code(&p), Some(1153));
}
