//! The coach's page (`/apps/coach/`, docs/coach-app.md), on both stores: its files as the server
//! serves them (types, policy, caching, nothing outside the app), and the page itself in a real
//! headless Chromium driven over WebDriver (`tests/common/browser.rs`): a coach logs in through
//! the server's own log-in and consent pages, sees only their caseload, opens a flagged patient,
//! sees the plots and the reason, and logs out. Screenshots: `target/test-artifacts/coach/`.

#[macro_use]
mod common;

use chrono::{Duration as Span, SecondsFormat, Utc};
use common::auth::Secured;
use common::browser::{artifacts, Browser};
use common::expect_status;
use common::smart::{log_in_and_allow_in, origin};
use serde_json::{json, Value};
use signaal::client::{Client, Reply};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const DOMAIN: &str = "https://signaal.dev/fhir/CodeSystem/goal-domain";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// The files
// ---------------------------------------------------------------------------

/// A GET of a path of the server's origin, by a client that does not read FHIR into it (the
/// app's files are no FHIR).
async fn fetch(s: &Secured, path: &str, headers: &[(&str, &str)]) -> Reply {
    Client::new(&origin(s))
        .send("GET", &format!("{}{path}", origin(s)), headers, None)
        .await
        .unwrap()
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header"))
}

secured!(the_page_and_its_files_are_served_with_their_types, |s| {
    for (path, media_type) in [
        ("/apps/coach/", "text/html; charset=utf-8"),
        ("/apps/coach/index.html", "text/html; charset=utf-8"),
        ("/apps/coach/app.js", "text/javascript; charset=utf-8"),
        ("/apps/coach/smart.js", "text/javascript; charset=utf-8"),
        ("/apps/coach/style.css", "text/css; charset=utf-8"),
        ("/apps/coach/icon.svg", "image/svg+xml"),
    ] {
        // No token: the page must load before anyone logs in.
        let reply = fetch(&s, path, &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(header(&reply, "content-type"), media_type, "{path}");
        assert_eq!(header(&reply, "x-content-type-options"), "nosniff");
        assert_eq!(header(&reply, "referrer-policy"), "no-referrer");
        assert!(!reply.body.is_empty());
    }
    // The directory without its slash is sent to it, so relative URLs resolve inside it.
    let reply = fetch(&s, "/apps/coach", &[]).await;
    assert_eq!(reply.status, 308);
    assert_eq!(header(&reply, "location"), "/apps/coach/");
});

secured!(every_file_the_page_loads_is_served, |s| {
    // The page's own references and each module's imports: a file missing from the server's
    // table would leave the page blank.
    let mut names = vec!["index.html".to_owned()];
    let mut seen = Vec::new();
    while let Some(name) = names.pop() {
        if seen.contains(&name) {
            continue;
        }
        let reply = fetch(&s, &format!("/apps/coach/{name}"), &[]).await;
        assert_eq!(reply.status, 200, "{name} is referenced but not served");
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        for marker in ["src=\"", "href=\"", "from './"] {
            for part in text.split(marker).skip(1) {
                let target = part.split(['"', '\'']).next().unwrap_or("");
                let target = target.trim_start_matches("./");
                if !target.is_empty() && !target.starts_with('#') && !target.contains(':') {
                    names.push(target.to_owned());
                }
            }
        }
        seen.push(name);
    }
    assert!(seen.len() >= 6, "the page and its modules: {seen:?}");
});

secured!(the_page_has_a_strict_content_security_policy, |s| {
    let reply = fetch(&s, "/apps/coach/", &[]).await;
    let policy = header(&reply, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(
        !policy.contains("unsafe"),
        "no unsafe-inline or -eval: {policy}"
    );
    // And the page needs no more: no inline script, style or event handler.
    let page = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(!page.contains("<script>") && !page.contains("<style"));
    assert!(!page.contains(" onclick=") && !page.contains(" style="));
});

secured!(
    a_file_is_revalidated_and_not_sent_again_while_unchanged,
    |s| {
        let reply = fetch(&s, "/apps/coach/app.js", &[]).await;
        assert_eq!(header(&reply, "cache-control"), "no-cache");
        let etag = header(&reply, "etag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "a strong ETag: {etag}"
        );
        let again = fetch(
            &s,
            "/apps/coach/app.js",
            &[("if-none-match", etag.as_str())],
        )
        .await;
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(header(&again, "etag"), etag);
        // Another file's tag does not match.
        let other = fetch(
            &s,
            "/apps/coach/style.css",
            &[("if-none-match", etag.as_str())],
        )
        .await;
        assert_eq!(other.status, 200);
    }
);

secured!(an_unknown_file_is_not_found, |s| {
    for path in [
        "/apps/coach/nothing.js",
        "/apps/coach/vendor/nothing.js",
        "/apps/coach/INDEX.HTML",
        "/apps/other/",
        "/apps/other/index.html",
        "/apps/other",
    ] {
        let reply = fetch(&s, path, &[]).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["resourceType"], "OperationOutcome", "{path}");
    }
});

secured!(no_path_leaves_the_app, |s| {
    for path in [
        "/apps/coach/../../Cargo.toml",
        "/apps/coach/..%2f..%2fCargo.toml",
        "/apps/coach/%2e%2e/%2e%2e/Cargo.toml",
        "/apps/coach/..%5c..%5cCargo.toml",
        "/apps/coach/%2fetc%2fpasswd",
        "/apps/..%2fsrc/main.rs",
        "/apps/coach/.%2fapp.js",
    ] {
        let reply = fetch(&s, path, &[]).await;
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path}: {}",
            reply.status
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("[package]") && !body.contains("root:") && !body.contains("fn main"),
            "{path} answered a file of the machine: {body}"
        );
    }
});

