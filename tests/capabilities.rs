//! The CapabilityStatement (`GET [base]/metadata`) says what the server does, and clients can
//! trim it with `_summary` and `_elements`.

mod common;

use common::{expect_status, StoreKind, TestServer};
use serde_json::Value;

async fn metadata(server: &TestServer, query: &str) -> Value {
    expect_status(
        &server
            .client
            .get(&format!("metadata{query}"))
            .await
            .unwrap(),
        200,
    )
}

fn resource<'a>(statement: &'a Value, rtype: &str) -> &'a Value {
    statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == rtype)
        .unwrap_or_else(|| panic!("{rtype} is listed"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

both_stores!(
    search_include_and_rev_include_list_what_include_accepts,
    |server| {
        let statement = metadata(&server, "").await;
        let flag = resource(&statement, "Flag");
        let includes = strings(&flag["searchInclude"]);
        assert!(includes.contains(&"Flag:subject"), "{includes:?}");
        assert!(includes.contains(&"*"), "{includes:?}");
        let patient = resource(&statement, "Patient");
        let rev = strings(&patient["searchRevInclude"]);
        for name in [
            "Flag:subject",
            "RiskAssessment:subject",
            "Observation:patient",
        ] {
            assert!(rev.contains(&name), "{name}: {rev:?}");
        }
        // What is listed works: a search with each of the Patient's reverse includes is 200.
        for name in rev.iter().take(25) {
            let reply = server
                .client
                .get(&format!("Patient?_revinclude={name}"))
                .await
                .unwrap();
            expect_status(&reply, 200);
        }
    }
);

both_stores!(patch_formats_and_operations_are_listed, |server| {
    let statement = metadata(&server, "").await;
    let formats = strings(&statement["patchFormat"]);
    assert_eq!(
        formats,
        [
            "application/json-patch+json",
            "application/xml-patch+xml",
            "application/fhir+json",
            "application/fhir+xml"
        ]
    );
    let operations = |rtype: &str| -> Vec<String> {
        resource(&statement, rtype)["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(operations("Observation").contains(&"lastn".to_owned()));
    assert!(operations("Practitioner").contains(&"worklist".to_owned()));
    assert!(operations("Condition").contains(&"reindex".to_owned()));
});

#[tokio::test]
async fn a_server_that_requires_tokens_names_its_token_endpoint_in_the_smart_extension() {
    let server = TestServer::start_configured(StoreKind::Sqlite, |s| s.auth.required = true)
        .await
        .unwrap();
    let statement = metadata(&server, "").await;
    let security = &statement["rest"][0]["security"];
    let oauth = security["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .expect("the SMART oauth-uris extension");
    let token = oauth["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "token")
        .expect("the token endpoint");
    assert!(token["valueUri"].as_str().unwrap().ends_with("/auth/token"));
}

both_stores!(
    summary_true_on_metadata_keeps_the_summary_elements,
    |server| {
        let full = metadata(&server, "").await;
        let summary = metadata(&server, "?_summary=true").await;
        assert_eq!(summary["resourceType"], "CapabilityStatement");
        assert_eq!(summary["fhirVersion"], "4.0.1");
        assert!(summary["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "SUBSETTED"));
        // searchInclude is not a summary element; the resource types are.
        let patient = resource(&summary, "Patient");
        assert!(patient.get("searchInclude").is_none(), "{patient}");
        assert!(
            summary.to_string().len() < full.to_string().len() / 2,
            "the summary is much smaller"
        );
        let count = server.client.get("metadata?_summary=count").await.unwrap();
        expect_status(&count, 400);
    }
);

both_stores!(
    elements_on_metadata_keeps_only_the_named_elements,
    |server| {
        let trimmed = metadata(&server, "?_elements=fhirVersion,format").await;
        assert_eq!(trimmed["fhirVersion"], "4.0.1");
        assert!(trimmed["format"].is_array());
        assert!(trimmed.get("rest").is_none(), "{trimmed}");
        assert!(trimmed.get("software").is_none(), "{trimmed}");
        expect_status(
            &server
                .client
                .get("metadata?_elements=rest.mode")
                .await
                .unwrap(),
            400,
        );
    }
);
