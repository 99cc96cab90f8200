//! Partial dates, date-times and times with FHIRPath precision semantics.
//!
//! FHIR dates are partial (`2015`, `2015-02`, `2015-02-04T14:34+10:00`), and
//! FHIRPath comparison must respect that: `@2012-04-15 = @2012-04-15T10:00`
//! is *unknown* (empty), not false. Values stay as their text in [`Item`]s;
//! this module parses them on demand into components, compares them at their
//! common precision (normalising time zones when both sides have one) and
//! does calendar arithmetic for `date + quantity`.
//!
//! [`Item`]: super::Item

use std::cmp::Ordering;

use super::decimal::Decimal;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Date,
    DateTime,
    Time,
}

/// Components of a partial date/time. `prec` is the index of the last present
/// component: 0 year, 1 month, 2 day, 3 hour, 4 minute, 5 second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartialDt {
    pub kind: Kind,
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    /// Digits of fractional seconds as written (for output).
    frac_digits: usize,
    prec: u8,
    /// Offset from UTC in minutes, when given.
    tz: Option<i32>,
}

fn num(s: &str, len: usize) -> Option<(u32, &str)> {
    if s.len() < len || !s.as_bytes()[..len].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..len].parse().ok()?, &s[len..]))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl PartialDt {
    /// Parses text of the given kind (without a leading `@`). Accepts the
    /// FHIRPath literal forms (`2015T`) as well as FHIR JSON values.
    pub(crate) fn parse(text: &str, kind: Kind) -> Option<PartialDt> {
        let mut v = PartialDt {
            kind,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            frac_digits: 0,
            prec: 0,
            tz: None,
        };
        let mut rest = text;
        if kind != Kind::Time {
            let (y, r) = num(rest, 4)?;
            v.year = y as i64;
            rest = r;
            if let Some(r) = rest.strip_prefix('-') {
                let (m, r) = num(r, 2)?;
                v.month = m;
                v.prec = 1;
                rest = r;
                if let Some(r) = rest.strip_prefix('-') {
                    let (d, r) = num(r, 2)?;
                    v.day = d;
                    v.prec = 2;
                    rest = r;
                }
            }
            if !(1..=12).contains(&v.month) || v.day < 1 || v.day > days_in_month(v.year, v.month) {
                return None;
            }
            if kind == Kind::Date {
                return rest.is_empty().then_some(v);
            }
            match rest.strip_prefix('T') {
                Some(r) => rest = r,
                None => return rest.is_empty().then_some(v),
            }
            if rest.is_empty() {
                return Some(v);
            }
        }
        let (h, r) = num(rest, 2)?;
        v.hour = h;
        v.prec = 3;
        rest = r;
        if let Some(r) = rest.strip_prefix(':') {
            let (mi, r) = num(r, 2)?;
            v.minute = mi;
            v.prec = 4;
            rest = r;
            if let Some(r) = rest.strip_prefix(':') {
                let (s, r) = num(r, 2)?;
                v.second = s;
                v.prec = 5;
                rest = r;
                if let Some(r) = rest.strip_prefix('.') {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 {
                        return None;
                    }
                    let digits = &r[..n];
                    let ms: String = digits.chars().chain("000".chars()).take(3).collect();
                    v.millis = ms.parse().ok()?;
                    v.frac_digits = n;
                    rest = &r[n..];
                }
            }
        }
        if v.hour > 23 || v.minute > 59 || v.second > 59 {
            return None;
        }
        if kind == Kind::DateTime {
            if rest == "Z" {
                v.tz = Some(0);
                rest = "";
            } else if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) {
                let (th, r) = num(&rest[1..], 2)?;
                let (tm, r) = num(r.strip_prefix(':')?, 2)?;
                if !r.is_empty() {
                    return None;
                }
                let off = (th * 60 + tm) as i32;
                v.tz = Some(if rest.starts_with('-') { -off } else { off });
                rest = "";
            }
        }
        rest.is_empty().then_some(v)
    }

    /// Milliseconds since the epoch of the local (un-zoned) value.
    fn local_millis(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        ((days * 24 + self.hour as i64) * 60 + self.minute as i64) * 60_000
            + self.second as i64 * 1000
            + self.millis as i64
    }

    fn set_local_millis(&mut self, ms: i64) {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        self.year = y;
        self.month = m;
        self.day = d;
        self.hour = (rem / 3_600_000) as u32;
        self.minute = (rem / 60_000 % 60) as u32;
        self.second = (rem / 1000 % 60) as u32;
        self.millis = (rem % 1000) as u32;
    }

    /// Components from year down to (second*1000 + millis).
    fn components(&self) -> [i64; 6] {
        [
            self.year,
            self.month as i64,
            self.day as i64,
            self.hour as i64,
            self.minute as i64,
            self.second as i64 * 1000 + self.millis as i64,
        ]
    }

    /// Compares at the common precision. `None` when the values are equal as
    /// far as both go but one is more precise (the answer is unknown).
    pub(crate) fn compare(&self, other: &PartialDt) -> Option<Ordering> {
        let (mut a, mut b) = (*self, *other);
        // With a time part, a zoned and an unzoned value cannot be ordered.
        if a.prec >= 3 && b.prec >= 3 && a.kind != Kind::Time && a.tz.is_some() != b.tz.is_some() {
            return None;
        }
        if let (Some(ta), Some(tb)) = (a.tz, b.tz) {
            if a.prec >= 3 && b.prec >= 3 && ta != tb {
                a.set_local_millis(a.local_millis() - ta as i64 * 60_000);
                b.set_local_millis(b.local_millis() - tb as i64 * 60_000);
            }
        }
        let start = if a.kind == Kind::Time { 3 } else { 0 };
        let common = a.prec.min(b.prec) as usize;
        let (ca, cb) = (a.components(), b.components());
        for i in start..=common {
            match ca[i].cmp(&cb[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        (a.prec == b.prec).then_some(Ordering::Equal)
    }

    pub(crate) fn precision(&self) -> u8 {
        self.prec
    }

    /// Adds (or with a negative value subtracts) a quantity. `Err` carries a
    /// message for units that cannot be added to dates (e.g. UCUM `'a'`).
    pub(crate) fn add(&self, value: Decimal, unit: &str) -> Result<PartialDt, String> {
        let n = value
            .truncate()
            .and_then(|d| d.trunc_i64())
            .ok_or("quantity out of range")?;
        let mut v = *self;
        let ms_per = match unit {
            "year" | "years" => {
                v.year += n;
                v.day = v.day.min(days_in_month(v.year, v.month));
                return Ok(v);
            }
            "month" | "months" => {
                let m = v.year * 12 + (v.month as i64 - 1) + n;
                v.year = m.div_euclid(12);
                v.month = (m.rem_euclid(12) + 1) as u32;
                v.day = v.day.min(days_in_month(v.year, v.month));
                return Ok(v);
            }
            "week" | "weeks" | "wk" => 7 * 86_400_000,
            "day" | "days" | "d" => 86_400_000,
            "hour" | "hours" | "h" => 3_600_000,
            "minute" | "minutes" | "min" => 60_000,
            "second" | "seconds" | "s" => 1000,
            "millisecond" | "milliseconds" | "ms" => 1,
            other => return Err(format!("cannot add a quantity in '{other}' to a date/time")),
        };
        let delta = n.checked_mul(ms_per).ok_or("quantity out of range")?;
        v.set_local_millis(v.local_millis() + delta);
        Ok(v)
    }

    /// Formats back to FHIRPath text (no `@`), at the value's own precision.
    pub(crate) fn to_text(self) -> String {
        let mut s = String::new();
        if self.kind != Kind::Time {
            s.push_str(&format!("{:04}", self.year));
            if self.prec >= 1 {
                s.push_str(&format!("-{:02}", self.month));
            }
            if self.prec >= 2 {
                s.push_str(&format!("-{:02}", self.day));
            }
            if self.kind == Kind::Date {
                return s;
            }
            s.push('T');
        }
        if self.prec >= 3 {
            s.push_str(&format!("{:02}", self.hour));
        }
        if self.prec >= 4 {
            s.push_str(&format!(":{:02}", self.minute));
        }
        if self.prec >= 5 {
            s.push_str(&format!(":{:02}", self.second));
            if self.frac_digits > 0 {
                s.push_str(&format!(".{:03}", self.millis));
            }
        }
        match self.tz {
            Some(0) => s.push('Z'),
            Some(t) => {
                let sign = if t < 0 { '-' } else { '+' };
                s.push_str(&format!("{sign}{:02}:{:02}", t.abs() / 60, t.abs() % 60));
            }
            None => {}
        }
        s
    }
}

/// The current UTC time as FHIRPath DateTime text (for `now()`/`today()`).
pub(crate) fn now_text() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut v = PartialDt::parse("1970-01-01T00:00:00.000Z", Kind::DateTime).expect("valid");
    v.set_local_millis(ms);
    v.to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> PartialDt {
        PartialDt::parse(s, Kind::DateTime).unwrap()
    }

    #[test]
    fn precision_aware_comparison() {
        assert_eq!(dt("2012-04-15").compare(&dt("2012-04-15T10:00:00")), None);
        assert_eq!(
            dt("2012-04-15").compare(&dt("2012-04-16T10:00:00")),
            Some(Ordering::Less)
        );
        assert_eq!(
            dt("2012-04-15T15:00:00+02:00").compare(&dt("2012-04-15T16:00:00+03:00")),
            Some(Ordering::Equal)
        );
        assert_eq!(
            dt("2012-04-15T15:30:31").compare(&dt("2012-04-15T15:30:31.0")),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn calendar_arithmetic() {
        let d = PartialDt::parse("1973-12-25", Kind::Date).unwrap();
        assert_eq!(
            d.add(Decimal::from_i64(7), "days").unwrap().to_text(),
            "1974-01-01"
        );
        assert_eq!(
            d.add(Decimal::from_i64(1), "month").unwrap().to_text(),
            "1974-01-25"
        );
        assert!(d.add(Decimal::from_i64(1), "a").is_err());
        let t = dt("1973-12-25T00:00:00.000+10:00");
        assert_eq!(
            t.add(Decimal::from_i64(10), "ms").unwrap().to_text(),
            "1973-12-25T00:00:00.010+10:00"
        );
    }

    #[test]
    fn rejects_invalid_dates() {
        assert!(PartialDt::parse("2015-02-30", Kind::Date).is_none());
        assert!(PartialDt::parse("2015-13", Kind::Date).is_none());
        assert!(PartialDt::parse("25:00", Kind::Time).is_none());
    }
}
