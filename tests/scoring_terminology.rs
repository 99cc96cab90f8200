//! The risk models' terminology through the HTTP API, on both stores: a Condition whose code no
//! value set decides is said to be not recognised (in the RiskAssessment and in
//! `$scoring-coverage`), a stored ValueSet or SNOMED CT CodeSystem changes a score from the
//! next scoring on, and a measurement stamped in the future keeps its patient queued for then.

mod common;

use std::time::Duration;

use common::{expect_status, StoreKind, TestServer};
use serde_json::{json, Value};

const SNOMED: &str = "http://snomed.info/sct";
const LOCAL: &str = "https://hospital.example/fhir/CodeSystem/diagnose";

fn condition(subject: &str, system: &str, code: &str, display: &str) -> Value {
    json!({"resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": subject}})
}

async fn create(server: &TestServer, resource: Value) -> String {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    let reply = server.client.post(&rtype, &resource).await.unwrap();
    let body = expect_status(&reply, 201);
    body["id"].as_str().unwrap().to_owned()
}

async fn patient(server: &TestServer) -> String {
    create(
        server,
        json!({"resourceType": "Patient", "name": [{"family": "Visser"}]}),
    )
    .await
}

/// Polls the patient's Charlson RiskAssessment until `done` holds, for at most a minute.
async fn charlson(server: &TestServer, patient: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("RiskAssessment/charlson-{patient}");
    let mut last = Value::Null;
    for _ in 0..600 {
        let reply = server.client.get(&path).await.unwrap();
        if reply.status == 200 {
            last = reply.json();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there; last answer: {last:#}");
}

fn score(ra: &Value) -> f64 {
    ra["extension"][0]["valueDecimal"].as_f64().unwrap_or(-1.0)
}

fn lines(ra: &Value) -> Vec<String> {
    ra["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("risk-score-item"))
        })
        .filter_map(|e| {
            e["extension"]
                .as_array()?
                .iter()
                .find(|p| p["url"] == "why")?["valueString"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

both_stores!(
    an_unknown_condition_code_is_said_and_listed_by_scoring_coverage,
    |server| {
        let p = patient(&server).await;
        let subject = format!("Patient/{p}");
        let unknown = create(&server, condition(&subject, LOCAL, "HF-4711", "hartfalen")).await;
        create(
            &server,
            condition(
                &subject,
                "http://hl7.org/fhir/sid/icd-10",
                "I50.9",
                "Heart failure",
            ),
        )
        .await;
        let ra = charlson(&server, &p, |ra| score(ra) == 1.0 && lines(ra).len() == 2).await;
        let expected = format!("1 condition(s) not recognised: {LOCAL}|HF-4711 (hartfalen)");
        assert!(lines(&ra).contains(&expected), "{ra:#}");
        let note = ra["note"][0]["text"].as_str().unwrap();
        assert!(note.contains(&expected), "{note}");
        let item = ra["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e.to_string().contains("not recognised"))
            .unwrap();
        assert!(item.to_string().contains(&format!("Condition/{unknown}")));

        let reply = server.client.get("$scoring-coverage").await.unwrap();
        let coverage = expect_status(&reply, 200);
        assert_eq!(coverage["resourceType"], "Parameters");
        let row = coverage["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"][1]["valueCoding"]["code"] == "HF-4711")
            .unwrap_or_else(|| panic!("not listed: {coverage:#}"));
        assert_eq!(row["part"][0]["valueString"], "Condition.code");
        assert_eq!(row["part"][1]["valueCoding"]["system"], LOCAL);
        assert_eq!(row["part"][2]["valueInteger"], 1);
        assert_eq!(
            row["part"][3]["valueReference"]["reference"],
            subject.as_str()
        );
        assert!(
            !coverage.to_string().contains("\"I50.9\""),
            "ICD-10 is decided by Quan's ranges"
        );
        let reply = server
            .client
            .post("$scoring-coverage", &json!({}))
            .await
            .unwrap();
        expect_status(&reply, 405);
        let reply = server.client.get("metadata").await.unwrap();
        let cs = expect_status(&reply, 200);
        assert!(cs["rest"][0]["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "scoring-coverage"));
    }
);

both_stores!(
    a_stored_value_set_with_a_higher_version_changes_the_score,
    |server| {
        let p = patient(&server).await;
        let subject = format!("Patient/{p}");
        create(&server, condition(&subject, LOCAL, "HF-4711", "hartfalen")).await;
        let ra = charlson(&server, &p, |ra| ra["note"].is_array()).await;
        assert_eq!(score(&ra), 0.0);

        // The hospital's thesaurus code joins congestive heart failure: the built-in value set,
        // one more include, a higher version.
        let mut vs: Value = serde_json::from_str(include_str!(
            "../profiles/valueset-scoring-charlson-congestive-heart-failure.json"
        ))
        .unwrap();
        vs["version"] = json!("2.1.0");
        vs["compose"]["include"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": LOCAL, "concept": [{"code": "HF-4711"}]}));
        let reply = server
            .client
            .put("ValueSet/site-chf", &{
                let mut v = vs.clone();
                v["id"] = json!("site-chf");
                v
            })
            .await
            .unwrap();
        assert!(
            reply.status == 201 || reply.status == 200,
            "{}",
            reply.status
        );
        // The next scoring (any new input queues the patient) uses it.
        create(
            &server,
            condition(&subject, "http://hl7.org/fhir/sid/icd-10", "J06.9", "URTI"),
        )
        .await;
        let ra = charlson(&server, &p, |ra| score(ra) == 1.0).await;
        assert!(
            lines(&ra).iter().any(|l| l == "Congestive heart failure"),
            "{ra:#}"
        );
        assert!(!ra.to_string().contains("not recognised"), "{ra:#}");

        // A lower version is ignored.
        vs["version"] = json!("1.0.0");
        vs["id"] = json!("site-chf");
        let reply = server.client.put("ValueSet/site-chf", &vs).await.unwrap();
        expect_status(&reply, 200);
        create(
            &server,
            condition(
                &subject,
                "http://hl7.org/fhir/sid/icd-10",
                "J20.9",
                "Bronchitis",
            ),
        )
        .await;
        charlson(&server, &p, |ra| score(ra) == 0.0).await;
    }
);

both_stores!(
    a_stored_snomed_fragment_places_codes_below_the_heads,
    |server| {
        let p = patient(&server).await;
        let subject = format!("Patient/{p}");
        // Adenocarcinoma of lung: in no list of the project, below malignant neoplastic disease.
        create(
            &server,
            condition(&subject, SNOMED, "254626006", "Adenocarcinoma of lung"),
        )
        .await;
        let ra = charlson(&server, &p, |ra| ra["note"].is_array()).await;
        assert_eq!(score(&ra), 0.0);
        assert!(ra.to_string().contains("not recognised"), "{ra:#}");

        let fragment: Value =
            serde_json::from_str(include_str!("fixtures/snomed/fragment.json")).unwrap();
        let reply = server
            .client
            .put("CodeSystem/snomed-fragment", &fragment)
            .await
            .unwrap();
        assert!(
            reply.status == 201 || reply.status == 200,
            "{}",
            reply.status
        );
        create(
            &server,
            condition(
                &subject,
                SNOMED,
                "254701007",
                "Basal cell carcinoma of skin",
            ),
        )
        .await;
        let ra = charlson(&server, &p, |ra| score(ra) == 2.0).await;
        assert!(!ra.to_string().contains("not recognised"), "{ra:#}");
        assert_eq!(
            lines(&ra).len(),
            1,
            "basal cell carcinoma of skin does not count: {ra:#}"
        );
    }
);

/// A scored patient with a measurement stamped beyond now + the skew stays queued for then
/// (the worker's `drain` reschedules it), and new data makes it due at once.
async fn a_future_measurement_keeps_its_patient_queued_for_then(kind: StoreKind) {
    use signaal::scoring::worker::{drain, Scored};

    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    let t0 = 1_700_000_000_000;
    let later = t0 + 3_600_000;
    store.queue_patient("p", t0).await.unwrap();
    assert_eq!(
        drain(&*store, t0, |_| async move { Ok(Scored::Due(Some(later))) })
            .await
            .unwrap(),
        1
    );
    assert!(
        store.queued(10, t0 + 1).await.unwrap().is_empty(),
        "not due before then"
    );
    let due = store.queued(10, later).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 0);
    assert!(
        store.scoring_failures().await.unwrap().is_empty(),
        "not a failure"
    );
    // New data before then: due now.
    store.queue_patient("p", t0 + 10).await.unwrap();
    assert_eq!(store.queued(10, t0 + 10).await.unwrap().len(), 1);
    assert_eq!(
        drain(&*store, t0 + 10, |_| async { Ok(Scored::Due(None)) })
            .await
            .unwrap(),
        1
    );
    assert!(store.queued(10, i64::MAX).await.unwrap().is_empty());
    store.close().await;
}

mod a_future_measurement_keeps_its_patient_queued_for_then {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_future_measurement_keeps_its_patient_queued_for_then(StoreKind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_future_measurement_keeps_its_patient_queued_for_then(StoreKind::Postgres).await;
    }
}
