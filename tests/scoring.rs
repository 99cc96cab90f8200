//! Risk scoring through the HTTP API, on both stores: writes queue patients, the worker scores
//! them, and RiskAssessments and Flags appear (and go) as a client sees them; the coach's
//! worklist; Signaal's profiles enforced on write; the models over Synthea's patients.
//!
//! Scoring runs in the background, so tests poll with a generous timeout (never assert on time).

mod common;

use std::time::Duration;

use chrono::{Duration as Span, SecondsFormat, Utc};
use common::{expect_status, StoreKind, TestServer};
use serde_json::{json, Value};

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const CS: &str = "https://signaal.dev/fhir/CodeSystem/signaal";
const FLAG_PROFILE: &str = "https://signaal.dev/fhir/StructureDefinition/signaal-flag";

/// An instant `hours` from now (negative: in the past).
fn at(hours: i64) -> String {
    (Utc::now() + Span::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn quantity(subject: &str, loinc: &str, when: &str, value: f64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
}

fn condition(subject: &str, code: &str) -> Value {
    json!({"resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": subject}})
}

fn encounter(subject: &str, class: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "subject": {"reference": subject},
        "period": {"start": start, "end": end}})
}

fn entry(full_url: &str, resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rtype}})
}

async fn create(server: &TestServer, resource: Value) -> String {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    let reply = server.client.post(&rtype, &resource).await.unwrap();
    let body = expect_status(&reply, 201);
    body["id"].as_str().unwrap().to_owned()
}

/// Polls `path` until `done` holds for the searchset, for at most a minute.
async fn wait_for(server: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let reply = server.client.get(path).await.unwrap();
        last = expect_status(&reply, 200);
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there; last answer: {last:#}");
}

fn resources<'a>(bundle: &'a Value, rtype: &'a str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == rtype)
        .collect()
}

fn reason(flag: &Value) -> &str {
    flag["code"]["coding"][0]["code"].as_str().unwrap_or("")
}

both_stores!(
    a_pgo_weight_gain_raises_a_flag_and_a_correction_ends_it,
    |server| {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry("urn:uuid:7f3e4a9c-0000-4000-8000-000000000001", json!({"resourceType": "Patient", "name": [{"family": "Bakker"}]})),
            entry("urn:uuid:7f3e4a9c-0000-4000-8000-000000000002", condition("urn:uuid:7f3e4a9c-0000-4000-8000-000000000001", "88805009")),
            entry("urn:uuid:7f3e4a9c-0000-4000-8000-000000000003", quantity("urn:uuid:7f3e4a9c-0000-4000-8000-000000000001", "29463-7", &at(-48), 80.0, "kg")),
            entry("urn:uuid:7f3e4a9c-0000-4000-8000-000000000004", quantity("urn:uuid:7f3e4a9c-0000-4000-8000-000000000001", "29463-7", &at(-1), 82.4, "kg")),
        ]});
        let reply = server.client.post("", &bundle).await.unwrap();
        let response = expect_status(&reply, 200);
        let location = response["entry"][0]["response"]["location"]
            .as_str()
            .unwrap();
        let patient = location.split('/').nth_back(2).unwrap().to_owned();

        let search = format!(
            "Flag?status=active&patient=Patient/{patient}&_sort=-priority&_include=Flag:patient"
        );
        let found = wait_for(&server, &search, |b| !resources(b, "Flag").is_empty()).await;
        let flags = resources(&found, "Flag");
        assert_eq!(flags.len(), 1, "{found:#}");
        let flag = flags[0].clone();
        assert_eq!(reason(&flag), "weight-gain");
        assert_eq!(flag["category"][0]["coding"][0]["code"], "home-measurement");
        assert_eq!(flag["meta"]["profile"][0], FLAG_PROFILE);
        assert!(flag["period"]["end"].is_null());
        let included = resources(&found, "Patient");
        assert_eq!(included.len(), 1, "Flag:patient is included");
        assert_eq!(included[0]["id"], patient.as_str());

        // The RiskAssessment the Flag points at explains it and names the measurements.
        let assessment = flag["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["valueReference"]["reference"].as_str())
            .unwrap()
            .to_owned();
        let reply = server.client.get(&assessment).await.unwrap();
        let ra = expect_status(&reply, 200);
        assert_eq!(ra["method"]["coding"][0]["code"], "alerts");
        assert_eq!(
            ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"],
            "high"
        );
        assert_eq!(
            ra["basis"].as_array().unwrap().len(),
            3,
            "two weights and the heart failure: {ra:#}"
        );

        // A correcting measurement: the same Flag becomes inactive with an end.
        create(
            &server,
            quantity(&format!("Patient/{patient}"), "29463-7", &at(0), 80.3, "kg"),
        )
        .await;
        let path = format!("Flag?status=inactive&patient=Patient/{patient}");
        let ended = wait_for(&server, &path, |b| !resources(b, "Flag").is_empty()).await;
        let inactive = resources(&ended, "Flag")[0];
        assert_eq!(inactive["id"], flag["id"], "updated in place");
        assert!(inactive["period"]["end"].is_string());
        assert_eq!(inactive["period"]["start"], flag["period"]["start"]);
        let reply = server
            .client
            .get(&format!("Flag?status=active&patient=Patient/{patient}"))
            .await
            .unwrap();
        assert!(resources(&expect_status(&reply, 200), "Flag").is_empty());
    }
);

