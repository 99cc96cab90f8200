#!/usr/bin/env python3
"""Generate Signaal's FHIR R4 (4.0.1) definition files from HL7's official package.

Input: the HL7 R4 package in the standard FHIR npm package layout (`package/*.json`),
read straight from its .tgz. The path is taken from, in order:

  1. the first command-line argument,
  2. the environment variable FHIR_R4_PACKAGE,
  3. ../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz relative to the repository root.

The same package is public on the npm registry as `hl7.fhir.r4.examples@4.0.1`; get it with

    npm pack hl7.fhir.r4.examples@4.0.1

(it holds the core StructureDefinitions, ValueSets, CodeSystems and SearchParameters as
well as all the spec's examples).

Output (compact JSON, sorted keys, deterministic, committed to the repository):

  profiles/fhir-r4.schema.json           JSON Schema (draft-07); everything under
                                          `definitions`, one per primitive type, complex
                                          type, resource and backbone element.
  conformance/resource-types.json        sorted concrete resource type names.
  conformance/search-parameters.json     every SearchParameter in the package, trimmed.
  conformance/compartment-patient.json   Patient compartment: resource type -> params.
  conformance/summary-elements.json      per resource type, the element paths `_summary=true`
                                          and `_summary=text` keep.
  profiles/fhir-r4.elements.json         per complex type, resource and backbone element, its
                                          elements in definition order (the order of FHIR XML):
                                          [name, [type codes], repeats, xml attribute]; and the
                                          JSON type of each primitive (the XML format, 0033).

Run from the repository root:  python3 scripts/generate_definitions.py [package.tgz]

Only the Python 3.11 standard library is used, so the script runs on any dev machine or in
CI without installing anything.

Schema conventions (the server compiles `{"$ref": "#/definitions/<Type>"}` against this
document with the Rust `jsonschema` crate, so patterns must be valid Rust-regex syntax):

* Backbone elements get their own definition named after their full path with each
  segment capitalised, e.g. `Patient.contact` -> `Patient_Contact`,
  `Bundle.entry.request` -> `Bundle_Entry_Request` (full paths never collide, unlike
  last-segment names). `contentReference` points at the referenced backbone definition.
* Nested resources (`type: Resource`) refer to `ResourceList`, which checks only that
  `resourceType` names a concrete resource: the server validates each nested resource on
  its own against its own type, so a giant oneOf is not needed here.
* Choice elements (`value[x]`) expand to one property per type; a linear-size `oneOf`
  allows at most one of them (exactly one when the element is required).
* Every primitive-typed element `x` gets a sibling `_x` for its id/extensions (FHIR JSON).
"""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from fhir_package import Package, open_package, write_json

SCHEMA_PATH = Path("profiles/fhir-r4.schema.json")
RESOURCE_TYPES_PATH = Path("conformance/resource-types.json")
SEARCH_PARAMETERS_PATH = Path("conformance/search-parameters.json")
COMPARTMENT_PATH = Path("conformance/compartment-patient.json")
SUMMARY_PATH = Path("conformance/summary-elements.json")
ELEMENTS_PATH = Path("profiles/fhir-r4.elements.json")

SD_BASE = "http://hl7.org/fhir/StructureDefinition/"
EXT_REGEX = SD_BASE + "regex"
EXT_FHIR_TYPE = SD_BASE + "structuredefinition-fhir-type"
FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."

# Required-binding value sets larger than this are not emitted as enums (keeps the
# schema small; big code lists belong in a terminology service, not in a regex engine).
MAX_ENUM_CODES = 250

# FHIR JSON representation of the primitive types (everything else is a JSON string).
JSON_TYPE_OF_PRIMITIVE = {
    "boolean": "boolean",
    "integer": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "number",
}
# FHIR's integer is a signed 32-bit value; positiveInt/unsignedInt narrow its range.
INTEGER_BOUNDS = {
    "integer": (-2147483648, 2147483647),
    "positiveInt": (1, 2147483647),
    "unsignedInt": (0, 2147483647),
}
# Primitives that carry no `_x` sibling in JSON: xhtml cannot have extensions.
PRIMITIVES_WITHOUT_EXTENSIONS = {"xhtml"}


