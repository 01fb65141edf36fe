//! Values as a scenario file writes them: durations (`30s`, `250ms`, `2m`) and numbers checked
//! where they are read, so an error names the field (and the parser its line).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A number > 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Positive(pub f64);

/// A number ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NonNegative(pub f64);

/// Checks a number where it is read; the message names the field, so
/// [`Scenario::parse`](super::scenario::Scenario::parse) can point at its line.
pub fn checked_number<'de, D: Deserializer<'de>>(d: D, field: &str, allow_zero: bool) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0)) {
        Ok(value)
    } else {
        let bound = if allow_zero { ">= 0" } else { "> 0" };
        Err(serde::de::Error::custom(format!("`{field}` must be a number {bound}, got {value}")))
    }
}

/// Reads a duration; the message names the field.
pub fn checked_duration<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    sut::duration::parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("`{field}`: '{text}' is not a duration like 30s, 250ms or 2m")))
}

/// Durations written as `30s`, `250ms`, `2m`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `1.5s`-style text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs_f64()))
    }

    /// Reads `30s`, `250ms`, `2m`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        sut::duration::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not a duration like 30s, 250ms or 2m")))
    }
}

/// Optional durations written as `30s`.
pub mod optional_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `1.5s`-style text, or nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration > 0.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        sut::duration::parse(&text)
            .filter(|d| !d.is_zero())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not a duration > 0 like 1s or 1m")))
    }
}
