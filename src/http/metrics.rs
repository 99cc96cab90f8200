//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4), on a listen address
//! of its own (`--metrics-listen`), never on the FHIR port: what an operations team scrapes.
//!
//! - `signaal_http_requests_total{interaction, status}`: requests answered, by the FHIR
//!   interaction they were (http page names: `read`, `search-type`, `transaction`, …, an
//!   operation by its `$name`) and HTTP status;
//! - `signaal_http_request_duration_seconds{interaction}`: a latency histogram;
//! - `signaal_http_requests_in_flight`;
//! - `signaal_store_connections{pool, state}` and `signaal_store_connections_max{pool}`;
//! - `signaal_scoring_queue_patients{state}` and `signaal_scoring_queue_oldest_due_seconds`;
//! - `signaal_async_jobs{kind, state}`: Bulk Data exports and `$reindex` runs under way and
//!   waiting to be collected;
//! - `signaal_store_up`: whether the database answered the scrape's queue query.
//!
//! The few lines of the format are written here rather than through a metrics crate: the
//! counters are a map behind a mutex, the gauges are read from the store and the job tables
//! when scraped, and nothing else of a client library would be used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;

/// The upper bounds of the latency histogram's buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The request counters and histograms of one server, and its metrics listener's state.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    in_flight: AtomicI64,
    /// Where the metrics listener listens, once bound.
    listening: OnceLock<SocketAddr>,
    stop: OnceLock<watch::Sender<bool>>,
}