def ref(name: str) -> dict:
    """A JSON Schema reference to one of our definitions."""
    return {"$ref": "#/definitions/" + name}


# --------------------------------------------------------------------------- terminology


def strip_version(canonical: str) -> str:
    """`http://hl7.org/fhir/ValueSet/x|4.0.1` -> `http://hl7.org/fhir/ValueSet/x`."""
    return canonical.split("|", 1)[0]


class Terminology:
    """Expands value sets using only the CodeSystems and ValueSets in the package.

    Only what can be expanded exactly is expanded (whole complete CodeSystems, explicit
    concept lists, nested value sets, excludes by explicit concept list); anything with a
    filter or an external code system yields None, so the schema falls back to the plain
    `code` pattern instead of guessing.
    """

    def __init__(self, package: Package):
        self.code_systems = {cs["url"]: cs for cs in package.of_type("CodeSystem") if "url" in cs}
        self.value_sets = {vs["url"]: vs for vs in package.of_type("ValueSet") if "url" in vs}
        self._cache: dict[str, set[str] | None] = {}

    def expand(self, url: str) -> set[str] | None:
        """The set of codes in value set `url`, or None if it cannot be fully expanded."""
        url = strip_version(url)
        if url not in self._cache:
            self._cache[url] = None  # guards against include cycles
            self._cache[url] = self._expand_uncached(url)
        return self._cache[url]

    def _expand_uncached(self, url: str) -> set[str] | None:
        value_set = self.value_sets.get(url)
        if value_set is None or "compose" not in value_set:
            return None
        compose = value_set["compose"]
        codes: set[str] = set()
        for include in compose.get("include", []):
            part = self._expand_set_part(include)
            if part is None:
                return None
            codes |= part
        for exclude in compose.get("exclude", []):
            part = self._expand_set_part(exclude)
            if part is None:
                return None
            codes -= part
        return codes

    def _expand_set_part(self, part: dict) -> set[str] | None:
        """Codes selected by one compose.include/exclude entry (or None)."""
        if part.get("filter"):
            return None
        selected: set[str] | None = None
        if "system" in part:
            if part.get("concept"):
                selected = {c["code"] for c in part["concept"]}
            else:
                selected = self._all_codes(part["system"])
                if selected is None:
                    return None
        for nested_url in part.get("valueSet", []):
            nested = self.expand(nested_url)
            if nested is None:
                return None
            selected = set(nested) if selected is None else selected & nested
        return selected

    def _all_codes(self, system: str) -> set[str] | None:
        """Every code of a complete CodeSystem in the package, nested concepts included."""
        code_system = self.code_systems.get(strip_version(system))
        if code_system is None or code_system.get("content") != "complete":
            return None
        codes: set[str] = set()
        stack = list(code_system.get("concept", []))
        while stack:
            concept = stack.pop()
            codes.add(concept["code"])
            stack.extend(concept.get("concept", []))
        return codes


# --------------------------------------------------------------------------- types


def is_base_type_definition(sd: dict) -> bool:
    """True for the core type definitions the schema is built from.

    Keeps primitive types, complex types and resources that are HL7 base definitions
    (derivation `specialization`, or none for the roots Element/Resource); skips
    constraint profiles (e.g. SimpleQuantity, vitalsigns) and logical models.
    """
    return (
        sd.get("kind") in ("primitive-type", "complex-type", "resource")
        and sd.get("derivation", "specialization") == "specialization"
        and sd.get("url") == SD_BASE + sd.get("type", "")
    )


def extension_value(holder: dict, url: str, key: str):
    """Value of the first extension `url` on `holder` (or None)."""
    for ext in holder.get("extension", []):
        if ext.get("url") == url:
            return ext.get(key)
    return None


def capitalise(word: str) -> str:
    return word[:1].upper() + word[1:]


def backbone_name(path: str) -> str:
    """Definition name of a backbone element: `Bundle.entry.request` -> `Bundle_Entry_Request`."""
    root, *rest = path.split(".")
    return "_".join([root] + [capitalise(segment) for segment in rest])


ANY_CHAR = "[\\s\\S]"


