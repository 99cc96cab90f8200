//! The RESTful interactions of the FHIR R4 http page, on both stores.

mod common;

use common::{create, expect_status, match_ids, patient, send_json};
use serde_json::json;

/// Anna Jansen, the Patient most tests write.
fn anna_jansen() -> serde_json::Value {
    patient()
        .family("Jansen")
        .given("Anna")
        .set("gender", "female")
        .json()
}

both_stores!(create_assigns_id_version_and_location, |server| {
    let reply = server.client.post("Patient", &anna_jansen()).await.unwrap();
    let body = expect_status(&reply, 201);
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert!(reply.header("last-modified").is_some());
    assert_eq!(
        reply.header("location").unwrap(),
        format!("{}/Patient/{id}/_history/1", server.base)
    );
});

both_stores!(read_returns_what_was_created, |server| {
    let created = server
        .client
        .post("Patient", &anna_jansen())
        .await
        .unwrap()
        .json();
    let id = created["id"].as_str().unwrap();
    let reply = server.client.get(&format!("Patient/{id}")).await.unwrap();
    let body = expect_status(&reply, 200);
    assert_eq!(body, created);
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

use common::TestServer;
use serde_json::Value;

const SYS: &str = "http://example.org/mrn";

/// A Jansen with identifier `value` (system `SYS`).
fn patient_with(value: &str) -> Value {
    patient().identifier(SYS, value).family("Jansen").json()
}

/// Replaces the resource with a new version carrying `family` as its name; returns the body.
async fn update_family(server: &TestServer, id: &str, family: &str) -> Value {
    let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
    let reply = server
        .client
        .put(&format!("Patient/{id}"), &body)
        .await
        .unwrap();
    expect_status(&reply, 200)
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// The `meta.versionId` of each entry's resource ("-" for an entry without a resource).
fn versions(bundle: &Value) -> Vec<String> {
    entries(bundle)
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn get(server: &TestServer, path: &str, status: u16) -> Value {
    expect_status(&server.client.get(path).await.unwrap(), status)
}

/// Makes sure the next write gets a later `lastUpdated` (ms resolution).
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
}

// ---------------------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------------------

both_stores!(
    create_the_server_assigns_the_id_and_ignores_one_in_the_body,
    |server| {
        let mut resource = anna_jansen();
        resource["id"] = json!("chosen-by-client");
        let body = expect_status(
            &server.client.post("Patient", &resource).await.unwrap(),
            201,
        );
        let id = body["id"].as_str().unwrap();
        assert_ne!(id, "chosen-by-client");
        get(&server, "Patient/chosen-by-client", 404).await;
        get(&server, &format!("Patient/{id}"), 200).await;
    }
);

both_stores!(
    create_location_is_the_new_version_and_etag_last_modified_match_meta,
    |server| {
        let reply = server.client.post("Patient", &anna_jansen()).await.unwrap();
        let body = expect_status(&reply, 201);
        let id = body["id"].as_str().unwrap();
        assert_eq!(
            reply.header("location").unwrap(),
            format!("{}/Patient/{id}/_history/1", server.base)
        );
        assert_eq!(reply.header("etag"), Some("W/\"1\""));
        let last_modified = reply.header("last-modified").expect("Last-Modified");
        let http_date = chrono::DateTime::parse_from_rfc2822(last_modified).expect("an HTTP-date");
        let meta_instant =
            chrono::DateTime::parse_from_rfc3339(body["meta"]["lastUpdated"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            http_date.timestamp(),
            meta_instant.timestamp(),
            "Last-Modified is meta.lastUpdated"
        );
    }
);

both_stores!(
    create_the_server_sets_meta_version_id_and_last_updated,
    |server| {
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        let body = expect_status(
            &server.client.post("Patient", &anna_jansen()).await.unwrap(),
            201,
        );
        assert_eq!(body["meta"]["versionId"], "1");
        let last_updated =
            chrono::DateTime::parse_from_rfc3339(body["meta"]["lastUpdated"].as_str().unwrap())
                .unwrap();
        assert!(
            last_updated >= before
                && last_updated <= chrono::Utc::now() + chrono::Duration::seconds(1)
        );
    }
);

both_stores!(
    create_ignores_a_client_sent_meta_version_id_and_last_updated,
    |server| {
        let mut resource = anna_jansen();
        resource["meta"] = json!({"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "kept"}]});
        let body = expect_status(
            &server.client.post("Patient", &resource).await.unwrap(),
            201,
        );
        assert_eq!(body["meta"]["versionId"], "1");
        assert_ne!(body["meta"]["lastUpdated"], "2001-01-01T00:00:00Z");
        assert_eq!(
            body["meta"]["tag"][0]["code"], "kept",
            "other meta elements are the client's"
        );
        let read = get(
            &server,
            &format!("Patient/{}", body["id"].as_str().unwrap()),
            200,
        )
        .await;
        assert_eq!(read["meta"]["versionId"], "1");
    }
);

// ---------------------------------------------------------------------------------------------
// read
// ---------------------------------------------------------------------------------------------

both_stores!(read_an_unknown_id_is_404, |server| {
    get(&server, "Patient/does-not-exist", 404).await;
});

both_stores!(read_after_delete_is_410_gone, |server| {
    let id = create(&server, &anna_jansen()).await;
    expect_status(
        &server
            .client
            .delete(&format!("Patient/{id}"))
            .await
            .unwrap(),
        204,
    );
    get(&server, &format!("Patient/{id}"), 410).await;
});

both_stores!(
    conditional_read_with_a_matching_if_none_match_is_304,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        let path = format!("Patient/{id}");
        let reply = server
            .client
            .send("GET", &path, &[("If-None-Match", "W/\"1\"")], None)
            .await
            .unwrap();
        expect_status(&reply, 304);
        assert!(reply.body.is_empty(), "304 has no body");
        assert_eq!(reply.header("etag"), Some("W/\"1\""));
        update_family(&server, &id, "Later").await;
        let reply = server
            .client
            .send("GET", &path, &[("If-None-Match", "W/\"1\"")], None)
            .await
            .unwrap();
        let body = expect_status(&reply, 200);
        assert_eq!(
            body["meta"]["versionId"], "2",
            "a stale ETag gets the current version"
        );
    }
);

// ---------------------------------------------------------------------------------------------
// vread
// ---------------------------------------------------------------------------------------------

both_stores!(vread_returns_each_version_as_it_was, |server| {
    let id = create(&server, &anna_jansen()).await;
    update_family(&server, &id, "Second").await;
    update_family(&server, &id, "Third").await;
    for (v, family) in [("1", "Jansen"), ("2", "Second"), ("3", "Third")] {
        let reply = server
            .client
            .get(&format!("Patient/{id}/_history/{v}"))
            .await
            .unwrap();
        let body = expect_status(&reply, 200);
        assert_eq!(body["meta"]["versionId"], v);
        assert_eq!(body["name"][0]["family"], family);
        assert_eq!(reply.header("etag").unwrap(), format!("W/\"{v}\""));
    }
});

both_stores!(vread_of_a_missing_version_is_404, |server| {
    let id = create(&server, &anna_jansen()).await;
    get(&server, &format!("Patient/{id}/_history/2"), 404).await;
    get(&server, &format!("Patient/{id}/_history/0"), 404).await;
    get(&server, &format!("Patient/{id}/_history/abc"), 404).await;
    get(&server, "Patient/unknown/_history/1", 404).await;
});

both_stores!(vread_of_the_deletion_version_is_410, |server| {
    let id = create(&server, &anna_jansen()).await;
    expect_status(
        &server
            .client
            .delete(&format!("Patient/{id}"))
            .await
            .unwrap(),
        204,
    );
    get(&server, &format!("Patient/{id}/_history/2"), 410).await;
    get(&server, &format!("Patient/{id}/_history/1"), 200).await;
});

// ---------------------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------------------

both_stores!(update_is_200_with_version_2, |server| {
    let id = create(&server, &anna_jansen()).await;
    let body = json!({"resourceType": "Patient", "id": id, "gender": "male"});
    let reply = server
        .client
        .put(&format!("Patient/{id}"), &body)
        .await
        .unwrap();
    let updated = expect_status(&reply, 200);
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["gender"], "male");
    assert!(
        updated.get("name").is_none(),
        "update replaces the whole resource"
    );
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    assert_eq!(get(&server, &format!("Patient/{id}"), 200).await, updated);
});

both_stores!(
    update_as_create_with_a_client_id_is_201_with_location,
    |server| {
        let body = json!({"resourceType": "Patient", "id": "client-chosen-1", "gender": "other"});
        let reply = server
            .client
            .put("Patient/client-chosen-1", &body)
            .await
            .unwrap();
        let created = expect_status(&reply, 201);
        assert_eq!(created["id"], "client-chosen-1");
        assert_eq!(created["meta"]["versionId"], "1");
        assert_eq!(
            reply.header("location").unwrap(),
            format!("{}/Patient/client-chosen-1/_history/1", server.base)
        );
        get(&server, "Patient/client-chosen-1", 200).await;
    }
);

both_stores!(update_without_an_id_in_the_body_is_400, |server| {
    let id = create(&server, &anna_jansen()).await;
    let reply = server
        .client
        .put(&format!("Patient/{id}"), &anna_jansen())
        .await
        .unwrap();
    let outcome = expect_status(&reply, 400);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.id");
    assert_eq!(
        get(&server, &format!("Patient/{id}"), 200).await["meta"]["versionId"],
        "1"
    );
});

both_stores!(
    update_with_a_body_id_different_from_the_url_is_400,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        let body = json!({"resourceType": "Patient", "id": "someone-else"});
        let reply = server
            .client
            .put(&format!("Patient/{id}"), &body)
            .await
            .unwrap();
        expect_status(&reply, 400);
        get(&server, "Patient/someone-else", 404).await;
        assert_eq!(
            get(&server, &format!("Patient/{id}"), 200).await["meta"]["versionId"],
            "1"
        );
    }
);

both_stores!(update_with_the_right_if_match_is_200, |server| {
    let id = create(&server, &anna_jansen()).await;
    let body = json!({"resourceType": "Patient", "id": id});
    let reply = send_json(
        &server,
        "PUT",
        &format!("Patient/{id}"),
        &[("If-Match", "W/\"1\"")],
        &body,
    )
    .await;
    assert_eq!(expect_status(&reply, 200)["meta"]["versionId"], "2");
});

both_stores!(
    update_with_a_wrong_if_match_is_412_and_changes_nothing,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        update_family(&server, &id, "Second").await;
        let body = json!({"resourceType": "Patient", "id": id});
        let reply = send_json(
            &server,
            "PUT",
            &format!("Patient/{id}"),
            &[("If-Match", "W/\"1\"")],
            &body,
        )
        .await;
        expect_status(&reply, 412);
        let current = get(&server, &format!("Patient/{id}"), 200).await;
        assert_eq!(current["meta"]["versionId"], "2");
        assert_eq!(current["name"][0]["family"], "Second");
    }
);

// ---------------------------------------------------------------------------------------------
// delete
// ---------------------------------------------------------------------------------------------

both_stores!(delete_is_204_and_a_read_then_gives_410, |server| {
    let id = create(&server, &anna_jansen()).await;
    let reply = server
        .client
        .delete(&format!("Patient/{id}"))
        .await
        .unwrap();
    expect_status(&reply, 204);
    assert!(reply.body.is_empty());
    get(&server, &format!("Patient/{id}"), 410).await;
});

both_stores!(
    deleting_a_deleted_resource_again_is_204_and_writes_no_version,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        expect_status(
            &server
                .client
                .delete(&format!("Patient/{id}"))
                .await
                .unwrap(),
            204,
        );
        expect_status(
            &server
                .client
                .delete(&format!("Patient/{id}"))
                .await
                .unwrap(),
            204,
        );
        let history = get(&server, &format!("Patient/{id}/_history"), 200).await;
        assert_eq!(
            entries(&history).len(),
            2,
            "create and one deletion: {history}"
        );
    }
);

both_stores!(deleting_a_resource_that_never_existed_is_204, |server| {
    expect_status(
        &server.client.delete("Patient/never-was").await.unwrap(),
        204,
    );
    get(&server, "Patient/never-was", 404).await;
});

both_stores!(
    put_after_delete_recreates_as_the_next_version_with_201,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        expect_status(
            &server
                .client
                .delete(&format!("Patient/{id}"))
                .await
                .unwrap(),
            204,
        );
        let body = json!({"resourceType": "Patient", "id": id, "gender": "male"});
        let reply = server
            .client
            .put(&format!("Patient/{id}"), &body)
            .await
            .unwrap();
        let recreated = expect_status(&reply, 201);
        assert_eq!(recreated["meta"]["versionId"], "3");
        assert_eq!(
            reply.header("location").unwrap(),
            format!("{}/Patient/{id}/_history/3", server.base)
        );
        assert_eq!(
            get(&server, &format!("Patient/{id}"), 200).await["gender"],
            "male"
        );
    }
);

