//! Human durations on the command line and in files: `250ms`, `2s`, `1.5s`, `1m`, `500us`.

use std::time::Duration;

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `500us`; a bare number is seconds.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) =
        text.find(|c: char| c.is_ascii_alphabetic() || c == 'µ').map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.trim().parse().ok()?;
    if !(value.is_finite() && value >= 0.0) {
        return None;
    }
    let seconds = match unit {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// A clap value parser for durations.
pub fn clap_parser(text: &str) -> Result<Duration, String> {
    parse(text).ok_or_else(|| format!("'{text}' is not a duration like 250ms, 2s or 1m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers_parse() {
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse("500us"), Some(Duration::from_micros(500)));
        assert_eq!(parse("-1s"), None);
        assert_eq!(parse("5 parsecs"), None);
    }
}
