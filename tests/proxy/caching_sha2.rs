//! caching_sha2_password for clients that name it (MySQL 8+ connectors):
//! fast path, full authentication over TLS and over plain TCP with RSA, the
//! digest cache, refusals, COM_CHANGE_USER, and Connector/C's plugin through
//! the `mariadb` CLI and, for change-user, a small C program.

use std::sync::Arc;

use silo::frontend::Context;
use silo::frontend::caching_sha2::{RsaKeys, Sha2Auth};

use crate::common::sha2::{PLUGIN, Sha2Client, Sha2Opts};
use crate::common::{APP_PASSWORD, Setup, bounded, tls_files};

const HASHED_PASSWORD: &str = "hashed-pass-0123456789-long";
const WRONG: &str = "Wr0ng-Sha2-Passw0rd";

fn plain() -> Sha2Opts {
    Sha2Opts::default()
}

fn tls(cert: &std::path::Path) -> Sha2Opts {
    Sha2Opts {
        tls_cert: Some(cert.to_path_buf()),
        ..Sha2Opts::default()
    }
}

async fn login(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
    opts: &Sha2Opts,
) -> Sha2Client {
    match Sha2Client::login(addr, user, password, opts).await {
        Ok(client) => client,
        Err(refused) => panic!(
            "login refused: {:?} {} after {:?}",
            refused.code(),
            refused.message(),
            refused.trace
        ),
    }
}

async fn refused(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
    opts: &Sha2Opts,
) -> crate::common::sha2::Refused {
    match Sha2Client::login(addr, user, password, opts).await {
        Ok(client) => panic!("login unexpectedly accepted after {:?}", client.trace),
        Err(refused) => refused,
    }
}