both_stores!(
    delete_with_a_wrong_if_match_is_412_and_with_the_right_one_204,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        update_family(&server, &id, "Second").await;
        let path = format!("Patient/{id}");
        let reply = server
            .client
            .send("DELETE", &path, &[("If-Match", "W/\"1\"")], None)
            .await
            .unwrap();
        expect_status(&reply, 412);
        get(&server, &path, 200).await;
        let reply = server
            .client
            .send("DELETE", &path, &[("If-Match", "W/\"2\"")], None)
            .await
            .unwrap();
        expect_status(&reply, 204);
        get(&server, &path, 410).await;
    }
);

// ---------------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------------

both_stores!(
    instance_history_is_a_history_bundle_newest_first,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        update_family(&server, &id, "Second").await;
        update_family(&server, &id, "Third").await;
        create(&server, &anna_jansen()).await; // another resource, not in this history
        let history = get(&server, &format!("Patient/{id}/_history"), 200).await;
        assert_eq!(history["resourceType"], "Bundle");
        assert_eq!(history["type"], "history");
        assert_eq!(versions(&history), ["3", "2", "1"]);
    }
);

both_stores!(
    history_entries_carry_full_url_request_and_response,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        update_family(&server, &id, "Second").await;
        let history = get(&server, &format!("Patient/{id}/_history"), 200).await;
        let e = entries(&history);
        for entry in &e {
            assert_eq!(
                entry["fullUrl"].as_str().unwrap(),
                format!("{}/Patient/{id}", server.base)
            );
        }
        assert_eq!(e[0]["request"]["method"], "PUT");
        assert_eq!(e[0]["request"]["url"], format!("Patient/{id}"));
        assert!(e[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"));
        assert_eq!(e[0]["response"]["etag"], "W/\"2\"");
        assert_eq!(e[1]["request"]["method"], "POST");
        assert_eq!(e[1]["request"]["url"], "Patient");
        assert!(e[1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201"));
        assert!(e[1]["response"]["lastModified"].is_string());
    }
);

both_stores!(
    history_shows_a_deletion_as_an_entry_without_a_resource,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        expect_status(
            &server
                .client
                .delete(&format!("Patient/{id}"))
                .await
                .unwrap(),
            204,
        );
        let history = get(&server, &format!("Patient/{id}/_history"), 200).await;
        let e = entries(&history);
        assert_eq!(e.len(), 2);
        assert!(
            e[0].get("resource").is_none(),
            "a deletion has no resource: {}",
            e[0]
        );
        assert_eq!(e[0]["request"]["method"], "DELETE");
        assert_eq!(e[0]["request"]["url"], format!("Patient/{id}"));
        assert_eq!(e[0]["response"]["etag"], "W/\"2\"");
        assert!(e[1]["resource"].is_object());
    }
);

both_stores!(instance_history_of_an_unknown_resource_is_404, |server| {
    get(&server, "Patient/unknown/_history", 404).await;
});

both_stores!(
    type_history_holds_every_version_of_that_type_only,
    |server| {
        let a = create(&server, &anna_jansen()).await;
        let b = create(&server, &anna_jansen()).await;
        update_family(&server, &a, "Second").await;
        create(
            &server,
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        )
        .await;
        let history = get(&server, "Patient/_history", 200).await;
        let seen: Vec<(String, String)> = entries(&history)
            .iter()
            .map(|e| {
                (
                    e["resource"]["id"].as_str().unwrap().to_owned(),
                    e["resource"]["meta"]["versionId"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (a.clone(), "2".to_owned()),
                (b, "1".to_owned()),
                (a, "1".to_owned())
            ]
        );
    }
);

both_stores!(system_history_holds_every_version_of_every_type, |server| {
    let p = create(&server, &anna_jansen()).await;
    let o = create(
        &server,
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
    )
    .await;
    expect_status(
        &server.client.delete(&format!("Patient/{p}")).await.unwrap(),
        204,
    );
    let history = get(&server, "_history?_count=1000", 200).await;
    assert_eq!(history["type"], "history");
    // Without what the risk-scoring worker writes meanwhile (RiskAssessments, Flags), and the
    // server's traces: the AuditEvent of each request and the Provenance of each write.
    let written: Vec<Value> = entries(&history)
        .into_iter()
        .filter(|e| {
            let url = e["request"]["url"].as_str().unwrap();
            url.starts_with("Patient") || url.starts_with("Observation")
        })
        .collect();
    let urls: Vec<&str> = written
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [format!("Patient/{p}").as_str(), "Observation", "Patient"]
    );
    assert_eq!(written[1]["resource"]["id"], o);
    // Each of the three versions has its Provenance (written in the same transaction).
    let ours = [format!("Patient/{p}/"), format!("Observation/{o}/")];
    let provenances: Vec<String> = entries(&history)
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Provenance")
        .filter_map(|e| e["resource"]["target"][0]["reference"].as_str())
        .filter(|t| ours.iter().any(|prefix| t.starts_with(prefix.as_str())))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        provenances,
        [
            format!("Patient/{p}/_history/2"),
            format!("Observation/{o}/_history/1"),
            format!("Patient/{p}/_history/1"),
        ]
    );
});

both_stores!(history_count_pages_with_next_and_previous_links, |server| {
    let id = create(&server, &anna_jansen()).await;
    for i in 2..=5 {
        update_family(&server, &id, &format!("V{i}")).await;
    }
    let first = get(&server, &format!("Patient/{id}/_history?_count=2"), 200).await;
    assert_eq!(versions(&first), ["5", "4"]);
    assert!(link(&first, "previous").is_none());
    let second = get(&server, &link(&first, "next").expect("next on page 1"), 200).await;
    assert_eq!(versions(&second), ["3", "2"]);
    let third = get(
        &server,
        &link(&second, "next").expect("next on page 2"),
        200,
    )
    .await;
    assert_eq!(versions(&third), ["1"]);
    assert!(
        link(&third, "next").is_none(),
        "the last page has no next: {third}"
    );
    let back = get(
        &server,
        &link(&third, "previous").expect("previous on page 3"),
        200,
    )
    .await;
    assert_eq!(versions(&back), ["3", "2"]);
    let start = get(
        &server,
        &link(&back, "previous").expect("previous on page 2"),
        200,
    )
    .await;
    assert_eq!(versions(&start), ["5", "4"]);
    assert!(
        link(&start, "previous").is_none(),
        "back at the start: {start}"
    );
});

both_stores!(
    history_links_stay_correct_when_versions_are_written_between_pages,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        for i in 2..=4 {
            update_family(&server, &id, &format!("V{i}")).await;
        }
        let first = get(&server, &format!("Patient/{id}/_history?_count=2"), 200).await;
        assert_eq!(versions(&first), ["4", "3"]);
        update_family(&server, &id, "V5").await;
        update_family(&server, &id, "V6").await;
        let second = get(&server, &link(&first, "next").unwrap(), 200).await;
        assert_eq!(
            versions(&second),
            ["2", "1"],
            "no version shows twice or goes missing"
        );
        let back = get(&server, &link(&second, "previous").unwrap(), 200).await;
        assert_eq!(versions(&back), ["4", "3"]);
        let newer = get(
            &server,
            &link(&back, "previous").expect("the new versions are reachable"),
            200,
        )
        .await;
        assert_eq!(versions(&newer), ["6", "5"]);
    }
);

both_stores!(
    history_since_keeps_versions_written_at_or_after_the_instant,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        tick().await;
        let v2 = update_family(&server, &id, "Second").await;
        tick().await;
        update_family(&server, &id, "Third").await;
        let since = enc(v2["meta"]["lastUpdated"].as_str().unwrap());
        let history = get(
            &server,
            &format!("Patient/{id}/_history?_since={since}"),
            200,
        )
        .await;
        assert_eq!(versions(&history), ["3", "2"]);
        // System history also holds what the risk-scoring worker writes meanwhile.
        let mut history = get(&server, &format!("_history?_since={since}"), 200).await;
        if let Some(entries) = history["entry"].as_array_mut() {
            entries.retain(|e| e["resource"]["id"] == id.as_str());
        }
        assert_eq!(versions(&history), ["3", "2"]);
    }
);