secured!(a_write_to_the_app_is_not_allowed, |s| {
    let reply = Client::new(&origin(&s))
        .send(
            "POST",
            &format!("{}/apps/coach/app.js", origin(&s)),
            &[],
            Some(b"x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(header(&reply, "allow"), "GET, HEAD");
});

// ---------------------------------------------------------------------------
// The page in a browser
// ---------------------------------------------------------------------------

/// An instant `hours` from now (negative: in the past).
fn at(hours: i64) -> String {
    (Utc::now() + Span::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn quantity(patient: &str, code: &str, when: &str, value: f64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}})
}

fn blood_pressure(patient: &str, when: &str, systolic: f64, diastolic: f64) -> Value {
    let part = |code: &str, v: f64| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}})
    };
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "component": [part("8480-6", systolic), part("8462-4", diastolic)]})
}

fn heart_failure(patient: &str) -> Value {
    json!({"resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

fn encounter(patient: &str, class: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": start, "end": end}})
}

/// Weights of a heart-failure patient: steady around 78 kg, then 80.6 kg, more than 2 kg above
/// the lowest of the 72 hours before (the weight-gain rule). `(hours ago, kg)`.
const WEIGHTS: [(i64, f64); 11] = [
    (-24 * 20, 77.9),
    (-24 * 12, 78.1),
    (-24 * 10, 78.3),
    (-24 * 8, 77.8),
    (-24 * 6, 78.2),
    (-24 * 5, 78.0),
    (-24 * 4, 78.4),
    (-24 * 3, 78.1),
    (-24 * 2, 78.6),
    (-24, 79.5),
    (-2, 80.6),
];

async fn put(s: &Secured, admin: &str, resource: Value) {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let reply = s.call(admin, "PUT", &path, Some(&resource)).await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "PUT {path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
}

async fn post(s: &Secured, admin: &str, resource: Value) -> String {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    let created = expect_status(&s.call(admin, "POST", &rtype, Some(&resource)).await, 201);
    format!("{rtype}/{}", created["id"].as_str().unwrap())
}

/// Runs the real `signaal` binary (as an operator would), with `stdin` as its input.
fn signaal(args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_signaal"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the signaal binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signaal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Coach Kim Visser (user `kim`) with Lotte de Wit (heart failure, a weight gain; goals, an
/// admission, an emergency visit) and Sem Jansen in her CareTeams, and Noor Smit, flagged too,
/// in nobody's; the app registered as the docs say. Returns the admin token and Lotte's
/// weight-gain Flag.
async fn coach_world(s: &Secured) -> (String, Value) {
    s.register("admin", "system/*.cruds", None).await;
    let admin = s.token("admin", "system/*.cruds").await;
    put(
        s,
        &admin,
        json!({"resourceType": "Practitioner", "id": "coach-k",
        "name": [{"family": "Visser", "given": ["Kim"]}]}),
    )
    .await;
    for (id, given, family, born) in [
        ("pat-a", "Lotte", "de Wit", "1948-05-17"),
        ("pat-b", "Sem", "Jansen", "1956-11-02"),
        ("pat-x", "Noor", "Smit", "1951-02-23"),
    ] {
        put(
            s,
            &admin,
            json!({"resourceType": "Patient", "id": id, "birthDate": born,
            "name": [{"family": family, "given": [given]}]}),
        )
        .await;
    }
    for (team, patient) in [("team-a", "pat-a"), ("team-b", "pat-b")] {
        put(
            s,
            &admin,
            json!({"resourceType": "CareTeam", "id": team, "status": "active",
            "subject": {"reference": format!("Patient/{patient}")},
            "participant": [{"member": {"reference": "Practitioner/coach-k"}}]}),
        )
        .await;
    }
    for patient in ["pat-a", "pat-x"] {
        post(s, &admin, heart_failure(patient)).await;
        for (hours, kg) in WEIGHTS {
            post(
                s,
                &admin,
                quantity(patient, "29463-7", &at(hours), kg, "kg"),
            )
            .await;
        }
    }
    for (hours, systolic, diastolic) in [
        (-24 * 9, 126.0, 78.0),
        (-24 * 6, 131.0, 83.0),
        (-24 * 4, 129.0, 80.0),
        (-24 * 2, 133.0, 84.0),
        (-5, 127.0, 79.0),
    ] {
        post(
            s,
            &admin,
            blood_pressure("pat-a", &at(hours), systolic, diastolic),
        )
        .await;
    }
    for (hours, code, value, unit) in [
        (-24 * 8, "15074-8", 5.8, "mmol/L"),
        (-24 * 5, "15074-8", 7.1, "mmol/L"),
        (-24 * 3, "41653-7", 118.0, "mg/dL"),
        (-24, "15074-8", 9.2, "mmol/L"),
        (-6, "15074-8", 6.4, "mmol/L"),
    ] {
        post(s, &admin, quantity("pat-a", code, &at(hours), value, unit)).await;
    }
    for (hours, value) in [(-24 * 7, 96.0), (-24 * 3, 95.0), (-4, 97.0)] {
        post(
            s,
            &admin,
            quantity("pat-a", "2708-6", &at(hours), value, "%"),
        )
        .await;
    }
    post(s, &admin, quantity("pat-b", "2708-6", &at(-3), 98.0, "%")).await;
    for (id, domain, goal, action) in [
        (
            "goal-a1",
            "health",
            "Weigh every morning",
            "Weigh before breakfast and note it in the app",
        ),
        (
            "goal-a2",
            "daily-activities",
            "Walk to the market twice a week",
            "Walk with the neighbour on Tuesday and Friday",
        ),
    ] {
        put(
            s,
            &admin,
            json!({"resourceType": "Goal", "id": id, "lifecycleStatus": "active",
            "category": [{"coding": [{"system": DOMAIN, "code": domain}]}],
            "description": {"text": goal},
            "subject": {"reference": "Patient/pat-a"}}),
        )
        .await;
        put(
            s,
            &admin,
            json!({"resourceType": "CarePlan", "id": format!("plan-{id}"),
            "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/pat-a"},
            "goal": [{"reference": format!("Goal/{id}")}],
            "activity": [{"detail": {"status": "in-progress", "description": action}}]}),
        )
        .await;
    }
    post(
        s,
        &admin,
        encounter("pat-a", "IMP", &at(-24 * 70), &at(-24 * 65)),
    )
    .await;
    post(
        s,
        &admin,
        encounter("pat-a", "EMER", &at(-24 * 100), &at(-24 * 100 + 5)),
    )
    .await;

    // The scorer flags both weight gains (in the background).
    let mut flag = Value::Null;
    for patient in ["pat-x", "pat-a"] {
        let search = format!("Flag?patient=Patient/{patient}&status=active&code=weight-gain");
        let mut found = Value::Null;
        for _ in 0..600 {
            found = expect_status(&s.call(&admin, "GET", &search, None).await, 200);
            if found["total"].as_u64().unwrap_or(0) > 0 || found["entry"].is_array() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        flag = found["entry"][0]["resource"].clone();
        assert_eq!(
            flag["resourceType"], "Flag",
            "{patient} is flagged: {found:#}"
        );
    }

    // The coach's account and the app, registered with the commands the docs give.
    let database = s.server.database_url.as_str();
    signaal(
        &[
            "user",
            "add",
            "--database",
            database,
            "--name",
            "kim",
            "--fhir-user",
            "Practitioner/coach-k",
        ],
        &format!("{PASSWORD}\n"),
    );
    let redirect = format!("{}/apps/coach/", origin(s));
    signaal(
        &[
            "client",
            "add",
            "--database",
            database,
            "--id",
            "coach",
            "--name",
            "Coach",
            "--public",
            "--redirect-uri",
            &redirect,
            "--scope",
            "user/*.rs",
        ],
        "",
    );
    (admin, flag)
}

fn store_name(s: &Secured) -> &'static str {
    if s.server.database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The ids of the worklist's patients, in order.
const WORKLIST_IDS: &str =
    "return [...document.querySelectorAll('#worklist [data-patient]')].map(e => e.dataset.patient)";

/// Waits until the page shows `view` (`worklist`, `patient`, `resource`) ready.
async fn ready(browser: &Browser, view: &str) {
    browser
        .wait_for(
            &format!("the {view} view"),
            &format!("return document.querySelector('main[data-view={view}][data-state=ready]')"),
            json!([]),
        )
        .await;
}

secured!(
    a_coach_logs_in_sees_the_caseload_opens_a_flagged_patient_and_logs_out,
    |s| {
        let (_admin, flag) = coach_world(&s).await;
        let reason = flag["code"]["text"]
            .as_str()
            .expect("the flag says why")
            .to_owned();
        let shots = artifacts("coach");
        let store = store_name(&s);
        let browser = Browser::start(1280, 1000, "en").await;

        // Not logged in: the page offers the log-in.
        browser.go(&format!("{}/apps/coach/", origin(&s))).await;
        browser.click("#login").await;

        // The server's own log-in and consent pages.
        browser.find("#username").await;
        assert!(
            browser.url().await.contains("/auth/authorize"),
            "the browser is at the server's log-in page"
        );
        log_in_and_allow_in(&browser, "kim", PASSWORD).await;

        // Back in the app: the worklist, only the caseload, the flagged patient first.
        ready(&browser, "worklist").await;
        let url = browser.url().await;
        assert!(
            !url.contains("code=") && !url.contains("state="),
            "the code leaves the address bar: {url}"
        );
        let ids = browser.run(WORKLIST_IDS, json!([])).await;
        assert_eq!(
            ids,
            json!(["pat-a", "pat-b"]),
            "the caseload, flagged first"
        );
        let row = browser.text("#worklist [data-patient=pat-a]").await;
        assert!(row.contains("Lotte de Wit"), "{row}");
        assert!(row.contains(&reason), "the reason in one line: {row}");
        let quiet = browser.text("#worklist [data-patient=pat-b]").await;
        assert!(quiet.contains("no active flags"), "{quiet}");
        browser
            .screenshot(&shots.join(format!("{store}-1-worklist.png")))
            .await;

        // The flagged patient: the flag, why, the points behind it and the plots.
        browser
            .click("#worklist [data-patient=pat-a] a.patient-link")
            .await;
        ready(&browser, "patient").await;
        assert!(browser.text("h1").await.contains("Lotte de Wit"));
        let card = browser
            .text("#flags .flag-card[data-reason=weight-gain]")
            .await;
        assert!(card.contains(&reason), "the reason: {card}");
        let basis = browser
        .run(
            "return [...document.querySelectorAll('#flags .flag-card[data-reason=weight-gain] tbody a')].map(a => a.textContent)",
            json!([]),
        )
        .await;
        let basis: Vec<String> = serde_json::from_value(basis).unwrap();
        assert!(
            basis
                .iter()
                .filter(|b| b.starts_with("Observation/"))
                .count()
                >= 2,
            "the weights behind the points are linked: {basis:?}"
        );
        // Weight over the default 30 days: every reading, the newest marked as over the
        // 2 kg / 3 days limit.
        let readings = |id: &str| {
            format!("return document.querySelector('#plot-{id}') && document.querySelector('#plot-{id}').dataset.readings")
        };
        assert_eq!(
            browser.run(&readings("weight"), json!([])).await,
            json!(WEIGHTS.len().to_string())
        );
        assert_eq!(
            browser.count("#plot-weight circle.reading.over").await,
            1,
            "the newest weight breaks the rule"
        );
        assert_eq!(
            browser.count("#plot-weight path.limit").await,
            1,
            "the limit is drawn"
        );
        // Blood pressure: both components of 5 panels, the 135/85 and 180/110 lines.
        assert_eq!(browser.run(&readings("bp"), json!([])).await, json!("10"));
        assert_eq!(browser.count("#plot-bp line.threshold").await, 4);
        // Glucose, one of them in mg/dL (118 mg/dL = 6.5 mmol/L), with its bands; SpO2.
        assert_eq!(
            browser.run(&readings("glucose"), json!([])).await,
            json!("5")
        );
        let glucose = browser.text("#plot-glucose").await;
        assert!(glucose.contains("Glucose"), "{glucose}");
        assert!(browser.count("#plot-glucose rect.band").await >= 3);
        assert_eq!(browser.run(&readings("spo2"), json!([])).await, json!("3"));
        // Goals by life domain with their action plans; a domain without a goal says so.
        let health = browser.text("#goals [data-domain=health]").await;
        assert!(
            health.contains("Weigh every morning")
                && health.contains("Weigh before breakfast and note it in the app"),
            "{health}"
        );
        let coping = browser.text("#goals [data-domain=coping]").await;
        assert!(coping.contains("No goal in this domain"), "{coping}");
        // The admission and the emergency visit on the timeline.
        assert_eq!(
        browser
            .run(
                "return [document.querySelectorAll('#encounters li.admission').length, document.querySelectorAll('#encounters li.emergency').length, document.querySelectorAll('#encounters svg .stay').length]",
                json!([])
            )
            .await,
        json!([1, 1, 1])
    );
        browser.resize(1280, 2200).await;
        let page_shot = shots.join(format!("{store}-2-patient.png"));
        browser.screenshot(&page_shot).await;
        if store == "sqlite" && std::env::var_os("SIGNAAL_UPDATE_DOCS_IMAGES").is_some() {
            let image = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/images/coach.png");
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/images")).unwrap();
            std::fs::copy(&page_shot, image).unwrap();
        }
        browser.resize(1280, 1000).await;

        // A shorter period: the weights of the last 7 days.
        browser
        .run(
            "const s = document.getElementById('period'); s.value = '7'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
        let week = WEIGHTS.iter().filter(|(h, _)| *h > -24 * 7).count();
        browser
            .wait_for(
                "a week of weights",
                &format!("{} === '{week}'", readings("weight").trim_end_matches(';')),
                json!([]),
            )
            .await;

        // What the points rest on opens as a resource of its own.
        let link = basis
            .iter()
            .find(|b| b.starts_with("Observation/"))
            .unwrap()
            .clone();
        browser
            .click(&format!(
                "#flags .flag-card[data-reason=weight-gain] tbody a[href='#resource/{link}']"
            ))
            .await;
        browser
            .wait_for(
                "the observation",
                "return document.querySelector('main[data-view=resource][data-state=ready] pre')",
                json!([]),
            )
            .await;
        assert!(browser.text("pre.json").await.contains("29463-7"));

        // Log out: the grant is revoked at the server, the page offers the log-in again.
        let token = browser
            .run(
                "return JSON.parse(sessionStorage.getItem('signaal-coach-session')).accessToken",
                json!([]),
            )
            .await;
        let token = token.as_str().expect("the page holds a token").to_owned();
        expect_status(&s.call(&token, "GET", "Patient/pat-a", None).await, 200);
        browser.click("#logout").await;
        browser.find("#login-message").await;
        let message = browser.text("#login-message").await;
        assert!(message.contains("logged out"), "{message}");
        browser
            .screenshot(&shots.join(format!("{store}-3-logged-out.png")))
            .await;
        assert_eq!(
            browser
                .run(
                    "return sessionStorage.getItem('signaal-coach-session')",
                    json!([])
                )
                .await,
            Value::Null
        );
        expect_status(&s.call(&token, "GET", "Patient/pat-a", None).await, 401);
        browser.quit().await;
    }
);

secured!(a_patient_outside_the_caseload_cannot_be_opened, |s| {
    coach_world(&s).await;
    let browser = Browser::start(900, 800, "nl").await;
    browser.go(&format!("{}/apps/coach/", origin(&s))).await;
    // The browser asks for Dutch: the page and the server's pages speak it.
    assert_eq!(browser.text("#login").await, "Inloggen");
    browser.click("#login").await;
    log_in_and_allow_in(&browser, "kim", PASSWORD).await;
    ready(&browser, "worklist").await;
    assert_eq!(
        browser.run(WORKLIST_IDS, json!([])).await,
        json!(["pat-a", "pat-b"])
    );
    // Typing another patient's address: the server answers as if there were none.
    browser
        .run("location.hash = '#patient/pat-x'", json!([]))
        .await;
    let error = browser.text("main .error").await;
    assert!(error.contains("404"), "{error}");
    assert!(!browser.text("main").await.contains("Noor"));
    browser.quit().await;
});
