//! The scrape: every figure read from where silo keeps it and encoded in
//! the Prometheus text format or OpenMetrics. Runs on the metrics port's
//! request, never on a session's path; its cost grows with the number of
//! tenants and backends, not with traffic.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{HistogramSnapshot, LoginCounts, LoginResult};
use crate::backend::Pool;
use crate::backend::pins::{PinReason, PinSnapshot};
use crate::backend::pool::PoolSnapshot;
use crate::frontend::Context;
use crate::limits::Refusal;

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what any scraper reads.
    Prometheus,
    /// OpenMetrics 1.0, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes every metric of `ctx` now.
pub fn render(ctx: &Arc<Context>, format: Format) -> String {
    let mut registry = Registry::with_prefix("silo");
    registry.register_collector(Box::new(Scrape { ctx: ctx.clone() }));
    let mut out = String::with_capacity(32 * 1024);
    let encoded = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a String fails only if an encoder reports an error, which
    // the collector below never does.
    debug_assert!(encoded.is_ok());
    out
}

struct Scrape {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// The `TenantLive` figures summed per `tenant` label value.
#[derive(Debug, Default, Clone)]
struct TenantSums {
    clients: u64,
    leases_held: u64,
    queued: u64,
    pinned: u64,
    queries: u64,
    leases: u64,
    refused: [u64; Refusal::ALL.len()],
}

/// One backend pool's figures, read once per scrape.
struct PoolRow {
    /// The `backend` label value.
    id: String,
    pool: Arc<Pool>,
    s: PoolSnapshot,
    pins: PinSnapshot,
}

type Fmt = std::fmt::Result;

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        self.tenants(&mut enc)?;
        self.backends(&mut enc)?;
        self.catalog(&mut enc)
    }
}

