//! FHIR search (search page): token `:text` and `:of-type`, reference `:identifier`, composite
//! parameters, and the 400s of malformed searches, one behaviour per test, on both stores.

mod common;

use common::{ids, put, refused, TestServer};
use serde_json::{json, Value};

const LOINC: &str = "http://loinc.org";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

fn identifier(type_code: &str, system: &str, value: &str) -> Value {
    json!({"type": {"coding": [{"system": V2_0203, "code": type_code}]}, "system": system, "value": value})
}

fn observation(id: &str, code: Value, rest: Value) -> Value {
    let mut obs = json!({"resourceType": "Observation", "id": id, "status": "final", "code": code});
    for (k, v) in rest.as_object().unwrap() {
        obs[k] = v.clone();
    }
    obs
}

fn loinc(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": LOINC, "code": code, "display": display}]})
}

fn mmhg(value: f64) -> Value {
    json!({"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"})
}

async fn fixtures(server: &TestServer) {
    let mut mr = identifier("MR", "urn:hospital", "123");
    mr["type"]["text"] = json!("Medisch dossiernummer");
    put(server, json!({"resourceType": "Patient", "id": "p1", "identifier": [mr, identifier("SS", "urn:bsn", "999")]})).await;
    // The same values as p1, but each under the other type.
    put(server, json!({"resourceType": "Patient", "id": "p2", "identifier": [identifier("MR", "urn:hospital", "999"), identifier("SS", "urn:bsn", "123")]})).await;
    let mut systolic = loinc("8480-6", "Systolic blood pressure");
    systolic["text"] = json!("Bloeddruk systolisch");
    put(
        server,
        observation(
            "high",
            systolic,
            json!({"valueQuantity": mmhg(150.0), "subject": {"identifier": {"system": "urn:hospital", "value": "123"}}}),
        ),
    )
    .await;
    put(
        server,
        observation(
            "normal",
            loinc("8480-6", "Systolic blood pressure"),
            json!({"valueQuantity": mmhg(130.0), "subject": {"reference": "Patient/p1", "identifier": {"system": "urn:hospital", "value": "456"}}}),
        ),
    )
    .await;
    // A panel: systolic 120 in one component, diastolic 145 in another.
    put(
        server,
        observation(
            "panel",
            loinc("85354-9", "Blood pressure panel"),
            json!({"component": [
                {"code": loinc("8480-6", "Systolic blood pressure"), "valueQuantity": mmhg(120.0)},
                {"code": loinc("8462-4", "Diastolic blood pressure"), "valueQuantity": mmhg(145.0)}
            ]}),
        ),
    )
    .await;
    put(
        server,
        observation(
            "covid",
            loinc("94500-6", "SARS-CoV-2 RNA"),
            json!({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}]}}),
        ),
    )
    .await;
    put(
        server,
        observation(
            "onset",
            loinc("11368-8", "Illness onset date"),
            json!({"valueDateTime": "2024-02-10"}),
        ),
    )
    .await;
    put(
        server,
        observation(
            "remark",
            loinc("8251-1", "Service comment"),
            json!({"valueString": "Patiënt voelt zich goed"}),
        ),
    )
    .await;
}

both_stores!(
    token_text_matches_display_and_text_ignoring_case_and_accents,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ids(&server, "Observation?code:text=systolic").await,
            vec!["high", "normal"]
        );
        // CodeableConcept.text, whatever the case and accents.
        assert_eq!(
            ids(&server, "Observation?code:text=BLOÉDDRUK").await,
            vec!["high"]
        );
        // Starts with, like a string search.
        assert!(ids(&server, "Observation?code:text=pressure")
            .await
            .is_empty());
        // An Identifier's type text.
        assert_eq!(
            ids(&server, "Patient?identifier:text=medisch").await,
            vec!["p1"]
        );
    }
);

both_stores!(
    identifier_of_type_matches_type_and_value_of_one_identifier,
    |server| {
        fixtures(&server).await;
        let query = format!("Patient?identifier:of-type={V2_0203}|MR|123");
        assert_eq!(ids(&server, &query).await, vec!["p1"]);
        let query = format!("Patient?identifier:of-type={V2_0203}|SS|123");
        assert_eq!(ids(&server, &query).await, vec!["p2"]);
        let query = format!("Patient?identifier:of-type={V2_0203}|MR|999,{V2_0203}|SS|999");
        assert_eq!(ids(&server, &query).await, vec!["p1", "p2"]);
        assert!(ids(&server, "Patient?identifier:of-type=urn:other|MR|123")
            .await
            .is_empty());
    }
);

both_stores!(identifier_of_type_needs_system_code_and_value, |server| {
    let message = refused(&server, "Patient?identifier:of-type=MR|123").await;
    assert!(message.contains("system|code|value"), "{message}");
});

