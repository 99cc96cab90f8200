//! SMART Backend Services, patient-scoped access, Provenance and AuditEvent (issue 5).
//!
//! Servers here run with `--auth required`; clients are registered in their database the way
//! `signaal client add` does. The attack suite is a table: every row must be refused.

mod common;

use std::sync::Arc;

use common::auth::*;
use common::{expect_status, StoreKind, TestServer};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use signaal::client::Reply;
use signaal::store::auth::ClientRecord;

// ---- The token endpoint -------------------------------------------------------------------

secured!(a_removed_client_gets_no_more_tokens, |s| {
    let scope = "system/Observation.rs";
    s.register("leaving", scope, None).await;
    s.token("leaving", scope).await;
    assert!(s.clients.remove_client("leaving").await.unwrap());
    assert!(
        !s.clients.remove_client("leaving").await.unwrap(),
        "removing it again finds no client"
    );
    let reply = s
        .exchange(&sign_rs384("rsa-1", &s.claims("leaving")), scope)
        .await;
    assert!(
        reply.status == 400 || reply.status == 401,
        "got {} {}",
        reply.status,
        reply.json()
    );
    assert!(reply.json()["access_token"].is_null());
});

secured!(rs384_and_es384_assertions_get_short_lived_tokens, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    for (alg, kid, key) in [
        (Algorithm::RS384, "rsa-1", "rsa.pem"),
        (Algorithm::ES384, "ec-1", "ec.pem"),
    ] {
        let reply = s
            .exchange(
                &sign(alg, kid, key, &s.claims("vendor")),
                "system/Observation.rs",
            )
            .await;
        let body = reply.json();
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["scope"], "system/Observation.rs");
        assert!(body["expires_in"].as_i64().unwrap() <= 300);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
});

// Every row is an attack on the token endpoint and must get no token.
secured!(attacks_on_the_token_endpoint_are_refused, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    s.register("other", "system/Observation.rs", None).await;
    let scope = "system/Observation.rs";
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = s.claims("vendor");
        change(&mut claims);
        claims
    };
    let valid = s.claims("vendor");
    let signed = sign_rs384("rsa-1", &valid);
    let parts: Vec<&str> = signed.split('.').collect();
    let mut tampered_claims = valid.clone();
    tampered_claims["sub"] = json!("other");
    tampered_claims["iss"] = json!("other");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})
            .to_string()
            .as_bytes()),
        b64(valid.to_string().as_bytes())
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "expired exp",
            sign_rs384("rsa-1", &with(&|c| c["exp"] = json!(now() - 600))),
        ),
        (
            "not yet valid (nbf in the future)",
            sign_rs384("rsa-1", &with(&|c| c["nbf"] = json!(now() + 600))),
        ),
        (
            "issued in the future",
            sign_rs384("rsa-1", &with(&|c| c["iat"] = json!(now() + 600))),
        ),
        (
            "exp too far ahead",
            sign_rs384("rsa-1", &with(&|c| c["exp"] = json!(now() + 3600))),
        ),
        (
            "no exp",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "wrong aud",
            sign_rs384(
                "rsa-1",
                &with(&|c| c["aud"] = json!("http://elsewhere/auth/token")),
            ),
        ),
        (
            "iss is not sub",
            sign_rs384("rsa-1", &with(&|c| c["sub"] = json!("other"))),
        ),
        (
            "unknown iss",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c["iss"] = json!("nobody");
                    c["sub"] = json!("nobody");
                }),
            ),
        ),
        (
            "no jti",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
        ),
        ("alg none", alg_none),
        (
            "HS256 signed with the public key",
            sign_hs256(fixture("rsa.pub.pem").as_bytes(), &valid, "rsa-1"),
        ),
        (
            "unknown kid",
            sign(Algorithm::RS384, "rsa-2", "other-rsa.pem", &valid),
        ),
        (
            "signed by another key under a known kid",
            sign(Algorithm::RS384, "rsa-1", "other-rsa.pem", &valid),
        ),
        (
            "ES384 under an RSA kid",
            sign(Algorithm::ES384, "rsa-1", "ec.pem", &valid),
        ),
        (
            "RS256 instead of RS384",
            sign(Algorithm::RS256, "rsa-1", "rsa.pem", &valid),
        ),
        ("tampered payload", tampered),
        ("not a JWT", "not.a.jwt".into()),
    ];
    for (attack, assertion) in rows {
        let reply = s.exchange(&assertion, scope).await;
        let body = reply.json();
        assert!(
            reply.status == 400 || reply.status == 401,
            "{attack}: got {} {body}",
            reply.status
        );
        assert!(body["access_token"].is_null(), "{attack}: {body}");
        assert!(body["error"].is_string(), "{attack}: {body}");
    }
    // The untouched assertion is fine once, and a replay of its jti is refused.
    assert_eq!(s.exchange(&signed, scope).await.status, 200);
    let replay = s.exchange(&signed, scope).await;
    assert_eq!(replay.status, 400, "replayed jti");
    assert_eq!(replay.json()["error"], "invalid_grant");
});

secured!(scopes_beyond_the_registration_are_not_granted, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    let escalate = s
        .exchange(
            &sign_rs384("rsa-1", &s.claims("vendor")),
            "system/Patient.read system/Observation.cruds",
        )
        .await;
    assert_eq!(escalate.status, 400);
    assert_eq!(escalate.json()["error"], "invalid_scope");
    // Asking for more and less at once: only what is covered is granted.
    let partial = s
        .exchange(
            &sign_rs384("rsa-1", &s.claims("vendor")),
            "system/Observation.r system/Patient.r",
        )
        .await;
    assert_eq!(partial.status, 200);
    assert_eq!(partial.json()["scope"], "system/Observation.r");
});

// ---- Requests with tokens -----------------------------------------------------------------

