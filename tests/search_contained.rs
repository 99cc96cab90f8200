//! Searching contained resources (search page, "Contained Resources"): `_contained`
//! (false, true, both) × `_containedType` (container, contained), on both stores, through HTTP.

mod common;

use common::{expect_status, put, refused, TestServer};
use serde_json::{json, Value};

const SNOMED: &str = "http://snomed.info/sct";

/// A MedicationRequest for `patient` with a contained Medication of `code` (local id `med`).
fn request_with_medication(id: &str, patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "contained": [{
            "resourceType": "Medication", "id": "med",
            "code": {"coding": [{"system": SNOMED, "code": code}]}
        }],
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

/// Two requests with a contained aspirin, one with paracetamol, and a Medication of its own
/// that is aspirin too.
async fn fixtures(server: &TestServer) {
    for id in ["p1", "p2"] {
        put(server, json!({"resourceType": "Patient", "id": id})).await;
    }
    put(server, request_with_medication("rx1", "p1", "aspirin")).await;
    put(server, request_with_medication("rx2", "p2", "aspirin")).await;
    put(server, request_with_medication("rx3", "p1", "paracetamol")).await;
    put(
        server,
        json!({"resourceType": "Medication", "id": "own",
               "code": {"coding": [{"system": SNOMED, "code": "aspirin"}]}}),
    )
    .await;
}

/// The match entries of a search: (fullUrl, resource).
async fn entries(server: &TestServer, query: &str) -> Vec<(String, Value)> {
    let bundle = expect_status(&server.client.get(query).await.unwrap(), 200);
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            (
                e["fullUrl"].as_str().unwrap().to_owned(),
                e["resource"].clone(),
            )
        })
        .collect()
}

/// `Type/id` of each match, sorted, with the fullUrl's `#local` part where there is one.
async fn found(server: &TestServer, query: &str) -> Vec<String> {
    let base = format!("{}/", server.base);
    let mut found: Vec<String> = entries(server, query)
        .await
        .into_iter()
        .map(|(url, _)| url.strip_prefix(&base).unwrap().to_owned())
        .collect();
    found.sort();
    found
}

both_stores!(
    contained_false_is_the_default_and_does_not_find_contained_resources,
    |server| {
        fixtures(&server).await;
        let code = format!("Medication?code={SNOMED}|aspirin");
        assert_eq!(found(&server, &code).await, ["Medication/own"]);
        assert_eq!(
            found(&server, &format!("{code}&_contained=false")).await,
            ["Medication/own"]
        );
    }
);

both_stores!(contained_true_returns_the_containers_by_default, |server| {
    fixtures(&server).await;
    let query = format!("Medication?code={SNOMED}|aspirin&_contained=true");
    assert_eq!(
        found(&server, &query).await,
        ["MedicationRequest/rx1", "MedicationRequest/rx2"]
    );
    assert_eq!(
        found(&server, &format!("{query}&_containedType=container")).await,
        ["MedicationRequest/rx1", "MedicationRequest/rx2"]
    );
    // The containers come whole, with their version.
    let (_, rx1) = entries(&server, &query).await.remove(0);
    assert_eq!(rx1["contained"][0]["id"], "med");
    assert_eq!(rx1["meta"]["versionId"], "1");
});

both_stores!(
    contained_type_contained_returns_the_contained_resources_under_their_containers_url,
    |server| {
        fixtures(&server).await;
        let query =
            format!("Medication?code={SNOMED}|aspirin&_contained=true&_containedType=contained");
        assert_eq!(
            found(&server, &query).await,
            ["MedicationRequest/rx1#med", "MedicationRequest/rx2#med"]
        );
        for (_, resource) in entries(&server, &query).await {
            assert_eq!(resource["resourceType"], "Medication");
            assert_eq!(resource["id"], "med");
            assert_eq!(resource["code"]["coding"][0]["code"], "aspirin");
        }
    }
);

