//! The end-of-life care indicators as Measures and `Measure/[id]/$evaluate-measure`, through
//! the HTTP API on both stores: hand-made decedents at the edges of each window (29/30/31 days
//! before death, 13/14/15 for chemotherapy, 2/3 for late palliative care), the reports checked
//! against counts the test derives from each case's own expectations; the report types, the
//! coach stratifier, errors; and Synthea's deceased patients evaluated without errors.

mod common;

use std::io::Read;

use chrono::{Duration, NaiveDate};
use common::{expect_status, put, TestServer};
use serde_json::{json, Value};

const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const SCT: &str = "http://snomed.info/sct";
const CS: &str = "https://signaal.dev/fhir/CodeSystem/signaal";
const PERIOD: &str = "periodStart=2025-01-01&periodEnd=2025-12-31";

const MEASURES: [&str; 7] = [
    "eol-ed-visits",
    "eol-hospital-admissions",
    "eol-icu-admission",
    "eol-chemotherapy",
    "eol-death-in-hospital",
    "eol-no-or-late-palliative-care",
    "eol-any",
];

fn death() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
}

/// The date `days` before the date of death.
fn before(days: i64) -> String {
    (death() - Duration::days(days)).to_string()
}

/// A hand-made decedent: its resources and what the test expects of each of the six
/// indicators (in the order of `MEASURES`), and whether it had a coach.
struct Case {
    id: &'static str,
    resources: Vec<Value>,
    expect: [bool; 6],
    coach: bool,
}

fn encounter(id: &str, patient: &str, class: &str, start: &str, end: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": ACT, "code": class},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": start, "end": end}})
}

