#!/usr/bin/env python3
"""Writes Signaal's palliative-care and person-centred-goal conformance resources:

- profiles/: the four life domains of a goal (CodeSystem and ValueSet goal-domain, English
  displays and Dutch designations, after the ICF components), the Goal profile
  signaal-domain-goal, the CarePlan profile signaal-action-plan, and the extension
  worklist-goal-domain-missing that $worklist puts on a patient's entry;
- conformance/: the Questionnaire of the "surprise question", the Measures of the end-of-life
  care indicators (src/measure/) and the OperationDefinition of Measure/$evaluate-measure as
  Signaal implements it.

The tables here are the one place these are defined; src/measure and src/scoring read the
files. Usage: scripts/generate_palliative.py (from the repository root)
"""
import json

BASE = "https://signaal.dev/fhir"
VERSION = "1.0.0"

EARLE_2003 = ("Earle CC, Park ER, Lai B, Weeks JC, Ayanian JZ, Block S. Identifying potential "
              "indicators of the quality of end-of-life cancer care from administrative data. "
              "J Clin Oncol 2003;21(6):1133-8")
EARLE_2005 = ("Earle CC, Neville BA, Landrum MB, Souza JM, Weeks JC, Block SD, Grunfeld E, "
              "Ayanian JZ. Evaluating claims-based indicators of the intensity of end-of-life "
              "cancer care. Int J Qual Health Care 2005;17(6):505-9")
BODDAERT_2022 = ("Boddaert MS, Pereira C, Adema J, Vissers KCP, van der Linden YM, Raijmakers "
                 "NJH, Fransen HP. Inappropriate end-of-life cancer care in a generalist and "
                 "specialist palliative care model: a nationwide retrospective population-based "
                 "observational study. BMJ Support Palliat Care 2022;12(e1):e137-45")
BODDAERT_2024 = ("Boddaert MS, Fransen HP, de Nijs EJM, van Gerven D, Spierings LEA, "
                 "Raijmakers NJH, van der Linden YM. Association between inappropriate "
                 "end-of-life cancer care and specialist palliative care: a retrospective "
                 "observational study in two acute care hospitals. Cancers 2024;16(4):721")


def write(path, resource):
    with open(path, "w") as f:
        json.dump(resource, f, indent=1, ensure_ascii=False)
        f.write("\n")


def canonical(rtype, id_, name, title, description, **rest):
    r = {"resourceType": rtype, "id": id_, "url": f"{BASE}/{rtype}/{id_}", "version": VERSION,
         "name": name, "title": title, "status": "active", "experimental": False,
         "publisher": "Signaal", "description": description}
    r.update(rest)
    return r


def vs(name):
    return f"{BASE}/ValueSet/scoring-{name}"


# ---- the four life domains -------------------------------------------------------------------
# code, English display, Dutch designation, ICF component, definition
DOMAINS = [
    ("health", "Health", "Gezondheid", "body functions and structures (b, s)",
     "The patient's health: symptoms, illness and treatment, body functions and structures."),
    ("daily-activities", "Daily activities", "Dagelijkse activiteiten",
     "activities and participation (d)",
     "What the patient does and wants to keep doing in daily life: self-care, household, "
     "work, hobbies, taking part in society."),
    ("coping", "Own way of coping", "Eigen manier van omgaan",
     "personal factors",
     "The patient's own way of dealing with illness and the end of life: wishes, values, "
     "beliefs, emotions, meaning."),
    ("environment", "Environment", "Omgeving", "environmental factors (e)",
     "The social and physical environment: family and informal carers, home, aids, services."),
]
DOMAIN_CS = f"{BASE}/CodeSystem/goal-domain"

write("profiles/codesystem-goal-domain.json", canonical(
    "CodeSystem", "goal-domain", "GoalDomain", "Life domains of a person-centred goal",
    "The four life domains in which a coach agrees goals with a patient (the COACH approach), "
    "after the components of the WHO International Classification of Functioning, Disability "
    "and Health (ICF, 2001): health (body functions and structures), daily activities "
    "(activities and participation), the patient's own way of coping (personal factors) and "
    "the social and physical environment (environmental factors). Displays in English, "
    "designations in Dutch.",
    caseSensitive=True, content="complete", language="en",
    concept=[{"code": c, "display": d, "definition": f"{definition} ICF: {icf}.",
              "designation": [{"language": "nl", "value": nl},
                              {"language": "en", "value": d}]}
             for c, d, nl, icf, definition in DOMAINS]))

write("profiles/valueset-goal-domain.json", canonical(
    "ValueSet", "goal-domain", "GoalDomain", "Life domains of a person-centred goal",
    "The four life domains (CodeSystem goal-domain): the codes the Goal profile "
    "signaal-domain-goal binds Goal.category to (required).",
    compose={"include": [{"system": DOMAIN_CS, "concept": [
        {"code": c, "display": d, "designation": [{"language": "nl", "value": nl}]}
        for c, d, nl, _, _ in DOMAINS]}]}))


