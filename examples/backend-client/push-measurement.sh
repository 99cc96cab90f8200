#!/usr/bin/env bash
# What a PGO vendor does on day one with Signaal (SMART Backend Services):
#   1. make a key pair and publish the public half as a JWKS,
#   2. get registered as a client (the server's operator runs `signaal client add`),
#   3. get an access token with a signed client assertion (RS384),
#   4. push a measurement (a heart rate Observation).
# Only bash, openssl, perl and curl are needed.
#
#   SIGNAAL=target/debug/signaal DATABASE=sqlite://signaal.db SERVER=http://127.0.0.1:8080 \
#     examples/backend-client/push-measurement.sh
#
# Environment: SIGNAAL (the signaal binary), DATABASE (the server's --database), SERVER (where
# it listens, without /fhir), CLIENT_ID, PATIENT (the measured patient's id), WORK (a directory
# for the key files; a new temporary one by default).
set -euo pipefail

SIGNAAL=${SIGNAAL:-signaal}
DATABASE=${DATABASE:-sqlite://signaal.db}
SERVER=${SERVER:-http://127.0.0.1:8080}
CLIENT_ID=${CLIENT_ID:-pgo-vendor}
PATIENT=${PATIENT:-example}
WORK=${WORK:-$(mktemp -d)}

# Unpadded base64url, as JWTs and JWKs want it.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# 1. A key pair; the JWKS holds the public modulus (n) and exponent (e).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null
n=$(openssl rsa -in "$WORK/key.pem" -noout -modulus | cut -d= -f2 |
    perl -ne 'chomp; print pack("H*", $_)' | b64url)
printf '{"keys":[{"kty":"RSA","kid":"key-1","alg":"RS384","use":"sig","n":"%s","e":"AQAB"}]}\n' \
    "$n" > "$WORK/jwks.json"

# 2. Registration (on the server's machine, with the server's database; works while it runs).
"$SIGNAAL" client add --database "$DATABASE" --id "$CLIENT_ID" --name "Example PGO vendor" \
    --jwks "$WORK/jwks.json" --scope "system/Observation.cruds"

# 3. The client assertion: iss = sub = the client id, aud = the token endpoint, a short exp,
#    a fresh jti; signed with the private key. Exchanged for an access token.
token_url="$SERVER/auth/token"
now=$(date +%s)
header=$(printf '{"alg":"RS384","typ":"JWT","kid":"key-1"}' | b64url)
payload=$(printf '{"iss":"%s","sub":"%s","aud":"%s","exp":%d,"iat":%d,"jti":"%s"}' \
    "$CLIENT_ID" "$CLIENT_ID" "$token_url" $((now + 240)) "$now" "$(openssl rand -hex 16)" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" |
    openssl dgst -sha384 -sign "$WORK/key.pem" -binary | b64url)
answer=$(curl -sS --fail-with-body -X POST "$token_url" \
    -H 'content-type: application/x-www-form-urlencoded' \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    --data-urlencode "client_assertion=$header.$payload.$signature" \
    --data-urlencode scope=system/Observation.cruds)
token=$(printf '%s' "$answer" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "no access token: $answer" >&2; exit 1; }
echo "got an access token: $(printf '%s' "$answer" | sed 's/"access_token":"[^"]*"/"access_token":"…"/')" >&2

# 4. The measurement.
curl -sS --fail-with-body -X POST "$SERVER/fhir/Observation" \
    -H "authorization: Bearer $token" -H 'content-type: application/fhir+json' \
    --data @- <<JSON
{
  "resourceType": "Observation",
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
  "subject": {"reference": "Patient/$PATIENT"},
  "effectiveDateTime": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "valueQuantity": {"value": 62, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
}
JSON
echo
