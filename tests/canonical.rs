//! The canonical resources Signaal ships (profiles, CodeSystem, ValueSets, ConceptMap,
//! OperationDefinitions, SearchParameters) live under one canonical base, and the server
//! answers for them: readable and searchable by `url`, never writable.

mod common;

use common::{expect_status, matches};
use serde_json::{json, Value};
use signaal::fhir::canonical::{self, BASE};

fn key(resource: &Value) -> (String, String, String) {
    (
        resource["resourceType"].as_str().unwrap().to_owned(),
        resource["id"].as_str().unwrap().to_owned(),
        resource["url"].as_str().unwrap().to_owned(),
    )
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Every URL under a `signaal` domain in the files the server ships and the code that names
/// them.
fn signaal_urls() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["profiles", "conformance", "src", "scripts", "tests", "docs"] {
        let mut stack = vec![root.join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for (i, _) in text.match_indices("://") {
                let start = text[..i]
                    .rfind(|c: char| !c.is_ascii_alphanumeric())
                    .map_or(0, |s| s + 1);
                let url: String = text[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !"\"'`)<>,]".contains(*c))
                    .collect();
                let host = url
                    .split("://")
                    .nth(1)
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("");
                if host.contains("signaal.") && !url.starts_with("sqlite:") {
                    found.push((path.display().to_string(), url));
                }
            }
        }
    }
    found
}

#[test]
fn every_signaal_url_is_under_the_one_canonical_base() {
    let urls = signaal_urls();
    assert!(!urls.is_empty());
    for (file, url) in urls {
        assert!(
            url == BASE || url.starts_with(&format!("{BASE}/")),
            "{file}: {url}"
        );
    }
}

both_stores!(every_shipped_canonical_resource_is_readable, |server| {
    assert!(canonical::all().len() >= 18);
    for resource in canonical::all() {
        let (rtype, id, url) = key(resource);
        let read = expect_status(
            &server.client.get(&format!("{rtype}/{id}")).await.unwrap(),
            200,
        );
        assert_eq!(read["url"], url.as_str());
        assert_eq!(read["status"], "active", "{rtype}/{id}");
        assert_eq!(read["meta"]["versionId"], "1", "{rtype}/{id}: seeded once");
    }
});

both_stores!(
    every_shipped_canonical_resource_is_found_by_its_url,
    |server| {
        for resource in canonical::all() {
            let (rtype, id, url) = key(resource);
            let found = matches(&server, &format!("{rtype}?url={}", enc(&url))).await;
            assert_eq!(found.len(), 1, "{rtype}?url={url}");
            assert_eq!(found[0]["id"], id.as_str());
        }
        // Every Signaal definition the CapabilityStatement names resolves on the server.
        let statement = expect_status(&server.client.get("metadata").await.unwrap(), 200);
        let mut named = Vec::new();
        for resource in statement["rest"][0]["resource"].as_array().unwrap() {
            for op in resource["operation"].as_array().into_iter().flatten() {
                named.push((
                    "OperationDefinition",
                    op["definition"].as_str().unwrap().to_owned(),
                ));
            }
            for profile in resource["supportedProfile"]
                .as_array()
                .into_iter()
                .flatten()
            {
                named.push(("StructureDefinition", profile.as_str().unwrap().to_owned()));
            }
            for param in resource["searchParam"].as_array().into_iter().flatten() {
                named.push((
                    "SearchParameter",
                    param["definition"].as_str().unwrap().to_owned(),
                ));
            }
        }
        named.sort();
        named.dedup();
        let ours: Vec<_> = named
            .iter()
            .filter(|(_, url)| url.starts_with(BASE))
            .collect();
        assert!(ours.len() >= 4, "{ours:?}");
        for (rtype, url) in ours {
            let found = matches(&server, &format!("{rtype}?url={}", enc(url))).await;
            assert_eq!(found.len(), 1, "{rtype}?url={url}");
        }
    }
);