def xsd_whitespace(regex: str) -> str:
    """FHIR's regexes are XML Schema regexes, where `\\s` is only space, tab, CR and LF; in Rust
    and ECMA-262 `\\s` is all Unicode white space, which would make `\\S` refuse a no-break
    space (U+00A0). Rewrite the forms the R4 definitions use into explicit classes."""
    # `[ \\r\\n\\t\\S]` (string, markdown): XML white space or not white space, i.e. any character.
    regex = regex.replace("[ \\r\\n\\t\\S]", "\0ANY\0")
    regex = regex.replace("[^\\s]", "[^ \\t\\n\\r]")
    if re.search(r"\[[^\]]*\\[sS]", regex):
        raise ValueError(f"regex uses \\s or \\S inside a class in an unexpected way: {regex}")
    regex = regex.replace("\\S", "[^ \\t\\n\\r]").replace("\\s", "[ \\t\\n\\r]")
    return regex.replace("\0ANY\0", ANY_CHAR)


def rust_safe_anchored(regex: str) -> str:
    """Anchor a FHIR (whole-value) regex for JSON Schema's `pattern` (a search).

    FHIR regexes are plain alternation/classes/quantifiers, valid in both ECMA-262 and the
    Rust `regex` crate; we refuse anything with lookarounds or backreferences so the Rust
    validator never has to fall back to fancy-regex.
    """
    if re.search(r"\(\?[=!<]|\\[1-9]|\\k<", regex):
        raise ValueError(f"regex uses lookaround/backreference: {regex}")
    re.compile(regex)  # at least well-formed
    regex = xsd_whitespace(regex)
    return "^(?:" + regex + ")$"


def primitive_definition(sd: dict) -> dict:
    """JSON Schema of a primitive type: its JSON type plus the `value` element's regex."""
    name = sd["type"]
    json_type = JSON_TYPE_OF_PRIMITIVE.get(name, "string")
    schema: dict = {"type": json_type}
    if name in INTEGER_BOUNDS:
        schema["minimum"], schema["maximum"] = INTEGER_BOUNDS[name]
    if json_type == "string":
        value = next(
            (e for e in sd["snapshot"]["element"] if e["path"] == name + ".value"), None
        )
        regex = None
        if value is not None:
            for type_ref in value.get("type", []):
                regex = extension_value(type_ref, EXT_REGEX, "valueString") or regex
        if regex:
            schema["pattern"] = rust_safe_anchored(regex)
    return schema


