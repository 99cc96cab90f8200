#!/usr/bin/env python3
"""Loads the data set of the coach's worklist benchmark (docs/performance/search.md, runs 8-9)
into a running Signaal: 20 transactions of 1,000 resources, in all 1,000 Flags (half active,
a flag-priority from 1 to 100), 9,500 active CarePlans, 9,500 active MedicationRequests and
three Patients, so that `status=active` is shared by many resources of other types.

    python3 scripts/bench_worklist_data.py http://127.0.0.1:18089/fhir
"""
import json
import sys
import urllib.request

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080/fhir"
PRIORITY = "https://signaal.dev/fhir/StructureDefinition/flag-priority"
PATIENTS = ["wl-p1", "wl-p2", "wl-p3"]


def post(bundle):
    request = urllib.request.Request(
        BASE, data=json.dumps(bundle).encode(), method="POST",
        headers={"Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        assert reply.status == 200, reply.status


def put(resource):
    return {"resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def flag(n):
    return put({
        "resourceType": "Flag", "id": f"wl-flag-{n}",
        "status": "active" if n % 2 == 0 else "inactive",
        "extension": [{"url": PRIORITY, "valueInteger": 1 + n % 100}],
        "code": {"text": f"worklist benchmark flag {n}"},
        "subject": {"reference": f"Patient/{PATIENTS[n % 3]}"},
    })


def care_plan(n):
    return put({"resourceType": "CarePlan", "id": f"wl-cp-{n}", "status": "active",
                "intent": "plan", "subject": {"reference": f"Patient/{PATIENTS[n % 3]}"}})


def medication_request(n):
    return put({"resourceType": "MedicationRequest", "id": f"wl-mr-{n}", "status": "active",
                "intent": "order", "medicationCodeableConcept": {"text": f"benchmark drug {n % 50}"},
                "subject": {"reference": f"Patient/{PATIENTS[n % 3]}"}})


def main():
    post({"resourceType": "Bundle", "type": "transaction", "entry": [
        put({"resourceType": "Patient", "id": p, "name": [{"family": "Worklist"}]}) for p in PATIENTS]})
    entries = [flag(n) for n in range(1000)]
    entries += [care_plan(n) for n in range(9500)]
    entries += [medication_request(n) for n in range(9500)]
    for start in range(0, len(entries), 1000):
        post({"resourceType": "Bundle", "type": "transaction", "entry": entries[start:start + 1000]})
        print(f"{start + 1000} of {len(entries)} resources", file=sys.stderr)


main()