secured!(
    requests_without_a_valid_token_get_401_with_www_authenticate,
    |s| {
        for header in [None, Some("Bearer nonsense"), Some("Basic dXNlcjpwYXNz")] {
            let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", *h)).collect();
            let reply = s
                .server
                .client
                .send("GET", "Observation", &headers, None)
                .await
                .unwrap();
            expect_status(&reply, 401);
            assert!(reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"));
        }
        // An access token of this server's format signed by someone else.
        let forged = sign_hs256(
            b"guessed secret",
            &json!({
                "iss": s.token_url(), "sub": "vendor", "aud": s.server.base, "exp": now() + 100,
                "iat": now(), "jti": "x", "scope": "system/*.cruds"
            }),
            "k",
        );
        expect_status(&s.call(&forged, "GET", "Observation", None).await, 401);
        // The CapabilityStatement and SMART configuration stay public.
        let metadata = expect_status(&s.server.client.get("metadata").await.unwrap(), 200);
        assert_eq!(
            metadata["rest"][0]["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        assert_eq!(
            metadata["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
            s.token_url()
        );
        let smart = expect_status(
            &s.server
                .client
                .get(".well-known/smart-configuration")
                .await
                .unwrap(),
            200,
        );
        assert_eq!(smart["token_endpoint"], s.token_url());
        assert_eq!(
            s.server
                .client
                .get(".well-known/smart-configuration")
                .await
                .unwrap()
                .header("content-type"),
            Some("application/json")
        );
        assert!(smart["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("ES384")));
    }
);

secured!(scope_escalation_is_refused_with_403, |s| {
    s.register("reader", "system/Observation.rs", None).await;
    let token = s.token("reader", "system/Observation.rs").await;
    expect_status(&s.call(&token, "GET", "Observation", None).await, 200);
    // Writing with a read scope, and another type than the scope's.
    expect_status(
        &s.call(
            &token,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        403,
    );
    expect_status(&s.call(&token, "GET", "Patient", None).await, 403);
    expect_status(&s.call(&token, "GET", "Patient/a", None).await, 403);
    expect_status(&s.call(&token, "GET", "_history", None).await, 403);
    // A v2 scope without `r`: search is allowed, read is not.
    s.register("searcher", "system/Observation.s", None).await;
    let search_only = s.token("searcher", "system/Observation.s").await;
    expect_status(&s.call(&search_only, "GET", "Observation", None).await, 200);
    expect_status(
        &s.call(&search_only, "GET", "Observation/x", None).await,
        403,
    );
    // The audit trail needs its own scope: `*` does not reach it, and nobody writes it.
    s.register("all", "system/*.cruds", None).await;
    let all = s.token("all", "system/*.cruds").await;
    expect_status(&s.call(&all, "GET", "AuditEvent", None).await, 403);
    s.register("auditor", "system/AuditEvent.cruds", None).await;
    let auditor = s.token("auditor", "system/AuditEvent.cruds").await;
    let forged = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    expect_status(
        &s.call(&auditor, "POST", "AuditEvent", Some(&forged)).await,
        403,
    );
});

secured!(granular_scope_filters_cannot_be_bypassed, |s| {
    s.register("writer", "system/*.cruds", None).await;
    let writer = s.token("writer", "system/*.cruds").await;
    let vital = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
    let lab = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("a", "laboratory")),
        )
        .await,
        201,
    );
    let lab_id = lab["id"].as_str().unwrap();
    s.register(
        "vitals",
        "system/Observation.crus?category=vital-signs",
        None,
    )
    .await;
    let vitals = s
        .token("vitals", "system/Observation.crus?category=vital-signs")
        .await;
    let all = expect_status(&s.call(&vitals, "GET", "Observation", None).await, 200);
    assert_eq!(all["total"], 1, "{all}");
    assert_eq!(all["entry"][0]["resource"]["id"], vital["id"]);
    let asked = expect_status(
        &s.call(&vitals, "GET", "Observation?category=laboratory", None)
            .await,
        200,
    );
    assert_eq!(asked["total"], 0);
    expect_status(
        &s.call(&vitals, "GET", &format!("Observation/{lab_id}"), None)
            .await,
        404,
    );
    expect_status(
        &s.call(
            &vitals,
            "GET",
            &format!("Observation/{lab_id}/_history/1"),
            None,
        )
        .await,
        404,
    );
    expect_status(
        &s.call(
            &vitals,
            "GET",
            &format!("Observation/{lab_id}/_history"),
            None,
        )
        .await,
        404,
    );
    let type_history = expect_status(
        &s.call(&vitals, "GET", "Observation/_history", None).await,
        200,
    );
    let ids: Vec<&Value> = type_history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["id"])
        .collect();
    assert_eq!(ids, vec![&vital["id"]], "{type_history}");
    // Writing outside the filter, or turning a filtered resource into one: refused.
    expect_status(
        &s.call(
            &vitals,
            "POST",
            "Observation",
            Some(&observation("a", "laboratory")),
        )
        .await,
        403,
    );
    let mut relabel = observation("a", "laboratory");
    relabel["id"] = vital["id"].clone();
    expect_status(
        &s.call(
            &vitals,
            "PUT",
            &format!("Observation/{}", vital["id"].as_str().unwrap()),
            Some(&relabel),
        )
        .await,
        403,
    );
    // A resource outside the filter is one the token cannot see: it answers as an unknown id
    // would, and the token does not create with ids of its choosing (405).
    let mut lab_update = observation("a", "vital-signs");
    lab_update["id"] = json!(lab_id);
    expect_status(
        &s.call(
            &vitals,
            "PUT",
            &format!("Observation/{lab_id}"),
            Some(&lab_update),
        )
        .await,
        405,
    );
    expect_status(
        &s.call(
            &vitals,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
});

// ---- Patient-bound tokens -----------------------------------------------------------------

secured!(
    a_patient_bound_token_reads_nothing_of_another_patient,
    |s| {
        let (pgo, _, oa, ob) = two_patients(&s).await;
        let own = vec!["Observation/".to_owned() + &oa];
        let own_and_patient = {
            let mut v = vec![format!("Observation/{oa}"), "Patient/a".to_owned()];
            v.sort();
            v
        };
        // Single resources of b read as unknown.
        for path in [
            format!("Observation/{ob}"),
            "Patient/b".to_owned(),
            format!("Observation/{ob}/_history/1"),
            format!("Observation/{ob}/_history"),
        ] {
            expect_status(&s.call(&pgo, "GET", &path, None).await, 404);
        }
        expect_status(
            &s.call(&pgo, "GET", &format!("Observation/{oa}"), None)
                .await,
            200,
        );
        expect_status(&s.call(&pgo, "GET", "Patient/a", None).await, 200);
        // Searches, includes, chains, _has, compartments, history and $lastn see a's data only.
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("Observation", own.clone()),
            ("Observation?subject=Patient/b", vec![]),
            (
                "Observation?_include=Observation:subject",
                own_and_patient.clone(),
            ),
            (
                "Patient?_revinclude=Observation:subject",
                own_and_patient.clone(),
            ),
            ("Patient", vec!["Patient/a".into()]),
            ("Observation?subject:Patient.name=Bravo", vec![]),
            ("Observation?subject:Patient.name=Alpha", own.clone()),
            (
                "Patient?_has:Observation:subject:code=8867-4",
                vec!["Patient/a".into()],
            ),
            ("Patient/b/Observation", vec![]),
            ("Observation/_history", own.clone()),
            ("_history", own_and_patient.clone()),
            (
                "Observation/$lastn?code=http://loinc.org|8867-4",
                own.clone(),
            ),
        ];
        for (query, expected) in cases {
            let bundle = expect_status(&s.call(&pgo, "GET", query, None).await, 200);
            // (The Provenance of Patient a's creation, and the RiskAssessments the scoring
            // worker writes for a, are in a's compartment too.)
            let found: Vec<String> = ids(&bundle)
                .into_iter()
                .filter(|i| !i.starts_with("Provenance/") && !i.starts_with("RiskAssessment/"))
                .collect();
            assert_eq!(found, expected, "{query}: {bundle}");
            let entries = bundle["entry"].to_string();
            assert!(
                !entries.contains(&ob) && !entries.contains("Bravo"),
                "{query} leaks: {bundle}"
            );
        }
        // Paging links carry no other patient's data either.
        let page = expect_status(
            &s.call(&pgo, "GET", "Observation?_count=1&_total=accurate", None)
                .await,
            200,
        );
        assert!(
            page["link"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["relation"] != "next"),
            "{page}"
        );
        // A batch GET entry is checked like a request.
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Observation/{ob}")}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/b"}},
        ]});
        let answer = expect_status(&s.call(&pgo, "POST", "", Some(&batch)).await, 200);
        assert!(
            answer["entry"][0]["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("404"),
            "{answer}"
        );
        assert_eq!(answer["entry"][1]["resource"]["total"], 0, "{answer}");
        assert!(!answer.to_string().contains("Bravo"), "{answer}");
    }
);

