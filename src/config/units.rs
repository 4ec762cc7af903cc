//! Durations (`"10s"`, `"1m30s"`) and sizes (`"32MiB"`, `33554432`) as config values.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as a string with units (`"500ms"`, `"10s"`, `"1h30m"`) or an integer of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        ConfigDuration(Duration::from_secs(s))
    }
}

/// The longest duration a config may give: what a signed 64-bit count of nanoseconds holds
/// (about 292 years). Durations are used as nanosecond timestamps' offsets; a longer one would
/// wrap there (a retention of "4000000h" once expired every partition).
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses `"1h30m"`, `"250ms"`, `"10s"`, `"2us"`, `"1d"`; a bare `"0"` is zero.
///
/// # Errors
/// A message for a malformed duration, or one longer than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} has no unit; try \"10s\""))?;
        if digits == 0 {
            return Err(format!("invalid duration {text:?}; try \"10s\""));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            unit => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {text:?}; use ns, us, ms, s, m, h or d"
                ))
            }
        };
        rest = &rest[unit_len..];
        let nanos = (number * nanos_per).round();
        total = (nanos.is_finite() && nanos <= MAX_DURATION.as_nanos() as f64)
            .then(|| total.checked_add(Duration::from_nanos(nanos as u64)))
            .flatten()
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(|| too_long(text))?;
    }
    Ok(total)
}

fn too_long(text: &str) -> String {
    format!(
        "duration {text:?} is too long: the most is 292 years (\"2562047h\"); a retention that never expires is \"INF\""
    )
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let secs =
                    u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                Some(Duration::from_secs(secs))
                    .filter(|d| *d <= MAX_DURATION)
                    .map(ConfigDuration)
                    .ok_or_else(|| E::custom(too_long(&format!("{v}s"))))
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserializes a duration that must be more than zero (an `interval` of 0 cannot work).
fn positive<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    example: &str,
) -> Result<ConfigDuration, D::Error> {
    let v = ConfigDuration::deserialize(d)?;
    if v.0.is_zero() {
        return Err(de::Error::custom(format!(
            "`{key}` must be more than 0; try \"{example}\""
        )));
    }
    Ok(v)
}

/// Deserializes a count that must be at least 1 (a buffer of 0 points refuses every write).
fn at_least_one<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if v == 0 {
        return Err(de::Error::custom(format!("`{key}` must be at least 1")));
    }
    Ok(v)
}

/// `interval`: more than 0.
pub fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
    positive(d, "interval", "10s")
}

/// An optional `interval`: more than 0 when given.
pub fn interval_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConfigDuration>, D::Error> {
    interval(d).map(Some)
}

/// `flush_interval`: more than 0.
pub fn flush_interval<'de, D: Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
    positive(d, "flush_interval", "10s")
}

/// An optional `flush_interval`: more than 0 when given.
pub fn flush_interval_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ConfigDuration>, D::Error> {
    flush_interval(d).map(Some)
}

/// `metric_batch_size`: at least 1.
pub fn batch_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least_one(d, "metric_batch_size")
}

/// An optional `metric_batch_size`: at least 1 when given.
pub fn batch_size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    batch_size(d).map(Some)
}

/// `metric_buffer_limit`: at least 1.
pub fn buffer_limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least_one(d, "metric_buffer_limit")
}

/// An optional `buffer_limit`: at least 1 when given.
pub fn buffer_limit_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    at_least_one(d, "buffer_limit").map(Some)
}

/// A retention: a duration, or `"INF"` (any case) for one that never expires, as InfluxDB
/// writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention(pub Option<Duration>);

impl Retention {
    /// Points with a timestamp before this (ns) are beyond the retention at `now` (ns): never
    /// `i64::MIN` plus wrapped arithmetic, whatever the duration (saturates).
    pub fn horizon(self, now: i64) -> i64 {
        match self.0 {
            None => i64::MIN,
            Some(d) => now.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("INF"),
            Some(d) => write!(f, "{}h", d.as_secs() / 3600),
        }
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Retention;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"72h\", or \"INF\" to keep points forever")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.trim().eq_ignore_ascii_case("inf") {
                    return Ok(Retention(None));
                }
                parse_duration(v)
                    .map(|d| Retention(Some(d)))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                ConfigDuration::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(|d| Retention(Some(d.0)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes, written as an integer or a string with units (`"32MiB"`, `"10MB"`, `"4KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigSize(pub u64);

/// Parses `"32MiB"`, `"10 MB"`, `"512"`, `"1GiB"` (units are case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if split == 0 {
        return Err(format!("invalid size {text:?}; try \"32MiB\""));
    }
    let number: u64 = t[..split]
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit {:?} in size {text:?}; use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB",
                &t[split..]
            ))
        }
    };
    number
        .checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"32MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_size(v).map(ConfigSize).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ConfigSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "s", "10x", "1h30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_past_i64_nanoseconds_are_refused() {
        assert!(parse_duration("2562047h").is_ok());
        for bad in [
            "4000000h",
            "2562048h",
            "100000000000000000000000000000s",
            "300000000000000000000000h",
            "2562047h2562047h",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("too long"), "{bad}: {e}");
        }
    }

    #[test]
    fn retention_horizon_saturates() {
        let now = 1_700_000_000_000_000_000;
        let forever = Retention(None);
        assert_eq!(forever.horizon(now), i64::MIN);
        let long = Retention(Some(MAX_DURATION));
        assert!(
            long.horizon(now) < 0,
            "a long retention reaches back, never forward"
        );
        let long = Retention(Some(Duration::MAX));
        assert_eq!(long.horizon(now), now - i64::MAX);
        assert_eq!(
            Retention(Some(Duration::from_secs(1))).horizon(now),
            now - 1_000_000_000
        );
        assert_eq!(
            Retention(Some(Duration::from_secs(1))).horizon(i64::MIN),
            i64::MIN
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("10 MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4kib").unwrap(), 4096);
        assert_eq!(parse_size("512").unwrap(), 512);
        for bad in ["", "MiB", "5 parsecs", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