both_stores!(
    history_at_keeps_the_versions_current_at_that_instant,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        tick().await;
        let v2 = update_family(&server, &id, "Second").await;
        tick().await;
        update_family(&server, &id, "Third").await;
        let at = enc(v2["meta"]["lastUpdated"].as_str().unwrap());
        let history = get(&server, &format!("Patient/{id}/_history?_at={at}"), 200).await;
        assert_eq!(versions(&history), ["2"]);
    }
);

both_stores!(history_with_a_bad_since_is_400, |server| {
    get(&server, "_history?_since=yesterday", 400).await;
});

// ---------------------------------------------------------------------------------------------
// conditional create
// ---------------------------------------------------------------------------------------------

fn if_none_exist(value: &str) -> String {
    format!("identifier={}", enc(&format!("{SYS}|{value}")))
}

both_stores!(conditional_create_without_a_match_is_201, |server| {
    let header = if_none_exist("c-1");
    let reply = send_json(
        &server,
        "POST",
        "Patient",
        &[("If-None-Exist", &header)],
        &patient_with("c-1"),
    )
    .await;
    let body = expect_status(&reply, 201);
    assert!(reply.header("location").is_some());
    assert_eq!(body["identifier"][0]["value"], "c-1");
});

both_stores!(
    conditional_create_with_one_match_is_200_with_it_and_creates_nothing,
    |server| {
        let existing = create(&server, &patient_with("c-2")).await;
        let header = if_none_exist("c-2");
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("If-None-Exist", &header)],
            &patient_with("c-2"),
        )
        .await;
        let body = expect_status(&reply, 200);
        assert_eq!(body["id"], existing.as_str());
        assert_eq!(body["meta"]["versionId"], "1");
        let history = get(&server, "Patient/_history", 200).await;
        assert_eq!(
            entries(&history).len(),
            1,
            "nothing new was written: {history}"
        );
    }
);

