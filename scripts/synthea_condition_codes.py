#!/usr/bin/env python3
"""List the SNOMED CT condition codes in a Synthea FHIR R4 archive, with display and count.

Why: the Charlson ConceptMap (profiles/conceptmap-snomed-charlson.json) must cover every
Synthea condition code that belongs to a Charlson category; this list is what it is checked
against (tests/fixtures/synthea-condition-codes.tsv, read by the scoring unit tests).

Usage: scripts/synthea_condition_codes.py [ARCHIVE] > tests/fixtures/synthea-condition-codes.tsv
"""
import collections
import json
import sys
import tarfile

SNOMED = "http://snomed.info/sct"


def main():
    archive = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/synthea/synthea-r4-300.tar.gz"
    counts = collections.Counter()
    displays = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            bundle = json.load(tar.extractfile(member))
            for entry in bundle.get("entry", []):
                resource = entry.get("resource", {})
                if resource.get("resourceType") != "Condition":
                    continue
                for coding in resource.get("code", {}).get("coding", []):
                    if coding.get("system") == SNOMED and coding.get("code"):
                        counts[coding["code"]] += 1
                        displays.setdefault(coding["code"], coding.get("display", ""))
    print("code\tdisplay\tcount")
    for code in sorted(counts, key=lambda c: (displays[c].lower(), c)):
        print(f"{code}\t{displays[code]}\t{counts[code]}")


if __name__ == "__main__":
    main()
