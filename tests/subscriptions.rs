//! Topic-based subscriptions (FHIR Subscriptions R5 Backport IG 1.1.0, R4), driven as a
//! subscriber would: a real endpoint on loopback (`common::receiver`) and a websocket client.

mod common;

use std::time::{Duration, Instant};

use common::auth::Secured;
use common::receiver::{event_numbers, status_parameter, Receiver};
use common::{expect_status, TestServer};
use serde_json::{json, Value};

const IG: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
const FLAG_TOPIC: &str = "https://signaal.dev/fhir/SubscriptionTopic/flag";
const ENCOUNTER_TOPIC: &str = "https://signaal.dev/fhir/SubscriptionTopic/encounter-finished";
const WAIT: Duration = Duration::from_secs(15);

/// A Subscription per the IG's R4 profile.
fn subscription(
    topic: &str,
    filters: &[&str],
    channel: &str,
    endpoint: &str,
    content: &str,
) -> Value {
    let filters: Vec<Value> = filters
        .iter()
        .map(|f| json!({"url": format!("{IG}/backport-filter-criteria"), "valueString": f}))
        .collect();
    let mut s = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "tell the coach",
        "criteria": topic,
        "channel": {
            "type": channel,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{IG}/backport-payload-content"), "valueCode": content}]},
            "header": ["X-Coach-Key: k-42"],
        }
    });
    if !filters.is_empty() {
        s["_criteria"] = json!({"extension": filters});
    }
    if !endpoint.is_empty() {
        s["channel"]["endpoint"] = json!(endpoint);
    }
    s
}

fn with_channel_extension(mut s: Value, name: &str, value: Value) -> Value {
    let ext = json!({"url": format!("{IG}/{name}"), "valueUnsignedInt": value});
    match s["channel"]["extension"].as_array_mut() {
        Some(list) => list.push(ext),
        None => s["channel"]["extension"] = json!([ext]),
    }
    s
}

