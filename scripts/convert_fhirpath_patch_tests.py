#!/usr/bin/env python3
"""Converts HL7's FHIRPath Patch test cases (fhir-test-cases, r4/patch/fhir-patch-tests.xml,
Apache-2.0) from FHIR XML to FHIR JSON fixtures for tests/fhirpath_patch.rs.

Which elements repeat (JSON arrays) and which primitives are booleans or numbers comes from
profiles/fhir-r4.schema.json.

usage: scripts/convert_fhirpath_patch_tests.py [path/to/fhir-patch-tests.xml]
writes tests/fixtures/fhirpath-patch/cases.json
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = "{http://hl7.org/fhir}"
XHTML = "{http://www.w3.org/1999/xhtml}"
ET.register_namespace("", "http://www.w3.org/1999/xhtml")
DEFS = json.load(open(os.path.join(ROOT, "profiles/fhir-r4.schema.json")))["definitions"]


def resolve(d):
    while d is not None and "$ref" in d:
        d = DEFS.get(d["$ref"].rsplit("/", 1)[1])
    return d


def local(tag):
    return tag.split("}", 1)[1] if "}" in tag else tag


def primitive(text, d):
    kind = (d or {}).get("type")
    if kind == "boolean":
        return text == "true"
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text) if any(c in text for c in ".eE") else int(text)
    return text


def element(elem, d):
    """An XML element of (resolved) definition d as a JSON object."""
    out = {}
    props = (d or {}).get("properties", {})
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments
        name = local(child.tag)
        prop = props.get(name)
        if prop is None:
            raise ValueError(f"unknown element {name} in {local(elem.tag)}")
        repeats = prop.get("type") == "array"
        cd = resolve(prop.get("items", prop))
        if child.tag == XHTML + "div":
            child.tail = None
            value, ext = ET.tostring(child, encoding="unicode").strip(), None
        elif cd is not None and cd.get("required") == ["resourceType"] and "resourceType" in cd.get("properties", {}):
            inner = [c for c in child if isinstance(c.tag, str)][0]
            value, ext = resource(inner), None
        elif "value" in child.attrib:
            value = primitive(child.attrib["value"], cd)
            extras = element(child, DEFS["Element"]) if len(child) or "id" in child.attrib else None
            if extras is not None and "id" in child.attrib:
                extras["id"] = child.attrib["id"]
            ext = extras or None
        else:
            value, ext = element(child, cd), None
            if "id" in child.attrib:
                value["id"] = child.attrib["id"]
        if repeats:
            out.setdefault(name, []).append(value)
            if ext is not None or f"_{name}" in out:
                sib = out.setdefault(f"_{name}", [])
                sib.extend([None] * (len(out[name]) - 1 - len(sib)))
                sib.append(ext)
        else:
            out[name] = value
            if ext is not None:
                out[f"_{name}"] = ext
    return out


def resource(elem):
    rtype = local(elem.tag)
    return {"resourceType": rtype, **element(elem, DEFS[rtype])}


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "..", "shared", "fhir-test-cases", "r4", "patch", "fhir-patch-tests.xml")
    cases = []
    for case in ET.parse(src).getroot().iter("case"):
        out = {"name": case.get("name"), "mode": case.get("mode")}
        first = lambda tag: [c for c in case.find(tag) if isinstance(c.tag, str)][0]
        out["input"] = resource(first("input"))
        out["patch"] = resource(first("diff"))
        if case.find("output") is not None:
            out["output"] = resource(first("output"))
        if case.find("error") is not None:
            out["error"] = case.find("error").get("msg")
        cases.append(out)
    dest = os.path.join(ROOT, "tests", "fixtures", "fhirpath-patch", "cases.json")
    with open(dest, "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {dest}")


if __name__ == "__main__":
    main()
