//! `processors.converter`: changes field types, moves tags to fields and fields to tags, sets
//! the measurement or the timestamp from a tag or field. Keys are globs. A value that does not
//! convert is removed (as Telegraf does), and counted in the debug log.
//!
//! Arithmetic is Telegraf's: floats round to the nearest integer and saturate at the type's
//! bounds; negative values become 0 as unsigned; strings parse as decimal, `0x` hex, `0o`/`0b`,
//! or as a float then round; `strconv.ParseBool` spellings for booleans.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::filter::GlobList;
use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.converter]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    tags: Option<Conversion>,
    fields: Option<Conversion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Conversion {
    #[serde(default)]
    measurement: Vec<String>,
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default)]
    string: Vec<String>,
    #[serde(default)]
    integer: Vec<String>,
    #[serde(default)]
    unsigned: Vec<String>,
    #[serde(default)]
    boolean: Vec<String>,
    #[serde(default)]
    float: Vec<String>,
    #[serde(default)]
    timestamp: Vec<String>,
    timestamp_format: Option<String>,
    base64: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum To {
    Measurement,
    Tag,
    Str,
    Int,
    UInt,
    Bool,
    Float,
    Timestamp(TimeUnit),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeUnit {
    S,
    Ms,
    Us,
    Ns,
}

/// One conversion table compiled: target kinds in Telegraf's order of precedence.
#[derive(Debug)]
struct Compiled(Vec<(To, GlobList)>);

impl Compiled {
    fn new(c: Conversion, table: &str, fields: bool) -> Result<Self, BuildError> {
        super::unsupported(
            &format!("{table}.base64"),
            &c.base64,
            "base64 conversion is not implemented",
        )?;
        let unit = match c.timestamp_format.as_deref() {
            None | Some("unix") => TimeUnit::S,
            Some("unix_ms") => TimeUnit::Ms,
            Some("unix_us") => TimeUnit::Us,
            Some("unix_ns") => TimeUnit::Ns,
            Some(other) => {
                return Err(BuildError::new(format!(
                    "`{table}.timestamp_format = {other:?}` is not supported by heliograph: use unix, unix_ms, unix_us or unix_ns"
                )))
            }
        };
        if !fields && !c.tag.is_empty() {
            return Err(BuildError::new(format!(
                "`{table}.tag`: tags are already tags; `tag` applies to [processors.converter.fields]"
            )));
        }
        // Which conversion wins when a key matches several: Telegraf's order per table.
        let order = if fields {
            vec![
                (To::Measurement, c.measurement, "measurement"),
                (To::Tag, c.tag, "tag"),
                (To::Timestamp(unit), c.timestamp, "timestamp"),
                (To::Float, c.float, "float"),
                (To::Int, c.integer, "integer"),
                (To::UInt, c.unsigned, "unsigned"),
                (To::Bool, c.boolean, "boolean"),
                (To::Str, c.string, "string"),
            ]
        } else {
            vec![
                (To::Measurement, c.measurement, "measurement"),
                (To::Timestamp(unit), c.timestamp, "timestamp"),
                (To::Str, c.string, "string"),
                (To::Int, c.integer, "integer"),
                (To::UInt, c.unsigned, "unsigned"),
                (To::Bool, c.boolean, "boolean"),
                (To::Float, c.float, "float"),
            ]
        };
        let mut out = Vec::new();
        for (to, keys, name) in order {
            if !keys.is_empty() {
                out.push((to, super::globs(&format!("{table}.{name}"), &keys)?));
            }
        }
        Ok(Compiled(out))
    }

    fn target(&self, key: &str) -> Option<To> {
        self.0
            .iter()
            .find(|(_, g)| g.is_match(key))
            .map(|(to, _)| *to)
    }
}

/// The built processor.
#[derive(Debug)]
pub struct Converter {
    tags: Option<Compiled>,
    fields: Option<Compiled>,
}

impl Processor for Converter {
    const NAME: &'static str = "converter";
    type Config = Config;

    fn new(config: Config, cx: &BuildContext) -> Result<Self, BuildError> {
        let tags = config
            .tags
            .map(|c| Compiled::new(c, "tags", false))
            .transpose()?;
        let fields = config
            .fields
            .map(|c| Compiled::new(c, "fields", true))
            .transpose()?;
        if tags.as_ref().is_none_or(|c| c.0.is_empty())
            && fields.as_ref().is_none_or(|c| c.0.is_empty())
        {
            // Telegraf's generated config has one with every list empty: a no-op there too.
            cx.warnings.warn(
                "no conversion given (every list is empty): this processor does nothing; set [processors.converter.tags] or [processors.converter.fields]",
            );
        }
        Ok(Converter { tags, fields })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            if let Some(c) = &self.tags {
                convert_tags(c, m);
            }
            if let Some(c) = &self.fields {
                convert_fields(c, m);
            }
        }
        metrics
    }
}