impl Scrape {
    fn tenants(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.ctx;
        let lives = ctx.tenants.snapshot();
        let table = ctx.router.load();
        let plan_of = |id: &crate::routing::TenantId| {
            table
                .tenant(&id.0)
                .map_or_else(String::new, |t| t.plan.name.clone())
        };
        let owners = ctx
            .metrics
            .series_of_each(lives.iter().map(|(id, _)| id), plan_of);
        drop(table);
        let series = ctx.metrics.all_series();
        let mut sums = vec![TenantSums::default(); series.len()];
        for ((_, live), owner) in lives.iter().zip(&owners) {
            let Some(sum) = sums.get_mut(owner.index()) else {
                continue;
            };
            sum.clients += live.clients.load(Ordering::Relaxed) as u64;
            sum.leases_held += live.leases.load(Ordering::Relaxed) as u64;
            sum.queued += live.queued.load(Ordering::Relaxed) as u64;
            let pins = live.pins.snapshot();
            sum.pinned += pins.pinned as u64;
            sum.leases += pins.leases;
            sum.queries += live.queries.load(Ordering::Relaxed);
            for (out, reason) in sum.refused.iter_mut().zip(Refusal::ALL) {
                *out += live.refused(reason);
            }
        }
        let rows: Vec<_> = series.iter().zip(&sums).collect();
        let tenant = |label: &Arc<str>| [("tenant", label.to_string())];

        gauges(
            enc,
            "client_connections",
            "Client connections logged in now, per tenant.",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.clients)),
        )?;
        let mut logins: Vec<([(&str, String); 2], u64)> = Vec::new();
        let mut add_logins = |label: &str, counts: &LoginCounts| {
            for result in LoginResult::ALL {
                let n = counts.get(result);
                // Only outcomes that happened: 13 results per tenant would
                // mostly be zeros.
                if n > 0 || result == LoginResult::Ok && !label.is_empty() {
                    logins.push((
                        [
                            ("tenant", label.to_string()),
                            ("result", result.name().into()),
                        ],
                        n,
                    ));
                }
            }
        };
        for s in &series {
            add_logins(&s.label, &s.logins);
        }
        add_logins("", &ctx.metrics.unidentified_logins);
        counters(
            enc,
            "logins",
            "Login attempts by result (ok, or why refused); tenant=\"\" when no known tenant was named.",
            None,
            logins,
        )?;
        counters(
            enc,
            "queries",
            "Statements admitted (COM_QUERY, COM_STMT_EXECUTE), per tenant.",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.queries)),
        )?;
        histograms(
            enc,
            "query_duration",
            "Relayed commands, from forwarding to the backend to the end of the response, per tenant.",
            rows.iter()
                .map(|(s, _)| (tenant(&s.label), s.query_duration.snapshot())),
        )?;
        histograms(
            enc,
            "lease_wait",
            "Time to obtain a backend connection (plan gate, fair queue, connect), per tenant.",
            rows.iter()
                .map(|(s, _)| (tenant(&s.label), s.lease_wait.snapshot())),
        )?;
        counters(
            enc,
            "tenant_leases",
            "Backend connections leased, per tenant.",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.leases)),
        )?;
        gauges(
            enc,
            "tenant_backend_leases",
            "Backend connections the tenant holds now (counted against max_backend_leases).",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.leases_held)),
        )?;
        gauges(
            enc,
            "tenant_queued_commands",
            "Commands waiting for a lease slot, a rate token or the end of a pause, per tenant.",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.queued)),
        )?;
        gauges(
            enc,
            "tenant_pinned_sessions",
            "Sessions holding a pinned backend connection now, per tenant.",
            None,
            rows.iter().map(|(s, t)| (tenant(&s.label), t.pinned)),
        )?;
        counters(
            enc,
            "limit_refusals",
            "Logins and commands refused by a plan limit, per tenant and limit.",
            None,
            rows.iter().flat_map(|(s, t)| {
                Refusal::ALL
                    .into_iter()
                    .zip(t.refused)
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| {
                        (
                            [("tenant", s.label.to_string()), ("limit", r.name().into())],
                            n,
                        )
                    })
            }),
        )?;
        counters(
            enc,
            "relayed",
            "Bytes relayed between clients and backends, per tenant and direction.",
            Some(&Unit::Bytes),
            rows.iter().flat_map(|(s, _)| {
                [
                    (
                        [
                            ("tenant", s.label.to_string()),
                            ("direction", "client_to_backend".into()),
                        ],
                        s.bytes_from_clients.load(Ordering::Relaxed),
                    ),
                    (
                        [
                            ("tenant", s.label.to_string()),
                            ("direction", "backend_to_client".into()),
                        ],
                        s.bytes_to_clients.load(Ordering::Relaxed),
                    ),
                ]
            }),
        )
    }

    fn backends(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let mut pools: Vec<PoolRow> = self
            .ctx
            .pools
            .all()
            .into_iter()
            .map(|pool| PoolRow {
                id: pool.backend().id.to_string(),
                s: pool.snapshot(),
                pins: pool.stats.pins.snapshot(),
                pool,
            })
            .collect();
        pools.sort_by_key(|p| p.pool.backend().id);
        let each = |f: &dyn Fn(&PoolRow) -> u64| -> Vec<_> {
            pools
                .iter()
                .map(|p| ([("backend", p.id.clone())], f(p)))
                .collect()
        };

        gauges(
            enc,
            "pool_idle_connections",
            "Idle backend connections in the pool.",
            None,
            each(&|p| p.s.idle as u64),
        )?;
        gauges(
            enc,
            "pool_in_use_connections",
            "Backend connections leased to clients (or being reset).",
            None,
            each(&|p| p.s.in_use as u64),
        )?;
        gauges(
            enc,
            "pool_pinned_sessions",
            "Sessions holding one of the backend's connections pinned.",
            None,
            each(&|p| p.pins.pinned as u64),
        )?;
        gauges(
            enc,
            "pool_waiting_leases",
            "Leases waiting for a connection of a full pool.",
            None,
            each(&|p| p.s.waiting as u64),
        )?;
        gauges(
            enc,
            "pool_max_connections",
            "The backend's max_connections.",
            None,
            each(&|p| u64::from(p.pool.backend().max_connections)),
        )?;
        counters(
            enc,
            "pool_opened_connections",
            "Backend connections opened.",
            None,
            each(&|p| p.s.opened),
        )?;
        counters(
            enc,
            "pool_closed_connections",
            "Backend connections closed (idle timeout, lifetime, broken, draining).",
            None,
            each(&|p| p.s.closed),
        )?;
        counters(
            enc,
            "pool_errors",
            "Failed connects, logins and resets of backend connections.",
            None,
            each(&|p| p.s.errors),
        )?;
        counters(
            enc,
            "pool_leases",
            "Backend connections leased to clients.",
            None,
            each(&|p| p.pins.leases),
        )?;
        counters(
            enc,
            "pool_pins",
            "Sessions pinned to a backend connection, by reason.",
            None,
            pools.iter().flat_map(|p| {
                PinReason::ALL.into_iter().map(move |r| {
                    (
                        [("backend", p.id.clone()), ("reason", r.name().into())],
                        p.pins.pins(r),
                    )
                })
            }),
        )?;
        gauges(
            enc,
            "backend_healthy",
            "1 while the health checker finds the backend healthy.",
            None,
            each(&|p| u64::from(p.pool.is_healthy())),
        )?;
        gauges(
            enc,
            "backend_draining",
            "1 while the backend is out of rotation.",
            None,
            each(&|p| u64::from(p.pool.is_draining())),
        )
    }

    fn catalog(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let ctx = &self.ctx;
        let health = &ctx.catalog.health;
        gauge(
            enc,
            "route_table_version",
            "Version of the route table serving now (1 at start, +1 per change).",
            None,
            ctx.router.load().version,
        )?;
        gauges(
            enc,
            "catalog_source",
            "Where the route table comes from (file, database or fixed).",
            None,
            [([("source", ctx.catalog.kind().to_string())], 1u64)],
        )?;
        counter(
            enc,
            "catalog_reloads",
            "Route tables installed from the catalog's source after start.",
            health.reloads.load(Ordering::Relaxed),
        )?;
        counter(
            enc,
            "catalog_rejected",
            "Catalogs refused because they did not validate (the running table stayed).",
            health.rejected.load(Ordering::Relaxed),
        )?;
        counter(
            enc,
            "catalog_failures",
            "Failed reads or polls of the catalog's source.",
            health.failures.load(Ordering::Relaxed),
        )?;
        gauge(
            enc,
            "catalog_unreachable",
            "1 while the control plane cannot be reached (the last good table keeps serving).",
            None,
            u64::from(health.unreachable.load(Ordering::Relaxed)),
        )?;
        gauge(
            enc,
            "catalog_staleness",
            "Time since the catalog's source was last read successfully (0 for a file).",
            Some(&Unit::Seconds),
            health.staleness_seconds(),
        )?;
        gauges(
            enc,
            "build_info",
            "silo's version.",
            None,
            [([("version", env!("CARGO_PKG_VERSION").to_string())], 1u64)],
        )
    }
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in rows {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeGaugeValue,
) -> Fmt {
    enc.encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, value) in rows {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(&value, None)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Fmt {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

fn histograms<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, HistogramSnapshot)>,
) -> Fmt {
    let mut metric =
        enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in rows {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?;
    }
    Ok(())
}