fn procedure(id: &str, patient: &str, code: &str, at: &str) -> Value {
    json!({"resourceType": "Procedure", "id": id, "status": "completed",
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performedDateTime": at})
}

/// Palliative care well before death (40 days): the palliative-care indicator does not hold.
fn early_palliative_care(patient: &str) -> Value {
    procedure(&format!("{patient}-pc"), patient, "103735009", &before(40))
}

fn coach_team(patient: &str, coach: &str, from_days: i64) -> Value {
    json!({"resourceType": "CareTeam", "id": format!("{patient}-team"), "status": "active",
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": before(from_days)},
        "participant": [{"role": [{"coding": [{"system": CS, "code": "coach"}]}],
                         "member": {"reference": format!("Practitioner/{coach}")}}]})
}

fn cases() -> Vec<Case> {
    let ed = |p: &'static str, days: [i64; 2], expect: bool| Case {
        id: p,
        resources: vec![
            encounter(
                &format!("{p}-e1"),
                p,
                "EMER",
                &format!("{}T08:00:00Z", before(days[0])),
                &format!("{}T11:00:00Z", before(days[0])),
            ),
            encounter(
                &format!("{p}-e2"),
                p,
                "EMER",
                &format!("{}T20:00:00+01:00", before(days[1])),
                &format!("{}T23:00:00+01:00", before(days[1])),
            ),
            early_palliative_care(p),
        ],
        expect: [expect, false, false, false, false, false],
        coach: false,
    };
    let chemo = |p: &'static str, days: i64, expect: bool| Case {
        id: p,
        resources: vec![
            procedure(&format!("{p}-chemo"), p, "367336001", &before(days)),
            early_palliative_care(p),
            coach_team(p, "eol-coach", 120),
        ],
        expect: [false, false, false, expect, false, false],
        coach: true,
    };
    let pc = |p: &'static str, days: i64, expect: bool| Case {
        id: p,
        resources: vec![procedure(&format!("{p}-pc"), p, "103735009", &before(days))],
        expect: [false, false, false, false, false, expect],
        coach: false,
    };
    let mut icu = encounter(
        "eol-icu-30-e",
        "eol-icu-30",
        "IMP",
        &before(30),
        &before(25),
    );
    icu["location"] = json!([{"location": {"reference": "Location/eol-test-icu"}}]);
    let mut icu_31 = encounter(
        "eol-icu-31-e",
        "eol-icu-31",
        "IMP",
        &before(31),
        &before(29),
    );
    icu_31["serviceType"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "174"}]});
    let mut dying = encounter(
        "eol-hosp-e",
        "eol-hosp",
        "ACUTE",
        &before(2),
        &format!("{}T16:00:00Z", before(0)),
    );
    dying["hospitalization"] = json!({"dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "exp"}]}});
    vec![
        ed("eol-ed-29", [29, 29], true),
        ed("eol-ed-30", [30, 0], true),
        ed("eol-ed-31", [31, 0], false),
        Case {
            id: "eol-adm-30",
            resources: vec![
                encounter(
                    "eol-adm-30-a",
                    "eol-adm-30",
                    "IMP",
                    &before(30),
                    &before(27),
                ),
                encounter("eol-adm-30-b", "eol-adm-30", "IMP", &before(10), &before(9)),
                early_palliative_care("eol-adm-30"),
            ],
            expect: [false, true, false, false, false, false],
            coach: false,
        },
        Case {
            id: "eol-adm-31",
            resources: vec![
                encounter(
                    "eol-adm-31-a",
                    "eol-adm-31",
                    "IMP",
                    &before(31),
                    &before(27),
                ),
                encounter("eol-adm-31-b", "eol-adm-31", "IMP", &before(10), &before(9)),
                early_palliative_care("eol-adm-31"),
            ],
            expect: [false, false, false, false, false, false],
            coach: false,
        },
        Case {
            id: "eol-icu-30",
            resources: vec![
                icu,
                early_palliative_care("eol-icu-30"),
                coach_team("eol-icu-30", "eol-coach", 60),
            ],
            expect: [false, false, true, false, false, false],
            coach: true,
        },
        Case {
            id: "eol-icu-31",
            resources: vec![icu_31, early_palliative_care("eol-icu-31")],
            expect: [false, false, false, false, false, false],
            coach: false,
        },
        Case {
            id: "eol-adm-29",
            resources: vec![
                encounter(
                    "eol-adm-29-a",
                    "eol-adm-29",
                    "ACUTE",
                    &before(29),
                    &before(28),
                ),
                encounter("eol-adm-29-b", "eol-adm-29", "IMP", &before(10), &before(9)),
                early_palliative_care("eol-adm-29"),
            ],
            expect: [false, true, false, false, false, false],
            coach: false,
        },
        Case {
            id: "eol-icu-29",
            resources: vec![
                {
                    let mut e = encounter(
                        "eol-icu-29-e",
                        "eol-icu-29",
                        "IMP",
                        &before(29),
                        &before(27),
                    );
                    e["serviceType"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "198"}]});
                    e
                },
                early_palliative_care("eol-icu-29"),
                coach_team("eol-icu-29", "eol-coach", 30),
            ],
            expect: [false, false, true, false, false, false],
            coach: true,
        },
        Case {
            id: "eol-hospice",
            // Hospice care (a care plan) from 10 days before death: neither missing nor late.
            resources: vec![json!({"resourceType": "CarePlan", "id": "eol-hospice-plan",
                "status": "active", "intent": "plan",
                "category": [{"coding": [{"system": SCT, "code": "385763009"}]}],
                "subject": {"reference": "Patient/eol-hospice"},
                "period": {"start": before(10)}})],
            expect: [false, false, false, false, false, false],
            coach: false,
        },
        chemo("eol-chemo-13", 13, true),
        chemo("eol-chemo-14", 14, true),
        chemo("eol-chemo-15", 15, false),
        Case {
            id: "eol-hosp",
            resources: vec![dying, early_palliative_care("eol-hosp")],
            expect: [false, false, false, false, true, false],
            coach: false,
        },
        pc("eol-pc-2", 2, true),
        pc("eol-pc-3", 3, false),
        Case {
            id: "eol-no-pc",
            // A coach whose team ended 91 days before death: no coach in the last 90 days.
            resources: vec![{
                let mut t = coach_team("eol-no-pc", "eol-coach", 200);
                t["period"]["end"] = json!(before(91));
                t
            }],
            expect: [false, false, false, false, false, true],
            coach: false,
        },
    ]
}

