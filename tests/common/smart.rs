//! Helpers of the SMART App Launch tests (`tests/smart_launch.rs`, `tests/smart_oidc.rs`,
//! `tests/coach_page.rs`): apps and users, the browser's part of the authorization code flow
//! (the authorize URL, the log-in and consent forms, the redirect back) driven over HTTP or in
//! a real browser, and the app's part at the token endpoint.
#![allow(dead_code)]

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use signaal::client::Reply;
use signaal::store::auth::ClientRecord;
use signaal::store::users::UserRecord;

use super::auth::{audit_events_until, fixture, Secured};
use super::browser::Browser;
use super::expect_status;

pub const REDIRECT: &str = "https://coach.example/callback";
pub const PASSWORD: &str = "a long enough secret";

/// The coach's world: practitioners c1 (CareTeam of p1) and c2 (CareTeam of p2), patients p1,
/// p2 and p3 (in no team) with an Observation each, users `coach1`, `coach2` and `patient2`,
/// the public app `coach-app`; returns the admin token.
pub async fn caseloads(s: &Secured) -> String {
    s.register("admin", "system/*.cruds system/AuditEvent.rs", None)
        .await;
    let admin = s
        .token("admin", "system/*.cruds system/AuditEvent.rs")
        .await;
    for (rtype, id, name) in [
        ("Practitioner", "c1", "Coach Een"),
        ("Practitioner", "c2", "Coach Twee"),
        ("Patient", "p1", "Anna Appel"),
        ("Patient", "p2", "Bart Boom"),
        ("Patient", "p3", "Cor Claes"),
    ] {
        let (given, family) = name.split_once(' ').unwrap();
        let body = json!({"resourceType": rtype, "id": id,
            "name": [{"family": family, "given": [given]}]});
        expect_status(
            &s.call(&admin, "PUT", &format!("{rtype}/{id}"), Some(&body))
                .await,
            201,
        );
    }
    for (team, patient, coach) in [("t1", "p1", "c1"), ("t2", "p2", "c2")] {
        let body = json!({"resourceType": "CareTeam", "id": team, "status": "active",
            "subject": {"reference": format!("Patient/{patient}")},
            "participant": [{"member": {"reference": format!("Practitioner/{coach}")}}]});
        expect_status(
            &s.call(&admin, "PUT", &format!("CareTeam/{team}"), Some(&body))
                .await,
            201,
        );
    }
    for patient in ["p1", "p2", "p3"] {
        let body = super::auth::observation(patient, "vital-signs");
        expect_status(
            &s.call(&admin, "POST", "Observation", Some(&body)).await,
            201,
        );
    }
    add_user(s, "coach1", "Practitioner/c1").await;
    add_user(s, "coach2", "Practitioner/c2").await;
    add_user(s, "patient2", "Patient/p2").await;
    register_app(s, "coach-app", "user/*.cruds patient/*.cruds", true).await;
    admin
}

pub async fn add_user(s: &Secured, name: &str, fhir_user: &str) {
    s.clients
        .add_user(&UserRecord {
            id: name.into(),
            fhir_user: fhir_user.into(),
            password: signaal::auth::password::hash(PASSWORD).unwrap(),
            since: signaal::fhir::datetime::now_ms(),
        })
        .await
        .expect("add user");
}

/// Registers an app with redirect URI [`REDIRECT`]: public (no keys) or confidential (the
/// test JWKS).
pub async fn register_app(s: &Secured, id: &str, scope: &str, public: bool) {
    s.clients
        .add_client(&ClientRecord {
            id: id.into(),
            name: format!("{id} test app"),
            jwks: (!public).then(|| fixture("client.jwks.json")),
            jwks_url: None,
            scope: scope.into(),
            patient: None,
            created: signaal::fhir::datetime::now_ms(),
        })
        .await
        .expect("register app");
    s.clients.set_app(id, REDIRECT).await.expect("app");
}

pub fn origin(s: &Secured) -> String {
    s.server.base.trim_end_matches("/fhir").to_owned()
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The authorize URL an app sends the browser to; `overrides` replace or add parameters
/// (an empty value leaves the parameter out).
pub fn authorize_url(
    s: &Secured,
    client: &str,
    scope: &str,
    challenge: &str,
    overrides: &[(&str, &str)],
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), client.into()),
        ("redirect_uri".into(), REDIRECT.into()),
        ("scope".into(), scope.into()),
        ("state".into(), "st-123".into()),
        ("aud".into(), s.server.base.clone()),
        ("code_challenge".into(), challenge.into()),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in overrides {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push(((*k).into(), (*v).into()));
        }
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}/auth/authorize?{query}", origin(s))
}

pub async fn get(s: &Secured, url: &str) -> Reply {
    s.server.client.send("GET", url, &[], None).await.unwrap()
}

pub async fn post_form(
    s: &Secured,
    path: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let cookie_header = cookie.map(|c| format!("signaal_authorize={c}"));
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(c) = &cookie_header {
        headers.push(("cookie", c.as_str()));
    }
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", origin(s))
    };
    s.server
        .client
        .send("POST", &url, &headers, Some(body.into_bytes()))
        .await
        .unwrap()
}

pub fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of a hidden form field of a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {page}"))
        + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

