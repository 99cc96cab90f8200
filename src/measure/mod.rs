//! Quality measures over the population: the indicators of potentially inappropriate
//! end-of-life care (Earle et al., J Clin Oncol 2003 and Int J Qual Health Care 2005, as
//! adopted in the Netherlands by Boddaert et al., BMJ Support Palliat Care 2022), each a
//! `Measure` Signaal ships (`conformance/measure-eol-*.json`, written by
//! `scripts/generate_palliative.py`, whose descriptions are the definitions implemented here).
//!
//! Pure functions: [`indicators`] decides, for one decedent's record and date of death,
//! whether each indicator's numerator holds and whether the patient had a coach;
//! [`report`] turns the results into a `MeasureReport`. Reading the store is the job of
//! `interaction::evaluate_measure`.

pub mod indicators;
pub mod report;

use chrono::NaiveDate;
use serde_json::Value;

use crate::fhir::canonical::BASE;

/// The end-of-life care indicators, by the id of their Measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indicator {
    EdVisits,
    HospitalAdmissions,
    IcuAdmission,
    Chemotherapy,
    DeathInHospital,
    NoOrLatePalliativeCare,
    /// Any of the six above.
    Any,
}

impl Indicator {
    /// The six indicators the composite [`Indicator::Any`] combines.
    pub const PARTS: [Indicator; 6] = [
        Indicator::EdVisits,
        Indicator::HospitalAdmissions,
        Indicator::IcuAdmission,
        Indicator::Chemotherapy,
        Indicator::DeathInHospital,
        Indicator::NoOrLatePalliativeCare,
    ];

    pub const ALL: [Indicator; 7] = [
        Indicator::EdVisits,
        Indicator::HospitalAdmissions,
        Indicator::IcuAdmission,
        Indicator::Chemotherapy,
        Indicator::DeathInHospital,
        Indicator::NoOrLatePalliativeCare,
        Indicator::Any,
    ];

    /// The id of its Measure (`conformance/measure-{id}.json`).
    pub fn id(self) -> &'static str {
        match self {
            Indicator::EdVisits => "eol-ed-visits",
            Indicator::HospitalAdmissions => "eol-hospital-admissions",
            Indicator::IcuAdmission => "eol-icu-admission",
            Indicator::Chemotherapy => "eol-chemotherapy",
            Indicator::DeathInHospital => "eol-death-in-hospital",
            Indicator::NoOrLatePalliativeCare => "eol-no-or-late-palliative-care",
            Indicator::Any => "eol-any",
        }
    }

    /// The canonical URL of its Measure.
    pub fn url(self) -> String {
        format!("{BASE}/Measure/{}", self.id())
    }

    /// The indicator a Measure's canonical `url` names, if Signaal implements it.
    pub fn from_url(url: &str) -> Option<Indicator> {
        Indicator::ALL.into_iter().find(|i| i.url() == url)
    }
}

/// The last 30 days of life: 0 to 30 days before the date of death.
pub const LAST_MONTH_DAYS: i64 = 30;
/// Chemotherapy in the last 14 days of life: 0 to 14 days before death.
pub const LAST_TWO_WEEKS_DAYS: i64 = 14;
/// Palliative care that first started fewer days than this before death is late.
pub const LATE_PALLIATIVE_CARE_DAYS: i64 = 3;
/// A coach counts when the team was there in the 90 days before death.
pub const COACH_WINDOW_DAYS: i64 = 90;

/// The calendar date of a FHIR date or dateTime as written (its own time zone): `None` for a
/// value less precise than a day (`2024`, `2024-03`) or not a date.
pub fn date(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    let day = text.get(..10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// The date of death: `Patient.deceasedDateTime` to the day. A patient with
/// `deceasedBoolean` only (or a less precise dateTime) has none: no window can be counted
/// back from it, and such a patient is in no population.
pub fn date_of_death(patient: &Value) -> Option<NaiveDate> {
    date(&patient["deceasedDateTime"])
}

/// Whole calendar days from `event` to `death` (0: the day of death; negative: after it).
pub fn days_before(death: NaiveDate, event: NaiveDate) -> i64 {
    (death - event).num_days()
}

/// Whether `event` is in the last `days` days of life (0..=`days` days before death).
pub fn within(death: NaiveDate, event: NaiveDate, days: i64) -> bool {
    (0..=days).contains(&days_before(death, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_date_of_death_is_deceased_date_time_to_the_day() {
        let p = json!({"resourceType": "Patient", "deceasedDateTime": "2024-03-31T23:30:00-05:00"});
        assert_eq!(date_of_death(&p), Some(d("2024-03-31")));
        assert_eq!(
            date_of_death(&json!({"deceasedBoolean": true})),
            None,
            "no date: no window"
        );
        assert_eq!(date_of_death(&json!({"deceasedDateTime": "2024-03"})), None);
    }

    #[test]
    fn windows_count_calendar_days_back_from_the_date_of_death() {
        let death = d("2024-03-31");
        assert!(within(death, d("2024-03-31"), 30));
        assert!(within(death, d("2024-03-01"), 30), "30 days before");
        assert!(!within(death, d("2024-02-29"), 30), "31 days before");
        assert!(!within(death, d("2024-04-01"), 30), "after death");
        assert!(within(death, d("2024-03-17"), 14));
        assert!(!within(death, d("2024-03-16"), 14));
    }

    #[test]
    fn every_indicator_has_its_shipped_measure() {
        for indicator in Indicator::ALL {
            let measure = crate::fhir::canonical::all()
                .iter()
                .find(|r| r["resourceType"] == "Measure" && r["url"] == indicator.url())
                .unwrap_or_else(|| panic!("{} is shipped", indicator.id()));
            crate::fhir::validate::validate(measure, "Measure").unwrap();
            assert_eq!(Indicator::from_url(&indicator.url()), Some(indicator));
        }
    }
}
