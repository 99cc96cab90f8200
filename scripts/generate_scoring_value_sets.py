#!/usr/bin/env python3
"""Writes the ValueSets that define every clinical concept Signaal's risk models read
(profiles/valueset-scoring-*.json): the 17 Charlson categories, heart failure (home weight rule),
active cancer and oncology services (HOSPITAL "O"), and the Observation codes the models read.

How each is defined (never from what a sample happens to contain):
- ICD-10 (WHO, http://hl7.org/fhir/sid/icd-10, and ICD-10-CM): the code ranges of Quan H,
  Sundararajan V, Halfon P, et al. Coding algorithms for defining comorbidities in ICD-9-CM and
  ICD-10 administrative data. Med Care 2005;43(11):1130-9, table 1, as a `regex` filter on the
  code (the dot optional). Renal disease leaves out N18.1 and N18.2 (CKD stages 1-2: Charlson's
  "moderate or severe" renal disease).
- SNOMED CT: `is-a` filters on the concepts that head each category (they cover every
  descendant once a SNOMED CT release or fragment with its hierarchy is stored as a CodeSystem),
  plus the common concepts listed explicitly so that the value set works without one. The codes
  and their meanings are SNOMED CT International Edition facts (as shown by public SNOMED CT
  browsers).
- ICPC-2 (http://hl7.org/fhir/sid/icpc-2): the rubrics whose meaning falls wholly in the
  category (WONCA ICPC-2); rubrics that straddle categories (N18 paralysis/weakness, D97 liver
  disease NOS, U99 other urinary disease, S77 skin malignancy) are not listed.

Usage: scripts/generate_scoring_value_sets.py (from the repository root)
"""
import json
import re

BASE = "https://signaal.dev/fhir"
SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICPC2 = "http://hl7.org/fhir/sid/icpc-2"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
ATC = "http://www.whocc.no/atc"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
EARLE = ("Earle CC, Park ER, Lai B, Weeks JC, Ayanian JZ, Block S. Identifying potential indicators "
         "of the quality of end-of-life cancer care from administrative data. J Clin Oncol "
         "2003;21(6):1133-8; Earle CC, Neville BA, Landrum MB, et al. Evaluating claims-based "
         "indicators of the intensity of end-of-life cancer care. Int J Qual Health Care "
         "2005;17(6):505-9")
VERSION = "2.0.0"
QUAN = ("ICD-10: Quan H, Sundararajan V, Halfon P, et al. Coding algorithms for defining "
        "comorbidities in ICD-9-CM and ICD-10 administrative data. Med Care 2005;43(11):1130-9, "
        "table 1")
CHARLSON_1987 = ("Charlson ME, Pompei P, Ales KL, MacKenzie CR. A new method of classifying "
                 "prognostic comorbidity in longitudinal studies. J Chronic Dis 1987;40(5):373-83")
SNOMED_NOTE = ("SNOMED CT: is-a the heads below (every descendant, once a SNOMED CT CodeSystem "
               "with its hierarchy is stored on the server) and the common concepts listed "
               "(SNOMED CT International Edition)")


def quan_regex(prefixes):
    """Quan's code prefixes (without dots) as one regex over ICD-10 codes, the dot optional:
    I50 -> I50 and everything below it; I110 -> I11.0 / I110 and below."""
    alternatives = []
    for p in prefixes:
        head, rest = p[:3], p[3:]
        alternatives.append(re.escape(head) + (r"\.?" + rest if rest else ""))
    return "(" + "|".join(alternatives) + r")(\.?[0-9A-Z]*)?"


def span(letter, lo, hi):
    return [f"{letter}{n:02d}" for n in range(lo, hi + 1)]


