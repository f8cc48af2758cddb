//! Capture timestamps: microseconds since the Unix epoch in memory, RFC 3339 as text.

use std::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time with microsecond resolution (ACS's wire carries milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_micros: i64,
}

/// A text that is not an RFC 3339 date-time, or one outside the range of a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{text}` is not a usable RFC 3339 date-time: {reason}")]
pub struct ParseTimestampError {
    /// The text given to [`Timestamp::parse_rfc3339`].
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Timestamp {
    /// The timestamp `unix_micros` microseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Timestamp { unix_micros }
    }

    /// The wall clock now (the Unix epoch if the clock is set before it).
    pub fn now() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Timestamp::from_unix_micros(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// Parses an RFC 3339 date-time (`2026-11-24T19:16:12.925Z`, any offset, any fraction).
    pub fn parse_rfc3339(text: &str) -> Result<Self, ParseTimestampError> {
        let error = |reason: String| ParseTimestampError {
            text: text.to_owned(),
            reason,
        };
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| error(e.to_string()))?;
        let micros = parsed.unix_timestamp_nanos() / 1_000;
        let unix_micros = i64::try_from(micros).map_err(|_| error("out of range".to_owned()))?;
        Ok(Timestamp { unix_micros })
    }

    /// Signed microseconds from `earlier` to `self`.
    pub const fn micros_since(self, earlier: Timestamp) -> i64 {
        self.unix_micros.saturating_sub(earlier.unix_micros)
    }

    /// This timestamp moved by `micros` (saturating).
    pub const fn add_micros(self, micros: i64) -> Timestamp {
        Timestamp {
            unix_micros: self.unix_micros.saturating_add(micros),
        }
    }
}

impl fmt::Display for Timestamp {
    /// Formats as RFC 3339 in UTC with millisecond precision, as ACS does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.unix_micros) * 1_000;
        let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            return write!(f, "@{}us", self.unix_micros);
        };
        let at = at.to_offset(UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        )
    }
}

impl Serialize for Timestamp {
    /// As its [`Display`](fmt::Display) text: RFC 3339, UTC, milliseconds.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_acs_millisecond_timestamps() {
        let ts = Timestamp::parse_rfc3339("2026-11-24T19:16:12.925Z").unwrap();
        assert_eq!(ts.to_string(), "2026-11-24T19:16:12.925Z");
        let later = Timestamp::parse_rfc3339("2026-11-24T19:16:12.945Z").unwrap();
        assert_eq!(later.micros_since(ts), 20_000);
    }

    #[test]
    fn accepts_offsets_and_rejects_garbage() {
        let a = Timestamp::parse_rfc3339("2026-11-24T20:16:12.925+01:00").unwrap();
        let b = Timestamp::parse_rfc3339("2026-11-24T19:16:12.925Z").unwrap();
        assert_eq!(a, b);
        let error = Timestamp::parse_rfc3339("yesterday").unwrap_err();
        assert_eq!(error.text, "yesterday");
    }
}
