//! A `MeasureReport` (R4) from the per-decedent results of one indicator: the counts of the
//! initial population, denominator and numerator, the proportion as `measureScore`, the
//! strata of `coach-last-90-days`, and for a subject-list report a contained `List` of the
//! patients of each population (`population.subjectResults`).

use serde_json::{json, Value};

use crate::fhir::canonical::BASE;

/// The kind of report asked for (`reportType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    /// R4 `population` (MeasureReport.type `summary`).
    Summary,
    SubjectList,
    /// One patient (MeasureReport.type `individual`).
    Individual,
}

impl ReportType {
    /// R4's codes (`subject`, `subject-list`, `population`) and `summary`, the
    /// MeasureReport.type name of a population report.
    pub fn parse(code: &str) -> Option<ReportType> {
        match code {
            "population" | "summary" => Some(ReportType::Summary),
            "subject-list" => Some(ReportType::SubjectList),
            "subject" | "individual" => Some(ReportType::Individual),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            ReportType::Summary => "summary",
            ReportType::SubjectList => "subject-list",
            ReportType::Individual => "individual",
        }
    }
}

/// One decedent's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub patient: String,
    pub numerator: bool,
    pub coach: bool,
}

const POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";
const YES_NO: &str = "http://terminology.hl7.org/CodeSystem/v2-0136";

/// What a report is about.
pub struct Request<'a> {
    pub measure_url: &'a str,
    pub kind: ReportType,
    /// `periodStart` and `periodEnd` as given.
    pub period: (&'a str, &'a str),
    /// The patient of an individual report.
    pub subject: Option<&'a str>,
    /// The instant of the report (`date`).
    pub date: &'a str,
}

fn population(
    code: &str,
    members: &[&Evaluated],
    list_prefix: &str,
    kind: ReportType,
    contained: &mut Vec<Value>,
) -> Value {
    let mut p = json!({
        "code": {"coding": [{"system": POPULATION, "code": code}]},
        "count": members.len(),
    });
    if kind == ReportType::SubjectList {
        let id = format!("{list_prefix}{code}");
        let entry: Vec<Value> = members
            .iter()
            .map(|e| json!({"item": {"reference": format!("Patient/{}", e.patient)}}))
            .collect();
        let mut list = json!({"resourceType": "List", "id": id, "status": "current",
            "mode": "snapshot", "title": format!("{list_prefix}{code}")});
        if !entry.is_empty() {
            list["entry"] = json!(entry);
        }
        contained.push(list);
        p["subjectResults"] = json!({"reference": format!("#{id}")});
    }
    p
}

/// The three populations and the score of a group or stratum.
fn populations(
    results: &[&Evaluated],
    list_prefix: &str,
    kind: ReportType,
    contained: &mut Vec<Value>,
) -> (Vec<Value>, Option<Value>) {
    let numerator: Vec<&Evaluated> = results.iter().copied().filter(|e| e.numerator).collect();
    let pops = vec![
        population("initial-population", results, list_prefix, kind, contained),
        population("denominator", results, list_prefix, kind, contained),
        population("numerator", &numerator, list_prefix, kind, contained),
    ];
    let score = (!results.is_empty()).then(|| {
        let value = numerator.len() as f64 / results.len() as f64;
        // Four decimals: a proportion, stable in text.
        let rounded = (value * 10_000.0).round() / 10_000.0;
        json!({"value": rounded})
    });
    (pops, score)
}

/// The MeasureReport of `results`.
pub fn measure_report(request: &Request, results: &[Evaluated]) -> Value {
    let mut contained = Vec::new();
    let all: Vec<&Evaluated> = results.iter().collect();
    let (pops, score) = populations(&all, "", request.kind, &mut contained);
    let mut group = json!({"population": pops});
    if let Some(score) = score {
        group["measureScore"] = score;
    }
    let strata: Vec<Value> = [("Y", "Yes", true), ("N", "No", false)]
        .into_iter()
        .map(|(code, display, coach)| {
            let members: Vec<&Evaluated> = results.iter().filter(|e| e.coach == coach).collect();
            let (pops, score) = populations(
                &members,
                &format!("coach-{code}-"),
                request.kind,
                &mut contained,
            );
            let mut stratum = json!({
                "value": {"coding": [{"system": YES_NO, "code": code, "display": display}]},
                "population": pops,
            });
            if let Some(score) = score {
                stratum["measureScore"] = score;
            }
            stratum
        })
        .collect();
    group["stratifier"] = json!([{
        "code": [{"coding": [{"system": format!("{BASE}/CodeSystem/signaal"), "code": "coach-last-90-days"}],
                  "text": "Had a coach in the last 90 days of life"}],
        "stratum": strata,
    }]);
    let mut report = json!({
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": request.kind.code(),
        "measure": request.measure_url,
        "date": request.date,
        "period": {"start": request.period.0, "end": request.period.1},
        "group": [group],
    });
    if let Some(subject) = request.subject {
        report["subject"] = json!({"reference": format!("Patient/{subject}")});
    }
    if !contained.is_empty() {
        report["contained"] = json!(contained);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(p: &str, numerator: bool, coach: bool) -> Evaluated {
        Evaluated {
            patient: p.into(),
            numerator,
            coach,
        }
    }

    #[test]
    fn counts_scores_and_strata() {
        let results = vec![e("a", true, true), e("b", false, true), e("c", true, false)];
        let request = Request {
            measure_url: "https://signaal.dev/fhir/Measure/eol-any",
            kind: ReportType::SubjectList,
            period: ("2024", "2024"),
            subject: None,
            date: "2024-06-01T00:00:00Z",
        };
        let report = measure_report(&request, &results);
        crate::fhir::validate::validate(&report, "MeasureReport").unwrap();
        let g = &report["group"][0];
        assert_eq!(g["population"][0]["count"], 3);
        assert_eq!(g["population"][2]["count"], 2);
        assert_eq!(g["measureScore"]["value"].as_f64(), Some(0.6667));
        let yes = &g["stratifier"][0]["stratum"][0];
        assert_eq!(yes["population"][2]["count"], 1);
        assert_eq!(yes["measureScore"]["value"].as_f64(), Some(0.5));
        let list_ref = g["population"][2]["subjectResults"]["reference"]
            .as_str()
            .unwrap();
        let list = report["contained"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| format!("#{}", l["id"].as_str().unwrap()) == list_ref)
            .unwrap();
        assert_eq!(list["entry"].as_array().unwrap().len(), 2);
    }
}