#[tokio::test]
async fn full_auth_over_tls_is_cached_for_the_fast_path() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert.clone(), key);
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.user_with_hash("hashed", &acme.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let user = format!("hashed.{}", acme.slug);

    // Nothing cached yet: full authentication, and a wrong password is 1045.
    let wrong = refused(silo.addr, &user, WRONG, &tls(&cert)).await;
    assert_eq!(wrong.code(), Some(1045), "{}", wrong.message());
    assert!(
        wrong.message().contains("Access denied"),
        "{}",
        wrong.message()
    );
    assert_eq!(wrong.trace.statuses, [4]);

    let mut first = login(silo.addr, &user, HASHED_PASSWORD, &tls(&cert)).await;
    assert_eq!(first.trace.statuses, [4], "full authentication expected");
    assert_eq!(first.query_one("SELECT COUNT(*) FROM items").await, "3");

    // The digest is cached: the next login takes the fast path, even on
    // plain TCP where full authentication would need RSA.
    let mut fast = login(silo.addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(fast.trace.statuses, [3], "fast path expected");
    assert_eq!(fast.trace.public_key, None);
    assert_eq!(
        fast.query_one("SELECT name FROM items WHERE id = 1").await,
        format!("{} one", acme.slug)
    );

    // A wrong scramble with a cached digest falls back to full
    // authentication, as MySQL does, and is refused on both transports.
    for opts in [plain(), tls(&cert)] {
        let wrong = refused(silo.addr, &user, WRONG, &opts).await;
        assert_eq!(wrong.code(), Some(1045), "{}", wrong.message());
        assert_eq!(wrong.trace.statuses, [4]);
    }
    let again = login(silo.addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(again.trace.statuses, [3]);
}

#[tokio::test]
async fn full_auth_over_plain_tcp_uses_the_rsa_key() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 2).await;
    let setup = setup
        .user_with_hash("hashed", &acme.slug, HASHED_PASSWORD)
        .user_with_hash("pinned", &acme.slug, HASHED_PASSWORD)
        .user_with_hash("other", &acme.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let user = format!("hashed.{}", acme.slug);

    let mut rsa = login(silo.addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(rsa.trace.statuses, [4]);
    let pem = rsa.trace.public_key.clone().expect("public key requested");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert_eq!(rsa.query_one("SELECT COUNT(*) FROM items").await, "3");
    let fast = login(silo.addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(fast.trace.statuses, [3]);

    // Wrong password through RSA: 1045, and nothing cached for it.
    let other = format!("other.{}", acme.slug);
    let wrong = refused(silo.addr, &other, WRONG, &plain()).await;
    assert_eq!(wrong.code(), Some(1045), "{}", wrong.message());
    assert!(wrong.trace.public_key.is_some());
    let right = login(silo.addr, &other, HASHED_PASSWORD, &plain()).await;
    assert_eq!(right.trace.statuses, [4]);

    // A client configured with the key sends the encrypted password at once.
    let pinned_opts = Sha2Opts {
        pinned_key: Some(pem),
        ..Sha2Opts::default()
    };
    let pinned = format!("pinned.{}", acme.slug);
    let wrong = refused(silo.addr, &pinned, WRONG, &pinned_opts).await;
    assert_eq!(wrong.code(), Some(1045));
    let mut with_key = login(silo.addr, &pinned, HASHED_PASSWORD, &pinned_opts).await;
    assert_eq!(with_key.trace.statuses, [4]);
    assert_eq!(with_key.trace.public_key, None);
    assert_eq!(with_key.query_one("SELECT 40 + 2").await, "42");
}

#[tokio::test]
async fn clear_text_config_passwords_take_the_fast_path_at_once() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let user = format!("app.{}", acme.slug);

    let mut conn = login(silo.addr, &user, APP_PASSWORD, &plain()).await;
    assert_eq!(conn.trace.statuses, [3]);
    assert!(conn.trace.switches.is_empty());
    assert_eq!(conn.query_one("SELECT DATABASE()").await, acme.db.database);

    let wrong = refused(silo.addr, &user, WRONG, &plain()).await;
    assert_eq!(wrong.code(), Some(1045), "{}", wrong.message());
    assert_eq!(wrong.trace.statuses, [4]);

    // libmysqlclient and Connector/C send an empty first response when the
    // greeting named another plugin; silo asks again with the same nonce.
    let lazy = Sha2Opts {
        empty_first: true,
        ..Sha2Opts::default()
    };
    let mut asked = login(silo.addr, &user, APP_PASSWORD, &lazy).await;
    assert_eq!(asked.trace.switches, [PLUGIN]);
    assert_eq!(asked.trace.statuses, [3]);
    assert_eq!(asked.query_one("SELECT 1").await, "1");
    let wrong = refused(silo.addr, &user, WRONG, &lazy).await;
    assert_eq!(wrong.code(), Some(1045));
}

#[tokio::test]
async fn empty_passwords_behave_as_in_mysql() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.user("nopass", &acme.slug, "");
    let silo = setup.start().await;
    let nopass = format!("nopass.{}", acme.slug);

    // An empty response is asked again (it may be a client waiting to be
    // asked); an empty answer then logs in without any AuthMoreData.
    let mut empty = login(silo.addr, &nopass, "", &plain()).await;
    assert_eq!(empty.trace.switches, [PLUGIN]);
    assert!(empty.trace.statuses.is_empty());
    assert_eq!(empty.query_one("SELECT COUNT(*) FROM items").await, "3");

    // libmysqlclient's "no password": a single NUL, accepted at once.
    let (mut raw, _) = Sha2Client::start(silo.addr, &nopass, &[0]).await;
    let (_, ok) = raw.read_packet().await.expect("reply");
    assert_eq!(ok.first(), Some(&0x00), "{ok:?}");

    // A password for a user without one, and no password for a user with one.
    let wrong = refused(silo.addr, &nopass, WRONG, &plain()).await;
    assert_eq!(wrong.code(), Some(1045));
    let (mut raw, _) = Sha2Client::start(silo.addr, &format!("app.{}", acme.slug), &[0]).await;
    let (_, err) = raw.read_packet().await.expect("reply");
    assert_eq!(crate::common::raw::err_code(&err), Some(1045));
}

#[tokio::test]
async fn garbage_in_the_exchange_gets_an_err_never_a_hang() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.user_with_hash("hashed", &acme.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let user = format!("hashed.{}", acme.slug);

    // Garbage where the RSA-encrypted password belongs, with and without
    // asking for the key first, and a first response of the wrong size.
    // A clear-text password where the RSA one belongs is refused unchecked.
    for (first_len, ask_key, garbage, code) in [
        (32, false, vec![0x07; 10], 1045),
        (32, true, vec![0x5A; 256], 1045),
        (32, true, vec![0x00; 256], 1045),
        (32, true, Vec::new(), 1045),
        (5, false, vec![0x33; 300], 1045),
        (32, true, format!("{HASHED_PASSWORD}\0").into_bytes(), 1251),
    ] {
        // Any 32 bytes but the right scramble ask for full authentication.
        let (mut raw, _) = Sha2Client::start(silo.addr, &user, &vec![1; first_len]).await;
        let (seq, more) = raw.read_packet().await.expect("AuthMoreData");
        assert_eq!(more, [0x01, 0x04]);
        let mut seq = seq + 1;
        if ask_key {
            raw.send(seq, &[0x02]).await;
            let (got, key) = raw.read_packet().await.expect("public key");
            assert_eq!(key.first(), Some(&0x01));
            seq = got + 1;
        }
        raw.send(seq, &garbage).await;
        let (_, err) = raw.read_packet().await.expect("an ERR, not a hang");
        assert_eq!(
            crate::common::raw::err_code(&err),
            Some(code),
            "first {first_len} bytes, key asked {ask_key}, garbage {} bytes",
            garbage.len()
        );
        assert!(raw.read_packet().await.is_none(), "connection closed");
    }
}

#[tokio::test]
async fn without_an_rsa_key_plain_full_auth_is_refused_clearly() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert.clone(), key);
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.user_with_hash("hashed", &acme.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    // The same tenants, pools and TLS, served with no RSA key.
    let ctx = Arc::new(Context {
        router: silo.ctx.router.clone(),
        pools: silo.ctx.pools.clone(),
        registry: silo.ctx.registry.clone(),
        tls: silo.ctx.tls.clone(),
        tls_required: false,
        server_version: silo.ctx.server_version.clone(),
        lease_timeout: silo.ctx.lease_timeout,
        tenants: silo.ctx.tenants.clone(),
        statement_cache_size: silo.ctx.statement_cache_size,
        sha2: Sha2Auth::new(RsaKeys::Disabled),
        catalog: silo.ctx.catalog.clone(),
        metrics: silo.ctx.metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(silo::frontend::listener::serve(
        listener,
        ctx,
        Vec::new(),
        std::future::pending(),
    ));
    let user = format!("hashed.{}", acme.slug);

    let no_key = refused(addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(no_key.code(), Some(1251), "{}", no_key.message());
    assert!(
        no_key.message().contains("connect with TLS"),
        "{}",
        no_key.message()
    );
    assert_eq!(no_key.trace.statuses, [4]);

    let mut over_tls = login(addr, &user, HASHED_PASSWORD, &tls(&cert)).await;
    assert_eq!(over_tls.trace.statuses, [4]);
    assert_eq!(over_tls.query_one("SELECT COUNT(*) FROM items").await, "3");
    // Once cached, plain TCP needs no key.
    let fast = login(addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(fast.trace.statuses, [3]);
}

async fn change_user(client: &mut Sha2Client, user: &str, password: &str, opts: &Sha2Opts) {
    if let Err(refused) = client.change_user(user, password, opts).await {
        panic!(
            "change of user refused: {:?} {} after {:?}",
            refused.code(),
            refused.message(),
            refused.trace
        );
    }
}

/// COM_CHANGE_USER naming caching_sha2_password is answered as MySQL 8+
/// answers it: an AuthSwitchRequest to caching_sha2_password with a fresh
/// nonce, then the fast path or full authentication (RSA on plain TCP, clear
/// text over TLS), and the session is routed to the new tenant.
#[tokio::test]
async fn change_user_speaks_caching_sha2_password() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert.clone(), key);
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let setup = setup
        .user_with_hash("hashed", &globex.slug, HASHED_PASSWORD)
        .user_with_hash("hashed", &acme.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let acme_app = format!("app.{}", acme.slug);
    let globex_app = format!("app.{}", globex.slug);
    let globex_hashed = format!("hashed.{}", globex.slug);
    let acme_hashed = format!("hashed.{}", acme.slug);
    let item = "SELECT name FROM items WHERE id = 1";

    let mut conn = login(silo.addr, &acme_app, APP_PASSWORD, &plain()).await;
    assert_eq!(conn.query_one(item).await, format!("{} one", acme.slug));

    // The configuration knows the clear text: fast path at once.
    change_user(&mut conn, &globex_app, APP_PASSWORD, &plain()).await;
    assert_eq!(conn.trace.switches, [PLUGIN]);
    assert_eq!(conn.trace.statuses, [3]);
    assert_eq!(conn.query_one(item).await, format!("{} one", globex.slug));
    assert_eq!(
        conn.query_one("SELECT DATABASE()").await,
        globex.db.database
    );

    // Nothing cached for a hashed user: full authentication over RSA on
    // plain TCP, the password XORed with the switch's nonce.
    change_user(&mut conn, &globex_hashed, HASHED_PASSWORD, &plain()).await;
    assert_eq!(conn.trace.switches, [PLUGIN]);
    assert_eq!(conn.trace.statuses, [4]);
    assert!(conn.trace.public_key.is_some());
    assert_eq!(conn.query_one(item).await, format!("{} one", globex.slug));

    // Cached now: back and forth on the fast path, also for a client that
    // sends nothing in the COM_CHANGE_USER and waits for the nonce, as
    // libmysqlclient does.
    change_user(&mut conn, &acme_app, APP_PASSWORD, &plain()).await;
    assert_eq!(conn.query_one(item).await, format!("{} one", acme.slug));
    let lazy = Sha2Opts {
        empty_first: true,
        ..Sha2Opts::default()
    };
    change_user(&mut conn, &globex_hashed, HASHED_PASSWORD, &lazy).await;
    assert_eq!(conn.trace.switches, [PLUGIN]);
    assert_eq!(conn.trace.statuses, [3]);
    assert_eq!(conn.query_one(item).await, format!("{} one", globex.slug));

    // Over TLS, full authentication takes the clear-text password.
    let mut secure = login(silo.addr, &globex_app, APP_PASSWORD, &tls(&cert)).await;
    assert_eq!(secure.query_one(item).await, format!("{} one", globex.slug));
    change_user(&mut secure, &acme_hashed, HASHED_PASSWORD, &tls(&cert)).await;
    assert_eq!(secure.trace.switches, [PLUGIN]);
    assert_eq!(secure.trace.statuses, [4]);
    assert_eq!(secure.trace.public_key, None);
    assert_eq!(secure.query_one(item).await, format!("{} one", acme.slug));
}

#[tokio::test]
async fn change_user_with_a_wrong_password_is_refused_and_closed() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert.clone(), key);
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let setup = setup.user_with_hash("hashed", &globex.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let acme_app = format!("app.{}", acme.slug);
    let globex_app = format!("app.{}", globex.slug);
    let globex_hashed = format!("hashed.{}", globex.slug);

    // A wrong scramble for a known digest, then a wrong password through
    // RSA and over TLS: each is 1045 and the connection closes.
    for (user, opts, statuses) in [
        (&globex_app, plain(), vec![4]),
        (&globex_hashed, plain(), vec![4]),
        (&globex_hashed, tls(&cert), vec![4]),
    ] {
        let mut conn = login(silo.addr, &acme_app, APP_PASSWORD, &opts).await;
        assert_eq!(conn.query_one("SELECT COUNT(*) FROM items").await, "3");
        let refused = match conn.change_user(user, WRONG, &opts).await {
            Ok(()) => panic!("change of user to {user} accepted a wrong password"),
            Err(refused) => refused,
        };
        assert_eq!(refused.code(), Some(1045), "{}", refused.message());
        assert!(
            refused.message().contains("Access denied"),
            "{}",
            refused.message()
        );
        assert_eq!(refused.trace.switches, [PLUGIN]);
        assert_eq!(refused.trace.statuses, statuses);
        assert!(conn.read_packet().await.is_none(), "connection closed");
    }

    // Nothing was cached by the refusals: the right password still needs
    // full authentication.
    let mut conn = login(silo.addr, &acme_app, APP_PASSWORD, &plain()).await;
    change_user(&mut conn, &globex_hashed, HASHED_PASSWORD, &plain()).await;
    assert_eq!(conn.trace.statuses, [4]);
    assert_eq!(
        conn.query_one("SELECT name FROM items WHERE id = 1").await,
        format!("{} one", globex.slug)
    );
}

/// The `mariadb` CLI with caching_sha2_password: (success, stdout, stderr).
/// `tls`: `--ssl`, `--skip-ssl`, or the client's default.
async fn cli_sha2(
    silo: &crate::common::Silo,
    user: &str,
    password: &str,
    tls: Option<bool>,
) -> (bool, String, String) {
    let mut args = vec!["--default-auth=caching_sha2_password"];
    match tls {
        Some(true) => args.extend(["--ssl", "--skip-ssl-verify-server-cert"]),
        Some(false) => args.push("--skip-ssl"),
        None => {}
    }
    args.extend(["-e", "SELECT COUNT(*) FROM items"]);
    let out = silo.cli(user, password, &args).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Connector/C's caching_sha2_password plugin, as the `mariadb` CLI loads
/// it with `--default-auth`: a real MySQL 8-style client.
#[tokio::test]
async fn the_mariadb_cli_logs_in_with_caching_sha2_password() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let setup = setup
        .user_with_hash("hashed", &acme.slug, HASHED_PASSWORD)
        .user_with_hash("other", &acme.slug, HASHED_PASSWORD);
    let without_tls = setup.start().await;
    let silo = setup.tls(cert, key).start().await;
    let user = format!("hashed.{}", acme.slug);
    let other = format!("other.{}", acme.slug);
    // Against a server without TLS, this Connector/C with its default TLS
    // setting (no --skip-ssl) goes on in plain TCP yet sends the password
    // unencrypted:
    // refused without checking it. That refusal also shows the CLI really
    // speaks caching_sha2_password (native would log in).
    let (ok, _, stderr) = cli_sha2(&without_tls, &user, HASHED_PASSWORD, None).await;
    assert!(!ok);
    assert!(stderr.contains("ERROR 1251 (08004)"), "{stderr}");
    assert!(stderr.contains("connect with TLS"), "{stderr}");

    // With plain TCP chosen it asks for the RSA key: full authentication,
    // then the fast path; and full authentication over TLS.
    for (silo, user, tls) in [
        (&without_tls, &user, false),
        (&without_tls, &user, false),
        (&silo, &other, true),
    ] {
        let (ok, out, stderr) = cli_sha2(silo, user, HASHED_PASSWORD, Some(tls)).await;
        assert!(ok, "{user} tls={tls}: {stderr}");
        assert_eq!(out, "3");
    }
    for tls in [false, true] {
        let (ok, _, stderr) = cli_sha2(&silo, &user, WRONG, Some(tls)).await;
        assert!(!ok);
        assert!(stderr.contains("ERROR 1045 (28000)"), "tls={tls}: {stderr}");
    }
}

/// Connector/C's mysql_change_user() with its caching_sha2_password plugin
/// (the `mariadb` CLI never calls it: its `connect` opens a new connection),
/// through a small C program built here against the installed libmariadb.
#[tokio::test]
async fn connector_c_changes_user_with_caching_sha2_password() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let setup = setup.user_with_hash("hashed", &globex.slug, HASHED_PASSWORD);
    let silo = setup.start().await;
    let acme_app = format!("app.{}", acme.slug);
    let globex_app = format!("app.{}", globex.slug);
    let globex_hashed = format!("hashed.{}", globex.slug);

    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("change_user");
    let built = std::process::Command::new("cc")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/connector_c/change_user.c"
        ))
        .arg("-o")
        .arg(&program)
        .arg("-l:libmariadb.so.3")
        .output()
        .expect("cc runs");
    assert!(
        built.status.success(),
        "building against libmariadb.so.3: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let port = silo.addr.port().to_string();
    // Full authentication over RSA (plain TCP), the fast path from the
    // configuration's clear text, the fast path from the cached digest, and
    // a wrong password.
    let out = bounded(
        "Connector/C change_user",
        tokio::process::Command::new(&program)
            .args([&port, &acme_app, APP_PASSWORD])
            .args([&globex_hashed, HASHED_PASSWORD])
            .args([&acme_app, APP_PASSWORD])
            .args([&globex_hashed, HASHED_PASSWORD])
            .args([&globex_app, WRONG])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acme_item = format!("{} one", acme.slug);
    let globex_item = format!("{} one", globex.slug);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            acme_item.as_str(),
            &globex_item,
            &acme_item,
            &globex_item,
            "change_user error 1045"
        ]
    );
    // The digest was cached by caching_sha2_password's full authentication
    // (mysql_native_password would cache nothing): the plugin really spoke.
    let fast = login(silo.addr, &globex_hashed, HASHED_PASSWORD, &plain()).await;
    assert_eq!(fast.trace.statuses, [3]);
}

