//! StructureDefinitions, ValueSets and CodeSystems that clients store are used by the validator
//! (issue 18, decision 0051): a stored profile is checked on write when a resource claims it,
//! by `$validate?profile=` and by `--require-profile`; a stored ValueSet over a stored
//! CodeSystem is a required binding's value set; an update of a profile changes the next write,
//! a deletion makes the claim unknown; a profile that could never be used is refused; one with
//! a core url, or a ValueSet with an official one, is stored and not used; of two with one url
//! the one written last; a profile based on a stored one; a transaction that brings its own
//! profile; a stored Questionnaire checks its responses; and a profile stored through one
//! server is used by another on the same PostgreSQL database.

mod common;

use std::time::{Duration, Instant};

use common::outcome::errors;
use common::{create, expect_status, Api, StoreKind, TestServer};
use serde_json::{json, Value};
use signaal::client::Reply;
use signaal::validation::UnknownProfile;

const CONDITIONS: &str = "https://example.org/fhir/CodeSystem/kite-surf-conditions";
const RIDEABLE: &str = "https://example.org/fhir/ValueSet/rideable-conditions";
const SESSION: &str = "https://example.org/fhir/StructureDefinition/kite-session";
const LOGGED_SESSION: &str = "https://example.org/fhir/StructureDefinition/logged-kite-session";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A code system of water conditions that appears nowhere else.
fn conditions() -> Value {
    json!({"resourceType": "CodeSystem", "url": CONDITIONS, "name": "KiteSurfConditions",
        "status": "active", "content": "complete", "caseSensitive": true,
        "concept": [
            {"code": "glassy", "display": "Glassy"},
            {"code": "choppy", "display": "Choppy"},
            {"code": "blown-out", "display": "Blown out"}]})
}

/// The conditions one can ride in: not `blown-out`.
fn rideable() -> Value {
    json!({"resourceType": "ValueSet", "url": RIDEABLE, "name": "RideableConditions",
        "status": "active",
        "compose": {"include": [{"system": CONDITIONS,
            "concept": [{"code": "glassy"}, {"code": "choppy"}]}]}})
}

/// A profile on Observation, differential only: a subject, exactly one category fixed to
/// `activity`, and a value that is a rideable condition (required binding).
fn session_profile(extra: &[Value]) -> Value {
    let mut elements = vec![
        json!({"id": "Observation.category", "path": "Observation.category", "min": 1, "max": "1",
            "patternCodeableConcept": {"coding": [{"system": CATEGORY, "code": "activity"}]}}),
        json!({"id": "Observation.subject", "path": "Observation.subject", "min": 1}),
        json!({"id": "Observation.value[x]", "path": "Observation.value[x]", "min": 1,
            "type": [{"code": "CodeableConcept"}],
            "binding": {"strength": "required", "valueSet": RIDEABLE}}),
    ];
    elements.extend(extra.iter().cloned());
    json!({"resourceType": "StructureDefinition", "url": SESSION, "name": "KiteSession",
        "status": "active", "kind": "resource", "abstract": false, "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint", "differential": {"element": elements}})
}

/// A profile based on the stored session profile: the session's time must be logged too.
fn logged_session_profile() -> Value {
    json!({"resourceType": "StructureDefinition", "url": LOGGED_SESSION,
        "name": "LoggedKiteSession", "status": "active", "kind": "resource", "abstract": false,
        "type": "Observation", "baseDefinition": SESSION, "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation.effective[x]", "path": "Observation.effective[x]", "min": 1}]}})
}

/// A kite session claiming `profile`, in `condition` water.
fn session(profile: &str, condition: &str) -> Value {
    json!({"resourceType": "Observation", "meta": {"profile": [profile]}, "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "activity"}]}],
        "code": {"text": "kite surf session"},
        "subject": {"reference": "Patient/rider"},
        "valueCodeableConcept": {"coding": [{"system": CONDITIONS, "code": condition}]}})
}

fn without(mut resource: Value, element: &str) -> Value {
    resource.as_object_mut().unwrap().remove(element);
    resource
}

/// Stores the code system, the value set and the session profile.
async fn store_definitions(server: &TestServer) -> String {
    create(server, &conditions()).await;
    create(server, &rideable()).await;
    create(server, &session_profile(&[])).await
}

async fn post(server: &TestServer, path: &str, body: &Value) -> Reply {
    server.client().post(path, body).await.unwrap()
}

