//! Every Synthea patient Bundle loads as a transaction, on both stores (issue: batch and
//! transaction Bundles). The 300 Bundles of `../shared/synthea/synthea-r4-300.tar.gz`
//! (89,773 resources, every reference a `urn:uuid` inside its own Bundle) are posted to the
//! base as they are; each must answer `201 Created` for every entry, and afterwards the
//! server holds exactly what was sent: per resource type, the count before plus the Bundles'
//! resources. Then every end-of-life care indicator (`Measure/$evaluate-measure`) evaluates
//! the loaded decedents without error.
//!
//! Once loaded, the sample is exported at every Bulk Data level (system, Patient, Group) with
//! `_type`, `_typeFilter` and `_since`, each manifest checked against the server's own searches
//! (issue 15).
//!
//! The archive comes from `SYNTHEA_ARCHIVE`, by default `../shared/synthea/synthea-r4-300.tar.gz`.
//! Without it the test explains how to get comparable data and passes, unless
//! `SIGNAAL_REQUIRE_FIXTURES=1`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use common::bulk::{export, files};
use common::{expect_status, StoreKind, TestServer};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Bundles in flight at once: transactions from several clients, as PGO apps send them.
const CONCURRENCY: usize = 4;

struct SyntheaBundle {
    file: String,
    bytes: Vec<u8>,
    /// Resources per type in this Bundle.
    counts: BTreeMap<String, u64>,
    /// Patients with a date of death (`deceasedDateTime` to the day at least).
    decedents: u64,
}

fn bundles() -> Option<Vec<SyntheaBundle>> {
    let path = common::shared_fixture(
        "SYNTHEA_ARCHIVE",
        "synthea/synthea-r4-300.tar.gz",
        "it holds 300 Synthea R4 transaction Bundles; generate comparable ones with Synthea \
         (https://github.com/synthetichealth/synthea, `./run_synthea -p 300`, R4 export) and tar \
         the output/fhir/*.json files into a .tar.gz",
    )?;
    let file = std::fs::File::open(&path).expect("the Synthea archive can be opened");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut bundles = Vec::new();
    for entry in archive.entries().expect("the archive is a tar.gz") {
        let mut entry = entry.expect("a readable archive entry");
        let name = entry
            .path()
            .expect("an entry path")
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("a readable entry");
        let json: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let mut counts = BTreeMap::new();
        let mut decedents = 0;
        for entry in json["entry"].as_array().map_or(&[][..], Vec::as_slice) {
            let rtype = entry["resource"]["resourceType"].as_str().unwrap_or("?");
            *counts.entry(rtype.to_owned()).or_default() += 1;
            let died = entry["resource"]["deceasedDateTime"].as_str();
            if rtype == "Patient" && died.is_some_and(|d| d.len() >= 10) {
                decedents += 1;
            }
        }
        bundles.push(SyntheaBundle {
            file: name,
            bytes,
            counts,
            decedents,
        });
    }
    assert!(
        bundles.len() >= 300,
        "{} holds only {} Bundles",
        path.display(),
        bundles.len()
    );
    Some(bundles)
}

/// The total a search finds: `rtype` alone counts the type, or a query with its parameters.
async fn count(server: &TestServer, query: &str) -> u64 {
    let query = if query.contains('?') {
        query.to_owned()
    } else {
        format!("{query}?_summary=count")
    };
    let reply = server.client.get(&query).await.unwrap();
    expect_status(&reply, 200)["total"].as_u64().unwrap()
}

