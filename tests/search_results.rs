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

// ---- `_summary` and `_elements` on included resources ----------------------------------

/// An Observation of patient p1 (of `fixtures`), with a narrative and a non-summary `note`.
async fn observation_of_p1(server: &TestServer) {
    put(
        server,
        json!({
            "resourceType": "Observation", "id": "w1", "status": "final",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">72 kg</div>"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/p1"},
            "note": [{"text": "after breakfast"}],
            "valueQuantity": {"value": 72, "unit": "kg"}
        }),
    )
    .await;
}

/// The resources of a search's entries with the given mode.
async fn entries(server: &TestServer, query: &str, mode: &str) -> Vec<Value> {
    bundle(server, query).await["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| e["resource"].clone())
        .collect()
}

both_stores!(summary_applies_to_included_resources_too, |server| {
    fixtures(&server).await;
    observation_of_p1(&server).await;
    let included = entries(
        &server,
        "Observation?_id=w1&_summary=true&_include=Observation:subject",
        "include",
    )
    .await;
    assert_eq!(included.len(), 1, "{included:?}");
    let patient = &included[0];
    // Patient.gender is a summary element, Patient.photo is not.
    assert_eq!(patient["gender"], "female");
    assert!(patient.get("photo").is_none(), "{patient}");
    assert!(is_subsetted(patient), "{patient}");

    let included = entries(
        &server,
        "Patient?_id=p1&_summary=data&_revinclude=Observation:subject",
        "include",
    )
    .await;
    assert_eq!(included.len(), 1, "{included:?}");
    let obs = &included[0];
    assert!(obs.get("text").is_none(), "{obs}");
    assert_eq!(obs["note"][0]["text"], "after breakfast");
    assert!(is_subsetted(obs), "{obs}");
});

both_stores!(summary_text_cannot_be_mixed_with_includes, |server| {
    fixtures(&server).await;
    for query in [
        "Observation?_summary=text&_include=Observation:subject",
        "Patient?_summary=text&_revinclude=Observation:subject",
    ] {
        let outcome = expect_status(&server.client.get(query).await.unwrap(), 400);
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("_summary=text"), "{query}: {text}");
    }
});

both_stores!(
    elements_prefixed_with_a_type_subset_every_entry_of_that_type,
    |server| {
        fixtures(&server).await;
        observation_of_p1(&server).await;
        let query =
            "Observation?_id=w1&_elements=status,Patient.gender&_include=Observation:subject";
        let matches = entries(&server, query, "match").await;
        let obs = &matches[0];
        assert_eq!(obs["status"], "final");
        assert!(
            obs.get("code").is_none() && obs.get("note").is_none(),
            "{obs}"
        );
        assert!(is_subsetted(obs));
        let included = entries(&server, query, "include").await;
        let patient = &included[0];
        assert_eq!(patient["gender"], "female");
        assert_eq!(patient["id"], "p1");
        assert!(patient.get("photo").is_none(), "{patient}");
        assert!(is_subsetted(patient), "{patient}");

        // A type prefix applies to the matches of that type as well.
        let matches = entries(&server, "Patient?_id=p1&_elements=Patient.gender", "match").await;
        assert!(matches[0].get("photo").is_none() && is_subsetted(&matches[0]));
    }
);

both_stores!(plain_element_names_subset_only_the_matches, |server| {
    fixtures(&server).await;
    observation_of_p1(&server).await;
    let query = "Observation?_id=w1&_elements=status&_include=Observation:subject";
    let matches = entries(&server, query, "match").await;
    assert!(matches[0].get("code").is_none() && is_subsetted(&matches[0]));
    let included = entries(&server, query, "include").await;
    let patient = &included[0];
    assert_eq!(patient["photo"][0]["title"], "portrait");
    assert!(!is_subsetted(patient), "{patient}");
    // Names of another type only leave the matches whole.
    let matches = entries(
        &server,
        "Observation?_id=w1&_elements=Patient.gender",
        "match",
    )
    .await;
    assert_eq!(matches[0]["note"][0]["text"], "after breakfast");
    assert!(!is_subsetted(&matches[0]));
});

both_stores!(
    elements_that_are_not_top_level_names_are_refused,
    |server| {
        fixtures(&server).await;
        for query in [
            "Patient?_elements=Patient.name.given",
            "Patient?_elements=Patientje.gender",
            "Patient?_elements=gender,.name",
            "Patient?_elements=gen-der",
        ] {
            expect_status(&server.client.get(query).await.unwrap(), 400);
        }
    }
);