secured!(a_patient_bound_token_writes_only_in_its_compartment, |s| {
    let (pgo, admin, oa, ob) = two_patients(&s).await;
    // Own data: fine, and stamped with the client.
    let created = expect_status(
        &s.call(
            &pgo,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
    assert_eq!(created["meta"]["source"], "urn:signaal:client:pgo");
    let mut update = observation("a", "vital-signs");
    update["id"] = json!(oa);
    expect_status(
        &s.call(&pgo, "PUT", &format!("Observation/{oa}"), Some(&update))
            .await,
        200,
    );
    // b's data, or moving data to b: refused.
    expect_status(
        &s.call(
            &pgo,
            "POST",
            "Observation",
            Some(&observation("b", "vital-signs")),
        )
        .await,
        403,
    );
    let mut steal = observation("a", "vital-signs");
    steal["id"] = json!(ob);
    // (Another patient's id answers as an unknown one: see
    // writes_to_another_patients_ids_answer_as_for_unknown_ids.)
    expect_status(
        &s.call(&pgo, "PUT", &format!("Observation/{ob}"), Some(&steal))
            .await,
        405,
    );
    let mut move_out = observation("b", "vital-signs");
    move_out["id"] = json!(oa);
    expect_status(
        &s.call(&pgo, "PUT", &format!("Observation/{oa}"), Some(&move_out))
            .await,
        403,
    );
    expect_status(
        &s.call(&pgo, "DELETE", &format!("Observation/{ob}"), None)
            .await,
        204,
    );
    expect_status(
        &s.call(&pgo, "DELETE", "Observation?subject=Patient/b", None)
            .await,
        204,
    );
    // Transaction entries: each is checked, and one bad entry rolls back the whole.
    let mut steal_entry = observation("a", "vital-signs");
    steal_entry["id"] = json!(ob);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("a", "vital-signs"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": steal_entry, "request": {"method": "PUT", "url": format!("Observation/{ob}")}},
    ]});
    let refused = s.call(&pgo, "POST", "", Some(&transaction)).await;
    assert!(
        refused.status >= 400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(!String::from_utf8_lossy(&refused.body).contains("Bravo"));
    // A conditional reference cannot find b.
    let mut by_identifier = observation("a", "vital-signs");
    by_identifier["subject"] = json!({"reference": "Patient?identifier=urn:test|b-ident"});
    let conditional = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": by_identifier, "request": {"method": "POST", "url": "Observation"}},
    ]});
    let refused = s.call(&pgo, "POST", "", Some(&conditional)).await;
    assert!(
        refused.status >= 400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    // b's Observation is as the admin wrote it, and b has no new data.
    let b_data = expect_status(
        &s.call(&admin, "GET", "Observation?subject=Patient/b", None)
            .await,
        200,
    );
    assert_eq!(ids(&b_data), vec![format!("Observation/{ob}")]);
    let b_obs = expect_status(
        &s.call(&admin, "GET", &format!("Observation/{ob}"), None)
            .await,
        200,
    );
    assert_eq!(b_obs["meta"]["versionId"], "1");
});

secured!(
    a_patient_bound_token_finds_only_what_its_patients_resources_contain,
    |s| {
        let (pgo, admin, _, _) = two_patients(&s).await;
        for (patient, name) in [("a", "Alpha"), ("b", "Bravo")] {
            let request = json!({
                "resourceType": "MedicationRequest", "id": format!("rx-{patient}"),
                "status": "active", "intent": "order",
                "contained": [{"resourceType": "Medication", "id": "med",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "aspirin"}],
                             "text": format!("aspirin for {name}")}}],
                "medicationReference": {"reference": "#med"},
                "subject": {"reference": format!("Patient/{patient}")}
            });
            let path = format!("MedicationRequest/rx-{patient}");
            expect_status(&s.call(&admin, "PUT", &path, Some(&request)).await, 201);
        }
        // The container's compartment decides: a's token finds what a's request contains only.
        for query in [
            "Medication?code=aspirin&_contained=true",
            "Medication?code=aspirin&_contained=true&_containedType=contained",
            "Medication?_contained=both&_containedType=contained&_total=accurate",
            // A chain into contained resources, too.
            "MedicationRequest?medication.code=aspirin",
        ] {
            let bundle = expect_status(&s.call(&pgo, "GET", query, None).await, 200);
            let entries = bundle["entry"].to_string();
            assert!(entries.contains("rx-a"), "{query}: {bundle}");
            assert!(
                !entries.contains("rx-b") && !entries.contains("Bravo"),
                "{query} leaks: {bundle}"
            );
        }
        // Containers may be of any type: a token that may search some types only cannot look
        // inside them.
        s.register("meds", "patient/Medication.rs", Some("a")).await;
        let meds = s.token("meds", "patient/Medication.rs").await;
        expect_status(
            &s.call(&meds, "GET", "Medication?code=aspirin", None).await,
            200,
        );
        expect_status(
            &s.call(
                &meds,
                "GET",
                "Medication?code=aspirin&_contained=true",
                None,
            )
            .await,
            403,
        );
    }
);

