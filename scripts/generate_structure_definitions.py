#!/usr/bin/env python3
"""Generate `profiles/structure-definitions.json`: every StructureDefinition of HL7's R4 package
(resources, data types, primitive types, extensions and the core profiles such as the vital-signs
ones), cut down to what the validation engine (`src/validation/`) reads.

The StructureDefinition shape is kept, so the server reads them with the same code as the
StructureDefinitions of packages and of clients:

* `url`, `name`, `type`, `kind`, `abstract`, `derivation`, `baseDefinition`, `context`,
  `contextInvariant`;
* `snapshot.element` with only `id`, `path`, `sliceName`, `min`, `max`, `base.path`, `type`,
  `contentReference`, `fixed[x]`, `pattern[x]`, `binding` (`strength`, `valueSet`), `slicing`
  and `constraint` (`key`, `severity`, `human`, `expression`). Documentation is dropped.

Run from the repository root:  python3 scripts/generate_structure_definitions.py [package.tgz]
(the package path is found as in scripts/generate_definitions.py). Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fhir_package import open_package, write_json  # noqa: E402

OUTPUT = Path("profiles/structure-definitions.json")

TOP = ("url", "name", "type", "kind", "abstract", "derivation", "baseDefinition", "context",
       "contextInvariant")
ELEMENT = ("id", "path", "sliceName", "min", "max", "type", "contentReference", "slicing")


def element(e: dict) -> dict:
    out = {k: e[k] for k in ELEMENT if k in e}
    for k, v in e.items():
        if k.startswith("fixed") or k.startswith("pattern"):
            out[k] = v
    if "base" in e:
        out["base"] = {"path": e["base"]["path"]}
    if "binding" in e:
        out["binding"] = {k: e["binding"][k] for k in ("strength", "valueSet") if k in e["binding"]}
    if "constraint" in e:
        out["constraint"] = [
            {k: c[k] for k in ("key", "severity", "human", "expression") if k in c}
            for c in e["constraint"]
        ]
    return out


def structure_definition(sd: dict) -> dict:
    out = {"resourceType": "StructureDefinition"}
    out.update({k: sd[k] for k in TOP if k in sd})
    out["snapshot"] = {"element": [element(e) for e in sd["snapshot"]["element"]]}
    return out


def main(argv: list[str]) -> int:
    package = open_package(argv)
    if package is None:
        return 2
    sds = sorted(
        (structure_definition(sd) for sd in package.of_type("StructureDefinition")
         if "snapshot" in sd and sd.get("kind") != "logical"),
        key=lambda sd: sd["url"],
    )
    size = write_json(OUTPUT, {"StructureDefinition": sds})
    print(f"wrote {OUTPUT} ({size} bytes): {len(sds)} StructureDefinitions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
