//! Helpers of the authorization tests (`tests/auth.rs`, `tests/auth_attacks.rs`): a server that
//! requires tokens, its client registry, signed assertions and the clients' usual calls.
#![allow(dead_code)]

use std::sync::Arc;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use signaal::client::Reply;
use signaal::store::auth::{AuthStore, ClientRecord};

use super::{expect_status, StoreKind, TestServer};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A server that requires tokens, and its client registry.
pub struct Secured {
    pub server: TestServer,
    pub clients: Arc<dyn AuthStore>,
}

impl Secured {
    pub async fn start(kind: StoreKind) -> Option<Secured> {
        Self::start_with(kind, |_| {}).await
    }

    pub async fn start_with(
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

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.server.base.trim_end_matches("/fhir"))
    }

    pub async fn register(&self, id: &str, scope: &str, patient: Option<&str>) {
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
    pub fn claims(&self, client: &str) -> Value {
        json!({
            "iss": client,
            "sub": client,
            "aud": self.token_url(),
            "exp": now() + 240,
            "iat": now(),
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    pub async fn exchange(&self, assertion: &str, scope: &str) -> Reply {
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
    pub async fn token(&self, client: &str, scope: &str) -> String {
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

    pub async fn call(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
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

pub fn sign_rs384(kid: &str, claims: &Value) -> String {
    sign(Algorithm::RS384, kid, "rsa.pem", claims)
}

pub fn sign(alg: Algorithm, kid: &str, key_file: &str, claims: &Value) -> String {
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
pub fn b64(bytes: &[u8]) -> String {
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
pub fn sign_hs256(secret: &[u8], claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

pub fn observation(patient: &str, category: &str) -> Value {
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

/// Patients a and b with an Observation each (written by an all-access client); a client
/// bound to Patient a. Returns (a's token, the admin token, a's Observation id, b's).
pub async fn two_patients(s: &Secured) -> (String, String, String, String) {
    s.register("admin", "system/*.cruds", None).await;
    let admin = s.token("admin", "system/*.cruds").await;
    for (id, name) in [("a", "Alpha"), ("b", "Bravo")] {
        let patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": name}],
            "identifier": [{"system": "urn:test", "value": format!("{id}-ident")}]});
        expect_status(
            &s.call(&admin, "PUT", &format!("Patient/{id}"), Some(&patient))
                .await,
            201,
        );
    }
    let oa = expect_status(
        &s.call(
            &admin,
            "POST",
            "Observation",
            Some(&observation("a", "vital-signs")),
        )
        .await,
        201,
    );
    let ob = expect_status(
        &s.call(
            &admin,
            "POST",
            "Observation",
            Some(&observation("b", "vital-signs")),
        )
        .await,
        201,
    );
    s.register("pgo", "patient/*.cruds", Some("a")).await;
    let reply = s
        .exchange(&sign_rs384("rsa-1", &s.claims("pgo")), "patient/*.cruds")
        .await;
    let body = reply.json();
    assert_eq!(reply.status, 200, "{body}");
    assert_eq!(body["patient"], "a");
    // A patient-bound client cannot get system scopes.
    let system = s
        .exchange(&sign_rs384("rsa-1", &s.claims("pgo")), "system/*.cruds")
        .await;
    assert_eq!(system.status, 400);
    (
        body["access_token"].as_str().unwrap().to_owned(),
        admin,
        oa["id"].as_str().unwrap().to_owned(),
        ob["id"].as_str().unwrap().to_owned(),
    )
}

/// The ids of the resources in a Bundle, as `Type/id`.
pub fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let r = &e["resource"];
                    Some(format!(
                        "{}/{}",
                        r["resourceType"].as_str()?,
                        r["id"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

/// AuditEvents are written behind the requests: wait (boundedly) until `n` are searchable.
pub async fn audit_events(s: &Secured, token: &str, query: &str, n: usize) -> Value {
    audit_events_until(s, token, query, |entries| entries.len() >= n).await
}

/// Waits (boundedly) until the AuditEvents matching `query` satisfy `done`.
pub async fn audit_events_until(
    s: &Secured,
    token: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = expect_status(
            &s.call(
                token,
                "GET",
                &format!("AuditEvent?{query}&_count=100"),
                None,
            )
            .await,
            200,
        );
        let entries = last["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if done(entries) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the AuditEvents for {query} never became what was expected: {last}");
}

/// A `$reindex` request (or one on a job's status URL), asynchronous when `respond_async`.
pub async fn reindex_call(
    s: &Secured,
    token: &str,
    method: &str,
    path: &str,
    respond_async: bool,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if respond_async {
        headers.push(("prefer", "respond-async"));
    }
    s.server
        .client
        .send(method, path, &headers, None)
        .await
        .unwrap()
}

/// Defines a test that runs once per store against a server that requires tokens:
/// `mod name { fn sqlite(); fn postgres(); }`.
#[macro_export]
macro_rules! secured {
    ($name:ident, |$s:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($s: $crate::common::auth::Secured) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::common::auth::Secured::start($crate::common::StoreKind::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = $crate::common::auth::Secured::start($crate::common::StoreKind::Postgres).await {
                    run(s).await;
                }
            }
        }
    };
}
