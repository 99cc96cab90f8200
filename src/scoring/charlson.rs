//! Charlson comorbidity index.
//!
//! Sources: Charlson ME, Pompei P, Ales KL, MacKenzie CR. A new method of classifying prognostic
//! comorbidity in longitudinal studies: development and validation. J Chronic Dis
//! 1987;40(5):373-83 (the 17 conditions and their weights 1, 2, 3 and 6); Quan H, Sundararajan V,
//! Halfon P, et al. Coding algorithms for defining comorbidities in ICD-9-CM and ICD-10
//! administrative data. Med Care 2005;43(11):1130-9 (the ICD-10 codes of each condition, table 1).
//!
//! Each category is a ValueSet, `profiles/valueset-scoring-charlson-{category}.json` (ICD-10 by
//! Quan's ranges, SNOMED CT by `is-a` heads and listed concepts, ICPC-2 where a rubric fits),
//! read through [`super::terms`]; SNOMED CT codes may also reach a category through the
//! ConceptMap `profiles/conceptmap-snomed-charlson.json`. A Condition whose code no value set or
//! map decides is reported as not recognised, never counted as absent in silence.
//!
//! Renal disease is Charlson's *moderate or severe* renal disease: CKD stages 3, 4 and 5
//! (SNOMED CT 433144002, 431857002, 433146000 and below; ICD-10 N18.3–N18.5, and N18.0/N18.8/
//! N18.9 and N18.6 of ICD-10-CM), end-stage renal disease (46177005), CKD of unstated stage
//! (709044004, N18.9, as Quan's N18.x), dialysis (105502003; Z49.0–Z49.2, Z99.2), kidney
//! transplant (Z94.0), hypertensive CKD with renal failure (I12.0, I13.1), and the chronic
//! glomerular diseases of Quan's table (N03.2–N03.7, N05.2–N05.7, N25.0). CKD stages 1 and 2
//! (431855005, 431856006; N18.1, N18.2) do not count (Charlson 1987: "moderate" is a creatinine
//! above 3 mg/dL; stages 1–2 have a normal or mildly reduced filtration rate, KDIGO 2012).
//!
//! Conditions count when active, recurring, relapsed, inactive, remission or resolved (the index
//! is about history: Charlson's categories are "history of", and a resolved acute myocardial
//! infarction is still one), but not when refuted or entered in error. At a discharge (LACE's
//! C) only what was known by then counts: onset or recordedDate at or before the discharge. When a mild and a severe form of
//! the same disease are both present (liver disease, diabetes, malignancy vs metastatic tumour),
//! only the severe one counts.

use std::collections::BTreeMap;

use serde_json::Value;

use super::terms::{self, Terms};
use super::{codings, key, Item, Record, Risk, Score};

/// One Charlson condition: its code in the Signaal CodeSystem, its words and its 1987 weight.
/// Its codes are the ValueSet `scoring-charlson-{code}` (see [`Category::value_set`]).
pub struct Category {
    pub code: &'static str,
    pub display: &'static str,
    pub weight: u32,
    /// The milder form this one replaces when both are present.
    pub replaces: Option<&'static str>,
}

/// Charlson 1987 weights.
pub static CATEGORIES: &[Category] = &[
    Category {
        code: "myocardial-infarction",
        display: "Myocardial infarction",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "congestive-heart-failure",
        display: "Congestive heart failure",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "peripheral-vascular-disease",
        display: "Peripheral vascular disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "cerebrovascular-disease",
        display: "Cerebrovascular disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "dementia",
        display: "Dementia",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "chronic-pulmonary-disease",
        display: "Chronic pulmonary disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "rheumatic-disease",
        display: "Rheumatic (connective tissue) disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "peptic-ulcer-disease",
        display: "Peptic ulcer disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "mild-liver-disease",
        display: "Mild liver disease",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "diabetes-without-complication",
        display: "Diabetes without chronic complication",
        weight: 1,
        replaces: None,
    },
    Category {
        code: "diabetes-with-complication",
        display: "Diabetes with chronic complication",
        weight: 2,
        replaces: Some("diabetes-without-complication"),
    },
    Category {
        code: "hemiplegia-or-paraplegia",
        display: "Hemiplegia or paraplegia",
        weight: 2,
        replaces: None,
    },
    Category {
        code: "renal-disease",
        display: "Renal disease",
        weight: 2,
        replaces: None,
    },
    Category {
        code: "malignancy",
        display:
            "Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin",
        weight: 2,
        replaces: None,
    },
    Category {
        code: "moderate-or-severe-liver-disease",
        display: "Moderate or severe liver disease",
        weight: 3,
        replaces: Some("mild-liver-disease"),
    },
    Category {
        code: "metastatic-solid-tumour",
        display: "Metastatic solid tumour",
        weight: 6,
        replaces: Some("malignancy"),
    },
    Category {
        code: "aids-hiv",
        display: "AIDS/HIV",
        weight: 6,
        replaces: None,
    },
];

