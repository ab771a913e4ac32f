//! The metrics port: `/metrics` moves with real traffic through silo and
//! passes `promtool check metrics`; `/healthz` and `/readyz`; tenants past
//! `max_tenant_labels` are summed per plan.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{APP_PASSWORD, Setup, Silo, Tenant, bounded};

/// A response of the metrics port.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read to its close.
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    bounded("metrics port request", async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("metrics port accepts");
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: silo\r\n{accept}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("request sent");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("response read");
        let raw = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        Reply {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    })
    .await
}

async fn scrape(silo: &Silo) -> Scrape {
    let reply = get(metrics_addr(silo), "/metrics", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Scrape(reply.body)
}

fn metrics_addr(silo: &Silo) -> SocketAddr {
    silo.metrics_addr
        .expect("the setup asked for a metrics port")
}

/// A scrape in the Prometheus text format.
struct Scrape(String);

impl Scrape {
    /// The samples named `name` whose labels include `labels`, as
    /// (their labels, value).
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Vec<(String, String)>, f64)> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                let (metric, rest) = match key.split_once('{') {
                    Some((m, rest)) => (m, rest.strip_suffix('}')?),
                    None => (key, ""),
                };
                if metric != name {
                    return None;
                }
                let parsed: Vec<(String, String)> = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once("=\"")?;
                        Some((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect();
                let wanted = labels
                    .iter()
                    .all(|(k, v)| parsed.iter().any(|(pk, pv)| pk == k && pv == v));
                wanted.then(|| (parsed, value.parse().expect("a number")))
            })
            .collect()
    }

    /// The one sample named `name` with exactly these labels among others;
    /// 0 when there is none (series that never moved are left out).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.samples(name, labels);
        assert!(
            found.len() <= 1,
            "{name} {labels:?}: several samples {found:?}"
        );
        found.first().map_or(0.0, |(_, v)| *v)
    }

    /// The `tenant` label values of `name`'s samples.
    fn tenants(&self, name: &str) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .samples(name, &[])
            .into_iter()
            .filter_map(|(labels, _)| {
                labels
                    .into_iter()
                    .find(|(k, _)| k == "tenant")
                    .map(|(_, v)| v)
            })
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }
}

