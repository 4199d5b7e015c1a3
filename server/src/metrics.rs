//! Prometheus metrics, served over HTTP at `/metrics` on `--metrics-listen`
//! (OpenMetrics text).
//!
//! What is counted: every session call by method and status code, with its
//! duration; calls in flight; engine errors by kind; purges and the rows
//! they removed; sessions created, cycled and deleted; connections open,
//! refused and failed accepts; whether the store answers the readiness
//! probe; when purges last completed. Read at each scrape rather than
//! recorded by calls: the process's memory, CPU time and open files under
//! the names every Prometheus client uses (`process`), the build's version,
//! and the store's pool and files (`store`). Labels hold only
//! names from a fixed set (methods, codes, kinds), never keys or data, so
//! the number of series stays bounded.

mod process;
mod purge;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use axum::response::IntoResponse as _;

use crate::auth::Tokens;
use crate::method::Method;
use crate::store::SessionStore;

/// The media type of the OpenMetrics text that prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The methods calls are counted under: each RPC, then any other path.
const METHOD_SLOTS: usize = Method::ALL.len() + 1;

/// gRPC status codes, 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` were open.
    MaxConnections,
    /// Its address had `--max-connections-per-ip` open.
    MaxConnectionsPerIp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

/// Durations from 100 µs (a Load from memory) to 13 s (past any
/// --store-timeout a caller would wait for), doubling.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// What started a purge.
#[derive(Debug, Clone, Copy)]
pub enum PurgeTrigger {
    /// The background purge, every --purge-interval.
    Background,
    /// A ClearExpired call.
    Call,
}

