//! `expire_date` as Django keeps it on SQLite: the text
//! `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, compared as text, so Django and
//! sessiond agree on what has expired.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};

use crate::session::ExpireDate;
use crate::store::kit::StoreError;

/// Django's text form of a UTC instant on SQLite: `str()` of a naive
/// datetime, with microseconds only when there are any.
///
/// Formatted field by field: every Load compares against this text of
/// `now`, and chrono's `format` parses its pattern anew on each call.
pub(super) fn to_django_text(instant: DateTime<Utc>) -> String {
    let (date, time) = (instant.date_naive(), instant.time());
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let micros = instant.timestamp_subsec_micros();
    if micros != 0 {
        // Past a leap second chrono counts up to 1_999_999 µs; Django never
        // writes one, so the fraction stays within six digits.
        let _ = write!(text, ".{:06}", micros.min(999_999));
    }
    text
}

/// Reads a stored `expire_date`: Django's form, or the ISO 8601 forms Django
/// also reads.
pub(super) fn from_django_text(text: &str) -> Result<ExpireDate, StoreError> {
    let instant = match parse_django_form(text) {
        Some(instant) => instant,
        None => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|naive| naive.and_utc())
            .or_else(|_| DateTime::parse_from_rfc3339(text).map(|date| date.with_timezone(&Utc)))
            .map_err(|err| StoreError::Corrupt(err.into()))?,
    };
    ExpireDate::new(instant).map_err(|err| StoreError::Corrupt(err.into()))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, the form Django and sessiond write, read
/// without chrono's pattern interpreter (every Load reads one); `None` for
/// anything else, which the general parsers then try.
fn parse_django_form(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0u32, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if bytes.len() < 19 || separators.iter().any(|&(at, sep)| bytes[at] != sep) {
        return None;
    }
    let micros = match bytes.len() {
        19 => 0,
        21..=26 if bytes[19] == b'.' => {
            let fraction = number(20..bytes.len())?;
            fraction * 10u32.pow(26 - u32::try_from(bytes.len()).ok()?)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        micros,
    )?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn expire_dates_are_written_as_django_writes_them() {
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00Z")),
            "2026-01-15 00:00:00"
        );
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00.123456Z")),
            "2026-01-15 00:00:00.123456"
        );
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00.000001Z")),
            "2026-01-15 00:00:00.000001"
        );
        assert_eq!(
            to_django_text(instant("0005-03-04T05:06:07Z")),
            "0005-03-04 05:06:07"
        );
    }

    #[test]
    fn expire_dates_read_back_in_every_form_django_reads() {
        for (text, expected) in [
            ("2026-01-15 00:00:00", "2026-01-15T00:00:00Z"),
            ("2026-01-15 00:00:00.123456", "2026-01-15T00:00:00.123456Z"),
            ("2026-01-15T00:00:00Z", "2026-01-15T00:00:00Z"),
            ("2026-01-15T01:00:00+01:00", "2026-01-15T00:00:00Z"),
            ("2026-01-15 00:00:00.5", "2026-01-15T00:00:00.5Z"),
            ("2026-01-15 00:00:00.000001", "2026-01-15T00:00:00.000001Z"),
            ("0005-03-04 05:06:07", "0005-03-04T05:06:07Z"),
        ] {
            assert_eq!(
                from_django_text(text).unwrap().instant(),
                instant(expected),
                "{text}"
            );
        }
        for bad in [
            "yesterday",
            "2026-13-15 00:00:00",
            "2026-01-15 24:00:00",
            "2026-01-15 00:00:00.",
            "2026-01-15 0a:00:00",
            "2026-01-15 00:00:00 ",
            "",
        ] {
            assert!(from_django_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let earlier = to_django_text(instant("2026-01-15T00:00:00Z"));
        let later = to_django_text(instant("2026-01-15T00:00:00.000001Z"));
        assert!(earlier < later);
    }
}
