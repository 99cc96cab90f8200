//! `Patient/[id]/$everything` (R4 operation Patient-everything, issue 15), through HTTP on both
//! stores.

mod common;

use common::auth::{observation, two_patients};
use common::{create, expect_status, put};
use serde_json::{json, Value};

/// `Type/id` of every entry of every page, following `next` links from `path`.
async fn all_pages(server: &common::TestServer, path: &str) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut url = path.to_owned();
    loop {
        let bundle = expect_status(&server.client.get(&url).await.unwrap(), 200);
        assert_eq!(bundle["type"], "searchset");
        pages += 1;
        keys.extend(keys_of(&bundle));
        let next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(next) => url = next,
            None => return (keys, pages),
        }
    }
}

fn keys_of(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

async fn everything(server: &common::TestServer, path: &str) -> Vec<String> {
    let mut keys = keys_of(&expect_status(&server.client.get(path).await.unwrap(), 200));
    keys.sort();
    keys
}

fn obs(patient: &str, when: &str, performer: Option<&str>) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
    });
    if let Some(p) = performer {
        o["performer"] = json!([{"reference": p}]);
    }
    o
}

/// What the tests look at: the server's own AuditEvents and Provenances are in the
/// compartment too, written at moments a test does not control.
const CLINICAL: &str = "_type=Patient,Observation,Organization,Practitioner";

/// Patient `ev-p` (managed by Organization `ev-org`) with two Observations (2019 by
/// Practitioner `ev-doc`, 2023), and Patient `ev-q` with one of its own.
async fn record(server: &common::TestServer) -> (String, String, String) {
    put(
        server,
        json!({"resourceType": "Organization", "id": "ev-org", "name": "Praktijk Noord"}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "Practitioner", "id": "ev-doc"}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "Organization", "id": "ev-unrelated", "name": "Elders"}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "Patient", "id": "ev-p",
        "managingOrganization": {"reference": "Organization/ev-org"}}),
    )
    .await;
    put(server, json!({"resourceType": "Patient", "id": "ev-q"})).await;
    let old = create(
        server,
        &obs("ev-p", "2019-05-01T08:00:00Z", Some("Practitioner/ev-doc")),
    )
    .await;
    let new = create(server, &obs("ev-p", "2023-07-10", None)).await;
    let other = create(
        server,
        &obs("ev-q", "2023-07-10", Some("Practitioner/ev-doc")),
    )
    .await;
    (old, new, other)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

