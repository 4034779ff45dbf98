//! RFC 3339 timestamps as Docker writes them (`time.RFC3339Nano`, UTC, trailing zeros of the
//! fraction trimmed: `2019-01-01T11:11:11.111111111Z`), with a fast path for that exact form
//! and the `time` crate for any other offset.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn digits(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The fast path's shape: `YYYY-MM-DDTHH:MM:SS…Z`.
fn fast_shape(b: &[u8]) -> bool {
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z'
}

/// Seconds since the epoch of a fast-shaped timestamp's first 19 bytes; `None` when they
/// are not a valid date and time, or lie before 1970.
fn prefix_secs(b: &[u8]) -> Option<u64> {
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, se) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    u64::try_from(days * 86_400 + (h * 3600 + mi * 60 + se) as i64).ok()
}

/// Nanoseconds of a fast-shaped timestamp's fraction (`.` and 1–9 digits, or nothing).
fn frac_nanos(frac: &[u8]) -> Option<u64> {
    match frac {
        [] => Some(0),
        [b'.', rest @ ..] if !rest.is_empty() && rest.len() <= 9 => {
            Some(digits(rest)? * 10u64.pow(9 - rest.len() as u32))
        }
        _ => None,
    }
}

/// Parses an RFC 3339 timestamp into ns since the Unix epoch; `None` if it is not one or
/// lies outside what u64 ns hold (before 1970, after 2554-07-21T23:34:33.709551615Z).
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if fast_shape(b) {
        let secs = prefix_secs(b)?;
        let nanos = frac_nanos(&b[19..b.len() - 1])?;
        // Checked: a year past 2554 overflows u64 ns (found by fuzzing).
        return secs.checked_mul(1_000_000_000)?.checked_add(nanos);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos()).ok()
}

/// [`parse_rfc3339_ns`] for timestamps that mostly share their second (one file's lines):
/// the seconds of the last `YYYY-MM-DDTHH:MM:SS` seen are kept. Same results.
#[derive(Default)]
pub struct TimeCache {
    prefix: [u8; 19],
    secs: Option<u64>,
}

impl TimeCache {
    /// [`parse_rfc3339_ns`] of `s` (bytes: not UTF-8 is not a timestamp).
    pub fn parse(&mut self, s: &[u8]) -> Option<u64> {
        if !fast_shape(s) {
            return parse_rfc3339_ns(std::str::from_utf8(s).ok()?);
        }
        // The zeroed initial prefix is never fast-shaped, so it never matches.
        if s[..19] != self.prefix {
            self.prefix.copy_from_slice(&s[..19]);
            self.secs = prefix_secs(s);
        }
        let nanos = frac_nanos(&s[19..s.len() - 1])?;
        self.secs?.checked_mul(1_000_000_000)?.checked_add(nanos)
    }
}

/// Now, ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_representable_instant() {
        assert_eq!(
            parse_rfc3339_ns("2554-07-21T23:34:33.709551615Z"),
            Some(u64::MAX)
        );
        assert_eq!(parse_rfc3339_ns("2554-07-21T23:34:33.709551616Z"), None);
    }

    #[test]
    fn fast_path_agrees_with_time_crate() {
        for s in [
            "2019-01-01T11:11:11.111111111Z",
            "2017-09-01T01:01:01.000000001Z",
            "2024-02-29T23:59:59Z",
            "2026-11-21T05:44:39.5Z",
            "1970-01-01T00:00:00Z",
        ] {
            let slow = OffsetDateTime::parse(s, &Rfc3339)
                .unwrap()
                .unix_timestamp_nanos() as u64;
            assert_eq!(parse_rfc3339_ns(s), Some(slow), "{s}");
        }
        assert_eq!(
            parse_rfc3339_ns("2019-01-01T12:11:11.5+01:00"),
            parse_rfc3339_ns("2019-01-01T11:11:11.5Z")
        );
        for bad in [
            "",
            "2019-13-01T11:11:11Z",
            "yesterday",
            "2019-01-01T11:11:11.Z",
            "4048-05-01T12:00:00Z",
            "2554-07-21T23:34:34Z",
            "4048-05-01T12:00:00+01:00",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn cache_agrees() {
        let mut c = TimeCache::default();
        for s in [
            "2019-01-01T11:11:11.111111111Z",
            "2019-01-01T11:11:11.2Z",
            "2019-01-01T11:11:11Z",
            "2019-01-01T11:11:11.Z",
            "2019-13-01T11:11:11.5Z",
            "2019-13-01T11:11:11.6Z",
            "2554-07-21T23:34:33.709551615Z",
            "2554-07-21T23:34:33.709551616Z",
            "2019-01-01T12:11:11.5+01:00",
            "yesterday",
            "",
        ] {
            assert_eq!(c.parse(s.as_bytes()), parse_rfc3339_ns(s), "{s}");
        }
        assert_eq!(c.parse(b"\xff2019-01-01T11:11:11Z"), None);
    }
}