class SchemaBuilder:
    """Builds the `definitions` map from the package's base StructureDefinitions."""

    def __init__(self, package: Package):
        self.package = package
        self.terminology = Terminology(package)
        self.type_defs = sorted(
            (sd for sd in package.of_type("StructureDefinition") if is_base_type_definition(sd)),
            key=lambda sd: sd["type"],
        )
        self.primitives = {sd["type"] for sd in self.type_defs if sd["kind"] == "primitive-type"}
        self.concrete_resources = sorted(
            sd["type"]
            for sd in self.type_defs
            if sd["kind"] == "resource" and not sd.get("abstract", False)
        )
        self.enum_stats = {"enum": 0, "too_big": 0, "not_expandable": 0}
        # value set url -> why a required binding was left as a plain `code` pattern
        self.skipped_value_sets: dict[str, str] = {}

    # -- top level

    def build(self) -> dict:
        definitions: dict[str, dict] = {}
        for sd in self.type_defs:
            if sd["kind"] == "primitive-type":
                definitions[sd["type"]] = primitive_definition(sd)
            else:
                definitions.update(self.structure_definitions(sd))
        definitions["ResourceList"] = {
            "type": "object",
            "required": ["resourceType"],
            "properties": {"resourceType": {"enum": self.concrete_resources}},
        }
        return definitions

    def structure_definitions(self, sd: dict) -> dict[str, dict]:
        """Definitions for one complex type or resource and all its backbone elements."""
        elements = [
            e
            for e in sd["snapshot"]["element"]
            if "sliceName" not in e and ":" not in e.get("id", "")
        ]
        children: dict[str, list[dict]] = defaultdict(list)
        for element in elements[1:]:
            children[element["path"].rsplit(".", 1)[0]].append(element)

        root = sd["type"]
        result = {root: self.object_definition(root, children, is_resource=sd["kind"] == "resource")}
        for element in elements[1:]:
            if children.get(element["path"]) and "contentReference" not in element:
                name = backbone_name(element["path"])
                result[name] = self.object_definition(element["path"], children, False)
        return result

    def object_definition(self, path: str, children: dict, is_resource: bool) -> dict:
        """Closed object schema for the element at `path` from its child elements."""
        properties: dict[str, dict] = {}
        required: list[str] = []
        constraints: list[dict] = []
        if is_resource:
            properties["resourceType"] = {"const": path}
            required.append("resourceType")
        for element in children.get(path, []):
            self.add_element(element, children, properties, required, constraints)
        schema: dict = {"type": "object", "additionalProperties": False, "properties": properties}
        if required:
            schema["required"] = sorted(required)
        if constraints:
            schema["allOf"] = constraints
        return schema

    # -- elements

    def add_element(self, element, children, properties, required, constraints) -> None:
        """Add the JSON properties of one element (and its cardinality rules)."""
        name = element["path"].rsplit(".", 1)[1]
        is_array = element.get("max") not in ("0", "1")
        if element.get("max") == "0":
            return  # prohibited in the base definition: no property at all
        is_required = int(element.get("min", 0)) >= 1

        if name.endswith("[x]"):
            stem = name[:-3]
            options = [
                (stem + capitalise(t["code"]), self.type_schema(element, t, children))
                for t in element["type"]
            ]
        elif "contentReference" in element:
            target = element["contentReference"].split("#", 1)[1]
            options = [(name, (ref(backbone_name(target)), False))]
        else:
            if len(element.get("type", [])) != 1:
                raise ValueError(f"{element['path']}: expected exactly one type")
            options = [(name, self.type_schema(element, element["type"][0], children))]

        presence = []
        for prop, (schema, has_extensions) in options:
            self.add_property(properties, prop, schema, has_extensions, is_array)
            if has_extensions:
                presence.append({"anyOf": [{"required": [prop]}, {"required": ["_" + prop]}]})
            else:
                presence.append({"required": [prop]})

        if len(options) > 1:
            constraints.append(choice_constraint(presence, is_required))
        elif is_required:
            if "anyOf" in presence[0]:
                constraints.append(presence[0])
            else:
                required.append(options[0][0])

    @staticmethod
    def add_property(properties, prop, schema, has_extensions, is_array) -> None:
        """Add `prop` (and `_prop` for primitives) honouring FHIR JSON array rules."""
        if not is_array:
            properties[prop] = schema
            if has_extensions:
                properties["_" + prop] = ref("Element")
            return
        if has_extensions:
            # Primitive arrays: value and extension arrays line up by index and either
            # side may hold null where only the other one has content.
            properties[prop] = array_of({"anyOf": [schema, {"type": "null"}]})
            properties["_" + prop] = array_of({"anyOf": [ref("Element"), {"type": "null"}]})
        else:
            properties[prop] = array_of(schema)

    def type_schema(self, element: dict, type_ref: dict, children: dict) -> tuple[dict, bool]:
        """(schema, has `_x` sibling) for one type of an element."""
        code = type_ref["code"]
        if code.startswith(FHIRPATH_SYSTEM):
            # Element.id, Extension.url, Resource.id: plain JSON values, no extensions.
            fhir_type = extension_value(type_ref, EXT_FHIR_TYPE, "valueUrl") or "string"
            if element.get("base", {}).get("path") == "Resource.id":
                fhir_type = "id"
            return ref(fhir_type), False
        if code in ("BackboneElement", "Element") and children.get(element["path"]):
            return ref(backbone_name(element["path"])), False
        if code == "Resource":
            return ref("ResourceList"), False
        if code in self.primitives:
            schema = ref(code)
            if code == "code":
                schema = self.code_schema(element) or schema
            return schema, code not in PRIMITIVES_WITHOUT_EXTENSIONS
        return ref(code), False

    def code_schema(self, element: dict) -> dict | None:
        """`enum` for a code element with a required binding to a small expandable value set."""
        binding = element.get("binding") or {}
        if binding.get("strength") != "required" or "valueSet" not in binding:
            return None
        codes = self.terminology.expand(binding["valueSet"])
        url = strip_version(binding["valueSet"])
        if codes is None:
            self.enum_stats["not_expandable"] += 1
            self.skipped_value_sets[url] = "not expandable from the package"
            return None
        if not codes or len(codes) > MAX_ENUM_CODES:
            self.enum_stats["too_big"] += 1
            self.skipped_value_sets[url] = f"{len(codes)} codes"
            return None
        code_pattern = re.compile(r"[^\s]+(\s[^\s]+)*")
        valid = sorted(c for c in codes if code_pattern.fullmatch(c))
        self.enum_stats["enum"] += 1
        return {"enum": valid}