// ---------------------------------------------------------------------------------------------
// `_count` above the maximum: capped, not refused (the search page lets a server return fewer)
// ---------------------------------------------------------------------------------------------

/// The server's largest page (`signaal::search::result::MAX_COUNT`).
const MAX_COUNT: usize = 1000;

/// `MAX_COUNT + 1` Patients of family `Capped`, in one transaction; the id of the first.
async fn more_patients_than_a_page(server: &TestServer) -> String {
    let entries: Vec<Value> = (0..=MAX_COUNT)
        .map(|i| {
            json!({
                "resource": {"resourceType": "Patient", "name": [{"family": "Capped", "given": [format!("n{i}")]}]},
                "request": {"method": "POST", "url": "Patient"}
            })
        })
        .collect();
    let reply = server
        .client
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await
        .unwrap();
    let body = expect_status(&reply, 200);
    body["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_owned()
}

fn link<'a>(bundle: &'a Value, relation: &str) -> Option<&'a str> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)?["url"]
        .as_str()
}

/// The informational issues of a searchset's `search.mode = outcome` entry.
fn information(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "outcome")
        .flat_map(|e| {
            e["resource"]["issue"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|i| i["severity"] == "information")
        .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn matches(bundle: &Value) -> usize {
    common::match_ids(bundle).len()
}

both_stores!(a_count_above_the_maximum_is_capped_and_said_so, |server| {
    more_patients_than_a_page(&server).await;
    let page = bundle(&server, "Patient?family=Capped&_count=5000").await;
    assert_eq!(page["total"], MAX_COUNT + 1);
    assert_eq!(matches(&page), MAX_COUNT, "the page holds the maximum");
    let own = link(&page, "self").unwrap();
    assert!(
        own.contains("_count=1000") && !own.contains("5000"),
        "{own}"
    );
    let notes = information(&page);
    assert!(
        notes.len() == 1 && notes[0].contains("5000") && notes[0].contains("1000"),
        "{notes:?}"
    );
    // The next page, at the size used, holds the rest and says nothing more.
    let next = link(&page, "next").expect("a next link");
    assert!(next.contains("_count=1000"), "{next}");
    let rest = expect_status(&server.client.get(next).await.unwrap(), 200);
    assert_eq!(matches(&rest), 1);
    assert!(information(&rest).is_empty());
});

both_stores!(a_count_within_the_maximum_is_not_remarked_on, |server| {
    fixtures(&server).await;
    let page = bundle(&server, "Patient?_count=1000").await;
    assert_eq!(matches(&page), 3);
    assert!(link(&page, "self").unwrap().contains("_count=1000"));
    assert!(information(&page).is_empty(), "{page}");
});

both_stores!(a_count_too_large_for_any_number_is_capped_too, |server| {
    fixtures(&server).await;
    let page = bundle(&server, "Patient?_count=99999999999999999999999").await;
    assert_eq!(matches(&page), 3);
    assert!(link(&page, "self").unwrap().contains("_count=1000"));
    assert_eq!(information(&page).len(), 1, "{page}");
});

both_stores!(history_caps_its_count_and_its_self_link_says_so, |server| {
    more_patients_than_a_page(&server).await;
    let page = bundle(&server, "Patient/_history?_count=5000").await;
    assert_eq!(page["entry"].as_array().unwrap().len(), MAX_COUNT);
    let own = link(&page, "self").unwrap();
    assert!(
        own.contains("_count=1000") && !own.contains("5000"),
        "{own}"
    );
    assert!(link(&page, "next").is_some());
});

both_stores!(everything_caps_its_count_and_says_so, |server| {
    fixtures(&server).await;
    let page = bundle(&server, "Patient/p1/$everything?_count=5000").await;
    assert!(
        common::match_ids(&page).contains(&"p1".to_owned()),
        "{page}"
    );
    assert!(link(&page, "self").unwrap().contains("_count=1000"));
    let notes = information(&page);
    assert!(notes.len() == 1 && notes[0].contains("5000"), "{notes:?}");
});

// ---------------------------------------------------------------------------------------------
// no empty arrays (JSON page: an array has at least one item)
// ---------------------------------------------------------------------------------------------

both_stores!(an_empty_searchset_leaves_entry_out, |server| {
    fixtures(&server).await;
    for query in [
        "Patient?family=nomatch",
        "Patient?_count=0",
        "Patient?_summary=count",
        "Patient?family=nomatch&_include=Patient:organization",
        "Patient/nobody/Observation",
    ] {
        let page = bundle(&server, query).await;
        assert_eq!(page["type"], "searchset", "{query}");
        assert!(page.get("entry").is_none(), "{query}: {page}");
    }
    assert_eq!(bundle(&server, "Patient?_count=0").await["total"], 3);
    assert_eq!(bundle(&server, "Patient?_summary=count").await["total"], 3);
});

both_stores!(an_empty_history_leaves_entry_out, |server| {
    let page = bundle(&server, "Encounter/_history").await;
    assert_eq!(page["type"], "history");
    assert!(page.get("entry").is_none(), "{page}");
    let page = bundle(&server, "Patient/_history?_count=0").await;
    assert!(page.get("entry").is_none(), "{page}");
});

both_stores!(an_empty_batch_answers_without_entries, |server| {
    let reply = server
        .client
        .post("", &json!({"resourceType": "Bundle", "type": "batch"}))
        .await
        .unwrap();
    let answer = expect_status(&reply, 200);
    assert_eq!(answer["type"], "batch-response");
    assert!(answer.get("entry").is_none(), "{answer}");
});

#[test]
fn the_response_check_refuses_what_input_may_not_hold() {
    for body in [
        json!({"resourceType": "Bundle", "type": "searchset", "entry": []}),
        json!({"resourceType": "Patient", "name": [{}]}),
        json!({"resourceType": "Patient", "gender": null}),
        json!({"resourceType": "Patient", "name": [{"given": [null]}]}),
    ] {
        let mut problems = Vec::new();
        common::output::shape(&body, "$", &mut problems);
        assert!(!problems.is_empty(), "{body}");
    }
    let mut problems = Vec::new();
    let aligned = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [null, {"id": "x"}]}]});
    common::output::shape(&aligned, "$", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}