both_stores!(shipped_canonical_resources_cannot_be_changed, |server| {
    let profile = canonical::all()
        .iter()
        .find(|r| r["resourceType"] == "StructureDefinition")
        .unwrap();
    let (rtype, id, url) = key(profile);
    let path = format!("{rtype}/{id}");
    let mut changed = profile.clone();
    changed["title"] = json!("Changed by a client");
    let put = server.client.put(&path, &changed).await.unwrap();
    expect_status(&put, 403);
    expect_status(&server.client.delete(&path).await.unwrap(), 403);
    let patch = server
        .client
        .send(
            "PATCH",
            &path,
            &[("Content-Type", "application/json-patch+json")],
            Some(br#"[{"op": "replace", "path": "/title", "value": "x"}]"#.to_vec()),
        )
        .await
        .unwrap();
    expect_status(&patch, 403);
    // Conditional delete by url, and a transaction that updates it.
    let reply = server
        .client
        .delete(&format!("{rtype}?url={}", enc(&url)))
        .await
        .unwrap();
    expect_status(&reply, 403);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": changed, "request": {"method": "PUT", "url": path}}
    ]});
    let reply = server.client.post("", &bundle).await.unwrap();
    assert!(reply.status >= 400, "{}", reply.status);
    let outcome = reply.json();
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("shipped with Signaal"),
        "{outcome}"
    );
    // Another resource may not claim a shipped URL.
    let mut copy = profile.clone();
    copy.as_object_mut().unwrap().remove("id");
    let reply = server.client.post(&rtype, &copy).await.unwrap();
    expect_status(&reply, 403);
    // Nothing changed.
    let read = expect_status(&server.client.get(&path).await.unwrap(), 200);
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(read["title"], profile["title"]);
});

both_stores!(a_shipped_search_parameter_is_not_loaded_twice, |server| {
    // Flag?status works as before, and the stored SearchParameter resource reads back.
    let read = expect_status(
        &server
            .client
            .get("SearchParameter/signaal-Flag-status")
            .await
            .unwrap(),
        200,
    );
    assert_eq!(read["code"], "status");
    expect_status(&server.client.get("Flag?status=active").await.unwrap(), 200);
});

#[test]
fn every_canonical_resource_file_is_shipped() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // By type and url: the stored ids are Signaal's own (`signaal-…`), whatever the file says.
    let type_url = |r: &Value| {
        let (rtype, _, url) = key(r);
        (rtype, url)
    };
    let shipped: Vec<(String, String)> = canonical::all().iter().map(type_url).collect();
    let mut files = 0;
    for dir in ["profiles", "conformance"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let Ok(value) = serde_json::from_str::<Value>(&std::fs::read_to_string(&path).unwrap())
            else {
                continue;
            };
            if value["resourceType"].is_string() && value["url"].is_string() {
                files += 1;
                assert!(
                    shipped.contains(&type_url(&value)),
                    "{} is not in src/fhir/canonical.rs",
                    path.display()
                );
            }
        }
    }
    assert!(files >= 16, "{files}");
}

both_stores!(
    a_newer_version_of_a_shipped_value_set_may_be_stored,
    |server| {
        let shipped = canonical::all()
            .iter()
            .find(|r| r["resourceType"] == "ValueSet")
            .unwrap();
        let mut newer = shipped.clone();
        newer.as_object_mut().unwrap().remove("id");
        newer["version"] = json!("99.0.0-site");
        let reply = server.client.post("ValueSet", &newer).await.unwrap();
        expect_status(&reply, 201);
        let url = shipped["url"].as_str().unwrap();
        let found = matches(&server, &format!("ValueSet?url={}", enc(url))).await;
        assert_eq!(found.len(), 2);
    }
);

both_stores!(
    hl7_resources_with_the_file_names_of_shipped_ones_can_be_stored,
    |server| {
        // HL7's own ValueSet/flag-status (R4 package) is not Signaal's: the shipped ones live
        // under ids of their own, so a client's copy of the HL7 definition is an ordinary write.
        let hl7 = json!({
            "resourceType": "ValueSet",
            "id": "flag-status",
            "url": "http://hl7.org/fhir/ValueSet/flag-status",
            "version": "4.0.1",
            "status": "active",
            "compose": {"include": [{"system": "http://hl7.org/fhir/flag-status"}]}
        });
        let reply = server
            .client
            .put("ValueSet/flag-status", &hl7)
            .await
            .unwrap();
        expect_status(&reply, 201);
        assert!(canonical::all()
            .iter()
            .all(|r| r["id"].as_str().unwrap().starts_with("signaal")));
    }
);