both_stores!(
    an_updated_or_deleted_measurement_changes_the_scores,
    |server| {
        // The scorer keeps the versions it parsed (decision 0062): each update and the delete
        // is a new version of the same Observation, which must count, not the one kept.
        let patient = create(&server, json!({"resourceType": "Patient"})).await;
        let subject = format!("Patient/{patient}");
        create(&server, condition(&subject, "88805009")).await;
        create(&server, quantity(&subject, "29463-7", &at(-50), 71.2, "kg")).await;
        let mut weight = quantity(&subject, "29463-7", &at(-3), 73.6, "kg");
        weight["id"] = json!(create(&server, weight.clone()).await);
        let active = format!("Flag?status=active&patient={subject}");
        let inactive = format!("Flag?status=inactive&patient={subject}");
        let raised = |b: &Value| {
            resources(b, "Flag")
                .iter()
                .any(|f| reason(f) == "weight-gain")
        };
        wait_for(&server, &active, raised).await;

        // Corrected to a gain of 0.7 kg: the Flag ends.
        weight["valueQuantity"]["value"] = json!(71.9);
        common::put(&server, weight.clone()).await;
        wait_for(&server, &inactive, raised).await;
        let reply = server.client.get(&active).await.unwrap();
        assert!(resources(&expect_status(&reply, 200), "Flag").is_empty());

        // Corrected again to a gain of 2.8 kg: raised again.
        weight["valueQuantity"]["value"] = json!(74.0);
        common::put(&server, weight.clone()).await;
        wait_for(&server, &active, raised).await;

        // Deleted: nothing left to alert on.
        let path = format!("Observation/{}", weight["id"].as_str().unwrap());
        let reply = server.client.delete(&path).await.unwrap();
        assert!(
            reply.status == 200 || reply.status == 204,
            "{}",
            reply.status
        );
        wait_for(&server, &inactive, raised).await;
        let found = wait_for(
            &server,
            &format!("RiskAssessment?patient={subject}&method=alerts"),
            |b| {
                resources(b, "RiskAssessment").first().is_some_and(|ra| {
                    ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] != "high"
                })
            },
        )
        .await;
        assert_eq!(resources(&found, "RiskAssessment").len(), 1);
    }
);