# code, display, weight, Quan 2005 ICD-10 prefixes, SNOMED CT heads, SNOMED CT listed, ICPC-2,
# SNOMED CT is-a heads excluded, SNOMED CT listed excluded, a note
CHARLSON = [
    ("myocardial-infarction", "Myocardial infarction", 1, ["I21", "I22", "I252"],
     [("22298006", "Myocardial infarction")],
     [("57054005", "Acute myocardial infarction"),
      ("401303003", "Acute ST segment elevation myocardial infarction"),
      ("401314000", "Acute non-ST segment elevation myocardial infarction"),
      ("399211009", "History of myocardial infarction")],
     [("K75", "Acute myocardial infarction")], [], [], ""),
    ("congestive-heart-failure", "Congestive heart failure", 1,
     ["I099", "I110", "I130", "I132", "I255", "I420", "I425", "I426", "I427", "I428", "I429",
      "I43", "I50", "P290"],
     [("84114007", "Heart failure")],
     [("42343007", "Congestive heart failure"), ("88805009", "Chronic congestive heart failure"),
      ("48447003", "Chronic heart failure"), ("56675007", "Acute heart failure"),
      ("10633002", "Acute congestive heart failure"), ("85232009", "Left heart failure"),
      ("417996009", "Systolic heart failure"), ("418304008", "Diastolic heart failure"),
      ("703272007", "Heart failure with reduced ejection fraction"),
      ("446221000", "Heart failure with normal ejection fraction")],
     [("K77", "Heart failure")], [], [], ""),
    ("peripheral-vascular-disease", "Peripheral vascular disease", 1,
     ["I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558", "K559",
      "Z958", "Z959"],
     [("400047006", "Peripheral vascular disease"),
      ("399957001", "Peripheral arterial occlusive disease"),
      ("840580004", "Peripheral arterial disease"), ("67362008", "Aortic aneurysm")],
     [("233985008", "Abdominal aortic aneurysm"), ("63491006", "Intermittent claudication")],
     [("K92", "Atherosclerosis/peripheral vascular disease")], [], [], ""),
    ("cerebrovascular-disease", "Cerebrovascular disease", 1,
     ["G45", "G46", "H340", "I60", "I61", "I62", "I63", "I64", "I65", "I66", "I67", "I68", "I69"],
     [("62914000", "Cerebrovascular disease"), ("230690007", "Cerebrovascular accident")],
     [("266257000", "Transient ischemic attack"), ("422504002", "Ischemic stroke"),
      ("432504007", "Cerebral infarction"), ("274100004", "Cerebral hemorrhage"),
      ("21454007", "Subarachnoid intracranial hemorrhage"),
      ("195239002", "Late effects of cerebrovascular disease")],
     [("K89", "Transient cerebral ischaemia"), ("K90", "Stroke/cerebrovascular accident"),
      ("K91", "Cerebrovascular disease")], [], [], ""),
    ("dementia", "Dementia", 1, ["F00", "F01", "F02", "F03", "F051", "G30", "G311"],
     [("52448006", "Dementia"), ("26929004", "Alzheimer's disease")],
     [("429998004", "Vascular dementia")],
     [("P70", "Dementia")], [], [], ""),
    ("chronic-pulmonary-disease", "Chronic pulmonary disease", 1,
     ["I278", "I279"] + span("J", 40, 47) + span("J", 60, 67) + ["J684", "J701", "J703"],
     [("13645005", "Chronic obstructive lung disease"), ("195967001", "Asthma"),
      ("87433001", "Pulmonary emphysema"), ("63480004", "Chronic bronchitis"),
      ("12295008", "Bronchiectasis"), ("40122008", "Pneumoconiosis")],
     [("185086009", "Chronic obstructive bronchitis")],
     [("R95", "Chronic obstructive pulmonary disease"), ("R96", "Asthma")], [], [], ""),
    ("rheumatic-disease", "Rheumatic (connective tissue) disease", 1,
     ["M05", "M06", "M315", "M32", "M33", "M34", "M351", "M353", "M360"],
     [("69896004", "Rheumatoid arthritis"), ("55464009", "Systemic lupus erythematosus"),
      ("89155008", "Systemic sclerosis"), ("396230008", "Dermatomyositis"),
      ("31384009", "Polymyositis"), ("65323003", "Polymyalgia rheumatica")],
     [], [("L88", "Rheumatoid/seropositive arthritis")], [], [], ""),
    ("peptic-ulcer-disease", "Peptic ulcer disease", 1, ["K25", "K26", "K27", "K28"],
     [("13200003", "Peptic ulcer"), ("397825006", "Gastric ulcer"),
      ("51868009", "Duodenal ulcer")],
     [], [("D85", "Duodenal ulcer"), ("D86", "Peptic ulcer other")], [], [], ""),
    ("mild-liver-disease", "Mild liver disease", 1,
     ["B18", "K700", "K701", "K702", "K703", "K709", "K713", "K714", "K715", "K717", "K73",
      "K74", "K760", "K762", "K763", "K764", "K768", "K769", "Z944"],
     [("328383001", "Chronic liver disease"), ("19943007", "Cirrhosis of liver"),
      ("197321007", "Steatosis of liver"), ("61977001", "Chronic type B viral hepatitis"),
      ("128302006", "Chronic hepatitis C")],
     [], [], [], [], ""),
    ("diabetes-without-complication", "Diabetes without chronic complication", 1,
     [f"E1{t}{d}" for t in range(0, 5) for d in (0, 1, 6, 8, 9)],
     [("73211009", "Diabetes mellitus")],
     [("44054006", "Diabetes mellitus type 2"), ("46635009", "Diabetes mellitus type 1")],
     [("T89", "Diabetes insulin dependent"), ("T90", "Diabetes non-insulin dependent")],
     [], [], "A diabetes code that is also in diabetes-with-complication counts there only."),
    ("diabetes-with-complication", "Diabetes with chronic complication", 2,
     [f"E1{t}{d}" for t in range(0, 5) for d in (2, 3, 4, 5, 7)],
     [("74627003", "Complication due to diabetes mellitus")],
     [("127013003", "Disorder of kidney due to diabetes mellitus"),
      ("4855003", "Retinopathy due to diabetes mellitus"),
      ("230572002", "Neuropathy due to diabetes mellitus"),
      ("25093002", "Disorder of eye due to diabetes mellitus")],
     [], [], [], ""),
    ("hemiplegia-or-paraplegia", "Hemiplegia or paraplegia", 2,
     ["G041", "G114", "G801", "G802", "G81", "G82", "G830", "G831", "G832", "G833", "G834",
      "G839"],
     [("50582007", "Hemiplegia"), ("60389000", "Paraplegia")],
     [], [], [], [], ""),
    ("renal-disease", "Renal disease (moderate or severe)", 2,
     ["I120", "I131", "N032", "N033", "N034", "N035", "N036", "N037", "N052", "N053", "N054",
      "N055", "N056", "N057", "N18", "N19", "N250", "Z490", "Z491", "Z492", "Z940", "Z992"],
     [("709044004", "Chronic kidney disease"), ("433144002", "Chronic kidney disease stage 3"),
      ("431857002", "Chronic kidney disease stage 4"),
      ("433146000", "Chronic kidney disease stage 5"),
      ("46177005", "End-stage renal disease")],
     [("105502003", "Dependence on renal dialysis")],
     [],
     [("431855005", "Chronic kidney disease stage 1"),
      ("431856006", "Chronic kidney disease stage 2")],
     [],
     "Moderate or severe (Charlson 1987): CKD stages 3 to 5, end-stage renal disease, dialysis, "
     "a kidney transplant, and CKD of unstated stage (as Quan's N18.x); CKD stages 1 and 2 "
     "(ICD-10 N18.1, N18.2; SNOMED CT 431855005, 431856006 and below) do not count."),
    ("malignancy", "Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin", 2,
     span("C", 0, 26) + span("C", 30, 34) + span("C", 37, 41) + ["C43"] + span("C", 45, 58)
     + span("C", 60, 76) + span("C", 81, 85) + ["C88"] + span("C", 90, 97),
     [("363346000", "Malignant neoplastic disease"), ("372244006", "Malignant melanoma")],
     [("254637007", "Non-small cell lung cancer"), ("254632001", "Small cell carcinoma of lung"),
      ("363358000", "Malignant tumor of lung"),
      ("93761005", "Primary malignant neoplasm of colon"),
      ("363406005", "Malignant tumor of colon"),
      ("254837009", "Malignant neoplasm of breast"),
      ("399068003", "Malignant tumor of prostate"), ("93143009", "Leukemia"),
      ("118600007", "Malignant lymphoma"), ("109989006", "Multiple myeloma"),
      ("363418001", "Malignant tumor of pancreas"), ("363349007", "Malignant tumor of stomach")],
     [("A79", "Malignancy NOS"), ("B72", "Hodgkin's disease/lymphoma"), ("B73", "Leukaemia"),
      ("B74", "Malignant neoplasm blood other"), ("D74", "Malignant neoplasm stomach"),
      ("D75", "Malignant neoplasm colon/rectum"), ("D76", "Malignant neoplasm pancreas"),
      ("D77", "Malignant neoplasm digestive other/NOS"),
      ("R84", "Malignant neoplasm bronchus/lung"), ("R85", "Malignant neoplasm respiratory other"),
      ("X75", "Malignant neoplasm cervix"), ("X76", "Malignant neoplasm breast female"),
      ("X77", "Malignant neoplasm genital other (female)"), ("Y77", "Malignant neoplasm prostate"),
      ("Y78", "Malignant neoplasm male genital other"), ("U75", "Malignant neoplasm of kidney"),
      ("U76", "Malignant neoplasm of bladder"), ("U77", "Malignant neoplasm urinary other"),
      ("N74", "Malignant neoplasm nervous system"), ("T71", "Malignant neoplasm thyroid"),
      ("L71", "Malignant neoplasm musculoskeletal")],
     [("372130007", "Malignant neoplasm of skin")], [],
     "Malignant neoplasms of skin other than melanoma (ICD-10 C44) do not count: SNOMED CT "
     "372130007 and below is excluded, melanoma (372244006 and below) is included again."),
    ("moderate-or-severe-liver-disease", "Moderate or severe liver disease", 3,
     ["I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766", "K767"],
     [("28670008", "Esophageal varices"), ("59927004", "Hepatic failure"),
      ("34742003", "Portal hypertension"), ("13920009", "Hepatic encephalopathy")],
     [], [], [], [], ""),
    ("metastatic-solid-tumour", "Metastatic solid tumour", 6, ["C77", "C78", "C79", "C80"],
     [("128462008", "Secondary malignant neoplastic disease")],
     [("94381002", "Secondary malignant neoplasm of liver"),
      ("94260004", "Secondary malignant neoplasm of colon")],
     [], [], [], ""),
    ("aids-hiv", "AIDS/HIV", 6, ["B20", "B21", "B22", "B24"],
     [("86406008", "Human immunodeficiency virus infection")],
     [("62479008", "Acquired immune deficiency syndrome")],
     [("B90", "HIV-infection/AIDS")], [], [], ""),
]