both_stores!(
    contained_both_is_the_union_of_resources_and_contained_ones,
    |server| {
        fixtures(&server).await;
        let query = format!("Medication?code={SNOMED}|aspirin&_contained=both");
        assert_eq!(
            found(&server, &query).await,
            [
                "Medication/own",
                "MedicationRequest/rx1",
                "MedicationRequest/rx2"
            ]
        );
        assert_eq!(
            found(&server, &format!("{query}&_containedType=contained")).await,
            [
                "Medication/own",
                "MedicationRequest/rx1#med",
                "MedicationRequest/rx2#med"
            ]
        );
        let total = expect_status(
            &server
                .client
                .get(&format!(
                    "{query}&_containedType=contained&_total=accurate&_count=1"
                ))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(total["total"], 3);
    }
);

both_stores!(
    every_filter_holds_for_the_same_contained_resource,
    |server| {
        put(
            &server,
            json!({
                "resourceType": "MedicationRequest", "id": "two", "status": "active",
                "intent": "order",
                "contained": [
                    {"resourceType": "Medication", "id": "a", "status": "active",
                     "code": {"coding": [{"system": SNOMED, "code": "aspirin"}]}},
                    {"resourceType": "Medication", "id": "b", "status": "inactive",
                     "code": {"coding": [{"system": SNOMED, "code": "paracetamol"}]}}
                ],
                "medicationReference": {"reference": "#a"},
                "supportingInformation": [{"reference": "#b"}],
                "subject": {"reference": "Patient/p"}
            }),
        )
        .await;
        let contained = "&_contained=true&_containedType=contained";
        assert!(found(
            &server,
            &format!("Medication?code=aspirin&status=inactive{contained}")
        )
        .await
        .is_empty());
        assert_eq!(
            found(
                &server,
                &format!("Medication?code=paracetamol&status=inactive{contained}")
            )
            .await,
            ["MedicationRequest/two#b"]
        );
        assert_eq!(
            found(&server, &format!("Medication?_id=a{contained}")).await,
            ["MedicationRequest/two#a"]
        );
        // Without a filter: every contained Medication.
        assert_eq!(
            found(&server, &format!("Medication?{}", &contained[1..])).await,
            ["MedicationRequest/two#a", "MedicationRequest/two#b"]
        );
    }
);

both_stores!(
    an_ordinary_search_does_not_find_containers_by_their_contained_resources_values,
    |server| {
        fixtures(&server).await;
        // MedicationRequest?code searches the request's own medicationCodeableConcept, which
        // these requests do not have; their contained Medications' codes do not count.
        assert!(found(&server, "MedicationRequest?code=aspirin")
            .await
            .is_empty());
        // Nor does a contained resource count as a resource of its own type.
        assert_eq!(found(&server, "Medication").await, ["Medication/own"]);
        assert_eq!(
            found(&server, "MedicationRequest?subject=Patient/p1").await,
            ["MedicationRequest/rx1", "MedicationRequest/rx3"]
        );
        // `_include=*` follows the container's own references, not its contained resources'.
        put(
            &server,
            json!({"resourceType": "Organization", "id": "acme", "name": "Acme"}),
        )
        .await;
        let mut rx = request_with_medication("rxm", "p1", "aspirin");
        rx["contained"][0]["manufacturer"] = json!({"reference": "Organization/acme"});
        put(&server, rx).await;
        let bundle = expect_status(
            &server
                .client
                .get("MedicationRequest?_id=rxm&_include=MedicationRequest:*")
                .await
                .unwrap(),
            200,
        );
        let mut included: Vec<String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
            .collect();
        included.sort();
        assert_eq!(included, [format!("{}/Patient/p1", server.base)]);
        // While the contained Medication is found by its own manufacturer.
        assert_eq!(
            found(
                &server,
                "Medication?manufacturer=Organization/acme&_contained=true"
            )
            .await,
            ["MedicationRequest/rxm"]
        );
    }
);

both_stores!(
    an_update_that_removes_a_contained_resource_removes_it_from_search,
    |server| {
        fixtures(&server).await;
        let mut rx1 = request_with_medication("rx1", "p1", "aspirin");
        rx1.as_object_mut().unwrap().remove("contained");
        rx1["medicationReference"] = json!({"reference": "Medication/own"});
        put(&server, rx1).await;
        let query = "Medication?code=aspirin&_contained=true";
        assert_eq!(found(&server, query).await, ["MedicationRequest/rx2"]);
        // A changed contained resource is found by its new values only.
        put(&server, request_with_medication("rx2", "p2", "ibuprofen")).await;
        assert!(found(&server, query).await.is_empty());
        assert_eq!(
            found(&server, "Medication?code=ibuprofen&_contained=true").await,
            ["MedicationRequest/rx2"]
        );
        // A deleted container takes its contained resources with it.
        expect_status(
            &server.client.delete("MedicationRequest/rx2").await.unwrap(),
            204,
        );
        assert!(found(&server, "Medication?code=ibuprofen&_contained=true")
            .await
            .is_empty());
    }
);

both_stores!(contained_results_sort_and_page, |server| {
    for (i, code) in ["c", "a", "d", "b", "e"].iter().enumerate() {
        put(
            &server,
            request_with_medication(&format!("rx{i}"), "p1", code),
        )
        .await;
    }
    put(
        &server,
        json!({"resourceType": "Medication", "id": "own",
               "code": {"coding": [{"system": SNOMED, "code": "bb"}]}}),
    )
    .await;
    for (contained, contained_type) in [
        ("true", "container"),
        ("true", "contained"),
        ("both", "container"),
        ("both", "contained"),
    ] {
        let mut url = format!(
            "Medication?_contained={contained}&_containedType={contained_type}&_sort=-code&_count=2"
        );
        let mut codes = Vec::new();
        loop {
            let bundle = expect_status(&server.client.get(&url).await.unwrap(), 200);
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let resource = &entry["resource"];
                let medication = if resource["resourceType"] == "Medication" {
                    resource
                } else {
                    &resource["contained"][0]
                };
                codes.push(
                    medication["code"]["coding"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            let next = bundle["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_owned());
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        let expected: &[&str] = if contained == "both" {
            &["e", "d", "c", "bb", "b", "a"]
        } else {
            &["e", "d", "c", "b", "a"]
        };
        assert_eq!(codes, expected, "{contained} {contained_type}");
    }
});

both_stores!(
    contained_searches_refuse_what_they_cannot_answer,
    |server| {
        fixtures(&server).await;
        for query in [
            "Medication?_contained=maybe",
            "Medication?_containedType=other",
            "Medication?_contained=true&_include=Medication:manufacturer",
            "Medication?_contained=true&_revinclude=MedicationRequest:medication",
            "Patient/p1/MedicationRequest?_contained=true",
            "Observation/$lastn?_contained=true",
        ] {
            let diagnostics = refused(&server, query).await;
            assert!(diagnostics.contains("_contained"), "{query}: {diagnostics}");
        }
        // Conditional criteria name resources to write, never contained ones.
        let reply = server
            .client
            .send(
                "POST",
                "Medication",
                &[
                    ("Content-Type", "application/fhir+json"),
                    ("If-None-Exist", "code=aspirin&_contained=true"),
                ],
                Some(br#"{"resourceType": "Medication"}"#.to_vec()),
            )
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("_contained"));
    }
);

// $reindex rewrites every index row of a resource: the contained ones must come back too.
both_stores!(reindex_brings_back_the_contained_entries, |server| {
    fixtures(&server).await;
    let reply = server
        .client
        .send("POST", "MedicationRequest/$reindex", &[], None)
        .await
        .unwrap();
    expect_status(&reply, 200);
    assert_eq!(
        found(&server, "Medication?code=aspirin&_contained=true").await,
        ["MedicationRequest/rx1", "MedicationRequest/rx2"]
    );
});

both_stores!(
    contained_resources_of_one_container_page_one_at_a_time,
    |server| {
        let medications: Vec<Value> = ["x", "y", "z"]
            .iter()
            .map(|id| {
                json!({"resourceType": "Medication", "id": id,
                       "code": {"coding": [{"system": SNOMED, "code": "same"}]}})
            })
            .collect();
        put(
            &server,
            json!({
                "resourceType": "MedicationRequest", "id": "three", "status": "active",
                "intent": "order",
                "contained": medications,
                "medicationReference": {"reference": "#x"},
                "supportingInformation": [{"reference": "#y"}, {"reference": "#z"}],
                "subject": {"reference": "Patient/p"}
            }),
        )
        .await;
        for sort in ["", "&_sort=code"] {
            let mut url = format!(
                "Medication?code=same&_contained=true&_containedType=contained&_count=1{sort}"
            );
            let mut urls = Vec::new();
            let mut pages = Vec::new();
            loop {
                let bundle = expect_status(&server.client.get(&url).await.unwrap(), 200);
                for entry in bundle["entry"].as_array().into_iter().flatten() {
                    urls.push(entry["fullUrl"].as_str().unwrap().to_owned());
                }
                pages.push(url.clone());
                let next = bundle["link"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["relation"] == "next")
                    .map(|l| l["url"].as_str().unwrap().to_owned());
                match next {
                    Some(next) => url = next,
                    None => break,
                }
            }
            let base = &server.base;
            assert_eq!(
                urls,
                ["x", "y", "z"].map(|id| format!("{base}/MedicationRequest/three#{id}")),
                "{sort}"
            );
            // And back: the previous link of the last page leads to the one before.
            let last = expect_status(
                &server.client.get(pages.last().unwrap()).await.unwrap(),
                200,
            );
            let previous = last["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "previous")
                .map(|l| l["url"].as_str().unwrap().to_owned())
                .unwrap();
            let before = expect_status(&server.client.get(&previous).await.unwrap(), 200);
            assert_eq!(
                before["entry"][0]["fullUrl"],
                format!("{base}/MedicationRequest/three#y"),
                "{sort}"
            );
        }
    }
);

both_stores!(a_chain_is_evaluated_inside_contained_resources, |server| {
    fixtures(&server).await;
    put(
        &server,
        json!({"resourceType": "MedicationRequest", "id": "rx-own", "status": "active",
                   "intent": "order", "medicationReference": {"reference": "Medication/own"},
                   "subject": {"reference": "Patient/p2"}}),
    )
    .await;
    // The requests whose medication, contained or not, is aspirin.
    assert_eq!(
        found(&server, "MedicationRequest?medication.code=aspirin").await,
        [
            "MedicationRequest/rx-own",
            "MedicationRequest/rx1",
            "MedicationRequest/rx2"
        ]
    );
    assert_eq!(
        found(&server, "MedicationRequest?medication.code=paracetamol").await,
        ["MedicationRequest/rx3"]
    );
    assert_eq!(
        found(
            &server,
            "MedicationRequest?medication.code=paracetamol&subject=Patient/p2"
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&server, "MedicationRequest?medication._id=med").await,
        [
            "MedicationRequest/rx1",
            "MedicationRequest/rx2",
            "MedicationRequest/rx3"
        ]
    );
});

both_stores!(
    contained_searches_chain_from_the_contained_resource_and_nothing_references_it_from_outside,
    |server| {
        fixtures(&server).await;
        put(
            &server,
            json!({"resourceType": "Organization", "id": "acme", "name": "Acme"}),
        )
        .await;
        let mut rx = request_with_medication("rxm", "p1", "aspirin");
        rx["contained"][0]["manufacturer"] = json!({"reference": "Organization/acme"});
        put(&server, rx).await;
        put(
            &server,
            json!({"resourceType": "MedicationRequest", "id": "rx-own", "status": "active",
                   "intent": "order", "medicationReference": {"reference": "Medication/own"},
                   "subject": {"reference": "Patient/p2"}}),
        )
        .await;
        assert_eq!(
            found(
                &server,
                "Medication?manufacturer.name=Acme&_contained=true&_containedType=contained"
            )
            .await,
            ["MedicationRequest/rxm#med"]
        );
        assert!(found(
            &server,
            "Medication?manufacturer.name=Other&_contained=true"
        )
        .await
        .is_empty());
        // `_has`: only resources of their own are referenced from other resources.
        let has = "_has:MedicationRequest:medication:status=active";
        assert_eq!(
            found(&server, &format!("Medication?{has}&_contained=both")).await,
            ["Medication/own"]
        );
        assert!(found(&server, &format!("Medication?{has}&_contained=true"))
            .await
            .is_empty());
    }
);
