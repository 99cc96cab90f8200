#!/usr/bin/env bash
# A PGO app's upload: one transaction Bundle (bundle.json) with the patient (found or created
# on BSN), the home blood pressure monitor, three blood pressure panels, two body weights, a
# capillary glucose, a personal goal and the care plan that ties them together.
#
#   examples/pgo-push/push.sh [FHIR_BASE]     # default http://127.0.0.1:8080/fhir
#
# Prints the transaction-response Bundle and exits non-zero when the server refuses it.
# Every entry is a conditional create on its identifier (`ifNoneExist`), so pushing twice
# stores nothing twice: the second answer says "200 OK" where the first said "201 Created".
set -euo pipefail
base="${1:-http://127.0.0.1:8080/fhir}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

curl --silent --show-error --fail-with-body \
    -X POST "$base?_pretty=true" \
    -H 'Content-Type: application/fhir+json' \
    -H 'Accept: application/fhir+json' \
    --data-binary @"$here/bundle.json" \
    --write-out '\nHTTP %{http_code}\n'