pub fn category(code: &str) -> Option<&'static Category> {
    CATEGORIES.iter().find(|c| c.code == code)
}

impl Category {
    /// The canonical url of the ValueSet that defines the category.
    pub fn value_set(&self) -> String {
        terms::url(&format!("charlson-{}", self.code))
    }
}

/// The Charlson categories of a coding: the value sets that hold it, and the ConceptMap's
/// targets.
pub fn categories_of(terms: &Terms, system: &str, code: &str) -> Vec<&'static Category> {
    let mut out: Vec<&'static Category> = CATEGORIES
        .iter()
        .filter(|c| terms.contains(&c.value_set(), system, code))
        .collect();
    for target in terms.mapped(system, code).into_iter().flatten() {
        if let Some(c) = category(target) {
            if !out.iter().any(|o| o.code == c.code) {
                out.push(c);
            }
        }
    }
    out
}

/// Whether a Condition is part of the patient's history for comorbidity indices (not refuted
/// or entered in error: see [`super::condition_counts`]).
pub fn condition_counts(condition: &Value) -> bool {
    super::condition_counts(condition)
}

/// The Charlson categories present, each with the Conditions behind it, with mild forms
/// dropped when their severe form is present.
pub fn categories(terms: &Terms, record: &Record) -> BTreeMap<&'static str, Vec<String>> {
    let mut found: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for condition in record.of_type("Condition").filter(|c| condition_counts(c)) {
        for (system, code) in codings(&condition["code"]) {
            for category in categories_of(terms, system, code) {
                let basis = found.entry(category.code).or_default();
                let k = key(condition);
                if !basis.contains(&k) {
                    basis.push(k);
                }
            }
        }
    }
    let replaced: Vec<&str> = found
        .keys()
        .filter_map(|c| category(c).and_then(|c| c.replaces))
        .collect();
    found.retain(|c, _| !replaced.contains(c));
    found
}

/// Whether the record holds anything this model reads (a Condition): without one, an index of
/// 0 would only say that nobody recorded a diagnosis, so no assessment is written.
pub fn applies(record: &Record) -> bool {
    record.of_type("Condition").next().is_some()
}

/// The Charlson index of a patient at `now`: the sum of the weights of the conditions present.
/// Qualitative risk (for the RiskAssessment) follows Charlson's own strata of one-year mortality:
/// 0 low, 1–2 moderate, ≥ 3 high.
pub fn score(terms: &Terms, record: &Record, now: i64) -> Score {
    let mut items: Vec<Item> = categories(terms, record)
        .into_iter()
        .filter_map(|(code, basis)| {
            let c = category(code)?;
            Some(Item::new(c.weight as f64, c.display, basis))
        })
        .collect();
    items.extend(super::unrecognised(terms, record));
    let total: f64 = items.iter().map(|i| i.points).sum();
    Score {
        model: "charlson",
        score: total,
        risk: match total as u32 {
            0 => Risk::Low,
            1 | 2 => Risk::Moderate,
            _ => Risk::High,
        },
        items,
        encounter: None,
        occurrence: now,
    }
}

#[cfg(test)]
mod tests {
    use super::super::terms::{Terms, BUILTIN_TERMS, ICPC2};
    use super::super::testing::condition;
    use super::super::{ICD10, SNOMED};
    use super::*;

    fn record(conditions: Vec<Value>) -> Record {
        Record::new("p", conditions)
    }

