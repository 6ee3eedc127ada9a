//! ncat's time values (`-w`, `-i`, `-d`): a decimal number with an optional
//! unit `ms`, `s` (the default), `m` or `h`, e.g. `500ms`, `1.5`, `2m`.

use std::time::Duration;

/// Parses a time value; `None` when it is not one (negative, empty, junk).
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number == "." {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

/// True when the value has no unit (so it is in seconds).
pub fn is_unitless(text: &str) -> bool {
    text.trim().bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
    }

    #[test]
    fn junk() {
        for t in ["", "-1", "abc", "1x", "1 s", ".", "1e5"] {
            assert_eq!(parse(t), None, "{t:?}");
        }
    }
}