secured!(
    conditional_interactions_do_not_find_another_patients_resources,
    |s| {
        let (pgo, admin, _, ob) = two_patients(&s).await;
        // If-None-Exist matching only b's Observation: b's is not returned, a new one is made.
        let reply = s
            .server
            .client
            .send(
                "POST",
                "Observation",
                &[
                    ("authorization", &format!("Bearer {pgo}")),
                    ("if-none-exist", "subject=Patient/b"),
                ],
                Some(observation("a", "vital-signs").to_string().into_bytes()),
            )
            .await
            .unwrap();
        let created = expect_status(&reply, 201);
        assert_ne!(created["id"], json!(ob));
        assert!(!String::from_utf8_lossy(&reply.body).contains("Patient/b"));
        // A conditional update whose criteria match only b's Observation matches nothing (and
        // a patient-bound token does not create with it: see
        // writes_to_another_patients_ids_answer_as_for_unknown_ids).
        let replaced = s
            .call(
                &pgo,
                "PUT",
                "Observation?subject=Patient/b",
                Some(&observation("a", "vital-signs")),
            )
            .await;
        expect_status(&replaced, 405);
        assert!(!String::from_utf8_lossy(&replaced.body).contains(&ob));
        let b_obs = expect_status(
            &s.call(&admin, "GET", &format!("Observation/{ob}"), None)
                .await,
            200,
        );
        assert_eq!(b_obs["meta"]["versionId"], "1");
        assert_eq!(b_obs["subject"]["reference"], "Patient/b");
        // A patch by criteria matching only b's: nothing to patch.
        let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
        let patched = s
            .server
            .client
            .send(
                "PATCH",
                "Observation?subject=Patient/b",
                &[
                    ("authorization", &format!("Bearer {pgo}")),
                    ("content-type", "application/json-patch+json"),
                ],
                Some(patch.to_string().into_bytes()),
            )
            .await
            .unwrap();
        expect_status(&patched, 404);
        let b_obs = expect_status(
            &s.call(&admin, "GET", &format!("Observation/{ob}"), None)
                .await,
            200,
        );
        assert_eq!(b_obs["meta"]["versionId"], "1");
    }
);

// ---- Traces --------------------------------------------------------------------------------

secured!(every_write_has_its_provenance_and_source, |s| {
    s.register("writer", "system/*.cruds", None).await;
    let writer = s.token("writer", "system/*.cruds").await;
    let created = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["meta"]["source"], "urn:signaal:client:writer");
    let read = expect_status(
        &s.call(&writer, "GET", &format!("Observation/{id}"), None)
            .await,
        200,
    );
    assert_eq!(read["meta"]["source"], "urn:signaal:client:writer");
    let mut update = observation("a", "vital-signs");
    update["id"] = json!(id);
    expect_status(
        &s.call(&writer, "PUT", &format!("Observation/{id}"), Some(&update))
            .await,
        200,
    );
    expect_status(
        &s.call(&writer, "DELETE", &format!("Observation/{id}"), None)
            .await,
        204,
    );
    let provenance = expect_status(
        &s.call(
            &writer,
            "GET",
            &format!("Provenance?target=Observation/{id}&_sort=recorded"),
            None,
        )
        .await,
        200,
    );
    let entries = provenance["entry"].as_array().expect("provenances");
    assert_eq!(entries.len(), 3, "{provenance}");
    let mut seen: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let p = &e["resource"];
            assert_eq!(p["agent"][0]["who"]["identifier"]["value"], "writer");
            assert!(p["recorded"].is_string());
            (
                p["target"][0]["reference"].as_str().unwrap().to_owned(),
                p["activity"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (format!("Observation/{id}/_history/1"), "CREATE".to_owned()),
            (format!("Observation/{id}/_history/2"), "UPDATE".to_owned()),
            (format!("Observation/{id}/_history/3"), "DELETE".to_owned()),
        ]
    );
});

