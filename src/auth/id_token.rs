//! OpenID Connect id_tokens (SMART App Launch `openid fhirUser`): signed RS256 — what every
//! OpenID Connect client verifies — with a key this server makes on first use and keeps in
//! the database (every server on one database signs with it), published as a JWKS
//! (`/auth/jwks`, the `jwks_uri` of the OpenID configuration).

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::password::random_bytes;
use super::Auth;
use crate::fhir::datetime::now_ms;

/// The database name of the key (`auth_key`).
const KEY_NAME: &str = "id-token-rs256";
/// Lifetime of an id_token, seconds.
const LIFETIME: i64 = 300;

pub struct IdKey {
    key: EncodingKey,
    kid: String,
    /// The public key as a JWK.
    jwk: Value,
}

/// The operating system's random source, for key generation.
struct OsRandom;

impl rand_core::RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes(random_bytes::<4>())
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(random_bytes::<8>())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the operating system's random source");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for OsRandom {}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl IdKey {
    fn of(private: &RsaPrivateKey) -> Result<IdKey, String> {
        let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
        let n = private.n().to_bytes_be();
        let kid = Sha256::digest(&n)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(IdKey {
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": kid,
                "n": b64url(&n),
                "e": b64url(&private.e().to_bytes_be()),
            }),
            kid,
        })
    }
}

/// The server's id_token key: read from the database, or made (2048-bit RSA) and stored.
pub async fn key(auth: &Auth) -> Result<&IdKey, String> {
    auth.id_key
        .get_or_try_init(|| async {
            let stored = auth
                .clients
                .stored_secret(KEY_NAME)
                .await
                .map_err(|e| e.to_string())?;
            let der = match stored {
                Some(text) => text,
                None => {
                    let fresh = tokio::task::spawn_blocking(|| {
                        RsaPrivateKey::new(&mut OsRandom, 2048).map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| e.to_string())??;
                    let der = fresh.to_pkcs1_der().map_err(|e| e.to_string())?;
                    let text = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
                    // Another server on the database may have stored one first: theirs wins.
                    auth.clients
                        .named_secret(KEY_NAME, &text)
                        .await
                        .map_err(|e| e.to_string())?
                }
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(der)
                .map_err(|e| e.to_string())?;
            let private = RsaPrivateKey::from_pkcs1_der(&bytes).map_err(|e| e.to_string())?;
            IdKey::of(&private)
        })
        .await
}

/// The JWKS publishing the id_token key.
pub async fn jwks(auth: &Auth) -> Result<Value, String> {
    Ok(json!({"keys": [key(auth).await?.jwk.clone()]}))
}

/// An id_token for `user` (log-in name, the `sub`) whose FHIR resource is `fhir_user`
/// (`Practitioner/ID`), for the app `client_id`.
pub async fn issue(
    auth: &Auth,
    client_id: &str,
    user: &str,
    fhir_user: &str,
    nonce: Option<&str>,
) -> Result<String, String> {
    let key = key(auth).await?;
    let now = now_ms() / 1000;
    let mut claims = json!({
        "iss": auth.audience,
        "sub": user,
        "aud": client_id,
        "exp": now + LIFETIME,
        "iat": now,
        "fhirUser": format!("{}/{fhir_user}", auth.audience),
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    encode(&header, &claims, &key.key).map_err(|e| e.to_string())
}
