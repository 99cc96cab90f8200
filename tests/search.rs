//! FHIR search (search page), one behaviour per test, on both stores.

mod common;

use common::{expect_status, ids, put, TestServer};
use serde_json::{json, Value};

fn weight(id: &str, patient: &str, value: Value, unit: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-03-01T10:00:00+01:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": code}
    })
}

async fn fixtures(server: &TestServer) {
    put(server, json!({"resourceType": "Patient", "id": "zoe", "name": [{"family": "Ångström", "given": ["Zoë"]}], "birthDate": "1950-06-15", "gender": "female"})).await;
    put(server, json!({"resourceType": "Patient", "id": "jan", "name": [{"family": "Jansen", "given": ["Jan"]}], "birthDate": "1960", "gender": "male"})).await;
    put(server, json!({"resourceType": "Patient", "id": "anon"})).await;
    put(server, weight("w1", "zoe", json!(72.5), "kg", "kg")).await;
    put(server, weight("w2", "jan", json!(80), "kg", "kg")).await;
    put(server, weight("w3", "jan", json!(81000), "g", "g")).await;
}

both_stores!(string_matches_start_ignoring_case_and_accents, |server| {
    fixtures(&server).await;
    assert_eq!(ids(&server, "Patient?name=angs").await, vec!["zoe"]);
    assert_eq!(ids(&server, "Patient?family=JAN").await, vec!["jan"]);
    assert!(ids(&server, "Patient?name=ström").await.is_empty());
});

both_stores!(string_contains_matches_anywhere, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient?name:contains=strom").await,
        vec!["zoe"]
    );
});

both_stores!(
    string_exact_matches_the_whole_string_with_case_and_accents,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ids(&server, "Patient?family:exact=Ångström").await,
            vec!["zoe"]
        );
        assert!(ids(&server, "Patient?family:exact=angstrom")
            .await
            .is_empty());
        assert!(ids(&server, "Patient?family:exact=Ångstr").await.is_empty());
    }
);

both_stores!(reference_matches_type_and_id_or_bare_id, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Observation?subject=Patient/jan").await,
        vec!["w2", "w3"]
    );
    assert_eq!(
        ids(&server, "Observation?subject=jan").await,
        vec!["w2", "w3"]
    );
    assert_eq!(
        ids(&server, "Observation?subject:Patient=zoe").await,
        vec!["w1"]
    );
    assert_eq!(ids(&server, "Observation?patient=zoe").await, vec!["w1"]);
    let absolute = format!("Observation?subject={}/Patient/zoe", server.base);
    assert_eq!(ids(&server, &absolute).await, vec!["w1"]);
});

both_stores!(quantity_compares_values_with_prefixes_and_units, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(
            &server,
            "Observation?value-quantity=gt75|http://unitsofmeasure.org|kg"
        )
        .await,
        // UCUM quantities compare in canonical units: 81000 g is more than 75 kg.
        vec!["w2", "w3"]
    );
    assert_eq!(
        ids(&server, "Observation?value-quantity=72.5||kg").await,
        vec!["w1"]
    );
    assert_eq!(
        ids(&server, "Observation?value-quantity=le80").await,
        vec!["w1", "w2"]
    );
});

both_stores!(
    quantity_equality_uses_the_precision_of_the_search_value,
    |server| {
        fixtures(&server).await;
        // 72 stands for [71.5, 72.5): 72.5 is outside; 73 stands for [72.5, 73.5): inside.
        assert!(ids(&server, "Observation?value-quantity=72")
            .await
            .is_empty());
        assert_eq!(
            ids(&server, "Observation?value-quantity=73").await,
            vec!["w1"]
        );
    }
);

both_stores!(date_without_time_covers_the_whole_day, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient?birthdate=1950-06-15").await,
        vec!["zoe"]
    );
    assert_eq!(ids(&server, "Patient?birthdate=1950").await, vec!["zoe"]);
    assert_eq!(ids(&server, "Patient?birthdate=lt1955").await, vec!["zoe"]);
    // A year-precision birth date lies within 1960 but not within 1960-03.
    assert_eq!(ids(&server, "Patient?birthdate=1960").await, vec!["jan"]);
    assert!(ids(&server, "Patient?birthdate=1960-03").await.is_empty());
});