both_stores!(conditional_create_with_two_matches_is_412, |server| {
    create(&server, &patient_with("c-3")).await;
    create(&server, &patient_with("c-3")).await;
    let header = if_none_exist("c-3");
    let reply = send_json(
        &server,
        "POST",
        "Patient",
        &[("If-None-Exist", &header)],
        &patient_with("c-3"),
    )
    .await;
    expect_status(&reply, 412);
    assert_eq!(
        entries(&get(&server, "Patient/_history", 200).await).len(),
        2
    );
});

both_stores!(
    conditional_create_with_an_unsupported_parameter_is_400,
    |server| {
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("If-None-Exist", "no-such-param=1")],
            &anna_jansen(),
        )
        .await;
        expect_status(&reply, 400);
        assert!(entries(&get(&server, "Patient/_history", 200).await).is_empty());
    }
);

// ---------------------------------------------------------------------------------------------
// conditional update
// ---------------------------------------------------------------------------------------------

fn by_identifier(value: &str) -> String {
    format!("Patient?identifier={}", enc(&format!("{SYS}|{value}")))
}

both_stores!(
    conditional_update_without_a_match_creates_with_201,
    |server| {
        let reply = server
            .client
            .put(&by_identifier("u-1"), &patient_with("u-1"))
            .await
            .unwrap();
        let body = expect_status(&reply, 201);
        assert!(reply.header("location").is_some());
        let found = get(&server, &by_identifier("u-1"), 200).await;
        assert_eq!(match_ids(&found), [body["id"].as_str().unwrap()]);
    }
);

