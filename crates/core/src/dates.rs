//! Business dates (记账日期) as whole days since 1970-01-01, and the civil
//! calendar conversions they need. China Standard Time (UTC+8) decides which
//! day a commit time falls on.

/// Days since 1970-01-01.
pub type Day = i32;

/// China Standard Time's offset from UTC.
pub const CST_OFFSET_MS: i64 = 8 * 60 * 60 * 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The CST day a Unix-millisecond instant falls on.
pub fn day_of_ms(unix_ms: i64) -> Day {
    Day::try_from((unix_ms + CST_OFFSET_MS).div_euclid(DAY_MS)).unwrap_or(Day::MAX)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Parses "YYYY-MM-DD" (years 2000–2100).
pub fn parse_date(text: &str) -> Option<Day> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i64 = text[0..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    if !(2000..=2100).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject 2026-02-30 and the like: the date must round-trip.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Day::try_from(days).ok()
}

/// The month a day falls in, as the number YYYYMM (so months sort as
/// numbers do).
pub fn month_of(day: Day) -> u32 {
    let (y, m, _) = civil_from_days(i64::from(day));
    u32::try_from(y).expect("days since 1970 fall in positive years") * 100 + m
}

/// A month number (YYYYMM) as "YYYY-MM".
pub fn format_month(month: u32) -> String {
    format!("{:04}-{:02}", month / 100, month % 100)
}

/// "YYYY-MM-DD".
pub fn format_date(day: Day) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Unix-millisecond instant as China Standard Time, to the second:
/// `2026-03-01 08:00:00`.
pub fn format_cst_time(unix_ms: i64) -> String {
    let secs = (unix_ms + CST_OFFSET_MS).div_euclid(1_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cst_time_is_eight_hours_ahead_of_utc() {
        assert_eq!(format_cst_time(0), "1970-01-01 08:00:00");
        // 2026-03-01T16:30:05Z is past midnight in Beijing.
        assert_eq!(format_cst_time(1_772_382_605_000), "2026-03-02 00:30:05");
        assert_eq!(format_cst_time(-1), "1970-01-01 07:59:59");
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), None, "before 2000");
        let day = parse_date("2026-03-15").unwrap();
        assert_eq!(format_date(day), "2026-03-15");
        assert_eq!(
            parse_date("2024-02-29").map(format_date).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("2026-3-1"), None);
        assert_eq!(format_date(0), "1970-01-01");
    }

    #[test]
    fn commit_day_is_china_standard_time() {
        // 2026-03-14T17:00:00Z is 2026-03-15 01:00 in Beijing.
        let ms = (days_from_civil(2026, 3, 14) * 86_400 + 17 * 3600) * 1000;
        assert_eq!(format_date(day_of_ms(ms)), "2026-03-15");
    }
}
