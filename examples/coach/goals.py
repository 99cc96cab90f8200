#!/usr/bin/env python3
"""A coach reads a patient's goals in the four life domains and their action plans, as a
coach's tool would: per domain one search for the patient's active goals in that domain
(Goal?patient.identifier&category&lifecycle-status), then the action plans of those goals
(CarePlan?goal=...), and print them, saying which domains have no active goal.

Usage: examples/coach/goals.py BSN [BASE_URL]
       (BASE_URL defaults to $SIGNAAL_BASE_URL or http://127.0.0.1:8080/fhir)
Only the Python standard library is used.
"""
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

DOMAIN = "https://signaal.dev/fhir/CodeSystem/goal-domain"
# The four life domains (profiles/codesystem-goal-domain.json): code, English, Dutch.
DOMAINS = [("health", "Health", "Gezondheid"),
           ("daily-activities", "Daily activities", "Dagelijkse activiteiten"),
           ("coping", "Own way of coping", "Eigen manier van omgaan"),
           ("environment", "Environment", "Omgeving")]


def get(base, path, **params):
    url = f"{base}/{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        outcome = json.load(e)
        issues = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
        sys.exit(f"{url}: {e.code} {issues}")


def matches(bundle):
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]


def timing(detail):
    t = detail.get("scheduledTiming", {}).get("repeat", {})
    if "frequency" in t:
        return f"{t['frequency']}x per {t.get('period', 1)} {t.get('periodUnit', '')}"
    bounds = t.get("boundsPeriod")
    if bounds:
        return f"{bounds.get('start', '')} to {bounds.get('end', '')}"
    return detail.get("scheduledString", "when agreed")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bsn = sys.argv[1]
    base = (sys.argv[2] if len(sys.argv) > 2 else
            os.environ.get("SIGNAAL_BASE_URL", "http://127.0.0.1:8080/fhir")).rstrip("/")
    patient = f"http://fhir.nl/fhir/NamingSystem/bsn|{bsn}"
    without = []
    for code, english, dutch in DOMAINS:
        goals = matches(get(base, "Goal", **{"patient.identifier": patient,
                                             "category": f"{DOMAIN}|{code}",
                                             "lifecycle-status": "active"}))
        print(f"{english} ({dutch})")
        if not goals:
            without.append(english)
            print("   no active goal")
        for goal in goals:
            status = goal.get("achievementStatus", {}).get("coding", [{}])[0].get("code", "")
            print(f"   goal: {goal['description'].get('text', '')} [{status}]")
            plans = matches(get(base, "CarePlan", goal=f"Goal/{goal['id']}", status="active"))
            for plan in plans:
                for activity in plan.get("activity", []):
                    detail = activity.get("detail", {})
                    who = ", ".join(p.get("reference", "") for p in detail.get("performer", []))
                    print(f"      action: {detail.get('description', '')} "
                          f"({timing(detail)}) by {who}")
    if without:
        print(f"\nDomains without an active goal: {', '.join(without)}")


if __name__ == "__main__":
    main()
