//! Charlson comorbidity index.
//!
//! Sources: Charlson ME, Pompei P, Ales KL, MacKenzie CR. A new method of classifying prognostic
//! comorbidity in longitudinal studies: development and validation. J Chronic Dis
//! 1987;40(5):373-83 (the 17 conditions and their weights 1, 2, 3 and 6); Quan H, Sundararajan V,
//! Halfon P, et al. Coding algorithms for defining comorbidities in ICD-9-CM and ICD-10
//! administrative data. Med Care 2005;43(11):1130-9 (the ICD-10 codes of each condition, table 1).
//!
//! SNOMED CT conditions reach the categories through `profiles/conceptmap-snomed-charlson.json`.
//! Conditions count when active, recurring, relapsed, inactive, remission or resolved (the index
//! is about history), but not when refuted or entered in error. When a mild and a severe form of
//! the same disease are both present (liver disease, diabetes, malignancy vs metastatic tumour),
//! only the severe one counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde_json::Value;

use super::{codings, key, Item, Record, Risk, Score, ICD10, SNOMED};

/// One Charlson condition: its code in the Signaal CodeSystem, its words, its 1987 weight and
/// the ICD-10 code prefixes of Quan 2005 (without dots).
pub struct Category {
    pub code: &'static str,
    pub display: &'static str,
    pub weight: u32,
    icd10: &'static [&'static str],
    /// The milder form this one replaces when both are present.
    pub replaces: Option<&'static str>,
}

/// Charlson 1987 weights, Quan 2005 ICD-10 codes.
pub static CATEGORIES: &[Category] = &[
    Category {
        code: "myocardial-infarction",
        display: "Myocardial infarction",
        weight: 1,
        icd10: &["I21", "I22", "I252"],
        replaces: None,
    },
    Category {
        code: "congestive-heart-failure",
        display: "Congestive heart failure",
        weight: 1,
        icd10: &[
            "I099", "I110", "I130", "I132", "I255", "I420", "I425", "I426", "I427", "I428", "I429",
            "I43", "I50", "P290",
        ],
        replaces: None,
    },
    Category {
        code: "peripheral-vascular-disease",
        display: "Peripheral vascular disease",
        weight: 1,
        icd10: &[
            "I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558", "K559",
            "Z958", "Z959",
        ],
        replaces: None,
    },
    Category {
        code: "cerebrovascular-disease",
        display: "Cerebrovascular disease",
        weight: 1,
        icd10: &[
            "G45", "G46", "H340", "I60", "I61", "I62", "I63", "I64", "I65", "I66", "I67", "I68",
            "I69",
        ],
        replaces: None,
    },
    Category {
        code: "dementia",
        display: "Dementia",
        weight: 1,
        icd10: &["F00", "F01", "F02", "F03", "F051", "G30", "G311"],
        replaces: None,
    },
    Category {
        code: "chronic-pulmonary-disease",
        display: "Chronic pulmonary disease",
        weight: 1,
        icd10: &[
            "I278", "I279", "J40", "J41", "J42", "J43", "J44", "J45", "J46", "J47", "J60", "J61",
            "J62", "J63", "J64", "J65", "J66", "J67", "J684", "J701", "J703",
        ],
        replaces: None,
    },
    Category {
        code: "rheumatic-disease",
        display: "Rheumatic (connective tissue) disease",
        weight: 1,
        icd10: &[
            "M05", "M06", "M315", "M32", "M33", "M34", "M351", "M353", "M360",
        ],
        replaces: None,
    },
    Category {
        code: "peptic-ulcer-disease",
        display: "Peptic ulcer disease",
        weight: 1,
        icd10: &["K25", "K26", "K27", "K28"],
        replaces: None,
    },
    Category {
        code: "mild-liver-disease",
        display: "Mild liver disease",
        weight: 1,
        icd10: &[
            "B18", "K700", "K701", "K702", "K703", "K709", "K713", "K714", "K715", "K717", "K73",
            "K74", "K760", "K762", "K763", "K764", "K768", "K769", "Z944",
        ],
        replaces: None,
    },
    Category {
        code: "diabetes-without-complication",
        display: "Diabetes without chronic complication",
        weight: 1,
        icd10: &[
            "E100", "E101", "E106", "E108", "E109", "E110", "E111", "E116", "E118", "E119", "E120",
            "E121", "E126", "E128", "E129", "E130", "E131", "E136", "E138", "E139", "E140", "E141",
            "E146", "E148", "E149",
        ],
        replaces: None,
    },
    Category {
        code: "diabetes-with-complication",
        display: "Diabetes with chronic complication",
        weight: 2,
        icd10: &[
            "E102", "E103", "E104", "E105", "E107", "E112", "E113", "E114", "E115", "E117", "E122",
            "E123", "E124", "E125", "E127", "E132", "E133", "E134", "E135", "E137", "E142", "E143",
            "E144", "E145", "E147",
        ],
        replaces: Some("diabetes-without-complication"),
    },
    Category {
        code: "hemiplegia-or-paraplegia",
        display: "Hemiplegia or paraplegia",
        weight: 2,
        icd10: &[
            "G041", "G114", "G801", "G802", "G81", "G82", "G830", "G831", "G832", "G833", "G834",
            "G839",
        ],
        replaces: None,
    },
    Category {
        code: "renal-disease",
        display: "Renal disease",
        weight: 2,
        icd10: &[
            "I120", "I131", "N032", "N033", "N034", "N035", "N036", "N037", "N052", "N053", "N054",
            "N055", "N056", "N057", "N18", "N19", "N250", "Z490", "Z491", "Z492", "Z940", "Z992",
        ],
        replaces: None,
    },
    Category {
        code: "malignancy",
        display:
            "Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin",
        weight: 2,
        icd10: &[
            "C00", "C01", "C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11",
            "C12", "C13", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21", "C22", "C23",
            "C24", "C25", "C26", "C30", "C31", "C32", "C33", "C34", "C37", "C38", "C39", "C40",
            "C41", "C43", "C45", "C46", "C47", "C48", "C49", "C50", "C51", "C52", "C53", "C54",
            "C55", "C56", "C57", "C58", "C60", "C61", "C62", "C63", "C64", "C65", "C66", "C67",
            "C68", "C69", "C70", "C71", "C72", "C73", "C74", "C75", "C76", "C81", "C82", "C83",
            "C84", "C85", "C88", "C90", "C91", "C92", "C93", "C94", "C95", "C96", "C97",
        ],
        replaces: None,
    },
    Category {
        code: "moderate-or-severe-liver-disease",
        display: "Moderate or severe liver disease",
        weight: 3,
        icd10: &[
            "I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766", "K767",
        ],
        replaces: Some("mild-liver-disease"),
    },
    Category {
        code: "metastatic-solid-tumour",
        display: "Metastatic solid tumour",
        weight: 6,
        icd10: &["C77", "C78", "C79", "C80"],
        replaces: Some("malignancy"),
    },
    Category {
        code: "aids-hiv",
        display: "AIDS/HIV",
        weight: 6,
        icd10: &["B20", "B21", "B22", "B24"],
        replaces: None,
    },
];

