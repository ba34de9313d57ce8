//! The wall clock and the calendar, written once for the proxy, the harness and xtask.
//!
//! * [`unix_now`] / [`unix_secs`] — seconds since the epoch (the protocol core takes time
//!   as a parameter; the shells read it here).
//! * [`civil_from_days`] / [`days_from_civil`] — the proleptic Gregorian calendar
//!   (H. Hinnant's algorithms), no date crate.
//! * [`http_date`] (the stats page's `Date:`), [`log_stamp`] (C's log line prefix),
//!   [`rfc3339`] / [`parse_rfc3339`] (reports).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    unix_secs(SystemTime::now())
}

/// `t` in seconds since the epoch (times before 1970 are clamped to 0).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month 1..=12, day 1..=31) → days since 1970-01-01 (the inverse of
/// [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix time as an RFC 7231 date (`Wed, 25 Nov 2026 18:44:50 GMT`).
pub fn http_date(unix: i64) -> String {
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1).clamp(0, 11) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// C's log line time stamp: `2026-12-03 18:44:50.123456 UTC`.
pub fn log_stamp(t: SystemTime) -> String {
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let secs = unix_secs(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{micros:06} UTC",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `t` as RFC 3339 UTC, `YYYY-MM-DDTHH:MM:SSZ` (times before 1970 are clamped to the
/// epoch).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ` (fractions of a
/// second and a `+00:00` suffix are accepted); `None` when it is not one or is before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn known_instants() {
        // Expected values from Python's datetime.fromtimestamp(t, timezone.utc).
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(at(4_102_444_800)), "2100-01-01T00:00:00Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_624_644), "Wed, 25 Nov 2026 16:37:24 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            log_stamp(at(1_795_624_644) + Duration::from_micros(42)),
            "2026-11-25 16:37:24.000042 UTC"
        );
    }

    #[test]
    fn parsing_inverts_formatting() {
        for secs in [0u64, 951_782_400, 1_795_624_644, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(at(secs))), Some(secs));
        }
        assert_eq!(
            parse_rfc3339("2026-12-03T13:45:55.123Z"),
            Some(1_796_305_555)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-03T13:45:55Z"), None);
    }

    #[test]
    fn days_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 11_016, 59, 60, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{z} -> {y}-{m}-{d}");
        }
    }
}
