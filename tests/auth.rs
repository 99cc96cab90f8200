//! SMART Backend Services, patient-scoped access, Provenance and AuditEvent (issue 5).
//!
//! Servers here run with `--auth required`; clients are registered in their database the way
//! `signaal client add` does. The attack suite is a table: every row must be refused.

mod common;

use std::sync::Arc;

use common::{expect_status, StoreKind, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use signaal::client::Reply;
use signaal::store::auth::{AuthStore, ClientRecord};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A server that requires tokens, and its client registry.
struct Secured {
    server: TestServer,
    clients: Arc<dyn AuthStore>,
}

impl Secured {
    async fn start(kind: StoreKind) -> Option<Secured> {
        Self::start_with(kind, |_| {}).await
    }

    async fn start_with(
        kind: StoreKind,
        configure: impl FnOnce(&mut signaal::server::Settings),
    ) -> Option<Secured> {
        let server = TestServer::start_configured(kind, |s| {
            s.auth.required = true;
            configure(s);
        })
        .await?;
        let (_, clients) = signaal::store::open_with_auth(&server.database_url)
            .await
            .expect("open the client registry");
        Some(Secured { server, clients })
    }

    fn token_url(&self) -> String {
        format!("{}/auth/token", self.server.base.trim_end_matches("/fhir"))
    }

    async fn register(&self, id: &str, scope: &str, patient: Option<&str>) {
        self.clients
            .add_client(&ClientRecord {
                id: id.into(),
                name: format!("{id} test client"),
                jwks: Some(fixture("client.jwks.json")),
                jwks_url: None,
                scope: scope.into(),
                patient: patient.map(str::to_owned),
                created: 0,
            })
            .await
            .expect("register client");
    }

    /// Claims of a valid assertion for `client`.
    fn claims(&self, client: &str) -> Value {
        json!({
            "iss": client,
            "sub": client,
            "aud": self.token_url(),
            "exp": now() + 240,
            "iat": now(),
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    async fn exchange(&self, assertion: &str, scope: &str) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion)
            .append_pair("scope", scope)
            .finish();
        self.server
            .client
            .send(
                "POST",
                &self.token_url(),
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(body.into_bytes()),
            )
            .await
            .unwrap()
    }

    /// An access token for a registered client (RS384 assertion).
    async fn token(&self, client: &str, scope: &str) -> String {
        let reply = self
            .exchange(&sign_rs384("rsa-1", &self.claims(client)), scope)
            .await;
        assert_eq!(
            reply.status,
            200,
            "token: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let auth = format!("Bearer {token}");
        self.server
            .client
            .send(
                method,
                path,
                &[("authorization", &auth)],
                body.map(|b| b.to_string().into_bytes()),
            )
            .await
            .unwrap()
    }
}

fn sign_rs384(kid: &str, claims: &Value) -> String {
    sign(Algorithm::RS384, kid, "rsa.pem", claims)
}

fn sign(alg: Algorithm, kid: &str, key_file: &str, claims: &Value) -> String {
    let pem = fixture(key_file);
    let key = match alg {
        Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

/// Unpadded base64url (JWT segments), for hand-made tokens.
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT signed with `secret` (the "public key as HMAC secret" attack).
fn sign_hs256(secret: &[u8], claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

macro_rules! secured {
    ($name:ident, |$s:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($s: Secured) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Secured::start(StoreKind::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = Secured::start(StoreKind::Postgres).await {
                    run(s).await;
                }
            }
        }
    };
}

// ---- The token endpoint -------------------------------------------------------------------

secured!(rs384_and_es384_assertions_get_short_lived_tokens, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    for (alg, kid, key) in [
        (Algorithm::RS384, "rsa-1", "rsa.pem"),
        (Algorithm::ES384, "ec-1", "ec.pem"),
    ] {
        let reply = s
            .exchange(
                &sign(alg, kid, key, &s.claims("vendor")),
                "system/Observation.rs",
            )
            .await;
        let body = reply.json();
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["scope"], "system/Observation.rs");
        assert!(body["expires_in"].as_i64().unwrap() <= 300);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
});

// Every row is an attack on the token endpoint and must get no token.
secured!(attacks_on_the_token_endpoint_are_refused, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    s.register("other", "system/Observation.rs", None).await;
    let scope = "system/Observation.rs";
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = s.claims("vendor");
        change(&mut claims);
        claims
    };
    let valid = s.claims("vendor");
    let signed = sign_rs384("rsa-1", &valid);
    let parts: Vec<&str> = signed.split('.').collect();
    let mut tampered_claims = valid.clone();
    tampered_claims["sub"] = json!("other");
    tampered_claims["iss"] = json!("other");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})
            .to_string()
            .as_bytes()),
        b64(valid.to_string().as_bytes())
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "expired exp",
            sign_rs384("rsa-1", &with(&|c| c["exp"] = json!(now() - 600))),
        ),
        (
            "not yet valid (nbf in the future)",
            sign_rs384("rsa-1", &with(&|c| c["nbf"] = json!(now() + 600))),
        ),
        (
            "issued in the future",
            sign_rs384("rsa-1", &with(&|c| c["iat"] = json!(now() + 600))),
        ),
        (
            "exp too far ahead",
            sign_rs384("rsa-1", &with(&|c| c["exp"] = json!(now() + 3600))),
        ),
        (
            "no exp",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "wrong aud",
            sign_rs384(
                "rsa-1",
                &with(&|c| c["aud"] = json!("http://elsewhere/auth/token")),
            ),
        ),
        (
            "iss is not sub",
            sign_rs384("rsa-1", &with(&|c| c["sub"] = json!("other"))),
        ),
        (
            "unknown iss",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c["iss"] = json!("nobody");
                    c["sub"] = json!("nobody");
                }),
            ),
        ),
        (
            "no jti",
            sign_rs384(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
        ),
        ("alg none", alg_none),
        (
            "HS256 signed with the public key",
            sign_hs256(fixture("rsa.pub.pem").as_bytes(), &valid, "rsa-1"),
        ),
        (
            "unknown kid",
            sign(Algorithm::RS384, "rsa-2", "other-rsa.pem", &valid),
        ),
        (
            "signed by another key under a known kid",
            sign(Algorithm::RS384, "rsa-1", "other-rsa.pem", &valid),
        ),
        (
            "ES384 under an RSA kid",
            sign(Algorithm::ES384, "rsa-1", "ec.pem", &valid),
        ),
        (
            "RS256 instead of RS384",
            sign(Algorithm::RS256, "rsa-1", "rsa.pem", &valid),
        ),
        ("tampered payload", tampered),
        ("not a JWT", "not.a.jwt".into()),
    ];
    for (attack, assertion) in rows {
        let reply = s.exchange(&assertion, scope).await;
        let body = reply.json();
        assert!(
            reply.status == 400 || reply.status == 401,
            "{attack}: got {} {body}",
            reply.status
        );
        assert!(body["access_token"].is_null(), "{attack}: {body}");
        assert!(body["error"].is_string(), "{attack}: {body}");
    }
    // The untouched assertion is fine once, and a replay of its jti is refused.
    assert_eq!(s.exchange(&signed, scope).await.status, 200);
    let replay = s.exchange(&signed, scope).await;
    assert_eq!(replay.status, 400, "replayed jti");
    assert_eq!(replay.json()["error"], "invalid_grant");
});