both_stores!(
    a_stored_profile_is_checked_when_a_resource_claims_it,
    |server| {
        // Before it is stored, the claim is only a warning.
        expect_status(
            &post(
                &server,
                "Observation",
                &without(session(SESSION, "glassy"), "subject"),
            )
            .await,
            201,
        );
        store_definitions(&server).await;
        let outcome = expect_status(
            &post(
                &server,
                "Observation",
                &without(session(SESSION, "glassy"), "subject"),
            )
            .await,
            422,
        );
        let found = errors(&outcome);
        assert!(
            found.iter().any(|e| e.contains("element subject")),
            "{found:?}"
        );
        let mut other_category = session(SESSION, "glassy");
        other_category["category"] = json!([{"coding": [{"system": CATEGORY, "code": "exam"}]}]);
        let outcome = expect_status(&post(&server, "Observation", &other_category).await, 422);
        assert!(
            errors(&outcome)
                .iter()
                .any(|e| e.contains("Observation.category")),
            "{outcome}"
        );
        create(&server, &session(SESSION, "choppy")).await;
    }
);

both_stores!(
    a_stored_value_set_bound_required_refuses_a_code_outside_it,
    |server| {
        store_definitions(&server).await;
        let outcome = expect_status(
            &post(&server, "Observation", &session(SESSION, "blown-out")).await,
            422,
        );
        let found = errors(&outcome);
        assert!(
            found
                .iter()
                .any(|e| e.contains("blown-out") && e.contains(RIDEABLE)),
            "{found:?}"
        );
        create(&server, &session(SESSION, "glassy")).await;
        // A code the stored code system does not have at all.
        let outcome = expect_status(
            &post(&server, "Observation", &session(SESSION, "flat")).await,
            422,
        );
        assert!(
            errors(&outcome).iter().any(|e| e.contains("flat")),
            "{outcome}"
        );
    }
);

both_stores!(
    validate_uses_a_stored_profile_at_type_and_instance_level,
    |server| {
        let plain = without(session(SESSION, "blown-out"), "meta");
        // Not known yet: the operation cannot validate against it.
        expect_status(
            &post(
                &server,
                &format!("Observation/$validate?profile={SESSION}"),
                &plain,
            )
            .await,
            400,
        );
        store_definitions(&server).await;
        let outcome = expect_status(
            &post(
                &server,
                &format!("Observation/$validate?profile={SESSION}"),
                &plain,
            )
            .await,
            200,
        );
        assert!(
            errors(&outcome).iter().any(|e| e.contains("blown-out")),
            "{outcome}"
        );
        // The stored resource, which claims nothing, against the profile.
        let id = create(&server, &without(session(SESSION, "choppy"), "meta")).await;
        let reply = server
            .client()
            .get(&format!("Observation/{id}/$validate?profile={SESSION}"))
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert!(errors(&outcome).is_empty(), "{outcome}");
        let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": without(plain, "subject")},
        {"name": "profile", "valueCanonical": SESSION}]});
        let outcome = expect_status(
            &post(&server, &format!("Observation/{id}/$validate"), &parameters).await,
            200,
        );
        let found = errors(&outcome);
        assert!(
            found.iter().any(|e| e.contains("element subject")),
            "{found:?}"
        );
    }
);

both_stores!(an_update_of_the_profile_changes_the_next_write, |server| {
    let id = store_definitions(&server).await;
    let with_note = session(SESSION, "glassy");
    create(&server, &with_note).await;
    let mut stricter =
        session_profile(&[json!({"id": "Observation.note", "path": "Observation.note", "min": 1})]);
    stricter["id"] = json!(id);
    expect_status(
        &server
            .client()
            .put(&format!("StructureDefinition/{id}"), &stricter)
            .await
            .unwrap(),
        200,
    );
    let outcome = expect_status(&post(&server, "Observation", &with_note).await, 422);
    assert!(
        errors(&outcome).iter().any(|e| e.contains("element note")),
        "{outcome}"
    );
    let mut noted = session(SESSION, "glassy");
    noted["note"] = json!([{"text": "gusty after noon"}]);
    create(&server, &noted).await;
});

