//! `processors.date`: adds the metric's time, formatted, as a tag (`tag_key`) or a field
//! (`field_key`). `date_format` is a Go reference layout (`"Jan"`, `"2006-01-02"`, ...) or one
//! of `unix`, `unix_ms`, `unix_us`, `unix_ns` (an integer); `date_offset` shifts the time first;
//! `timezone` is `UTC` (default), `Local` or an IANA name.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

use crate::config::ConfigDuration;
use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.date]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    tag_key: Option<String>,
    field_key: Option<String>,
    date_format: Option<String>,
    date_offset: Option<ConfigDuration>,
    timezone: Option<String>,
}

/// One piece of a Go layout.
#[derive(Debug, Clone, PartialEq)]
enum Chunk {
    Lit(String),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekday,
    Weekday,
    Day,
    UnderDay,
    ZeroDay,
    YearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM(bool),
    TzAbbrev,
    /// `-0700` styles: (Z for UTC, colon, with seconds, hours only).
    Offset {
        z: bool,
        colon: bool,
        secs: bool,
        hours_only: bool,
    },
    /// `.000` (fixed digits) or `.999` (trailing zeros trimmed); the separator.
    Frac {
        digits: usize,
        trim: bool,
        sep: char,
    },
}

#[derive(Debug)]
enum Format {
    Layout(Vec<Chunk>),
    Unix(i128),
}

const TOKENS: &[(&str, Chunk)] = &[
    ("January", Chunk::LongMonth),
    ("Jan", Chunk::Month),
    ("Monday", Chunk::LongWeekday),
    ("Mon", Chunk::Weekday),
    ("MST", Chunk::TzAbbrev),
    ("2006", Chunk::LongYear),
    ("002", Chunk::YearDay),
    ("01", Chunk::ZeroMonth),
    ("02", Chunk::ZeroDay),
    ("03", Chunk::ZeroHour12),
    ("04", Chunk::ZeroMinute),
    ("05", Chunk::ZeroSecond),
    ("06", Chunk::Year),
    ("_2", Chunk::UnderDay),
    ("15", Chunk::Hour),
    ("1", Chunk::NumMonth),
    ("2", Chunk::Day),
    ("3", Chunk::Hour12),
    ("4", Chunk::Minute),
    ("5", Chunk::Second),
    ("PM", Chunk::PM(true)),
    ("pm", Chunk::PM(false)),
    (
        "Z07:00:00",
        Chunk::Offset {
            z: true,
            colon: true,
            secs: true,
            hours_only: false,
        },
    ),
    (
        "Z070000",
        Chunk::Offset {
            z: true,
            colon: false,
            secs: true,
            hours_only: false,
        },
    ),
    (
        "Z07:00",
        Chunk::Offset {
            z: true,
            colon: true,
            secs: false,
            hours_only: false,
        },
    ),
    (
        "Z0700",
        Chunk::Offset {
            z: true,
            colon: false,
            secs: false,
            hours_only: false,
        },
    ),
    (
        "Z07",
        Chunk::Offset {
            z: true,
            colon: false,
            secs: false,
            hours_only: true,
        },
    ),
    (
        "-07:00:00",
        Chunk::Offset {
            z: false,
            colon: true,
            secs: true,
            hours_only: false,
        },
    ),
    (
        "-070000",
        Chunk::Offset {
            z: false,
            colon: false,
            secs: true,
            hours_only: false,
        },
    ),
    (
        "-07:00",
        Chunk::Offset {
            z: false,
            colon: true,
            secs: false,
            hours_only: false,
        },
    ),
    (
        "-0700",
        Chunk::Offset {
            z: false,
            colon: false,
            secs: false,
            hours_only: false,
        },
    ),
    (
        "-07",
        Chunk::Offset {
            z: false,
            colon: false,
            secs: false,
            hours_only: true,
        },
    ),
];