both_stores!(
    conditional_update_with_one_match_updates_that_resource,
    |server| {
        let id = create(&server, &patient_with("u-2")).await;
        let mut body = patient_with("u-2");
        body["gender"] = json!("female");
        let reply = server
            .client
            .put(&by_identifier("u-2"), &body)
            .await
            .unwrap();
        let updated = expect_status(&reply, 200);
        assert_eq!(updated["id"], id.as_str());
        assert_eq!(updated["meta"]["versionId"], "2");
        assert_eq!(
            get(&server, &format!("Patient/{id}"), 200).await["gender"],
            "female"
        );
    }
);

both_stores!(
    conditional_update_with_a_body_id_other_than_the_match_is_400,
    |server| {
        let id = create(&server, &patient_with("u-3")).await;
        let mut body = patient_with("u-3");
        body["id"] = json!("not-the-match");
        expect_status(
            &server
                .client
                .put(&by_identifier("u-3"), &body)
                .await
                .unwrap(),
            400,
        );
        assert_eq!(
            get(&server, &format!("Patient/{id}"), 200).await["meta"]["versionId"],
            "1"
        );
        get(&server, "Patient/not-the-match", 404).await;
    }
);

both_stores!(conditional_update_with_many_matches_is_412, |server| {
    let a = create(&server, &patient_with("u-4")).await;
    create(&server, &patient_with("u-4")).await;
    expect_status(
        &server
            .client
            .put(&by_identifier("u-4"), &patient_with("u-4"))
            .await
            .unwrap(),
        412,
    );
    assert_eq!(
        get(&server, &format!("Patient/{a}"), 200).await["meta"]["versionId"],
        "1"
    );
});

