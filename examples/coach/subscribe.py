#!/usr/bin/env python3
"""A coach's tool that is told the moment a patient is flagged: it subscribes to Signaal's Flag
topic (FHIR Subscriptions R5 Backport IG, R4) with a rest-hook on loopback, and prints each
patient as their Flag is raised or ended.

Usage: examples/coach/subscribe.py [BASE_URL] [--patient ID] [--min-priority N] [--count N]
       (BASE_URL defaults to $SIGNAAL_BASE_URL or http://127.0.0.1:8080/fhir;
        --count: stop after N notified flags; without it, run until Ctrl-C)
On exit the subscription is turned off. Only the Python standard library is used.
"""
import argparse
import json
import os
import queue
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FLAG_TOPIC = "https://signaal.dev/fhir/SubscriptionTopic/flag"
PRIORITY = "https://signaal.dev/fhir/StructureDefinition/flag-priority"


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/fhir+json", "Content-Type": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        outcome = json.load(e)
        issues = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
        sys.exit(f"{method} {url}: {e.code} {issues}")


def status_parameter(bundle, name):
    for p in bundle["entry"][0]["resource"].get("parameter", []):
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), None)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?",
                        default=os.environ.get("SIGNAAL_BASE_URL", "http://127.0.0.1:8080/fhir"))
    parser.add_argument("--patient", help="only this patient's flags")
    parser.add_argument("--min-priority", type=int, help="only flags of at least this priority")
    parser.add_argument("--count", type=int, help="stop after this many flags")
    args = parser.parse_args()
    base = args.base.rstrip("/")

    notifications = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            notifications.put(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    # The endpoint: a loopback port of our own (Signaal accepts http only on loopback).
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{hook.server_address[1]}/"

    filters = []
    if args.patient:
        filters.append(f"Flag?patient=Patient/{args.patient}")
    if args.min_priority is not None:
        filters.append(f"Flag?priority=ge{args.min_priority}")
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the coach when a patient is flagged",
        "criteria": FLAG_TOPIC,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [
                {"url": f"{IG}/backport-payload-content", "valueCode": "full-resource"}]},
            "extension": [{"url": f"{IG}/backport-heartbeat-period", "valueUnsignedInt": 60}],
        },
    }
    if filters:
        subscription["_criteria"] = {"extension": [
            {"url": f"{IG}/backport-filter-criteria", "valueString": f} for f in filters]}
    created = call("POST", f"{base}/Subscription", subscription)
    sid = created["id"]
    print(f"Subscription/{sid} requested; waiting for the handshake", flush=True)
    seen = 0
    try:
        while args.count is None or seen < args.count:
            bundle = notifications.get()
            kind = status_parameter(bundle, "type")
            if kind == "handshake":
                print(f"Subscription/{sid} active: flagged patients follow", flush=True)
                continue
            if kind != "event-notification":
                continue
            for entry in bundle["entry"][1:]:
                flag = entry.get("resource")
                if not flag:
                    continue
                patient = flag.get("subject", {}).get("reference", "?")
                why = flag.get("code", {}).get("text") or ", ".join(
                    c.get("display") or c.get("code", "") for c in flag.get("code", {}).get("coding", []))
                priority = next((e.get("valueInteger") for e in flag.get("extension", [])
                                 if e.get("url") == PRIORITY), None)
                state = "flagged" if flag.get("status") == "active" else f"flag {flag.get('status')}"
                print(f"{patient} {state}: {why} (priority {priority})", flush=True)
                seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        current = call("GET", f"{base}/Subscription/{sid}")
        current["status"] = "off"
        call("PUT", f"{base}/Subscription/{sid}", current)
        hook.shutdown()


if __name__ == "__main__":
    main()