def array_of(items: dict) -> dict:
    """FHIR JSON arrays are never empty."""
    return {"type": "array", "minItems": 1, "items": items}


def choice_constraint(presence: list[dict], is_required: bool) -> dict:
    """At most one (exactly one if required) of a choice element's typed properties.

    `oneOf` over "this type is present" branches, plus for optional choices a branch
    "none is present": linear in the number of types, unlike pairwise exclusions.
    """
    if is_required:
        return {"oneOf": presence}
    names: list[dict] = []
    for branch in presence:
        names.extend(branch.get("anyOf", [branch]))
    return {"oneOf": presence + [{"not": {"anyOf": names}}]}


# --------------------------------------------------------------------------- other outputs


def search_parameters(package: Package) -> list[dict]:
    """Trimmed SearchParameters, sorted by code then url."""
    result = []
    for sp in package.of_type("SearchParameter"):
        # The package also holds example SearchParameters (`example`, `example-extension`,
        # `example-reference`): they illustrate the resource, they define nothing.
        if sp.get("id", "").startswith("example"):
            continue
        entry = {
            "url": sp["url"],
            "code": sp["code"],
            "base": list(sp.get("base", [])),
            "type": sp["type"],
        }
        if sp.get("expression"):
            entry["expression"] = sp["expression"]
        for key in ("target", "modifier", "comparator"):
            if sp.get(key):
                entry[key] = list(sp[key])
        for key in ("multipleOr", "multipleAnd"):
            if key in sp:
                entry[key] = sp[key]
        if sp.get("component"):
            entry["component"] = [
                {"definition": c["definition"], "expression": component_expression(c["expression"])}
                for c in sp["component"]
            ]
        result.append(entry)
    result.sort(key=lambda e: (e["code"], e["url"]))
    return result


def component_expression(expression: str) -> str:
    """A composite component's expression, with the one R4 erratum the evaluator would trip on.

    `Observation-code-value-date` reads `value.as(DateTime)`: `DateTime` is the FHIRPath System
    type, which a FHIR `dateTime` element is not (the official FHIRPath tests say so), so the
    component would never have a value. R4B/R5 fixed it to the FHIR type; so do we.
    """
    return expression.replace("value.as(DateTime)", "value.as(dateTime)")


def summary_elements(builder: "SchemaBuilder") -> dict[str, dict[str, list[str]]]:
    """Per resource type, the element paths (below the type, choice `[x]` dropped) that
    `_summary=true` keeps (`summary`: isSummary or mandatory), the mandatory ones
    (`mandatory`, for `_summary=text`), and the backbone elements the filter descends into
    (`nested`)."""
    result = {}
    for sd in builder.type_defs:
        if sd["kind"] != "resource" or sd.get("abstract", False):
            continue
        root = sd["type"]
        summary, mandatory, nested = set(), set(), set()
        for element in sd["snapshot"]["element"][1:]:
            if "sliceName" in element or ":" in element.get("id", ""):
                continue
            path = element["path"][len(root) + 1 :].replace("[x]", "")
            if "." in path:
                nested.add(path.rsplit(".", 1)[0])
            if element.get("min", 0) > 0:
                mandatory.add(path)
                summary.add(path)
            if element.get("isSummary"):
                summary.add(path)
        result[root] = {
            "summary": sorted(summary),
            "mandatory": sorted(mandatory),
            "nested": sorted(nested),
        }
    return result


