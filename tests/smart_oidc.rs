//! Log-in through an external OpenID Connect provider (a hospital's identity provider, faked
//! by `tests/common/oidc_provider.rs`), and confidential apps with a client secret
//! (`client_secret_basic`, `client_secret_post`), through HTTP as a browser and an app drive
//! them: the happy path ends in a FHIR read confined to the caseload; every way the provider's
//! answer can be wrong or forged is refused with a page, never a consent.

#[macro_use]
mod common;

use base64::Engine;
use common::auth::*;
use common::expect_status;
use common::oidc_provider::{FakeProvider, Tamper};
use common::smart::*;
use common::StoreKind;
use signaal::client::Reply;

const USER_READ: &str = "user/*.rs";
const SUBJECT: &str = "hospital-person-1";

/// A test against a server whose log-in page offers a fake provider; coach1 is linked to
/// [`SUBJECT`] there.
macro_rules! with_provider {
    ($name:ident, |$s:ident, $p:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($s: Secured, $p: FakeProvider) {
                caseloads(&$s).await;
                $s.clients
                    .link_oidc("coach1", &$p.issuer, SUBJECT)
                    .await
                    .expect("link");
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let p = FakeProvider::start().await;
                let settings = p.settings();
                let s =
                    Secured::start_with(StoreKind::Sqlite, move |c| c.auth.oidc = Some(settings))
                        .await
                        .unwrap();
                run(s, p).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let p = FakeProvider::start().await;
                let settings = p.settings();
                if let Some(s) =
                    Secured::start_with(StoreKind::Postgres, move |c| c.auth.oidc = Some(settings))
                        .await
                {
                    run(s, p).await;
                }
            }
        }
    };
}

/// What the browser brings back from the provider.
struct Trip {
    /// The callback's answer.
    answer: Reply,
    /// The callback URL the provider sent the browser to.
    callback: String,
    /// The cookie Signaal set when it sent the browser out.
    browser: String,
    verifier: String,
}

