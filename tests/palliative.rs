//! The palliative phase and person-centred goals through the HTTP API, on both stores: the
//! palliative-phase and no-acp Flags from their sources (the surprise question, a palliative
//! Condition) and their end (an advance care plan); goals in the four life domains (profiles,
//! search, the worklist's missing domains, the engagement Flag naming the slipping domain);
//! the PGO example that pushes a four-domain goal set and the coach example that reads it.
//!
//! Scoring runs in the background, so tests poll with a generous timeout.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{expect_status, ids, put, TestServer};
use serde_json::{json, Value};

const CS: &str = "https://signaal.dev/fhir/CodeSystem/signaal";
const DOMAIN: &str = "https://signaal.dev/fhir/CodeSystem/goal-domain";
const GOAL_PROFILE: &str = "https://signaal.dev/fhir/StructureDefinition/signaal-domain-goal";
const PLAN_PROFILE: &str = "https://signaal.dev/fhir/StructureDefinition/signaal-action-plan";
const SURPRISE: &str = "https://signaal.dev/fhir/Questionnaire/surprise-question";

/// Polls `path` until `done` holds for the answer, for at most a minute.
async fn wait_for(server: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = expect_status(&server.client.get(path).await.unwrap(), 200);
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there; last answer: {last:#}");
}

fn flag_status(bundle: &Value, reason: &str) -> Option<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .find(|f| f["code"]["coding"][0]["code"] == reason)
        .map(|f| f["status"].as_str().unwrap().to_owned())
}

fn surprise_answer(patient: &str, id: &str, authored: &str, surprised: bool) -> Value {
    json!({"resourceType": "QuestionnaireResponse", "id": id, "status": "completed",
        "questionnaire": SURPRISE, "subject": {"reference": format!("Patient/{patient}")},
        "authored": authored,
        "item": [{"linkId": "surprised", "answer": [{"valueBoolean": surprised}]}]})
}

fn domain_goal(patient: &str, id: &str, domain: &str, text: &str) -> Value {
    json!({"resourceType": "Goal", "id": id, "meta": {"profile": [GOAL_PROFILE]},
        "lifecycleStatus": "active",
        "category": [{"coding": [{"system": DOMAIN, "code": domain}]}],
        "description": {"text": text},
        "subject": {"reference": format!("Patient/{patient}")}})
}

both_stores!(
    the_surprise_question_answered_no_raises_palliative_phase_and_no_acp,
    |server| {
        put(&server, json!({"resourceType": "Patient", "id": "pal-1"})).await;
        put(
            &server,
            surprise_answer("pal-1", "pal-1-sq", "2026-01-10", false),
        )
        .await;
        let path = "Flag?patient=Patient/pal-1";
        let flags = wait_for(&server, path, |b| {
            flag_status(b, "palliative-phase").as_deref() == Some("active")
                && flag_status(b, "no-acp").as_deref() == Some("active")
        })
        .await;
        let phase = flags["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|f| f["code"]["coding"][0]["code"] == "palliative-phase")
            .unwrap();
        assert_eq!(phase["category"][0]["coding"][0]["code"], "palliative-care");
        assert!(
            phase["code"]["text"]
                .as_str()
                .unwrap()
                .contains("surprise question answered no"),
            "{phase}"
        );
        let assessment = phase["extension"][1]["valueReference"]["reference"]
            .as_str()
            .unwrap();
        let ra = expect_status(&server.client.get(assessment).await.unwrap(), 200);
        assert_eq!(ra["method"]["coding"][0]["code"], "palliative");
        assert!(ra["basis"][0]["reference"]
            .as_str()
            .unwrap()
            .ends_with("QuestionnaireResponse/pal-1-sq"));

        // An advance directive ends no-acp; the palliative phase holds.
        put(&server, json!({"resourceType": "Consent", "id": "pal-1-acp", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentcategorycodes", "code": "acd"}]}],
            "policyRule": {"text": "advance care plan agreed with the patient"},
            "patient": {"reference": "Patient/pal-1"}})).await;
        wait_for(&server, path, |b| {
            flag_status(b, "no-acp").as_deref() == Some("inactive")
                && flag_status(b, "palliative-phase").as_deref() == Some("active")
        })
        .await;

        // A newer answer "I would be surprised" ends the palliative phase from that source.
        put(
            &server,
            surprise_answer("pal-1", "pal-1-sq2", "2026-02-10", true),
        )
        .await;
        wait_for(&server, path, |b| {
            flag_status(b, "palliative-phase").as_deref() == Some("inactive")
        })
        .await;
    }
);

both_stores!(
    a_hospice_care_plan_raises_palliative_phase_and_an_acp_goal_ends_no_acp,
    |server| {
        put(&server, json!({"resourceType": "Patient", "id": "pal-5"})).await;
        put(&server, json!({"resourceType": "CarePlan", "id": "pal-5-hospice", "status": "active",
            "intent": "plan",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "385763009", "display": "Hospice care"}]}],
            "subject": {"reference": "Patient/pal-5"}})).await;
        let path = "Flag?patient=Patient/pal-5";
        wait_for(&server, path, |b| {
            flag_status(b, "palliative-phase").as_deref() == Some("active")
                && flag_status(b, "no-acp").as_deref() == Some("active")
        })
        .await;
        // Advance care planning recorded as a Goal's category ends no-acp.
        put(
            &server,
            json!({"resourceType": "Goal", "id": "pal-5-acp", "lifecycleStatus": "active",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "713603004"}]}],
            "description": {"text": "Die at home, no further hospital admissions"},
            "subject": {"reference": "Patient/pal-5"}}),
        )
        .await;
        wait_for(&server, path, |b| {
            flag_status(b, "no-acp").as_deref() == Some("inactive")
                && flag_status(b, "palliative-phase").as_deref() == Some("active")
        })
        .await;
        // The plan ends: so does the palliative phase from that source.
        put(
            &server,
            json!({"resourceType": "CarePlan", "id": "pal-5-hospice", "status": "completed",
            "intent": "plan",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "385763009"}]}],
            "subject": {"reference": "Patient/pal-5"}}),
        )
        .await;
        wait_for(&server, path, |b| {
            flag_status(b, "palliative-phase").as_deref() == Some("inactive")
        })
        .await;
    }
);