written = []


def write(id_, title, description, include, exclude=None, extra=None):
    vs = {"resourceType": "ValueSet", "id": id_, "url": f"{BASE}/ValueSet/{id_}",
          "version": VERSION, "name": "".join(w.capitalize() for w in re.split(r"[-_]", id_)),
          "title": title, "status": "active", "experimental": False, "publisher": "Signaal",
          "description": description}
    if extra:
        vs.update(extra)
    vs["compose"] = {"include": include}
    if exclude:
        vs["compose"]["exclude"] = exclude
    with open(f"profiles/valueset-{id_}.json", "w") as f:
        json.dump(vs, f, indent=1, ensure_ascii=False)
        f.write("\n")
    written.append(vs["url"])


def concepts(system, codes):
    return {"system": system, "concept": [{"code": c, "display": d} for c, d in codes]}


def is_a(system, code):
    return {"system": system, "filter": [{"property": "concept", "op": "is-a", "value": code}]}


def icd(prefixes):
    regex = quan_regex(prefixes)
    return [{"system": s, "filter": [{"property": "code", "op": "regex", "value": regex}]}
            for s in (ICD10, ICD10CM)]


def snomed_parts(heads, listed):
    parts = [is_a(SCT, c) for c, _ in heads]
    parts.append(concepts(SCT, heads + listed))
    return parts