    fn codes_of(system: &str, code: &str) -> Vec<&'static str> {
        categories_of(&BUILTIN_TERMS, system, code)
            .into_iter()
            .map(|c| c.code)
            .collect()
    }

    fn fragment() -> Terms {
        let cs: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/snomed/fragment.json"))
                .unwrap();
        Terms::build(&[], &[], &[cs])
    }

    #[test]
    fn icd10_codes_fall_in_quan_groups_with_or_without_dot() {
        assert_eq!(codes_of(ICD10, "I21.4"), vec!["myocardial-infarction"]);
        assert_eq!(codes_of(ICD10, "I252"), vec!["myocardial-infarction"]);
        assert!(codes_of(ICD10, "I25.1").is_empty());
        assert_eq!(
            codes_of(ICD10, "E11.9"),
            vec!["diabetes-without-complication"]
        );
        assert_eq!(codes_of(ICD10, "E11.2"), vec!["diabetes-with-complication"]);
        assert_eq!(codes_of(ICD10, "C78.0"), vec!["metastatic-solid-tumour"]);
        assert!(
            codes_of(ICD10, "C44.9").is_empty(),
            "skin cancer is not counted"
        );
        assert!(codes_of(ICD10, "I500").contains(&"congestive-heart-failure"));
    }

    /// One ICD-10 code per category that appears in no file of the project or the sample
    /// (`grep -r` of /work/main and /work/shared found none): the ranges decide them, not a
    /// list of seen codes.
    #[test]
    fn unseen_icd10_codes_of_every_category_are_placed() {
        for (code, category) in [
            ("I22.9", "myocardial-infarction"),
            ("I43.1", "congestive-heart-failure"),
            ("I71.6", "peripheral-vascular-disease"),
            ("I66.3", "cerebrovascular-disease"),
            ("F02.3", "dementia"),
            ("J67.4", "chronic-pulmonary-disease"),
            ("M33.1", "rheumatic-disease"),
            ("K27.5", "peptic-ulcer-disease"),
            ("K74.4", "mild-liver-disease"),
            ("E13.6", "diabetes-without-complication"),
            ("E14.5", "diabetes-with-complication"),
            ("G83.3", "hemiplegia-or-paraplegia"),
            ("N05.6", "renal-disease"),
            ("C71.6", "malignancy"),
            ("K76.7", "moderate-or-severe-liver-disease"),
            ("C79.51", "metastatic-solid-tumour"),
            ("B22.7", "aids-hiv"),
        ] {
            assert_eq!(codes_of(ICD10, code), vec![category], "{code}");
            assert_eq!(
                codes_of("http://hl7.org/fhir/sid/icd-10-cm", code),
                vec![category],
                "{code} (ICD-10-CM)"
            );
        }
        assert_eq!(CATEGORIES.len(), 17);
    }

    #[test]
    fn ckd_stages_one_and_two_are_not_renal_disease() {
        assert!(codes_of(ICD10, "N18.1").is_empty());
        assert!(codes_of(ICD10, "N18.2").is_empty());
        assert_eq!(codes_of(ICD10, "N18.4"), vec!["renal-disease"]);
        assert!(codes_of(SNOMED, "431855005").is_empty());
        assert!(codes_of(SNOMED, "431856006").is_empty());
        assert_eq!(codes_of(SNOMED, "431857002"), vec!["renal-disease"]);
        // With a hierarchy too: stage 3A (unseen) is below stage 3.
        let terms = fragment();
        assert_eq!(
            categories_of(&terms, SNOMED, "700378005")[0].code,
            "renal-disease"
        );
        assert!(categories_of(&terms, SNOMED, "431856006").is_empty());
    }

    #[test]
    fn icpc2_rubrics_that_fit_a_category_are_placed() {
        assert_eq!(codes_of(ICPC2, "K77"), vec!["congestive-heart-failure"]);
        assert_eq!(codes_of(ICPC2, "R96"), vec!["chronic-pulmonary-disease"]);
        assert_eq!(
            codes_of(ICPC2, "T90"),
            vec!["diabetes-without-complication"]
        );
        assert!(
            codes_of(ICPC2, "N18").is_empty(),
            "paralysis/weakness straddles"
        );
    }

    /// SNOMED CT codes that appear in no file of the project (not in any explicit list): a
    /// stored SNOMED CT fragment with its is-a hierarchy places them through the heads.
    #[test]
    fn unseen_snomed_codes_are_placed_through_a_stored_hierarchy() {
        assert!(
            codes_of(SNOMED, "254626006").is_empty(),
            "no hierarchy: not known"
        );
        assert!(!BUILTIN_TERMS.decides_condition(SNOMED, "254626006"));
        let terms = fragment();
        let of = |code: &str| -> Vec<&str> {
            categories_of(&terms, SNOMED, code)
                .into_iter()
                .map(|c| c.code)
                .collect()
        };
        assert_eq!(
            of("254626006"),
            vec!["malignancy"],
            "adenocarcinoma of lung"
        );
        assert_eq!(
            of("371041009"),
            vec!["cerebrovascular-disease"],
            "embolic stroke"
        );
        assert_eq!(
            of("389145006"),
            vec!["chronic-pulmonary-disease"],
            "allergic asthma"
        );
        assert!(of("254701007").is_empty(), "basal cell carcinoma of skin");
        assert!(terms.decides_condition(SNOMED, "254701007"));
        assert!(
            terms.decides_condition(SNOMED, "90708001"),
            "in the hierarchy: decided"
        );
    }

    #[test]
    fn weights_add_up_to_four_or_more() {
        let s = score(
            &BUILTIN_TERMS,
            &record(vec![
                condition("a", ICD10, "I50.0"),
                condition("b", ICD10, "N18.3"),
                condition("c", SNOMED, "26929004"),
            ]),
            0,
        );
        assert_eq!(s.score, 4.0);
        assert_eq!(s.risk, Risk::High);
        assert_eq!(s.basis(), vec!["Condition/a", "Condition/c", "Condition/b"]);
    }

    #[test]
    fn mild_and_severe_forms_count_only_the_severe_one() {
        let diabetes = record(vec![
            condition("d1", SNOMED, "44054006"),
            condition("d2", SNOMED, "127013003"),
        ]);
        assert_eq!(score(&BUILTIN_TERMS, &diabetes, 0).score, 2.0);
        let cancer = record(vec![
            condition("c1", SNOMED, "363406005"),
            condition("c2", SNOMED, "94260004"),
        ]);
        assert_eq!(score(&BUILTIN_TERMS, &cancer, 0).score, 6.0);
        let liver = record(vec![
            condition("l1", ICD10, "K70.3"),
            condition("l2", ICD10, "K72.1"),
        ]);
        let s = score(&BUILTIN_TERMS, &liver, 0);
        assert_eq!(s.score, 3.0);
        assert_eq!(s.items.len(), 1);
    }

    #[test]
    fn one_category_counts_once_however_many_conditions() {
        let s = score(
            &BUILTIN_TERMS,
            &record(vec![
                condition("m1", SNOMED, "22298006"),
                condition("m2", SNOMED, "399211009"),
            ]),
            0,
        );
        assert_eq!(s.score, 1.0);
        assert_eq!(s.items[0].basis.len(), 2);
    }

    #[test]
    fn refuted_and_entered_in_error_conditions_do_not_count() {
        for status in ["refuted", "entered-in-error"] {
            let mut c = condition("x", ICD10, "I50.0");
            c["verificationStatus"] = serde_json::json!({"coding": [{"code": status}]});
            let s = score(&BUILTIN_TERMS, &record(vec![c]), 0);
            assert_eq!(s.score, 0.0, "{status}");
            assert!(s.items.is_empty(), "{status}: not even as unrecognised");
        }
    }

    #[test]
    fn a_condition_no_value_set_decides_is_said_to_be_not_recognised() {
        let mut c = condition("u", "https://hospital.example/thesaurus", "HF-77");
        c["code"]["coding"][0]["display"] = serde_json::json!("hartfalen");
        let s = score(
            &BUILTIN_TERMS,
            &record(vec![c, condition("k", ICD10, "J06.9")]),
            0,
        );
        assert_eq!(s.score, 0.0);
        assert_eq!(s.items.len(), 1);
        assert_eq!(
            s.items[0].why,
            "1 condition(s) not recognised: https://hospital.example/thesaurus|HF-77 (hartfalen)"
        );
        assert_eq!(s.items[0].basis, vec!["Condition/u"]);
    }

    /// The ConceptMap's positive targets agree with the value sets wherever both decide.
    #[test]
    fn the_concept_map_agrees_with_the_value_sets() {
        let map: Value = serde_json::from_str(include_str!(
            "../../profiles/conceptmap-snomed-charlson.json"
        ))
        .unwrap();
        let empty = Terms::build(
            &[],
            &[serde_json::json!({"url": terms::CHARLSON_MAP, "version": "999", "group": []})],
            &[],
        );
        for element in map["group"][0]["element"].as_array().unwrap() {
            let code = element["code"].as_str().unwrap();
            let from_sets: Vec<&str> = categories_of(&empty, SNOMED, code)
                .iter()
                .map(|c| c.code)
                .collect();
            if let Some(target) = element["target"][0]["code"].as_str() {
                assert!(category(target).is_some(), "{code}: {target}");
                assert!(
                    from_sets.is_empty() || from_sets.contains(&target),
                    "{code}: map {target}, value sets {from_sets:?}"
                );
            } else {
                assert!(
                    from_sets.is_empty(),
                    "{code}: unmatched in the map, value sets {from_sets:?}"
                );
            }
        }
    }

    /// Every SNOMED CT condition code of the Synthea sample is decided (by a value set or the
    /// map), so none is reported as not recognised there.
    #[test]
    fn every_synthea_condition_code_is_decided() {
        let listed = include_str!("../../tests/fixtures/synthea-condition-codes.tsv");
        let missing: Vec<&str> = listed
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap())
            .filter(|code| !BUILTIN_TERMS.decides_condition(SNOMED, code))
            .collect();
        assert!(missing.is_empty(), "not decided: {missing:?}");
    }
}