#[tokio::test]
async fn debug_logs_carry_no_secret_of_the_exchange() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let setup = setup.user_with_hash("hashed", &acme.slug, HASHED_PASSWORD);
    let silo = setup.spawn(Some("debug")).await;
    let addr = silo.addr;
    let user = format!("hashed.{}", acme.slug);

    let mut rsa = login(addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(rsa.query_one("SELECT COUNT(*) FROM items").await, "3");
    let pem = rsa.trace.public_key.clone().expect("key requested");
    let fast = login(addr, &user, HASHED_PASSWORD, &plain()).await;
    assert_eq!(fast.trace.statuses, [3]);
    let wrong = refused(addr, &user, WRONG, &plain()).await;
    assert_eq!(wrong.code(), Some(1045));
    drop((rsa, fast));

    let logs = silo.stop_and_read_logs().await;
    assert!(logs.contains("caching_sha2_password fast path"), "{logs}");
    assert!(logs.contains("generated the RSA key"), "{logs}");
    assert!(
        logs.contains("wrong password"),
        "refusal not logged:\n{logs}"
    );
    for secret in [HASHED_PASSWORD, WRONG] {
        assert!(!logs.contains(secret), "a password appears in the logs");
    }
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!logs.contains(line), "the key appears in the logs");
    }
    assert!(
        !logs.contains("PRIVATE KEY"),
        "a private key appears in the logs"
    );
}