async fn every_bundle_loads_as_a_transaction(kind: StoreKind) {
    let Some(bundles) = bundles() else { return };
    // Loading is what is tested here: the scoring worker stays off (tests/scoring_synthea.rs
    // scores Synthea patients), so it does not compete with the load for the machine.
    let server = TestServer::start_configured(kind, |settings| {
        settings.body_limit = 64 * 1024 * 1024;
        settings.scoring.worker = false;
    })
    .await;
    let Some(server) = server else {
        return;
    };
    let server = Arc::new(server);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let decedents: u64 = bundles.iter().map(|b| b.decedents).sum();
    for bundle in &bundles {
        for (rtype, n) in &bundle.counts {
            *expected.entry(rtype.clone()).or_default() += n;
        }
        // Synthea's own Provenance resources (counted above), and the server's: one per
        // transaction, naming every version it wrote (decision 0032).
        *expected.entry("Provenance".into()).or_default() += 1;
    }
    let mut before = BTreeMap::new();
    for rtype in expected.keys() {
        before.insert(rtype.clone(), count(&server, rtype).await);
    }

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    for bundle in bundles {
        let server = server.clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let _permit = permit;
            let reply = server
                .client
                .send(
                    "POST",
                    "",
                    &[("Content-Type", "application/fhir+json")],
                    Some(bundle.bytes),
                )
                .await
                .unwrap();
            assert_eq!(
                reply.status,
                200,
                "{}: {}",
                bundle.file,
                String::from_utf8_lossy(&reply.body)
            );
            let body = reply.json();
            let entries = body["entry"].as_array().unwrap();
            let sent: u64 = bundle.counts.values().sum();
            assert_eq!(entries.len() as u64, sent, "{}", bundle.file);
            for (i, entry) in entries.iter().enumerate() {
                assert_eq!(
                    entry["response"]["status"], "201 Created",
                    "{} entry {i}",
                    bundle.file
                );
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("a Bundle loads");
    }

    for (rtype, sent) in &expected {
        let after = count(&server, rtype).await;
        assert_eq!(
            after,
            before[rtype] + sent,
            "{rtype}: {} before, {sent} sent, {after} after",
            before[rtype]
        );
    }

    // Synthea's deceased patients, as loaded, evaluated by every end-of-life care indicator
    // (issue 17): each is in the population, and the strata split it.
    for measure in [
        "eol-ed-visits",
        "eol-hospital-admissions",
        "eol-icu-admission",
        "eol-chemotherapy",
        "eol-death-in-hospital",
        "eol-no-or-late-palliative-care",
        "eol-any",
    ] {
        let reply = server
            .client
            .get(&format!(
                "Measure/signaal-{measure}/$evaluate-measure?periodStart=1900&periodEnd=2100"
            ))
            .await
            .unwrap();
        let group = &expect_status(&reply, 200)["group"][0];
        let population = |g: &Value, code: &str| {
            g["population"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["code"]["coding"][0]["code"] == code)
                .unwrap()["count"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(population(group, "denominator"), decedents, "{measure}");
        let numerator = population(group, "numerator");
        assert!(numerator <= decedents, "{measure}");
        let strata = group["stratifier"][0]["stratum"].as_array().unwrap();
        let split: u64 = strata.iter().map(|s| population(s, "numerator")).sum();
        assert_eq!(split, numerator, "{measure}");
    }

    exported_at_every_level(&server).await;
}

/// The loaded sample exported at every level; each manifest agrees with the searches.
async fn exported_at_every_level(server: &TestServer) {
    let client = &server.client;
    // System level, a few types: every resource of each, once.
    let types = ["Patient", "Encounter", "Condition", "CarePlan"];
    let (_, manifest) = export(client, None, &format!("$export?_type={}", types.join(","))).await;
    let by_type = files(client, None, &manifest).await;
    for rtype in types {
        let ids = by_type.get(rtype).map_or(&[][..], Vec::as_slice);
        let mut unique = ids.to_vec();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{rtype}: a resource exported twice"
        );
        assert_eq!(
            ids.len() as u64,
            count(server, rtype).await,
            "system export of {rtype}"
        );
    }

    // `_typeFilter`: only the vital signs, as the search finds them.
    let (_, manifest) = export(
        client,
        None,
        "$export?_type=Observation&_typeFilter=Observation%3Fcategory%3Dvital-signs",
    )
    .await;
    let vital = files(client, None, &manifest).await;
    let expected = count(server, "Observation?category=vital-signs&_summary=count").await;
    assert!(expected > 0, "the sample has vital signs");
    assert_eq!(
        vital.get("Observation").map_or(0, Vec::len) as u64,
        expected
    );

    // Patient level: Conditions are all in their patients' compartments.
    let (_, manifest) = export(client, None, "Patient/$export?_type=Condition").await;
    let conditions = files(client, None, &manifest).await;
    assert_eq!(
        conditions.get("Condition").map_or(0, Vec::len) as u64,
        count(server, "Condition").await
    );

    // Group level: three patients' Patient and Encounter resources, no one else's.
    let reply = client.get("Patient?_count=3&_elements=id").await.unwrap();
    let members: Vec<String> = expect_status(&reply, 200)["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members.len(), 3);
    let group = json!({
        "resourceType": "Group", "id": "synthea-three", "type": "person", "actual": true,
        "member": members.iter().map(|id| json!({"entity": {"reference": format!("Patient/{id}")}}))
            .collect::<Vec<_>>(),
    });
    let reply = client.put("Group/synthea-three", &group).await.unwrap();
    assert!(matches!(reply.status, 200 | 201), "{}", reply.status);
    let (_, manifest) = export(
        client,
        None,
        "Group/synthea-three/$export?_type=Patient,Encounter",
    )
    .await;
    let of_group = files(client, None, &manifest).await;
    let mut patients: Vec<String> = members.iter().map(|id| format!("Patient/{id}")).collect();
    patients.sort();
    assert_eq!(of_group.get("Patient"), Some(&patients));
    let mut encounters = 0;
    for id in &members {
        encounters += count(server, &format!("Encounter?patient={id}&_summary=count")).await;
    }
    assert_eq!(
        of_group.get("Encounter").map_or(0, Vec::len) as u64,
        encounters
    );

    // `_since`: after the load, only what was written since.
    let since = manifest["transactionTime"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let weight = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{}", members[0])},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {"value": 81.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    });
    let reply = client.post("Observation", &weight).await.unwrap();
    expect_status(&reply, 201);
    let since = since.replace('+', "%2B");
    let (_, manifest) = export(
        client,
        None,
        &format!("$export?_type=Observation&_since={since}"),
    )
    .await;
    let recent = files(client, None, &manifest).await;
    assert_eq!(
        recent.get("Observation").map_or(0, Vec::len),
        1,
        "{manifest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_synthea_bundle_loads_as_a_transaction_on_sqlite() {
    every_bundle_loads_as_a_transaction(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_synthea_bundle_loads_as_a_transaction_on_postgres() {
    every_bundle_loads_as_a_transaction(StoreKind::Postgres).await;
}