both_stores!(
    reference_identifier_matches_the_references_identifier,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ids(&server, "Observation?subject:identifier=urn:hospital|123").await,
            vec!["high"]
        );
        assert_eq!(
            ids(&server, "Observation?subject:identifier=urn:hospital|456").await,
            vec!["normal"]
        );
        assert_eq!(
            ids(&server, "Observation?subject:identifier=123").await,
            vec!["high"]
        );
        // Not the literal reference.
        assert!(ids(&server, "Observation?subject:identifier=p1")
            .await
            .is_empty());
    }
);

both_stores!(
    composite_code_value_quantity_matches_code_and_value,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ids(
                &server,
                "Observation?code-value-quantity=http://loinc.org|8480-6$gt140"
            )
            .await,
            vec!["high"]
        );
        assert_eq!(
            ids(&server, "Observation?code-value-quantity=8480-6$lt140").await,
            vec!["normal"]
        );
        assert_eq!(
            ids(
                &server,
                "Observation?code-value-quantity=8480-6$150|http://unitsofmeasure.org|mm[Hg]"
            )
            .await,
            vec!["high"]
        );
        // Comma: either value.
        assert_eq!(
            ids(
                &server,
                "Observation?code-value-quantity=8480-6$130,8480-6$150"
            )
            .await,
            vec!["high", "normal"]
        );
    }
);

both_stores!(composite_components_come_from_the_same_element, |server| {
    fixtures(&server).await;
    // The panel has systolic 120 and diastolic 145: no single component is systolic > 140.
    assert!(ids(
        &server,
        "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140"
    )
    .await
    .is_empty());
    assert_eq!(
        ids(
            &server,
            "Observation?component-code-value-quantity=http://loinc.org|8462-4$gt140"
        )
        .await,
        vec!["panel"]
    );
    assert_eq!(
        ids(
            &server,
            "Observation?component-code-value-quantity=8480-6$120"
        )
        .await,
        vec!["panel"]
    );
});

both_stores!(
    combo_composite_looks_at_the_observation_and_its_components,
    |server| {
        fixtures(&server).await;
        assert_eq!(
            ids(
                &server,
                "Observation?combo-code-value-quantity=8480-6$ge120"
            )
            .await,
            vec!["high", "normal", "panel"]
        );
        assert_eq!(
            ids(
                &server,
                "Observation?combo-code-value-quantity=8480-6$gt140"
            )
            .await,
            vec!["high"]
        );
    }
);

both_stores!(composite_concept_date_and_string_values, |server| {
    fixtures(&server).await;
    assert_eq!(
        ids(
            &server,
            "Observation?code-value-concept=http://loinc.org|94500-6$http://snomed.info/sct|260385009"
        )
        .await,
        vec!["covid"]
    );
    assert!(ids(
        &server,
        "Observation?code-value-concept=94500-6$http://snomed.info/sct|10828004"
    )
    .await
    .is_empty());
    assert_eq!(
        ids(&server, "Observation?code-value-date=11368-8$ge2024-02").await,
        vec!["onset"]
    );
    assert!(
        ids(&server, "Observation?code-value-date=11368-8$lt2024-02-10")
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&server, "Observation?code-value-string=8251-1$patient").await,
        vec!["remark"]
    );
});

both_stores!(malformed_composite_values_are_refused, |server| {
    for query in [
        "Observation?code-value-quantity=8480-6",
        "Observation?code-value-quantity=8480-6$gt140$3",
        "Observation?code-value-quantity=$gt140",
        "Observation?code-value-quantity=8480-6$gtabc",
        "Observation?code-value-date=8480-6$2024-13-45",
    ] {
        refused(&server, query).await;
    }
});

both_stores!(
    modifiers_on_the_wrong_parameter_type_are_refused,
    |server| {
        for (query, modifier) in [
            ("Patient?birthdate:exact=1950", ":exact"),
            ("Patient?name:text=jan", ":text"),
            ("Patient?gender:contains=ma", ":contains"),
            ("Observation?value-quantity:below=5", ":below"),
            ("Observation?subject:of-type=a|b|c", ":of-type"),
            ("Observation?code-value-quantity:exact=8480-6$1", ":exact"),
            ("Patient?name:Patient=jan", ":Patient"),
        ] {
            let message = refused(&server, query).await;
            assert!(message.contains(modifier), "{query}: {message}");
        }
    }
);

both_stores!(unknown_prefixes_are_refused, |server| {
    for query in [
        "Patient?birthdate=xx1950",
        "Observation?value-quantity=zz5",
        "RiskAssessment?probability=qq0.5",
        "Observation?code-value-quantity=8480-6$xx140",
    ] {
        refused(&server, query).await;
    }
});
