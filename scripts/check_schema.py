#!/usr/bin/env python3
"""Check profiles/fhir-r4.schema.json against every resource in HL7's R4 package.

Dev-only sanity check for scripts/generate_definitions.py. It needs the `jsonschema` PyPI
package (`pip install jsonschema`); without it, it says so and exits 0, because the
project itself does not depend on it.

Usage (from the repository root):

    python3 scripts/check_schema.py [package.tgz] [--hl7 path/to/fhir.schema.json]

Package path resolution is the same as the generator's (argument, FHIR_R4_PACKAGE, then
../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz). What it does:

* validates every `package/*.json` that has a `resourceType` against
  `{"$ref": "#/definitions/<resourceType>"}`, and each nested resource (contained,
  Bundle entries and responses, Parameters) against its own type - the way the server
  validates nested resources separately;
* with --hl7, validates the rejected ones with HL7's own JSON schema as a cross-check;
* checks that a set of deliberately broken resources is rejected, and a few tricky valid
  ones accepted.

Python's validator is slow on this schema: the whole package (5,306 files, ~13,500 nested
resources) takes about half an hour, mostly the StructureDefinitions (ElementDefinition has
many 50-way choice elements). Use --only 'Patient-*' for a quick run; the server's Rust
validator does the whole package in seconds.

Caveat: Python's `re` is not Rust's `regex`. With our `^(?:...)$` patterns, `$` in
Python also matches before a final "\\n", and Python's `\\s` differs slightly from
ECMA-262's (which the Rust `jsonschema` crate emulates): Python counts U+001C..U+001F and
U+0085 as whitespace, ECMA counts U+FEFF. Results can differ on such characters only.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tarfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # importing the generator must not leave __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fhir_package import REPO_ROOT, package_path  # noqa: E402
from generate_definitions import SCHEMA_PATH  # noqa: E402

try:
    import jsonschema
except ImportError:  # pragma: no cover - dev tool
    print("check_schema: the `jsonschema` Python package is not installed; skipping "
          "(pip install jsonschema)")
    sys.exit(0)


def read_package_resources(tgz: Path) -> list[tuple[str, dict]]:
    """(file name, resource) for every package/*.json that is a resource."""
    found = []
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 2 and parts[0] == "package" \
                    and parts[1].endswith(".json"):
                data = json.load(tar.extractfile(member))
                if isinstance(data, dict) and "resourceType" in data:
                    found.append((parts[1], data))
    found.sort(key=lambda item: item[0])
    return found


def referenced_definitions(schema: dict) -> list[str]:
    """Definition names a property schema of ours points at (directly, via items or anyOf)."""
    if "$ref" in schema:
        return [schema["$ref"].rsplit("/", 1)[1]]
    names = []
    for sub in [schema.get("items")] + schema.get("anyOf", []):
        if isinstance(sub, dict):
            names += referenced_definitions(sub)
    return names


def nested_resources(definitions: dict, type_name: str, value, path: str = ""):
    """Yield (json path, resource) for resources nested in `value`, not descending into them.

    Walks the instance alongside our own definitions: wherever a property's schema is
    `ResourceList` the value is a nested resource (contained, Bundle.entry.resource,
    Parameters.parameter.resource, ...), which the server validates on its own. (A plain
    "has resourceType" test would be wrong: ExampleScenario.instance has that element.)
    """
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from nested_resources(definitions, type_name, item, f"{path}[{index}]")
        return
    if not isinstance(value, dict):
        return
    if type_name == "ResourceList":
        yield path, value
        return
    properties = definitions.get(type_name, {}).get("properties", {})
    for key, item in value.items():
        if key in properties:
            for target in referenced_definitions(properties[key]):
                if target == "ResourceList" or "properties" in definitions.get(target, {}):
                    yield from nested_resources(definitions, target, item, f"{path}.{key}")


class SchemaChecker:
    """Validates resources against `{"$ref": "#/definitions/<Type>"}` of one schema file."""

    def __init__(self, schema: dict, validator_class=jsonschema.Draft7Validator):
        self.schema = schema
        self.validator_class = validator_class
        self.validators: dict[str, object] = {}
        self.cache: dict[str, list[str]] = {}

    def errors(self, resource: dict) -> list[str]:
        """Error messages for `resource` itself (nested resources excluded)."""
        resource_type = resource.get("resourceType")
        if resource_type not in self.schema["definitions"]:
            return [f"unknown resourceType {resource_type!r}"]
        if resource_type not in self.validators:
            root = {k: v for k, v in self.schema.items() if k not in ("oneOf", "discriminator")}
            root["$ref"] = "#/definitions/" + resource_type
            self.validators[resource_type] = self.validator_class(root)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {short(e)}"
            for e in self.validators[resource_type].iter_errors(resource)
        ]

    def errors_deep(self, resource: dict, where: str = "") -> list[str]:
        """Errors of `resource` and, recursively, of each nested resource on its own.

        Results are cached by content: the package's big Bundles repeat thousands of the
        standalone conformance resources, and Python's validator is slow on them.
        """
        key = json.dumps(resource, sort_keys=True)
        if key not in self.cache:
            messages = self.errors(resource)
            for path, nested in self.nested(resource):
                messages += [f"{path} ({nested.get('resourceType')}) {m}"
                             for m in self.errors_deep(nested)]
            self.cache[key] = messages
        return [where + m for m in self.cache[key]]

    def nested(self, resource: dict):
        if resource.get("resourceType") not in self.schema["definitions"]:
            return []
        return list(nested_resources(self.schema["definitions"], resource["resourceType"],
                                     resource))


def short(error) -> str:
    """A one-line message; spells out our anyOf/oneOf idioms instead of dumping the value."""
    if error.validator == "anyOf" and all(e.validator == "required" for e in error.context):
        names = " or ".join(repr(e.validator_value[0]) for e in error.context)
        return f"missing required element {names}"
    if error.validator == "oneOf" and "is valid under each of" in error.message:
        return "more than one type of a choice element [x] given"
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        return f"{error.validator} failed; e.g. {'/'.join(map(str, deepest.absolute_path))}: " \
               f"{deepest.message[:200]}"
    return error.message[:300]


NEGATIVE_CASES = {
    "unknown element": {"resourceType": "Patient", "foo": 1},
    "fhir_comments": {"resourceType": "Patient", "fhir_comments": ["x"]},
    "wrong JSON type (active as string)": {"resourceType": "Patient", "active": "true"},
    "array where single expected (gender)": {"resourceType": "Patient", "gender": ["male"]},
    "single where array expected (name)": {"resourceType": "Patient", "name": {"family": "X"}},
    "empty array": {"resourceType": "Patient", "name": []},
    "two value[x] choices": {"resourceType": "Patient", "deceasedBoolean": True,
                             "deceasedDateTime": "2020-01-01"},
    "choice value and other choice's extension": {
        "resourceType": "Patient", "deceasedBoolean": True,
        "_deceasedDateTime": {"extension": [{"url": "http://x", "valueString": "y"}]}},
    "bad date": {"resourceType": "Patient", "birthDate": "2020-13-01"},
    "bad dateTime (time without zone)": {"resourceType": "Observation", "status": "final",
                                         "code": {"text": "x"},
                                         "effectiveDateTime": "2020-01-01T10:00:00"},
    "id with slash": {"resourceType": "Patient", "id": "a/b"},
    "id too long": {"resourceType": "Patient", "id": "a" * 65},
    "wrong code for Patient.gender": {"resourceType": "Patient", "gender": "M"},
    "missing required element (Observation.code)": {"resourceType": "Observation",
                                                    "status": "final"},
    "missing resourceType": {"id": "x"},
    "wrong resourceType": {"resourceType": "Patient2"},
    "extension without url": {"resourceType": "Patient",
                              "extension": [{"valueString": "x"}]},
    "empty string": {"resourceType": "Patient", "name": [{"family": ""}]},
    "decimal as string": {"resourceType": "Observation", "status": "final",
                          "code": {"text": "x"}, "valueQuantity": {"value": "1.5"}},
    "negative positiveInt": {"resourceType": "Patient", "multipleBirthInteger": 1,
                             "contact": [{"name": {"text": "x"}}],
                             "photo": [{"size": -1}]},
    "Bundle entry resource without resourceType": {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]},
    "contained of unknown type": {"resourceType": "Patient",
                                  "contained": [{"resourceType": "Nope", "id": "a"}]},
    "nested resource invalid on its own": {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "M"}}]},
}

POSITIVE_CASES = {
    "primitive with extension only": {"resourceType": "Patient",
                                      "_birthDate": {"extension": [{"url": "http://x",
                                                                    "valueString": "y"}]}},
    "primitive array with null + extension": {
        "resourceType": "Patient",
        "name": [{"given": ["A", None], "_given": [None, {"id": "g2"}]}]},
    "choice value and its own extension": {"resourceType": "Patient", "deceasedBoolean": True,
                                           "_deceasedBoolean": {"id": "d"}},
    "required primitive given only as extension (Extension.url is not one)": {
        "resourceType": "Observation", "_status": {"extension": [{"url": "http://x",
                                                                 "valueCode": "final"}]},
        "code": {"text": "x"}},
    "nested Questionnaire items (contentReference)": {
        "resourceType": "Questionnaire", "status": "draft",
        "item": [{"linkId": "1", "type": "group",
                  "item": [{"linkId": "1.1", "type": "string"}]}]},
}


def run_cases(checker: SchemaChecker) -> int:
    """Check the hand-written negative and positive cases; return the number of surprises."""
    surprises = 0
    for label, resource in NEGATIVE_CASES.items():
        errors = checker.errors_deep(resource)
        status = "rejected" if errors else "ACCEPTED (bug)"
        surprises += not errors
        print(f"  negative: {label}: {status}" + (f" - {errors[0]}" if errors else ""))
    for label, resource in POSITIVE_CASES.items():
        errors = checker.errors_deep(resource)
        surprises += bool(errors)
        print(f"  positive: {label}: {'accepted' if not errors else 'REJECTED (bug)'}"
              + (f" - {errors}" if errors else ""))
    return surprises


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("package", nargs="?", help="FHIR R4 package .tgz")
    parser.add_argument("--hl7", help="HL7's fhir.schema.json, to cross-check rejections")
    parser.add_argument("--schema", default=str(REPO_ROOT / SCHEMA_PATH))
    parser.add_argument("--only", metavar="GLOB",
                        help="check only package files matching GLOB, e.g. 'Patient-*'")
    args = parser.parse_args()

    started = time.monotonic()
    schema = json.loads(Path(args.schema).read_text())
    checker = SchemaChecker(schema)
    hl7 = None
    if args.hl7:
        hl7 = SchemaChecker(json.loads(Path(args.hl7).read_text()), jsonschema.Draft6Validator)

    resources = read_package_resources(package_path([None, args.package] if args.package else []))
    if args.only:
        resources = [(name, r) for name, r in resources if fnmatch.fnmatch(name, args.only)]
    rejected = 0
    nested_count = 0
    for filename, resource in resources:
        nested_count += len(checker.nested(resource))
        errors = checker.errors_deep(resource)
        if not errors:
            continue
        rejected += 1
        verdict = ""
        if hl7 is not None:
            verdict = " [HL7 schema: " + ("rejects too" if hl7.errors(resource) else "ACCEPTS") + "]"
        print(f"REJECTED {filename}{verdict}")
        for message in errors[:5]:
            print(f"    {message}")
        if len(errors) > 5:
            print(f"    ... {len(errors) - 5} more")
    print(f"package resources: {len(resources)} (plus {nested_count} nested, checked too); "
          f"accepted {len(resources) - rejected}, rejected {rejected}")
    surprises = run_cases(checker)
    print(f"hand-written cases: {len(NEGATIVE_CASES) + len(POSITIVE_CASES) - surprises} passed, "
          f"{surprises} failed")
    print(f"took {time.monotonic() - started:.1f}s")
    return 1 if surprises else 0


if __name__ == "__main__":
    sys.exit(main())