fn convert_tags(c: &Compiled, m: &mut Metric) {
    let mut i = 0;
    while i < m.tags.len() {
        let Some(to) = c.target(&m.tags[i].0) else {
            i += 1;
            continue;
        };
        let (key, value) = m.tags.remove(i);
        let value = FieldValue::Str(value);
        match to {
            To::Measurement => m.name = text(&value),
            To::Timestamp(unit) => {
                if let Some(t) = timestamp(&value, unit) {
                    m.time = t;
                }
            }
            _ => {
                if let Some(v) = convert(&value, to) {
                    m.add_field(key, v);
                }
            }
        }
    }
}

fn convert_fields(c: &Compiled, m: &mut Metric) {
    let mut i = 0;
    while i < m.fields.len() {
        let Some(to) = c.target(&m.fields[i].0) else {
            i += 1;
            continue;
        };
        match to {
            To::Measurement | To::Tag | To::Timestamp(_) => {
                let (key, value) = m.fields.remove(i);
                match to {
                    To::Measurement => m.name = text(&value),
                    To::Tag => m.add_tag(key, text(&value)),
                    To::Timestamp(unit) => {
                        if let Some(t) = timestamp(&value, unit) {
                            m.time = t;
                        }
                    }
                    _ => unreachable!("matched above"),
                }
            }
            _ => match convert(&m.fields[i].1, to) {
                Some(v) => {
                    m.fields[i].1 = v;
                    i += 1;
                }
                None => {
                    m.fields.remove(i);
                }
            },
        }
    }
}

fn text(v: &FieldValue) -> String {
    v.to_text().into_owned()
}

fn convert(v: &FieldValue, to: To) -> Option<FieldValue> {
    Some(match to {
        To::Str => FieldValue::Str(text(v)),
        To::Int => FieldValue::Int(to_int(v)?),
        To::UInt => FieldValue::UInt(to_uint(v)?),
        To::Bool => FieldValue::Bool(to_bool(v)?),
        To::Float => FieldValue::Float(to_float(v)?),
        To::Measurement | To::Tag | To::Timestamp(_) => return None,
    })
}

fn to_bool(v: &FieldValue) -> Option<bool> {
    Some(match v {
        FieldValue::Int(i) => *i != 0,
        FieldValue::UInt(u) => *u != 0,
        FieldValue::Float(f) => *f != 0.0,
        FieldValue::Bool(b) => *b,
        FieldValue::Str(s) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return None,
        },
    })
}

fn float_to_int(f: f64) -> Option<i64> {
    if f.is_nan() {
        return None;
    }
    // `as` saturates at the bounds, as Telegraf's explicit checks do.
    Some(f.round() as i64)
}

fn float_to_uint(f: f64) -> Option<u64> {
    if f.is_nan() {
        return None;
    }
    Some(if f < 0.0 { 0 } else { f.round() as u64 })
}

/// An integer in Go's `strconv.ParseInt(s, 0, 64)` syntax: sign, `0x`/`0o`/`0b`/leading-0 octal.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.replace('_', "");
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    if lower.len() >= 3 && lower.as_bytes()[1] == b'x' || lower.starts_with("-0x") {
        // Telegraf reads hex strings as big integers, then as floats.
        return parse_go_int(s).map(|v| v as f64);
    }
    s.parse().ok()
}

fn to_int(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Int(i) => Some(*i),
        FieldValue::UInt(u) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
        FieldValue::Float(f) => float_to_int(*f),
        FieldValue::Bool(b) => Some(i64::from(*b)),
        FieldValue::Str(s) => match parse_go_int(s).and_then(|v| i64::try_from(v).ok()) {
            Some(v) => Some(v),
            None => float_to_int(parse_go_float(s)?),
        },
    }
}

fn to_uint(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::UInt(u) => Some(*u),
        FieldValue::Int(i) => Some(u64::try_from(*i).unwrap_or(0)),
        FieldValue::Float(f) => float_to_uint(*f),
        FieldValue::Bool(b) => Some(u64::from(*b)),
        FieldValue::Str(s) => match parse_go_int(s).and_then(|v| u64::try_from(v).ok()) {
            Some(v) if !s.starts_with('-') => Some(v),
            _ => float_to_uint(parse_go_float(s)?),
        },
    }
}

fn to_float(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Int(i) => Some(*i as f64),
        FieldValue::UInt(u) => Some(*u as f64),
        FieldValue::Float(f) => Some(*f),
        FieldValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        FieldValue::Str(s) => parse_go_float(s),
    }
}