// ---------------------------------------------------------------------------------------------
// conditional delete
// ---------------------------------------------------------------------------------------------

both_stores!(conditional_delete_without_a_match_is_204, |server| {
    let kept = create(&server, &patient_with("other")).await;
    expect_status(
        &server.client.delete(&by_identifier("d-1")).await.unwrap(),
        204,
    );
    get(&server, &format!("Patient/{kept}"), 200).await;
});

both_stores!(conditional_delete_with_one_match_deletes_it, |server| {
    let id = create(&server, &patient_with("d-2")).await;
    let kept = create(&server, &patient_with("other")).await;
    expect_status(
        &server.client.delete(&by_identifier("d-2")).await.unwrap(),
        204,
    );
    get(&server, &format!("Patient/{id}"), 410).await;
    get(&server, &format!("Patient/{kept}"), 200).await;
});

both_stores!(conditional_delete_with_many_matches_is_412, |server| {
    let a = create(&server, &patient_with("d-3")).await;
    let b = create(&server, &patient_with("d-3")).await;
    expect_status(
        &server.client.delete(&by_identifier("d-3")).await.unwrap(),
        412,
    );
    get(&server, &format!("Patient/{a}"), 200).await;
    get(&server, &format!("Patient/{b}"), 200).await;
});

// ---------------------------------------------------------------------------------------------
// Prefer: return
// ---------------------------------------------------------------------------------------------

