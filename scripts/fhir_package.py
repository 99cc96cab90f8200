"""The HL7 R4 package the generators read (`scripts/generate_definitions.py`,
`generate_terminology.py`, `generate_structure_definitions.py`): where it is, and its
conformance resources read straight from the .tgz.

The package path is taken from, in order: the first command-line argument, the environment
variable FHIR_R4_PACKAGE, ../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz relative to the
repository root. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = REPO_ROOT.parent / "shared" / "fhir-r4" / "hl7.fhir.r4.examples-4.0.1.tgz"

# Only these resource types are read from the package; the rest are examples.
NEEDED_RESOURCE_TYPES = (
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "SearchParameter",
    "CompartmentDefinition",
)

class Package:
    """The parts of the FHIR package the generators need, indexed for lookup."""

    def __init__(self, name: str, version: str, resources: dict[str, list[dict]]):
        self.name = name
        self.version = version
        self.resources = resources

    @classmethod
    def read(cls, tgz_path: Path) -> "Package":
        """Read `package/package.json` and the conformance resources from the .tgz.

        Files follow the npm package convention `package/<ResourceType>-<id>.json`, so the
        file name prefix lets us skip parsing the thousands of examples; the parsed
        `resourceType` is still checked.
        """
        resources: dict[str, list[dict]] = defaultdict(list)
        manifest: dict = {}
        with tarfile.open(tgz_path, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                if len(parts) != 2 or parts[0] != "package" or not parts[1].endswith(".json"):
                    continue
                filename = parts[1]
                is_manifest = filename == "package.json"
                if not is_manifest and not filename.startswith(
                    tuple(t + "-" for t in NEEDED_RESOURCE_TYPES)
                ):
                    continue
                data = json.load(tar.extractfile(member))
                if is_manifest:
                    manifest = data
                elif data.get("resourceType") in NEEDED_RESOURCE_TYPES:
                    resources[data["resourceType"]].append(data)
        if not manifest:
            raise SystemExit(f"{tgz_path}: no package/package.json - not a FHIR npm package?")
        return cls(manifest.get("name", "?"), manifest.get("version", "?"), resources)

    def of_type(self, resource_type: str) -> list[dict]:
        return self.resources.get(resource_type, [])


def package_path(argv: list[str]) -> Path:
    if len(argv) > 1:
        return Path(argv[1])
    if os.environ.get("FHIR_R4_PACKAGE"):
        return Path(os.environ["FHIR_R4_PACKAGE"])
    return DEFAULT_PACKAGE


def open_package(argv: list[str]) -> Package | None:
    """The package named by `argv` (see [`package_path`]); `None`, told on stderr, when there
    is no such file."""
    tgz = package_path(argv)
    if not tgz.is_file():
        print(f"FHIR package not found: {tgz}\n(get it with: npm pack hl7.fhir.r4.examples@4.0.1)",
              file=sys.stderr)
        return None
    return Package.read(tgz)


def write_json(path: Path, data) -> int:
    """Write compact, deterministic JSON (sorted keys, ASCII) and return its size."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    target = REPO_ROOT / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))