def profile(id_, rtype, title, description, elements):
    write(f"profiles/StructureDefinition-{id_}.json", canonical(
        "StructureDefinition", id_, "".join(p.title() for p in id_.split("-")), title,
        description, fhirVersion="4.0.1", kind="resource", abstract=False, type=rtype,
        baseDefinition=f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        derivation="constraint",
        differential={"element": [{"id": rtype, "path": rtype}] + elements}))


def patient_ref(path):
    return {"id": path, "path": path, "min": 1,
            "type": [{"code": "Reference",
                      "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]}


profile("signaal-domain-goal", "Goal", "Goal in a life domain",
        "A goal agreed with the patient in one of the four life domains (health, daily "
        "activities, own way of coping, environment): the domain in Goal.category (required "
        "binding to ValueSet goal-domain), what the patient wants in Goal.description, "
        "Goal.lifecycleStatus, the patient in Goal.subject; targets optional. Progress in "
        "Goal.achievementStatus, read by the engagement model per domain.", [
            {"id": "Goal.lifecycleStatus", "path": "Goal.lifecycleStatus", "min": 1},
            {"id": "Goal.category", "path": "Goal.category", "min": 1,
             "binding": {"strength": "required", "valueSet": f"{BASE}/ValueSet/goal-domain"}},
            {"id": "Goal.description", "path": "Goal.description", "min": 1},
            patient_ref("Goal.subject"),
        ])
profile("signaal-action-plan", "CarePlan", "Action plan for life-domain goals",
        "The action plan of one or more goals in a life domain: CarePlan.goal the goals "
        "(signaal-domain-goal), CarePlan.activity.detail the actions, each with its "
        "description and, where agreed, who does it (detail.performer) and when "
        "(detail.scheduled[x]); the patient in CarePlan.subject. Performer and timing are "
        "must-support, not required: an action is often agreed before who helps or when is "
        "settled.", [
            patient_ref("CarePlan.subject"),
            {"id": "CarePlan.goal", "path": "CarePlan.goal", "min": 1,
             "type": [{"code": "Reference",
                       "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Goal"]}]},
            {"id": "CarePlan.activity", "path": "CarePlan.activity", "min": 1},
            {"id": "CarePlan.activity.detail", "path": "CarePlan.activity.detail", "min": 1},
            {"id": "CarePlan.activity.detail.description",
             "path": "CarePlan.activity.detail.description", "min": 1},
            {"id": "CarePlan.activity.detail.scheduled[x]",
             "path": "CarePlan.activity.detail.scheduled[x]", "mustSupport": True},
            {"id": "CarePlan.activity.detail.performer",
             "path": "CarePlan.activity.detail.performer", "mustSupport": True},
        ])

write("profiles/StructureDefinition-worklist-goal-domain-missing.json", canonical(
    "StructureDefinition", "worklist-goal-domain-missing", "WorklistGoalDomainMissing",
    "Life domain without an active goal",
    "On a patient's entry of Practitioner/$worklist (Bundle.entry.search): a life domain "
    "(CodeSystem goal-domain) in which the patient has no active Goal (lifecycleStatus "
    "active or accepted), one extension per domain.",
    fhirVersion="4.0.1", kind="complex-type", abstract=False,
    context=[{"type": "element", "expression": "Bundle.entry.search"}],
    type="Extension", baseDefinition="http://hl7.org/fhir/StructureDefinition/Extension",
    derivation="constraint", differential={"element": [
        {"id": "Extension", "path": "Extension", "short": "Life domain without an active goal"},
        {"id": "Extension.url", "path": "Extension.url",
         "fixedUri": f"{BASE}/StructureDefinition/worklist-goal-domain-missing"},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
         "type": [{"code": "Coding"}]},
    ]}))

# ---- the surprise question -------------------------------------------------------------------
write("conformance/questionnaire-surprise-question.json", canonical(
    "Questionnaire", "surprise-question", "SurpriseQuestion", "The surprise question",
    "The surprise question a GP, specialist or nurse answers about a patient: 'Would you be "
    "surprised if this patient died in the next 12 months?' (Moss AH et al., J Palliat Med "
    "2010;13(7):837-40; used in the Netherlands to identify patients for palliative care, "
    "Kwaliteitskader palliatieve zorg Nederland, 2017). A QuestionnaireResponse to this "
    "Questionnaire (status completed or amended) answering item 'surprised' with false (no, "
    "not surprised) puts the patient in the palliative phase (Flag palliative-phase); the "
    "newest such response decides.",
    subjectType=["Patient"],
    item=[{"linkId": "surprised", "type": "boolean", "required": True,
           "text": "Would you be surprised if this patient died in the next 12 months?",
           "_text": {"extension": [{
               "url": "http://hl7.org/fhir/StructureDefinition/translation",
               "extension": [{"url": "lang", "valueCode": "nl"},
                             {"url": "content", "valueString":
                              "Zou u verbaasd zijn als deze patiënt binnen 12 maanden "
                              "zou overlijden?"}]}]}}]))

# ---- the end-of-life care indicators ---------------------------------------------------------
COMMON = (
    "**Population.** Initial population and denominator: every Patient whose date of death, "
    "Patient.deceasedDateTime, falls within the measurement period (periodStart..periodEnd of "
    "$evaluate-measure, whole days inclusive). A patient recorded as deceased with "
    "deceasedBoolean only, or with a deceasedDateTime less precise than a day, has no date of "
    "death to count windows back from and is left out of every population. "
    "**Windows.** Days before death are counted in calendar days between the date of the "
    "event and the date of death, each as written in the record (its own time zone): the last "
    "30 days of life are the events on the date of death and the 30 days before it (0 to 30 "
    "days before death), the last 14 days 0 to 14 days before it. An event counts by its "
    "start (Encounter.period.start, Procedure.performed[x], MedicationAdministration."
    "effective[x], MedicationDispense.whenHandedOver); events after the date of death do not "
    "count. Encounters that are planned, cancelled or entered in error, Procedures in "
    "preparation, not done or entered in error, MedicationAdministrations not done or "
    "entered in error, and MedicationDispenses not completed do not count. Codes are decided by the ValueSets named "
    "below (profiles/valueset-scoring-*.json; a stored newer version of one replaces it). "
    "**Stratifier.** coach-last-90-days: Y when a CareTeam of the patient (status not "
    "proposed or entered in error) has a participant whose role is in ValueSet "
    f"{vs('coach-role')} and the team's and participant's periods (when given) overlap the 90 "
    "days before death, else N; so that a programme can compare its patients with and without "
    "a coach. "
    f"**Sources.** {EARLE_2003}; {EARLE_2005}; adopted in the Netherlands by {BODDAERT_2022} "
    f"and {BODDAERT_2024}. Earle defined them for patients who died of cancer; Signaal "
    "evaluates every decedent, and a programme restricts the population by whom it follows.")

# id, title, the numerator's definition
INDICATORS = [
    ("eol-ed-visits", "More than one emergency department visit in the last 30 days of life",
     "Numerator: decedents with two or more emergency department visits starting in the last "
     f"30 days of life: Encounters whose class is in {vs('eol-emergency-encounter')} (v3 "
     "ActCode EMER). Earle 2005 benchmark: < 4%."),
    ("eol-hospital-admissions", "More than one hospital admission in the last 30 days of life",
     "Numerator: decedents with two or more hospital admissions starting in the last 30 days "
     f"of life: Encounters whose class is in {vs('eol-inpatient-encounter')} (v3 ActCode IMP, "
     "ACUTE). Earle 2005 benchmark: < 4%."),
    ("eol-icu-admission", "Admission to intensive care in the last 30 days of life",
     "Numerator: decedents with at least one intensive care stay starting in the last 30 days "
     "of life: an Encounter whose serviceType is in "
     f"{vs('eol-intensive-care')} (start: the Encounter's), or an Encounter.location whose "
     "Location's type is in that ValueSet (v3 RoleCode ICU, PEDICU, PEDNICU; start: the "
     "location's period.start, else the Encounter's). Earle 2005 benchmark: < 4%."),
    ("eol-chemotherapy", "Chemotherapy in the last 14 days of life",
     "Numerator: decedents given chemotherapy in the last 14 days of life: a Procedure whose "
     f"code is in {vs('eol-chemotherapy')} (SNOMED CT 367336001 |Chemotherapy| and below), or a "
     "MedicationAdministration or MedicationDispense whose medicationCodeableConcept (or the "
     "code of the contained Medication it references) is in that ValueSet (WHO ATC L01, "
     "antineoplastic agents). Earle 2005 benchmark: < 10%."),
    ("eol-death-in-hospital", "Death in hospital",
     "Numerator: decedents who died in hospital: a hospital Encounter (class in "
     f"{vs('eol-inpatient-encounter')}) that started on or before the date of death and ended "
     "on or after it (or has not ended), or whose hospitalization.dischargeDisposition is "
     "'exp' (expired, HL7 discharge-disposition). Earle 2005 benchmark: < 17% (death in an "
     "acute care institution)."),
    ("eol-no-or-late-palliative-care", "No or late palliative or hospice care",
     "Numerator: decedents with no palliative or hospice care recorded before death, or whose "
     "first was less than 3 days before death (0, 1 or 2 days). Palliative or hospice care: "
     f"an Encounter whose type or serviceType is in {vs('palliative-care')}, or whose "
     "Location's type is in it, a Procedure whose code is, a CarePlan whose category is, or a "
     "Condition whose code is (start: Encounter.period.start, Procedure.performed[x], "
     "CarePlan.period.start or created, Condition.onset[x] or recordedDate). Earle 2005: at "
     "least 55% should receive hospice, and < 8% of those within 3 days of death."),
]
INDICATOR_IDS = [i[0] for i in INDICATORS]
INDICATORS.append(
    ("eol-any", "Any potentially inappropriate end-of-life care",
     "Numerator: decedents who meet the numerator of at least one of the six indicators "
     f"({', '.join(INDICATOR_IDS)}), the composite of {BODDAERT_2022} (34% of Dutch cancer "
     "decedents in 2017; 16% with palliative care started more than 30 days before death vs "
     "45% without)."))

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
for id_, title, numerator in INDICATORS:
    write(f"conformance/measure-{id_}.json", canonical(
        "Measure", id_, "".join(p.title() for p in id_.split("-")), title,
        f"{title}. {numerator} {COMMON}",
        date="2026-12-06",
        topic=[{"text": "end-of-life care"}],
        relatedArtifact=[{"type": "citation", "citation": c}
                         for c in (EARLE_2003, EARLE_2005, BODDAERT_2022, BODDAERT_2024)],
        scoring={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                             "code": "proportion"}]},
        type=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-type",
                           "code": "process"}]}],
        improvementNotation={"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
            "code": "decrease"}]},
        group=[{"population": [
            {"code": {"coding": [{"system": POPULATION, "code": "initial-population"}]},
             "description": "Decedents: Patient.deceasedDateTime within the measurement period",
             "criteria": {"language": "text/plain", "expression": "decedent"}},
            {"code": {"coding": [{"system": POPULATION, "code": "denominator"}]},
             "description": "The initial population",
             "criteria": {"language": "text/plain", "expression": "decedent"}},
            {"code": {"coding": [{"system": POPULATION, "code": "numerator"}]},
             "description": numerator,
             "criteria": {"language": "text/plain", "expression": id_}},
        ], "stratifier": [{
            "code": {"coding": [{"system": f"{BASE}/CodeSystem/signaal",
                                 "code": "coach-last-90-days"}],
                     "text": "Had a coach in the last 90 days of life"},
            "description": "Y: a CareTeam participant with a coach role during the 90 days "
                           "before death; N: none",
            "criteria": {"language": "text/plain", "expression": "coach-last-90-days"}}]}]))

