//! Quantity search in UCUM canonical units (search page, "quantity"): a search in one UCUM unit
//! finds values stored in any commensurable UCUM unit, never incommensurable ones; other unit
//! systems match their `system|code` exactly. On both stores.

mod common;

use common::{ids, put, TestServer};
use serde_json::{json, Value};

const UCUM: &str = "http://unitsofmeasure.org";

fn observation(id: &str, value: Value, system: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "15074-8"}]},
        "valueQuantity": {"value": value, "unit": code, "system": system, "code": code}
    })
}

/// Glucose in several units: the same 5.4 mmol/L three ways, and others around it.
async fn glucose(server: &TestServer) {
    put(server, observation("umol", json!(5400), UCUM, "umol/L")).await;
    put(server, observation("mmol", json!(5.4), UCUM, "mmol/L")).await;
    put(server, observation("high", json!(6.1), UCUM, "mmol/L")).await;
    put(server, observation("edge-in", json!(5449), UCUM, "umol/L")).await;
    put(server, observation("edge-out", json!(5450), UCUM, "umol/L")).await;
    put(server, observation("mass", json!(97), UCUM, "mg/dL")).await;
    put(
        server,
        observation("local", json!(5.4), "http://example.org/units", "mmol/L"),
    )
    .await;
}

fn q(value: &str) -> String {
    format!("Observation?value-quantity={value}")
}

both_stores!(ucum_comparison_is_in_canonical_units, |server| {
    glucose(&server).await;
    assert_eq!(
        ids(&server, &q(&format!("ge5.4|{UCUM}|mmol/L"))).await,
        vec!["edge-in", "edge-out", "high", "mmol", "umol"]
    );
    assert_eq!(
        ids(&server, &q(&format!("lt5.45|{UCUM}|mmol/L"))).await,
        vec!["edge-in", "mmol", "umol"]
    );
    assert_eq!(
        ids(&server, &q(&format!("gt6000|{UCUM}|umol/L"))).await,
        vec!["high"]
    );
});

both_stores!(
    ucum_equality_uses_the_precision_range_in_canonical_units,
    |server| {
        glucose(&server).await;
        // 5.4 mmol/L stands for [5.35, 5.45) mmol/L = [5350, 5450) umol/L.
        assert_eq!(
            ids(&server, &q(&format!("5.4|{UCUM}|mmol/L"))).await,
            vec!["edge-in", "mmol", "umol"]
        );
        // 5400 umol/L stands for [5399.5, 5400.5) umol/L.
        assert_eq!(
            ids(&server, &q(&format!("5400|{UCUM}|umol/L"))).await,
            vec!["mmol", "umol"]
        );
        // 5 mmol/L stands for [4.5, 5.5) mmol/L.
        assert_eq!(
            ids(&server, &q(&format!("5|{UCUM}|mmol/L"))).await,
            vec!["edge-in", "edge-out", "mmol", "umol"]
        );
        assert_eq!(
            ids(&server, &q(&format!("ne5.4|{UCUM}|mmol/L"))).await,
            vec!["edge-out", "high"]
        );
    }
);

both_stores!(incommensurable_ucum_units_never_match, |server| {
    glucose(&server).await;
    // Mass concentration against substance concentration: UCUM defines no molar mass.
    assert!(ids(&server, &q(&format!("ge0|{UCUM}|mmol/L")))
        .await
        .iter()
        .all(|id| id != "mass"));
    assert_eq!(
        ids(&server, &q(&format!("ge0|{UCUM}|mg/dL"))).await,
        vec!["mass"]
    );
    assert_eq!(
        ids(&server, &q(&format!("0.97|{UCUM}|g/L"))).await,
        vec!["mass"]
    );
    assert!(ids(&server, &q(&format!("ge0|{UCUM}|kg"))).await.is_empty());
});

both_stores!(other_unit_systems_match_system_and_code_exactly, |server| {
    glucose(&server).await;
    assert_eq!(
        ids(&server, &q("5.4|http://example.org/units|mmol/L")).await,
        vec!["local"]
    );
    assert!(ids(&server, &q("5400|http://example.org/units|umol/L"))
        .await
        .is_empty());
});

both_stores!(temperatures_compare_on_their_scales, |server| {
    put(&server, observation("c", json!(37), UCUM, "Cel")).await;
    put(&server, observation("f", json!(98.6), UCUM, "[degF]")).await;
    put(&server, observation("k", json!(300), UCUM, "K")).await;
    assert_eq!(
        ids(&server, &q(&format!("37|{UCUM}|Cel"))).await,
        vec!["c", "f"]
    );
    assert_eq!(
        ids(&server, &q(&format!("gt90|{UCUM}|%5BdegF%5D"))).await,
        vec!["c", "f"]
    );
    assert_eq!(
        ids(&server, &q(&format!("lt30|{UCUM}|Cel"))).await,
        vec!["k"]
    );
});

both_stores!(units_ucum_cannot_convert_are_matched_as_written, |server| {
    put(&server, observation("ph", json!(7.4), UCUM, "[pH]")).await;
    assert_eq!(
        ids(&server, &q(&format!("7.4|{UCUM}|%5BpH%5D"))).await,
        vec!["ph"]
    );
});

both_stores!(annotations_and_factors_are_understood, |server| {
    put(&server, observation("wbc", json!(7.2), UCUM, "10*3/uL")).await;
    put(
        &server,
        observation("wbc-l", json!(7200000000u64), UCUM, "/L"),
    )
    .await;
    assert_eq!(
        ids(&server, &q(&format!("7.2|{UCUM}|10*9/L"))).await,
        vec!["wbc", "wbc-l"]
    );
    assert_eq!(
        ids(&server, &q(&format!("7.2|{UCUM}|10*3%7Bcells%7D/uL"))).await,
        vec!["wbc", "wbc-l"]
    );
});
