//! Parsing of humantime-style duration strings such as `"10s"`, `"500ms"` or `"1m 30s"`.

use std::time::Duration;

/// Parses a duration written as one or more `<integer><unit>` components,
/// optionally separated by whitespace (e.g. `"1h30m"`, `"1m 30s"`, `"250ms"`).
///
/// Units: `ns`, `us`/`µs`, `ms`, `s`/`sec`/`secs`/`second`/`seconds`,
/// `m`/`min`/`mins`/`minute`/`minutes`, `h`/`hr`/`hrs`/`hour`/`hours`,
/// `d`/`day`/`days`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; expected e.g. \"10s\" or \"500ms\"".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}"
            ));
        }
        let value: u64 = rest[..digits_end]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = rest[digits_end..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = rest[unit_end..].trim_start();
        let component = match component(value, unit) {
            Some(Ok(d)) => d,
            Some(Err(())) => return Err(format!("invalid duration {text:?}: too large")),
            None if unit.is_empty() => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (e.g. \"s\" or \"ms\")"
                ))
            }
            None => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        total = total
            .checked_add(component)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    Ok(total)
}

/// Converts `value` of `unit` into a duration: `None` for an unknown unit,
/// `Some(Err(()))` on overflow.
fn component(value: u64, unit: &str) -> Option<Result<Duration, ()>> {
    let secs_per_unit: u64 = match unit {
        "ns" | "nsec" => return Some(Ok(Duration::from_nanos(value))),
        "us" | "µs" | "usec" => return Some(Ok(Duration::from_micros(value))),
        "ms" | "msec" | "millis" => return Some(Ok(Duration::from_millis(value))),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return None,
    };
    Some(
        value
            .checked_mul(secs_per_unit)
            .map(Duration::from_secs)
            .ok_or(()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_components() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3 min"), Ok(Duration::from_secs(180)));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s 250ms"), Ok(Duration::from_millis(1250)));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1 30s")
            .unwrap_err()
            .contains("missing unit"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615d")
            .unwrap_err()
            .contains("too large"));
    }
}
