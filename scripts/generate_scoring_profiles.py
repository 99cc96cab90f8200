#!/usr/bin/env python3
"""Writes Signaal's scoring conformance resources into profiles/: the Signaal CodeSystem, the
ValueSets the profiles bind to, the extension definitions and the profiles of the Flags and
RiskAssessments the scorer writes (enforced on write by src/fhir/profile.rs).

The tables here are the one place these codes are defined; src/scoring reads the files.
Usage: scripts/generate_scoring_profiles.py (from the repository root)
"""
import json

BASE = "https://signaal.dev/fhir"
CS = f"{BASE}/CodeSystem/signaal"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"

MODELS = [
    ("charlson", "Charlson comorbidity index (Charlson 1987; ICD-10 per Quan 2005)"),
    ("lace", "LACE index (van Walraven, CMAJ 2010)"),
    ("hospital", "HOSPITAL score (Donze, JAMA Intern Med 2013)"),
    ("utilisation", "Utilisation score and population rank (Signaal)"),
    ("alerts", "Home-measurement alerts (Signaal)"),
    ("engagement", "Care plan engagement (Signaal)"),
    ("palliative", "Palliative phase and advance care planning (Signaal)"),
]
CATEGORIES = [
    ("readmission-risk", "Risk of readmission after discharge"),
    ("high-utiliser", "High user of unplanned hospital care"),
    ("home-measurement", "Alert from a home measurement"),
    ("disengagement", "Disengagement from the care plan"),
    ("palliative-care", "Palliative care: the last phase of life"),
]
# reason, display, category, priority (higher = more urgent; the worklist sorts by it)
REASONS = [
    ("glucose-very-low", "Glucose < 3.0 mmol/L", "home-measurement", 95),
    ("bp-very-high", "Blood pressure reading >= 180/110 mmHg", "home-measurement", 90),
    ("spo2-low", "SpO2 <= 92%", "home-measurement", 90),
    ("glucose-very-high", "Glucose > 13.9 mmol/L", "home-measurement", 85),
    ("weight-gain", "Heart failure: weight gain > 2 kg within 3 days", "home-measurement", 80),
    ("lace-high", "High LACE index (>= 10) at the last discharge", "readmission-risk", 70),
    ("hospital-high", "High HOSPITAL score (>= 7) at the last discharge", "readmission-risk", 70),
    ("glucose-low", "Glucose < 3.9 mmol/L", "home-measurement", 65),
    ("high-utiliser", "In the top of the population by unplanned care use", "high-utiliser", 60),
    ("home-bp-high", "Home blood pressure mean >= 135/85 mmHg over 7 days", "home-measurement", 50),
    ("glucose-high", "Glucose > 10.0 mmol/L", "home-measurement", 40),
    ("palliative-phase", "In the palliative phase", "palliative-care", 55),
    ("no-acp", "Palliative phase without a documented advance care plan", "palliative-care", 45),
    ("disengaged", "Disengaged from the care plan", "disengagement", 30),
]
# CareTeam.participant.role codes (the value set scoring-coach-role reads them)
CARE_TEAM_ROLES = [
    ("coach", "Coach (follows the patient across hospital, GP and home)"),
]
CHARLSON = [
    ("myocardial-infarction", "Myocardial infarction"),
    ("congestive-heart-failure", "Congestive heart failure"),
    ("peripheral-vascular-disease", "Peripheral vascular disease"),
    ("cerebrovascular-disease", "Cerebrovascular disease"),
    ("dementia", "Dementia"),
    ("chronic-pulmonary-disease", "Chronic pulmonary disease"),
    ("rheumatic-disease", "Rheumatic (connective tissue) disease"),
    ("peptic-ulcer-disease", "Peptic ulcer disease"),
    ("mild-liver-disease", "Mild liver disease"),
    ("diabetes-without-complication", "Diabetes without chronic complication"),
    ("diabetes-with-complication", "Diabetes with chronic complication"),
    ("hemiplegia-or-paraplegia", "Hemiplegia or paraplegia"),
    ("renal-disease", "Renal disease"),
    ("malignancy", "Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin"),
    ("moderate-or-severe-liver-disease", "Moderate or severe liver disease"),
    ("metastatic-solid-tumour", "Metastatic solid tumour"),
    ("aids-hiv", "AIDS/HIV"),
]


