//! `signaal bench`: how fast is a running Signaal, and how much of that is the store?
//!
//! The command drives an already running server over loopback with N concurrent keep-alive
//! clients through three phases (create, read, update of a blood pressure Observation), create
//! and read in FHIR XML ([`xml`], beside the JSON ones: their ratio is the format's cost), then
//! the ingest phases (transaction Bundles of 1, 10 and 100 Observations; optionally a folder of
//! Synthea Bundles, loaded once), and optionally writes the same resources straight into a store (`--raw-database`), bypassing
//! HTTP, JSON parsing and validation. Both paths index the resource the same way
//! ([`crate::write::write`]), so the gap between the two create rates is what
//! HTTP, parsing and validation cost.
//!
//! With `--search` it is the search benchmark instead ([`search`]): load Synthea Bundles
//! and/or `--generate-patients N` synthetic ones ([`synthetic`]), then time five typical
//! patient queries under concurrency; `--explain` prints the database's plan of each.
//!
//! Everything is bounded: each phase stops after `--seconds` or `--requests`, every request
//! has a timeout, and only loopback addresses are accepted, so the command cannot be turned
//! into a load generator against someone else's server.

mod flags;
mod import;
mod ingest;
mod load;
mod notify;
mod phase;
mod profile;
mod raw;
pub mod search;
pub mod synthetic;
mod xml;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use ingest::Kind;

pub use phase::{Budget, Latency, PhaseReport};

/// Options of `signaal bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The FHIR base of the running server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    pub url: String,
    /// Concurrent clients (each a task with its own keep-alive connection pool).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long each phase runs, in seconds [default: 10].
    #[arg(long, conflicts_with = "requests")]
    pub seconds: Option<u64>,
    /// Run each phase for this many requests instead of a fixed time.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Also measure the raw store insert rate on this database (sqlite://PATH or
    /// postgres://…, loopback only). Resources are written into it: use a scratch database.
    #[arg(long)]
    pub raw_database: Option<String>,
    /// Entries per transaction Bundle in the ingest phases, one phase per size (1 to 10000
    /// each, comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10, 100])]
    pub transaction_sizes: Vec<usize>,
    /// Entries per batch Bundle in the batch phases, one phase per size (1 to 10000 each,
    /// comma-separated; 0: no batch phase): the same entries as the transaction phases, each
    /// entry on its own.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize])]
    pub batch_sizes: Vec<usize>,
    /// Lines per `$import` job in the `$import` phase (one job at a time, each a NDJSON body
    /// of this many blood pressure panels, timed from kick-off to manifest); 0: no such phase.
    #[arg(long, default_value_t = 2000)]
    pub import_lines: usize,
    /// Also measure the raw store at these transaction sizes (resources written straight into
    /// the --raw-database, this many per transaction), beside the 1-per-transaction insert.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize])]
    pub raw_transaction_sizes: Vec<usize>,
    /// A folder of transaction Bundles (`*.json`, e.g. Synthea's output/fhir) to load once,
    /// `--clients` at a time, after the other HTTP phases. They are written into the server.
    #[arg(long)]
    pub synthea_dir: Option<std::path::PathBuf>,
    /// Also measure the delay from a weight-gain measurement's commit to its Flag being
    /// visible through search (writes patients, measurements and Flags into the server).
    #[arg(long)]
    pub flag_delay: bool,
    /// With --flag-delay: the steady write load (blood pressure creates per second) under
    /// which the delay is measured, one Flag at a time.
    #[arg(long, default_value_t = 200)]
    pub flag_write_rate: u32,
    /// Also measure subscriptions: the delay from a measurement's commit to the notification
    /// of its Flag at a rest-hook receiver of the benchmark's own, at --notify-rate uploads a
    /// second, and the notification throughput (writes patients, measurements, Flags and a
    /// Subscription into the server).
    #[arg(long)]
    pub subscriptions: bool,
    /// The upload rate of the subscription latency phase, per second.
    #[arg(long, default_value_t = 200)]
    pub notify_rate: u32,
    /// Load this many synthetic patients (transaction Bundles shaped like Synthea's,
    /// `synthetic::RESOURCES_PER_PATIENT` resources each), `--clients` at a time, after the
    /// other loads. They are written into the server.
    #[arg(long)]
    pub generate_patients: Option<u64>,
    /// The seed of the synthetic patients: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The search benchmark instead of the write phases: the loads asked for (--synthea-dir,
    /// --generate-patients), then one phase per typical query, for patients drawn from the
    /// server.
    #[arg(long, conflicts_with_all = ["raw_database", "raw_only"])]
    pub search: bool,
    /// With --search: print the database's query plan of every statement each query runs
    /// (needs --database).
    #[arg(long, requires_all = ["search", "database"])]
    pub explain: bool,
    /// The database of the server under test (sqlite://PATH or loopback postgres://…), only
    /// read: for --explain, and in the write phases for the storage each request adds
    /// (bytes per request of create, read and update).
    #[arg(long)]
    pub database: Option<String>,
    /// Skip the HTTP phases (measure only the raw store insert rate).
    #[arg(long, requires = "raw_database")]
    pub raw_only: bool,
    /// A name for this run in the report (e.g. the store behind the server).
    #[arg(long)]
    pub label: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Options {
    fn budget(&self) -> Budget {
        match self.requests {
            Some(n) => Budget::Requests(n),
            None => Budget::Time(Duration::from_secs(self.seconds.unwrap_or(10))),
        }
    }
}

