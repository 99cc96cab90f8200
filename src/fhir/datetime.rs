//! FHIR dates and instants as the server stores and compares them: milliseconds since the Unix
//! epoch (UTC), and a partial date as the half-open range of instants it covers.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The current instant in ms, the resolution of `meta.lastUpdated`.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `meta.lastUpdated`: a FHIR instant with millisecond precision in UTC.
/// (Written field by field: every read formats one, and chrono's `format` parses its pattern
/// each time.)
pub fn format_instant(ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    let t = to_utc(ms);
    if !(0..=9999).contains(&t.year()) {
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    )
}

/// An HTTP-date (RFC 9110) for `Last-Modified`.
pub fn format_http_date(ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = to_utc(ms);
    if !(0..=9999).contains(&t.year()) {
        return t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    }
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an HTTP-date (`If-Modified-Since`) to ms.
pub fn parse_http_date(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Whether the date part of a FHIR date, dateTime or instant (already matching its regex) is a
/// day of the calendar: the regex allows any day 01–31 in any month, so `2020-02-30` and
/// `2021-02-29` (not a leap year) match it. A year, or a year and month, always is.
pub fn is_calendar_date(value: &str) -> bool {
    let date = value.split_once('T').map_or(value, |(d, _)| d);
    let mut fields = date.split('-');
    let (Some(year), Some(month), Some(day)) = (fields.next(), fields.next(), fields.next()) else {
        return true;
    };
    match (
        year.parse::<i32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) {
        (Ok(y), Ok(m), Ok(d)) => NaiveDate::from_ymd_opt(y, m, d).is_some(),
        // Not the regex's shape: the regex reports it.
        _ => true,
    }
}

/// The half-open range `[lo, hi)` in ms covered by a FHIR date, dateTime or instant at its
/// precision: `2024` is the whole year, `2024-03-01T10:00` the whole minute. A value without a
/// time zone is taken as UTC.
pub fn parse_range(value: &str) -> Result<(i64, i64), String> {
    let bad = || format!("'{value}' is not a valid FHIR date, dateTime or instant");
    let (date_part, time_part) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let fields: Vec<&str> = date_part.split('-').collect();
    let num = |s: &str, len: usize| -> Result<u32, String> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let year = num(fields.first().copied().unwrap_or(""), 4)? as i32;
    let month = fields.get(1).map(|m| num(m, 2)).transpose()?;
    let day = fields.get(2).map(|d| num(d, 2)).transpose()?;
    if fields.len() > 3 || (time_part.is_some() && day.is_none()) {
        return Err(bad());
    }
    let start_date =
        NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1)).ok_or_else(bad)?;
    let Some(time) = time_part else {
        let end_date = match (month, day) {
            (None, _) => NaiveDate::from_ymd_opt(year + 1, 1, 1),
            (Some(12), None) => NaiveDate::from_ymd_opt(year + 1, 1, 1),
            (Some(m), None) => NaiveDate::from_ymd_opt(year, m + 1, 1),
            (Some(_), Some(_)) => start_date.succ_opt(),
        }
        .ok_or_else(bad)?;
        let ms = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
        };
        return Ok((
            ms(start_date).ok_or_else(bad)?,
            ms(end_date).ok_or_else(bad)?,
        ));
    };
    // Split off the zone: `Z`, `+hh:mm` or `-hh:mm`.
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, FixedOffset::east_opt(0))
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let (c, zone) = time.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        let secs = (num(h, 2)? * 3600 + num(m, 2)? * 60) as i32;
        if num(h, 2)? > 14 || num(m, 2)? > 59 {
            return Err(bad());
        }
        (c, FixedOffset::east_opt(sign * secs))
    } else {
        (time, FixedOffset::east_opt(0))
    };
    let offset = offset.ok_or_else(bad)?;
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (hms, Some(f)),
        Some(_) => return Err(bad()),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let hour = num(parts.first().copied().unwrap_or(""), 2)?;
    let minute = num(parts.get(1).copied().unwrap_or(""), 2)?;
    let second = parts.get(2).map(|s| num(s, 2)).transpose()?;
    if parts.len() > 3 || (fraction.is_some() && second.is_none()) {
        return Err(bad());
    }
    let mut millis = 0i64;
    let width = match (second, fraction) {
        (None, _) => Duration::minutes(1),
        (Some(_), None) => Duration::seconds(1),
        (Some(_), Some(f)) => {
            let digits: String = f.chars().take(3).collect();
            millis = format!("{digits:0<3}").parse::<i64>().map_err(|_| bad())?;
            Duration::milliseconds(10i64.pow(3u32.saturating_sub(f.len().min(3) as u32)))
        }
    };
    let naive: NaiveDateTime = start_date
        .and_hms_opt(hour, minute, second.unwrap_or(0))
        .ok_or_else(bad)?;
    let local = offset
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(bad)?;
    let lo = local.timestamp_millis() + millis;
    Ok((lo, lo + width.num_milliseconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field-by-field formatting is what chrono's patterns give.
    #[test]
    fn instants_and_http_dates_are_formatted_as_the_patterns_say() {
        for ms in [
            0,
            1,
            999,
            1_733_500_000_123,
            951_782_400_000,
            -1,
            253_402_300_799_999,
            -62_167_219_200_000,
        ] {
            let t = to_utc(ms);
            assert_eq!(
                format_instant(ms),
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
            assert_eq!(
                format_http_date(ms),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
        }
    }

    fn range(s: &str) -> (String, String) {
        let (lo, hi) = parse_range(s).unwrap();
        (format_instant(lo), format_instant(hi))
    }

    #[test]
    fn only_days_of_the_calendar_are_dates() {
        for real in [
            "2024",
            "2021-02",
            "2024-02-29",
            "2000-02-29",
            "2021-02-28T23:59:60Z",
            "1999-12-31",
        ] {
            assert!(is_calendar_date(real), "{real}");
        }
        for impossible in [
            "2020-02-30",
            "2021-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-06-31T10:00:00Z",
        ] {
            assert!(!is_calendar_date(impossible), "{impossible}");
        }
    }

    #[test]
    fn a_year_covers_the_whole_year() {
        assert_eq!(
            range("2024"),
            (
                "2024-01-01T00:00:00.000Z".into(),
                "2025-01-01T00:00:00.000Z".into()
            )
        );
    }

    #[test]
    fn december_ends_at_the_next_year() {
        assert_eq!(range("2024-12").1, "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_day_covers_24_hours() {
        assert_eq!(
            range("2024-02-29"),
            (
                "2024-02-29T00:00:00.000Z".into(),
                "2024-03-01T00:00:00.000Z".into()
            )
        );
    }

    #[test]
    fn a_time_zone_shifts_to_utc() {
        assert_eq!(
            range("2024-03-01T10:00:00+02:00").0,
            "2024-03-01T08:00:00.000Z"
        );
    }

    #[test]
    fn fractions_set_the_precision() {
        assert_eq!(
            range("2024-03-01T10:00:00.5Z"),
            (
                "2024-03-01T10:00:00.500Z".into(),
                "2024-03-01T10:00:00.600Z".into()
            )
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "20",
            "2024-13",
            "2024-02-30",
            "2024-01-01T25:00",
            "2024-01-01T10",
            "abc",
            "2024-01-01T10:00:00+2:00",
            "2024-01-01T10:00:00.Z",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