/// The cookie the log-in set.
pub fn cookie(reply: &Reply) -> String {
    let header = reply.header("set-cookie").expect("a cookie");
    header
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// The query parameters of a redirect back to the app.
pub fn redirected(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, 302, "a redirect: {}", text(reply));
    let location = reply.header("location").expect("Location");
    assert!(
        location.starts_with(REDIRECT),
        "back to the app: {location}"
    );
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The log-in page of an authorize URL: its request id.
pub async fn start(s: &Secured, url: &str) -> String {
    let page = get(s, url).await;
    assert_eq!(page.status, 200, "the log-in page: {}", text(&page));
    hidden(&text(&page), "request")
}

/// An authorization request of `client` for `scope` (with a PKCE challenge whose verifier is
/// not needed): the log-in page's request id.
pub async fn authorization_request(s: &Secured, client: &str, scope: &str) -> String {
    let (_, challenge) = pkce();
    start(s, &authorize_url(s, client, scope, &challenge, &[])).await
}

/// The log-in form sent with `password`: the reply as it comes (the consent page, the log-in
/// page again, or a redirect back to the app).
pub async fn try_log_in(s: &Secured, request: &str, user: &str, password: &str) -> Reply {
    post_form(
        s,
        "/auth/authorize/login",
        &[
            ("request", request),
            ("username", user),
            ("password", password),
        ],
        None,
    )
    .await
}

/// Logs in: the consent page and the cookie.
pub async fn log_in(s: &Secured, request: &str, user: &str) -> (Reply, String) {
    let reply = try_log_in(s, request, user, PASSWORD).await;
    assert_eq!(reply.status, 200, "the consent page: {}", text(&reply));
    let c = cookie(&reply);
    (reply, c)
}

/// The consent form sent: `decision` `allow` or `deny`, the `patient` picked, the log-in's
/// `cookie`.
pub async fn consent(
    s: &Secured,
    request: &str,
    decision: &str,
    patient: Option<&str>,
    cookie: Option<&str>,
) -> Reply {
    let mut form = vec![("request", request), ("decision", decision)];
    if let Some(p) = patient {
        form.push(("patient", p));
    }
    post_form(s, "/auth/authorize/consent", &form, cookie).await
}

/// Allows on the consent page: the code the app gets back, with its state unchanged.
pub async fn allowed_code(
    s: &Secured,
    request: &str,
    cookie: &str,
    patient: Option<&str>,
) -> String {
    let back = redirected(&consent(s, request, "allow", patient, Some(cookie)).await);
    assert_eq!(
        param(&back, "state").as_deref(),
        Some("st-123"),
        "state comes back unchanged"
    );
    param(&back, "code").unwrap_or_else(|| panic!("a code: {back:?}"))
}

/// The server's own log-in and consent pages as a person fills them in, in a real browser: the
/// browser is at the log-in page; it logs in and allows.
pub async fn log_in_and_allow_in(browser: &Browser, user: &str, password: &str) {
    browser.type_into("#username", user).await;
    browser.type_into("#password", password).await;
    browser.click("button[type=submit]").await;
    browser.click("button[name=decision][value=allow]").await;
}

/// Waits until the audit trail records a log-in whose description holds each of `words`.
pub async fn log_in_audited(s: &Secured, admin: &str, words: &[&str]) {
    audit_events_until(s, admin, "type=110114", |entries| {
        entries.iter().any(|e| {
            e["resource"]["outcomeDesc"]
                .as_str()
                .is_some_and(|d| words.iter().all(|w| d.contains(w)))
        })
    })
    .await;
}

/// The whole browser part for `user`: a code (and the verifier to redeem it).
pub async fn code_for(
    s: &Secured,
    client: &str,
    scope: &str,
    user: &str,
    extra: &[(&str, &str)],
    patient: Option<&str>,
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let request = start(s, &authorize_url(s, client, scope, &challenge, extra)).await;
    let (_, c) = log_in(s, &request, user).await;
    (allowed_code(s, &request, &c, patient).await, verifier)
}

/// The token request that redeems a code (RFC 6749 4.1.3), before the client authenticates.
pub fn code_grant<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

/// Redeems a code as the public app `client`.
pub async fn redeem(s: &Secured, client: &str, code: &str, verifier: &str) -> Reply {
    let mut form = code_grant(code, verifier);
    form.push(("client_id", client));
    post_form(s, "/auth/token", &form, None).await
}

/// Uses a refresh token as the public app `client`.
pub async fn refresh(s: &Secured, client: &str, refresh_token: &str) -> Reply {
    post_form(
        s,
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client),
        ],
        None,
    )
    .await
}

/// A token response for `user` through the whole flow (public app).
pub async fn person_token(
    s: &Secured,
    client: &str,
    scope: &str,
    user: &str,
    patient: Option<&str>,
) -> Value {
    let (code, verifier) = code_for(s, client, scope, user, &[], patient).await;
    let reply = redeem(s, client, &code, &verifier).await;
    assert_eq!(reply.status, 200, "token: {}", text(&reply));
    reply.json()
}

pub fn access(token: &Value) -> String {
    token["access_token"].as_str().unwrap().to_owned()
}

/// The subjects of the Observations a search answers, sorted.
pub async fn observation_subjects(s: &Secured, token: &str) -> Vec<String> {
    let bundle = expect_status(&s.call(token, "GET", "Observation", None).await, 200);
    let mut subjects: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e["resource"]["subject"]["reference"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    subjects.sort();
    subjects
}