both_stores!(
    a_palliative_condition_puts_the_patient_on_the_worklist_with_missing_domains,
    |server| {
        put(
            &server,
            json!({"resourceType": "Practitioner", "id": "pal-coach"}),
        )
        .await;
        put(&server, json!({"resourceType": "Patient", "id": "pal-2"})).await;
        put(
            &server,
            json!({"resourceType": "CareTeam", "id": "pal-2-team", "status": "active",
            "subject": {"reference": "Patient/pal-2"},
            "participant": [{"role": [{"coding": [{"system": CS, "code": "coach"}]}],
                             "member": {"reference": "Practitioner/pal-coach"}}]}),
        )
        .await;
        put(&server, json!({"resourceType": "Condition", "id": "pal-2-c",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "103735009", "display": "Palliative care"}]},
            "subject": {"reference": "Patient/pal-2"}})).await;
        put(
            &server,
            domain_goal("pal-2", "pal-2-health", "health", "Pain under control"),
        )
        .await;
        put(
            &server,
            domain_goal("pal-2", "pal-2-env", "environment", "Bed downstairs"),
        )
        .await;
        let mut done = domain_goal("pal-2", "pal-2-coping", "coping", "Talk with my children");
        done["lifecycleStatus"] = json!("completed");
        put(&server, done).await;

        let list = wait_for(&server, "Practitioner/pal-coach/$worklist", |b| {
            b["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["resource"]["code"]["coding"][0]["code"] == "no-acp")
        })
        .await;
        let patient = list["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["search"]["mode"] == "match")
            .unwrap();
        assert_eq!(patient["resource"]["id"], "pal-2");
        let missing: Vec<&str> = patient["search"]["extension"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["valueCoding"]["code"].as_str().unwrap())
            .collect();
        // The completed coping goal is not active: two domains without one.
        assert_eq!(missing, ["daily-activities", "coping"]);
        assert_eq!(patient["search"]["score"].as_f64(), Some(0.55));
    }
);