both_stores!(
    prefer_return_minimal_sends_no_body_but_keeps_the_headers,
    |server| {
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("Prefer", "return=minimal")],
            &anna_jansen(),
        )
        .await;
        expect_status(&reply, 201);
        assert!(reply.body.is_empty(), "no body: {:?}", reply.body);
        let location = reply.header("location").expect("Location").to_owned();
        assert_eq!(reply.header("etag"), Some("W/\"1\""));
        assert!(reply.header("last-modified").is_some());
        get(&server, &location, 200).await;
    }
);

both_stores!(prefer_return_minimal_on_update_sends_no_body, |server| {
    let id = create(&server, &anna_jansen()).await;
    let body = json!({"resourceType": "Patient", "id": id});
    let reply = send_json(
        &server,
        "PUT",
        &format!("Patient/{id}"),
        &[("Prefer", "return=minimal")],
        &body,
    )
    .await;
    expect_status(&reply, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
});

both_stores!(
    prefer_return_operation_outcome_answers_with_an_outcome,
    |server| {
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("Prefer", "return=OperationOutcome")],
            &anna_jansen(),
        )
        .await;
        let body = expect_status(&reply, 201);
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["severity"], "information");
        assert!(reply.header("location").is_some());
    }
);

both_stores!(
    prefer_return_representation_answers_with_the_resource,
    |server| {
        let reply = send_json(
            &server,
            "POST",
            "Patient",
            &[("Prefer", "return=representation")],
            &anna_jansen(),
        )
        .await;
        let body = expect_status(&reply, 201);
        assert_eq!(body["resourceType"], "Patient");
        assert_eq!(body["meta"]["versionId"], "1");
    }
);

// ---------------------------------------------------------------------------------------------
// search
// ---------------------------------------------------------------------------------------------

both_stores!(search_by_id_finds_that_resource_only, |server| {
    let a = create(&server, &anna_jansen()).await;
    create(&server, &anna_jansen()).await;
    let bundle = get(&server, &format!("Patient?_id={a}"), 200).await;
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(match_ids(&bundle), [a]);
    assert_eq!(bundle["total"], 1);
});

both_stores!(search_by_identifier_system_and_value, |server| {
    let a = create(&server, &patient_with("s-1")).await;
    create(&server, &patient_with("s-2")).await;
    let bundle = get(&server, &by_identifier("s-1"), 200).await;
    assert_eq!(match_ids(&bundle), std::slice::from_ref(&a));
    let bundle = get(&server, "Patient?identifier=s-1", 200).await;
    assert_eq!(match_ids(&bundle), [a]);
    let bundle = get(
        &server,
        &format!("Patient?identifier={}", enc("http://other|s-1")),
        200,
    )
    .await;
    assert!(match_ids(&bundle).is_empty());
});

both_stores!(search_does_not_find_deleted_resources, |server| {
    let a = create(&server, &patient_with("s-del")).await;
    expect_status(
        &server.client.delete(&format!("Patient/{a}")).await.unwrap(),
        204,
    );
    let bundle = get(&server, &by_identifier("s-del"), 200).await;
    assert!(match_ids(&bundle).is_empty());
    assert_eq!(bundle["total"], 0);
});

both_stores!(search_last_updated_ge_keeps_later_resources, |server| {
    create(&server, &anna_jansen()).await;
    tick().await;
    let later = expect_status(
        &server.client.post("Patient", &anna_jansen()).await.unwrap(),
        201,
    );
    let since = enc(&format!(
        "ge{}",
        later["meta"]["lastUpdated"].as_str().unwrap()
    ));
    let bundle = get(&server, &format!("Patient?_lastUpdated={since}"), 200).await;
    assert_eq!(match_ids(&bundle), [later["id"].as_str().unwrap()]);
});