write("conformance/operation-evaluate-measure.json", {
    "resourceType": "OperationDefinition", "id": "evaluate-measure",
    "url": f"{BASE}/OperationDefinition/evaluate-measure", "version": VERSION,
    "name": "EvaluateMeasure", "title": "Evaluate an end-of-life care indicator",
    "status": "active", "kind": "operation", "publisher": "Signaal",
    "description": "Measure/[id]/$evaluate-measure as Signaal implements it for its shipped "
                   "end-of-life care indicators (the Measures eol-*): the R4 operation "
                   "(http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure) by GET "
                   "or POST (a Parameters body). A Measure whose logic Signaal does not "
                   "implement is a 422. reportType population (alias summary) counts the "
                   "populations; subject-list adds, per population and stratum, a contained "
                   "List of the patients; subject evaluates one patient (MeasureReport type "
                   "individual). Every report is stratified by coach-last-90-days.",
    "base": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
    "affectsState": False, "code": "evaluate-measure", "resource": ["Measure"],
    "system": False, "type": False, "instance": True,
    "parameter": [
        {"name": "periodStart", "use": "in", "min": 1, "max": "1", "type": "date",
         "documentation": "The start of the measurement period (a date, or a partial one: "
                          "2024 is 2024-01-01), inclusive."},
        {"name": "periodEnd", "use": "in", "min": 1, "max": "1", "type": "date",
         "documentation": "The end of the measurement period (its last day, inclusive: 2024 "
                          "is up to 2024-12-31)."},
        {"name": "reportType", "use": "in", "min": 0, "max": "1", "type": "code",
         "documentation": "population (or summary) | subject-list | subject; default subject "
                          "when a subject is given, else population."},
        {"name": "subject", "use": "in", "min": 0, "max": "1", "type": "string",
         "documentation": "One patient (Patient/[id] or [id]): the report covers that patient "
                          "only."},
        {"name": "return", "use": "out", "min": 1, "max": "1", "type": "MeasureReport",
         "documentation": "The MeasureReport: population counts (initial-population, "
                          "denominator, numerator), measureScore numerator/denominator, the "
                          "coach-last-90-days strata; with subject-list, "
                          "population.subjectResults references a contained List."},
    ]})
