//! SMART discovery: `[base]/.well-known/smart-configuration`, `[base]/.well-known/openid-configuration`
//! and the CapabilityStatement's `rest.security`, naming the endpoints.

use serde_json::{json, Value};

use super::Auth;

/// The SMART configuration document: Backend Services (client credentials) and App Launch for
/// people (authorization code with PKCE S256, refresh tokens, OpenID Connect id_tokens).
pub fn smart_configuration(auth: &Auth) -> Value {
    json!({
        "issuer": auth.audience,
        "jwks_uri": auth.auth_url("jwks"),
        "authorization_endpoint": auth.auth_url("authorize"),
        "token_endpoint": auth.token_url,
        "revocation_endpoint": auth.auth_url("revoke"),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post", "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": [
            "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
            "system/*.read", "system/*.write", "system/*.cruds",
            "patient/*.read", "patient/*.write", "patient/*.cruds",
            "user/*.read", "user/*.write", "user/*.cruds",
        ],
        "capabilities": [
            "launch-ehr", "launch-standalone",
            "client-public", "client-confidential-asymmetric", "client-confidential-symmetric",
            "context-ehr-patient", "context-standalone-patient",
            "sso-openid-connect", "permission-offline", "permission-online",
            "permission-patient", "permission-user", "permission-v1", "permission-v2",
        ],
    })
}

/// The OpenID Connect discovery document (for the id_tokens of `openid fhirUser`).
pub fn openid_configuration(auth: &Auth) -> Value {
    json!({
        "issuer": auth.audience,
        "authorization_endpoint": auth.auth_url("authorize"),
        "token_endpoint": auth.token_url,
        "jwks_uri": auth.auth_url("jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post", "none",
        ],
    })
}

/// `CapabilityStatement.rest.security` for a server that requires tokens.
pub fn security(auth: &Auth) -> Value {
    json!({
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": auth.token_url},
                {"url": "authorize", "valueUri": auth.auth_url("authorize")},
                {"url": "revoke", "valueUri": auth.auth_url("revoke")},
            ],
        }],
        "description": "SMART Backend Services: a client signs a JWT assertion (RS384 or ES384) with \
                        its registered key and exchanges it at the token endpoint for a bearer access \
                        token with system/ or patient/ scopes. SMART App Launch: people log in at the \
                        authorize endpoint (authorization code with PKCE S256) and apps get user/ \
                        and patient/ scopes.",
    })
}