both_stores!(date_respects_time_zones, |server| {
    fixtures(&server).await;
    // 10:00+01:00 is 09:00Z.
    assert_eq!(
        ids(&server, "Observation?date=2024-03-01T09:00:00Z").await,
        vec!["w1", "w2", "w3"]
    );
    assert!(ids(&server, "Observation?date=2024-03-01T10:00:00Z")
        .await
        .is_empty());
});

both_stores!(missing_finds_resources_without_a_value, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient?gender:missing=true").await,
        vec!["anon"]
    );
    assert_eq!(
        ids(&server, "Patient?gender:missing=false").await,
        vec!["jan", "zoe"]
    );
});

both_stores!(token_not_excludes_matches, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient?gender:not=male").await,
        vec!["anon", "zoe"]
    );
});

both_stores!(comma_is_or_and_repetition_is_and, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient?gender=male,female").await,
        vec!["jan", "zoe"]
    );
    assert!(ids(&server, "Patient?gender=male&gender=female")
        .await
        .is_empty());
});

both_stores!(
    an_unsupported_modifier_is_reported_not_ignored_silently,
    |server| {
        fixtures(&server).await;
        let bundle = server
            .client
            .get("Observation?_id:not=x")
            .await
            .unwrap()
            .json();
        let outcome = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["search"]["mode"] == "outcome")
            .cloned();
        assert!(outcome.is_some(), "{bundle}");
        let strict = server
            .client
            .send(
                "GET",
                "Observation?_id:not=x",
                &[("prefer", "handling=strict")],
                None,
            )
            .await
            .unwrap();
        expect_status(&strict, 400);
    }
);

both_stores!(compartment_search_finds_the_patients_resources, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(&server, "Patient/jan/Observation").await,
        vec!["w2", "w3"]
    );
    assert_eq!(
        ids(&server, "Patient/jan/Observation?value-quantity=80").await,
        vec!["w2"]
    );
    assert_eq!(ids(&server, "Patient/zoe/Patient").await, vec!["zoe"]);
    let bundle = server
        .client
        .get("Patient/jan/Observation")
        .await
        .unwrap()
        .json();
    assert!(
        bundle["link"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/Patient/jan/Observation"),
        "{bundle}"
    );
});

both_stores!(
    compartment_search_refuses_types_outside_the_compartment,
    |server| {
        let reply = server.client.get("Patient/jan/Organization").await.unwrap();
        expect_status(&reply, 400);
    }
);

