//! What a search returns (search page, "Modifying Search Results"): `_summary=true|text|false`
//! (also on read), `_total`, `_contained` and `_containedType`, on both stores.

mod common;

use common::{expect_status, put, TestServer};
use serde_json::{json, Value};

async fn bundle(server: &TestServer, query: &str) -> Value {
    expect_status(&server.client.get(query).await.unwrap(), 200)
}

/// The first match of a search.
async fn first_match(server: &TestServer, query: &str) -> Value {
    let bundle = bundle(server, query).await;
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "match")
        .unwrap_or_else(|| panic!("no match: {bundle}"))["resource"]
        .clone()
}

fn is_subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["code"] == "SUBSETTED")
}

async fn fixtures(server: &TestServer) {
    put(
        server,
        json!({
            "resourceType": "Observation", "id": "bp", "status": "final",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">BP 120/80</div>"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "issued": "2024-03-01T10:00:00Z",
            "note": [{"text": "measured sitting"}],
            "component": [{
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mmHg"},
                "interpretation": [{"text": "normal"}]
            }]
        }),
    )
    .await;
    for id in ["p1", "p2", "p3"] {
        put(server, json!({"resourceType": "Patient", "id": id, "gender": "female", "photo": [{"title": "portrait"}]})).await;
    }
}

both_stores!(
    summary_true_returns_the_summary_elements_of_the_definition,
    |server| {
        fixtures(&server).await;
        let obs = first_match(&server, "Observation?_summary=true").await;
        // Observation.status, code, issued, component(.code, .value[x]) are summary elements;
        // text, note and component.interpretation are not.
        assert_eq!(obs["status"], "final");
        assert_eq!(obs["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(obs["issued"], "2024-03-01T10:00:00Z");
        assert!(
            obs.get("text").is_none() && obs.get("note").is_none(),
            "{obs}"
        );
        assert_eq!(obs["component"][0]["valueQuantity"]["value"], 120);
        assert!(obs["component"][0].get("interpretation").is_none());
        assert_eq!(obs["id"], "bp");
        assert!(obs["meta"]["versionId"].is_string());
        assert!(is_subsetted(&obs));
        let patient = first_match(&server, "Patient?_summary=true").await;
        assert_eq!(patient["gender"], "female");
        assert!(patient.get("photo").is_none());
    }
);

both_stores!(
    summary_text_returns_the_narrative_and_mandatory_elements,
    |server| {
        fixtures(&server).await;
        let obs = first_match(&server, "Observation?_summary=text").await;
        assert!(obs["text"]["div"].as_str().unwrap().contains("BP 120/80"));
        // Mandatory: status and code; not mandatory: issued, component.
        assert_eq!(obs["status"], "final");
        assert!(obs["code"].is_object());
        assert!(obs.get("issued").is_none() && obs.get("component").is_none());
        assert!(is_subsetted(&obs));
    }
);

both_stores!(summary_false_returns_the_whole_resource, |server| {
    fixtures(&server).await;
    let obs = first_match(&server, "Observation?_summary=false").await;
    assert!(obs["note"].is_array() && obs["text"].is_object());
    assert!(!is_subsetted(&obs));
});

both_stores!(summary_applies_to_read, |server| {
    fixtures(&server).await;
    let obs = expect_status(
        &server
            .client
            .get("Observation/bp?_summary=true")
            .await
            .unwrap(),
        200,
    );
    assert!(obs.get("note").is_none() && obs["status"] == "final");
    assert!(is_subsetted(&obs));
    let text = expect_status(
        &server
            .client
            .get("Observation/bp?_summary=text")
            .await
            .unwrap(),
        200,
    );
    assert!(text["text"].is_object() && text.get("issued").is_none());
    expect_status(
        &server
            .client
            .get("Observation/bp?_summary=count")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("Observation/bp?_summary=maybe")
            .await
            .unwrap(),
        400,
    );
});

both_stores!(total_none_leaves_the_total_out, |server| {
    fixtures(&server).await;
    let b = bundle(&server, "Patient?_total=none").await;
    assert!(b.get("total").is_none(), "{b}");
    assert_eq!(b["entry"].as_array().unwrap().len(), 3);
});

both_stores!(
    total_accurate_and_estimate_count_every_match_across_pages,
    |server| {
        fixtures(&server).await;
        for query in [
            "Patient?_total=accurate&_count=2",
            "Patient?_total=estimate&_count=2",
            "Patient?_total=accurate",
            "Patient?_count=1",
        ] {
            assert_eq!(bundle(&server, query).await["total"], 3, "{query}");
        }
        let b = bundle(&server, "Patient?_total=accurate&gender=male").await;
        assert_eq!(b["total"], 0);
        expect_status(
            &server.client.get("Patient?_total=some").await.unwrap(),
            400,
        );
    }
);

both_stores!(
    contained_false_is_the_default_and_bad_contained_values_are_refused,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            bundle(&server, "Patient?_contained=false&_containedType=container").await["total"],
            3
        );
        // Searching contained resources: tests/search_contained.rs.
        for query in ["Patient?_contained=maybe", "Patient?_containedType=other"] {
            let reply = server.client.get(query).await.unwrap();
            let outcome = expect_status(&reply, 400);
            assert_eq!(outcome["resourceType"], "OperationOutcome", "{query}");
        }
    }
);
