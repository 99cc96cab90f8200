//! Utilisation rank: who used the most unplanned hospital care in the last 12 months.
//!
//! Programmes that find high-need, high-cost patients rank them by prior utilisation (e.g.
//! Billings J, Dixon J, Mijanovich T, Wennberg D. Case finding for patients at risk of
//! readmission to hospital. BMJ 2006;333:327; the top 1% of users account for about a third of
//! unplanned admissions). Signaal's score, documented here and in docs/scoring.md, is
//!
//! `score = 3 × unplanned admissions + 2 × emergency department visits + 0.5 × bed-days`
//!
//! over the 12 months before scoring: an unplanned (emergent, see `lace::emergent`) inpatient
//! admission weighs most, an ED visit less, and every day in a hospital bed adds half a point
//! (bed-days count the part of each inpatient stay inside the window; a stay still in progress
//! counts up to now). Patients are ranked across the whole population at each full re-score;
//! those in the top fraction (default 1%) with a score above 0 are high utilisers.

use super::lace::{emergent, months_before};
use super::{encounter_class, encounter_happened, instant, key, Item, Record, Risk, Score, DAY_MS};

pub const ADMISSION_WEIGHT: f64 = 3.0;
pub const ED_WEIGHT: f64 = 2.0;
pub const BED_DAY_WEIGHT: f64 = 0.5;

/// Whether the record holds anything this model reads (an Encounter that happened): without
/// one, a score of 0 says nothing about the patient's use of care, so no assessment is written.
pub fn applies(record: &Record) -> bool {
    record.of_type("Encounter").any(encounter_happened)
}

/// A patient's utilisation score at `now`: `Risk::Moderate` when above 0; `rank` decides who is
/// `High`.
pub fn score(record: &Record, now: i64) -> Score {
    let since = months_before(now, 12);
    let mut unplanned = Vec::new();
    let mut ed = Vec::new();
    let mut bed_days = 0.0;
    let mut stays = Vec::new();
    for e in record
        .of_type("Encounter")
        .filter(|e| encounter_happened(e))
    {
        let Some(start) = instant(&e["period"]["start"]) else {
            continue;
        };
        let end = instant(&e["period"]["end"]).unwrap_or(now).min(now);
        match encounter_class(e) {
            Some("EMER") if start >= since && start <= now => ed.push(key(e)),
            Some("IMP") => {
                if start >= since && start <= now && emergent(record, e).is_some() {
                    unplanned.push(key(e));
                }
                let inside = (end - start.max(since)).max(0);
                if inside > 0 {
                    bed_days += inside as f64 / DAY_MS as f64;
                    stays.push(key(e));
                }
            }
            _ => {}
        }
    }
    let bed_days = (bed_days * 10.0).round() / 10.0;
    let items = vec![
        Item::new(
            ADMISSION_WEIGHT * unplanned.len() as f64,
            format!(
                "{} unplanned admission(s) in 12 months × {ADMISSION_WEIGHT}",
                unplanned.len()
            ),
            unplanned,
        ),
        Item::new(
            ED_WEIGHT * ed.len() as f64,
            format!(
                "{} emergency department visit(s) in 12 months × {ED_WEIGHT}",
                ed.len()
            ),
            ed,
        ),
        Item::new(
            BED_DAY_WEIGHT * bed_days,
            format!("{bed_days} bed-day(s) in 12 months × {BED_DAY_WEIGHT}"),
            stays,
        ),
    ];
    let total: f64 = items.iter().map(|i| i.points).sum();
    Score {
        model: "utilisation",
        score: total,
        risk: if total > 0.0 {
            Risk::Moderate
        } else {
            Risk::Low
        },
        items,
        encounter: None,
        occurrence: now,
    }
}

/// The lowest score that is in the top `fraction` of `scores` (at least one patient), or `None`
/// when nobody used any care. Ties with that score are in too.
pub fn threshold(scores: &[f64], fraction: f64) -> Option<f64> {
    let mut positive: Vec<f64> = scores.iter().copied().filter(|s| *s > 0.0).collect();
    if positive.is_empty() {
        return None;
    }
    positive.sort_by(|a, b| b.total_cmp(a));
    let n = ((scores.len() as f64 * fraction).ceil() as usize).clamp(1, positive.len());
    Some(positive[n - 1])
}

/// Whether a score makes a high utiliser, given the population threshold.
pub fn is_high(score: f64, threshold: Option<f64>) -> bool {
    threshold.is_some_and(|t| score > 0.0 && score >= t)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{encounter, ms};
    use super::*;

    #[test]
    fn admissions_visits_and_bed_days_add_up() {
        let record = Record::new(
            "p",
            vec![
                encounter("ed", "EMER", "2024-03-01T09:00:00Z", "2024-03-01T10:00:00Z"),
                encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-05T10:00:00Z"),
                encounter("b", "IMP", "2024-06-01T10:00:00Z", "2024-06-03T10:00:00Z"),
                encounter(
                    "old",
                    "EMER",
                    "2023-01-01T09:00:00Z",
                    "2023-01-01T10:00:00Z",
                ),
            ],
        );
        let s = score(&record, ms("2024-12-01T00:00:00Z"));
        // 1 unplanned admission (a, through the ED), 1 ED visit in the window, 6 bed-days.
        assert_eq!(s.score, 3.0 + 2.0 + 3.0, "{:#?}", s.items);
        assert_eq!(s.items[0].basis, vec!["Encounter/a"]);
    }

    #[test]
    fn a_stay_across_the_window_start_counts_only_inside() {
        let record = Record::new(
            "p",
            vec![encounter(
                "a",
                "IMP",
                "2023-11-25T00:00:00Z",
                "2023-12-05T00:00:00Z",
            )],
        );
        let s = score(&record, ms("2024-12-01T00:00:00Z"));
        assert_eq!(s.items[2].why, "4 bed-day(s) in 12 months × 0.5");
        assert_eq!(s.items[0].points, 0.0, "elective and before the window");
    }

    #[test]
    fn the_top_one_percent_are_high_utilisers() {
        let mut scores = vec![0.0; 150];
        scores[3] = 20.0;
        scores[7] = 12.0;
        scores[9] = 3.0;
        // 1% of 150 is 1.5: the top 2 patients.
        let t = threshold(&scores, 0.01);
        assert_eq!(t, Some(12.0));
        assert!(is_high(20.0, t) && is_high(12.0, t) && !is_high(3.0, t));
        assert_eq!(threshold(&[0.0, 0.0], 0.01), None);
        assert!(!is_high(0.0, Some(0.0)));
    }
}