for (code, display, weight, prefixes, heads, listed, icpc, excluded_heads, excluded_listed,
     note) in CHARLSON:
    include = icd(prefixes) + snomed_parts(heads, listed)
    if icpc:
        include.append(concepts(ICPC2, icpc))
    exclude = [is_a(SCT, c) for c, _ in excluded_heads]
    if excluded_heads or excluded_listed:
        exclude.append(concepts(SCT, excluded_heads + excluded_listed))
    if code == "renal-disease":
        # CKD stages 1 and 2 are not moderate or severe renal disease.
        exclude += [{"system": s, "filter": [{"property": "code", "op": "regex", "value": r"N18\.?[12]"}]}
                    for s in (ICD10, ICD10CM)]
    if code == "malignancy":
        # Melanoma of skin counts (C43) while other skin malignancies (C44) do not: the
        # exclusion of skin malignancy lives in a value set of its own, and melanoma is
        # included beside it.
        write("scoring-malignancy-except-skin",
              "Malignancy except malignant neoplasm of skin (Charlson, part)",
              f"Part of the Charlson category 'malignancy': SNOMED CT malignant neoplastic "
              f"disease except malignant neoplasm of skin. {SNOMED_NOTE}.",
              snomed_parts(heads[:1], listed), exclude)
        include = icd(prefixes) + [
            {"valueSet": [f"{BASE}/ValueSet/scoring-malignancy-except-skin"]},
            is_a(SCT, "372244006"), concepts(SCT, heads[1:]), concepts(ICPC2, icpc)]
        exclude = None
    write(f"scoring-charlson-{code}", f"Charlson: {display}",
          f"The Charlson comorbidity category '{display}' (weight {weight}; {CHARLSON_1987}). "
          f"{QUAN}. {SNOMED_NOTE}. ICPC-2: the rubrics wholly within the category. {note}".strip(),
          include, exclude,
          {"useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
                           "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/signaal", "code": code}]}}]})