/// Splits a Go layout into chunks.
fn parse_layout(layout: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut lit = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // `.000`, `.999`, `,000`: fractional seconds, when followed by no other digit.
        let b = rest.as_bytes();
        if (b[0] == b'.' || b[0] == b',') && b.len() > 1 && (b[1] == b'0' || b[1] == b'9') {
            let digit = b[1];
            let n = b[1..].iter().take_while(|&&c| c == digit).count();
            if !b.get(1 + n).is_some_and(u8::is_ascii_digit) {
                if !lit.is_empty() {
                    chunks.push(Chunk::Lit(std::mem::take(&mut lit)));
                }
                chunks.push(Chunk::Frac {
                    digits: n.min(9),
                    trim: digit == b'9',
                    sep: b[0] as char,
                });
                rest = &rest[1 + n..];
                continue;
            }
        }
        for (token, chunk) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                // Go reads `Jan`/`Mon` only when no lower-case letter follows.
                let word = matches!(chunk, Chunk::Month | Chunk::Weekday);
                if word && after.starts_with(|c: char| c.is_ascii_lowercase()) {
                    continue;
                }
                if !lit.is_empty() {
                    chunks.push(Chunk::Lit(std::mem::take(&mut lit)));
                }
                chunks.push(chunk.clone());
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        chunks.push(Chunk::Lit(lit));
    }
    chunks
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn format(chunks: &[Chunk], z: &jiff::Zoned) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let month = z.month() as usize;
    let hour12 = match z.hour() % 12 {
        0 => 12,
        h => h,
    };
    for c in chunks {
        let _ = match c {
            Chunk::Lit(s) => write!(out, "{s}"),
            Chunk::LongMonth => write!(out, "{}", MONTHS[month - 1]),
            Chunk::Month => write!(out, "{}", &MONTHS[month - 1][..3]),
            Chunk::NumMonth => write!(out, "{month}"),
            Chunk::ZeroMonth => write!(out, "{month:02}"),
            Chunk::LongWeekday => write!(
                out,
                "{}",
                WEEKDAYS[z.weekday().to_sunday_zero_offset() as usize]
            ),
            Chunk::Weekday => write!(
                out,
                "{}",
                &WEEKDAYS[z.weekday().to_sunday_zero_offset() as usize][..3]
            ),
            Chunk::Day => write!(out, "{}", z.day()),
            Chunk::UnderDay => write!(out, "{:>2}", z.day()),
            Chunk::ZeroDay => write!(out, "{:02}", z.day()),
            Chunk::YearDay => write!(out, "{:03}", z.day_of_year()),
            Chunk::Hour => write!(out, "{:02}", z.hour()),
            Chunk::Hour12 => write!(out, "{hour12}"),
            Chunk::ZeroHour12 => write!(out, "{hour12:02}"),
            Chunk::Minute => write!(out, "{}", z.minute()),
            Chunk::ZeroMinute => write!(out, "{:02}", z.minute()),
            Chunk::Second => write!(out, "{}", z.second()),
            Chunk::ZeroSecond => write!(out, "{:02}", z.second()),
            Chunk::LongYear => write!(out, "{:04}", z.year()),
            Chunk::Year => write!(out, "{:02}", z.year().rem_euclid(100)),
            Chunk::PM(upper) => match (z.hour() >= 12, upper) {
                (true, true) => write!(out, "PM"),
                (true, false) => write!(out, "pm"),
                (false, true) => write!(out, "AM"),
                (false, false) => write!(out, "am"),
            },
            Chunk::TzAbbrev => {
                let info = z.time_zone().to_offset_info(z.timestamp());
                write!(out, "{}", info.abbreviation())
            }
            Chunk::Offset {
                z: zulu,
                colon,
                secs,
                hours_only,
            } => {
                let total = z.offset().seconds();
                if *zulu && total == 0 {
                    write!(out, "Z")
                } else {
                    let sign = if total < 0 { '-' } else { '+' };
                    let a = total.unsigned_abs();
                    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
                    let sep = if *colon { ":" } else { "" };
                    if *hours_only {
                        write!(out, "{sign}{h:02}")
                    } else if *secs {
                        write!(out, "{sign}{h:02}{sep}{m:02}{sep}{s:02}")
                    } else {
                        write!(out, "{sign}{h:02}{sep}{m:02}")
                    }
                }
            }
            Chunk::Frac { digits, trim, sep } => {
                let nanos = format!("{:09}", z.subsec_nanosecond());
                let mut frac = &nanos[..*digits];
                if *trim {
                    frac = frac.trim_end_matches('0');
                }
                if frac.is_empty() {
                    Ok(())
                } else {
                    write!(out, "{sep}{frac}")
                }
            }
        };
    }
    out
}

