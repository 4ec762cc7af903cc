//! InfluxDB line protocol: a borrowing parser ([`Parser`]) and an encoder ([`encode`]).
//!
//! Where InfluxDB versions disagree, the parser follows the current one (InfluxDB 3), as
//! `shared/reference/line-protocol.md` section 9 lays out: `\\` is an escaped backslash in every
//! name, unsigned integers (`1u`) are accepted, floats need digits on both sides of the point,
//! CRLF line endings are accepted, and tabs, NUL, invalid UTF-8, duplicate tags, a `time` tag, a
//! name used as both tag and field, and names or strings over 64 KiB are rejected.
//!
//! The parser scans bytes with a class table (names are short) and `memchr` (string values,
//! comments, resynchronisation after an error), and borrows from the body unless an element has
//! escapes to undo. Turning a parsed [`Line`] into an owned [`crate::metric::Metric`] is
//! [`Line::to_metric`].

mod encode;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::{
    encode, encode_all, encode_line, encoded_point_end, encoded_points, with_v1_names,
};
pub(crate) use parse::parse_timestamp;
pub use parse::{
    Line, ParseError, ParseErrorKind, Parser, Value, Verbatim, MAX_NAME_LEN, MAX_STRING_LEN,
};

use std::fmt;

/// The unit of the timestamps in a write, from the `precision` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds: `ns`, `n` (the default).
    #[default]
    Nanoseconds,
    /// Microseconds: `us`, `u`, `µ`.
    Microseconds,
    /// Milliseconds: `ms`.
    Milliseconds,
    /// Seconds: `s`.
    Seconds,
    /// Minutes: `m` (v1 only).
    Minutes,
    /// Hours: `h` (v1 only).
    Hours,
}

impl Precision {
    /// Reads a `precision` value as InfluxDB 1.x and 2.x clients send it.
    ///
    /// Returns `None` for anything else: an unknown precision is an error, never silently
    /// nanoseconds (which is what InfluxDB 1.x does).
    pub fn from_param(value: &str) -> Option<Precision> {
        Some(match value {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// `time` (ns) truncated to a whole number of units, for points that carry no timestamp.
    pub fn truncate(self, time: i64) -> i64 {
        time - time.rem_euclid(self.nanos())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        })
    }
}