/// Runs the benchmark and prints its report; a failure (unreachable server, most requests
/// failing) is reported on stderr with a non-zero exit code.
pub async fn run(options: Options) -> ExitCode {
    match bench(&options).await {
        Ok(reports) => {
            if options.json {
                println!("{:#}", report_json(&options, &reports));
            } else {
                print!("{}", report_table(&options, &reports));
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("signaal bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(options: &Options) -> Result<Vec<PhaseReport>, String> {
    if options.clients == 0 || options.clients > 1024 {
        return Err("--clients must be between 1 and 1024".into());
    }
    if options.seconds == Some(0) || options.requests == Some(0) {
        return Err("a phase needs at least one second or one request".into());
    }
    let budget = options.budget();
    let mut reports = Vec::new();
    if options.search {
        check_loopback_url(&options.url)?;
        reports.extend(loads(options).await?);
        let patients = search::sample_patients(&options.url).await?;
        eprintln!(
            "signaal bench: {} patients sampled for the queries",
            patients.len()
        );
        if options.explain {
            let database = options.database.as_deref().unwrap_or_default();
            check_loopback_database(database)?;
            let store = crate::store::open(database)
                .await
                .map_err(|e| format!("--database: {e}"))?;
            let plans = search::explain(&options.url, store.as_ref(), &patients).await;
            store.close().await;
            let plans = plans?;
            if options.json {
                eprint!("{plans}");
            } else {
                print!("{plans}");
            }
        }
        reports.extend(search::queries(&options.url, options.clients, budget, &patients).await?);
        return Ok(reports);
    }
    if !options.raw_only {
        check_loopback_url(&options.url)?;
        // First, while the scoring queue holds only what the phase itself writes: after the
        // ingest phases it holds their backlog, and the delay would measure that.
        if options.flag_delay {
            reports.push(flags::run(&options.url, options.flag_write_rate, budget).await?);
        }
        // For the same reason: the ingest phases queue their 100 patients, each with thousands
        // of readings, again and again; queued first, they would be scored before the
        // uploads of this phase.
        if options.subscriptions {
            reports.extend(
                notify::run(&options.url, options.clients, budget, options.notify_rate).await?,
            );
        }
        if let Some(database) = &options.database {
            check_loopback_database(database)?;
        }
        reports.extend(
            load::run(
                &options.url,
                options.clients,
                budget,
                options.database.as_deref(),
            )
            .await?,
        );
        reports.extend(xml::run(&options.url, options.clients, budget).await?);
        reports.extend(profile::run(&options.url, options.clients, budget).await?);
        let sizes = &options.transaction_sizes;
        if sizes.iter().any(|&n| n == 0 || n > 10_000) {
            return Err("--transaction-sizes must be between 1 and 10000".into());
        }
        reports.extend(
            ingest::bundles(
                &options.url,
                options.clients,
                budget,
                Kind::Transaction,
                sizes,
            )
            .await?,
        );
        let batches: Vec<usize> = options
            .batch_sizes
            .iter()
            .copied()
            .filter(|&n| n > 0)
            .collect();
        if batches.iter().any(|&n| n > 10_000) {
            return Err("--batch-sizes must be between 1 and 10000".into());
        }
        reports.extend(
            ingest::bundles(&options.url, options.clients, budget, Kind::Batch, &batches).await?,
        );
        match options.import_lines {
            0 => {}
            n if n > 100_000 => return Err("--import-lines must be at most 100000".into()),
            n => reports.push(import::run(&options.url, budget, n).await?),
        }
        reports.extend(loads(options).await?);
    }
    if let Some(database) = &options.raw_database {
        check_loopback_database(database)?;
        let mut sizes = vec![1];
        for &size in &options.raw_transaction_sizes {
            if size == 0 || size > 10_000 {
                return Err("--raw-transaction-sizes must be between 1 and 10000".into());
            }
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        reports.extend(raw::run(database, options.clients, budget, &sizes).await?);
    }
    Ok(reports)
}

/// The one-shot loads asked for: the Synthea folder, then the synthetic patients.
async fn loads(options: &Options) -> Result<Vec<PhaseReport>, String> {
    let mut reports = Vec::new();
    if let Some(dir) = &options.synthea_dir {
        reports.push(ingest::synthea(&options.url, options.clients, dir).await?);
    }
    match options.generate_patients {
        Some(0) => return Err("--generate-patients needs at least one patient".into()),
        Some(n) => {
            reports.push(search::generate(&options.url, options.clients, options.seed, n).await?)
        }
        None => {}
    }
    Ok(reports)
}

/// A realistic write: a blood pressure panel (LOINC 85354-9) with systolic and diastolic
/// components, as a home measuring device or a PGO app would send it. `n` varies the values,
/// the time and the patient, so index entries differ from one resource to the next.
pub fn blood_pressure(n: u64) -> Value {
    let systolic = 100 + n % 60;
    let diastolic = 60 + n % 35;
    let minute = n % 60;
    let hour = (n / 60) % 24;
    let day = 1 + (n / 1440) % 28;
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs"
            }]
        }],
        "code": {
            "coding": [{
                "system": "http://loinc.org",
                "code": "85354-9",
                "display": "Blood pressure panel with all children optional"
            }],
            "text": "Blood pressure"
        },
        "subject": { "reference": format!("Patient/bench-{}", n % 100) },
        "effectiveDateTime": format!("2024-03-{day:02}T{hour:02}:{minute:02}:00+01:00"),
        "device": { "display": "Home blood pressure monitor" },
        "component": [
            {
                "code": {
                    "coding": [{
                        "system": "http://loinc.org",
                        "code": "8480-6",
                        "display": "Systolic blood pressure"
                    }]
                },
                "valueQuantity": {
                    "value": systolic,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]"
                }
            },
            {
                "code": {
                    "coding": [{
                        "system": "http://loinc.org",
                        "code": "8462-4",
                        "display": "Diastolic blood pressure"
                    }]
                },
                "valueQuantity": {
                    "value": diastolic,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]"
                }
            }
        ]
    })
}

