//! Tenant identification, authentication and login refusals.

use std::collections::HashMap;

use mysql_async::SslOpts;
use mysql_async::prelude::*;

use crate::common::{APP_PASSWORD, Setup, bounded, error_code, tls_files};

async fn tenant_of(conn: &mut mysql_async::Conn) -> String {
    let name: Option<String> = bounded(
        "query",
        conn.query_first("SELECT name FROM items WHERE id = 1"),
    )
    .await
    .expect("select from items");
    name.expect("one row").trim_end_matches(" one").to_string()
}

#[tokio::test]
async fn username_suffix_routes_each_tenant_to_its_own_database() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let silo = setup.start().await;

    let mut a = silo.app(&acme).await;
    let mut g = silo.app(&globex).await;
    assert_eq!(tenant_of(&mut a).await, acme.slug);
    assert_eq!(tenant_of(&mut g).await, globex.slug);
    let db: Option<String> = a.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some(acme.db.database.as_str()));
    let rows: Vec<(u32, String)> = g
        .query("SELECT id, name FROM items ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2], (3, format!("{} three", globex.slug)));
}

#[tokio::test]
async fn connect_attribute_user_table_and_database_identify_the_tenant() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let globex = setup.tenant("globex", 2).await;
    let setup = setup.user("reporter", &globex.slug, "rep-pass");
    let silo = setup.start().await;

    // "app" exists in both tenants: the connect attribute decides.
    let mut attrs = HashMap::new();
    attrs.insert("tenant".to_string(), globex.slug.clone());
    let mut by_attr = silo
        .connect(silo.opts("app", APP_PASSWORD).connect_attributes(attrs))
        .await;
    assert_eq!(tenant_of(&mut by_attr).await, globex.slug);

    // A username that belongs to one tenant only.
    let mut by_user = silo.connect(silo.opts("reporter", "rep-pass")).await;
    assert_eq!(tenant_of(&mut by_user).await, globex.slug);

    // The default database names the tenant.
    let mut by_db = silo
        .connect(
            silo.opts("app", APP_PASSWORD)
                .db_name(Some(acme.db.database.clone())),
        )
        .await;
    assert_eq!(tenant_of(&mut by_db).await, acme.slug);
}

#[tokio::test]
async fn tls_login_is_routed_by_sni() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert, key);
    let acme = setup.tenant("acme", 1).await;
    let _globex = setup.tenant("globex", 2).await;
    let silo = setup.start().await;

    // "app" exists in both tenants: only the server name can tell.
    let sni = format!("{}.db.example.com", acme.slug);
    let ssl = SslOpts::default()
        .with_danger_accept_invalid_certs(true)
        .with_danger_skip_domain_validation(true)
        .with_danger_tls_hostname_override(Some(sni));
    let mut conn = silo
        .connect(silo.opts("app", APP_PASSWORD).ssl_opts(Some(ssl)))
        .await;
    assert_eq!(tenant_of(&mut conn).await, acme.slug);
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test]
async fn refusals_have_the_right_code_and_a_clear_message() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let suspended = setup.tenant_with_status("susp", 1, "suspended").await;
    let provisioning = setup.tenant_with_status("prov", 2, "provisioning").await;
    let silo = setup.start().await;

    let wrong = silo
        .connect_err(silo.opts(&format!("app.{}", acme.slug), "wrong"))
        .await;
    assert_eq!(error_code(&wrong), Some(1045), "{wrong}");
    assert!(wrong.to_string().contains("Access denied"), "{wrong}");
    assert!(
        !wrong.to_string().contains("wrong"),
        "password echoed: {wrong}"
    );

    let unknown = silo
        .connect_err(silo.opts("app.nosuchtenant", APP_PASSWORD))
        .await;
    assert_eq!(error_code(&unknown), Some(1045));
    assert!(
        unknown
            .to_string()
            .contains("unknown tenant 'nosuchtenant'"),
        "{unknown}"
    );

    let nobody = silo.connect_err(silo.opts("app", APP_PASSWORD)).await;
    assert_eq!(error_code(&nobody), Some(1045));
    assert!(
        nobody.to_string().contains("no tenant could be identified"),
        "{nobody}"
    );

    let susp = silo
        .connect_err(silo.opts(&format!("app.{}", suspended.slug), APP_PASSWORD))
        .await;
    assert_eq!(error_code(&susp), Some(1045));
    assert!(susp.to_string().contains("is suspended"), "{susp}");

    // The status is only revealed to a client that knows the password.
    let susp_wrong = silo
        .connect_err(silo.opts(&format!("app.{}", suspended.slug), "nope"))
        .await;
    assert!(
        !susp_wrong.to_string().contains("suspended"),
        "{susp_wrong}"
    );

    let prov = silo
        .connect_err(silo.opts(&format!("app.{}", provisioning.slug), APP_PASSWORD))
        .await;
    assert!(prov.to_string().contains("not ready"), "{prov}");
}

#[tokio::test]
async fn the_mariadb_cli_logs_in_and_reads_its_tenant() {
    let mut setup = Setup::new();
    let acme = setup.tenant("acme", 1).await;
    let silo = setup.start().await;
    let out = silo
        .cli(
            &format!("app.{}", acme.slug),
            APP_PASSWORD,
            &["-e", "SELECT name FROM items ORDER BY id"],
        )
        .await;
    let text = crate::common::stdout_of_success(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            format!("{} one", acme.slug),
            format!("{} two", acme.slug),
            format!("{} three", acme.slug)
        ]
    );
    let bad = silo
        .cli(&format!("app.{}", acme.slug), "bad", &["-e", "SELECT 1"])
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ERROR 1045 (28000)"));
}

#[tokio::test]
async fn required_tls_refuses_plain_logins_and_accepts_the_cli_over_tls() {
    let (_dir, cert, key) = tls_files();
    let mut setup = Setup::new().tls(cert, key);
    let acme = setup.tenant("acme", 1).await;
    let text = setup.toml().replace("[tls]\n", "[tls]\nrequired = true\n");
    let config = silo::config::Config::from_toml(&text).unwrap();
    let server = silo::server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let user = format!("app.{}", acme.slug);

    let plain = crate::common::mariadb::tcp_opts(addr)
        .user(Some(user.clone()))
        .pass(Some(APP_PASSWORD.to_string()));
    let err = bounded("plain login", mysql_async::Conn::new(plain))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), Some(3159), "{err}");

    let out = bounded(
        "mariadb over TLS",
        tokio::process::Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-h127.0.0.1",
                &format!("-P{}", addr.port()),
                &format!("-u{user}"),
                &format!("-p{APP_PASSWORD}"),
                "--ssl",
                "--skip-ssl-verify-server-cert",
                "--batch",
                "--skip-column-names",
                "-e",
                "SELECT COUNT(*) FROM items",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(crate::common::stdout_of_success(&out).trim(), "3");
}