/// Scrapes until `check` holds (figures are added when a response ends,
/// which may be just after the client read it), for at most 5 s.
async fn scrape_until(silo: &Silo, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let s = scrape(silo).await;
        if check(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not seen in /metrics:\n{}", scrape(silo).await.0);
}

fn tenant(t: &Tenant) -> (&'static str, &str) {
    ("tenant", t.slug.as_str())
}

#[tokio::test]
async fn traffic_moves_the_tenant_pool_and_login_figures() {
    let mut setup = Setup::new()
        .metrics(100)
        .plan("single", "max_client_connections = 1");
    let acme = setup.tenant("metrics", 1).await;
    let capped = setup.tenant("metricscap", 1).await;
    setup.set_plan(&capped.slug, "single");
    let silo = setup.start().await;
    let t = tenant(&acme);

    let mut conn = silo.app(&acme).await;
    let _: Option<u64> = conn.query_first("SELECT 1").await.unwrap();
    let before = scrape_until(&silo, "the first query", |s| {
        s.value("silo_query_duration_seconds_count", &[t]) >= 1.0
    })
    .await;
    assert_eq!(before.value("silo_client_connections", &[t]), 1.0);
    assert_eq!(
        before.value("silo_logins_total", &[t, ("result", "ok")]),
        1.0
    );
    assert_eq!(before.value("silo_route_table_version", &[]), 1.0);
    assert_eq!(
        before.value("silo_backend_healthy", &[("backend", "1")]),
        1.0
    );
    assert_eq!(
        before.value("silo_backend_draining", &[("backend", "1")]),
        0.0
    );
    assert_eq!(
        before.value("silo_pool_max_connections", &[("backend", "1")]),
        20.0
    );

    const N: usize = 7;
    for _ in 0..N {
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM items")
            .await
            .unwrap();
        assert_eq!(n, Some(3));
    }
    let q = |s: &Scrape| s.value("silo_queries_total", &[t]);
    let count = |s: &Scrape| s.value("silo_query_duration_seconds_count", &[t]);
    let after = scrape_until(&silo, "the queries", |s| {
        count(s) - count(&before) >= N as f64
    })
    .await;
    assert_eq!(q(&after) - q(&before), N as f64);
    assert!(after.value("silo_query_duration_seconds_sum", &[t]) > 0.0);
    assert_eq!(
        after.value("silo_query_duration_seconds_bucket", &[t, ("le", "+Inf")]),
        count(&after)
    );
    assert!(after.value("silo_lease_wait_seconds_count", &[t]) >= N as f64);
    assert!(after.value("silo_tenant_leases_total", &[t]) >= N as f64);
    let bytes = |s: &Scrape, d: &str| s.value("silo_relayed_bytes_total", &[t, ("direction", d)]);
    // Each COM_QUERY carries its text; each answer at least a row.
    let sql = "SELECT COUNT(*) FROM items".len() as f64;
    assert!(
        bytes(&after, "client_to_backend") - bytes(&before, "client_to_backend") >= N as f64 * sql
    );
    assert!(
        bytes(&after, "backend_to_client") - bytes(&before, "backend_to_client") > N as f64 * 20.0
    );
    // Transaction mode: the connection went back to the pool.
    let backend = [("backend", "1")];
    assert!(after.value("silo_pool_opened_connections_total", &backend) >= 1.0);
    assert!(after.value("silo_pool_idle_connections", &backend) >= 1.0);
    assert_eq!(after.value("silo_pool_in_use_connections", &backend), 0.0);
    assert!(after.value("silo_pool_leases_total", &backend) >= N as f64);

    // A transaction pins the session to its connection.
    conn.query_drop("BEGIN").await.unwrap();
    let pinned = scrape_until(&silo, "the pin", |s| {
        s.value("silo_pool_pinned_sessions", &backend) == 1.0
    })
    .await;
    assert_eq!(pinned.value("silo_tenant_pinned_sessions", &[t]), 1.0);
    assert_eq!(pinned.value("silo_pool_in_use_connections", &backend), 1.0);
    assert_eq!(
        pinned.value(
            "silo_pool_pins_total",
            &[("backend", "1"), ("reason", "transaction")]
        ),
        1.0
    );
    conn.query_drop("COMMIT").await.unwrap();

    // Refused logins, each under its reason.
    silo.connect_err(silo.opts(&format!("app.{}", acme.slug), "wrong"))
        .await;
    silo.connect_err(silo.opts("app.nosuchtenant", APP_PASSWORD))
        .await;
    let _held = silo.app(&capped).await;
    silo.connect_err(silo.opts(&format!("app.{}", capped.slug), APP_PASSWORD))
        .await;
    let refused = scrape(&silo).await;
    assert_eq!(
        refused.value("silo_logins_total", &[t, ("result", "bad_password")]),
        1.0
    );
    assert_eq!(
        refused.value(
            "silo_logins_total",
            &[("tenant", ""), ("result", "unknown_tenant")]
        ),
        1.0
    );
    let c = tenant(&capped);
    assert_eq!(
        refused.value("silo_logins_total", &[c, ("result", "limit")]),
        1.0
    );
    assert_eq!(
        refused.value("silo_logins_total", &[c, ("result", "ok")]),
        1.0
    );
    assert_eq!(
        refused.value(
            "silo_limit_refusals_total",
            &[c, ("limit", "max_client_connections")]
        ),
        1.0
    );
    // Nothing secret reaches the exposition.
    for secret in [APP_PASSWORD, acme.db.password.as_str(), "wrong"] {
        assert!(!refused.0.contains(secret), "{secret} in /metrics");
    }
    drop(conn);
    scrape_until(&silo, "the client to leave", |s| {
        s.value("silo_client_connections", &[t]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let mut setup = Setup::new().metrics(1);
    let a = setup.tenant("prom", 1).await;
    let b = setup.tenant("promother", 2).await;
    let silo = setup.start().await;
    for t in [&a, &b] {
        let mut conn = silo.app(t).await;
        let _: Vec<u64> = conn.query("SELECT id FROM items").await.unwrap();
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop("ROLLBACK").await.unwrap();
    }
    silo.connect_err(silo.opts("app.nosuchtenant", APP_PASSWORD))
        .await;
    let reply = get(metrics_addr(&silo), "/metrics", None).await;
    assert!(
        reply
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.headers
    );
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool runs (scripts/test.sh installs it)");
    let mut stdin = promtool.stdin.take().expect("piped stdin");
    stdin.write_all(reply.body.as_bytes()).await.unwrap();
    drop(stdin);
    let out = bounded("promtool", promtool.wait_with_output())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        reply.body
    );

    // Scrapers that ask for OpenMetrics get it, ending with its EOF marker.
    let open = get(
        metrics_addr(&silo),
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(open.status, 200);
    assert!(
        open.headers
            .contains("content-type: application/openmetrics-text")
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    assert!(
        open.body
            .contains("# UNIT silo_query_duration_seconds seconds")
    );
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_backends() {
    let mut setup = Setup::new().metrics(10);
    let acme = setup.tenant("ready", 1).await;
    let silo = setup.start().await;
    let addr = metrics_addr(&silo);
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(get(addr, "/nothing", None).await.status, 404);

    for backend in [1, 2] {
        silo.pool(backend).set_healthy(false);
    }
    let down = get(addr, "/readyz", None).await;
    assert_eq!(down.status, 503);
    assert!(down.body.contains("healthy"), "{}", down.body);
    // Liveness is not readiness.
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    let s = scrape(&silo).await;
    assert_eq!(s.value("silo_backend_healthy", &[("backend", "2")]), 0.0);

    // One healthy backend is enough.
    silo.pool(2).set_healthy(true);
    assert_eq!(get(addr, "/readyz", None).await.status, 200);
    silo.pool(1).set_healthy(true);
    silo.assert_serves(&acme).await;
}

#[tokio::test]
async fn tenants_past_the_label_limit_are_summed_per_plan() {
    let mut setup = Setup::new().metrics(2).plan("pro", "");
    let mut tenants = Vec::new();
    for (i, backend) in [1, 2, 1, 2].into_iter().enumerate() {
        tenants.push(setup.tenant(&format!("card{i}"), backend).await);
    }
    // The third and fourth tenants share a plan; a fifth is alone on its own.
    let fifth = setup.tenant("card4", 1).await;
    setup.set_plan(&fifth.slug, "pro");
    let silo = setup.start().await;
    let mut conns = Vec::new();
    // In order: the first two seen get their own label.
    for t in tenants.iter().chain([&fifth]) {
        let mut conn = silo.app(t).await;
        let _: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM items")
            .await
            .unwrap();
        conns.push(conn);
    }
    let s = scrape_until(&silo, "five tenants' queries", |s| {
        s.samples("silo_query_duration_seconds_count", &[])
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>()
            >= 5.0
    })
    .await;
    let mut expected = vec![
        tenants[0].slug.clone(),
        tenants[1].slug.clone(),
        "_other:pro".to_string(),
        "_other:starter".to_string(),
    ];
    expected.sort();
    for metric in [
        "silo_queries_total",
        "silo_client_connections",
        "silo_query_duration_seconds_count",
        "silo_relayed_bytes_total",
    ] {
        assert_eq!(s.tenants(metric), expected, "{metric}");
    }
    let other = [("tenant", "_other:starter")];
    // Every client ran the same statements (the connector's own and ours).
    let one = s.value("silo_queries_total", &[tenant(&tenants[0])]);
    assert!(one >= 1.0);
    assert_eq!(s.value("silo_queries_total", &[tenant(&tenants[1])]), one);
    assert_eq!(s.value("silo_queries_total", &other), 2.0 * one);
    assert_eq!(
        s.value("silo_queries_total", &[("tenant", "_other:pro")]),
        one
    );
    assert_eq!(s.value("silo_client_connections", &other), 2.0);
    assert_eq!(
        s.value("silo_logins_total", &[other[0], ("result", "ok")]),
        2.0
    );
    for t in &tenants[2..] {
        assert!(!s.0.contains(&t.slug), "{} has its own series", t.slug);
    }
}
