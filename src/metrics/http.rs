//! The metrics port: a small HTTP/1 server with three routes.
//!
//! - `/metrics`: every metric, in OpenMetrics when the scraper asks for it
//!   (`Accept: application/openmetrics-text`), else Prometheus text 0.0.4.
//! - `/healthz`: 200 while the process serves requests at all.
//! - `/readyz`: 200 when the route table is loaded, the MySQL listener
//!   accepts and at least one backend is healthy and not draining; 503
//!   naming what is missing otherwise, so a load balancer sends clients
//!   elsewhere.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::collect::{self, Format};
use crate::frontend::Context;

/// Scrapers are few; a flood of connections gets refused rather than
/// served at the sessions' expense.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the metrics port until `ctx` is dropped.
pub async fn serve(listener: TcpListener, ctx: Weak<Context>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics port: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if ctx.strong_count() == 0 {
            return;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics port: too many connections; closing");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(respond(&req, &ctx)) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "metrics port: connection ended");
            }
            drop(slot);
        });
    }
}

fn respond(req: &Request<Incoming>, ctx: &Weak<Context>) -> Response<Full<Bytes>> {
    let Some(ctx) = ctx.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let format = if wants_openmetrics(req) {
                Format::OpenMetrics
            } else {
                Format::Prometheus
            };
            let mut response = Response::new(Full::new(Bytes::from(collect::render(&ctx, format))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready(&ctx) {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// Why silo should not be sent clients now, or `None` when it may.
pub fn not_ready(ctx: &Context) -> Option<String> {
    if ctx.router.load().version == 0 {
        return Some("no route table loaded".into());
    }
    if !ctx.metrics.is_accepting() {
        return Some("the MySQL listener is not accepting".into());
    }
    let pools = ctx.pools.all();
    if pools.is_empty() {
        return Some("no backend configured".into());
    }
    if pools.iter().any(|p| p.is_healthy() && !p.is_draining()) {
        return None;
    }
    let healthy = pools.iter().filter(|p| p.is_healthy()).count();
    Some(if healthy == 0 {
        format!("none of the {} backends is healthy", pools.len())
    } else {
        format!(
            "every healthy backend is draining ({healthy} of {})",
            pools.len()
        )
    })
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