secured!(
    a_patient_bound_history_shows_its_own_deletions_and_no_others,
    |s| {
        let (pgo, admin, oa, ob) = two_patients(&s).await;
        expect_status(
            &s.call(&pgo, "DELETE", &format!("Observation/{oa}"), None)
                .await,
            204,
        );
        expect_status(
            &s.call(&admin, "DELETE", &format!("Observation/{ob}"), None)
                .await,
            204,
        );
        let deletion_of = |bundle: &Value, id: &str| {
            bundle["entry"].as_array().unwrap().iter().any(|e| {
                e["request"]["method"] == "DELETE"
                    && e["request"]["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&format!("Observation/{id}")))
            })
        };
        for path in [
            "Observation/_history".to_owned(),
            "_history".to_owned(),
            format!("Observation/{oa}/_history"),
        ] {
            let history = expect_status(&s.call(&pgo, "GET", &path, None).await, 200);
            assert!(deletion_of(&history, &oa), "{path}: {history}");
            assert!(
                !history.to_string().contains(&ob),
                "{path} leaks: {history}"
            );
        }
        expect_status(
            &s.call(&pgo, "GET", &format!("Observation/{ob}/_history"), None)
                .await,
            404,
        );
        // The system sees both deletions.
        let all = expect_status(
            &s.call(&admin, "GET", "Observation/_history", None).await,
            200,
        );
        assert!(deletion_of(&all, &oa) && deletion_of(&all, &ob), "{all}");
    }
);

secured!(
    writes_to_another_patients_ids_answer_as_for_unknown_ids,
    |s| {
        let (pgo, admin, _, ob) = two_patients(&s).await;
        // A deleted resource of b's, too.
        let gone = expect_status(
            &s.call(
                &admin,
                "POST",
                "Observation",
                Some(&observation("b", "vital-signs")),
            )
            .await,
            201,
        )["id"]
            .as_str()
            .unwrap()
            .to_owned();
        expect_status(
            &s.call(&admin, "DELETE", &format!("Observation/{gone}"), None)
                .await,
            204,
        );
        let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
        // What a write to an id answers: status and body, with the id itself blanked out.
        let answer = |id: String, reply: Reply| {
            let body = String::from_utf8_lossy(&reply.body).replace(&id, "ID");
            (reply.status, body)
        };
        for (foreign, unknown) in [
            (ob.clone(), "never-was".to_owned()),
            (gone.clone(), "never-was-2".to_owned()),
        ] {
            let mut body = observation("a", "vital-signs");
            let mut attempts = Vec::new();
            for id in [&foreign, &unknown] {
                body["id"] = json!(id);
                let path = format!("Observation/{id}");
                let put = s.call(&pgo, "PUT", &path, Some(&body)).await;
                let if_match = s
                    .server
                    .client
                    .send(
                        "PUT",
                        &path,
                        &[
                            ("authorization", &format!("Bearer {pgo}")),
                            ("if-match", "W/\"1\""),
                        ],
                        Some(body.to_string().into_bytes()),
                    )
                    .await
                    .unwrap();
                let patched = s
                    .server
                    .client
                    .send(
                        "PATCH",
                        &path,
                        &[
                            ("authorization", &format!("Bearer {pgo}")),
                            ("content-type", "application/json-patch+json"),
                        ],
                        Some(patch.to_string().into_bytes()),
                    )
                    .await
                    .unwrap();
                let deleted = s.call(&pgo, "DELETE", &path, None).await;
                attempts.push(vec![
                    answer(id.clone(), put),
                    answer(id.clone(), if_match),
                    answer(id.clone(), patched),
                    answer(id.clone(), deleted),
                ]);
            }
            let statuses: Vec<u16> = attempts[1].iter().map(|(status, _)| *status).collect();
            assert_eq!(statuses, vec![405, 412, 404, 204], "{:?}", attempts[1]);
            assert_eq!(
                attempts[0], attempts[1],
                "{foreign} answers differently from an unknown id"
            );
        }
        // Nothing of b's was changed, and no unknown id was created.
        let b_obs = expect_status(
            &s.call(&admin, "GET", &format!("Observation/{ob}"), None)
                .await,
            200,
        );
        assert_eq!(b_obs["meta"]["versionId"], "1");
        assert_eq!(b_obs["subject"]["reference"], "Patient/b");
        expect_status(
            &s.call(&admin, "GET", &format!("Observation/{gone}"), None)
                .await,
            410,
        );
        expect_status(
            &s.call(&admin, "GET", "Observation/never-was", None).await,
            404,
        );
    }
);

secured!(every_request_has_its_audit_event, |s| {
    let (pgo, _, oa, _) = two_patients(&s).await;
    s.register("auditor", "system/AuditEvent.rs", None).await;
    let auditor = s.token("auditor", "system/AuditEvent.rs").await;
    expect_status(
        &s.call(&pgo, "GET", &format!("Observation/{oa}"), None)
            .await,
        200,
    );
    expect_status(&s.call(&pgo, "GET", "Observation/nope", None).await, 404);
    expect_status(&s.server.client.get("Observation").await.unwrap(), 401);
    let read = audit_events(&s, &auditor, &format!("entity=Observation/{oa}"), 1).await;
    let event = &read["entry"][0]["resource"];
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], "pgo");
    assert_eq!(event["subtype"][0]["code"], "read");
    assert_eq!(event["action"], "R");
    assert_eq!(event["outcome"], "0");
    assert!(event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"]["reference"] == "Patient/a"));
    // The refused, anonymous request is audited; it is written behind the response, so it may
    // arrive after the other failures.
    audit_events_until(&s, &auditor, "outcome=4", |entries| {
        entries.iter().any(|e| {
            e["resource"]["agent"][0]["who"]["identifier"].is_null()
                && e["resource"]["outcomeDesc"] == "HTTP 401"
        })
    })
    .await;
});

secured!(token_requests_have_their_audit_event, |s| {
    s.register("auditor", "system/AuditEvent.rs", None).await;
    let auditor = s.token("auditor", "system/AuditEvent.rs").await;
    // Refused: a client that is not registered, and an assertion signed with an unknown key.
    let stranger = s
        .exchange(&sign_rs384("rsa-1", &s.claims("stranger")), "system/*.rs")
        .await;
    assert_eq!(stranger.status, 401);
    let unknown_key = s
        .exchange(
            &sign_rs384("no-such-kid", &s.claims("auditor")),
            "system/AuditEvent.rs",
        )
        .await;
    assert_eq!(unknown_key.status, 401);
    // The auditor's own token request (granted) and the two refusals.
    let logins = audit_events(&s, &auditor, "type=110114", 3).await;
    let events: Vec<&Value> = logins["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let of = |client: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| {
                e["agent"][0]["who"]["identifier"]["value"] == client && e["outcome"] == outcome
            })
            .count()
    };
    assert_eq!(of("auditor", "0"), 1, "the granted request: {logins}");
    assert_eq!(of("auditor", "4"), 1, "the refused request: {logins}");
    assert_eq!(of("stranger", "4"), 1, "the unknown client: {logins}");
    assert!(events.iter().all(
        |e| e["subtype"][0]["code"] == "110122" && e["entity"][0]["name"] == "POST /auth/token"
    ));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_flushed_on_shutdown() {
    let mut s = Secured::start(StoreKind::Sqlite).await.unwrap();
    s.register("writer", "system/*.cruds", None).await;
    let writer = s.token("writer", "system/*.cruds").await;
    for _ in 0..50 {
        expect_status(&s.call(&writer, "GET", "Observation", None).await, 200);
    }
    s.server.shut_down().await;
    let log = signaal::store::audit::open(&s.server.database_url)
        .await
        .unwrap();
    let query = signaal::store::audit::AuditQuery {
        count: 100,
        ..Default::default()
    };
    // The 50 requests and the token request before them.
    assert_eq!(log.search(&query).await.unwrap().len(), 51);
    log.close().await;
}

// ---- Traces of an open server -----------------------------------------------------------------

/// Polls (boundedly) a search on an open server until `done` holds for its entries.
async fn open_search_until(
    server: &TestServer,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = expect_status(&server.client.get(query).await.unwrap(), 200);
        let entries = last["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if done(entries) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{query} never became what was expected: {last}");
}

/// The Provenances of `reference`'s versions on an open server: (target, activity) for each
/// target that is a version of `reference` (a transaction's Provenance names other resources
/// too), sorted, after checking that each names the anonymous agent and no client.
async fn open_provenances(server: &TestServer, reference: &str) -> Vec<(String, String)> {
    let bundle = expect_status(
        &server
            .client
            .get(&format!("Provenance?target={reference}&_count=100"))
            .await
            .unwrap(),
        200,
    );
    let mut seen: Vec<(String, String)> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let p = &e["resource"];
            let who = &p["agent"][0]["who"];
            assert!(who["identifier"].is_null(), "no client: {p}");
            assert!(
                who["display"].as_str().unwrap().starts_with("anonymous"),
                "{p}"
            );
            assert!(p["meta"]["source"].is_null(), "no client URI: {p}");
            assert!(p["recorded"].is_string(), "{p}");
            let activity = p["activity"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned();
            let versions: Vec<(String, String)> = p["target"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t["reference"].as_str())
                .filter(|t| t.starts_with(&format!("{reference}/_history/")))
                .map(|t| (t.to_owned(), activity.clone()))
                .collect();
            assert!(!versions.is_empty(), "found by target={reference}: {p}");
            versions
        })
        .collect::<Vec<_>>()
        .concat();
    seen.sort();
    seen
}