/// Refuses any server but this machine's: the command is for measuring, not for loading
/// other people's servers.
fn check_loopback_url(base: &str) -> Result<(), String> {
    let url = url::Url::parse(base).map_err(|e| format!("--url '{base}': {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("--url '{base}': only http:// is supported"));
    }
    match url.host() {
        Some(host) if is_loopback_host(&host) => Ok(()),
        _ => Err(format!(
            "--url '{base}': only loopback servers (127.0.0.1, ::1, localhost) can be benchmarked"
        )),
    }
}

fn check_loopback_database(database: &str) -> Result<(), String> {
    if database.starts_with("sqlite:") {
        return Ok(());
    }
    let url = url::Url::parse(database).map_err(|e| format!("--raw-database: {e}"))?;
    match url.host() {
        Some(host) if is_loopback_host(&host) => Ok(()),
        _ => Err(
            "--raw-database: only sqlite:// files and loopback PostgreSQL servers are accepted"
                .into(),
        ),
    }
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        // postgres:// is not a "special" scheme to the URL parser, so its IP hosts arrive
        // here as opaque names.
        url::Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

fn describe_budget(options: &Options) -> String {
    match options.budget() {
        Budget::Time(d) => format!("{} s per phase", d.as_secs()),
        Budget::Requests(n) => format!("{n} requests per phase"),
    }
}

fn report_table(options: &Options, reports: &[PhaseReport]) -> String {
    let mut out = String::new();
    let label = options
        .label
        .as_deref()
        .map(|l| format!("[{l}] "))
        .unwrap_or_default();
    out.push_str(&format!(
        "\n{label}signaal bench: {}, {} clients, {}\n",
        if options.raw_only {
            "raw store only".to_owned()
        } else {
            options.url.clone()
        },
        options.clients,
        describe_budget(options)
    ));
    out.push_str(&format!(
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}\n",
        "phase",
        "requests",
        "errors",
        "req/s",
        "res/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "seconds",
        "B/req"
    ));
    for r in reports {
        let l = &r.latency;
        out.push_str(&format!(
            "{:<24} {:>9} {:>7} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>8}\n",
            r.name,
            r.requests,
            r.errors,
            r.throughput(),
            r.resource_rate(),
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max),
            r.elapsed.as_secs_f64(),
            r.bytes_per_request
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".into())
        ));
    }
    let create = reports.iter().find(|r| r.name == load::CREATE);
    let raw = reports.iter().find(|r| r.name == raw::INSERT);
    if let (Some(create), Some(raw)) = (create, raw) {
        if create.throughput() > 0.0 && raw.throughput() > 0.0 {
            out.push_str(&format!(
                "raw store insert rate = {:.2} x HTTP create rate (mean latency {:.2} ms raw, \
                 {:.2} ms over HTTP)\n",
                raw.throughput() / create.throughput(),
                ms(raw.latency.mean),
                ms(create.latency.mean),
            ));
        }
    }
    out
}