def patient_compartment(package: Package) -> dict[str, list[str]]:
    """Resource type -> search params linking it to the Patient compartment."""
    for cd in package.of_type("CompartmentDefinition"):
        if cd.get("url") == "http://hl7.org/fhir/CompartmentDefinition/patient":
            return {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
    raise SystemExit("CompartmentDefinition patient not found in package")


def element_order(builder: "SchemaBuilder") -> dict:
    """The elements of every complex type, resource and backbone element in definition order.

    FHIR XML needs what the JSON Schema cannot say: the order of the elements, which elements
    are XML attributes (`representation: xmlAttr`: Element.id, Extension.url) and, for a
    choice, its types in order. Each element is `[name, types, repeats, is_attribute]`: `name`
    as in the definition (`value[x]` for a choice), `types` the type codes (a backbone
    element's definition name as for the schema, `Resource` for a nested resource, the FHIR
    type of a FHIRPath System type), `repeats` when max is not 0 or 1. Prohibited elements
    (max 0) are left out.
    """
    types: dict[str, list] = {}
    for sd in builder.type_defs:
        if sd["kind"] == "primitive-type":
            continue
        elements = [
            e
            for e in sd["snapshot"]["element"]
            if "sliceName" not in e and ":" not in e.get("id", "")
        ]
        children: dict[str, list[dict]] = defaultdict(list)
        for element in elements[1:]:
            children[element["path"].rsplit(".", 1)[0]].append(element)
        owners = [sd["type"]] + [
            e["path"]
            for e in elements[1:]
            if children.get(e["path"]) and "contentReference" not in e
        ]
        for owner in owners:
            rows = []
            for element in children.get(owner, []):
                if element.get("max") == "0":
                    continue
                name = element["path"].rsplit(".", 1)[1]
                if "contentReference" in element:
                    codes = [backbone_name(element["contentReference"].split("#", 1)[1])]
                else:
                    codes = []
                    for type_ref in element["type"]:
                        code = type_ref["code"]
                        if code.startswith(FHIRPATH_SYSTEM):
                            code = extension_value(type_ref, EXT_FHIR_TYPE, "valueUrl") or "string"
                            if element.get("base", {}).get("path") == "Resource.id":
                                code = "id"
                        elif code in ("BackboneElement", "Element") and children.get(element["path"]):
                            code = backbone_name(element["path"])
                        codes.append(code)
                repeats = element.get("max") not in ("0", "1")
                attribute = "xmlAttr" in element.get("representation", [])
                rows.append([name, codes, repeats, attribute])
            types[backbone_name(owner)] = rows
    primitives = {
        sd["type"]: JSON_TYPE_OF_PRIMITIVE.get(sd["type"], "string")
        for sd in builder.type_defs
        if sd["kind"] == "primitive-type"
    }
    return {
        "primitives": primitives,
        "resources": builder.concrete_resources,
        "types": types,
    }


def main(argv: list[str]) -> int:
    started = time.monotonic()
    package = open_package(argv)
    if package is None:
        return 2
    builder = SchemaBuilder(package)
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "x-generated-from": f"{package.name}@{package.version} by scripts/generate_definitions.py",
        "definitions": builder.build(),
    }
    outputs = {
        SCHEMA_PATH: schema,
        RESOURCE_TYPES_PATH: builder.concrete_resources,
        SEARCH_PARAMETERS_PATH: search_parameters(package),
        COMPARTMENT_PATH: patient_compartment(package),
        SUMMARY_PATH: summary_elements(builder),
        ELEMENTS_PATH: element_order(builder),
    }
    for path, data in outputs.items():
        size = write_json(path, data)
        print(f"wrote {path} ({size} bytes)")
    print(
        f"{len(schema['definitions'])} definitions, {len(builder.concrete_resources)} resource types; "
        f"required code bindings: {builder.enum_stats['enum']} as enum, "
        f"{builder.enum_stats['too_big']} too big, {builder.enum_stats['not_expandable']} not expandable; "
        f"{time.monotonic() - started:.1f}s"
    )
    for url, reason in sorted(builder.skipped_value_sets.items()):
        print(f"  required binding kept as plain code ({reason}): {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