both_stores!(
    a_stored_emergency_admission_gets_lace_and_hospital_assessments,
    |server| {
        let patient = create(&server, json!({"resourceType": "Patient"})).await;
        let subject = format!("Patient/{patient}");
        // One transaction, so the first scoring already sees every input.
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry("urn:uuid:5a0c0e10-0000-4000-8000-000000000001", encounter(&subject, "EMER", &at(-24 * 16), &at(-24 * 16 + 2))),
            entry("urn:uuid:5a0c0e10-0000-4000-8000-000000000002", encounter(&subject, "IMP", &at(-24 * 16), &at(-24))),
            entry("urn:uuid:5a0c0e10-0000-4000-8000-000000000003", condition(&subject, "88805009")),
            entry("urn:uuid:5a0c0e10-0000-4000-8000-000000000004", quantity(&subject, "718-7", &at(-30), 10.5, "g/dL")),
        ]});
        let reply = server.client.post("", &bundle).await.unwrap();
        let response = expect_status(&reply, 200);
        let location = response["entry"][1]["response"]["location"]
            .as_str()
            .unwrap();
        let stay = location.split('/').nth_back(2).unwrap().to_owned();
        let path = format!("RiskAssessment?encounter=Encounter/{stay}");
        let found = wait_for(&server, &path, |b| {
            resources(b, "RiskAssessment").len() == 2
        })
        .await;
        let score = |model: &str| -> (f64, String) {
            let ra = resources(&found, "RiskAssessment")
                .into_iter()
                .find(|r| r["method"]["coding"][0]["code"] == model)
                .unwrap()
                .clone();
            let points = ra["extension"][0]["valueDecimal"].as_f64().unwrap();
            let risk = ra["prediction"][0]["qualitativeRisk"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned();
            (points, risk)
        };
        // LACE: 15 days 7, acute 3, Charlson 1 (heart failure) 1, no earlier ED visit 0.
        assert_eq!(score("lace"), (11.0, "high".to_owned()));
        // HOSPITAL: haemoglobin 1, emergent 1, ≥ 5 days 2.
        assert_eq!(score("hospital"), (4.0, "low".to_owned()));
        let flags = wait_for(
            &server,
            &format!("Flag?status=active&patient={subject}"),
            |b| {
                resources(b, "Flag")
                    .iter()
                    .any(|f| reason(f) == "lace-high")
            },
        )
        .await;
        assert!(resources(&flags, "Flag")
            .iter()
            .all(|f| reason(f) != "hospital-high"));
    }
);

async fn caseload_member(
    server: &TestServer,
    practitioner: &str,
    loinc: &str,
    value: f64,
    unit: &str,
) -> String {
    let patient = create(server, json!({"resourceType": "Patient"})).await;
    create(
        server,
        json!({"resourceType": "CareTeam", "status": "active",
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"member": {"reference": format!("Practitioner/{practitioner}")}}]}),
    )
    .await;
    create(
        server,
        quantity(&format!("Patient/{patient}"), loinc, &at(-1), value, unit),
    )
    .await;
    patient
}