/// The metrics of one server; clones share them.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<CallLabels, Histogram, fn() -> Histogram>,
    call_series: Vec<std::sync::OnceLock<(Counter, Histogram)>>,
    in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Calls admitted since the start, for the purge to tell whether other
    /// calls came in during a batch; not exported.
    calls_admitted: AtomicU64,
    engine_errors: Family<KindLabels, Counter>,
    purges: Family<TriggerLabels, Counter>,
    purged_rows: Family<TriggerLabels, Counter>,
    created: Counter<u64, AtomicU64>,
    cycled: Counter<u64, AtomicU64>,
    deleted: Counter<u64, AtomicU64>,
    connections_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    connections_refused: Family<ReasonLabels, Counter>,
    accept_failures: Counter<u64, AtomicU64>,
    store_up: Gauge<i64, std::sync::atomic::AtomicI64>,
    last_purge: Arc<purge::LastPurge>,
    purge_interval: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a server without a store: no store gauges.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// The metrics of a server on `store`, whose gauges are read at each
    /// scrape.
    pub fn for_store(store: Arc<dyn SessionStore>) -> Self {
        Self::build(Some(store))
    }

    fn build(store: Option<Arc<dyn SessionStore>>) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector::default()));
        let registry = root.sub_registry_with_prefix("sessiond");
        registry.register(
            "build",
            "The version of sessiond running",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        if let Some(store) = store {
            registry.register_collector(Box::new(store::StoreCollector { store }));
        }
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Session calls answered, by method and gRPC status code",
            calls.clone(),
        );
        let call_seconds =
            Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(call_buckets);
        registry.register_with_unit(
            "call_duration",
            "Time from a session call's arrival until its answer was handed over",
            prometheus_client::registry::Unit::Seconds,
            call_seconds.clone(),
        );
        let in_flight = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "calls_in_flight",
            "Session calls being served now",
            in_flight.clone(),
        );
        let engine_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "engine_errors",
            "Storage engine failures: unavailable (down, locked, timed out), full, internal",
            engine_errors.clone(),
        );
        let purges = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "purges",
            "Purges of expired sessions, by what started them (background, call)",
            purges.clone(),
        );
        let purged_rows = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "purged_sessions",
            "Expired sessions removed by purges",
            purged_rows.clone(),
        );
        let created = Counter::default();
        registry.register(
            "sessions_created",
            "Sessions created (Create, Save with must_create)",
            created.clone(),
        );
        let cycled = Counter::default();
        registry.register(
            "sessions_cycled",
            "Sessions moved to a new key (CycleKey)",
            cycled.clone(),
        );
        let deleted = Counter::default();
        registry.register(
            "sessions_deleted",
            "Sessions removed by Delete",
            deleted.clone(),
        );
        let connections_open = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "connections_open",
            "gRPC connections open now, TLS handshakes included",
            connections_open.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed as soon as accepted, by the limit they were past \
             (max_connections, max_connections_per_ip)",
            connections_refused.clone(),
        );
        let accept_failures = Counter::default();
        registry.register(
            "accept_failures",
            "Accepts that failed for want of resources (the open-file limit), each \
             followed by a pause",
            accept_failures.clone(),
        );
        let store_up = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "1 while the store answers the readiness probe, 0 while it does not",
            store_up.clone(),
        );
        let last_purge = Arc::new(purge::LastPurge::default());
        registry.register_collector(Box::new(last_purge.clone()));
        let purge_interval = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "purge_interval",
            "The background purge's interval (--purge-interval); 0 when it is off",
            Unit::Seconds,
            purge_interval.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: root,
                calls,
                call_seconds,
                call_series: (0..METHOD_SLOTS * CODES)
                    .map(|_| std::sync::OnceLock::new())
                    .collect(),
                in_flight,
                calls_admitted: AtomicU64::new(0),
                engine_errors,
                purges,
                purged_rows,
                created,
                cycled,
                deleted,
                connections_open,
                connections_refused,
                accept_failures,
                store_up,
                last_purge,
                purge_interval,
            }),
        }
    }

    /// One call answered; `None` for a path that names no RPC.
    pub fn call(&self, method: Option<Method>, code: tonic::Code, took: Duration) {
        let (count, duration) = self.call_series(method, code);
        count.inc();
        duration.observe(took.as_secs_f64());
    }

    /// The series of one method and code. Every call records into them, so
    /// each is looked up in its family once and then kept in a slot of its
    /// own, which needs no lock or hashing.
    fn call_series(&self, method: Option<Method>, code: tonic::Code) -> &(Counter, Histogram) {
        let method_index = method
            .and_then(|method| Method::ALL.iter().position(|known| *known == method))
            .unwrap_or(Method::ALL.len());
        let code_index = usize::try_from(code as i32).unwrap_or(0).min(CODES - 1);
        let slot = &self.inner.call_series[method_index * CODES + code_index];
        slot.get_or_init(|| {
            let labels = CallLabels {
                method: Method::label(method),
                code: code_name(code),
            };
            (
                self.inner.calls.get_or_create_owned(&labels),
                self.inner.call_seconds.get_or_create_owned(&labels),
            )
        })
    }

    /// A call was admitted. The gauge moves by one rather than being set
    /// from the count, so that calls ending at once cannot leave it stale.
    pub fn call_entered(&self) {
        self.inner.in_flight.inc();
        self.inner.calls_admitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls admitted since the start: a purge compares two readings to
    /// tell whether other calls came in meanwhile.
    pub(crate) fn calls_admitted(&self) -> u64 {
        self.inner.calls_admitted.load(Ordering::Relaxed)
    }

    /// An admitted call ended.
    pub fn call_left(&self) {
        self.inner.in_flight.dec();
    }

    pub fn engine_error(&self, kind: &'static str) {
        self.inner
            .engine_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn purged(&self, trigger: PurgeTrigger, removed: u64) {
        let labels = TriggerLabels {
            trigger: match trigger {
                PurgeTrigger::Background => "background",
                PurgeTrigger::Call => "call",
            },
        };
        self.inner.purges.get_or_create(&labels).inc();
        self.inner
            .purged_rows
            .get_or_create(&labels)
            .inc_by(removed);
        self.inner.last_purge.completed(removed);
    }

    /// The background purge runs every `interval` (zero: never), so that
    /// an alert can tell a stalled purge from a slow schedule.
    pub fn purge_interval(&self, interval: Duration) {
        self.inner.purge_interval.set(interval.as_secs_f64());
    }

    pub fn session_created(&self) {
        self.inner.created.inc();
    }

    pub fn session_cycled(&self) {
        self.inner.cycled.inc();
    }

    pub fn session_deleted(&self) {
        self.inner.deleted.inc();
    }

    pub fn connection_opened(&self) {
        self.inner.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.inner.connections_open.dec();
    }

    pub fn connection_refused(&self, refusal: Refusal) {
        self.inner
            .connections_refused
            .get_or_create(&ReasonLabels {
                reason: refusal.label(),
            })
            .inc();
    }

    pub fn accept_failed(&self) {
        self.inner.accept_failures.inc();
    }

    /// What the readiness probe heard from the store.
    pub fn store_up(&self, up: bool) {
        self.inner.store_up.set(i64::from(up));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::error!(error = %err, "cannot encode the metrics");
        }
        text
    }

    /// Serves `/metrics` on `listener` until `shutdown` completes; with
    /// `token`, only to scrapers that send it as a bearer token.
    pub async fn serve(
        self,
        listener: TcpListener,
        token: Option<Tokens>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: http::HeaderMap| {
                let metrics = self.clone();
                let allowed = token.as_ref().is_none_or(|token| {
                    let authorization = headers.get(http::header::AUTHORIZATION);
                    token.accept(authorization.and_then(|value| value.to_str().ok()))
                });
                async move {
                    if !allowed {
                        tracing::debug!("metrics request without the metrics token refused");
                        return (
                            http::StatusCode::UNAUTHORIZED,
                            [(http::header::WWW_AUTHENTICATE, "Bearer")],
                            String::new(),
                        )
                            .into_response();
                    }
                    // Rendering reads /proc and stats the store's files:
                    // quick, but file system calls, so off the runtime.
                    match tokio::task::spawn_blocking(move || metrics.render()).await {
                        Ok(text) => {
                            ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "rendering the metrics failed");
                            http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                        }
                    }
                }
            }),
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Writes one gauge of `value`, for the collectors that read theirs at
/// each scrape.
fn encode_gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