/// Stores the cases, an ICU Location, the coach, and patients that are in no population.
async fn load(server: &TestServer) -> Vec<Case> {
    put(
        server,
        json!({"resourceType": "Practitioner", "id": "eol-coach"}),
    )
    .await;
    put(server, json!({"resourceType": "Location", "id": "eol-test-icu", "status": "active",
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "ICU"}]}]})).await;
    let cases = cases();
    for case in &cases {
        put(
            server,
            json!({"resourceType": "Patient", "id": case.id,
            "deceasedDateTime": format!("{}T10:30:00+02:00", death())}),
        )
        .await;
        for r in &case.resources {
            put(server, r.clone()).await;
        }
    }
    // Deceased without a date, died before the period, alive: in no population.
    put(
        server,
        json!({"resourceType": "Patient", "id": "eol-bool", "deceasedBoolean": true}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "Patient", "id": "eol-2024", "deceasedDateTime": "2024-12-31"}),
    )
    .await;
    put(
        server,
        json!({"resourceType": "Patient", "id": "eol-alive", "deceasedBoolean": false}),
    )
    .await;
    for p in ["eol-bool", "eol-2024", "eol-alive"] {
        for i in 0..2 {
            put(
                server,
                encounter(&format!("{p}-e{i}"), p, "EMER", "2024-12-30", "2024-12-30"),
            )
            .await;
        }
    }
    cases
}