both_stores!(
    the_worklist_ranks_a_practitioners_patients_by_flag_priority,
    |server| {
        let coach = create(&server, json!({"resourceType": "Practitioner"})).await;
        let other = create(&server, json!({"resourceType": "Practitioner"})).await;
        let calm = caseload_member(&server, &coach, "2708-6", 97.0, "%").await;
        let breathless = caseload_member(&server, &coach, "2708-6", 90.0, "%").await;
        let hypo = caseload_member(&server, &coach, "2339-0", 45.0, "mg/dL").await;
        let elsewhere = caseload_member(&server, &other, "2339-0", 40.0, "mg/dL").await;
        wait_for(&server, "Flag?status=active", |b| {
            resources(b, "Flag").len() == 3
        })
        .await;
        let reply = server
            .client
            .get(&format!("Practitioner/{coach}/$worklist"))
            .await
            .unwrap();
        let list = expect_status(&reply, 200);
        assert_eq!(list["type"], "searchset");
        let order: Vec<&str> = resources(&list, "Patient")
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            vec![hypo.as_str(), breathless.as_str(), calm.as_str()]
        );
        assert!(!order.contains(&elsewhere.as_str()));
        assert_eq!(list["total"], 3);
        let flags: Vec<&str> = resources(&list, "Flag").iter().map(|f| reason(f)).collect();
        assert_eq!(flags, vec!["glucose-very-low", "spo2-low"]);
        assert_eq!(resources(&list, "RiskAssessment").len(), 2);
        assert_eq!(list["entry"][0]["search"]["mode"], "match");
        assert_eq!(list["entry"][1]["search"]["mode"], "include");

        // The same order through plain search, most urgent first.
        let reply = server
            .client
            .get("Flag?status=active&_sort=-priority&_include=Flag:patient")
            .await
            .unwrap();
        let searched = expect_status(&reply, 200);
        let reasons: Vec<&str> = resources(&searched, "Flag")
            .iter()
            .map(|f| reason(f))
            .collect();
        assert_eq!(reasons[0], "glucose-very-low");
        assert_eq!(reasons[2], "spo2-low");
        assert_eq!(resources(&searched, "Patient").len(), 3);

        // The coach's example tool prints the same ranking.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/coach/worklist.py");
        let (coach_id, base) = (coach.clone(), server.base.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .args([script, &coach_id, &base])
                .output()
                .expect("python3 runs the example")
        })
        .await
        .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let first = printed
            .find(&format!("1. Patient/{hypo}"))
            .expect("hypo first");
        let second = printed
            .find(&format!("2. Patient/{breathless}"))
            .expect("breathless second");
        assert!(first < second, "{printed}");
        assert!(printed.contains("[ 95] Glucose < 3.0 mmol/L"), "{printed}");
        let reply = server
            .client
            .get("Practitioner/nobody/$worklist")
            .await
            .unwrap();
        expect_status(&reply, 404);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_is_capped_at_the_caseload() {
    let server = TestServer::start_configured(StoreKind::Sqlite, |s| s.scoring.caseload = 1)
        .await
        .unwrap();
    let coach = create(&server, json!({"resourceType": "Practitioner"})).await;
    caseload_member(&server, &coach, "2708-6", 97.0, "%").await;
    let urgent = caseload_member(&server, &coach, "2708-6", 88.0, "%").await;
    wait_for(&server, "Flag?status=active", |b| {
        resources(b, "Flag").len() == 1
    })
    .await;
    let reply = server
        .client
        .get(&format!("Practitioner/{coach}/$worklist"))
        .await
        .unwrap();
    let list = expect_status(&reply, 200);
    let patients = resources(&list, "Patient");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["id"], urgent.as_str());
}