# Heart failure for the home weight-gain rule (ESC 2021): I50 and the hypertensive heart
# disease with heart failure codes of ICD-10; SNOMED CT heart failure and below.
hf = next(c for c in CHARLSON if c[0] == "congestive-heart-failure")
write("scoring-heart-failure", "Heart failure (home weight-gain alert)",
      "Heart failure, for the weight-gain rule of the home-measurement alerts (McDonagh TA et al., "
      "ESC heart failure guidelines, Eur Heart J 2021;42:3599-726). ICD-10: I50 (heart failure), "
      "I11.0, I13.0, I13.2 (hypertensive heart disease with heart failure). " + SNOMED_NOTE + ".",
      icd(["I50", "I110", "I130", "I132"]) + snomed_parts(hf[4], hf[5]) + [concepts(ICPC2, hf[6])])

write("scoring-active-cancer", "Cancer (HOSPITAL score 'O')",
      "A cancer diagnosis for the HOSPITAL score's 'O' item (Donze J et al., JAMA Intern Med "
      "2013;173(8):632-8): the Charlson categories malignancy and metastatic solid tumour.",
      [{"valueSet": [f"{BASE}/ValueSet/scoring-charlson-malignancy"]},
       {"valueSet": [f"{BASE}/ValueSet/scoring-charlson-metastatic-solid-tumour"]}])

write("scoring-oncology-service", "Oncology services (HOSPITAL score 'O')",
      "Encounter.serviceType of a discharge from oncology, for the HOSPITAL score's 'O' item "
      "(SNOMED CT qualifier values of the clinical specialties).",
      [concepts(SCT, [("394592004", "Clinical oncology"), ("394593009", "Medical oncology"),
                      ("419815003", "Radiation oncology")])])