/// The count of population `code` in a group or stratum.
fn count(populations: &Value, code: &str) -> u64 {
    populations["population"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {populations}"))["count"]
        .as_u64()
        .unwrap()
}

fn expected(case: &Case, measure: usize) -> bool {
    if measure == 6 {
        case.expect.iter().any(|e| *e)
    } else {
        case.expect[measure]
    }
}

both_stores!(
    each_indicator_counts_the_decedents_at_its_window_edges,
    |server| {
        let cases = load(&server).await;
        for (m, measure) in MEASURES.iter().enumerate() {
            let reply = server
                .client
                .get(&format!(
                    "Measure/signaal-{measure}/$evaluate-measure?{PERIOD}"
                ))
                .await
                .unwrap();
            let report = expect_status(&reply, 200);
            assert_eq!(report["resourceType"], "MeasureReport");
            assert_eq!(report["type"], "summary");
            assert_eq!(
                report["measure"],
                format!("https://signaal.dev/fhir/Measure/{measure}")
            );
            let group = &report["group"][0];
            let numerator = cases.iter().filter(|c| expected(c, m)).count() as u64;
            assert_eq!(
                count(group, "initial-population"),
                cases.len() as u64,
                "{measure}"
            );
            assert_eq!(count(group, "denominator"), cases.len() as u64, "{measure}");
            assert_eq!(count(group, "numerator"), numerator, "{measure}");
            let strata = group["stratifier"][0]["stratum"].as_array().unwrap();
            assert_eq!(
                strata.len(),
                2,
                "{measure}: a stratum with and one without a coach"
            );
            for stratum in strata {
                let coach = stratum["value"]["coding"][0]["code"] == "Y";
                let members: Vec<&Case> = cases.iter().filter(|c| c.coach == coach).collect();
                assert_eq!(
                    count(stratum, "denominator"),
                    members.len() as u64,
                    "{measure}"
                );
                assert_eq!(
                    count(stratum, "numerator"),
                    members.iter().filter(|c| expected(c, m)).count() as u64,
                    "{measure} coach={coach}"
                );
            }
        }
    }
);

both_stores!(the_decedents_are_found_by_death_date, |server| {
    let cases = load(&server).await;
    let mut decedents: Vec<String> = cases.iter().map(|c| c.id.to_owned()).collect();
    decedents.sort();
    // Died 2025-06-15T10:30:00+02:00: on that day, also in UTC.
    assert_eq!(
        common::ids(&server, "Patient?death-date=2025-06-15&_count=100").await,
        decedents
    );
    assert_eq!(
        common::ids(&server, "Patient?death-date=lt2025-01-01&_count=100").await,
        ["eol-2024"]
    );
    assert!(
        common::ids(&server, "Patient?death-date=2025-06-14&_count=100")
            .await
            .is_empty()
    );
    // deceasedBoolean has no date to match.
    let dated = common::ids(&server, "Patient?death-date=ge1900&_count=100").await;
    assert_eq!(dated.len(), cases.len() + 1);
    assert!(!dated.iter().any(|p| p == "eol-bool" || p == "eol-alive"));
});

both_stores!(
    a_subject_list_names_the_patients_of_each_population,
    |server| {
        let cases = load(&server).await;
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": "2025-06"},
            {"name": "periodEnd", "valueDate": "2025-06-15"},
            {"name": "reportType", "valueCode": "subject-list"},
        ]});
        let reply = server
            .client
            .post("Measure/signaal-eol-chemotherapy/$evaluate-measure", &body)
            .await
            .unwrap();
        let report = expect_status(&reply, 200);
        assert_eq!(report["type"], "subject-list");
        let numerator = report["group"][0]["population"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["code"]["coding"][0]["code"] == "numerator")
            .unwrap();
        let reference = numerator["subjectResults"]["reference"].as_str().unwrap();
        let list = report["contained"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| format!("#{}", r["id"].as_str().unwrap()) == reference)
            .unwrap();
        assert_eq!(list["resourceType"], "List");
        let mut listed: Vec<&str> = list["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["item"]["reference"].as_str().unwrap())
            .collect();
        listed.sort();
        let mut wanted: Vec<String> = cases
            .iter()
            .filter(|c| c.expect[3])
            .map(|c| format!("Patient/{}", c.id))
            .collect();
        wanted.sort();
        assert_eq!(listed, wanted);
        // A period that ends the day before the deaths has nobody.
        let reply = server
            .client
            .get("Measure/signaal-eol-chemotherapy/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-06-14")
            .await
            .unwrap();
        let report = expect_status(&reply, 200);
        assert_eq!(count(&report["group"][0], "initial-population"), 0);
        assert!(report["group"][0].get("measureScore").is_none());
    }
);

both_stores!(a_subject_report_evaluates_one_patient, |server| {
    load(&server).await;
    let reply = server
        .client
        .get(&format!(
            "Measure/signaal-eol-ed-visits/$evaluate-measure?{PERIOD}&subject=Patient/eol-ed-30"
        ))
        .await
        .unwrap();
    let report = expect_status(&reply, 200);
    assert_eq!(report["type"], "individual");
    assert_eq!(report["subject"]["reference"], "Patient/eol-ed-30");
    assert_eq!(count(&report["group"][0], "numerator"), 1);
    // Deceased without a date: in no population, also when asked for alone.
    let reply = server
        .client
        .get(&format!(
            "Measure/signaal-eol-ed-visits/$evaluate-measure?{PERIOD}&subject=eol-bool&reportType=subject"
        ))
        .await
        .unwrap();
    assert_eq!(
        count(
            &expect_status(&reply, 200)["group"][0],
            "initial-population"
        ),
        0
    );
});