secured!(scopes_beyond_the_registration_are_not_granted, |s| {
    s.register("vendor", "system/Observation.rs", None).await;
    let escalate = s
        .exchange(
            &sign_rs384("rsa-1", &s.claims("vendor")),
            "system/Patient.read system/Observation.cruds",
        )
        .await;
    assert_eq!(escalate.status, 400);
    assert_eq!(escalate.json()["error"], "invalid_scope");
    // Asking for more and less at once: only what is covered is granted.
    let partial = s
        .exchange(
            &sign_rs384("rsa-1", &s.claims("vendor")),
            "system/Observation.r system/Patient.r",
        )
        .await;
    assert_eq!(partial.status, 200);
    assert_eq!(partial.json()["scope"], "system/Observation.r");
});

// ---- Requests with tokens -----------------------------------------------------------------

secured!(
    requests_without_a_valid_token_get_401_with_www_authenticate,
    |s| {
        for header in [None, Some("Bearer nonsense"), Some("Basic dXNlcjpwYXNz")] {
            let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", *h)).collect();
            let reply = s
                .server
                .client
                .send("GET", "Observation", &headers, None)
                .await
                .unwrap();
            expect_status(&reply, 401);
            assert!(reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"));
        }
        // An access token of this server's format signed by someone else.
        let forged = sign_hs256(
            b"guessed secret",
            &json!({
                "iss": s.token_url(), "sub": "vendor", "aud": s.server.base, "exp": now() + 100,
                "iat": now(), "jti": "x", "scope": "system/*.cruds"
            }),
            "k",
        );
        expect_status(&s.call(&forged, "GET", "Observation", None).await, 401);
        // The CapabilityStatement and SMART configuration stay public.
        let metadata = expect_status(&s.server.client.get("metadata").await.unwrap(), 200);
        assert_eq!(
            metadata["rest"][0]["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        assert_eq!(
            metadata["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
            s.token_url()
        );
        let smart = expect_status(
            &s.server
                .client
                .get(".well-known/smart-configuration")
                .await
                .unwrap(),
            200,
        );
        assert_eq!(smart["token_endpoint"], s.token_url());
        assert!(smart["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("ES384")));
    }
);

fn observation(patient: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category,
        }]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
}

secured!(scope_escalation_is_refused_with_403, |s| {
    s.register("reader", "system/Observation.rs", None).await;
    let token = s.token("reader", "system/Observation.rs").await;
    expect_status(&s.call(&token, "GET", "Observation", None).await, 200);
    // Writing with a read scope, and another type than the scope's.
    expect_status(
        &s.call(
            &token,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        403,
    );
    expect_status(&s.call(&token, "GET", "Patient", None).await, 403);
    expect_status(&s.call(&token, "GET", "Patient/a", None).await, 403);
    expect_status(&s.call(&token, "GET", "_history", None).await, 403);
    // A v2 scope without `r`: search is allowed, read is not.
    s.register("searcher", "system/Observation.s", None).await;
    let search_only = s.token("searcher", "system/Observation.s").await;
    expect_status(&s.call(&search_only, "GET", "Observation", None).await, 200);
    expect_status(
        &s.call(&search_only, "GET", "Observation/x", None).await,
        403,
    );
    // The audit trail needs its own scope: `*` does not reach it, and nobody writes it.
    s.register("all", "system/*.cruds", None).await;
    let all = s.token("all", "system/*.cruds").await;
    expect_status(&s.call(&all, "GET", "AuditEvent", None).await, 403);
    s.register("auditor", "system/AuditEvent.cruds", None).await;
    let auditor = s.token("auditor", "system/AuditEvent.cruds").await;
    let forged = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    expect_status(
        &s.call(&auditor, "POST", "AuditEvent", Some(&forged)).await,
        403,
    );
});

secured!(granular_scope_filters_cannot_be_bypassed, |s| {
    s.register("writer", "system/*.cruds", None).await;
    let writer = s.token("writer", "system/*.cruds").await;
    let vital = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
    let lab = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("a", "laboratory")),
        )
        .await,
        201,
    );
    let lab_id = lab["id"].as_str().unwrap();
    s.register(
        "vitals",
        "system/Observation.crus?category=vital-signs",
        None,
    )
    .await;
    let vitals = s
        .token("vitals", "system/Observation.crus?category=vital-signs")
        .await;
    let all = expect_status(&s.call(&vitals, "GET", "Observation", None).await, 200);
    assert_eq!(all["total"], 1, "{all}");
    assert_eq!(all["entry"][0]["resource"]["id"], vital["id"]);
    let asked = expect_status(
        &s.call(&vitals, "GET", "Observation?category=laboratory", None)
            .await,
        200,
    );
    assert_eq!(asked["total"], 0);
    expect_status(
        &s.call(&vitals, "GET", &format!("Observation/{lab_id}"), None)
            .await,
        404,
    );
    expect_status(
        &s.call(
            &vitals,
            "GET",
            &format!("Observation/{lab_id}/_history/1"),
            None,
        )
        .await,
        404,
    );
    expect_status(
        &s.call(
            &vitals,
            "GET",
            &format!("Observation/{lab_id}/_history"),
            None,
        )
        .await,
        404,
    );
    let type_history = expect_status(
        &s.call(&vitals, "GET", "Observation/_history", None).await,
        200,
    );
    let ids: Vec<&Value> = type_history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["id"])
        .collect();
    assert_eq!(ids, vec![&vital["id"]], "{type_history}");
    // Writing outside the filter, or turning a filtered resource into one: refused.
    expect_status(
        &s.call(
            &vitals,
            "POST",
            "Observation",
            Some(&observation("a", "laboratory")),
        )
        .await,
        403,
    );
    let mut relabel = observation("a", "laboratory");
    relabel["id"] = vital["id"].clone();
    expect_status(
        &s.call(
            &vitals,
            "PUT",
            &format!("Observation/{}", vital["id"].as_str().unwrap()),
            Some(&relabel),
        )
        .await,
        403,
    );
    let mut lab_update = observation("a", "vital-signs");
    lab_update["id"] = json!(lab_id);
    expect_status(
        &s.call(
            &vitals,
            "PUT",
            &format!("Observation/{lab_id}"),
            Some(&lab_update),
        )
        .await,
        403,
    );
    expect_status(
        &s.call(
            &vitals,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
});