fn report_json(options: &Options, reports: &[PhaseReport]) -> Value {
    json!({
        "label": options.label,
        "url": if options.raw_only { None } else { Some(&options.url) },
        "raw_database": options.raw_database.as_deref().map(redact),
        "clients": options.clients,
        "seconds": match options.budget() { Budget::Time(d) => Some(d.as_secs()), _ => None },
        "requests": options.requests,
        "phases": reports.iter().map(|r| json!({
            "name": r.name,
            "requests": r.requests,
            "errors": r.errors,
            "seconds": r.elapsed.as_secs_f64(),
            "throughput": r.throughput(),
            "resources": r.resources,
            "resources_per_second": r.resource_rate(),
            "bytes_per_request": r.bytes_per_request,
            "latency_ms": {
                "mean": ms(r.latency.mean),
                "p50": ms(r.latency.p50),
                "p95": ms(r.latency.p95),
                "p99": ms(r.latency.p99),
                "max": ms(r.latency.max),
            },
        })).collect::<Vec<_>>(),
    })
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// A database URL without its password, for the report.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers() {
        assert!(check_loopback_url("http://127.0.0.1:8080/fhir").is_ok());
        assert!(check_loopback_url("http://localhost:8080/fhir").is_ok());
        assert!(check_loopback_url("http://[::1]:8080/fhir").is_ok());
        assert!(check_loopback_url("http://10.0.0.1:8080/fhir").is_err());
        assert!(check_loopback_url("http://example.org/fhir").is_err());
        assert!(check_loopback_database("sqlite:///tmp/x.db").is_ok());
        assert!(check_loopback_database("postgres://u@127.0.0.1:5432/db").is_ok());
        assert!(check_loopback_database("postgres://u@[::1]:5432/db").is_ok());
        assert!(check_loopback_database("postgres://u@localhost/db").is_ok());
        assert!(check_loopback_database("postgres://u@db.example.org/db").is_err());
        assert!(check_loopback_database("postgres://u@10.1.2.3/db").is_err());
    }

    #[test]
    fn blood_pressure_is_valid() {
        crate::fhir::validate::validate(&blood_pressure(12345), "Observation")
            .expect("the benchmark resource is a valid Observation");
    }
}