both_stores!(
    domain_goals_and_action_plans_are_checked_against_their_profiles,
    |server| {
        put(&server, json!({"resourceType": "Patient", "id": "pal-3"})).await;
        let mut goal = domain_goal("pal-3", "pal-3-g", "daily-activities", "Walk to the bakery");
        goal.as_object_mut().unwrap().remove("category");
        let reply = server.client.put("Goal/pal-3-g", &goal).await.unwrap();
        expect_status(&reply, 422);
        goal["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-category", "code": "behavioral"}]}]);
        let reply = server.client.put("Goal/pal-3-g", &goal).await.unwrap();
        expect_status(&reply, 422);
        put(
            &server,
            domain_goal("pal-3", "pal-3-g", "daily-activities", "Walk to the bakery"),
        )
        .await;

        let plan = json!({"resourceType": "CarePlan", "id": "pal-3-plan",
            "meta": {"profile": [PLAN_PROFILE]}, "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/pal-3"},
            "goal": [{"reference": "Goal/pal-3-g"}],
            "activity": [{"detail": {"status": "scheduled", "description": "Walk 10 minutes with a walker",
                "scheduledTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}}]});
        // Who does an action and when are must-support, not required: accepted without them.
        let mut bare = plan.clone();
        bare["activity"][0]["detail"]
            .as_object_mut()
            .unwrap()
            .remove("scheduledTiming");
        put(&server, bare).await;
        // Each action needs its description, also the second of two.
        let mut undescribed = plan.clone();
        undescribed["activity"]
            .as_array_mut()
            .unwrap()
            .push(json!({"detail": {"status": "not-started"}}));
        let reply = server
            .client
            .put("CarePlan/pal-3-plan", &undescribed)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 422);
        assert!(
            outcome
                .to_string()
                .contains("CarePlan.activity.detail.description is required"),
            "{outcome}"
        );
        // A plan without goals is no action plan.
        let mut goalless = plan.clone();
        goalless.as_object_mut().unwrap().remove("goal");
        let reply = server
            .client
            .put("CarePlan/pal-3-plan", &goalless)
            .await
            .unwrap();
        expect_status(&reply, 422);
        let mut plan = plan;
        plan["activity"][0]["detail"]["performer"] = json!([{"reference": "Patient/pal-3"}]);
        put(&server, plan).await;
        let stored = expect_status(
            &server.client.get("CarePlan/pal-3-plan").await.unwrap(),
            200,
        );
        assert_eq!(
            stored["activity"][0]["detail"]["performer"][0]["reference"],
            "Patient/pal-3"
        );

        assert_eq!(
            ids(&server, &format!("Goal?patient=Patient/pal-3&category={DOMAIN}|daily-activities&lifecycle-status=active")).await,
            ["pal-3-g"]
        );
        assert!(ids(&server, "Goal?patient=Patient/pal-3&category=health")
            .await
            .is_empty());
        assert_eq!(
            ids(&server, "CarePlan?goal=Goal/pal-3-g").await,
            ["pal-3-plan"]
        );
        // The capability statement names both profiles.
        let statement = expect_status(&server.client.get("metadata").await.unwrap(), 200);
        let profiles: Vec<String> = statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["supportedProfile"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(profiles.contains(&GOAL_PROFILE.to_owned()));
        assert!(profiles.contains(&PLAN_PROFILE.to_owned()));
    }
);

both_stores!(the_engagement_flag_names_the_slipping_domain, |server| {
    put(&server, json!({"resourceType": "Patient", "id": "pal-4"})).await;
    let mut goal = domain_goal("pal-4", "pal-4-g", "daily-activities", "Do my own shopping");
    goal["achievementStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": "worsening"}]});
    put(&server, goal).await;
    let flags = wait_for(&server, "Flag?patient=Patient/pal-4&code=disengaged", |b| {
        b["total"].as_u64().unwrap_or(0) > 0 || !b["entry"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
    let text = flags["entry"][0]["resource"]["code"]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        text,
        "domain Daily activities slipping: goal \"Do my own shopping\" worsening"
    );
});

fn run_command(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

both_stores!(
    the_pgo_pushes_four_domain_goals_and_the_coach_reads_them_back,
    |server| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let push = root.join("examples/pgo-push/push-goals.sh");
        // Pushed twice: conditional creates store nothing twice.
        for _ in 0..2 {
            let push = push.clone();
            let base = server.base.clone();
            let out = tokio::task::spawn_blocking(move || {
                run_command(&["bash", push.to_str().unwrap(), &base])
            })
            .await
            .unwrap();
            assert!(out.contains("transaction-response"), "{out}");
        }
        let plans = common::matches(
            &server,
            "CarePlan?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782",
        )
        .await;
        assert_eq!(plans.len(), 4);
        let goals = common::matches(
            &server,
            "Goal?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|123456782&lifecycle-status=active",
        )
        .await;
        assert_eq!(goals.len(), 4);
        let script = root.join("examples/coach/goals.py");
        let base = server.base.clone();
        let out = tokio::task::spawn_blocking(move || {
            run_command(&["python3", script.to_str().unwrap(), "123456782", &base])
        })
        .await
        .unwrap();
        for domain in [
            "Health",
            "Daily activities",
            "Own way of coping",
            "Environment",
        ] {
            assert!(out.contains(domain), "{domain} in {out}");
        }
        // Each domain's action plan is read back with its actions and who does them.
        assert_eq!(out.matches("action:").count(), 4, "{out}");
        assert!(out.contains("by Patient/"), "{out}");
    }
);
