//! What the server does with input it must refuse: every refusal is a 4xx OperationOutcome
//! (never a 500, never a leak of internals), and no refused write leaves anything behind.

mod common;

use std::time::Duration;

use common::{expect_status, patient, send_json, without_audit_events, StoreKind, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A valid Patient.
fn jansen() -> Value {
    patient().family("Jansen").json()
}

async fn post_raw(server: &TestServer, path: &str, body: &[u8]) -> signaal::client::Reply {
    server
        .client
        .send("POST", path, &[], Some(body.to_vec()))
        .await
        .unwrap()
}

/// Nothing was written: the system history holds no resource and no Provenance, only the
/// AuditEvents of the requests (a page big enough that they push nothing off it).
async fn assert_nothing_written(server: &TestServer) {
    let history = expect_status(
        &server.client.get("_history?_count=1000").await.unwrap(),
        200,
    );
    assert!(
        without_audit_events(&history).is_empty(),
        "a refused write left something behind: {history}"
    );
}

/// The issue expressions of an OperationOutcome.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// Posts an invalid Patient: 400, an issue naming `element`, and nothing stored.
async fn refused_at(server: &TestServer, resource: Value, element: &str) {
    let reply = server.client.post("Patient", &resource).await.unwrap();
    let outcome = expect_status(&reply, 400);
    let found = expressions(&outcome);
    assert!(
        found.iter().any(|e| e == element),
        "an issue names {element}: {outcome}"
    );
    assert_nothing_written(server).await;
}

// ---------------------------------------------------------------------------------------------
// Bodies that are not resources
// ---------------------------------------------------------------------------------------------

both_stores!(malformed_json_is_400, |server| {
    let reply = post_raw(&server, "Patient", br#"{"resourceType": "Patient","#).await;
    expect_status(&reply, 400);
    assert_nothing_written(&server).await;
});

both_stores!(an_empty_body_is_400, |server| {
    expect_status(&post_raw(&server, "Patient", b"").await, 400);
});

both_stores!(json_that_is_not_an_object_is_400, |server| {
    for body in [
        &b"[{\"resourceType\": \"Patient\"}]"[..],
        b"\"Patient\"",
        b"42",
        b"null",
    ] {
        let reply = post_raw(&server, "Patient", body).await;
        expect_status(&reply, 400);
    }
    assert_nothing_written(&server).await;
});

both_stores!(an_array_body_on_update_is_400, |server| {
    let reply = server
        .client
        .send("PUT", "Patient/p1", &[], Some(b"[]".to_vec()))
        .await
        .unwrap();
    expect_status(&reply, 400);
    assert_nothing_written(&server).await;
});

// ---------------------------------------------------------------------------------------------
// Resources that break the rules of their type
// ---------------------------------------------------------------------------------------------

both_stores!(
    a_number_for_a_code_element_is_400_naming_the_element,
    |server| {
        refused_at(
            &server,
            json!({"resourceType": "Patient", "gender": 1}),
            "Patient.gender",
        )
        .await;
    }
);

both_stores!(
    a_string_for_a_repeating_complex_element_is_400_naming_it,
    |server| {
        refused_at(
            &server,
            json!({"resourceType": "Patient", "name": "x"}),
            "Patient.name",
        )
        .await;
    }
);

both_stores!(an_unknown_element_is_400_naming_it, |server| {
    refused_at(
        &server,
        json!({"resourceType": "Patient", "favouriteColour": "blue"}),
        "Patient.favouriteColour",
    )
    .await;
});

both_stores!(two_choices_of_one_value_x_at_once_are_400, |server| {
    let observation = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueString": "a", "valueBoolean": true,
    });
    let outcome = expect_status(
        &server
            .client
            .post("Observation", &observation)
            .await
            .unwrap(),
        400,
    );
    let found = expressions(&outcome);
    assert!(
        found
            .iter()
            .any(|e| e == "Observation.valueString" || e == "Observation.valueBoolean"),
        "an issue names the value[x] elements: {outcome}"
    );
    assert!(
        !outcome.to_string().contains("final"),
        "the outcome does not echo the resource: {outcome}"
    );
    assert_nothing_written(&server).await;
});

both_stores!(
    two_choices_of_an_extension_value_x_are_400_naming_the_extension,
    |server| {
        let resource = json!({
            "resourceType": "Patient",
            "extension": [{"url": "http://example.org/x", "valueString": "a", "valueBoolean": true}],
        });
        let outcome = expect_status(
            &server.client.post("Patient", &resource).await.unwrap(),
            400,
        );
        let found = expressions(&outcome);
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("Patient.extension[0].value")),
            "an issue names the extension's value[x]: {outcome}"
        );
        assert_nothing_written(&server).await;
    }
);

