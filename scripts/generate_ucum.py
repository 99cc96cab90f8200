#!/usr/bin/env python3
"""Generate `profiles/ucum.json`, the compact UCUM unit table Signaal's `src/ucum` module reads.

Input: `ucum-essence.xml`, the machine-readable definition of the Unified Code for Units of
Measure. The path is taken from, in order:

  1. the first command-line argument,
  2. the environment variable UCUM_ESSENCE,
  3. ../shared/fhir-test-cases/ucum/ucum-essence.xml relative to the repository root.

The file is public: download it from https://ucum.org (the "ucum-essence.xml" download) or
from GitHub, https://github.com/ucum-org/ucum (`ucum-essence.xml` in the repository root,
e.g. https://raw.githubusercontent.com/ucum-org/ucum/main/ucum-essence.xml).

Output (compact JSON, sorted keys, deterministic, committed to the repository):

  {
    "version": "2.0.1",                          the essence's version attribute
    "base": ["m", "s", "g", "rad", "K", "C", "cd"],  base units in the essence's order
    "prefixes": {"k": "1e3", ...},               prefix code -> factor (decimal text)
    "units": {
      "g/dl": ...,
      "<code>": {"value": "1000", "unit": "g",   value times the unit expression
                 "metric": true,                 takes prefixes
                 "arbitrary": true,              arbitrary unit (its own dimension)
                 "special": "Cel"}               non-linear: name of the essence's function
    }
  }

Only the case-sensitive codes (`Code`) are kept: FHIR uses them. For special units `value`
and `unit` are those of the essence's `<function>` element (e.g. degF: 5, "K/9").

Run from the repository root:  python3 scripts/generate_ucum.py [ucum-essence.xml]
Only the Python standard library is used.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ESSENCE = REPO_ROOT.parent / "shared" / "fhir-test-cases" / "ucum" / "ucum-essence.xml"
OUTPUT = REPO_ROOT / "profiles" / "ucum.json"
NS = "{http://unitsofmeasure.org/ucum-essence}"


def main() -> None:
    path = Path(
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("UCUM_ESSENCE", DEFAULT_ESSENCE)
    )
    root = ET.parse(path).getroot()

    base = [b.get("Code") for b in root.iter(NS + "base-unit")]
    prefixes = {p.get("Code"): p.find(NS + "value").get("value") for p in root.iter(NS + "prefix")}

    units: dict[str, dict] = {}
    for u in root.iter(NS + "unit"):
        code = u.get("Code")
        value = u.find(NS + "value")
        entry: dict = {}
        function = value.find(NS + "function")
        if u.get("isSpecial") == "yes":
            entry["special"] = function.get("name")
            entry["value"] = function.get("value")
            entry["unit"] = function.get("Unit")
        else:
            entry["value"] = value.get("value")
            entry["unit"] = value.get("Unit")
        if u.get("isMetric") == "yes":
            entry["metric"] = True
        if u.get("isArbitrary") == "yes":
            entry["arbitrary"] = True
        # The parser splits a trailing exponent off a symbol; no atom may end in a digit.
        assert not code[-1].isdigit(), f"atom {code} ends in a digit"
        assert code not in units and code not in base, f"duplicate atom {code}"
        units[code] = entry

    out = {"version": root.get("version"), "base": base, "prefixes": prefixes, "units": units}
    OUTPUT.write_text(json.dumps(out, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{OUTPUT.relative_to(REPO_ROOT)}: {len(base)} base units, {len(prefixes)} prefixes, "
          f"{len(units)} units")


if __name__ == "__main__":
    main()