both_stores!(
    an_open_server_records_the_provenance_of_every_write_with_an_anonymous_agent,
    |server| {
        // The source the client sent is kept: there is no client URI to set.
        let mut observation = observation("a", "vital-signs");
        observation["meta"] = json!({"source": "http://pgo.example/app"});
        let created = expect_status(
            &server
                .client
                .post("Observation", &observation)
                .await
                .unwrap(),
            201,
        );
        assert_eq!(created["meta"]["source"], "http://pgo.example/app");
        let id = created["id"].as_str().unwrap();
        let path = format!("Observation/{id}");
        let mut update = observation.clone();
        update["id"] = json!(id);
        expect_status(&server.client.put(&path, &update).await.unwrap(), 200);
        let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
        expect_status(
            &server
                .client
                .send(
                    "PATCH",
                    &path,
                    &[("content-type", "application/json-patch+json")],
                    Some(patch.to_string().into_bytes()),
                )
                .await
                .unwrap(),
            200,
        );
        expect_status(&server.client.delete(&path).await.unwrap(), 204);
        let version = |v: u32, activity: &str| (format!("{path}/_history/{v}"), activity.into());
        assert_eq!(
            open_provenances(&server, &path).await,
            vec![
                version(1, "CREATE"),
                version(2, "UPDATE"),
                version(3, "UPDATE"),
                version(4, "DELETE"),
            ]
        );
        // Each transaction entry, conditional ones too, is a target of the transaction's
        // Provenance.
        let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "t1"},
             "request": {"method": "PUT", "url": "Patient/t1"}},
            {"resource": {"resourceType": "Patient",
                          "identifier": [{"system": "urn:test", "value": "t2"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test|t2"}},
            {"resource": observation.clone(), "request": {"method": "POST", "url": "Observation"}},
        ]});
        let answer = expect_status(&server.client.post("", &transaction).await.unwrap(), 200);
        for entry in answer["entry"].as_array().unwrap() {
            let location = entry["response"]["location"].as_str().unwrap();
            let location = location
                .strip_prefix(&format!("{}/", server.base))
                .unwrap_or(location);
            let (resource, _) = location.split_once("/_history/").unwrap();
            assert_eq!(
                open_provenances(&server, resource).await,
                vec![(location.to_owned(), "CREATE".to_owned())],
                "{answer}"
            );
        }
        // A conditional update that matches the resource: its new version has its Provenance.
        let mut renamed = json!({"resourceType": "Patient", "id": "t1",
            "identifier": [{"system": "urn:test", "value": "t1"}]});
        expect_status(
            &server.client.put("Patient/t1", &renamed).await.unwrap(),
            200,
        );
        renamed["active"] = json!(true);
        expect_status(
            &server
                .client
                .put("Patient?identifier=urn:test|t1", &renamed)
                .await
                .unwrap(),
            200,
        );
        assert_eq!(
            open_provenances(&server, "Patient/t1").await,
            vec![
                ("Patient/t1/_history/1".to_owned(), "CREATE".to_owned()),
                ("Patient/t1/_history/2".to_owned(), "UPDATE".to_owned()),
                ("Patient/t1/_history/3".to_owned(), "UPDATE".to_owned()),
            ]
        );
    }
);

both_stores!(
    a_failed_write_on_an_open_server_leaves_no_provenance,
    |server| {
        let invalid = json!({"resourceType": "Observation", "id": "bad", "status": "no-such-status",
            "code": {"text": "x"}});
        expect_status(
            &server
                .client
                .put("Observation/bad", &invalid)
                .await
                .unwrap(),
            400,
        );
        // A good write has its Provenance (so the search below finds them)…
        expect_status(
            &server
                .client
                .put(
                    "Patient/written",
                    &json!({"resourceType": "Patient", "id": "written"}),
                )
                .await
                .unwrap(),
            201,
        );
        // …and a transaction that fails after writing its first entry (the second's If-Match
        // is checked when it is written) rolls back that entry's Provenance with it.
        let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "rolled-back"},
             "request": {"method": "PUT", "url": "Patient/rolled-back"}},
            {"resource": {"resourceType": "Patient", "id": "written", "active": true},
             "request": {"method": "PUT", "url": "Patient/written", "ifMatch": "W/\"7\""}},
        ]});
        expect_status(&server.client.post("", &transaction).await.unwrap(), 412);
        expect_status(
            &server.client.get("Patient/rolled-back").await.unwrap(),
            404,
        );
        assert_eq!(open_provenances(&server, "Observation/bad").await, vec![]);
        assert_eq!(
            open_provenances(&server, "Patient/rolled-back").await,
            vec![]
        );
        assert_eq!(
            open_provenances(&server, "Patient/written").await,
            vec![("Patient/written/_history/1".to_owned(), "CREATE".to_owned())]
        );
    }
);