OBSERVATIONS = [
    ("haemoglobin", "Haemoglobin (HOSPITAL 'H')",
     [("718-7", "Hemoglobin [Mass/volume] in Blood"), ("59260-0", "Hemoglobin [Moles/volume] in Blood")]),
    ("sodium", "Sodium (HOSPITAL 'S')", [("2951-2", "Sodium [Moles/volume] in Serum or Plasma")]),
    ("body-weight", "Body weight (home weight-gain alert)",
     [("29463-7", "Body weight"), ("3141-9", "Body weight Measured")]),
    ("blood-pressure", "Blood pressure (home blood pressure alerts)",
     [("85354-9", "Blood pressure panel with all children optional"),
      ("55284-4", "Blood pressure systolic and diastolic"),
      ("8480-6", "Systolic blood pressure"), ("8462-4", "Diastolic blood pressure")]),
    ("glucose", "Glucose (glucose alerts)",
     [("2339-0", "Glucose [Mass/volume] in Blood"), ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
      ("15074-8", "Glucose [Moles/volume] in Blood"), ("14749-6", "Glucose [Moles/volume] in Serum or Plasma"),
      ("41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer"),
      ("14743-9", "Glucose [Moles/volume] in Capillary blood by Glucometer")]),
    ("oxygen-saturation", "Oxygen saturation (SpO2 alert)",
     [("2708-6", "Oxygen saturation in Arterial blood"),
      ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")]),
]
for id_, title, codes in OBSERVATIONS:
    write(f"scoring-{id_}", title,
          f"{title}: the LOINC codes of the Observations the model reads (LOINC).",
          [concepts(LOINC, codes)])


# End-of-life care indicators (src/measure/) and the palliative model (src/scoring/palliative.rs).
# Codes as the code systems define them: HL7 v3 ActCode and RoleCode, the HL7 service-type code
# system, SNOMED CT International Edition, WHO ATC, the HL7 consent code systems.
write("scoring-eol-emergency-encounter", "Emergency department visit (end-of-life indicators)",
      "An emergency department visit, for the indicator '>1 ED visit in the last 30 days of life' "
      f"({EARLE}): Encounter.class v3 ActCode EMER (emergency).",
      [concepts(ACT_CODE, [("EMER", "emergency")])])
write("scoring-eol-inpatient-encounter", "Hospital admission (end-of-life indicators)",
      "A hospital admission, for the indicators '>1 hospital admission in the last 30 days of life' "
      f"and 'death in hospital' ({EARLE}): Encounter.class v3 ActCode IMP (inpatient encounter) "
      "and its specialisation ACUTE (inpatient acute); NONAC (non-acute, e.g. a nursing home or "
      "hospice stay) is not a hospital admission.",
      [concepts(ACT_CODE, [("IMP", "inpatient encounter"), ("ACUTE", "inpatient acute")])])
write("scoring-eol-intensive-care", "Intensive care (end-of-life indicators)",
      "An intensive care unit stay, for the indicator 'ICU admission in the last 30 days of life' "
      f"({EARLE}): the type of a Location of the Encounter (v3 RoleCode ICU, PEDICU, PEDNICU: "
      "intensive care units) or the Encounter's serviceType (HL7 service-type 174 Intensive "
      "Care Medicine, 198 Paediatric Intensive Care Medicine).",
      [concepts(ROLE_CODE, [("ICU", "Intensive care unit"), ("PEDICU", "Pediatric intensive care unit"),
                            ("PEDNICU", "Pediatric neonatal intensive care unit")]),
       concepts(SERVICE_TYPE, [("174", "Intensive Care Medicine"),
                               ("198", "Paediatric Intensive Care Medicine")])])
write("scoring-eol-chemotherapy", "Chemotherapy (end-of-life indicators)",
      "Chemotherapy given, for the indicator 'chemotherapy in the last 14 days of life' "
      f"({EARLE}): a Procedure coded SNOMED CT 367336001 |Chemotherapy| or below it (is-a, "
      "with a stored SNOMED CT hierarchy), or a MedicationAdministration / MedicationDispense of "
      "an antineoplastic agent, WHO ATC group L01 (ATC codes L01 and every code below it).",
      [is_a(SCT, "367336001"), concepts(SCT, [("367336001", "Chemotherapy")]),
       {"system": ATC, "filter": [{"property": "code", "op": "regex", "value": "L01[0-9A-Z]*"}]}])
write("scoring-palliative-care", "Palliative and hospice care",
      "Palliative or hospice care recorded for a patient: for the palliative-phase Flag (a "
      "Condition or CarePlan coded with it) and the indicator 'no or late palliative care' "
      f"({EARLE}: hospice; Boddaert MS et al. BMJ Support Palliat Care 2022;12:e137-45: "
      "generalist or specialist palliative care). SNOMED CT 103735009 |Palliative care| (is-a), "
      "385763009 |Hospice care| (is-a), 394806003 |Palliative medicine| (specialty), 284546000 "
      "|Hospice facility|; HL7 service-type 179 Palliative Medicine and 360 Hospice Care; "
      "ICD-10 Z51.5 (palliative care).",
      [is_a(SCT, "103735009"), is_a(SCT, "385763009"),
       concepts(SCT, [("103735009", "Palliative care"), ("385763009", "Hospice care"),
                      ("394806003", "Palliative medicine"), ("284546000", "Hospice facility")]),
       concepts(SERVICE_TYPE, [("179", "Palliative Medicine"), ("360", "Hospice Care")])] +
      [{"system": s, "filter": [{"property": "code", "op": "regex", "value": r"Z51\.?5"}]}
       for s in (ICD10, ICD10CM)])
write("scoring-advance-care-planning", "Advance care planning",
      "A documented advance care plan, which ends the no-acp Flag: a Consent whose scope is "
      "'adr' (HL7 consentscope: advanced care directive) or whose category is 'acd' (HL7 "
      "consentcategorycodes: advance directive), or a Goal or CarePlan whose category is SNOMED "
      "CT 713603004 |Advance care planning| or LOINC 42348-3 (Advance directives).",
      [concepts(CONSENT_SCOPE, [("adr", "Advanced Care Directive")]),
       concepts(CONSENT_CATEGORY, [("acd", "Advance Directive")]),
       concepts(SCT, [("713603004", "Advance care planning")]),
       concepts(LOINC, [("42348-3", "Advance directives")])])
write("scoring-coach-role", "Coach (CareTeam participant role)",
      "The CareTeam.participant.role of a coach who follows the patient across hospital, GP and "
      "home: the Signaal code 'coach'. A patient has a coach while a CareTeam (not proposed or "
      "entered in error) has a participant with this role, in the periods the team and the "
      "participant give.",
      [concepts(f"{BASE}/CodeSystem/signaal", [("coach", "Coach")])])