fn timestamp(v: &FieldValue, unit: TimeUnit) -> Option<i64> {
    let scale: i64 = match unit {
        TimeUnit::S => 1_000_000_000,
        TimeUnit::Ms => 1_000_000,
        TimeUnit::Us => 1_000,
        TimeUnit::Ns => 1,
    };
    match v {
        FieldValue::Float(f) if unit == TimeUnit::S => {
            let ns = f * 1e9;
            (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns.round() as i64)
        }
        _ => to_int(v)?.checked_mul(scale),
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::{cases, error};

    #[test]
    fn documented_examples() {
        // Convert `port` tag to an integer field and `scboard_*` fields to unsigned.
        cases(
            r#"
[[processors.converter]]
  [processors.converter.tags]
    integer = ["port"]
  [processors.converter.fields]
    unsigned = ["scboard_*"]
"#,
            &[(
                "apache,port=80,server=debian-stretch-apache BusyWorkers=1,BytesPerReq=0,scboard_closing=0,scboard_dnslookup=0 1502489900000000000",
                "apache,server=debian-stretch-apache BusyWorkers=1,BytesPerReq=0,scboard_closing=0u,scboard_dnslookup=0u,port=80i 1502489900000000000",
            )],
        );
        // A field to the measurement name; a field to a tag.
        cases(
            r#"
[[processors.converter]]
  [processors.converter.fields]
    measurement = ["topic"]
    tag = ["host"]
"#,
            &[(
                "mqtt_consumer topic=\"sensor\",host=\"a\",value=1 1",
                "sensor,host=a value=1 1",
            )],
        );
    }

    #[test]
    fn arithmetic_matches_telegraf() {
        let config = r#"
[[processors.converter]]
  [processors.converter.fields]
    integer = ["i_*"]
    unsigned = ["u_*"]
    float = ["f_*"]
    boolean = ["b_*"]
    string = ["s_*"]
"#;
        cases(
            config,
            &[
                // Floats round to nearest and saturate; strings parse decimal, hex, float.
                (
                    "m i_a=2.5,i_b=-2.5,i_c=1e300,i_d=\"0x1F\",i_e=\"42\",i_f=\"4.6\",i_g=true,i_h=\"nope\",i_k=18446744073709551615u 1",
                    "m i_a=3i,i_b=-3i,i_c=9223372036854775807i,i_d=31i,i_e=42i,i_f=5i,i_g=1i,i_k=9223372036854775807i 1",
                ),
                (
                    "m u_a=-4i,u_b=3.5,u_c=\"17\",u_d=\"-3\",u_e=false 1",
                    "m u_a=0u,u_b=4u,u_c=17u,u_d=0u,u_e=0u 1",
                ),
                (
                    "m f_a=3i,f_b=\"1.25\",f_c=\"0x10\",f_d=true,f_e=\"x\" 1",
                    "m f_a=3,f_b=1.25,f_c=16,f_d=1 1",
                ),
                (
                    "m b_a=0i,b_b=\"true\",b_c=\"T\",b_d=\"yes\",b_e=0.5 1",
                    "m b_a=false,b_b=true,b_c=true,b_e=true 1",
                ),
                (
                    "m s_a=1.5,s_b=10i,s_c=true,s_d=7u 1",
                    "m s_a=\"1.5\",s_b=\"10\",s_c=\"true\",s_d=\"7\" 1",
                ),
            ],
        );
    }

    #[test]
    fn tags_to_fields_and_timestamps() {
        cases(
            r#"
[[processors.converter]]
  [processors.converter.tags]
    float = ["temp"]
    boolean = ["up"]
    measurement = ["kind"]
  [processors.converter.fields]
    timestamp = ["ts"]
    timestamp_format = "unix_ms"
"#,
            &[(
                "m,kind=room,temp=21.5,up=true,x=y v=1i,ts=1700000000123i 5",
                "room,x=y v=1i,temp=21.5,up=true 1700000000123000000",
            )],
        );
    }

    #[test]
    fn unsupported_options_are_refused() {
        let e = error("[[processors.converter]]\n[processors.converter.fields]\ntimestamp = [\"t\"]\ntimestamp_format = \"2006-01-02\"\n");
        assert!(e.contains("not supported"), "{e}");
        let e =
            error("[[processors.converter]]\n[processors.converter.fields]\nbase64 = [\"t\"]\n");
        assert!(e.contains("`fields.base64` is not supported"), "{e}");
    }

    #[test]
    fn no_conversion_is_a_warning_as_in_telegraf() {
        let config = crate::config::from_texts(
            &[(
                std::path::PathBuf::from("test.toml"),
                "[[outputs.file]]\n[[processors.converter]]\n[processors.converter.fields]\nfloat = []\n".to_owned(),
            )],
            |_| None,
        )
        .unwrap();
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0]
                .starts_with("test.toml:2:1: [[processors.converter]]: no conversion"),
            "{:?}",
            config.warnings
        );
    }
}
