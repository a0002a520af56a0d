//! Timestamps in records: RFC 3339, UTC, millisecond precision (the record contract).

use crate::capture::Nanos;

/// Formats `ns` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Hand-rolled (days-from-civil, H. Hinnant) because it runs once per record on the output path
/// and must not fail: `time`'s formatter returns a `Result` for values no capture can hold.
pub fn rfc3339_ms(ns: Nanos) -> String {
    let ms = ns.div_euclid(1_000_000);
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        y,
        m,
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        milli
    )
}

/// Seconds since the epoch for a civil UTC date-time (used for ASN.1 times and `--at`).
pub fn unix_seconds(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> i64 {
    days_from_civil(y, m, d) * 86_400 + i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2014-05-15T18:41:38.123456789Z: the sub-millisecond part is truncated, not rounded.
        let s = unix_seconds(2014, 5, 15, 18, 41, 38);
        assert_eq!(s, 1_400_179_298);
        assert_eq!(
            rfc3339_ms(s * 1_000_000_000 + 123_456_789),
            "2014-05-15T18:41:38.123Z"
        );
        assert_eq!(rfc3339_ms(-1_000_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(unix_seconds(2000, 2, 29, 0, 0, 0), 951_782_400);
        assert_eq!(
            rfc3339_ms(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        for days in (-200_000i64..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