both_stores!(flags_claiming_the_signaal_profile_must_conform, |server| {
    let patient = create(&server, json!({"resourceType": "Patient"})).await;
    let mut flag = json!({"resourceType": "Flag", "meta": {"profile": [FLAG_PROFILE]},
        "status": "active",
        "code": {"coding": [{"system": CS, "code": "not-a-reason"}]},
        "subject": {"reference": format!("Patient/{patient}")}});
    let reply = server.client.post("Flag", &flag).await.unwrap();
    let outcome = expect_status(&reply, 422);
    let text = outcome.to_string();
    for expected in [
        "Flag.category is required",
        "Flag.code must be a code",
        "Flag.period is required",
        "extension 'priority'",
    ] {
        assert!(text.contains(expected), "{expected}: {outcome:#}");
    }
    // A conforming one is stored, and the scorer leaves a Flag it did not write alone.
    let mut conforming = flag.clone();
    conforming["code"]["coding"][0]["code"] = json!("disengaged");
    conforming["category"] = json!([{"coding": [{"system": CS, "code": "disengagement"}]}]);
    conforming["period"] = json!({"start": at(-2)});
    conforming["extension"] = json!([
        {"url": "https://signaal.dev/fhir/StructureDefinition/flag-priority", "valueInteger": 30},
        {"url": "https://signaal.dev/fhir/StructureDefinition/flag-risk-assessment", "valueReference": {"reference": "RiskAssessment/elsewhere"}}
    ]);
    let own = create(&server, conforming).await;
    // A scoring input written after it: the scorer has run once its Charlson shows it.
    create(
        &server,
        condition(&format!("Patient/{patient}"), "88805009"),
    )
    .await;
    wait_for(
        &server,
        &format!("RiskAssessment?patient=Patient/{patient}&method=charlson"),
        |b| {
            resources(b, "RiskAssessment")
                .first()
                .is_some_and(|r| r["extension"][0]["valueDecimal"].as_f64() == Some(1.0))
        },
    )
    .await;
    let reply = server.client.get(&format!("Flag/{own}")).await.unwrap();
    assert_eq!(expect_status(&reply, 200)["status"], "active");
    // Without the profile claim it is an ordinary R4 Flag.
    flag.as_object_mut().unwrap().remove("meta");
    let reply = server.client.post("Flag", &flag).await.unwrap();
    expect_status(&reply, 201);
    // The CapabilityStatement names the profiles and the operation.
    let reply = server.client.get("metadata").await.unwrap();
    let cs = expect_status(&reply, 200);
    let resource = |t: &str| {
        cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(resource("Flag")["supportedProfile"][0], FLAG_PROFILE);
    assert!(resource("Practitioner")["operation"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["name"] == "worklist"));
    assert!(resource("Flag")["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "priority"));
});

both_stores!(
    score_all_rescores_every_patient_from_the_command_line,
    |server| {
        // The CLI scores beside the running server (its worker may score the same patients too:
        // scoring is idempotent); checked by what it reports and by the assessments it leaves.
        let mut patients = Vec::new();
        for _ in 0..3 {
            let patient = create(&server, json!({"resourceType": "Patient"})).await;
            create(
                &server,
                condition(&format!("Patient/{patient}"), "44054006"),
            )
            .await;
            patients.push(patient);
        }
        let output = signaal_cli(&["score", "--all", "--database", &server.database_url]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("scored 3 patients"), "{stderr}");
        assert!(stderr.contains("3/3"), "a progress bar: {stderr}");
        for patient in &patients {
            let reply = server
                .client
                .get(&format!(
                    "RiskAssessment?patient=Patient/{patient}&method=charlson"
                ))
                .await
                .unwrap();
            let found = expect_status(&reply, 200);
            let charlson = resources(&found, "RiskAssessment");
            assert_eq!(charlson.len(), 1);
            assert_eq!(
                charlson[0]["extension"][0]["valueDecimal"].as_f64(),
                Some(1.0)
            );
        }
        let output = signaal_cli(&["score", "--database", &server.database_url]).await;
        assert!(
            !output.status.success(),
            "score without --all says what to do"
        );
    }
);

/// Runs the `signaal` binary to completion.
async fn signaal_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_signaal"))
            .args(&args)
            .env("SIGNAAL_LOG", "warn")
            .output()
            .expect("signaal runs")
    })
    .await
    .unwrap()
}