both_stores!(a_deleted_profile_is_no_longer_known, |server| {
    let id = store_definitions(&server).await;
    let bad = without(session(SESSION, "glassy"), "subject");
    expect_status(&post(&server, "Observation", &bad).await, 422);
    expect_status(
        &server
            .client()
            .delete(&format!("StructureDefinition/{id}"))
            .await
            .unwrap(),
        204,
    );
    // Unknown now: a warning by default (`--unknown-profile error` below).
    expect_status(&post(&server, "Observation", &bad).await, 201);
    let outcome = expect_status(&post(&server, "Observation/$validate", &bad).await, 200);
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "warning"
                && i["diagnostics"].as_str().unwrap().contains("not known")),
        "{outcome}"
    );
});

async fn a_deleted_profile_is_an_error_when_unknown_profiles_are(kind: StoreKind) {
    let Some(server) = TestServer::start_configured(kind, |s| {
        s.validation.unknown_profile = UnknownProfile::Error
    })
    .await
    else {
        return;
    };
    let id = store_definitions(&server).await;
    create(&server, &session(SESSION, "glassy")).await;
    expect_status(
        &server
            .client()
            .delete(&format!("StructureDefinition/{id}"))
            .await
            .unwrap(),
        204,
    );
    let outcome = expect_status(
        &post(&server, "Observation", &session(SESSION, "glassy")).await,
        422,
    );
    assert!(
        errors(&outcome).iter().any(|e| e.contains("not known")),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_profile_is_an_error_when_unknown_profiles_are_sqlite() {
    a_deleted_profile_is_an_error_when_unknown_profiles_are(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_profile_is_an_error_when_unknown_profiles_are_postgres() {
    a_deleted_profile_is_an_error_when_unknown_profiles_are(StoreKind::Postgres).await;
}

both_stores!(a_profile_that_could_never_be_used_is_refused, |server| {
    let refused = |outcome: &Value| errors(outcome).join("; ");
    // Its base is not known.
    let mut orphan = session_profile(&[]);
    orphan["baseDefinition"] = json!("https://example.org/fhir/StructureDefinition/nowhere");
    let outcome = expect_status(&post(&server, "StructureDefinition", &orphan).await, 422);
    assert!(
        refused(&outcome).contains("nowhere is not known"),
        "{outcome}"
    );
    // Its differential names an element Observation does not have.
    let wingspan = session_profile(&[
        json!({"id": "Observation.wingspan", "path": "Observation.wingspan", "min": 1}),
    ]);
    let outcome = expect_status(&post(&server, "StructureDefinition", &wingspan).await, 422);
    assert!(
        refused(&outcome).contains("Observation.wingspan is not in the base"),
        "{outcome}"
    );
    // `$validate` says the same, as an error of the outcome.
    let outcome = expect_status(
        &post(&server, "StructureDefinition/$validate", &wingspan).await,
        200,
    );
    assert!(refused(&outcome).contains("wingspan"), "{outcome}");
    // Nothing was stored.
    let bundle = expect_status(
        &server
            .client()
            .get(&format!("StructureDefinition?url={SESSION}"))
            .await
            .unwrap(),
        200,
    );
    assert!(
        bundle["entry"].as_array().is_none_or(Vec::is_empty),
        "{bundle}"
    );
    // A logical model is stored, and not used.
    let logical = json!({"resourceType": "StructureDefinition",
        "url": "https://example.org/fhir/StructureDefinition/kite-logbook", "name": "KiteLogbook",
        "status": "draft", "kind": "logical", "abstract": false,
        "type": "https://example.org/fhir/StructureDefinition/kite-logbook",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Element", "derivation": "specialization",
        "differential": {"element": [{"id": "kite-logbook", "path": "kite-logbook"},
            {"id": "kite-logbook.spot", "path": "kite-logbook.spot", "min": 1, "max": "1", "type": [{"code": "string"}]}]}});
    create(&server, &logical).await;
});

both_stores!(
    a_profile_with_the_url_of_a_core_one_is_stored_but_not_used,
    |server| {
        store_definitions(&server).await;
        let mut impostor = session_profile(&[]);
        impostor["url"] = json!("http://hl7.org/fhir/StructureDefinition/bodyweight");
        let outcome = expect_status(
            &post(&server, "StructureDefinition/$validate", &impostor).await,
            200,
        );
        assert!(
            outcome["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["severity"] == "warning"
                    && i["diagnostics"].as_str().unwrap().contains("built in")),
            "{outcome}"
        );
        create(&server, &impostor).await;
        // The core bodyweight is what a claim of it is checked against: a kite session is no
        // body weight (its code and value), whatever the stored copy says.
        let mut claim = session(SESSION, "glassy");
        claim["meta"]["profile"] = json!(["http://hl7.org/fhir/StructureDefinition/bodyweight"]);
        let outcome = expect_status(&post(&server, "Observation", &claim).await, 422);
        assert!(!errors(&outcome).is_empty(), "{outcome}");
    }
);

both_stores!(
    a_profile_based_on_a_stored_profile_gets_its_snapshot_over_the_chain,
    |server| {
        store_definitions(&server).await;
        create(&server, &logged_session_profile()).await;
        // Neither its own rule (effective) nor its base's (subject).
        let outcome = expect_status(
            &post(
                &server,
                "Observation",
                &without(session(LOGGED_SESSION, "glassy"), "subject"),
            )
            .await,
            422,
        );
        let found = errors(&outcome);
        assert!(
            found.iter().any(|e| e.contains("element effective")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|e| e.contains("element subject")),
            "{found:?}"
        );
        let mut logged = session(LOGGED_SESSION, "choppy");
        logged["effectiveDateTime"] = json!("2031-07-14T16:00:00+02:00");
        create(&server, &logged).await;
    }
);

/// A transaction Bundle of the definitions and `observation`, all by PUT or POST.
fn transaction_with(observation: Value) -> Value {
    let put = |r: Value, id: &str| {
        let rtype = r["resourceType"].as_str().unwrap().to_owned();
        let mut r = r;
        r["id"] = json!(id);
        json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": r,
            "request": {"method": "PUT", "url": format!("{rtype}/{id}")}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        put(conditions(), "kite-surf-conditions"),
        put(rideable(), "rideable-conditions"),
        put(session_profile(&[]), "kite-session"),
        put(logged_session_profile(), "logged-kite-session"),
        {"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": observation,
            "request": {"method": "POST", "url": "Observation"}},
    ]})
}

both_stores!(
    a_transaction_is_validated_with_the_profiles_it_brings,
    |server| {
        let bad = without(session(LOGGED_SESSION, "blown-out"), "subject");
        let outcome = expect_status(&post(&server, "", &transaction_with(bad)).await, 422);
        let found = errors(&outcome);
        assert!(found.iter().any(|e| e.contains("blown-out")), "{found:?}");
        assert!(found.iter().any(|e| e.contains("subject")), "{found:?}");
        let mut good = session(LOGGED_SESSION, "glassy");
        good["effectiveDateTime"] = json!("2031-07-14T16:00:00+02:00");
        expect_status(&post(&server, "", &transaction_with(good)).await, 200);
        // Stored: in force for the next request.
        expect_status(
            &post(&server, "Observation", &session(SESSION, "blown-out")).await,
            422,
        );
    }
);

async fn a_stored_profile_is_loaded_at_start_and_may_be_required(kind: StoreKind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    store_definitions(&server).await;
    let server = server
        .restart(|s| {
            s.validation.required = vec![("Observation".to_owned(), SESSION.to_owned())];
        })
        .await;
    // Required, so a resource claiming nothing is checked against it.
    let plain = without(session(SESSION, "blown-out"), "meta");
    let outcome = expect_status(&post(&server, "Observation", &plain).await, 422);
    assert!(
        errors(&outcome).iter().any(|e| e.contains("blown-out")),
        "{outcome}"
    );
    create(&server, &without(session(SESSION, "glassy"), "meta")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_profile_is_loaded_at_start_and_may_be_required_sqlite() {
    a_stored_profile_is_loaded_at_start_and_may_be_required(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_profile_is_loaded_at_start_and_may_be_required_postgres() {
    a_stored_profile_is_loaded_at_start_and_may_be_required(StoreKind::Postgres).await;
}

/// With two servers on one PostgreSQL database, a profile stored through one is used by the
/// other within a second (`NOTIFY signaal_registry`, decision 0036).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_stored_through_one_server_is_used_by_the_other() {
    let Some((url, _)) = common::fresh_database(StoreKind::Postgres).await else {
        return;
    };
    let one = TestServer::start_on(url.clone(), None, |_| {}).await;
    let two = TestServer::start_on(url, None, |_| {}).await;
    let bad = without(session(SESSION, "glassy"), "subject");
    expect_status(&post(&two, "Observation/$validate", &bad).await, 200);
    store_definitions(&one).await;
    let start = Instant::now();
    loop {
        let outcome = expect_status(&post(&two, "Observation/$validate", &bad).await, 200);
        if !errors(&outcome).is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not in force on the other server within a second: {outcome}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "profile in force on the other server after {:?}",
        start.elapsed()
    );
    expect_status(&post(&two, "Observation", &bad).await, 422);
}

both_stores!(
    of_two_stored_with_one_url_the_one_written_last_is_used,
    |server| {
        create(&server, &conditions()).await;
        create(&server, &rideable()).await;
        create(&server, &session_profile(&[])).await;
        let later = create(
            &server,
            &session_profile(&[
                json!({"id": "Observation.note", "path": "Observation.note", "min": 1}),
            ]),
        )
        .await;
        let plain = session(SESSION, "glassy");
        let outcome = expect_status(&post(&server, "Observation", &plain).await, 422);
        assert!(
            errors(&outcome).iter().any(|e| e.contains("element note")),
            "{outcome}"
        );
        // Without the later one, the earlier one is used again.
        expect_status(
            &server
                .client()
                .delete(&format!("StructureDefinition/{later}"))
                .await
                .unwrap(),
            204,
        );
        create(&server, &plain).await;
        expect_status(
            &post(&server, "Observation", &without(plain, "subject")).await,
            422,
        );
    }
);

both_stores!(
    a_value_set_with_an_official_url_is_stored_but_not_used,
    |server| {
        // administrative-gender is official: a narrower copy does not narrow Patient.gender.
        let narrower = json!({"resourceType": "ValueSet",
        "url": "http://hl7.org/fhir/ValueSet/administrative-gender", "name": "OnlyFemale",
        "status": "active", "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender",
            "concept": [{"code": "female"}]}]}});
        let outcome = expect_status(&post(&server, "ValueSet/$validate", &narrower).await, 200);
        assert!(
            outcome["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["severity"] == "warning"
                    && i["diagnostics"]
                        .as_str()
                        .unwrap()
                        .contains("stored but not used")),
            "{outcome}"
        );
        create(&server, &narrower).await;
        create(
            &server,
            &json!({"resourceType": "Patient", "gender": "male"}),
        )
        .await;
    }
);

both_stores!(
    a_stored_questionnaire_checks_the_responses_that_name_it,
    |server| {
        let url = "https://example.org/fhir/Questionnaire/kite-spot-check";
        let response = json!({"resourceType": "QuestionnaireResponse", "questionnaire": url,
        "status": "completed",
        "item": [{"linkId": "launch", "text": "Launch site", "answer": [{"valueString": "Brouwersdam"}]}]});
        // Not known yet: not checked.
        create(&server, &response).await;
        create(
            &server,
            &json!({"resourceType": "Questionnaire", "url": url, "status": "active",
            "item": [
                {"linkId": "launch", "text": "Launch site", "type": "string"},
                {"linkId": "wind", "text": "Wind in knots", "type": "integer", "required": true}]}),
        )
        .await;
        let outcome = expect_status(
            &post(&server, "QuestionnaireResponse", &response).await,
            400,
        );
        assert!(
            errors(&outcome)
                .iter()
                .any(|e| e.contains("'wind' has no answer")),
            "{outcome}"
        );
    }
);

both_stores!(
    a_profile_without_derivation_is_a_constraint_on_its_base,
    |server| {
        let url = "https://example.org/fhir/StructureDefinition/kite-method";
        let mut profile = json!({"resourceType": "StructureDefinition", "url": url,
        "name": "KiteMethod", "status": "draft", "kind": "resource", "abstract": false,
        "type": "Observation", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {"element": [
            {"id": "Observation.method", "path": "Observation.method", "min": 1}]}});
        create(&server, &profile).await;
        let claim = json!({"resourceType": "Observation", "meta": {"profile": [url]},
        "status": "final", "code": {"text": "kite surf session"}});
        let outcome = expect_status(&post(&server, "Observation", &claim).await, 422);
        assert!(
            errors(&outcome)
                .iter()
                .any(|e| e.contains("element method")),
            "{outcome}"
        );
        // A new type (specialization) is stored and not used: the claim is unknown again.
        profile["derivation"] = json!("specialization");
        profile["url"] = json!("https://example.org/fhir/StructureDefinition/kite-type");
        create(&server, &profile).await;
        let mut other = claim.clone();
        other["meta"]["profile"] =
            json!(["https://example.org/fhir/StructureDefinition/kite-type"]);
        create(&server, &other).await;
    }
);