both_stores!(
    holds_the_patient_its_compartment_and_what_they_refer_to,
    |server| {
        let (old, new, other) = record(&server).await;
        let got = everything(&server, &format!("Patient/ev-p/$everything?{CLINICAL}")).await;
        assert_eq!(
            got,
            sorted(vec![
                format!("Observation/{old}"),
                format!("Observation/{new}"),
                "Organization/ev-org".into(),
                "Patient/ev-p".into(),
                "Practitioner/ev-doc".into(),
            ])
        );
        assert!(!got.contains(&format!("Observation/{other}")));
        let bundle = expect_status(
            &server
                .client
                .get(&format!("Patient/ev-p/$everything?{CLINICAL}"))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(bundle["total"], 5);
        // The server's Provenance of the Patient's creation is in its compartment too.
        let provenance = everything(&server, "Patient/ev-p/$everything?_type=Provenance").await;
        assert!(!provenance.is_empty());
    }
);

both_stores!(type_limits_the_resource_types, |server| {
    let (old, new, _) = record(&server).await;
    assert_eq!(
        everything(
            &server,
            "Patient/ev-p/$everything?_type=Observation,Practitioner"
        )
        .await,
        sorted(vec![
            format!("Observation/{old}"),
            format!("Observation/{new}"),
            "Practitioner/ev-doc".into(),
        ])
    );
});

both_stores!(start_and_end_select_by_care_date, |server| {
    let (old, new, _) = record(&server).await;
    let after = everything(
        &server,
        "Patient/ev-p/$everything?start=2020-01-01&_type=Observation,Patient",
    )
    .await;
    assert_eq!(
        after,
        sorted(vec![format!("Observation/{new}"), "Patient/ev-p".into()])
    );
    let before = everything(
        &server,
        "Patient/ev-p/$everything?end=2019-05&_type=Observation",
    )
    .await;
    assert_eq!(before, vec![format!("Observation/{old}")]);
    let between = everything(
        &server,
        "Patient/ev-p/$everything?start=2019-06-01&end=2023-06-30&_type=Observation",
    )
    .await;
    assert!(between.is_empty(), "{between:?}");
});

both_stores!(since_selects_by_last_updated, |server| {
    record(&server).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let later = create(&server, &obs("ev-p", "2024-01-02", None)).await;
    let path = format!(
        "Patient/ev-p/$everything?_since={}",
        since.replace('+', "%2B")
    );
    assert_eq!(
        everything(&server, &path).await,
        vec![format!("Observation/{later}")]
    );
});

both_stores!(count_pages_through_everything_once, |server| {
    record(&server).await;
    for day in 1..=6 {
        create(&server, &obs("ev-p", &format!("2022-03-0{day}"), None)).await;
    }
    let (whole, _) = all_pages(&server, &format!("Patient/ev-p/$everything?{CLINICAL}")).await;
    assert_eq!(whole.len(), 11);
    let (paged, pages) = all_pages(
        &server,
        &format!("Patient/ev-p/$everything?{CLINICAL}&_count=3"),
    )
    .await;
    assert_eq!(pages, 4);
    assert_eq!(
        paged, whole,
        "the same resources, once each, in the same order"
    );
});

both_stores!(a_page_link_stays_correct_while_others_write, |server| {
    record(&server).await;
    let first = expect_status(
        &server
            .client
            .get(&format!("Patient/ev-p/$everything?{CLINICAL}&_count=2"))
            .await
            .unwrap(),
        200,
    );
    let shown = keys_of(&first);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // Written after the first page, sorting after it: on a later page.
    let mut late = obs("ev-p", "2024-02-02", None);
    late["id"] = json!("zzz-late");
    put(&server, late).await;
    let (rest, _) = all_pages(&server, &next).await;
    for key in &shown {
        assert!(!rest.contains(key), "{key} shown twice");
    }
    assert!(rest.contains(&"Observation/zzz-late".to_owned()));
    assert_eq!(shown.len() + rest.len(), 6);
});

both_stores!(unknown_patients_and_parameters_are_refused, |server| {
    record(&server).await;
    expect_status(
        &server
            .client
            .get("Patient/ev-nobody/$everything")
            .await
            .unwrap(),
        404,
    );
    let reply = server
        .client
        .get("Patient/ev-p/$everything?code=x")
        .await
        .unwrap();
    let outcome = expect_status(&reply, 400);
    assert!(outcome.to_string().contains("code"));
    expect_status(
        &server
            .client
            .get("Patient/ev-p/$everything?_type=Nonsense")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("Patient/ev-p/$everything?start=yesterday")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .post("Patient/ev-p/$everything", &json!({}))
            .await
            .unwrap(),
        405,
    );
});

both_stores!(the_capability_statement_names_the_operation, |server| {
    let cs = expect_status(&server.client.get("metadata").await.unwrap(), 200);
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(patient["operation"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["name"] == "everything"
            && o["definition"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"));
});

secured!(a_patient_bound_token_gets_only_its_own_patient, |s| {
    let (pgo, admin, oa, ob) = two_patients(&s).await;
    let mine = expect_status(
        &s.call(
            &pgo,
            "GET",
            "Patient/a/$everything?_type=Patient,Observation",
            None,
        )
        .await,
        200,
    );
    assert_eq!(
        sorted(keys_of(&mine)),
        sorted(vec![format!("Observation/{oa}"), "Patient/a".into()])
    );
    expect_status(
        &s.call(&pgo, "GET", "Patient/b/$everything", None).await,
        404,
    );
    // A client with system scopes for Patient only sees no Observations.
    s.register("patients-only", "system/Patient.rs", None).await;
    let narrow = s.token("patients-only", "system/Patient.rs").await;
    let theirs = expect_status(
        &s.call(&narrow, "GET", "Patient/b/$everything", None).await,
        200,
    );
    assert_eq!(keys_of(&theirs), vec!["Patient/b".to_owned()]);
    let all = expect_status(
        &s.call(
            &admin,
            "GET",
            "Patient/b/$everything?_type=Observation",
            None,
        )
        .await,
        200,
    );
    assert_eq!(keys_of(&all), vec![format!("Observation/{ob}")]);
    let _ = observation;
});

both_stores!(
    the_type_level_pages_through_every_patients_record,
    |server| {
        let (old, new, other) = record(&server).await;
        let (keys, pages) =
            all_pages(&server, &format!("Patient/$everything?{CLINICAL}&_count=2")).await;
        assert!(pages >= 3, "{pages} pages");
        // Every patient's record is there; a resource is never twice on one page.
        for key in [
            "Patient/ev-p".to_owned(),
            "Patient/ev-q".to_owned(),
            "Organization/ev-org".to_owned(),
            "Practitioner/ev-doc".to_owned(),
            format!("Observation/{old}"),
            format!("Observation/{new}"),
            format!("Observation/{other}"),
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(!keys.contains(&"Organization/ev-unrelated".to_owned()));
        // Each patient's own resources once; the practitioner both refer to once per patient.
        let doc = keys.iter().filter(|k| *k == "Practitioner/ev-doc").count();
        assert!((1..=2).contains(&doc), "{doc}");
        assert_eq!(
            keys.iter()
                .filter(|k| k.starts_with("Observation/"))
                .count(),
            3
        );
    }
);

both_stores!(
    the_type_level_takes_the_instance_levels_parameters,
    |server| {
        let (_, _, _) = record(&server).await;
        let keys = everything(&server, "Patient/$everything?_type=Patient").await;
        assert_eq!(keys, vec!["Patient/ev-p", "Patient/ev-q"]);
        expect_status(
            &server
                .client
                .get("Patient/$everything?frobnicate=1")
                .await
                .unwrap(),
            400,
        );
        expect_status(
            &server
                .client
                .get("Patient/$everything?_cursor_after=x:Patient/ev-p")
                .await
                .unwrap(),
            400,
        );
    }
);

secured!(the_type_level_holds_the_patients_a_token_may_see, |s| {
    let (pgo, admin, oa, ob) = two_patients(&s).await;
    let mine = expect_status(
        &s.call(
            &pgo,
            "GET",
            "Patient/$everything?_type=Patient,Observation",
            None,
        )
        .await,
        200,
    );
    assert_eq!(
        sorted(keys_of(&mine)),
        sorted(vec![format!("Observation/{oa}"), "Patient/a".into()])
    );
    let all = expect_status(
        &s.call(
            &admin,
            "GET",
            "Patient/$everything?_type=Patient,Observation",
            None,
        )
        .await,
        200,
    );
    assert_eq!(
        sorted(keys_of(&all)),
        sorted(vec![
            format!("Observation/{oa}"),
            format!("Observation/{ob}"),
            "Patient/a".into(),
            "Patient/b".into()
        ])
    );
});