both_stores!(an_invalid_date_is_400_naming_the_element, |server| {
    refused_at(
        &server,
        json!({"resourceType": "Patient", "birthDate": "2020-13-45"}),
        "Patient.birthDate",
    )
    .await;
});

both_stores!(
    a_code_outside_a_required_binding_is_400_naming_the_element,
    |server| {
        refused_at(
            &server,
            json!({"resourceType": "Patient", "gender": "x"}),
            "Patient.gender",
        )
        .await;
    }
);

both_stores!(a_resource_type_other_than_the_url_is_400, |server| {
    let observation =
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    expect_status(
        &server.client.post("Patient", &observation).await.unwrap(),
        400,
    );
    let put = json!({"resourceType": "Observation", "id": "p1", "status": "final", "code": {"text": "x"}});
    expect_status(&server.client.put("Patient/p1", &put).await.unwrap(), 400);
    assert_nothing_written(&server).await;
});

both_stores!(
    an_invalid_update_leaves_the_current_version_alone,
    |server| {
        let created = expect_status(
            &server.client.post("Patient", &jansen()).await.unwrap(),
            201,
        );
        let id = created["id"].as_str().unwrap();
        let bad = json!({"resourceType": "Patient", "id": id, "gender": "x"});
        expect_status(
            &server
                .client
                .put(&format!("Patient/{id}"), &bad)
                .await
                .unwrap(),
            400,
        );
        let history = expect_status(
            &server
                .client
                .get(&format!("Patient/{id}/_history"))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(history["entry"].as_array().unwrap().len(), 1);
    }
);

// ---------------------------------------------------------------------------------------------
// URLs and methods
// ---------------------------------------------------------------------------------------------

both_stores!(an_unknown_resource_type_is_404_for_get_and_post, |server| {
    expect_status(&server.client.get("Unicorn/1").await.unwrap(), 404);
    expect_status(&server.client.get("Unicorn").await.unwrap(), 404);
    let body = json!({"resourceType": "Unicorn"});
    expect_status(&server.client.post("Unicorn", &body).await.unwrap(), 404);
    assert_nothing_written(&server).await;
});

both_stores!(
    a_method_an_endpoint_does_not_have_is_405_with_allow,
    |server| {
        let body = Some(jansen().to_string().into_bytes());
        for (method, path) in [
            ("PATCH", "Patient/p1/_history"),
            ("POST", "Patient/p1"),
            ("DELETE", "metadata"),
            ("PUT", "_history"),
            ("PATCH", "_history"),
        ] {
            let reply = server
                .client
                .send(method, path, &[], body.clone())
                .await
                .unwrap();
            expect_status(&reply, 405);
            let allow = reply
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 has Allow"));
            assert!(
                !allow.contains(method),
                "{method} {path}: Allow {allow} does not offer {method}"
            );
        }
        assert_nothing_written(&server).await;
    }
);

both_stores!(ids_with_path_characters_or_too_long_are_400, |server| {
    let long = "a".repeat(65);
    let body = Some(jansen().to_string().into_bytes());
    for path in [
        "Patient/a%2Fb",
        "Patient/a%20b",
        "Patient/a%00b",
        "Patient/%C3%A9",
        &format!("Patient/{long}"),
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let reply = server
                .client
                .send(method, path, &[], body.clone())
                .await
                .unwrap();
            expect_status(&reply, 400);
        }
        let reply = server
            .client
            .get(&format!("{path}/_history"))
            .await
            .unwrap();
        expect_status(&reply, 400);
        let reply = server
            .client
            .get(&format!("{path}/_history/1"))
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
    assert_nothing_written(&server).await;
});

both_stores!(a_64_character_id_is_valid, |server| {
    let id = "a".repeat(64);
    let body = json!({"resourceType": "Patient", "id": id});
    expect_status(
        &server
            .client
            .put(&format!("Patient/{id}"), &body)
            .await
            .unwrap(),
        201,
    );
});

both_stores!(an_id_in_the_body_that_is_not_a_valid_id_is_400, |server| {
    let body = json!({"resourceType": "Patient", "id": "a b"});
    expect_status(
        &server.client.put("Patient/a%20b", &body).await.unwrap(),
        400,
    );
    assert_nothing_written(&server).await;
});

// ---------------------------------------------------------------------------------------------
// Size and depth
// ---------------------------------------------------------------------------------------------

both_stores!(ten_thousand_levels_of_nested_arrays_are_400, |server| {
    let depth = 10_000;
    let body = format!(
        r#"{{"resourceType": "Patient", "extension": {}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    expect_status(&post_raw(&server, "Patient", body.as_bytes()).await, 400);
    assert_nothing_written(&server).await;
});

both_stores!(ten_thousand_levels_of_nested_objects_are_400, |server| {
    let depth = 10_000;
    let body = format!(
        r#"{{"resourceType": "Patient", "text": {}1{}}}"#,
        r#"{"a": "#.repeat(depth),
        "}".repeat(depth)
    );
    expect_status(&post_raw(&server, "Patient", body.as_bytes()).await, 400);
    assert_nothing_written(&server).await;
});

/// Streams a `size`-byte body to `POST path` over a raw connection (declared with
/// Content-Length, or chunked), reading the answer while writing; returns the status code.
/// The server may answer and close before the body is sent: write errors then end the upload.
async fn stream_body(base: &str, path: &str, size: usize, chunked: bool) -> u16 {
    let url = url::Url::parse(base).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let length_header = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {size}")
    };
    let head = format!(
        "POST {}/{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\n{length_header}\r\nConnection: close\r\n\r\n",
        url.path()
    );
    let upload = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let n = chunk.len().min(size - sent);
            if chunked {
                writer.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                writer.write_all(&chunk[..n]).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(&chunk[..n]).await?;
            }
            sent += n;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<usize, std::io::Error>(sent)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // The status line and headers are enough.
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answered within 60 s");
    upload.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok());
    status.unwrap_or_else(|| panic!("no HTTP status in the answer: {text:?}"))
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

both_stores!(a_100_mb_body_with_content_length_is_413, |server| {
    assert_eq!(
        stream_body(&server.base, "Patient", HUNDRED_MB, false).await,
        413
    );
    assert_nothing_written(&server).await;
});

both_stores!(a_100_mb_chunked_body_is_413, |server| {
    assert_eq!(
        stream_body(&server.base, "Patient", HUNDRED_MB, true).await,
        413
    );
    assert_nothing_written(&server).await;
});

/// A server with a 2 KiB body limit takes a small resource and refuses a larger one with 413.
async fn configured_body_limit(kind: StoreKind) {
    let Some(server) = TestServer::start_with(kind, 2048).await else {
        return;
    };
    expect_status(
        &server.client.post("Patient", &jansen()).await.unwrap(),
        201,
    );
    let mut big = jansen();
    big["name"][0]["family"] = json!("x".repeat(4096));
    let reply = server.client.post("Patient", &big).await.unwrap();
    let outcome = expect_status(&reply, 413);
    assert!(outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("2048"));
    assert_eq!(stream_body(&server.base, "Patient", 4096, true).await, 413);
    let history = expect_status(&server.client.get("Patient/_history").await.unwrap(), 200);
    assert_eq!(
        history["entry"].as_array().unwrap().len(),
        1,
        "only the small resource was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_body_limit_is_enforced_sqlite() {
    configured_body_limit(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_body_limit_is_enforced_postgres() {
    configured_body_limit(StoreKind::Postgres).await;
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

// XML is spoken (tests/xml.rs); other formats of the http page (Turtle) are not.
both_stores!(a_turtle_body_is_415, |server| {
    let turtle = b"@prefix fhir: <http://hl7.org/fhir/> . [] a fhir:Patient .".to_vec();
    let reply = server
        .client
        .send(
            "POST",
            "Patient",
            &[("Content-Type", "text/turtle")],
            Some(turtle),
        )
        .await
        .unwrap();
    expect_status(&reply, 415);
    assert_nothing_written(&server).await;
});

both_stores!(accepting_only_turtle_is_406, |server| {
    let reply = server
        .client
        .send("GET", "metadata", &[("Accept", "text/turtle")], None)
        .await
        .unwrap();
    expect_status(&reply, 406);
    let reply = send_json(
        &server,
        "POST",
        "Patient",
        &[("Accept", "text/turtle")],
        &jansen(),
    )
    .await;
    expect_status(&reply, 406);
    assert_nothing_written(&server).await;
});

both_stores!(format_ttl_is_406, |server| {
    expect_status(
        &server.client.get("metadata?_format=ttl").await.unwrap(),
        406,
    );
    expect_status(
        &server
            .client
            .get("Patient?_format=text/turtle")
            .await
            .unwrap(),
        406,
    );
});

both_stores!(format_json_and_pretty_true_work, |server| {
    let reply = server.client.get("metadata?_format=json").await.unwrap();
    expect_status(&reply, 200);
    assert!(reply.header("content-type").unwrap().contains("json"));
    let created = expect_status(
        &server
            .client
            .post("Patient?_pretty=true", &jansen())
            .await
            .unwrap(),
        201,
    );
    let id = created["id"].as_str().unwrap();
    let reply = server
        .client
        .get(&format!(
            "Patient/{id}?_format=application/fhir%2Bjson&_pretty=true"
        ))
        .await
        .unwrap();
    let body = expect_status(&reply, 200);
    assert_eq!(body["id"], id);
    assert!(
        String::from_utf8_lossy(&reply.body).contains("\n  "),
        "pretty-printed"
    );
    let compact = server.client.get(&format!("Patient/{id}")).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&compact.body).contains('\n'),
        "compact by default"
    );
});

// ---------------------------------------------------------------------------------------------
// Search parameters
// ---------------------------------------------------------------------------------------------

/// No database error text reaches the client.
fn assert_no_leak(reply: &signaal::client::Reply) {
    let text = String::from_utf8_lossy(&reply.body).to_lowercase();
    for word in [
        "sql",
        "syntax",
        "sqlite",
        "postgres",
        "near \"",
        "unrecognized token",
    ] {
        assert!(!text.contains(word), "the answer leaks '{word}': {text}");
    }
}

both_stores!(
    sql_injection_looking_values_find_nothing_and_leak_nothing,
    |server| {
        let created = expect_status(&server.client.post("Patient", &json!({"resourceType": "Patient", "identifier": [{"system": "s", "value": "v"}]})).await.unwrap(), 201);
        for path in [
            "Patient?identifier=x'%20OR%201=1--",
            "Patient?identifier=x%22%20OR%201=1--",
            "Patient?_id=1'%20OR%20'1'='1",
            "Patient?identifier=s%7Cv');%20DROP%20TABLE%20resource;--",
            "Patient?gender=male%5C'%20OR%20true--",
        ] {
            let reply = server.client.get(path).await.unwrap();
            let bundle = expect_status(&reply, 200);
            assert_eq!(bundle["total"], 0, "{path}: {bundle}");
            assert_no_leak(&reply);
        }
        let reply = server.client.get("Patient/x'%20OR%201=1--").await.unwrap();
        expect_status(&reply, 400);
        assert_no_leak(&reply);
        let id = created["id"].as_str().unwrap();
        expect_status(
            &server.client.get(&format!("Patient/{id}")).await.unwrap(),
            200,
        );
        let bundle = expect_status(
            &server.client.get("Patient?identifier=s%7Cv").await.unwrap(),
            200,
        );
        assert_eq!(bundle["total"], 1, "the data is still there");
    }
);

// A huge `_count` is capped, not refused (tests/search_results.rs); only one that is not a
// whole number is a 400.
both_stores!(a_malformed_count_is_400, |server| {
    for path in [
        "Patient?_count=-1",
        "Patient?_count=abc",
        "Patient?_count=2.5",
        "_history?_count=-1",
        "_history?_count=",
        "Patient/p/$everything?_count=-1",
    ] {
        expect_status(&server.client.get(path).await.unwrap(), 400);
    }
});

both_stores!(a_last_updated_that_is_not_a_date_is_400, |server| {
    expect_status(
        &server
            .client
            .get("Patient?_lastUpdated=garbage")
            .await
            .unwrap(),
        400,
    );
    expect_status(
        &server
            .client
            .get("Patient?_lastUpdated=ge2024-13-01")
            .await
            .unwrap(),
        400,
    );
});

both_stores!(a_search_with_ten_thousand_or_values_is_400, |server| {
    let values: Vec<String> = (0..10_000).map(|i| format!("v{i}")).collect();
    let query = format!("identifier={}", values.join(","));
    let reply = server
        .client
        .get(&format!("Patient?{query}"))
        .await
        .unwrap();
    expect_status(&reply, 400);
    let reply = server
        .client
        .send(
            "POST",
            "Patient/_search",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(query.into_bytes()),
        )
        .await
        .unwrap();
    expect_status(&reply, 400);
});

both_stores!(
    a_conditional_create_with_bad_criteria_leaves_nothing_behind,
    |server| {
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("If-None-Exist", "_lastUpdated=garbage")],
            &jansen(),
        )
        .await;
        expect_status(&reply, 400);
        let reply = send_json(&server, "PUT", "Patient?_count=-1", &[], &jansen()).await;
        expect_status(&reply, 400);
        let reply = server
            .client
            .send("DELETE", "Patient", &[], None)
            .await
            .unwrap();
        expect_status(&reply, 400);
        assert_nothing_written(&server).await;
    }
);