both_stores!(search_count_pages_with_next_links_and_a_total, |server| {
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create(&server, &anna_jansen()).await);
    }
    let mut seen = Vec::new();
    let mut page = get(&server, "Patient?_count=2", 200).await;
    loop {
        assert_eq!(page["total"], 5, "total is all matches, not the page size");
        let on_page = match_ids(&page);
        assert!(on_page.len() <= 2);
        seen.extend(on_page);
        match link(&page, "next") {
            Some(next) => page = get(&server, &next, 200).await,
            None => break,
        }
    }
    seen.sort();
    created.sort();
    assert_eq!(seen, created, "every match exactly once across the pages");
});

both_stores!(
    search_entries_have_absolute_full_urls_and_search_mode_match,
    |server| {
        let a = create(&server, &anna_jansen()).await;
        let bundle = get(&server, "Patient", 200).await;
        let e = entries(&bundle);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0]["fullUrl"].as_str().unwrap(),
            format!("{}/Patient/{a}", server.base)
        );
        assert_eq!(e[0]["search"]["mode"], "match");
        assert!(link(&bundle, "self").unwrap().starts_with("http"));
    }
);

both_stores!(
    search_ignores_an_unknown_parameter_and_reports_it_in_an_outcome_entry,
    |server| {
        let a = create(&server, &anna_jansen()).await;
        let bundle = get(&server, "Patient?no-such-param=1", 200).await;
        assert_eq!(match_ids(&bundle), [a]);
        let outcome = entries(&bundle)
            .into_iter()
            .find(|e| e["search"]["mode"] == "outcome")
            .expect("an outcome entry");
        assert_eq!(outcome["resource"]["resourceType"], "OperationOutcome");
        assert!(outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("no-such-param"));
    }
);

both_stores!(
    search_with_prefer_handling_strict_refuses_an_unknown_parameter,
    |server| {
        let reply = server
            .client
            .send(
                "GET",
                "Patient?no-such-param=1",
                &[("Prefer", "handling=strict")],
                None,
            )
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
);

both_stores!(search_by_post_to_search_takes_a_form_body, |server| {
    let a = create(&server, &patient_with("p-1")).await;
    create(&server, &patient_with("p-2")).await;
    let form = format!("identifier={}", enc(&format!("{SYS}|p-1")));
    let reply = server
        .client
        .send(
            "POST",
            "Patient/_search",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(form.into_bytes()),
        )
        .await
        .unwrap();
    let bundle = expect_status(&reply, 200);
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(match_ids(&bundle), [a]);
});

// ---------------------------------------------------------------------------------------------
// capabilities
// ---------------------------------------------------------------------------------------------

both_stores!(
    metadata_is_a_capability_statement_for_4_0_1_listing_patient,
    |server| {
        let statement = get(&server, "metadata", 200).await;
        assert_eq!(statement["resourceType"], "CapabilityStatement");
        assert_eq!(statement["fhirVersion"], "4.0.1");
        assert_eq!(statement["kind"], "instance");
        let resources = statement["rest"][0]["resource"].as_array().unwrap();
        let patient = resources
            .iter()
            .find(|r| r["type"] == "Patient")
            .expect("Patient is listed");
        let codes: Vec<&str> = patient["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        for code in [
            "read",
            "vread",
            "update",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type",
        ] {
            assert!(codes.contains(&code), "{code} is listed: {codes:?}");
        }
    }
);

both_stores!(metadata_mode_terminology_is_400, |server| {
    get(&server, "metadata?mode=terminology", 400).await;
});

both_stores!(
    prefer_return_operation_outcome_on_delete_is_200_with_an_outcome,
    |server| {
        let id = create(&server, &anna_jansen()).await;
        let reply = server
            .client
            .send(
                "DELETE",
                &format!("Patient/{id}"),
                &[("Prefer", "return=OperationOutcome")],
                None,
            )
            .await
            .unwrap();
        let body = expect_status(&reply, 200);
        assert_eq!(body["resourceType"], "OperationOutcome");
        get(&server, &format!("Patient/{id}"), 410).await;
    }
);

both_stores!(strings_may_hold_a_no_break_space, |server| {
    // FHIR's regexes are XML Schema regexes: only space, tab, CR and LF are white space there.
    let patient =
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "van\u{a0}Dijk"}]});
    expect_status(&server.client.post("Patient", &patient).await.unwrap(), 201);
    let bad_code = serde_json::json!({"resourceType": "Patient", "gender": "fe male"});
    expect_status(
        &server.client.post("Patient", &bad_code).await.unwrap(),
        400,
    );
});