/// The built processor.
#[derive(Debug)]
pub struct Date {
    tag_key: Option<String>,
    field_key: Option<String>,
    format: Format,
    offset_ns: i128,
    tz: TimeZone,
}

impl Processor for Date {
    const NAME: &'static str = "date";
    type Config = Config;

    fn new(c: Config, _: &BuildContext) -> Result<Self, BuildError> {
        if c.tag_key.is_none() && c.field_key.is_none() {
            return Err(BuildError::new("set `tag_key` or `field_key`"));
        }
        let layout = c.date_format.unwrap_or_else(|| "Jan".to_owned());
        let format = match layout.as_str() {
            "unix" => Format::Unix(1_000_000_000),
            "unix_ms" => Format::Unix(1_000_000),
            "unix_us" => Format::Unix(1_000),
            "unix_ns" => Format::Unix(1),
            _ => Format::Layout(parse_layout(&layout)),
        };
        let tz = match c.timezone.as_deref() {
            None | Some("UTC") | Some("") => TimeZone::UTC,
            Some("Local") => TimeZone::system(),
            Some(name) => TimeZone::get(name).map_err(|e| {
                BuildError::new(format!(
                    "`timezone = {name:?}`: not a known time zone ({e})"
                ))
            })?,
        };
        Ok(Date {
            tag_key: c.tag_key,
            field_key: c.field_key,
            format,
            offset_ns: c.date_offset.map_or(0, |d| d.0.as_nanos() as i128),
            tz,
        })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            let ns = i128::from(m.time) + self.offset_ns;
            let value = match &self.format {
                Format::Unix(per) => FieldValue::Int(ns.div_euclid(*per) as i64),
                Format::Layout(chunks) => match Timestamp::from_nanosecond(ns) {
                    Ok(ts) => FieldValue::Str(format(chunks, &ts.to_zoned(self.tz.clone()))),
                    Err(_) => continue,
                },
            };
            if let Some(k) = &self.tag_key {
                m.add_tag(k.clone(), value.to_text().into_owned());
            }
            if let Some(k) = &self.field_key {
                m.add_field(k.clone(), value);
            }
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::{cases, error};

    #[test]
    fn documented_examples() {
        // 2017-08-11T22:18:20Z, a Friday.
        cases(
            "[[processors.date]]\ntag_key = \"month\"\ndate_format = \"Jan\"\n",
            &[(
                "m v=1 1502489900000000000",
                "m,month=Aug v=1 1502489900000000000",
            )],
        );
        cases(
            "[[processors.date]]\nfield_key = \"ts\"\ndate_format = \"2006-01-02T15:04:05.000Z07:00 Monday _2 002 3PM MST\"\n",
            &[(
                "m v=1 1502489900123456789",
                "m v=1,ts=\"2017-08-11T22:18:20.123Z Friday 11 223 10PM UTC\" 1502489900123456789",
            )],
        );
        cases(
            "[[processors.date]]\nfield_key = \"epoch\"\ndate_format = \"unix_ms\"\ndate_offset = \"1h\"\n",
            &[("m v=1 1502489900123456789", "m v=1,epoch=1502493500123i 1502489900123456789")],
        );
        // An IANA zone from the system's database.
        if jiff::tz::TimeZone::get("Europe/Paris").is_ok() {
            cases(
                "[[processors.date]]\ntag_key = \"hour\"\ndate_format = \"15:04 -07:00 Jan 2\"\ntimezone = \"Europe/Paris\"\n",
                &[("m v=1 1502489900000000000", "m,hour=00:18\\ +02:00\\ Aug\\ 12 v=1 1502489900000000000")],
            );
        }
        assert!(error("[[processors.date]]\ndate_format = \"Jan\"\n").contains("tag_key"));
        assert!(
            error("[[processors.date]]\ntag_key = \"m\"\ntimezone = \"Mars/Olympus\"\n")
                .contains("not a known time zone")
        );
    }
}
