//! Prometheus durations (`30s`, `5m`, `1h30m`, `1d`, `250ms`): one or more `<integer><unit>`
//! parts, units `y` (365 d), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and from the
//! largest to the smallest, as Prometheus' `model.ParseDuration`.

/// Parses a Prometheus duration into milliseconds. `0` alone is accepted (zero). Errors
/// name the problem (`"5x": unknown unit "x"`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(format!(
                "{s:?}: expected a number at character {}",
                start + 1
            ));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("{s:?}: missing unit (one of y, w, d, h, m, s, ms)")
            } else {
                format!("{s:?}: unknown unit {unit:?} (one of y, w, d, h, m, s, ms)")
            });
        };
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(format!(
                "{s:?}: units must go from largest to smallest, each once"
            ));
        }
        last_unit = Some(idx);
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?}: duration too large"))?;
    }
    Ok(total)
}

/// Formats milliseconds the Prometheus way (`1h30m`, `250ms`, `0s`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (u, n) in [
        ("y", 365 * 86_400_000i64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= n {
            out.push_str(&format!("{}{u}", rest / n));
            rest %= n;
        }
    }
    out
}

/// Serde helper for config fields holding a Prometheus duration string, stored as ms
/// (`#[serde(with = "crate::rules::duration::serde_ms")]`).
pub mod serde_ms {
    /// Serializes ms as a duration string.
    pub fn serialize<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration_ms(*ms))
    }
    /// Parses a duration string into ms.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        super::parse_duration_ms(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1d2h"), Ok(93_600_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert!(parse_duration_ms("5x")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ms("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration_ms("30m1h").unwrap_err().contains("largest"));
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("1.5h").is_err());
        assert!(parse_duration_ms("-5m").is_err());
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(250), "250ms");
    }
}
