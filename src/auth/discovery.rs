//! SMART discovery: `[base]/.well-known/smart-configuration` and the CapabilityStatement's
//! `rest.security`, both naming the token endpoint.

use serde_json::{json, Value};

/// The SMART configuration document (App Launch: Backend Services capabilities).
pub fn smart_configuration(token_url: &str) -> Value {
    json!({
        "token_endpoint": token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.read", "system/*.write", "system/*.cruds",
            "patient/*.read", "patient/*.write", "patient/*.cruds",
        ],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    })
}

/// `CapabilityStatement.rest.security` for a server that requires tokens.
pub fn security(token_url: &str) -> Value {
    json!({
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": token_url}],
        }],
        "description": "SMART Backend Services: a client signs a JWT assertion (RS384 or ES384) with \
                        its registered key and exchanges it at the token endpoint for a bearer access \
                        token with system/ or patient/ scopes.",
    })
}
