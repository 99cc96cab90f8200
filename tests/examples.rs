//! The runnable client scenarios in `examples/` work against a real server, on both stores:
//! each script is run as a user would run it, and what it stored is checked through search.

mod common;

use std::path::Path;
use std::process::Command;

use common::{expect_status, matches, statuses};
use serde_json::Value;

const BSN_PATIENT: &str = "patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782";

/// Runs an example script with the server's base URL; returns its standard output.
async fn run_script(script: &str, base: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let base = base.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(&path)
            .arg(&base)
            .output()
            .expect("bash runs the example")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The transaction-response Bundle the script printed (before its `HTTP …` line).
fn response_bundle(stdout: &str) -> Value {
    let json = stdout
        .rsplit_once("\nHTTP ")
        .map_or(stdout, |(body, _)| body);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

both_stores!(
    the_pgo_push_lands_and_a_second_push_stores_nothing_twice,
    |server| {
        let first = response_bundle(&run_script("examples/pgo-push/push.sh", &server.base).await);
        assert_eq!(first["type"], "transaction-response");
        let created = statuses(&first);
        assert_eq!(created.len(), 10);
        assert!(created.iter().all(|s| s == "201 Created"), "{created:?}");

        let second = response_bundle(&run_script("examples/pgo-push/push.sh", &server.base).await);
        let found = statuses(&second);
        assert!(found.iter().all(|s| s == "200 OK"), "{found:?}");

        let patients = matches(
            &server,
            "Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782",
        )
        .await;
        assert_eq!(patients.len(), 1);
        let patient = format!("Patient/{}", patients[0]["id"].as_str().unwrap());

        let pressures = matches(
            &server,
            &format!("Observation?subject={patient}&code=http://loinc.org|85354-9"),
        )
        .await;
        assert_eq!(pressures.len(), 3);
        let device = pressures[0]["device"]["reference"].as_str().unwrap();
        assert!(device.starts_with("Device/"), "{device}");
        expect_status(&server.client.get(device).await.unwrap(), 200);

        // What a hospital EHR asks: the active care plan with its goal.
        let body = expect_status(
            &server
                .client
                .get(&format!(
                    "CarePlan?{BSN_PATIENT}&status=active&_include=CarePlan:goal"
                ))
                .await
                .unwrap(),
            200,
        );
        let entries = body["entry"].as_array().unwrap();
        let modes: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["search"]["mode"].as_str().unwrap(),
                )
            })
            .collect();
        assert!(modes.contains(&("CarePlan", "match")), "{modes:?}");
        assert!(modes.contains(&("Goal", "include")), "{modes:?}");
        let plan = &entries[0]["resource"];
        assert_eq!(plan["supportingInfo"].as_array().unwrap().len(), 6);
        assert!(plan["supportingInfo"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Observation/"));

        // What a coach's tool asks: the latest vital signs per code.
        let latest = matches(
            &server,
            &format!("Observation/$lastn?{BSN_PATIENT}&category=vital-signs"),
        )
        .await;
        let mut codes: Vec<&str> = latest
            .iter()
            .map(|o| o["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        codes.sort();
        assert_eq!(codes, vec!["29463-7", "85354-9"]);
    }
);