async fn at_callback(s: &Secured, url: &str, browser: Option<&str>) -> Reply {
    let cookie = browser.map(|b| format!("signaal_oidc={b}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    s.server
        .client
        .send("GET", url, &headers, None)
        .await
        .unwrap()
}

/// The log-in page's link to the provider: Signaal sends the browser there.
async fn to_provider(s: &Secured, request: &str) -> Reply {
    get(
        s,
        &format!("{}/auth/authorize/oidc?request={request}", origin(s)),
    )
    .await
}

/// The provider "logs the person in" and sends the browser back: the callback URL.
async fn back_from_provider(s: &Secured, sent_out: &Reply) -> String {
    let at_provider = get(s, sent_out.header("location").unwrap()).await;
    assert_eq!(at_provider.status, 302, "{}", text(&at_provider));
    at_provider.header("location").unwrap().to_owned()
}

/// From the app's authorize request to the provider and back to Signaal's callback.
async fn through_provider(s: &Secured, scope: &str) -> Trip {
    let (verifier, challenge) = pkce();
    let page = get(s, &authorize_url(s, "coach-app", scope, &challenge, &[])).await;
    assert_eq!(page.status, 200, "the log-in page: {}", text(&page));
    let page = text(&page);
    assert!(
        page.contains("Log in with Ziekenhuis Test")
            && page.contains("Inloggen met Ziekenhuis Test"),
        "the provider is offered: {page}"
    );
    let request = hidden(&page, "request");
    let out = to_provider(s, &request).await;
    assert_eq!(out.status, 302, "sent to the provider: {}", text(&out));
    let browser = cookie(&out);
    let sent: Vec<(String, String)> = url::Url::parse(out.header("location").unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    for name in ["state", "nonce", "code_challenge"] {
        assert!(param(&sent, name).is_some(), "Signaal sends its own {name}");
    }
    assert_eq!(
        param(&sent, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let callback = back_from_provider(s, &out).await;
    assert!(
        callback.starts_with(&format!("{}/auth/oidc/callback?", origin(s))),
        "back at Signaal: {callback}"
    );
    let answer = at_callback(s, &callback, Some(&browser)).await;
    Trip {
        answer,
        callback,
        browser,
        verifier,
    }
}

/// A refused callback: the page, its status, no consent and no cookie to consent with.
fn refused(answer: &Reply, status: u16, words: &str) {
    let page = text(answer);
    assert_eq!(answer.status, status, "{page}");
    assert!(page.contains(words), "'{words}' in {page}");
    assert!(!page.contains("decision"), "no consent page: {page}");
    assert!(answer.header("set-cookie").is_none(), "no log-in cookie");
}

/// The provider's id_token fails verification: refused with a page.
async fn unverified(s: &Secured) {
    refused(
        &through_provider(s, USER_READ).await.answer,
        401,
        "could not be verified",
    );
}

with_provider!(
    a_coach_logs_in_at_the_hospital_and_sees_only_their_caseload,
    |s, p| {
        let trip = through_provider(&s, USER_READ).await;
        assert_eq!(
            trip.answer.status,
            200,
            "the consent page: {}",
            text(&trip.answer)
        );
        let consent_cookie = cookie(&trip.answer);
        let request = hidden(&text(&trip.answer), "request");
        let code = allowed_code(&s, &request, &consent_cookie, None).await;
        let reply = redeem(&s, "coach-app", &code, &trip.verifier).await;
        assert_eq!(reply.status, 200, "{}", text(&reply));
        let token = access(&reply.json());
        // coach1's caseload is p1 only (CareTeam t1).
        assert_eq!(observation_subjects(&s, &token).await, vec!["Patient/p1"]);
        expect_status(&s.call(&token, "GET", "Patient/p2", None).await, 404);
        assert!(
            p.refused().is_empty(),
            "the provider accepted Signaal's code redemption"
        );
        // Audited as a local log-in is, naming the provider.
        let admin = s
            .token("admin", "system/*.cruds system/AuditEvent.rs")
            .await;
        log_in_audited(&s, &admin, &["'coach1'", "logged in through", SUBJECT]).await;
    }
);

with_provider!(an_id_token_with_another_nonce_is_refused, |s, p| {
    p.tamper(Tamper::Nonce);
    unverified(&s).await;
});

with_provider!(an_id_token_for_another_audience_is_refused, |s, p| {
    p.tamper(Tamper::Audience);
    unverified(&s).await;
});

with_provider!(an_id_token_of_another_issuer_is_refused, |s, p| {
    p.tamper(Tamper::Issuer);
    unverified(&s).await;
});

with_provider!(an_expired_id_token_is_refused, |s, p| {
    p.tamper(Tamper::Expired);
    unverified(&s).await;
});

with_provider!(an_id_token_signed_with_another_key_is_refused, |s, p| {
    p.tamper(Tamper::Signature);
    unverified(&s).await;
});

with_provider!(an_unsigned_id_token_alg_none_is_refused, |s, p| {
    p.tamper(Tamper::AlgNone);
    unverified(&s).await;
});

with_provider!(
    an_id_token_hmac_keyed_with_the_public_key_is_refused,
    |s, p| {
        p.tamper(Tamper::Hs256PublicKey);
        unverified(&s).await;
    }
);

with_provider!(a_callback_is_answered_once, |s, _p| {
    let trip = through_provider(&s, USER_READ).await;
    assert_eq!(trip.answer.status, 200, "{}", text(&trip.answer));
    let again = at_callback(&s, &trip.callback, Some(&trip.browser)).await;
    refused(&again, 400, "belongs to no log-in in progress");
});

with_provider!(
    a_callback_with_a_state_signaal_did_not_send_is_refused,
    |s, _p| {
        let request = authorization_request(&s, "coach-app", USER_READ).await;
        let out = to_provider(&s, &request).await;
        let browser = cookie(&out);
        let callback = back_from_provider(&s, &out).await;
        let mut url = url::Url::parse(&callback).unwrap();
        let code: String = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        url.query_pairs_mut()
            .clear()
            .append_pair("code", &code)
            .append_pair("state", "a-state-of-the-attacker");
        refused(
            &at_callback(&s, url.as_str(), Some(&browser)).await,
            400,
            "belongs to no log-in in progress",
        );
    }
);

with_provider!(a_callback_in_another_browser_is_refused, |s, _p| {
    let request = authorization_request(&s, "coach-app", USER_READ).await;
    let out = to_provider(&s, &request).await;
    let callback = back_from_provider(&s, &out).await;
    // The victim's browser lacks the cookie of the browser Signaal sent out (login CSRF).
    refused(
        &at_callback(&s, &callback, None).await,
        403,
        "did not arrive in the browser",
    );
});

with_provider!(a_person_linked_to_no_user_is_refused, |s, p| {
    p.log_in_as("someone-else-at-the-hospital");
    refused(
        &through_provider(&s, USER_READ).await.answer,
        403,
        "is not linked to a Signaal user",
    );
});

with_provider!(an_error_answer_of_the_provider_is_shown, |s, p| {
    p.answer_error("access_denied");
    refused(
        &through_provider(&s, USER_READ).await.answer,
        401,
        "did not succeed (access_denied)",
    );
});

mod an_unreachable_provider_is_told_on_a_page {
    use super::*;

    async fn run(kind: StoreKind) {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let settings = signaal::auth::oidc::Settings {
            issuer,
            client_id: "signaal".into(),
            client_secret: None,
            name: "Ziekenhuis Weg".into(),
        };
        let Some(s) = Secured::start_with(kind, move |c| c.auth.oidc = Some(settings)).await else {
            return;
        };
        caseloads(&s).await;
        let request = authorization_request(&s, "coach-app", USER_READ).await;
        let out = to_provider(&s, &request).await;
        refused(&out, 502, "cannot reach Ziekenhuis Weg");
        // The local log-in still works for the same request.
        log_in(&s, &request, "coach1").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(StoreKind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(StoreKind::Postgres).await;
    }
}

// Confidential apps with a client secret (client-confidential-symmetric).

const SECRET: &str = "a client secret of at least thirty-two characters";

async fn secret_app(s: &Secured) {
    caseloads(s).await;
    register_app(s, "secret-app", "user/*.rs", true).await;
    s.clients
        .set_app_secret(
            "secret-app",
            &signaal::auth::password::hash(SECRET).unwrap(),
        )
        .await
        .unwrap();
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |t: &str| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

async fn token_request(s: &Secured, form: &[(&str, &str)], authorization: Option<&str>) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    s.server
        .client
        .send("POST", &s.token_url(), &headers, Some(body.into_bytes()))
        .await
        .unwrap()
}

/// The code's token request with `client`'s id and [`SECRET`] in the form
/// (`client_secret_post`).
fn with_secret<'a>(code: &'a str, verifier: &'a str, client: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut form = code_grant(code, verifier);
    form.extend([("client_id", client), ("client_secret", SECRET)]);
    form
}

fn invalid_client(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", text(reply));
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(reply.header("www-authenticate").is_some());
}

secured!(
    an_app_redeems_its_code_with_basic_credentials_and_refreshes,
    |s| {
        secret_app(&s).await;
        let (code, verifier) = code_for(
            &s,
            "secret-app",
            "user/*.rs offline_access",
            "coach1",
            &[],
            None,
        )
        .await;
        let reply = token_request(
            &s,
            &code_grant(&code, &verifier),
            Some(&basic("secret-app", SECRET)),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", text(&reply));
        let token = reply.json();
        let refresh = token["refresh_token"].as_str().expect("a refresh token");
        let again = token_request(
            &s,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some(&basic("secret-app", SECRET)),
        )
        .await;
        assert_eq!(again.status, 200, "{}", text(&again));
        // Without its secret the refresh is refused.
        let refresh = again.json()["refresh_token"].as_str().unwrap().to_owned();
        invalid_client(
            &token_request(
                &s,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("client_id", "secret-app"),
                ],
                None,
            )
            .await,
        );
    }
);

secured!(an_app_redeems_its_code_with_the_secret_in_the_form, |s| {
    secret_app(&s).await;
    let (code, verifier) = code_for(&s, "secret-app", "user/*.rs", "coach1", &[], None).await;
    let reply = token_request(&s, &with_secret(&code, &verifier, "secret-app"), None).await;
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let token = access(&reply.json());
    expect_status(&s.call(&token, "GET", "Patient/p1", None).await, 200);
});

secured!(a_wrong_client_secret_is_invalid_client, |s| {
    secret_app(&s).await;
    let (code, verifier) = code_for(&s, "secret-app", "user/*.rs", "coach1", &[], None).await;
    let form = code_grant(&code, &verifier);
    let reply = token_request(
        &s,
        &form,
        Some(&basic("secret-app", "not the secret at all, but long")),
    )
    .await;
    invalid_client(&reply);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"),
        "the scheme the client used (RFC 6749 5.2)"
    );
    let mut posted = form.clone();
    posted.extend([("client_id", "secret-app"), ("client_secret", "wrong")]);
    invalid_client(&token_request(&s, &posted, None).await);
    // An unknown client reads the same.
    invalid_client(&token_request(&s, &form, Some(&basic("no-such-app", SECRET))).await);
});

secured!(a_public_app_presenting_a_secret_is_invalid_client, |s| {
    secret_app(&s).await;
    let (code, verifier) = code_for(&s, "coach-app", "user/*.rs", "coach1", &[], None).await;
    let reply = token_request(&s, &with_secret(&code, &verifier, "coach-app"), None).await;
    invalid_client(&reply);
});

secured!(an_app_with_a_secret_cannot_redeem_without_it, |s| {
    secret_app(&s).await;
    let (code, verifier) = code_for(&s, "secret-app", "user/*.rs", "coach1", &[], None).await;
    invalid_client(&redeem(&s, "secret-app", &code, &verifier).await);
});

secured!(discovery_advertises_client_secrets, |s| {
    let reply = get(
        &s,
        &format!("{}/.well-known/smart-configuration", s.server.base),
    )
    .await;
    let config = expect_status(&reply, 200);
    let caps: Vec<&str> = config["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(caps.contains(&"client-confidential-symmetric"));
    let methods = &config["token_endpoint_auth_methods_supported"];
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ] {
        assert!(
            methods.as_array().unwrap().iter().any(|x| x == m),
            "{m} in {methods}"
        );
    }
});
