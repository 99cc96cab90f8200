#!/usr/bin/env python3
"""A coach's view of their worklist, read as a coach's tool would: one GET of
Practitioner/{id}/$worklist, then print each patient with why they are on the list.

Usage: examples/coach/worklist.py PRACTITIONER_ID [BASE_URL]
       (BASE_URL defaults to $SIGNAAL_BASE_URL or http://127.0.0.1:8080/fhir)
Only the Python standard library is used.
"""
import json
import os
import sys
import urllib.error
import urllib.request


def get(url):
    request = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        outcome = json.load(e)
        issues = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
        sys.exit(f"{url}: {e.code} {issues}")


def name(patient):
    for n in patient.get("name", []):
        parts = n.get("given", []) + [n.get("family", "")]
        text = n.get("text") or " ".join(p for p in parts if p)
        if text:
            return text
    return f"Patient/{patient['id']}"


def breakdown(assessment):
    """The readable lines of a Signaal RiskAssessment (its risk-score-item extensions)."""
    lines = []
    for ext in assessment.get("extension", []):
        if ext["url"].endswith("/risk-score-item"):
            parts = {e["url"]: e for e in ext.get("extension", [])}
            points = parts.get("points", {}).get("valueDecimal", 0)
            why = parts.get("why", {}).get("valueString", "")
            if points:
                lines.append(f"{points:>4} {why}")
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    practitioner = sys.argv[1]
    base = (sys.argv[2] if len(sys.argv) > 2 else
            os.environ.get("SIGNAAL_BASE_URL", "http://127.0.0.1:8080/fhir")).rstrip("/")
    bundle = get(f"{base}/Practitioner/{practitioner}/$worklist")
    entries = bundle.get("entry", [])
    included = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
                for e in entries if e.get("search", {}).get("mode") == "include"}
    print(f"Worklist of Practitioner/{practitioner}: {bundle.get('total', 0)} patient(s)")
    rank = 0
    for e in entries:
        if e.get("search", {}).get("mode") != "match":
            continue
        rank += 1
        patient = e["resource"]
        pid = f"Patient/{patient['id']}"
        flags = [r for r in included.values()
                 if r["resourceType"] == "Flag" and r.get("subject", {}).get("reference") == pid]
        print(f"\n{rank:>3}. {name(patient)} ({pid})")
        if not flags:
            print("     no active flags")
        for flag in flags:
            priority = next((x.get("valueInteger") for x in flag.get("extension", [])
                             if x["url"].endswith("/flag-priority")), 0)
            code = flag["code"]["coding"][0]
            print(f"     [{priority:>3}] {code.get('display') or code['code']}: {flag['code'].get('text', '')}"
                  f" (since {flag['period']['start']})")
            ra_ref = next((x["valueReference"]["reference"] for x in flag.get("extension", [])
                           if x["url"].endswith("/flag-risk-assessment")), None)
            for line in breakdown(included.get(ra_ref, {})):
                print(f"           {line}")


if __name__ == "__main__":
    main()