pub fn category(code: &str) -> Option<&'static Category> {
    CATEGORIES.iter().find(|c| c.code == code)
}

/// SNOMED CT code → Charlson category, from the ConceptMap in `profiles/`.
static SNOMED_MAP: LazyLock<HashMap<String, &'static Category>> = LazyLock::new(|| {
    let map: Value = serde_json::from_str(include_str!(
        "../../profiles/conceptmap-snomed-charlson.json"
    ))
    .expect("profiles/conceptmap-snomed-charlson.json is valid JSON");
    let mut out = HashMap::new();
    for group in map["group"].as_array().into_iter().flatten() {
        for element in group["element"].as_array().into_iter().flatten() {
            for target in element["target"].as_array().into_iter().flatten() {
                if let (Some(source), Some(target)) =
                    (element["code"].as_str(), target["code"].as_str())
                {
                    let category = category(target).unwrap_or_else(|| {
                        panic!("the Charlson ConceptMap targets an unknown category '{target}'")
                    });
                    out.insert(source.to_owned(), category);
                }
            }
        }
    }
    out
});

/// The Charlson category of a coding, if any.
pub fn category_of(system: &str, code: &str) -> Option<&'static Category> {
    match system {
        SNOMED => SNOMED_MAP.get(code).copied(),
        s if s == ICD10 || s == "http://hl7.org/fhir/sid/icd-10-cm" => {
            let code: String = code.chars().filter(|c| *c != '.').collect();
            CATEGORIES
                .iter()
                .find(|c| c.icd10.iter().any(|p| code.starts_with(p)))
        }
        _ => None,
    }
}

/// Whether a Condition is part of the patient's history for comorbidity indices.
pub fn condition_counts(condition: &Value) -> bool {
    let refuted = condition["verificationStatus"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| matches!(c["code"].as_str(), Some("refuted" | "entered-in-error")));
    !refuted
}

