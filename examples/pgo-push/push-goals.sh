#!/usr/bin/env bash
# A PGO app's upload of the goals a patient agreed with their coach: one transaction Bundle
# (goals.json) with the patient (found or created on BSN), her daughter (RelatedPerson), a Goal
# in each of the four life domains (health, daily activities, own way of coping, environment;
# profile signaal-domain-goal) and an action plan per goal (CarePlan, profile
# signaal-action-plan: the action, when, and who does it).
#
#   examples/pgo-push/push-goals.sh [FHIR_BASE]     # default http://127.0.0.1:8080/fhir
#
# Prints the transaction-response Bundle and exits non-zero when the server refuses it. Every
# entry is a conditional create on its identifier, so pushing twice stores nothing twice.
# Read them back as a coach: examples/coach/goals.py 123456782 [FHIR_BASE]
set -euo pipefail
base="${1:-http://127.0.0.1:8080/fhir}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

curl --silent --show-error --fail-with-body \
    -X POST "$base?_pretty=true" \
    -H 'Content-Type: application/fhir+json' \
    -H 'Accept: application/fhir+json' \
    --data-binary @"$here/goals.json" \
    --write-out '\nHTTP %{http_code}\n'
