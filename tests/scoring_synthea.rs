//! The scoring models over Synthea's synthetic patients (`../shared/synthea/synthea-r4-300.tar.gz`,
//! or `SYNTHEA_ARCHIVE`), loaded as their transaction Bundles through `POST [base]`, on both
//! stores: every inpatient stay with a finished period gets a LACE and a HOSPITAL
//! RiskAssessment, every patient a Charlson one, and the scores are within their tables.
//! Skipped when the archive is missing, unless `SIGNAAL_REQUIRE_FIXTURES=1`.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use common::expect_status;
use serde_json::Value;

/// How many patients (those with an inpatient stay, smallest Bundles first) are loaded: enough
/// to meet every model, few enough for a debug build on a small machine.
const PATIENTS: usize = 8;

fn archive_path() -> PathBuf {
    match std::env::var("SYNTHEA_ARCHIVE") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/synthea/synthea-r4-300.tar.gz"),
    }
}

fn finished_stays(bundle: &Value) -> usize {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| {
            r["resourceType"] == "Encounter"
                && r["class"]["code"] == "IMP"
                && r["status"] == "finished"
                && r["period"]["end"].is_string()
        })
        .count()
}

/// The practitioner Bundle and the smallest patient Bundles with a finished inpatient stay.
fn bundles() -> Option<Vec<Value>> {
    let path = archive_path();
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            if std::env::var("SIGNAAL_REQUIRE_FIXTURES").as_deref() == Ok("1") {
                panic!(
                    "SIGNAAL_REQUIRE_FIXTURES=1 but {} cannot be read: {e}",
                    path.display()
                );
            }
            eprintln!(
                "skipping: the Synthea archive {} cannot be read ({e})",
                path.display()
            );
            return None;
        }
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut practitioners = Vec::new();
    let mut patients = Vec::new();
    for entry in archive.entries().expect("a tar.gz archive") {
        let mut entry = entry.expect("a readable entry");
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("UTF-8 JSON");
        let size = text.len();
        let bundle: Value = serde_json::from_str(&text).expect("JSON");
        if name.starts_with("practitionerInformation") || name.starts_with("hospitalInformation") {
            practitioners.push(bundle);
        } else if finished_stays(&bundle) > 0 {
            patients.push((size, name, bundle));
        }
    }
    patients.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    practitioners.extend(patients.into_iter().take(PATIENTS).map(|p| p.2));
    Some(practitioners)
}

fn resources(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect()
}

both_stores!(
    every_finished_synthea_stay_gets_lace_and_hospital,
    |server| {
        let Some(bundles) = bundles() else { return };
        let mut stays = 0;
        let mut patients = 0;
        for bundle in &bundles {
            let reply = server.client.post("", bundle).await.unwrap();
            expect_status(&reply, 200);
            stays += finished_stays(bundle);
            patients += resources(bundle)
                .iter()
                .filter(|r| r["resourceType"] == "Patient")
                .count();
        }
        assert_eq!(patients, PATIENTS);

        let reply = server
            .client
            .get("Encounter?class=IMP&status=finished&_count=1000")
            .await
            .unwrap();
        let encounters: BTreeSet<String> = resources(&expect_status(&reply, 200))
            .iter()
            .filter(|e| e["period"]["end"].is_string())
            .map(|e| format!("Encounter/{}", e["id"].as_str().unwrap()))
            .collect();
        assert_eq!(encounters.len(), stays);

        // The worker scores in the background; wait (generously) until every stay has its LACE.
        let mut lace = Vec::new();
        for _ in 0..1200 {
            let reply = server
                .client
                .get("RiskAssessment?method=lace&_count=1000")
                .await
                .unwrap();
            let found = expect_status(&reply, 200);
            lace = resources(&found).into_iter().cloned().collect::<Vec<_>>();
            if lace.len() >= stays {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let scored: BTreeSet<String> = lace
            .iter()
            .map(|r| r["encounter"]["reference"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(scored, encounters, "one LACE per finished inpatient stay");
        for ra in &lace {
            let score = ra["extension"][0]["valueDecimal"].as_f64().unwrap();
            assert!((0.0..=19.0).contains(&score), "LACE is 0..19: {ra:#}");
            let risk = ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"]
                .as_str()
                .unwrap();
            let expected = if score >= 10.0 {
                "high"
            } else if score >= 5.0 {
                "moderate"
            } else {
                "low"
            };
            assert_eq!(risk, expected);
            assert!(ra["basis"].as_array().is_some_and(|b| !b.is_empty()));
        }
        let reply = server
            .client
            .get("RiskAssessment?method=hospital&_count=1000")
            .await
            .unwrap();
        let hospital = expect_status(&reply, 200);
        assert_eq!(resources(&hospital).len(), stays, "one HOSPITAL per stay");
        for ra in resources(&hospital) {
            let score = ra["extension"][0]["valueDecimal"].as_f64().unwrap();
            assert!((0.0..=13.0).contains(&score), "HOSPITAL is 0..13: {ra:#}");
        }
        let reply = server
            .client
            .get("RiskAssessment?method=charlson&_count=1000")
            .await
            .unwrap();
        let charlson = expect_status(&reply, 200);
        assert_eq!(
            resources(&charlson).len(),
            patients,
            "one Charlson per patient"
        );
        // Synthea's stays are old: none is within 30 days, so no readmission Flag.
        let reply = server
            .client
            .get("Flag?status=active&_count=1000")
            .await
            .unwrap();
        let flags = expect_status(&reply, 200);
        assert!(resources(&flags).iter().all(|f| !matches!(
            f["code"]["coding"][0]["code"].as_str(),
            Some("lace-high" | "hospital-high")
        )));
    }
);