/// The Charlson categories present, each with the Conditions behind it, with mild forms
/// dropped when their severe form is present.
pub fn categories(record: &Record) -> BTreeMap<&'static str, Vec<String>> {
    let mut found: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for condition in record.of_type("Condition").filter(|c| condition_counts(c)) {
        for (system, code) in codings(&condition["code"]) {
            if let Some(category) = category_of(system, code) {
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
pub fn score(record: &Record, now: i64) -> Score {
    let items: Vec<Item> = categories(record)
        .into_iter()
        .filter_map(|(code, basis)| {
            let c = category(code)?;
            Some(Item::new(c.weight as f64, c.display, basis))
        })
        .collect();
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
    use super::super::testing::condition;
    use super::*;

    fn record(conditions: Vec<Value>) -> Record {
        Record::new("p", conditions)
    }

    #[test]
    fn icd10_codes_fall_in_quan_groups_with_or_without_dot() {
        assert_eq!(
            category_of(ICD10, "I21.4").unwrap().code,
            "myocardial-infarction"
        );
        assert_eq!(
            category_of(ICD10, "I252").unwrap().code,
            "myocardial-infarction"
        );
        assert!(category_of(ICD10, "I25.1").is_none());
        assert_eq!(category_of(ICD10, "E11.9").unwrap().weight, 1);
        assert_eq!(category_of(ICD10, "E11.2").unwrap().weight, 2);
        assert_eq!(category_of(ICD10, "C78.0").unwrap().weight, 6);
        assert!(
            category_of(ICD10, "C44.9").is_none(),
            "skin cancer is not counted"
        );
    }

    #[test]
    fn weights_add_up_to_four_or_more() {
        let s = score(
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
            condition("d2", SNOMED, "368581000119106"),
        ]);
        assert_eq!(score(&diabetes, 0).score, 2.0);
        let cancer = record(vec![
            condition("c1", SNOMED, "363406005"),
            condition("c2", SNOMED, "94260004"),
        ]);
        assert_eq!(score(&cancer, 0).score, 6.0);
        let liver = record(vec![
            condition("l1", ICD10, "K70.3"),
            condition("l2", ICD10, "K72.1"),
        ]);
        let s = score(&liver, 0);
        assert_eq!(s.score, 3.0);
        assert_eq!(s.items.len(), 1);
    }

    #[test]
    fn one_category_counts_once_however_many_conditions() {
        let s = score(
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
    fn refuted_conditions_do_not_count() {
        let mut c = condition("x", ICD10, "I50.0");
        c["verificationStatus"] = serde_json::json!({"coding": [{"code": "refuted"}]});
        assert_eq!(score(&record(vec![c]), 0).score, 0.0);
    }

    /// Every SNOMED CT condition code in the Synthea sample has a decision in the ConceptMap
    /// (a category or `unmatched` with a reason), so none belonging to a Charlson category can
    /// be missed; and the decisions name real categories.
    #[test]
    fn the_concept_map_covers_every_synthea_condition_code() {
        let map: Value = serde_json::from_str(include_str!(
            "../../profiles/conceptmap-snomed-charlson.json"
        ))
        .unwrap();
        let elements = map["group"][0]["element"].as_array().unwrap();
        let decided: HashMap<&str, &Value> = elements
            .iter()
            .map(|e| (e["code"].as_str().unwrap(), &e["target"][0]))
            .collect();
        let listed = include_str!("../../tests/fixtures/synthea-condition-codes.tsv");
        let mut missing = Vec::new();
        for line in listed.lines().skip(1) {
            let code = line.split('\t').next().unwrap();
            match decided.get(code) {
                None => missing.push(line.to_owned()),
                Some(target) => {
                    assert!(
                        target["code"].as_str().map(category).is_some()
                            || (target["equivalence"] == "unmatched"
                                && target["comment"].is_string()),
                        "{code}: {target}"
                    );
                }
            }
        }
        assert!(missing.is_empty(), "not in the ConceptMap: {missing:?}");
        // Spot checks of categories Synthea patients have.
        for (code, category) in [
            ("88805009", "congestive-heart-failure"),
            ("44054006", "diabetes-without-complication"),
            ("127013003", "diabetes-with-complication"),
            ("314994000", "metastatic-solid-tumour"),
            ("26929004", "dementia"),
            ("185086009", "chronic-pulmonary-disease"),
        ] {
            assert_eq!(category_of(SNOMED, code).unwrap().code, category);
        }
    }
}