both_stores!(
    every_request_to_an_open_server_has_its_audit_event_with_an_anonymous_agent,
    |server| {
        let created = expect_status(
            &server
                .client
                .post("Observation", &observation("a", "vital-signs"))
                .await
                .unwrap(),
            201,
        );
        let id = created["id"].as_str().unwrap();
        expect_status(
            &server
                .client
                .get(&format!("Observation/{id}"))
                .await
                .unwrap(),
            200,
        );
        let events = open_search_until(
            &server,
            &format!("AuditEvent?entity=Observation/{id}&_count=100"),
            |entries| entries.iter().any(|e| e["resource"]["action"] == "R"),
        )
        .await;
        let read = events["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|e| e["action"] == "R")
            .unwrap();
        assert_eq!(read["subtype"][0]["code"], "read", "{read}");
        assert_eq!(read["outcome"], "0", "{read}");
        let who = &read["agent"][0]["who"];
        assert!(who["identifier"].is_null(), "no client: {read}");
        assert_eq!(
            who["display"], "anonymous (open server: no access token required)",
            "{read}"
        );
        assert_eq!(read["agent"][0]["requestor"], true);
        // The create (its entity is the request line: the id was not in it), and a failure.
        expect_status(&server.client.get("Observation/nope").await.unwrap(), 404);
        open_search_until(&server, "AuditEvent?outcome=4&_count=100", |entries| {
            entries.iter().any(|e| {
                e["resource"]["outcomeDesc"] == "HTTP 404"
                    && e["resource"]["agent"][0]["who"]["identifier"].is_null()
            })
        })
        .await;
        open_search_until(&server, "AuditEvent?action=C&_count=100", |entries| {
            entries.iter().any(|e| {
                e["resource"]["subtype"][0]["code"] == "create"
                    && e["resource"]["entity"]
                        .to_string()
                        .contains("POST /Observation")
            })
        })
        .await;
    }
);

both_stores!(
    the_risk_scorers_writes_have_their_provenance_naming_the_scorer,
    |server| {
        expect_status(
            &server
                .client
                .put("Patient/p", &json!({"resourceType": "Patient", "id": "p"}))
                .await
                .unwrap(),
            201,
        );
        // A diagnosis: the Charlson model writes its assessment once there is a Condition.
        let condition = json!({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active",
            }]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "subject": {"reference": "Patient/p"},
        });
        expect_status(
            &server.client.post("Condition", &condition).await.unwrap(),
            201,
        );
        let assessments = open_search_until(&server, "RiskAssessment?subject=Patient/p", |e| {
            !e.is_empty()
        })
        .await;
        let assessment = &assessments["entry"][0]["resource"];
        let target = format!(
            "RiskAssessment/{}/_history/{}",
            assessment["id"].as_str().unwrap(),
            assessment["meta"]["versionId"].as_str().unwrap()
        );
        let provenance = expect_status(
            &server
                .client
                .get(&format!("Provenance?target={target}"))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(provenance["total"], 1, "{provenance}");
        let p = &provenance["entry"][0]["resource"];
        assert_eq!(
            p["agent"][0]["who"]["display"],
            "Signaal risk scoring (the server)"
        );
        assert!(p["agent"][0]["who"]["identifier"].is_null(), "{p}");
        assert!(assessment["meta"]["source"].is_null(), "{assessment}");
    }
);

