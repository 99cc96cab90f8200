#!/usr/bin/env python3
"""Generate `profiles/terminology.json`: the CodeSystems and ValueSets of HL7's R4 package, cut
down to what search needs for the token modifiers `:in`, `:not-in`, `:below` and `:above`.

Both keep the FHIR resource shape, so the server reads them with the same code as the
CodeSystem and ValueSet resources clients POST:

* CodeSystem: `url`, `content`, and the `concept` tree with only `code`, nested `concept` and
  `property` (code + value; the hierarchy properties `parent`/`child` and whatever `=` filters
  may test), without displays, definitions and designations.
* ValueSet: `url`, `compose` (include/exclude: `system`, `concept` codes, `filter`,
  `valueSet`, versions dropped) and, for the few without a compose, `expansion.contains`.

Run from the repository root:  python3 scripts/generate_terminology.py [package.tgz]
(the package path is found as in scripts/generate_definitions.py). Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fhir_package import open_package, write_json  # noqa: E402
from generate_definitions import strip_version  # noqa: E402

TERMINOLOGY_PATH = Path("profiles/terminology.json")

# Concept properties that say nothing a search filter asks about: left out to stay compact.
DROPPED_PROPERTIES = {"status", "deprecationDate", "notSelectable", "deprecated", "retirementDate"}


def concept(c: dict) -> dict:
    out: dict = {"code": c["code"]}
    props = []
    for p in c.get("property", []):
        if p.get("code") in DROPPED_PROPERTIES:
            continue
        value = next(((k, v) for k, v in p.items() if k.startswith("value")), None)
        if value is not None and isinstance(value[1], (str, bool, int)):
            props.append({"code": p["code"], value[0]: value[1]})
    if props:
        out["property"] = props
    if c.get("concept"):
        out["concept"] = [concept(child) for child in c["concept"]]
    return out


def code_system(cs: dict) -> dict:
    out = {"url": cs["url"], "content": cs.get("content", "complete")}
    if cs.get("concept"):
        out["concept"] = [concept(c) for c in cs["concept"]]
    return out


def set_part(part: dict) -> dict:
    out: dict = {}
    if "system" in part:
        out["system"] = part["system"]
    if part.get("concept"):
        out["concept"] = [{"code": c["code"]} for c in part["concept"]]
    if part.get("filter"):
        out["filter"] = [
            {"property": f["property"], "op": f["op"], "value": f["value"]} for f in part["filter"]
        ]
    if part.get("valueSet"):
        out["valueSet"] = [strip_version(v) for v in part["valueSet"]]
    return out


def contains(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        entry = {k: item[k] for k in ("system", "code") if k in item}
        if item.get("contains"):
            entry["contains"] = contains(item["contains"])
        out.append(entry)
    return out


def value_set(vs: dict) -> dict:
    out: dict = {"url": vs["url"]}
    compose = vs.get("compose")
    if compose:
        out["compose"] = {
            key: [set_part(p) for p in compose[key]]
            for key in ("include", "exclude")
            if compose.get(key)
        }
    elif vs.get("expansion", {}).get("contains"):
        out["expansion"] = {"contains": contains(vs["expansion"]["contains"])}
    return out


def main(argv: list[str]) -> int:
    package = open_package(argv)
    if package is None:
        return 2
    code_systems = sorted(
        (code_system(cs) for cs in package.of_type("CodeSystem") if "url" in cs),
        key=lambda cs: cs["url"],
    )
    value_sets = sorted(
        (value_set(vs) for vs in package.of_type("ValueSet") if "url" in vs),
        key=lambda vs: vs["url"],
    )
    size = write_json(TERMINOLOGY_PATH, {"CodeSystem": code_systems, "ValueSet": value_sets})
    print(
        f"wrote {TERMINOLOGY_PATH} ({size} bytes): "
        f"{len(code_systems)} CodeSystems, {len(value_sets)} ValueSets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