/// `id → meta.versionId` of the patient's RiskAssessments and Flags.
async fn versions(server: &TestServer, patient: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rtype in ["RiskAssessment", "Flag"] {
        let reply = server
            .client
            .get(&format!("{rtype}?patient=Patient/{patient}&_count=100"))
            .await
            .unwrap();
        let found = expect_status(&reply, 200);
        for r in resources(&found, rtype) {
            out.push((
                format!("{rtype}/{}", r["id"].as_str().unwrap()),
                r["meta"]["versionId"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out.sort();
    out
}

both_stores!(
    re_scoring_unchanged_inputs_writes_no_new_version,
    |server| {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry("urn:uuid:3c1d9b7e-0000-4000-8000-000000000001", json!({"resourceType": "Patient"})),
            entry("urn:uuid:3c1d9b7e-0000-4000-8000-000000000002", condition("urn:uuid:3c1d9b7e-0000-4000-8000-000000000001", "44054006")),
            entry("urn:uuid:3c1d9b7e-0000-4000-8000-000000000003", quantity("urn:uuid:3c1d9b7e-0000-4000-8000-000000000001", "2708-6", &at(-1), 90.0, "%")),
        ]});
        let reply = server.client.post("", &bundle).await.unwrap();
        let response = expect_status(&reply, 200);
        let location = response["entry"][0]["response"]["location"]
            .as_str()
            .unwrap();
        let patient = location.split('/').nth_back(2).unwrap().to_owned();
        let subject = format!("Patient/{patient}");
        wait_for(
            &server,
            &format!("Flag?status=active&patient={subject}"),
            |b| resources(b, "Flag").len() == 1,
        )
        .await;
        let before = versions(&server, &patient).await;
        assert!(before.iter().any(|(k, _)| k.starts_with("Flag/")));

        // Scored again from the command line: same content, so no new version of anything.
        let output = signaal_cli(&["score", "--all", "--database", &server.database_url]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(versions(&server, &patient).await, before);
        let charlson = format!("RiskAssessment/{}", derived("charlson", &patient));
        let reply = server
            .client
            .get(&format!("{charlson}/_history"))
            .await
            .unwrap();
        let history = expect_status(&reply, 200);
        assert_eq!(
            history["entry"].as_array().map(Vec::len),
            Some(1),
            "{history:#}"
        );

        // An input write that changes no score queues the patient for the worker, which then
        // rewrites nothing either; changed data (after it) makes a new version of what it
        // changes, and only of that.
        common::put(
            &server,
            json!({"resourceType": "Patient", "id": patient, "name": [{"family": "Visser"}]}),
        )
        .await;
        create(&server, condition(&subject, "88805009")).await;
        let found = wait_for(&server, &format!("{charlson}/_history"), |b| {
            b["entry"].as_array().map(Vec::len) == Some(2)
        })
        .await;
        assert_eq!(
            found["entry"][0]["resource"]["extension"][0]["valueDecimal"].as_f64(),
            Some(2.0)
        );
        let after = versions(&server, &patient).await;
        let changed: Vec<&String> = after
            .iter()
            .zip(&before)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| &a.0)
            .collect();
        assert_eq!(changed, vec![&charlson], "{before:?} → {after:?}");
    }
);

/// The id the scorer derives for `prefix` and a patient (short ids: `prefix-id`).
fn derived(prefix: &str, id: &str) -> String {
    format!("{prefix}-{id}")
}

both_stores!(
    only_models_with_data_to_read_write_an_assessment,
    |server| {
        let alone = create(&server, json!({"resourceType": "Patient"})).await;
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry("urn:uuid:9e2f4c1a-0000-4000-8000-000000000001", json!({"resourceType": "Patient"})),
            entry("urn:uuid:9e2f4c1a-0000-4000-8000-000000000002", condition("urn:uuid:9e2f4c1a-0000-4000-8000-000000000001", "44054006")),
            entry("urn:uuid:9e2f4c1a-0000-4000-8000-000000000003", encounter("urn:uuid:9e2f4c1a-0000-4000-8000-000000000001", "AMB", &at(-48), &at(-47))),
        ]});
        let reply = server.client.post("", &bundle).await.unwrap();
        let response = expect_status(&reply, 200);
        let location = response["entry"][0]["response"]["location"]
            .as_str()
            .unwrap();
        let diagnosed = location.split('/').nth_back(2).unwrap().to_owned();
        // Once `score --all` returns, both have been scored.
        let output = signaal_cli(&["score", "--all", "--database", &server.database_url]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let models = |found: Value| -> Vec<String> {
            let mut m: Vec<String> = resources(&found, "RiskAssessment")
                .iter()
                .map(|r| {
                    r["method"]["coding"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            m.sort();
            m
        };
        let reply = server
            .client
            .get(&format!("RiskAssessment?patient=Patient/{alone}"))
            .await
            .unwrap();
        assert!(
            models(expect_status(&reply, 200)).is_empty(),
            "a patient without data gets no assessment"
        );
        // A diagnosis (Charlson) and an outpatient visit (utilisation 0: known, no unplanned
        // care); no discharge (LACE, HOSPITAL), home measurement or care plan.
        let reply = server
            .client
            .get(&format!("RiskAssessment?patient=Patient/{diagnosed}"))
            .await
            .unwrap();
        assert_eq!(
            models(expect_status(&reply, 200)),
            vec!["charlson", "utilisation"]
        );
    }
);

/// The worker's queue rounds over a real store, with a scorer that always fails for `bad`:
/// the failure is recorded with backoff, `good` is not held up, `bad` is parked after
/// `MAX_ATTEMPTS` and listed by `signaal score --failed`, and new data makes it due again. (No
/// input makes the real scorer fail on purpose, so the scorer is the test's.)
async fn a_failing_patient_is_retried_with_backoff_then_parked(kind: StoreKind) {
    use signaal::error::FhirError;
    use signaal::scoring::worker::{drain, Scored, MAX_ATTEMPTS};
    use signaal::store::Store;

    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    let t0 = 1_700_000_000_000;
    store.queue_patient("bad", t0).await.unwrap();
    store.queue_patient("good", t0).await.unwrap();
    let mut tried: Vec<String> = Vec::new();
    /// One round at `now`, noting whom it tried.
    async fn round(store: &dyn Store, now: i64, tried: &mut Vec<String>) -> usize {
        drain(store, now, |queued| {
            tried.push(queued.patient.clone());
            async move {
                match queued.patient.as_str() {
                    "bad" => Err(FhirError::Internal("the model broke".into())),
                    _ => Ok(Scored::Due(None)),
                }
            }
        })
        .await
        .unwrap()
    }
    assert_eq!(round(&*store, t0, &mut tried).await, 2);
    assert_eq!(tried, vec!["bad", "good"]);
    let failures = store.scoring_failures().await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (failures[0].patient.as_str(), failures[0].attempts),
        ("bad", 1)
    );
    assert_eq!(
        failures[0].last_error.as_deref(),
        Some("Internal error: the model broke")
    );
    let mut next = failures[0].next_attempt_at.expect("a retry");
    assert!(next > t0);
    // Not due before its time (and `good` is done).
    assert!(store.queued(10, next - 1).await.unwrap().is_empty());
    // Each retry waits longer, until it is parked.
    let mut waits = vec![next - t0];
    for attempts in 2..=MAX_ATTEMPTS {
        tried.clear();
        assert_eq!(round(&*store, next, &mut tried).await, 1);
        assert_eq!(tried, vec!["bad"]);
        let f = store.scoring_failures().await.unwrap().remove(0);
        assert_eq!(f.attempts, attempts);
        match f.next_attempt_at {
            Some(at) => {
                waits.push(at - next);
                next = at;
            }
            None => assert_eq!(attempts, MAX_ATTEMPTS, "parked at the last attempt"),
        }
    }
    assert!(waits.windows(2).all(|w| w[0] < w[1]), "backoff: {waits:?}");
    assert!(
        store.queued(10, i64::MAX).await.unwrap().is_empty(),
        "parked"
    );

    // Visible to the operator.
    let output = signaal_cli(&["score", "--failed", "--database", &url]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains(&format!(
            "Patient/bad\t{MAX_ATTEMPTS} failed attempt(s)\tparked"
        )) && stdout.contains("the model broke")
            && !stdout.contains("good"),
        "{stdout}"
    );

    // New data makes a parked patient due again; once scored it leaves the queue.
    store.queue_patient("bad", next + 1).await.unwrap();
    let due = store.queued(10, next + 1).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, MAX_ATTEMPTS);
    assert_eq!(
        drain(&*store, next + 1, |_| async { Ok(Scored::Due(None)) })
            .await
            .unwrap(),
        1
    );
    assert!(store.scoring_failures().await.unwrap().is_empty());
    assert!(store.queued(10, i64::MAX).await.unwrap().is_empty());
    store.close().await;
}

mod a_failing_patient_is_retried_with_backoff_then_parked {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_failing_patient_is_retried_with_backoff_then_parked(StoreKind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_failing_patient_is_retried_with_backoff_then_parked(StoreKind::Postgres).await;
    }
}

/// The worker settles a claimed patient's queue entry once it is scored — in the transaction
/// of its scores, or, when they did not change, with the round's other unchanged patients: a
/// patient scored from what it had leaves the queue, while one queued again during its scoring
/// (new data the scorer may not have read) stays queued, free for the next round to claim at
/// once, rather than held by the finished claim.
async fn a_patient_queued_again_while_scored_stays_queued(kind: StoreKind) {
    use signaal::scoring::run::{score_queued, Scoring};
    use signaal::scoring::worker::drain;
    use signaal::search::definitions::Registry;
    use std::sync::Arc;

    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    let t0 = 1_700_000_000_000;
    store.queue_patient("p", t0).await.unwrap();
    store.queue_patient("q", t0).await.unwrap();
    let scoring = Arc::new(Scoring::default());
    let terms = Arc::new(scoring.terms(&*store).await.unwrap());
    // Scores each claimed patient as the worker does; with `again`, p gets new data while
    // it is being scored.
    let round = |now: i64, again: bool| {
        let (store, scoring, terms) = (store.clone(), scoring.clone(), terms.clone());
        let drained = store.clone();
        async move {
            drain(&*drained, now, move |queued| {
                let (store, scoring, terms) = (store.clone(), scoring.clone(), terms.clone());
                async move {
                    if again && queued.patient == "p" {
                        store.queue_patient("p", now).await?;
                    }
                    let outcome = score_queued(
                        &*store,
                        Registry::official(),
                        &scoring,
                        &terms,
                        &queued,
                        now + 1,
                    )
                    .await?;
                    assert!(!outcome.settled, "nothing to write: {outcome:?}");
                    Ok(outcome.scored())
                }
            })
            .await
        }
    };
    assert_eq!(round(t0 + 1, true).await.unwrap(), 2);
    let left: Vec<String> = store
        .queued(10, i64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.patient)
        .collect();
    assert_eq!(left, vec!["p"]);
    assert_eq!(
        round(t0 + 3, false).await.unwrap(),
        1,
        "p claimable at once"
    );
    assert!(store.queued(10, i64::MAX).await.unwrap().is_empty());
    store.close().await;
}

mod a_patient_queued_again_while_scored_stays_queued {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_patient_queued_again_while_scored_stays_queued(StoreKind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_patient_queued_again_while_scored_stays_queued(StoreKind::Postgres).await;
    }
}

both_stores!(an_alerts_assessment_at_zero_says_why, |server| {
    let patient = create(&server, json!({"resourceType": "Patient"})).await;
    let subject = format!("Patient/{patient}");
    // One SpO2 reading, ten days old: older than the rules look.
    let when = at(-240);
    create(&server, quantity(&subject, "59408-5", &when, 97.0, "%")).await;
    let path = format!("RiskAssessment?patient={subject}&method=alerts");
    let bundle = wait_for(&server, &path, |b| {
        !resources(b, "RiskAssessment").is_empty()
    })
    .await;
    let assessment = resources(&bundle, "RiskAssessment")[0];
    let note = assessment["note"][0]["text"].as_str().unwrap();
    assert_eq!(
        note,
        format!(
            "Score 0: 0 point(s): no home measurements in the last 7 days; newest {}",
            &when[..10]
        )
    );
});
