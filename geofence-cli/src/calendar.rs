//! Dates of data: a file's modification day, and how many days ago a publisher's date was.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The UTC day of `unix_seconds`, as YYYY-MM-DD.
pub fn date_of(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| Timestamp::from_second(seconds).ok())
        .map_or_else(String::new, |at| TimeZone::UTC.to_datetime(at).date().to_string())
}

/// The UTC time of `unix_seconds`, as YYYY-MM-DD HH:MM:SS UTC.
pub fn time_of(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds).ok().and_then(|seconds| Timestamp::from_second(seconds).ok()).map_or_else(
        String::new,
        |at| {
            let civil = TimeZone::UTC.to_datetime(at);
            format!("{} {} UTC", civil.date(), civil.time())
        },
    )
}

/// Days from `date` (YYYY-MM-DD, or YYYY-MM for the first of that month, as DB-IP dates its
/// monthly editions) to the UTC day of `now_unix_seconds`; `None` for a date in another form.
pub fn days_since(date: &str, now_unix_seconds: u64) -> Option<u64> {
    let day = match date.len() {
        7 => format!("{date}-01").parse::<Date>().ok()?,
        _ => date.parse::<Date>().ok()?,
    };
    let now = Timestamp::from_second(i64::try_from(now_unix_seconds).ok()?).ok()?;
    let today = TimeZone::UTC.to_datetime(now).date();
    u64::try_from(today.since(day).ok()?.get_days()).ok()
}

/// The UTC year and month of `unix_seconds`, for URLs named by the month.
pub fn month_of(unix_seconds: u64) -> (i32, u8) {
    let at = i64::try_from(unix_seconds).ok().and_then(|seconds| Timestamp::from_second(seconds).ok());
    let day = TimeZone::UTC.to_datetime(at.unwrap_or(Timestamp::UNIX_EPOCH)).date();
    (i32::from(day.year()), day.month().unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03 00:00:00 UTC.
    const DECEMBER_3RD: u64 = 1_796_256_000;

    #[test]
    fn days_are_counted_from_a_publisher_date_or_a_day() {
        assert_eq!(date_of(DECEMBER_3RD), "2026-12-03");
        assert_eq!(date_of(DECEMBER_3RD - 1), "2026-12-02");
        assert_eq!(time_of(DECEMBER_3RD + 3723), "2026-12-03 01:02:03 UTC");
        assert_eq!(days_since("2026-06", DECEMBER_3RD), Some(185));
        assert_eq!(days_since("2026-12-01", DECEMBER_3RD), Some(2));
        assert_eq!(days_since("2026-12-03", DECEMBER_3RD + 86_399), Some(0));
        assert_eq!(days_since("June 2026", DECEMBER_3RD), None);
        assert_eq!(days_since("", DECEMBER_3RD), None);
        assert_eq!(days_since("2027-01-01", DECEMBER_3RD), None, "a date ahead has no age");
        assert_eq!(month_of(DECEMBER_3RD), (2026, 12));
        assert_eq!(month_of(DECEMBER_3RD + 29 * 86_400), (2027, 1));
    }
}
