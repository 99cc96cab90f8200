//! The search benchmark (issue 3): load patients (Synthea Bundles and/or synthetic ones, see
//! [`super::synthetic`]), then time the queries EHRs and coaches' tools run all day, each with a
//! patient drawn at random from the server, `--clients` at a time. `--explain` prints the
//! database's plan of every statement each query runs, so a query that leaves the indexes
//! shows before it shows in the numbers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::ingest::post_bundle;
use super::load::{success, XorShift};
use super::phase::{drive, Budget, PhaseReport};
use super::synthetic::{patient_bundle, RESOURCES_PER_PATIENT};
use crate::client::Client;
use crate::search::params::{parse, Unknown};
use crate::store::{Statement, Store};

/// A loaded patient the queries are asked about.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub id: String,
    /// The first identifier with a system and a value (`Patient?identifier=S|V`).
    pub identifier: Option<(String, String)>,
}

/// The most patients sampled from the server (five pages of 1,000).
const MAX_SAMPLED: usize = 5_000;

/// The queries of the benchmark, by name: the request (relative to the FHIR base) for a
/// patient, `None` when the query does not apply to it (a patient without identifier).
pub const QUERIES: [(&str, fn(&Sampled) -> Option<String>); 6] = [
    ("Observation BP", |p| {
        Some(format!(
            "Observation?patient={}&code={}&_sort=-date&_count=10",
            enc(&p.id),
            enc("http://loinc.org|85354-9")
        ))
    }),
    ("CarePlan +goal", |p| {
        Some(format!(
            "CarePlan?patient={}&status=active&_include=CarePlan:goal",
            enc(&p.id)
        ))
    }),
    ("Patient identifier", |p| {
        let (system, value) = p.identifier.as_ref()?;
        Some(format!(
            "Patient?identifier={}",
            enc(&format!("{system}|{value}"))
        ))
    }),
    ("Encounter IMP", |p| {
        Some(format!(
            "Encounter?patient={}&class=IMP&date=ge2019-01-01",
            enc(&p.id)
        ))
    }),
    ("$lastn vital-signs", |p| {
        Some(format!(
            "Observation/$lastn?patient={}&category=vital-signs",
            enc(&p.id)
        ))
    }),
    // The coach's worklist (issue 16): every active Flag, most urgent first; the same for
    // every patient drawn.
    ("Flag worklist", |_| {
        Some("Flag?status=active&_sort=-priority&_count=20".to_owned())
    }),
];

fn enc(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// The name of the load phase of `patients` synthetic patients.
pub fn generate_phase(patients: u64) -> String {
    format!("generate ({patients} patients)")
}

/// Loads synthetic patients `0..patients` of `seed`, one transaction Bundle each, `clients`
/// at a time, through the server's transaction endpoint. Progress goes to stderr every 100
/// patients, since a million resources take a while.
pub async fn generate(
    base: &str,
    clients: usize,
    seed: u64,
    patients: u64,
) -> Result<PhaseReport, String> {
    eprintln!(
        "signaal bench: generating {patients} patients of seed {seed}, {RESOURCES_PER_PATIENT} \
         resources each ({} in all)",
        patients * RESOURCES_PER_PATIENT as u64
    );
    let started = Instant::now();
    let name = generate_phase(patients);
    let mut report = drive(&name, clients, Budget::Requests(patients), |_| {
        let client = Client::new(base);
        move |seq| {
            if seq > 0 && seq % 100 == 0 {
                eprintln!(
                    "signaal bench: {seq} of {patients} patients sent after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let client = client.clone();
            let body = patient_bundle(seed, seq).to_string().into_bytes();
            async move { post_bundle(&client, body).await }
        }
    })
    .await?;
    if report.errors > 0 {
        return Err(format!(
            "{name}: {} of {patients} Bundles were refused",
            report.errors
        ));
    }
    report.resources = patients * RESOURCES_PER_PATIENT as u64;
    Ok(report)
}

/// Up to [`MAX_SAMPLED`] patients of the server, in pages of 1,000 with only their identifiers.
pub async fn sample_patients(base: &str) -> Result<Vec<Sampled>, String> {
    let client = Client::new(base);
    let mut next = Some("Patient?_count=1000&_elements=identifier&_total=none".to_owned());
    let mut patients = Vec::new();
    while let Some(path) = next.take() {
        let reply = client.get(&path).await.map_err(|e| e.to_string())?;
        success(&reply).map_err(|e| format!("sampling patients: {e}"))?;
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let Some(id) = resource["id"].as_str() else {
                continue;
            };
            let identifier = resource["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|i| {
                    Some((
                        i["system"].as_str()?.to_owned(),
                        i["value"].as_str()?.to_owned(),
                    ))
                });
            patients.push(Sampled {
                id: id.to_owned(),
                identifier,
            });
        }
        if patients.len() < MAX_SAMPLED {
            next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_owned);
        }
    }
    if patients.is_empty() {
        return Err(
            "the server holds no Patient to search for: load some first \
                    (--synthea-dir or --generate-patients)"
                .into(),
        );
    }
    Ok(patients)
}