def concept(code, display, children=None, props=None):
    c = {"code": code, "display": display}
    if props:
        c["property"] = props
    if children:
        c["concept"] = children
    return c


def write(name, resource):
    with open(f"profiles/{name}.json", "w") as f:
        json.dump(resource, f, indent=1, ensure_ascii=False)
        f.write("\n")


def canonical(rtype, id_, name, title, description, **rest):
    r = {"resourceType": rtype, "id": id_, "url": f"{BASE}/{rtype}/{id_}", "version": "1.0.0",
         "name": name, "title": title, "status": "active", "experimental": False,
         "publisher": "Signaal", "description": description}
    r.update(rest)
    return r


write("codesystem-signaal", canonical(
    "CodeSystem", "signaal", "Signaal", "Signaal codes",
    "Codes of Signaal's risk scoring: the models (RiskAssessment.method), the Flag categories and "
    "reasons (Flag.category, Flag.code) with the priority the coach's worklist sorts by, and the "
    "Charlson comorbidity categories (target of the SNOMED CT ConceptMap), and the CareTeam "
    "participant role of a coach.",
    caseSensitive=True, hierarchyMeaning="grouped-by", content="complete",
    property=[{"code": "priority", "uri": f"{BASE}/CodeSystem/signaal#priority", "type": "integer",
               "description": "Flag reasons: how urgent (higher first on the worklist)"},
              {"code": "category", "uri": f"{BASE}/CodeSystem/signaal#category", "type": "code",
               "description": "Flag reasons: the Flag category"}],
    concept=[
        concept("model", "Risk models", [concept(c, d) for c, d in MODELS]),
        concept("flag-category", "Flag categories", [concept(c, d) for c, d in CATEGORIES]),
        concept("flag-reason", "Flag reasons", [
            concept(c, d, props=[{"code": "priority", "valueInteger": p},
                                 {"code": "category", "valueCode": cat}])
            for c, d, cat, p in REASONS]),
        concept("charlson-category", "Charlson comorbidity categories",
                [concept(c, d) for c, d in CHARLSON]),
        concept("care-team-role", "CareTeam participant roles",
                [concept(c, d) for c, d in CARE_TEAM_ROLES]),
        concept("measure-stratifier", "Stratifiers of Signaal's Measures",
                [concept("coach-last-90-days", "Had a coach in the last 90 days of life")]),
    ]))

VALUE_SETS = {
    "risk-model": ("RiskModel", "Signaal risk models", [(CS, [c for c, _ in MODELS])]),
    "flag-category": ("FlagCategory", "Signaal Flag categories", [(CS, [c for c, _ in CATEGORIES])]),
    "flag-reason": ("FlagReason", "Signaal Flag reasons", [(CS, [r[0] for r in REASONS])]),
    "charlson-category": ("CharlsonCategory", "Charlson comorbidity categories", [(CS, [c for c, _ in CHARLSON])]),
    "qualitative-risk": ("QualitativeRisk", "Qualitative risk of Signaal's assessments",
                         [(RISK_PROBABILITY, ["low", "moderate", "high"])]),
    "flag-status": ("FlagStatus", "Flag status", [("http://hl7.org/fhir/flag-status", ["active", "inactive"])]),
}
for id_, (name, title, includes) in VALUE_SETS.items():
    write(f"valueset-{id_}", canonical(
        "ValueSet", id_, name, title, f"{title}: the codes a Signaal profile binds to (required).",
        compose={"include": [{"system": s, "concept": [{"code": c} for c in codes]} for s, codes in includes]}))


def extension(id_, title, description, contexts, value_type=None, children=None):
    elements = [{"id": "Extension", "path": "Extension", "short": title, "definition": description}]
    if children:
        for child, ctype, cmax in children:
            elements += [
                {"id": f"Extension.extension:{child}", "path": "Extension.extension", "sliceName": child,
                 "min": 0 if child == "basis" else 1, "max": cmax},
                {"id": f"Extension.extension:{child}.url", "path": "Extension.extension.url",
                 "fixedUri": child},
                {"id": f"Extension.extension:{child}.value[x]", "path": "Extension.extension.value[x]",
                 "type": [{"code": ctype}]},
            ]
        elements += [{"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"}]
    elements += [{"id": "Extension.url", "path": "Extension.url", "fixedUri": f"{BASE}/StructureDefinition/{id_}"}]
    if value_type:
        elements += [{"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
                      "type": [{"code": value_type}]}]
    write(f"StructureDefinition-{id_}", canonical(
        "StructureDefinition", id_, "".join(p.title() for p in id_.split("-")), title, description,
        fhirVersion="4.0.1", kind="complex-type", abstract=False,
        context=[{"type": "element", "expression": c} for c in contexts],
        type="Extension", baseDefinition="http://hl7.org/fhir/StructureDefinition/Extension",
        derivation="constraint", differential={"element": elements}))


