//! Human durations: `100us`, `5ms`, `1.5s`, `2m`, `1h`, `7d`. A unit is required so `5` is never
//! silently read as seconds when the user meant milliseconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{t}` needs a unit (us, ms, s, m, h or d), e.g. `250ms`"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{t}` is not a duration (expected e.g. `5ms`, `1.5s`, `2m`)"))?;
    let secs_per_unit = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => return Err(format!("unknown unit `{other}` in `{t}` (use us, ms, s, m, h or d)")),
    };
    let secs = value * secs_per_unit;
    if !secs.is_finite() || !(0.0..=30.0 * 24.0 * 3600.0).contains(&secs) {
        return Err(format!("duration `{t}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The shortest form `parse_duration` reads back: `5s`, `1500ms`, `2m`, `250us`.
pub(crate) fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    // The largest unit that divides it exactly.
    let units: [(u128, &str); 5] =
        [(3_600_000_000, "h"), (60_000_000, "m"), (1_000_000, "s"), (1_000, "ms"), (1, "us")];
    match units.iter().find(|(size, _)| us > 0 && us.is_multiple_of(*size)) {
        Some((size, unit)) => format!("{}{unit}", us / size),
        None => "0s".to_string(),
    }
}

/// Prints a duration the way a person reads it: `850 µs`, `12.3 ms`, `2.25 s`.
pub(crate) fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

pub(crate) fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_fractions() {
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("5ms").unwrap(), Duration::from_millis(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["5s", "1500ms", "2m", "250us", "1h", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5xs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("abc").is_err());
    }
}