/// One phase per query of [`QUERIES`]. Each request picks a random sampled patient; `res/s`
/// counts the entries returned (matches and included resources).
pub async fn queries(
    base: &str,
    clients: usize,
    budget: Budget,
    patients: &[Sampled],
) -> Result<Vec<PhaseReport>, String> {
    let mut reports = Vec::new();
    for (name, request) in QUERIES {
        let paths: Arc<Vec<String>> = Arc::new(patients.iter().filter_map(request).collect());
        if paths.is_empty() {
            eprintln!("signaal bench: {name}: no sampled patient fits, skipped");
            continue;
        }
        let entries = Arc::new(AtomicU64::new(0));
        let mut report = drive(name, clients, budget, |w| {
            let client = Client::new(base);
            let paths = paths.clone();
            let entries = entries.clone();
            let mut random = XorShift::new(0x5EA2C4 + w as u64);
            move |_| {
                let client = client.clone();
                let path = paths[random.below(paths.len())].clone();
                let entries = entries.clone();
                async move {
                    let reply = client.get(&path).await.map_err(|e| e.to_string())?;
                    success(&reply)?;
                    entries.fetch_add(count_entries(&reply.body), Relaxed);
                    Ok(())
                }
            }
        })
        .await?;
        report.resources = entries.load(Relaxed);
        reports.push(report);
    }
    Ok(reports)
}

/// Entries of a searchset Bundle with mode match or include, counted in the compact JSON
/// the server writes (cheaper than parsing it inside the timed request).
fn count_entries(body: &[u8]) -> u64 {
    let mut n = 0;
    for needle in [&b"\"mode\":\"match\""[..], &b"\"mode\":\"include\""[..]] {
        n += body.windows(needle.len()).filter(|w| *w == needle).count() as u64;
    }
    n
}

/// Prints, for each query asked about a sampled patient it finds something for, the request, the
/// number of entries it returns, and the plan of every statement the store runs for it.
/// Plan lines that look like a full table scan are marked `<-- full scan`.
pub async fn explain(
    base: &str,
    store: &dyn Store,
    patients: &[Sampled],
) -> Result<String, String> {
    let client = Client::new(base);
    // The queries are parsed as the server parses them: with the search parameters it holds.
    let registry = crate::interaction::search_parameters::load(store)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (name, request) in QUERIES {
        // The first of the first 20 fitting patients for whom the query finds something: the
        // plan of an empty search says less.
        let mut chosen: Option<(String, u64)> = None;
        for path in patients.iter().filter_map(request).take(20) {
            let reply = client.get(&path).await.map_err(|e| e.to_string())?;
            success(&reply)?;
            let entries = count_entries(&reply.body);
            if chosen.is_none() || entries > 0 {
                chosen = Some((path, entries));
            }
            if entries > 0 {
                break;
            }
        }
        let Some((path, entries)) = chosen else {
            continue;
        };
        out.push_str(&format!(
            "\n== {name}: GET {path}\n   {entries} entries returned\n"
        ));
        let (rtype, query) = path.split_once('?').unwrap_or((&path, ""));
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let lastn = rtype.ends_with("/$lastn");
        let rtype = rtype.trim_end_matches("/$lastn");
        let parsed = parse(
            &registry,
            &Default::default(),
            rtype,
            &params,
            Unknown::Ignore,
            base,
        )
        .map_err(|e| format!("{e:?}"))?;
        let query = &parsed.query;
        let mut statements: Vec<(&str, Vec<String>)> = Vec::new();
        if lastn {
            let plan = store
                .explain(Statement::Lastn {
                    query,
                    max: 1,
                    limit: crate::interaction::lastn::MAX_RESULTS,
                })
                .await
                .map_err(|e| e.to_string())?;
            statements.push(("lastn", plan));
        } else {
            let plan = store.explain(Statement::Search(query)).await;
            statements.push(("search", plan.map_err(|e| e.to_string())?));
            let plan = store.explain(Statement::Count(query)).await;
            statements.push((
                "count (when the page is not the whole result)",
                plan.map_err(|e| e.to_string())?,
            ));
        }
        let include_params: Vec<String> = parsed
            .includes
            .iter()
            .filter_map(|i| i.param.clone())
            .collect();
        if !include_params.is_empty() {
            let hits = store.search(query).await.map_err(|e| e.to_string())?;
            let rids: Vec<i64> = hits.iter().map(|h| h.rid).collect();
            if !rids.is_empty() {
                let statement = Statement::IncludeTargets {
                    rids: &rids,
                    params: Some(&include_params),
                    target_type: None,
                };
                let plan = store.explain(statement).await.map_err(|e| e.to_string())?;
                statements.push(("_include targets", plan));
                let targets = store
                    .include_targets(&rids, Some(&include_params), None)
                    .await
                    .map_err(|e| e.to_string())?;
                let plan = store
                    .explain(Statement::ReadCurrent(&targets))
                    .await
                    .map_err(|e| e.to_string())?;
                statements.push(("_include read", plan));
            }
        }
        for (what, plan) in statements {
            out.push_str(&format!("-- {what}\n"));
            for line in plan {
                let mark = if looks_like_full_scan(&line) {
                    "   <-- full scan"
                } else {
                    ""
                };
                out.push_str(&format!("   {line}{mark}\n"));
            }
        }
    }
    Ok(out)
}