// ---------------------------------------------------------------------------------------------
// the coach's worklist: active Flags, most urgent first, among other active resources
// ---------------------------------------------------------------------------------------------

both_stores!(
    the_worklist_sorts_active_flags_by_priority_among_other_active_resources,
    |server| {
        let priority = "https://signaal.dev/fhir/StructureDefinition/flag-priority";
        put(&server, json!({"resourceType": "Patient", "id": "wl"})).await;
        for (id, status, urgency) in [
            ("f-low", "active", 7),
            ("f-high", "active", 93),
            ("f-mid", "active", 41),
            ("f-done", "inactive", 99),
        ] {
            put(
                &server,
                json!({
                    "resourceType": "Flag", "id": id, "status": status,
                    "extension": [{"url": priority, "valueInteger": urgency}],
                    "code": {"text": "follow up"}, "subject": {"reference": "Patient/wl"}
                }),
            )
            .await;
        }
        // Other types share the code `active` of their own `status` parameter.
        for id in ["c1", "c2", "c3"] {
            put(&server, json!({"resourceType": "CarePlan", "id": id, "status": "active", "intent": "plan", "subject": {"reference": "Patient/wl"}})).await;
        }
        let page = bundle(&server, "Flag?status=active&_sort=-priority&_count=2").await;
        assert_eq!(page["total"], 3);
        let ids: Vec<String> = common::match_ids(&page);
        assert_eq!(ids, ["f-high", "f-mid"]);
        let next = link(&page, "next").expect("a next page");
        let rest = expect_status(&server.client.get(next).await.unwrap(), 200);
        assert_eq!(common::match_ids(&rest), ["f-low"]);
        // A status written later is searched by its new code only.
        put(
            &server,
            json!({
                "resourceType": "Flag", "id": "f-high", "status": "inactive",
                "extension": [{"url": priority, "valueInteger": 93}],
                "code": {"text": "follow up"}, "subject": {"reference": "Patient/wl"}
            }),
        )
        .await;
        let page = bundle(&server, "Flag?status=active&_sort=-priority").await;
        assert_eq!(common::match_ids(&page), ["f-mid", "f-low"]);
        assert_eq!(bundle(&server, "CarePlan?status=active").await["total"], 3);
    }
);