async fn care_plan_fixtures(server: &TestServer) {
    fixtures(server).await;
    put(
        server,
        json!({"resourceType": "Goal", "id": "walk", "lifecycleStatus": "active",
        "description": {"text": "Walk 30 minutes a day"}, "subject": {"reference": "Patient/jan"}}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/jan"}, "goal": [{"reference": "Goal/walk"}]}),
    )
    .await;
}

/// `(resourceType/id, search.mode)` of every entry, sorted.
async fn entries(server: &TestServer, query: &str) -> Vec<(String, String)> {
    let bundle = expect_status(&server.client.get(query).await.unwrap(), 200);
    let mut out: Vec<(String, String)> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "outcome")
        .map(|e| {
            let r = &e["resource"];
            (
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                ),
                e["search"]["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

both_stores!(include_adds_the_referenced_resources, |server| {
    care_plan_fixtures(&server).await;
    assert_eq!(
        entries(
            &server,
            "CarePlan?patient=jan&status=active&_include=CarePlan:goal"
        )
        .await,
        vec![pair("CarePlan/cp", "match"), pair("Goal/walk", "include")]
    );
});

both_stores!(
    include_with_a_target_type_only_follows_that_type,
    |server| {
        care_plan_fixtures(&server).await;
        assert_eq!(
            entries(&server, "CarePlan?_include=CarePlan:subject:Group").await,
            vec![pair("CarePlan/cp", "match")]
        );
        assert_eq!(
            entries(&server, "CarePlan?_include=CarePlan:subject:Patient").await,
            vec![pair("CarePlan/cp", "match"), pair("Patient/jan", "include")]
        );
    }
);

both_stores!(
    revinclude_adds_the_resources_that_refer_to_the_matches,
    |server| {
        care_plan_fixtures(&server).await;
        assert_eq!(
            entries(&server, "Patient?_id=jan&_revinclude=Observation:subject").await,
            vec![
                pair("Observation/w2", "include"),
                pair("Observation/w3", "include"),
                pair("Patient/jan", "match")
            ]
        );
    }
);

both_stores!(include_iterate_follows_included_resources, |server| {
    care_plan_fixtures(&server).await;
    assert_eq!(
        entries(
            &server,
            "CarePlan?_id=cp&_include=CarePlan:goal&_include:iterate=Goal:subject"
        )
        .await,
        vec![
            pair("CarePlan/cp", "match"),
            pair("Goal/walk", "include"),
            pair("Patient/jan", "include")
        ]
    );
    // Without :iterate, the Goal's subject is not followed.
    assert_eq!(
        entries(
            &server,
            "CarePlan?_id=cp&_include=CarePlan:goal&_include=Goal:subject"
        )
        .await,
        vec![pair("CarePlan/cp", "match"), pair("Goal/walk", "include")]
    );
});

both_stores!(include_of_an_unknown_parameter_is_refused, |server| {
    expect_status(
        &server
            .client
            .get("CarePlan?_include=CarePlan:nothing")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("CarePlan?_include=Nothing:goal")
            .await
            .unwrap(),
        400,
    );
});

/// Ids in the order the server returned them.
async fn ordered_ids(server: &TestServer, query: &str) -> Vec<String> {
    let bundle = expect_status(&server.client.get(query).await.unwrap(), 200);
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

both_stores!(
    sort_orders_by_several_keys_ascending_and_descending,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ordered_ids(&server, "Patient?_sort=birthdate").await,
            vec!["zoe", "jan", "anon"]
        );
        assert_eq!(
            ordered_ids(&server, "Patient?_sort=-birthdate").await,
            vec!["jan", "zoe", "anon"]
        );
        assert_eq!(
            ordered_ids(&server, "Patient?_sort=family").await,
            vec!["zoe", "jan", "anon"]
        );
        assert_eq!(
            ordered_ids(&server, "Observation?_sort=subject,-value-quantity").await,
            vec!["w3", "w2", "w1"]
        );
        assert_eq!(
            ordered_ids(&server, "Patient?_sort=-_id").await,
            vec!["zoe", "jan", "anon"]
        );
    }
);

both_stores!(sorted_pages_follow_next_and_previous_links, |server| {
    for i in 0..7 {
        put(&server, json!({"resourceType": "Patient", "id": format!("p{i}"), "birthDate": format!("19{}0", 9 - (i % 4))})).await;
    }
    put(&server, json!({"resourceType": "Patient", "id": "nobirth"})).await;
    let everything = ordered_ids(&server, "Patient?_sort=-birthdate,_id&_count=100").await;
    assert_eq!(everything.len(), 8);
    assert_eq!(everything.last().unwrap(), "nobirth");
    // Walk forwards in pages of 3, then back.
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut url = "Patient?_sort=-birthdate,_id&_count=3".to_owned();
    loop {
        let bundle = expect_status(&server.client.get(&url).await.unwrap(), 200);
        let ids: Vec<String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(ids.clone());
        pages.push((ids, bundle.clone()));
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
    assert_eq!(seen, everything);
    let (last_ids, last_bundle) = pages.last().unwrap();
    let previous = last_bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "previous")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = expect_status(&server.client.get(&previous).await.unwrap(), 200);
    let back_ids: Vec<String> = back["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        back_ids,
        pages[pages.len() - 2].0,
        "previous of the last page {last_ids:?}"
    );
});

/// The ids of a page's matches and the url of its link `relation`, if it has one.
async fn page(server: &TestServer, url: &str, relation: &str) -> (Vec<String>, Option<String>) {
    let bundle = expect_status(&server.client.get(url).await.unwrap(), 200);
    let ids = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    let link = bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned());
    (ids, link)
}

both_stores!(
    pages_split_resources_sharing_a_sort_value_without_losing_or_repeating_one,
    |server| {
        // Seven patients born the same day straddle page boundaries of 2, between others
        // born before, after, or with no birth date.
        put(
            &server,
            json!({"resourceType": "Patient", "id": "older", "birthDate": "1950"}),
        )
        .await;
        for i in 0..7 {
            put(
                &server,
                json!({"resourceType": "Patient", "id": format!("same{i}"), "birthDate": "1970"}),
            )
            .await;
        }
        put(
            &server,
            json!({"resourceType": "Patient", "id": "younger", "birthDate": "1990"}),
        )
        .await;
        put(&server, json!({"resourceType": "Patient", "id": "nobirth"})).await;
        for sort in ["birthdate", "-birthdate"] {
            let everything =
                ordered_ids(&server, &format!("Patient?_sort={sort}&_count=100")).await;
            assert_eq!(everything.len(), 10);
            assert_eq!(everything.last().unwrap(), "nobirth", "{sort}");
            // Forwards by next links…
            let mut forwards = Vec::new();
            let mut url = Some(format!("Patient?_sort={sort}&_count=2"));
            let mut last = String::new();
            while let Some(at) = url {
                let (ids, next) = page(&server, &at, "next").await;
                forwards.push(ids);
                last = at;
                url = next;
            }
            assert_eq!(forwards.concat(), everything, "{sort} forwards");
            // …then back from the last page by previous links, page by page.
            let mut backwards = vec![forwards.last().unwrap().clone()];
            let mut url = page(&server, &last, "previous").await.1;
            while let Some(at) = url {
                let (ids, previous) = page(&server, &at, "previous").await;
                backwards.push(ids);
                url = previous;
            }
            backwards.reverse();
            assert_eq!(backwards, forwards, "{sort} backwards");
        }
    }
);

both_stores!(sort_on_an_unknown_parameter_is_refused, |server| {
    expect_status(
        &server.client.get("Patient?_sort=nothing").await.unwrap(),
        400,
    );
});

both_stores!(
    chained_parameters_search_the_referenced_resource,
    |server| {
        fixtures(&server).await;
        put(&server, json!({"resourceType": "Patient", "id": "bsn", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456782"}]})).await;
        put(&server, weight("w4", "bsn", json!(90), "kg", "kg")).await;
        assert_eq!(ids(&server, "Observation?subject:Patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782").await, vec!["w4"]);
        assert_eq!(
            ids(&server, "Observation?subject.family=jans").await,
            vec!["w2", "w3"]
        );
        assert_eq!(
            ids(&server, "Observation?patient.gender=female").await,
            vec!["w1"]
        );
    }
);

both_stores!(
    a_chain_with_other_filters_finds_what_meets_them_all,
    |server| {
        fixtures(&server).await;
        let mut heart_rate = weight("hr", "jan", json!(60), "/min", "/min");
        heart_rate["code"]["coding"][0]["code"] = json!("8867-4");
        put(&server, heart_rate).await;
        // The chain (Patient or Group, by `patient`) and a token: Jan's weights only.
        assert_eq!(
            ids(
                &server,
                "Observation?patient.family=jansen&code=http://loinc.org|29463-7"
            )
            .await,
            vec!["w2", "w3"]
        );
        assert_eq!(
            ids(&server, "Observation?patient.family=jansen&code=8867-4").await,
            vec!["hr"]
        );
        // A reference to one resource beside the chain: both must hold.
        assert!(ids(
            &server,
            "Observation?subject=Patient/zoe&patient.family=jansen"
        )
        .await
        .is_empty());
        // A chain that matches nothing finds nothing, whatever the other filters match.
        assert!(
            ids(&server, "Observation?patient.family=nobody&code=29463-7")
                .await
                .is_empty()
        );
    }
);

both_stores!(list_finds_the_resources_a_list_names, |server| {
    fixtures(&server).await;
    put(
        &server,
        json!({"resourceType": "List", "id": "watch", "status": "current", "mode": "working",
               "entry": [{"item": {"reference": "Observation/w1"}},
                         {"item": {"reference": "Observation/w3"}},
                         {"item": {"reference": "Patient/jan"}}]}),
    )
    .await;
    assert_eq!(
        ids(&server, "Observation?_list=watch").await,
        vec!["w1", "w3"]
    );
    assert_eq!(ids(&server, "Patient?_list=watch").await, vec!["jan"]);
    assert_eq!(
        ids(&server, "Observation?_list=watch&subject=Patient/jan").await,
        vec!["w3"]
    );
    assert!(ids(&server, "Observation?_list=nothing").await.is_empty());
    for refused in [
        "Observation?_list=$current-problems",
        "Observation?_list:missing=true",
        "Observation?_list=a/b",
    ] {
        expect_status(&server.client.get(refused).await.unwrap(), 400);
    }
});

both_stores!(chains_can_go_several_levels_deep, |server| {
    care_plan_fixtures(&server).await;
    // CarePlan → Goal → Patient.
    assert_eq!(
        ids(&server, "CarePlan?goal:Goal.subject:Patient.family=Jansen").await,
        vec!["cp"]
    );
    assert!(
        ids(&server, "CarePlan?goal:Goal.subject:Patient.family=Other")
            .await
            .is_empty()
    );
});

both_stores!(has_finds_resources_referenced_by_matching_ones, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(
            &server,
            "Patient?_has:Observation:subject:value-quantity=gt75"
        )
        .await,
        vec!["jan"]
    );
    assert_eq!(
        ids(
            &server,
            "Patient?_has:Observation:subject:code=http://loinc.org|29463-7"
        )
        .await,
        vec!["jan", "zoe"]
    );
});

both_stores!(has_can_nest, |server| {
    care_plan_fixtures(&server).await;
    // Patients with a Goal that a CarePlan refers to.
    assert_eq!(
        ids(
            &server,
            "Patient?_has:Goal:subject:_has:CarePlan:goal:status=active"
        )
        .await,
        vec!["jan"]
    );
});

both_stores!(chains_to_nowhere_are_refused, |server| {
    expect_status(
        &server
            .client
            .get("Observation?subject.nothing=1")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("Observation?status.name=1")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("Patient?_has:Observation:nothing:code=1")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server.client.get("Patient?_has:Observation").await.unwrap(),
        400,
    );
});

fn measurement(id: &str, patient: &str, code: &str, when: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

both_stores!(lastn_returns_the_latest_measurements_per_code, |server| {
    put(&server, json!({"resourceType": "Patient", "id": "p"})).await;
    put(&server, json!({"resourceType": "Patient", "id": "other"})).await;
    put(
        &server,
        measurement("wt1", "p", "29463-7", "2024-01-01", 80.0),
    )
    .await;
    put(
        &server,
        measurement("wt2", "p", "29463-7", "2024-01-03", 81.0),
    )
    .await;
    put(
        &server,
        measurement("wt3", "p", "29463-7", "2024-01-02", 82.0),
    )
    .await;
    put(
        &server,
        measurement("hr1", "p", "8867-4", "2024-01-01", 60.0),
    )
    .await;
    put(
        &server,
        measurement("hr2", "other", "8867-4", "2024-02-01", 70.0),
    )
    .await;
    assert_eq!(
        ids(&server, "Observation/$lastn?patient=p").await,
        vec!["hr1", "wt2"]
    );
    assert_eq!(
        ordered_ids(
            &server,
            "Observation/$lastn?patient=p&max=2&code=http://loinc.org|29463-7"
        )
        .await,
        vec!["wt2", "wt3"]
    );
    assert_eq!(
        ids(
            &server,
            "Observation/$lastn?patient=p&category=vital-signs&max=3"
        )
        .await,
        vec!["hr1", "wt1", "wt2", "wt3"]
    );
    expect_status(
        &server.client.get("Observation/$lastn?max=0").await.unwrap(),
        400,
    );
});

both_stores!(
    very_long_values_are_stored_and_found_by_their_start,
    |server| {
        let long = "x".repeat(10_000);
        let patient = json!({"resourceType": "Patient", "id": "long", "name": [{"family": long}],
        "identifier": [{"system": "http://example.org", "value": long}]});
        let reply = server.client.put("Patient/long", &patient).await.unwrap();
        expect_status(&reply, 201);
        assert_eq!(ids(&server, "Patient?family=xxxx").await, vec!["long"]);
        assert_eq!(
            ids(
                &server,
                &format!("Patient?identifier=http://example.org|{long}")
            )
            .await,
            vec!["long"]
        );
    }
);

both_stores!(summary_count_returns_only_the_total, |server| {
    fixtures(&server).await;
    let bundle = expect_status(
        &server.client.get("Patient?_summary=count").await.unwrap(),
        200,
    );
    assert_eq!(bundle["total"], 3);
    assert!(
        bundle["entry"].as_array().is_none_or(|e| e.is_empty()),
        "{bundle}"
    );
});

both_stores!(
    summary_data_leaves_out_the_narrative_and_says_so,
    |server| {
        put(&server, json!({"resourceType": "Patient", "id": "t", "gender": "male",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jan</div>"}})).await;
        let bundle = expect_status(
            &server.client.get("Patient?_summary=data").await.unwrap(),
            200,
        );
        let resource = &bundle["entry"][0]["resource"];
        assert!(resource.get("text").is_none());
        assert_eq!(resource["gender"], "male");
        assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
    }
);

both_stores!(elements_returns_only_the_named_elements, |server| {
    fixtures(&server).await;
    let bundle = expect_status(
        &server
            .client
            .get("Observation?_id=w1&_elements=subject,value")
            .await
            .unwrap(),
        200,
    );
    let resource = &bundle["entry"][0]["resource"];
    assert_eq!(resource["subject"]["reference"], "Patient/zoe");
    assert_eq!(resource["valueQuantity"]["value"], json!(72.5));
    assert!(
        resource.get("code").is_none() && resource.get("status").is_none(),
        "{resource}"
    );
    assert_eq!(resource["id"], "w1");
    assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
});

both_stores!(
    a_thousand_or_values_are_searched_not_refused_by_the_database,
    |server| {
        fixtures(&server).await;
        let mut values: Vec<String> = (0..997).map(|i| format!("missing{i}")).collect();
        values.push("jan".into());
        assert_eq!(
            ids(&server, &format!("Patient?_id={}", values.join(","))).await,
            vec!["jan"]
        );
    }
);

both_stores!(uri_below_is_case_sensitive_on_both_stores, |server| {
    put(&server, json!({"resourceType": "ValueSet", "id": "vs", "status": "active", "url": "http://example.org/fhir/ValueSet/A"})).await;
    assert_eq!(
        ids(&server, "ValueSet?url:below=http://example.org/fhir").await,
        vec!["vs"]
    );
    assert!(ids(&server, "ValueSet?url:below=http://example.org/FHIR")
        .await
        .is_empty());
    assert_eq!(
        ids(
            &server,
            "ValueSet?url:above=http://example.org/fhir/ValueSet/A/2"
        )
        .await,
        vec!["vs"]
    );
});

both_stores!(
    searches_too_large_for_one_query_are_refused_with_400,
    |server| {
        let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
        let reply = server
            .client
            .get(&format!("Task?focus._id={}", values.join(",")))
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
);

both_stores!(nul_characters_in_search_values_are_refused, |server| {
    expect_status(&server.client.get("Patient?_id=%00").await.unwrap(), 400);
    expect_status(&server.client.get("Patient?name=a%00b").await.unwrap(), 400);
});

// ---- Reference `:below` / `:above` (search page, "Searching Hierarchies") ------------------

/// A hospital with a wing with a ward, a clinic elsewhere, and an Encounter at each.
async fn location_tree(server: &TestServer) {
    let location = |id: &str, part_of: Option<&str>| {
        let mut l = json!({"resourceType": "Location", "id": id, "name": id});
        if let Some(parent) = part_of {
            l["partOf"] = json!({"reference": format!("Location/{parent}")});
        }
        l
    };
    put(server, location("hospital", None)).await;
    put(server, location("wing", Some("hospital"))).await;
    put(server, location("ward", Some("wing"))).await;
    put(server, location("clinic", None)).await;
    for at in ["hospital", "wing", "ward", "clinic"] {
        put(
            server,
            json!({"resourceType": "Encounter", "id": format!("at-{at}"), "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "location": [{"location": {"reference": format!("Location/{at}")}}]}),
        )
        .await;
    }
}

both_stores!(
    reference_below_finds_what_refers_to_a_resource_or_anything_within_it,
    |server| {
        location_tree(&server).await;
        assert_eq!(
            ids(&server, "Encounter?location:below=Location/wing").await,
            vec!["at-ward", "at-wing"]
        );
        // A plain id: the parameter's one target type.
        assert_eq!(
            ids(&server, "Encounter?location:below=hospital").await,
            vec!["at-hospital", "at-ward", "at-wing"]
        );
        assert_eq!(
            ids(
                &server,
                "Encounter?location:below=Location/ward,Location/clinic"
            )
            .await,
            vec!["at-clinic", "at-ward"]
        );
        // On the hierarchy's own parameter: the locations within the hospital.
        assert_eq!(
            ids(&server, "Location?partof:below=Location/hospital").await,
            vec!["ward", "wing"]
        );
    }
);

both_stores!(
    reference_above_finds_what_refers_to_a_resource_or_anything_it_lies_within,
    |server| {
        location_tree(&server).await;
        assert_eq!(
            ids(&server, "Encounter?location:above=Location/ward").await,
            vec!["at-hospital", "at-ward", "at-wing"]
        );
        assert_eq!(
            ids(&server, "Encounter?location:above=Location/clinic").await,
            vec!["at-clinic"]
        );
        // With other criteria.
        assert_eq!(
            ids(
                &server,
                "Encounter?location:above=Location/wing&location.name=wing"
            )
            .await,
            vec!["at-wing"]
        );
    }
);

both_stores!(reference_below_works_inside_a_chain, |server| {
    location_tree(&server).await;
    for (id, encounter) in [("o-ward", "at-ward"), ("o-clinic", "at-clinic")] {
        put(
            &server,
            json!({"resourceType": "Observation", "id": id, "status": "final",
                   "code": {"text": "x"}, "encounter": {"reference": format!("Encounter/{encounter}")}}),
        )
        .await;
    }
    assert_eq!(
        ids(
            &server,
            "Observation?encounter.location:below=Location/hospital"
        )
        .await,
        vec!["o-ward"]
    );
});

both_stores!(
    reference_below_and_above_need_a_hierarchy_and_a_resource_held_here,
    |server| {
        location_tree(&server).await;
        for query in [
            // Patient has no partOf: no hierarchy to follow.
            "Observation?subject:below=Patient/x",
            "Encounter?location:below=http://elsewhere.example.org/fhir/Location/1",
            "Encounter?location:above=Location/not%20an%20id",
        ] {
            let reply = server.client.get(query).await.unwrap();
            expect_status(&reply, 400);
        }
        // Conditional criteria take no hierarchy (one resolution per write would be unbounded).
        let reply = server
            .client
            .send(
                "DELETE",
                "Encounter?location:below=Location/wing",
                &[],
                None,
            )
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
);

// ---------------------------------------------------------------------------------------------
// what a coach's tool searches by: Flag code and category (Signaal's), RiskAssessment method
// and risk (R4's)
// ---------------------------------------------------------------------------------------------

both_stores!(flags_are_found_by_code_and_category, |server| {
    let flag = |id: &str, code: &str, category: &str| {
        json!({"resourceType": "Flag", "id": id, "status": "active",
            "category": [{"coding": [{"system": "http://example.org/kinds", "code": category}]}],
            "code": {"coding": [{"system": "http://example.org/reasons", "code": code}]},
            "subject": {"reference": "Patient/p"}})
    };
    put(&server, flag("f1", "sleep-short", "lifestyle")).await;
    put(&server, flag("f2", "steps-low", "lifestyle")).await;
    put(&server, flag("f3", "sleep-short", "clinical")).await;
    assert_eq!(ids(&server, "Flag?code=sleep-short").await, ["f1", "f3"]);
    assert_eq!(
        ids(&server, "Flag?code=http://example.org/reasons|steps-low").await,
        ["f2"]
    );
    assert_eq!(ids(&server, "Flag?category=lifestyle").await, ["f1", "f2"]);
    assert_eq!(
        ids(&server, "Flag?category=clinical&code=sleep-short").await,
        ["f3"]
    );
    assert!(ids(&server, "Flag?code=other").await.is_empty());
    // Known to the server, so not ignored under Prefer: handling=strict.
    let reply = server
        .client
        .send(
            "GET",
            "Flag?code=steps-low",
            &[("Prefer", "handling=strict")],
            None,
        )
        .await
        .unwrap();
    expect_status(&reply, 200);
});

both_stores!(risk_assessments_are_found_by_method_and_risk, |server| {
    let assessment = |id: &str, method: &str, risk: &str| {
        json!({"resourceType": "RiskAssessment", "id": id, "status": "final",
            "method": {"coding": [{"system": "http://example.org/models", "code": method}]},
            "subject": {"reference": "Patient/p"},
            "prediction": [{"qualitativeRisk": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/risk-probability", "code": risk}]}}]})
    };
    put(&server, assessment("r1", "frailty-x", "high")).await;
    put(&server, assessment("r2", "frailty-x", "low")).await;
    put(&server, assessment("r3", "falls-y", "high")).await;
    assert_eq!(
        ids(&server, "RiskAssessment?method=frailty-x").await,
        ["r1", "r2"]
    );
    assert_eq!(ids(&server, "RiskAssessment?risk=high").await, ["r1", "r3"]);
    assert_eq!(
        ids(
            &server,
            "RiskAssessment?method=http://example.org/models|falls-y&risk=high"
        )
        .await,
        ["r3"]
    );
});