extension("risk-score", "Raw score", "The model's raw score (points).", ["RiskAssessment"], "decimal")
extension("risk-score-item", "Breakdown item",
          "One line of the score's breakdown: the points, why in words, and the resources behind it.",
          ["RiskAssessment"], children=[("points", "decimal", "1"), ("why", "string", "1"),
                                        ("basis", "Reference", "*")])
extension("flag-priority", "Priority",
          "How urgent the flag is (higher first); from the reason's priority in the Signaal CodeSystem. "
          "Searchable and sortable as Flag `priority` (conformance/signaal-search-parameters.json).",
          ["Flag"], "integer")
extension("flag-risk-assessment", "Risk assessment",
          "The RiskAssessment that raised the flag.", ["Flag"], "Reference")


def slice_ext(rtype, name, id_, min_, max_):
    return {"id": f"{rtype}.extension:{name}", "path": f"{rtype}.extension", "sliceName": name,
            "min": min_, "max": max_,
            "type": [{"code": "Extension", "profile": [f"{BASE}/StructureDefinition/{id_}"]}]}


def binding(vs):
    return {"strength": "required", "valueSet": f"{BASE}/ValueSet/{vs}"}


def profile(id_, rtype, title, description, elements):
    write(f"StructureDefinition-{id_}", canonical(
        "StructureDefinition", id_, "".join(p.title() for p in id_.split("-")), title, description,
        fhirVersion="4.0.1", kind="resource", abstract=False, type=rtype,
        baseDefinition=f"http://hl7.org/fhir/StructureDefinition/{rtype}", derivation="constraint",
        differential={"element": [{"id": rtype, "path": rtype}] + elements}))


profile("signaal-risk-assessment", "RiskAssessment", "Signaal RiskAssessment",
        "A score of one of Signaal's models for one patient on one occasion, with its breakdown.", [
            {"id": "RiskAssessment.extension", "path": "RiskAssessment.extension",
             "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
            slice_ext("RiskAssessment", "riskScore", "risk-score", 1, "1"),
            slice_ext("RiskAssessment", "item", "risk-score-item", 0, "*"),
            {"id": "RiskAssessment.status", "path": "RiskAssessment.status", "min": 1},
            {"id": "RiskAssessment.method", "path": "RiskAssessment.method", "min": 1,
             "binding": binding("risk-model")},
            {"id": "RiskAssessment.subject", "path": "RiskAssessment.subject", "min": 1,
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]},
            {"id": "RiskAssessment.occurrence[x]", "path": "RiskAssessment.occurrence[x]", "min": 1,
             "type": [{"code": "dateTime"}]},
            {"id": "RiskAssessment.prediction", "path": "RiskAssessment.prediction", "min": 1},
            {"id": "RiskAssessment.prediction.qualitativeRisk", "path": "RiskAssessment.prediction.qualitativeRisk",
             "min": 1, "binding": binding("qualitative-risk")},
        ])
profile("signaal-flag", "Flag", "Signaal Flag",
        "A reason for a coach to look at a patient, active while the reason holds.", [
            {"id": "Flag.extension", "path": "Flag.extension",
             "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
            slice_ext("Flag", "priority", "flag-priority", 1, "1"),
            slice_ext("Flag", "riskAssessment", "flag-risk-assessment", 1, "1"),
            {"id": "Flag.status", "path": "Flag.status", "binding": binding("flag-status")},
            {"id": "Flag.category", "path": "Flag.category", "min": 1, "binding": binding("flag-category")},
            {"id": "Flag.code", "path": "Flag.code", "binding": binding("flag-reason")},
            {"id": "Flag.subject", "path": "Flag.subject",
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]},
            {"id": "Flag.period", "path": "Flag.period", "min": 1},
            {"id": "Flag.period.start", "path": "Flag.period.start", "min": 1},
        ])