fn flag(patient: &str, status: &str, priority: i64) -> Value {
    json!({
        "resourceType": "Flag",
        "extension": [{"url": "https://signaal.dev/fhir/StructureDefinition/flag-priority", "valueInteger": priority}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical"}]}],
        "code": {"text": "falls risk rising"},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

async fn post(server: &TestServer, path: &str, body: &Value) -> Value {
    expect_status(&server.client.post(path, body).await.unwrap(), 201)
}

/// Waits until `Subscription/id` has `status`; returns it.
async fn until_status(server: &TestServer, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = server
            .client
            .get(&format!("Subscription/{id}"))
            .await
            .unwrap()
            .json();
        if s["status"] == status {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "Subscription/{id} never became {status}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the rest-hook Subscription `s` to `receiver`, then waits for its handshake and until
/// it is active; its id.
async fn subscribe(server: &TestServer, receiver: &Receiver, s: &Value) -> String {
    let id = post(server, "Subscription", s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    receiver
        .next_of("handshake", WAIT)
        .await
        .expect("handshake");
    until_status(server, &id, "active").await;
    id
}

async fn patients(server: &TestServer, ids: &[&str]) {
    for id in ids {
        let reply = server
            .client
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id}),
            )
            .await
            .unwrap();
        assert!(reply.status == 201 || reply.status == 200);
    }
}

both_stores!(
    a_write_while_the_handshake_is_under_way_is_notified_once_active,
    |server| {
        // The IG counts events from the subscription's creation: a write that comes after the
        // Subscription, while its handshake is still unanswered, is an event; it is delivered once
        // the subscription is active, numbered 1.
        patients(&server, &["hs-p1"]).await;
        let receiver = Receiver::start().await;
        receiver.set_slow(Duration::from_millis(1500));
        let s = subscription(
            FLAG_TOPIC,
            &["Flag?patient=Patient/hs-p1"],
            "rest-hook",
            &receiver.url,
            "id-only",
        );
        let id = post(&server, "Subscription", &s).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let raised = post(&server, "Flag", &flag("hs-p1", "active", 3)).await;
        assert_eq!(
            expect_status(
                &server
                    .client
                    .get(&format!("Subscription/{id}"))
                    .await
                    .unwrap(),
                200
            )["status"],
            "requested",
            "the Flag must be written before the handshake is answered"
        );
        receiver
            .next_of("handshake", WAIT)
            .await
            .expect("a handshake");
        receiver.set_slow(Duration::ZERO);
        let event = receiver
            .next_of("event-notification", WAIT)
            .await
            .expect("the Flag written during the handshake is notified");
        assert_eq!(event.event_numbers(), vec![1]);
        let focus = event.body["entry"][1]["fullUrl"].as_str().unwrap();
        assert!(
            focus.ends_with(&format!("Flag/{}", raised["id"].as_str().unwrap())),
            "{focus}"
        );
    }
);

both_stores!(rest_hook_lifecycle, |server| {
    patients(&server, &["sub-p1", "sub-p2"]).await;
    let receiver = Receiver::start().await;
    let s = with_channel_extension(
        subscription(
            FLAG_TOPIC,
            &["Flag?patient=Patient/sub-p1&priority=ge2"],
            "rest-hook",
            &receiver.url,
            "full-resource",
        ),
        "backport-heartbeat-period",
        json!(1),
    );
    let created = post(&server, "Subscription", &s).await;
    assert_eq!(created["status"], "requested");
    let id = created["id"].as_str().unwrap().to_owned();

    // Handshake first, with the channel's header; then the subscription is active.
    let handshake = receiver.next(WAIT).await.expect("a handshake");
    assert_eq!(handshake.kind(), "handshake");
    assert_eq!(handshake.body["type"], "history");
    assert_eq!(handshake.headers["x-coach-key"], "k-42");
    assert_eq!(handshake.headers["content-type"], "application/fhir+json");
    until_status(&server, &id, "active").await;

    // An event: a flag of sub-p1 with priority 3; the other patient's and a low one are not.
    post(&server, "Flag", &flag("sub-p2", "active", 3)).await;
    post(&server, "Flag", &flag("sub-p1", "active", 1)).await;
    let raised = post(&server, "Flag", &flag("sub-p1", "active", 3)).await;
    let flag_id = raised["id"].as_str().unwrap().to_owned();
    let event = receiver
        .next_of("event-notification", WAIT)
        .await
        .expect("an event notification");
    assert_eq!(event.event_numbers(), vec![1]);
    assert_eq!(
        status_parameter(&event.body, "events-since-subscription-start"),
        "1"
    );
    assert_eq!(status_parameter(&event.body, "topic"), FLAG_TOPIC);
    let focus = &event.body["entry"][1];
    assert_eq!(focus["resource"]["id"], flag_id.as_str());
    assert_eq!(focus["request"]["method"], "POST");

    // Heartbeats while nothing happens.
    let heartbeat = receiver
        .next_of("heartbeat", WAIT)
        .await
        .expect("a heartbeat");
    assert_eq!(status_parameter(&heartbeat.body, "status"), "active");

    // The endpoint goes down: the flag made inactive is retried until it comes back.
    receiver.set_down(true);
    let mut ended = flag("sub-p1", "inactive", 3);
    ended["id"] = json!(flag_id);
    expect_status(
        &server
            .client
            .put(&format!("Flag/{flag_id}"), &ended)
            .await
            .unwrap(),
        200,
    );
    let deadline = Instant::now() + WAIT;
    while receiver.refused() < 3 {
        assert!(Instant::now() < deadline, "the server did not retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile $events replays what was recorded, by number.
    let replay = server
        .client
        .get(&format!(
            "Subscription/{id}/$events?eventsSinceNumber=1&eventsUntilNumber=2"
        ))
        .await
        .unwrap();
    let replay = expect_status(&replay, 200);
    assert_eq!(replay["type"], "history");
    assert_eq!(status_parameter(&replay, "type"), "query-event");
    assert_eq!(event_numbers(&replay), vec![1, 2]);
    let status = expect_status(
        &server
            .client
            .get(&format!("Subscription/{id}/$status"))
            .await
            .unwrap(),
        200,
    );
    assert_eq!(status["entry"][0]["resource"]["resourceType"], "Parameters");
    assert_eq!(
        status_parameter(
            &json!({"entry": [{"resource": status["entry"][0]["resource"]}]}),
            "events-since-subscription-start"
        ),
        "2"
    );

    // Back up: event 2 arrives, in order, once.
    receiver.set_down(false);
    let retried = receiver
        .next_of("event-notification", Duration::from_secs(30))
        .await
        .expect("the retried event");
    assert_eq!(retried.event_numbers(), vec![2]);
    assert_eq!(retried.body["entry"][1]["resource"]["status"], "inactive");

    // Off: no more notifications.
    let mut off = server
        .client
        .get(&format!("Subscription/{id}"))
        .await
        .unwrap()
        .json();
    off["status"] = json!("off");
    expect_status(
        &server
            .client
            .put(&format!("Subscription/{id}"), &off)
            .await
            .unwrap(),
        200,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    post(&server, "Flag", &flag("sub-p1", "active", 5)).await;
    let after = receiver.next(Duration::from_secs(2)).await;
    assert!(
        after
            .as_ref()
            .is_none_or(|r| r.kind() != "event-notification"),
        "an event after off: {:?}",
        after.map(|r| r.body)
    );
});

both_stores!(a_slow_endpoint_does_not_delay_another, |server| {
    patients(&server, &["slow-p1"]).await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    for receiver in [&slow, &fast] {
        let s = subscription(
            FLAG_TOPIC,
            &["Flag?patient=Patient/slow-p1"],
            "rest-hook",
            &receiver.url,
            "id-only",
        );
        subscribe(&server, receiver, &s).await;
    }
    // The slow one takes 8 s to answer each notification (within its 10 s timeout).
    slow.set_slow(Duration::from_secs(8));
    post(&server, "Flag", &flag("slow-p1", "active", 3)).await;
    post(&server, "Flag", &flag("slow-p1", "active", 4)).await;
    let mut numbers = Vec::new();
    while numbers.len() < 2 {
        let event = fast
            .next_of("event-notification", Duration::from_secs(4))
            .await
            .expect("the fast endpoint is notified while the slow one is busy");
        numbers.extend(event.event_numbers());
    }
    assert_eq!(numbers, vec![1, 2]);
});

both_stores!(an_http_endpoint_off_loopback_is_an_error, |server| {
    let s = subscription(
        FLAG_TOPIC,
        &[],
        "rest-hook",
        "http://coach.example.org/hook",
        "id-only",
    );
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let errored = until_status(&server, &id, "error").await;
    assert!(
        errored["error"].as_str().unwrap().contains("https"),
        "{errored}"
    );
});

both_stores!(a_handshake_nobody_answers_is_an_error, |server| {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let s = subscription(FLAG_TOPIC, &[], "rest-hook", &url, "empty");
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let errored = until_status(&server, &id, "error").await;
    assert!(
        errored["error"].as_str().unwrap().contains("handshake"),
        "{errored}"
    );
});

// `maxCount`: events that waited (the endpoint was down) come at most that many a
// notification, in order.
both_stores!(max_count_bounds_the_events_of_one_notification, |server| {
    patients(&server, &["max-p1"]).await;
    let receiver = Receiver::start().await;
    let s = with_channel_extension(
        subscription(
            FLAG_TOPIC,
            &["Flag?patient=Patient/max-p1"],
            "rest-hook",
            &receiver.url,
            "id-only",
        ),
        "backport-max-count",
        json!(2),
    );
    let id = subscribe(&server, &receiver, &s).await;
    receiver.set_down(true);
    for _ in 0..5 {
        post(&server, "Flag", &flag("max-p1", "active", 3)).await;
    }
    // All five recorded while the endpoint is down.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = server
            .client
            .get(&format!("Subscription/{id}/$status"))
            .await
            .unwrap()
            .json();
        if status_parameter(&status, "events-since-subscription-start") == "5" {
            break;
        }
        assert!(Instant::now() < deadline, "not recorded: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.set_down(false);
    let mut numbers = Vec::new();
    while numbers.len() < 5 {
        let received = receiver
            .next_of("event-notification", WAIT)
            .await
            .expect("the waiting events");
        let these = received.event_numbers();
        assert!(!these.is_empty() && these.len() <= 2, "{these:?}");
        numbers.extend(these);
    }
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
});

// `timeout`: an endpoint slower than the subscription's timeout has not taken the
// notification; a handshake that times out puts the subscription in `error`, saying so.
both_stores!(an_endpoint_slower_than_the_timeout_fails, |server| {
    let receiver = Receiver::start().await;
    receiver.set_slow(Duration::from_secs(4));
    let s = with_channel_extension(
        subscription(FLAG_TOPIC, &[], "rest-hook", &receiver.url, "id-only"),
        "backport-timeout",
        json!(1),
    );
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = until_status(&server, &id, "error").await;
    let reason = failed["error"].as_str().unwrap_or_default();
    assert!(reason.contains("longer than 1 s"), "{failed}");
});

// Redirects are never followed: a handshake answered with a redirect to another host fails,
// and that host hears nothing.
both_stores!(a_redirect_is_not_followed, |server| {
    let elsewhere = Receiver::start_on("127.0.0.2:0".parse().unwrap()).await;
    let receiver = Receiver::start().await;
    receiver.set_redirect(Some(elsewhere.url.clone()));
    let s = subscription(FLAG_TOPIC, &[], "rest-hook", &receiver.url, "id-only");
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = until_status(&server, &id, "error").await;
    assert!(
        failed.to_string().contains("redirects are not followed"),
        "{failed}"
    );
    assert_eq!(receiver.refused(), 1);
    assert!(elsewhere.next(Duration::from_millis(500)).await.is_none());
});

both_stores!(an_unknown_topic_is_an_error, |server| {
    let receiver = Receiver::start().await;
    let s = subscription(
        "https://example.org/topics/none",
        &[],
        "rest-hook",
        &receiver.url,
        "id-only",
    );
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let errored = until_status(&server, &id, "error").await;
    assert!(errored["error"].as_str().unwrap().contains("not a topic"));
});

both_stores!(an_encounter_notifies_once_when_it_finishes, |server| {
    patients(&server, &["enc-p1"]).await;
    let receiver = Receiver::start().await;
    let s = subscription(
        ENCOUNTER_TOPIC,
        &["Encounter?patient=Patient/enc-p1"],
        "rest-hook",
        &receiver.url,
        "id-only",
    );
    subscribe(&server, &receiver, &s).await;
    let mut encounter = json!({
        "resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/enc-p1"},
    });
    let created = post(&server, "Encounter", &encounter).await;
    let eid = created["id"].as_str().unwrap().to_owned();
    encounter["id"] = json!(eid);
    encounter["status"] = json!("finished");
    for _ in 0..2 {
        // Finished, then the same again: only the change is an event.
        expect_status(
            &server
                .client
                .put(&format!("Encounter/{eid}"), &encounter)
                .await
                .unwrap(),
            200,
        );
        encounter["period"] = json!({"end": "2026-01-02"});
    }
    let event = receiver
        .next_of("event-notification", WAIT)
        .await
        .expect("an event");
    assert_eq!(event.event_numbers(), vec![1]);
    let focus = &event.body["entry"][1];
    assert!(focus["fullUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("Encounter/{eid}")));
    assert!(
        focus.get("resource").is_none(),
        "id-only carries no resource"
    );
    assert!(receiver
        .next_of("event-notification", Duration::from_secs(2))
        .await
        .is_none());
});

both_stores!(a_posted_topic_is_in_force_at_once, |server| {
    patients(&server, &["topic-p1"]).await;
    let x = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";
    let url = "https://example.org/topics/allergy-recorded";
    let topic = json!({
        "resourceType": "Basic",
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        "extension": [
            {"url": format!("{x}url"), "valueUri": url},
            {"url": format!("{x}resourceTrigger"), "extension": [
                {"url": "resource", "valueUri": "AllergyIntolerance"},
                {"url": "supportedInteraction", "valueCode": "create"},
            ]},
            {"url": format!("{x}canFilterBy"), "extension": [
                {"url": "resource", "valueUri": "AllergyIntolerance"},
                {"url": "filterParameter", "valueString": "patient"},
            ]},
        ],
    });
    post(&server, "Basic", &topic).await;
    // Advertised in the CapabilityStatement.
    let deadline = Instant::now() + WAIT;
    loop {
        let cs = server.client.get("metadata").await.unwrap().json();
        let listed = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Subscription")
            .unwrap()["extension"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["valueCanonical"] == url);
        if listed {
            break;
        }
        assert!(Instant::now() < deadline, "the topic is not advertised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receiver = Receiver::start().await;
    let s = subscription(
        url,
        &["AllergyIntolerance?patient=Patient/topic-p1"],
        "rest-hook",
        &receiver.url,
        "full-resource",
    );
    subscribe(&server, &receiver, &s).await;
    post(
        &server,
        "AllergyIntolerance",
        &json!({"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}, "patient": {"reference": "Patient/topic-p1"}, "code": {"text": "peanuts"}}),
    )
    .await;
    let event = receiver
        .next_of("event-notification", WAIT)
        .await
        .expect("an event of the posted topic");
    assert_eq!(
        event.body["entry"][1]["resource"]["code"]["text"],
        "peanuts"
    );
});

both_stores!(the_capability_statement_lists_the_topics, |server| {
    let cs = server.client.get("metadata").await.unwrap().json();
    let subscription = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap()
        .clone();
    let topics: Vec<&str> = subscription["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["url"]
                == "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
        })
        .filter_map(|e| e["valueCanonical"].as_str())
        .collect();
    assert!(topics.contains(&FLAG_TOPIC), "{topics:?}");
    assert!(topics.contains(&ENCOUNTER_TOPIC), "{topics:?}");
    let ops: Vec<&str> = subscription["operation"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(ops.contains(&"events") && ops.contains(&"get-ws-binding-token"));
});

/// The next text message of a websocket, as JSON.
async fn next_text<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a websocket message in time")
            .expect("the socket stays open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str::<Value>(&text).unwrap();
        }
    }
}

both_stores!(websocket_channel, |server| {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    patients(&server, &["ws-p1"]).await;
    let s = subscription(
        "https://signaal.dev/fhir/SubscriptionTopic/observation-created",
        &["Observation?patient=Patient/ws-p1"],
        "websocket",
        "",
        "id-only",
    );
    let id = post(&server, "Subscription", &s).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until_status(&server, &id, "active").await;
    // An event before anyone is bound waits for the binding.
    post(
        &server,
        "Observation",
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                "subject": {"reference": "Patient/ws-p1"}}),
    )
    .await;
    let token = expect_status(
        &server
            .client
            .get(&format!("Subscription/{id}/$get-ws-binding-token"))
            .await
            .unwrap(),
        200,
    );
    let param = |name: &str| {
        token["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| {
                p.as_object()?
                    .iter()
                    .find(|(k, _)| k.starts_with("value"))
                    .map(|(_, v)| v.as_str().unwrap().to_owned())
            })
            .unwrap()
    };
    let (mut socket, _) = tokio_tungstenite::connect_async(param("websocket-url"))
        .await
        .expect("the websocket connects");
    socket
        .send(Message::Text(
            format!("bind-with-token: {}", param("token")).into(),
        ))
        .await
        .unwrap();
    let handshake = next_text(&mut socket).await;
    assert_eq!(status_parameter(&handshake, "type"), "handshake");
    let event = next_text(&mut socket).await;
    assert_eq!(status_parameter(&event, "type"), "event-notification");
    assert_eq!(event_numbers(&event), vec![1]);
    post(
        &server,
        "Observation",
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "steps"},
                "subject": {"reference": "Patient/ws-p1"}}),
    )
    .await;
    let event = next_text(&mut socket).await;
    assert_eq!(event_numbers(&event), vec![2]);
});

/// Notifications only about what the creator may read, checked again at delivery: a client
/// without read access to Flags hears of none, and a removed client's subscription stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_the_creators_access_sqlite() {
    notifications_follow_the_creators_access(common::StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_the_creators_access_postgres() {
    notifications_follow_the_creators_access(common::StoreKind::Postgres).await;
}

async fn notifications_follow_the_creators_access(kind: common::StoreKind) {
    let Some(s) = Secured::start(kind).await else {
        return;
    };
    s.register("admin", "system/*.cruds", None).await;
    let admin = s.token("admin", "system/*.cruds").await;
    s.register(
        "watcher",
        "system/Subscription.cruds system/Observation.rs",
        None,
    )
    .await;
    let watcher = s
        .token("watcher", "system/Subscription.cruds system/Observation.rs")
        .await;
    let receiver = Receiver::start().await;
    let sub = subscription(FLAG_TOPIC, &[], "rest-hook", &receiver.url, "full-resource");
    let created = expect_status(
        &s.call(&watcher, "POST", "Subscription", Some(&sub)).await,
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    receiver
        .next_of("handshake", WAIT)
        .await
        .expect("handshake");
    let flagged = json!({"resourceType": "Patient", "id": "acc-p1"});
    expect_status(
        &s.call(&admin, "PUT", "Patient/acc-p1", Some(&flagged))
            .await,
        201,
    );
    expect_status(
        &s.call(&admin, "POST", "Flag", Some(&flag("acc-p1", "active", 3)))
            .await,
        201,
    );
    assert!(
        receiver
            .next_of("event-notification", Duration::from_secs(3))
            .await
            .is_none(),
        "a client that may not read Flags was told of one"
    );
    // The client is removed: its subscription stops with a reason.
    s.clients.remove_client("watcher").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = s
            .call(&admin, "GET", &format!("Subscription/{id}"), None)
            .await
            .json();
        if current["status"] == "error" {
            assert!(current["error"]
                .as_str()
                .unwrap()
                .contains("no longer registered"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription did not stop: {current}"
        );
        // Events make the delivery look at the creator again.
        expect_status(
            &s.call(&admin, "POST", "Flag", Some(&flag("acc-p1", "active", 4)))
                .await,
            201,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A patient-bound token (SMART backend services, `patient/...` scopes) subscribes to what its
/// patient's compartment and its scopes let it read: its Subscription must name its patient, its
/// notifications never carry another patient's events (also of a type its filters leave
/// open), and a full-resource payload holds only what its granular scopes allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_bound_subscription_sees_only_its_patient_sqlite() {
    a_patient_bound_subscription_sees_only_its_patient(common::StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_bound_subscription_sees_only_its_patient_postgres() {
    a_patient_bound_subscription_sees_only_its_patient(common::StoreKind::Postgres).await;
}

fn goal(patient: &str, description: &str) -> Value {
    json!({
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": description},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

/// The focus resources of an event notification (entries after the status).
fn focus_resources(received: &common::receiver::Received) -> Vec<Value> {
    received.body["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

async fn a_patient_bound_subscription_sees_only_its_patient(kind: common::StoreKind) {
    let Some(s) = Secured::start(kind).await else {
        return;
    };
    let (_, admin, _, _) = common::auth::two_patients(&s).await;
    let scope = "patient/Subscription.cruds patient/Goal.rs patient/CarePlan.rs \
                 patient/Observation.rs?category=vital-signs";
    s.register("coach-of-a", scope, Some("a")).await;
    let coach = s.token("coach-of-a", scope).await;
    const CARE_TOPIC: &str = "https://signaal.dev/fhir/SubscriptionTopic/care-plan-or-goal";
    const OBSERVATION_TOPIC: &str =
        "https://signaal.dev/fhir/SubscriptionTopic/observation-created";
    let receiver = Receiver::start().await;

    // Its Subscription must be about its own patient: without a patient, or about another, it is
    // outside its compartment.
    for filters in [&[][..], &["CarePlan?patient=Patient/b"][..]] {
        let sub = subscription(
            CARE_TOPIC,
            filters,
            "rest-hook",
            &receiver.url,
            "full-resource",
        );
        let refused = s.call(&coach, "POST", "Subscription", Some(&sub)).await;
        let outcome = expect_status(&refused, 403);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }

    // Filters on CarePlans only: Goals are not filtered, so only the patient binding keeps
    // patient b's Goals out.
    let sub = subscription(
        CARE_TOPIC,
        &["CarePlan?patient=Patient/a"],
        "rest-hook",
        &receiver.url,
        "full-resource",
    );
    let created = expect_status(
        &s.call(&coach, "POST", "Subscription", Some(&sub)).await,
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    receiver
        .next_of("handshake", WAIT)
        .await
        .expect("handshake");
    // The coach reads, follows and searches its own subscription.
    let deadline = Instant::now() + WAIT;
    loop {
        let read = s
            .call(&coach, "GET", &format!("Subscription/{id}"), None)
            .await;
        if expect_status(&read, 200)["status"] == "active" {
            break;
        }
        assert!(Instant::now() < deadline, "never active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = s
        .call(&coach, "GET", &format!("Subscription/{id}/$status"), None)
        .await;
    expect_status(&status, 200);
    let mine = expect_status(&s.call(&coach, "GET", "Subscription", None).await, 200);
    let entries = mine["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{mine}");

    for (patient, text) in [("b", "b walks daily"), ("a", "a walks daily")] {
        expect_status(
            &s.call(&admin, "POST", "Goal", Some(&goal(patient, text)))
                .await,
            201,
        );
    }
    let received = receiver
        .next_of("event-notification", WAIT)
        .await
        .expect("a's Goal notified");
    let resources = focus_resources(&received);
    assert_eq!(resources.len(), 1, "{}", received.body);
    assert_eq!(resources[0]["subject"]["reference"], "Patient/a");
    assert_eq!(resources[0]["description"]["text"], "a walks daily");
    assert!(
        !received.body.to_string().contains("b walks daily"),
        "{}",
        received.body
    );
    // Event numbers count only what it may see; $events replays the same.
    assert_eq!(received.event_numbers(), vec![1]);
    let replay = s
        .call(
            &coach,
            "GET",
            &format!("Subscription/{id}/$events?eventsSinceNumber=1"),
            None,
        )
        .await;
    let replay = expect_status(&replay, 200);
    assert!(!replay.to_string().contains("Patient/b"), "{replay}");

    // Granular scopes: only vital signs of patient a, and b's never.
    let receiver2 = Receiver::start().await;
    let sub = subscription(
        OBSERVATION_TOPIC,
        &["Observation?patient=a"],
        "rest-hook",
        &receiver2.url,
        "full-resource",
    );
    expect_status(
        &s.call(&coach, "POST", "Subscription", Some(&sub)).await,
        201,
    );
    receiver2
        .next_of("handshake", WAIT)
        .await
        .expect("handshake");
    tokio::time::sleep(Duration::from_millis(300)).await; // until active
    for (patient, category) in [
        ("a", "laboratory"),
        ("b", "vital-signs"),
        ("a", "vital-signs"),
    ] {
        let observation = common::auth::observation(patient, category);
        expect_status(
            &s.call(&admin, "POST", "Observation", Some(&observation))
                .await,
            201,
        );
    }
    let mut seen = Vec::new();
    while let Some(received) = receiver2
        .next_of("event-notification", Duration::from_secs(3))
        .await
    {
        seen.extend(focus_resources(&received));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["subject"]["reference"], "Patient/a");
    assert_eq!(seen[0]["category"][0]["coding"][0]["code"], "vital-signs");
    // Nor did the first subscription hear of them (wrong topic), nor of b at all.
    while let Some(received) = receiver.next(Duration::from_millis(500)).await {
        assert!(!received.body.to_string().contains("Patient/b"));
    }
}

/// kill -9 while flags are written and notified: after a restart on the same database every
/// acknowledged write reaches the endpoint (at least once), none is lost.
async fn kill_during_delivery_loses_nothing(kind: common::StoreKind) {
    let Some((database_url, dir)) = common::fresh_database(kind).await else {
        return;
    };
    let logs = common::TempDir::new();
    let dir_path = dir.as_ref().map_or(logs.0.clone(), |d| d.0.clone());
    let mut server = common::process::Process::start(&database_url, &dir_path).await;
    let receiver = Receiver::start().await;
    let reply = server
        .client
        .put(
            "Patient/kill-p1",
            &json!({"resourceType": "Patient", "id": "kill-p1"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    let s = subscription(
        FLAG_TOPIC,
        &["Flag?patient=Patient/kill-p1"],
        "rest-hook",
        &receiver.url,
        "id-only",
    );
    let created = server.client.post("Subscription", &s).await.unwrap();
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    receiver
        .next_of("handshake", WAIT)
        .await
        .expect("handshake");
    let deadline = Instant::now() + WAIT;
    while server
        .client
        .get(&format!("Subscription/{id}"))
        .await
        .unwrap()
        .json()["status"]
        != "active"
    {
        assert!(Instant::now() < deadline, "never active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Writes, with the endpoint slow to come by (down half the time), and the kill among them.
    let mut acknowledged = std::collections::BTreeSet::new();
    for i in 0..30 {
        receiver.set_down(i % 2 == 0);
        if i == 20 {
            server.kill();
        }
        if let Ok(reply) = server
            .client
            .post("Flag", &flag("kill-p1", "active", 3))
            .await
        {
            if reply.status == 201 {
                acknowledged.insert(reply.json()["id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(acknowledged.len() >= 20, "{acknowledged:?}");
    receiver.set_down(false);
    let server = common::process::Process::start(&database_url, &dir_path).await;
    let mut notified = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acknowledged.is_subset(&notified) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(received) = receiver.next_of("event-notification", left).await else {
            panic!(
                "not notified: {:?}\n{}",
                acknowledged.difference(&notified).collect::<Vec<_>>(),
                server.log_text()
            );
        };
        for entry in received.body["entry"].as_array().unwrap().iter().skip(1) {
            let url = entry["fullUrl"].as_str().unwrap();
            notified.insert(url.rsplit('/').next().unwrap().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_delivery_loses_nothing_sqlite() {
    kill_during_delivery_loses_nothing(common::StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_delivery_loses_nothing_postgres() {
    kill_during_delivery_loses_nothing(common::StoreKind::Postgres).await;
}

both_stores!(the_coach_subscriber_prints_each_flagged_patient, |server| {
    patients(&server, &["coach-p1", "coach-p2"]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/coach/subscribe.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .arg(&server.base)
        .args(["--patient", "coach-p1", "--count", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the example");
    // Once its subscription is active, flag the other patient, then ours.
    let deadline = Instant::now() + WAIT;
    loop {
        let active = server
            .client
            .get("Subscription?status=active")
            .await
            .unwrap()
            .json();
        if active["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscriber never became active"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(&server, "Flag", &flag("coach-p2", "active", 2)).await;
    post(&server, "Flag", &flag("coach-p1", "active", 4)).await;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Patient/coach-p1 flagged: falls risk rising (priority 4)"),
        "{stdout}"
    );
    assert!(!stdout.contains("coach-p2"), "{stdout}");
    // It turned its subscription off on the way out.
    let off = server
        .client
        .get("Subscription?status=off")
        .await
        .unwrap()
        .json();
    assert_eq!(off["entry"].as_array().map_or(0, Vec::len), 1);
});