// ---- Modes ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_on_another_address_than_loopback_refuses_to_start() {
    let (database_url, _dir) = common::fresh_database(StoreKind::Sqlite).await.unwrap();
    let settings = signaal::server::Settings::new("0.0.0.0:0".parse().unwrap(), database_url);
    let error = signaal::server::start(&settings)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("without authorization"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loopback_server_requires_tokens_once_a_client_is_registered() {
    let server = TestServer::start(StoreKind::Sqlite).await.unwrap();
    expect_status(&server.client.get("Observation").await.unwrap(), 200);
    let (_, clients) = signaal::store::open_with_auth(&server.database_url)
        .await
        .unwrap();
    clients
        .add_client(&ClientRecord {
            id: "first".into(),
            name: "first".into(),
            jwks: Some(fixture("client.jwks.json")),
            jwks_url: None,
            scope: "system/*.read".into(),
            patient: None,
            created: 0,
        })
        .await
        .unwrap();
    for _ in 0..100 {
        if server.client.get("Observation").await.unwrap().status == 401 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server still answers without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_trusted_issuer_are_honoured_with_their_patient_and_scope() {
    let issuer = "http://login.example.org";
    let s = Secured::start_with(StoreKind::Sqlite, |settings| {
        settings.auth.trusted_issuer = Some(issuer.into());
        settings.auth.trusted_jwks = Some(format!("{FIXTURES}/other.jwks.json"));
    })
    .await
    .unwrap();
    let (_, _, oa, _) = two_patients(&s).await;
    let claims = |iss: &str| {
        json!({"iss": iss, "aud": s.server.base, "exp": now() + 120, "sub": "user-17",
               "client_id": "portal", "scope": "patient/Observation.rs", "patient": "a"})
    };
    let portal = sign(Algorithm::RS384, "rsa-2", "other-rsa.pem", &claims(issuer));
    let seen = expect_status(&s.call(&portal, "GET", "Observation", None).await, 200);
    assert_eq!(ids(&seen), vec![format!("Observation/{oa}")]);
    expect_status(&s.call(&portal, "GET", "Patient/a", None).await, 403);
    let impostor = sign(
        Algorithm::RS384,
        "rsa-2",
        "other-rsa.pem",
        &claims("http://evil.example.org"),
    );
    expect_status(&s.call(&impostor, "GET", "Observation", None).await, 401);
}

// ---- The example ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_client_example_pushes_a_measurement() {
    let s = Secured::start(StoreKind::Sqlite).await.unwrap();
    let work = common::TempDir::new();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/backend-client/push-measurement.sh"
    );
    let mut command = std::process::Command::new("bash");
    command
        .arg(script)
        .env("SIGNAAL", env!("CARGO_BIN_EXE_signaal"))
        .env("DATABASE", &s.server.database_url)
        .env("SERVER", s.server.base.trim_end_matches("/fhir"))
        .env("WORK", &work.0);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pushed: Value =
        serde_json::from_str(stdout.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(pushed["resourceType"], "Observation", "{stdout}");
    assert_eq!(pushed["meta"]["source"], "urn:signaal:client:pgo-vendor");
    s.register("admin", "system/*.cruds", None).await;
    let admin = s.token("admin", "system/*.cruds").await;
    let id = pushed["id"].as_str().unwrap();
    expect_status(
        &s.call(&admin, "GET", &format!("Observation/{id}"), None)
            .await,
        200,
    );
    let provenance = expect_status(
        &s.call(
            &admin,
            "GET",
            &format!("Provenance?target=Observation/{id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(provenance["total"], 1, "{provenance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_command_adds_lists_and_removes_clients() {
    let (database, _dir) = common::fresh_database(StoreKind::Sqlite).await.unwrap();
    let jwks = format!("{FIXTURES}/client.jwks.json");
    let signaal = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_signaal"))
            .arg("client")
            .args(args)
            .args(["--database", &database])
            .output()
            .expect("run signaal client");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let add = [
        "add",
        "--id",
        "coach",
        "--name",
        "Coach app",
        "--jwks",
        &jwks,
    ];
    assert!(
        signaal(
            &[
                &add[..],
                &[
                    "--scope",
                    "patient/Observation.rs",
                    "--patient",
                    "Patient/p1"
                ]
            ]
            .concat()
        )
        .0
    );
    // A duplicate id, system scopes for a patient-bound client, unknown types: refused.
    assert!(
        !signaal(
            &[
                &add[..],
                &["--scope", "patient/Observation.rs", "--patient", "p1"]
            ]
            .concat()
        )
        .0
    );
    let other = ["add", "--id", "other", "--name", "Other", "--jwks", &jwks];
    assert!(
        !signaal(
            &[
                &other[..],
                &["--scope", "system/Observation.rs", "--patient", "p1"]
            ]
            .concat()
        )
        .0
    );
    assert!(!signaal(&[&other[..], &["--scope", "system/Nonsense.rs"]].concat()).0);
    let (ok, listed) = signaal(&["list"]);
    assert!(ok);
    assert!(
        listed.contains("coach\tCoach app\tPatient/p1\tpatient/Observation.rs"),
        "{listed}"
    );
    assert!(!listed.contains("other"));
    assert!(signaal(&["remove", "coach"]).0);
    assert!(!signaal(&["remove", "coach"]).0);
    assert_eq!(signaal(&["list"]).1, "");
}

/// A client that publishes its JWKS at a URL: fetched, cached, and fetched again for a new kid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_and_refetched_for_a_rotated_key() {
    use std::sync::Mutex;
    let published = Arc::new(Mutex::new(fixture("client.jwks.json")));
    let serving = published.clone();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let serving = serving.clone();
            async move { serving.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let s = Secured::start(StoreKind::Sqlite).await.unwrap();
    s.clients
        .add_client(&ClientRecord {
            id: "hospital".into(),
            name: "Hospital EHR".into(),
            jwks: None,
            jwks_url: Some(jwks_url),
            scope: "system/Observation.rs".into(),
            patient: None,
            created: 0,
        })
        .await
        .unwrap();
    let scope = "system/Observation.rs";
    let rotated = |s: &Secured| {
        sign(
            Algorithm::RS384,
            "rsa-2",
            "other-rsa.pem",
            &s.claims("hospital"),
        )
    };
    assert_eq!(
        s.exchange(&sign_rs384("rsa-1", &s.claims("hospital")), scope)
            .await
            .status,
        200
    );
    // A kid the published JWKS does not have is refused…
    assert_eq!(s.exchange(&rotated(&s), scope).await.status, 401);
    // …until the client publishes it (the server refetches at most once a second).
    *published.lock().unwrap() = fixture("other.jwks.json");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(s.exchange(&rotated(&s), scope).await.status, 200);
}

/// Serves `body` as the answer to every request over TLS (the fixture certificate for
/// 127.0.0.1, issued by the fixture CA `tls-ca.pem`); returns the https:// URL of the JWKS.
async fn serve_jwks_over_tls(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{FIXTURES}/tls-server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/tls-server.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                // An untrusting client breaks off the handshake: nothing to answer then.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

/// A hospital client whose JWKS is published at `jwks_url`.
async fn register_hospital(s: &Secured, jwks_url: String) {
    s.clients
        .add_client(&ClientRecord {
            id: "hospital".into(),
            name: "Hospital EHR".into(),
            jwks: None,
            jwks_url: Some(jwks_url),
            scope: "system/Observation.rs".into(),
            patient: None,
            created: 0,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_over_https_with_the_certificate_verified() {
    let jwks_url = serve_jwks_over_tls(fixture("client.jwks.json")).await;
    let assertion = |s: &Secured| sign_rs384("rsa-1", &s.claims("hospital"));
    // Trusting the CA that issued the JWKS server's certificate (--jwks-ca): the keys are used.
    let ca = format!("{FIXTURES}/tls-ca.pem");
    let trusting = Secured::start_with(StoreKind::Sqlite, |settings| {
        settings.auth.jwks_ca = Some(ca)
    })
    .await
    .unwrap();
    register_hospital(&trusting, jwks_url.clone()).await;
    let granted = trusting
        .exchange(&assertion(&trusting), "system/Observation.rs")
        .await;
    assert_eq!(
        granted.status,
        200,
        "{}",
        String::from_utf8_lossy(&granted.body)
    );
    // With only the public web roots the certificate is not trusted: no keys, no token.
    let untrusting = Secured::start(StoreKind::Sqlite).await.unwrap();
    register_hospital(&untrusting, jwks_url).await;
    let refused = untrusting
        .exchange(&assertion(&untrusting), "system/Observation.rs")
        .await;
    assert_eq!(refused.status, 401);
    // The client is told only that it was not authenticated; the audit trail says why.
    assert_eq!(
        refused.json()["error_description"],
        signaal::auth::token::NOT_AUTHENTICATED
    );
    untrusting
        .register("auditor", "system/AuditEvent.rs", None)
        .await;
    let auditor = untrusting.token("auditor", "system/AuditEvent.rs").await;
    audit_events_until(&untrusting, &auditor, "type=110114&outcome=4", |entries| {
        entries.iter().any(|e| {
            e["resource"]["outcomeDesc"]
                .as_str()
                .is_some_and(|d| d.contains("certificate"))
        })
    })
    .await;
}

// ---- $reindex -------------------------------------------------------------------------------

secured!(
    reindex_needs_write_access_to_every_type_and_runs_as_the_server,
    |s| {
        s.register("admin", "system/*.write", None).await;
        s.register("reader", "system/*.read", None).await;
        let admin = s.token("admin", "system/*.write").await;
        let reader = s.token("reader", "system/*.read").await;
        for respond_async in [false, true] {
            let reply = reindex_call(&s, &reader, "POST", "$reindex", respond_async).await;
            expect_status(&reply, 403);
        }
        // Write access to every type is enough: the run reads every type (the audit trail
        // too) as the server, not through the client's (absent) search scopes.
        let reply = reindex_call(&s, &admin, "POST", "$reindex", false).await;
        assert_eq!(expect_status(&reply, 200)["resourceType"], "Parameters");

        let reply = reindex_call(&s, &admin, "POST", "$reindex", true).await;
        expect_status(&reply, 202);
        let status = reply.header("content-location").unwrap().to_owned();
        // Only a client that may reindex polls or cancels.
        expect_status(&reindex_call(&s, &reader, "GET", &status, false).await, 403);
        expect_status(
            &reindex_call(&s, &reader, "DELETE", &status, false).await,
            403,
        );
        let mut done = None;
        for _ in 0..2000 {
            let reply = reindex_call(&s, &admin, "GET", &status, false).await;
            if reply.status == 200 {
                done = Some(reply.json());
                break;
            }
            expect_status(&reply, 202);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let result = done.expect("the job finishes");
        assert_eq!(result["resourceType"], "Parameters");
    }
);