/// A plan line that reads a whole table rather than an index range: PostgreSQL `Seq Scan`,
/// SQLite `SCAN <table>` without an index (`SCAN t`, our own derived table, is fine), and a
/// SQLite search of `resource` by type alone: every resource of the type, probed one by one.
fn looks_like_full_scan(line: &str) -> bool {
    let line = line.trim_start();
    if line.contains("Seq Scan") || line.ends_with("(rtype=?)") {
        return true;
    }
    match line.strip_prefix("SCAN ") {
        Some(rest) => {
            let table = rest.split_whitespace().next().unwrap_or("");
            !rest.contains("INDEX")
                && table != "t"
                && table != "dr"
                && !table.starts_with("(subquery")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_built_for_a_patient() {
        let patient = Sampled {
            id: "p1".into(),
            identifier: Some(("http://x.org/id".into(), "A1".into())),
        };
        let paths: Vec<_> = QUERIES.iter().filter_map(|(_, q)| q(&patient)).collect();
        assert_eq!(paths.len(), 6);
        assert_eq!(
            paths[0],
            "Observation?patient=p1&code=http%3A%2F%2Floinc%2Eorg%7C85354%2D9&_sort=-date&_count=10"
        );
        assert_eq!(
            paths[2],
            "Patient?identifier=http%3A%2F%2Fx%2Eorg%2Fid%7CA1"
        );
        let without = Sampled {
            id: "p2".into(),
            identifier: None,
        };
        assert_eq!(QUERIES.iter().filter_map(|(_, q)| q(&without)).count(), 5);
    }

    #[test]
    fn entries_are_counted_by_mode() {
        let body = br#"{"entry":[{"search":{"mode":"match"}},{"search":{"mode":"include"}},{"search":{"mode":"outcome"}}]}"#;
        assert_eq!(count_entries(body), 2);
    }

    #[test]
    fn full_scans_are_recognised() {
        assert!(looks_like_full_scan("  SCAN r"));
        assert!(looks_like_full_scan(
            "Seq Scan on resource r  (cost=0.00..1.00 rows=1 width=8)"
        ));
        assert!(!looks_like_full_scan(
            "SEARCH x USING INDEX idx_token_value (param=? AND code=?)"
        ));
        assert!(!looks_like_full_scan("SCAN t"));
        assert!(!looks_like_full_scan("SCAN dr"));
        assert!(looks_like_full_scan(
            "SEARCH r USING INDEX resource_type_updated (rtype=?)"
        ));
        assert!(!looks_like_full_scan(
            "SCAN r USING COVERING INDEX resource_pk"
        ));
    }
}
