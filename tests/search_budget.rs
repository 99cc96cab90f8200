//! The complexity budget of a search (terms, chain depth, includes): a search over it is
//! refused with 400 naming the limit before any SQL runs, in search and in the criteria of
//! conditional interactions; a search within it runs.
#[macro_use]
mod common;

use common::{expect_status, patient, StoreKind, TestServer};
use serde_json::json;
use signaal::search::budget::Budget;

/// `name=x&name=x…`, `n` AND-ed values.
fn repeated(n: usize) -> String {
    vec!["name=x"; n].join("&")
}

/// Asserts a 400 OperationOutcome whose diagnostics name `limit`.
fn refused_naming(reply: &signaal::client::Reply, limit: &str) {
    let outcome = expect_status(reply, 400);
    let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
    assert!(text.contains(limit), "the 400 names {limit}: {outcome}");
}

/// Defines a test that runs once per store on a server with this budget.
macro_rules! both_stores_with_budget {
    ($name:ident, $budget:expr, |$server:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: TestServer) $body

            async fn start(kind: StoreKind) -> Option<TestServer> {
                TestServer::start_configured(kind, |s| s.search_budget = $budget).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(start(StoreKind::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(server) = start(StoreKind::Postgres).await {
                    run(server).await;
                }
            }
        }
    };
}

both_stores!(a_thousand_anded_values_are_400_naming_the_limit, |server| {
    let reply = server
        .client
        .get(&format!("Patient?{}", repeated(1000)))
        .await
        .unwrap();
    refused_naming(&reply, "max-search-terms");
});

both_stores!(
    ored_values_are_not_anded_terms_but_have_their_own_limit,
    |server| {
        // 1,000 OR-ed values are one flat list (see tests/search.rs); one more is refused.
        let reply = server
            .client
            .get(&format!("Patient?name={}", vec!["x"; 1000].join(",")))
            .await
            .unwrap();
        expect_status(&reply, 200);
        let reply = server
            .client
            .get(&format!("Patient?name={}", vec!["x"; 1001].join(",")))
            .await
            .unwrap();
        refused_naming(&reply, "at most 1000 values");
    }
);

both_stores!(a_hundred_anded_values_still_search, |server| {
    server
        .client
        .post(
            "Patient",
            &patient().set("name", json!([{"family": "x"}])).into(),
        )
        .await
        .unwrap();
    let reply = server
        .client
        .get(&format!("Patient?{}", repeated(100)))
        .await
        .unwrap();
    let bundle = expect_status(&reply, 200);
    assert_eq!(bundle["total"], 1, "{bundle}");
});

both_stores!(a_thousand_values_in_a_post_search_are_400, |server| {
    let reply = server
        .client
        .send(
            "POST",
            "Patient/_search",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(repeated(1000).into_bytes()),
        )
        .await
        .unwrap();
    refused_naming(&reply, "max-search-terms");
});

both_stores!(
    a_conditional_update_with_a_thousand_values_is_400,
    |server| {
        let reply = server
            .client
            .put(&format!("Patient?{}", repeated(1000)), &patient().into())
            .await
            .unwrap();
        refused_naming(&reply, "max-search-terms");
    }
);

both_stores!(
    a_conditional_delete_with_a_thousand_values_is_400,
    |server| {
        let reply = server
            .client
            .delete(&format!("Patient?{}", repeated(1000)))
            .await
            .unwrap();
        refused_naming(&reply, "max-search-terms");
    }
);

both_stores!(
    a_conditional_create_with_a_thousand_values_is_400,
    |server| {
        let criteria = repeated(1000);
        let reply = server
            .client
            .send(
                "POST",
                "Patient",
                &[("if-none-exist", &criteria)],
                Some(serde_json::to_vec(&serde_json::Value::from(patient())).unwrap()),
            )
            .await
            .unwrap();
        refused_naming(&reply, "max-search-terms");
    }
);

both_stores_with_budget!(
    a_chain_deeper_than_the_budget_is_400,
    Budget {
        max_chain_depth: 1,
        ..Budget::default()
    },
    |server| {
        let within = server
            .client
            .get("Observation?subject:Patient.name=x")
            .await
            .unwrap();
        expect_status(&within, 200);
        let reply = server
            .client
            .get("Observation?subject:Patient.organization.name=x")
            .await
            .unwrap();
        refused_naming(&reply, "max-chain-depth");
        let reply = server
            .client
            .get("Patient?_has:Observation:subject:_has:Provenance:target:agent=x")
            .await
            .unwrap();
        refused_naming(&reply, "max-chain-depth");
    }
);

both_stores_with_budget!(
    more_includes_than_the_budget_are_400,
    Budget {
        max_includes: 2,
        ..Budget::default()
    },
    |server| {
        let within = server
            .client
            .get("Observation?_include=Observation:subject&_revinclude=Provenance:target")
            .await
            .unwrap();
        expect_status(&within, 200);
        let reply = server
            .client
            .get("Observation?_include=Observation:subject&_revinclude=Provenance:target&_include=Observation:encounter")
            .await
            .unwrap();
        refused_naming(&reply, "max-includes");
    }
);

/// Organizations `org-0` … `org-{n}`, each `partOf` the one before.
async fn chain_of_organizations(server: &TestServer, n: usize) {
    for i in 0..=n {
        let mut org = json!({"resourceType": "Organization", "id": format!("org-{i}"), "name": format!("Organisation {i}")});
        if i > 0 {
            org["partOf"] = json!({"reference": format!("Organization/org-{}", i - 1)});
        }
        let reply = server
            .client
            .put(&format!("Organization/org-{i}"), &org)
            .await
            .unwrap();
        assert!(
            reply.status == 201 || reply.status == 200,
            "{}",
            reply.status
        );
    }
}

fn entries_in_mode(bundle: &serde_json::Value, mode: &str) -> usize {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["search"]["mode"] == mode).count())
        .unwrap_or(0)
}

both_stores!(include_iterate_follows_a_chain_to_its_end, |server| {
    chain_of_organizations(&server, 8).await;
    let reply = server
        .client
        .get("Organization?_id=org-8&_include:iterate=Organization:partof")
        .await
        .unwrap();
    let bundle = expect_status(&reply, 200);
    assert_eq!(entries_in_mode(&bundle, "include"), 8, "{bundle}");
    assert_eq!(entries_in_mode(&bundle, "outcome"), 0, "{bundle}");
});

both_stores_with_budget!(
    include_iterate_cut_by_the_budget_says_so,
    Budget {
        max_iterations: 2,
        ..Budget::default()
    },
    |server| {
        chain_of_organizations(&server, 8).await;
        let reply = server
            .client
            .get("Organization?_id=org-8&_include:iterate=Organization:partof")
            .await
            .unwrap();
        let bundle = expect_status(&reply, 200);
        // The first round and two iterations: org-7, org-6, org-5.
        assert_eq!(entries_in_mode(&bundle, "include"), 3, "{bundle}");
        let outcome = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["search"]["mode"] == "outcome")
            .unwrap_or_else(|| panic!("an outcome entry: {bundle}"));
        let text = outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap();
        assert!(text.contains("max-include-iterations"), "{text}");
    }
);