both_stores!(
    bad_requests_are_refused_with_an_operation_outcome,
    |server| {
        let path = "Measure/signaal-eol-any/$evaluate-measure";
        for (query, status) in [
            ("periodEnd=2025", 400),
            ("periodStart=2025&periodEnd=2024", 400),
            ("periodStart=2025-13&periodEnd=2025", 400),
            ("periodStart=2025&periodEnd=2025&reportType=everything", 400),
            ("periodStart=2025&periodEnd=2025&reportType=subject", 400),
            (
                "periodStart=2025&periodEnd=2025&practitioner=Practitioner/x",
                400,
            ),
            (
                "periodStart=2025&periodEnd=2025&subject=Patient/nobody",
                404,
            ),
        ] {
            let reply = server.client.get(&format!("{path}?{query}")).await.unwrap();
            expect_status(&reply, status);
        }
        let reply = server
            .client
            .get("Measure/nothing/$evaluate-measure?periodStart=2025&periodEnd=2025")
            .await
            .unwrap();
        expect_status(&reply, 404);
        // A Measure of a client's own: Signaal does not run its logic.
        put(
            &server,
            json!({"resourceType": "Measure", "id": "own", "status": "active",
        "url": "http://example.org/Measure/own"}),
        )
        .await;
        let reply = server
            .client
            .get("Measure/own/$evaluate-measure?periodStart=2025&periodEnd=2025")
            .await
            .unwrap();
        expect_status(&reply, 422);
        let reply = server.client.delete(path).await.unwrap();
        expect_status(&reply, 405);
        let reply = server
            .client
            .post(path, &json!({"resourceType": "Patient"}))
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
);

both_stores!(the_capability_statement_names_evaluate_measure, |server| {
    let statement = expect_status(&server.client.get("metadata").await.unwrap(), 200);
    let measure = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Measure")
        .unwrap();
    let op = measure["operation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "evaluate-measure")
        .unwrap();
    let definition = op["definition"].as_str().unwrap();
    let found = common::matches(&server, &format!("OperationDefinition?url={definition}")).await;
    assert_eq!(found.len(), 1);
    // Every indicator is a shipped Measure, read-only.
    for measure in MEASURES {
        let read = expect_status(
            &server
                .client
                .get(&format!("Measure/signaal-{measure}"))
                .await
                .unwrap(),
            200,
        );
        assert!(read["description"].as_str().unwrap().contains("Earle CC"));
    }
});

/// Synthea's practitioner and hospital Bundles (which the patients' Bundles reference) and
/// the patient Bundles with a deceased patient (the smallest `n`), or `None` without the
/// archive.
fn synthea_decedents(n: usize) -> Option<(Vec<Value>, Vec<Value>)> {
    let path = common::shared_fixture(
        "SYNTHEA_ARCHIVE",
        "synthea/synthea-r4-300.tar.gz",
        "download the SMART on FHIR Synthea R4 sample",
    )?;
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = Vec::new();
    let mut shared = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        if name.starts_with("practitionerInformation") || name.starts_with("hospitalInformation") {
            shared.push(serde_json::from_str(&text).unwrap());
            continue;
        }
        if !text.contains("\"deceasedDateTime\"") {
            continue;
        }
        found.push((text.len(), name, text));
    }
    found.sort();
    let patients = found
        .into_iter()
        .take(n)
        .map(|(_, _, t)| serde_json::from_str(&t).unwrap())
        .collect();
    Some((shared, patients))
}

both_stores!(synthea_decedents_are_evaluated_without_errors, |server| {
    let Some((shared, bundles)) = synthea_decedents(3) else {
        return;
    };
    for bundle in &shared {
        expect_status(&server.client.post("", bundle).await.unwrap(), 200);
    }
    let mut deaths = Vec::new();
    for bundle in &bundles {
        expect_status(&server.client.post("", bundle).await.unwrap(), 200);
        for e in bundle["entry"].as_array().unwrap() {
            if e["resource"]["resourceType"] == "Patient" {
                deaths.push(
                    e["resource"]["deceasedDateTime"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    assert_eq!(deaths.len(), 3);
    for measure in MEASURES {
        let reply = server
            .client
            .get(&format!(
                "Measure/signaal-{measure}/$evaluate-measure?periodStart=1900&periodEnd=2100&reportType=subject-list"
            ))
            .await
            .unwrap();
        let report = expect_status(&reply, 200);
        let group = &report["group"][0];
        assert_eq!(count(group, "initial-population"), 3, "{measure}");
        assert!(count(group, "numerator") <= 3);
    }
});