/// Binds the metrics address; a clear error names the flag.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsBindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsBindError { addr, source })
}

/// The metrics address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} for metrics (--metrics-listen, SESSIOND_METRICS_LISTEN); is another server using it?"
)]
pub struct MetricsBindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The canonical name of a status code, as Prometheus users filter by it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_labels() {
        let metrics = Metrics::new();
        let before = metrics.render();
        assert!(
            !before.contains("sessiond_purge_last"),
            "a purge before any purge:\n{before}"
        );
        metrics.purge_interval(Duration::from_secs(90));
        metrics.call(
            Some(Method::Load),
            tonic::Code::Ok,
            Duration::from_micros(250),
        );
        metrics.call(
            Some(Method::Save),
            tonic::Code::NotFound,
            Duration::from_millis(2),
        );
        metrics.call(None, tonic::Code::Unimplemented, Duration::from_millis(1));
        for _ in 0..4 {
            metrics.call_entered();
        }
        metrics.call_left();
        metrics.engine_error("unavailable");
        metrics.purged(PurgeTrigger::Background, 7);
        metrics.session_created();
        metrics.session_deleted();
        metrics.connection_opened();
        metrics.connection_opened();
        metrics.connection_closed();
        metrics.connection_refused(Refusal::MaxConnectionsPerIp);
        metrics.accept_failed();
        metrics.store_up(false);
        let text = metrics.render();
        for line in [
            "sessiond_calls_total{method=\"Load\",code=\"OK\"} 1",
            "sessiond_calls_total{method=\"Save\",code=\"NOT_FOUND\"} 1",
            "sessiond_calls_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1",
            "sessiond_call_duration_seconds_count{method=\"Load\",code=\"OK\"} 1",
            "sessiond_calls_in_flight 3",
            "sessiond_engine_errors_total{kind=\"unavailable\"} 1",
            "sessiond_purges_total{trigger=\"background\"} 1",
            "sessiond_purged_sessions_total{trigger=\"background\"} 7",
            "sessiond_purge_last_removed_sessions 7",
            "sessiond_purge_last_success_timestamp_seconds ",
            "sessiond_purge_interval_seconds 90.0",
            concat!(
                "sessiond_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\"} 1"
            ),
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
            "sessiond_sessions_created_total 1",
            "sessiond_sessions_deleted_total 1",
            "sessiond_connections_open 1",
            "sessiond_connections_refused_total{reason=\"max_connections_per_ip\"} 1",
            "sessiond_accept_failures_total 1",
            "sessiond_store_up 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
