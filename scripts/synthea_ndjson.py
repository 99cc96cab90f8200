#!/usr/bin/env python3
"""Convert the Synthea transaction Bundles into NDJSON files for bulk import (`signaal import`,
`$import`): one file per resource type, one resource a line, references made plain `Type/id`.

Why: the import benchmark needs NDJSON as an export would give it. In the Bundles every reference
is a `urn:uuid` of an entry (made `Type/id` here, the entry's resource keeping its id) or, for the
shared Organizations and Practitioners, a conditional reference `Type?identifier=system|value`
(made `Type/id` of the resource with that identifier, found in a first pass).

With `--copies N` the data is written N times, each copy's ids suffixed with `-cK` (references
rewritten the same way), for loads larger than the sample: the sample's 89,773 resources x 12
give about 1.08 million.

Usage: scripts/synthea_ndjson.py OUTDIR [--copies N] [ARCHIVE]
"""
import argparse
import json
import os
import re
import tarfile

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "synthea", "synthea-r4-300.tar.gz")
CONDITIONAL = re.compile(r"^([A-Za-z]+)\?identifier=(.+)$")


def bundles(archive):
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                yield json.load(tar.extractfile(member))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("archive", nargs="?", default=DEFAULT)
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    # Pass 1: what every urn:uuid and every identifier names.
    urls, identified = {}, {}
    for bundle in bundles(args.archive):
        for entry in bundle.get("entry", []):
            r = entry["resource"]
            urls[entry["fullUrl"]] = (r["resourceType"], r["id"])
            for ident in r.get("identifier", []):
                if "system" in ident and "value" in ident:
                    identified[(r["resourceType"], ident["system"] + "|" + ident["value"])] = r["id"]

    def rewrite(node, suffix):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    if value in urls:
                        rtype, rid = urls[value]
                        node[key] = f"{rtype}/{rid}{suffix}"
                        continue
                    m = CONDITIONAL.match(value)
                    if m and (m.group(1), m.group(2)) in identified:
                        node[key] = f"{m.group(1)}/{identified[(m.group(1), m.group(2))]}{suffix}"
                        continue
                rewrite(value, suffix)
        elif isinstance(node, list):
            for value in node:
                rewrite(value, suffix)

    files, counts = {}, {}
    for copy in range(1, args.copies + 1):
        suffix = "" if args.copies == 1 else f"-c{copy}"
        for bundle in bundles(args.archive):
            for entry in bundle.get("entry", []):
                r = entry["resource"]
                r["id"] = r["id"] + suffix
                rewrite(r, suffix)
                rtype = r["resourceType"]
                if rtype not in files:
                    files[rtype] = open(os.path.join(args.outdir, f"{rtype}.ndjson"), "w")
                files[rtype].write(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n")
                counts[rtype] = counts.get(rtype, 0) + 1
    for f in files.values():
        f.close()
    for rtype in sorted(counts):
        print(f"{rtype}\t{counts[rtype]}")
    print(f"total\t{sum(counts.values())}")


if __name__ == "__main__":
    main()