#[derive(Default, Clone)]
struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative here).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// A request started; [`Metrics::finished`] when it is answered.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered with `status` after `seconds`, as `interaction`.
    pub fn finished(&self, interaction: String, status: u16, seconds: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        {
            let mut latency = lock(&self.latency);
            let histogram = latency.entry(interaction.clone()).or_default();
            if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
                histogram.buckets[i] += 1;
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
        *lock(&self.requests)
            .entry((interaction, status))
            .or_default() += 1;
    }

    /// The address the metrics listener is bound to, if it runs.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.listening.get().copied()
    }

    /// Stops the metrics listener (the server is shutting down).
    pub fn stop(&self) {
        if let Some(stop) = self.stop.get() {
            let _ = stop.send(true);
        }
    }

    /// The request metrics in the text format.
    fn write_requests(&self, out: &mut String) {
        family(
            out,
            "signaal_http_requests_total",
            "counter",
            "Requests answered, by FHIR interaction and HTTP status.",
        );
        for ((interaction, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "signaal_http_requests_total{{interaction=\"{}\",status=\"{status}\"}} {n}",
                escape(interaction)
            );
        }
        family(
            out,
            "signaal_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by FHIR interaction.",
        );
        for (interaction, h) in lock(&self.latency).iter() {
            let label = escape(interaction);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "signaal_http_request_duration_seconds_bucket{{interaction=\"{label}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "signaal_http_request_duration_seconds_bucket{{interaction=\"{label}\",le=\"+Inf\"}} {}\n\
                 signaal_http_request_duration_seconds_sum{{interaction=\"{label}\"}} {}\n\
                 signaal_http_request_duration_seconds_count{{interaction=\"{label}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        family(
            out,
            "signaal_http_requests_in_flight",
            "gauge",
            "Requests being answered now.",
        );
        let _ = writeln!(
            out,
            "signaal_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped (the format's rule).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The FHIR interaction a request was, from its method, path and status (http page names;
/// `search-compartment` for a compartment search). An operation is named by its `$name` unless
/// it answered 404 (an unknown operation is not a label of its own: clients choose those
/// names). Paths outside the FHIR base: `home`, `health`, `token`, `smart-configuration`,
/// `docs`, else `other`.
pub fn interaction(method: &Method, path: &str, status: u16) -> String {
    let Some(rest) = path
        .strip_prefix("/fhir")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return match path {
            "/" => "home",
            "/health" => "health",
            "/auth/token" => "token",
            p if p.starts_with("/docs/") => "docs",
            _ => "other",
        }
        .to_owned();
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(op) = segments.iter().find(|s| s.starts_with('$')) {
        let known = status != 404
            && op.len() <= 64
            && op[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        return if known {
            (*op).to_owned()
        } else {
            "operation".to_owned()
        };
    }
    let get = *method == Method::GET || *method == Method::HEAD;
    match (segments.as_slice(), method) {
        ([], m) if *m == Method::POST => "transaction",
        ([], _) | (["metadata"], _) => "capabilities",
        ([".well-known", "smart-configuration"], _) => "smart-configuration",
        (["_history"], _) => "history-system",
        (["_export" | "_async", ..], _) => "async-status",
        ([_], m) if *m == Method::POST => "create",
        ([_], m) if *m == Method::PUT => "conditional-update",
        ([_], m) if *m == Method::DELETE => "conditional-delete",
        ([_], m) if *m == Method::PATCH => "conditional-patch",
        ([_], _) | ([_, "_search"], _) => "search-type",
        ([_, "_history"], _) => "history-type",
        ([_, _], m) if *m == Method::PUT => "update",
        ([_, _], m) if *m == Method::DELETE => "delete",
        ([_, _], m) if *m == Method::PATCH => "patch",
        ([_, _], _) => "read",
        ([_, _, "_history"], _) => "history-instance",
        ([_, _, "_history", _], _) => "vread",
        ([_, _, _], _) if get => "search-compartment",
        _ => "other",
    }
    .to_owned()
}

/// Binds the metrics listener and serves `/metrics` from it until [`Metrics::stop`]. It holds
/// the server only weakly: a scrape after the server is gone answers 503.
pub async fn listen(app: &Arc<App>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let _ = app.metrics.listening.set(local);
    let (stop, mut stopped) = watch::channel(false);
    let _ = app.metrics.stop.set(stop);
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::downgrade(app));
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%local, "metrics at http://{local}/metrics");
    Ok(())
}

async fn scrape(State(app): State<Weak<App>>) -> Response {
    let Some(app) = app.upgrade() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down\n",
        )
            .into_response();
    };
    let mut response = render(&app).await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Every metric, read now.
pub async fn render(app: &App) -> String {
    let mut out = String::new();
    app.metrics.write_requests(&mut out);
    let pools = app.store.pools();
    family(
        &mut out,
        "signaal_store_connections",
        "gauge",
        "Database connections open, by pool and whether in use.",
    );
    for pool in &pools {
        let in_use = pool.open.saturating_sub(pool.idle);
        let _ = writeln!(
            out,
            "signaal_store_connections{{pool=\"{0}\",state=\"in_use\"}} {in_use}\n\
             signaal_store_connections{{pool=\"{0}\",state=\"idle\"}} {1}",
            pool.name, pool.idle
        );
    }
    family(
        &mut out,
        "signaal_store_connections_max",
        "gauge",
        "The most connections each pool opens.",
    );
    for pool in &pools {
        let _ = writeln!(
            out,
            "signaal_store_connections_max{{pool=\"{}\"}} {}",
            pool.name, pool.max
        );
    }
    let now = crate::fhir::datetime::now_ms();
    let queue = app.store.queue_stats(now).await;
    family(
        &mut out,
        "signaal_store_up",
        "gauge",
        "Whether the database answered this scrape's queries.",
    );
    let _ = writeln!(out, "signaal_store_up {}", u8::from(queue.is_ok()));
    match queue {
        Ok(queue) => {
            family(
                &mut out,
                "signaal_scoring_queue_patients",
                "gauge",
                "Patients waiting to be re-scored: due now, waiting for a retry or a later time, parked after failures.",
            );
            let _ = writeln!(
                out,
                "signaal_scoring_queue_patients{{state=\"due\"}} {}\n\
                 signaal_scoring_queue_patients{{state=\"waiting\"}} {}\n\
                 signaal_scoring_queue_patients{{state=\"parked\"}} {}",
                queue.due, queue.waiting, queue.parked
            );
            family(
                &mut out,
                "signaal_scoring_queue_oldest_due_seconds",
                "gauge",
                "How long the longest-waiting due patient has been queued (0 when none is due).",
            );
            let age = queue
                .oldest_due_queued_at
                .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            let _ = writeln!(out, "signaal_scoring_queue_oldest_due_seconds {age}");
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the scoring queue could not be read"),
    }
    family(
        &mut out,
        "signaal_async_jobs",
        "gauge",
        "Asynchronous work (Bulk Data exports and imports, $reindex): running now, and jobs kept for polling (running or with an answer not yet collected).",
    );
    for (kind, table) in [
        ("export", &app.jobs.exports),
        ("import", &app.jobs.imports),
        ("reindex", &app.jobs.table),
    ] {
        let (running, kept) = table.backlog();
        let _ = writeln!(
            out,
            "signaal_async_jobs{{kind=\"{kind}\",state=\"running\"}} {running}\n\
             signaal_async_jobs{{kind=\"{kind}\",state=\"kept\"}} {kept}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_their_fhir_interaction() {
        let cases = [
            (Method::GET, "/fhir/Patient/1", 200, "read"),
            (Method::GET, "/fhir/Patient/1/_history/2", 200, "vread"),
            (Method::PUT, "/fhir/Patient/1", 200, "update"),
            (Method::PATCH, "/fhir/Patient/1", 200, "patch"),
            (Method::DELETE, "/fhir/Patient/1", 204, "delete"),
            (Method::POST, "/fhir/Patient", 201, "create"),
            (Method::GET, "/fhir/Patient", 200, "search-type"),
            (Method::POST, "/fhir/Patient/_search", 200, "search-type"),
            (
                Method::GET,
                "/fhir/Patient/1/Observation",
                200,
                "search-compartment",
            ),
            (Method::GET, "/fhir/Patient/_history", 200, "history-type"),
            (
                Method::GET,
                "/fhir/Patient/1/_history",
                200,
                "history-instance",
            ),
            (Method::GET, "/fhir/_history", 200, "history-system"),
            (Method::GET, "/fhir/metadata", 200, "capabilities"),
            (Method::GET, "/fhir", 200, "capabilities"),
            (Method::POST, "/fhir", 200, "transaction"),
            (
                Method::GET,
                "/fhir/Patient/1/$everything",
                200,
                "$everything",
            ),
            (Method::GET, "/fhir/Patient/1/$everything", 404, "operation"),
            (Method::GET, "/fhir/$made-up", 404, "operation"),
            (Method::GET, "/fhir/_export/abc", 202, "async-status"),
            (Method::GET, "/health", 200, "health"),
            (Method::POST, "/auth/token", 200, "token"),
            (Method::GET, "/", 200, "home"),
            (Method::GET, "/fhirx", 404, "other"),
        ];
        for (method, path, status, expected) in cases {
            assert_eq!(
                interaction(&method, path, status),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn histograms_are_cumulative_and_counters_add_up() {
        let metrics = Metrics::default();
        for seconds in [0.0005, 0.02, 0.02, 30.0] {
            metrics.started();
            metrics.finished("read".into(), 200, seconds);
        }
        let mut out = String::new();
        metrics.write_requests(&mut out);
        assert!(out.contains("signaal_http_requests_total{interaction=\"read\",status=\"200\"} 4"));
        assert!(out.contains("le=\"0.001\"} 1\n"));
        assert!(out.contains("le=\"0.025\"} 3\n"));
        assert!(out.contains("le=\"10\"} 3\n"));
        assert!(out.contains("le=\"+Inf\"} 4\n"));
        assert!(out.contains("signaal_http_request_duration_seconds_count{interaction=\"read\"} 4"));
        assert!(out.contains("signaal_http_requests_in_flight 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
