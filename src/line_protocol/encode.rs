//! Line protocol encoding: one metric per line, nanosecond timestamps, every element escaped.
//!
//! The output parses back to the same metric with [`super::Parser`]. Float fields that are NaN or
//! infinite cannot be written in line protocol; they are left out, and a metric left with no
//! field is not written at all (as Telegraf does).

use std::fmt::Write as _;

use super::{Line, Value, Verbatim};
use crate::metric::{FieldValue, Metric};

/// Appends `metric` as one line (with its trailing LF) to `out`.
///
/// Returns `false`, writing nothing, when the metric has no field that can be encoded.
///
/// ```
/// use heliograph::line_protocol::encode;
/// use heliograph::metric::{FieldValue, Metric};
/// let mut m = Metric::new("cpu load", 5);
/// m.add_tag("host", "a,b");
/// m.add_field("v", FieldValue::Str("say \"hi\"".into()));
/// let mut out = String::new();
/// assert!(encode(&m, &mut out));
/// assert_eq!(out, "cpu\\ load,host=a\\,b v=\"say \\\"hi\\\"\" 5\n");
/// ```
pub fn encode(metric: &Metric, out: &mut String) -> bool {
    let fields = metric.fields.iter().map(|(k, v)| {
        let v = match v {
            FieldValue::Float(f) => Field::Float(*f),
            FieldValue::Int(i) => Field::Int(*i),
            FieldValue::UInt(u) => Field::UInt(*u),
            FieldValue::Str(s) => Field::Str(s),
            FieldValue::Bool(b) => Field::Bool(*b),
        };
        (k.as_str(), v)
    });
    let tags = metric.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    encode_parts(&metric.name, tags, fields, metric.time, out)
}

/// Appends a parsed line as one normalized line (its timestamp `time`, in ns), as [`encode`]
/// would write the metric it makes (floats excepted: their text is kept as written), without
/// making it.
pub fn encode_line(line: &Line<'_>, time: i64, out: &mut String) -> bool {
    // What the parser found already in this form is copied (most lines: nothing escaped).
    // The timestamp as written is copied too when it is `time` (the write's precision is ns).
    let copy = |text: &str, stamp: usize, out: &mut String| {
        if stamp > 0 && line.timestamp == Some(time) {
            out.push_str(text);
            out.push('\n');
        } else {
            out.push_str(&text[..text.len() - stamp]);
            end_line(time, out);
        }
    };
    match line.verbatim {
        Verbatim::Whole { text, stamp, .. } => {
            copy(text, stamp, out);
            return true;
        }
        Verbatim::Fields { text, stamp } => {
            out.push_str(&line.measurement);
            for (key, value) in &line.tags {
                out.push(',');
                out.push_str(key);
                out.push('=');
                out.push_str(value);
            }
            out.push(' ');
            copy(text, stamp, out);
            return true;
        }
        Verbatim::No => {}
    }
    // A float written in valid syntax is copied as written (`1e3`, `0.50`): it reads back to
    // the same value, and formatting it again was a tenth of the write path's CPU.
    let mut raw = line.float_text.iter();
    let fields = line.fields.iter().map(move |(k, v)| {
        let v = match v {
            Value::Float(f) => match raw.next() {
                Some(text) => Field::FloatText(text),
                None => Field::Float(*f),
            },
            Value::Int(i) => Field::Int(*i),
            Value::UInt(u) => Field::UInt(*u),
            Value::Str(s) => Field::Str(s),
            Value::Bool(b) => Field::Bool(*b),
        };
        (k.as_ref(), v)
    });
    let tags = line.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
    encode_parts(&line.measurement, tags, fields, time, out)
}

/// Writes a finite float as `{}` does: the shortest text that reads back to the same value, no
/// exponent, no trailing `.0` (where two shortest texts exist, either may be written); through
/// ryu, which is several times faster.
fn write_float(v: f64, out: &mut String) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    if text.contains('e') {
        // ryu's exponent form (|v| < 1e-5 or >= 1e16): rare; `{}` writes it out in full.
        let _ = write!(out, "{v}");
    } else {
        out.push_str(text.strip_suffix(".0").unwrap_or(text));
    }
}

/// A field value to encode, borrowed.
enum Field<'a> {
    Float(f64),
    /// A float's text as written (valid float syntax, finite).
    FloatText(&'a str),
    Int(i64),
    UInt(u64),
    Str(&'a str),
    Bool(bool),
}

fn encode_parts<'a>(
    name: &str,
    tags: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    fields: impl Iterator<Item = (&'a str, Field<'a>)> + Clone,
    time: i64,
    out: &mut String,
) -> bool {
    let rewind = out.len();
    // A name cannot end in a backslash in line protocol (it would escape the delimiter after
    // it, and parsers refuse it): trailing backslashes are dropped, and a tag or field left
    // with an empty name is not written, as Telegraf does. Nor is one whose shortened key is
    // then `time` or another tag's or field's (the parser refuses such lines).
    let keys = tags
        .clone()
        .map(|(k, _)| k)
        .chain(fields.clone().map(|(k, _)| k));
    // A key as written, or `None` when it cannot be.
    let writable = |key: &'a str| -> Option<&'a str> {
        let short = key.trim_end_matches('\\');
        let clash = short.len() < key.len()
            && (short == "time"
                || keys
                    .clone()
                    .any(|k| k != key && k.trim_end_matches('\\') == short));
        (!short.is_empty() && !clash).then_some(short)
    };
    let name = name.trim_end_matches('\\');
    if name.is_empty() {
        return false;
    }
    escape(name, false, out);
    for (key, value) in tags {
        let (Some(key), value) = (writable(key), value.trim_end_matches('\\')) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        out.push(',');
        escape(key, true, out);
        out.push('=');
        escape(value, true, out);
    }
    let mut sep = ' ';
    for (key, value) in fields {
        if let Field::Float(v) = value {
            if !v.is_finite() {
                continue;
            }
        }
        let Some(key) = writable(key) else {
            continue;
        };
        out.push(sep);
        sep = ',';
        escape(key, true, out);
        out.push('=');
        match value {
            Field::Float(v) => write_float(v, out),
            Field::FloatText(text) => out.push_str(text),
            Field::Int(v) => {
                out.push_str(itoa::Buffer::new().format(v));
                out.push('i');
            }
            Field::UInt(v) => {
                out.push_str(itoa::Buffer::new().format(v));
                out.push('u');
            }
            Field::Bool(v) => out.push_str(if v { "true" } else { "false" }),
            Field::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    if sep == ' ' {
        out.truncate(rewind);
        return false;
    }
    end_line(time, out);
    true
}

/// The timestamp and the LF that end a line.
fn end_line(time: i64, out: &mut String) {
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(time));
    out.push('\n');
}

/// Encodes every metric in `metrics`, one line each; returns how many were written.
pub fn encode_all<'m>(metrics: impl IntoIterator<Item = &'m Metric>, out: &mut String) -> usize {
    metrics.into_iter().filter(|m| encode(m, out)).count()
}

/// Where the point this encoder wrote that starts at `text[0]` ends: the offset of the LF that
/// ends it, or `text.len()`. A string field value may hold LFs (line protocol has no escape
/// for them), so a point is not simply a line: it is walked by its grammar ([`walk_point`]).
/// The parser is not needed for that, and does more. A point without a `"` before its first
/// LF ends there, which is found without the grammar.
pub fn encoded_point_end(text: &[u8]) -> usize {
    let first = memchr::memchr(b'\n', text).unwrap_or(text.len());
    if memchr::memchr(b'"', &text[..first]).is_none() {
        return first;
    }
    walk_point(text, |_, _, _| {})
}

/// Walks the point this encoder wrote that starts at `text[0]`, calling `name(start, end,
/// is_measurement)` for each of its names in order (measurement, tag keys and values, field
/// keys), and returns where it ends: the offset of its LF, or `text.len()`. Names run to their
/// first delimiter outside a `\x` pair (a `"` in a name is an ordinary character, as
/// [`escape`] leaves it; so is `=` in a measurement), string values to their closing quote.
fn walk_point(text: &[u8], mut name: impl FnMut(usize, usize, bool)) -> usize {
    let lf = |from: usize| {
        memchr::memchr(b'\n', &text[from.min(text.len())..]).map_or(text.len(), |i| from + i)
    };
    // From `i` to the first byte of `stops` outside a `\x` pair.
    let skip = |mut i: usize, stops: &[u8]| {
        while i < text.len() && !stops.contains(&text[i]) {
            i += if text[i] == b'\\' { 2 } else { 1 };
        }
        i.min(text.len())
    };
    let mut i = skip(0, b" ,\n");
    name(0, i, true);
    while matches!(text.get(i), Some(b',' | b'=')) {
        let start = i + 1;
        i = skip(start, b" ,=\n");
        name(start, i, false);
    }
    if text.get(i) != Some(&b' ') {
        return lf(i);
    }
    // Fields: `key=value` separated by commas, up to the space before the timestamp.
    i += 1;
    loop {
        let start = i;
        i = skip(start, b" ,=\n");
        name(start, i, false);
        if text.get(i) != Some(&b'=') {
            return lf(i);
        }
        i += 1;
        if text.get(i) == Some(&b'"') {
            i += 1;
            while i < text.len() && text[i] != b'"' {
                i += if text[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            while i < text.len() && !matches!(text[i], b',' | b' ' | b'\n') {
                i += 1;
            }
        }
        match text.get(i) {
            Some(b',') => i += 1,
            _ => return lf(i),
        }
    }
}

/// `text` (line protocol this encoder wrote) with its names as InfluxDB 1.x and 2.x read them,
/// or `None` when it has no backslash in a name (nothing to change). Those servers take a
/// backslash in a name as an escape only before a space, a comma or `=`, and keep any other as
/// it is; this encoder writes a name's backslash as `\\` (one backslash to [`super::Parser`],
/// two to them). So each `\\` in a name becomes `\`; string field values read the same in
/// both and are copied. (The encoder never writes a name ending in a backslash, the one case
/// without a 1.x spelling; one found anyway loses that backslash.)
pub fn with_v1_names(text: &str) -> Option<String> {
    let b = text.as_bytes();
    memchr::memchr(b'\\', b)?;
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut at = 0;
    while at < b.len() {
        let point = &b[at..];
        let mut copied = 0;
        let end = walk_point(point, |start, end, measurement| {
            out.extend_from_slice(&point[copied..start]);
            changed |= v1_name(&point[start..end], measurement, &mut out);
            copied = end;
        });
        let next = (end + 1).min(point.len());
        out.extend_from_slice(&point[copied..next]);
        at += next;
    }
    // Only ASCII bytes were dropped, never part of a longer character.
    changed.then(|| String::from_utf8(out).expect("valid UTF-8 in, ASCII dropped"))
}

/// Appends one name as [`with_v1_names`] spells it: each `\\` pair as one backslash, but in a
/// measurement before `=` (which 1.x unescapes there: `\\=` is read as `\=`), and none for
/// a trailing one (it cannot be written). Returns whether the name changed.
fn v1_name(name: &[u8], measurement: bool, out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let mut rest = name;
    while let [c, tail @ ..] = rest {
        rest = match (c, tail) {
            (b'\\', [b'\\', after @ ..]) => {
                match after.first() {
                    Some(b'=') if measurement => out.extend_from_slice(b"\\\\"),
                    Some(_) => {
                        out.push(b'\\');
                        changed = true;
                    }
                    None => changed = true, // a trailing backslash: none can be written
                }
                after
            }
            (b'\\', [x, after @ ..]) => {
                out.extend_from_slice(&[b'\\', *x]);
                after
            }
            _ => {
                out.push(*c);
                tail
            }
        };
    }
    changed
}

/// Each point of `text` (line protocol this encoder wrote), as `start..end` without its LF, as
/// [`encoded_point_end`] finds them; the plain LF search when no string value can hold one (no
/// `"` in the text). Empty lines are skipped.
pub fn encoded_points(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let quoted = memchr::memchr(b'"', text).is_some();
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < text.len() {
            let rest = &text[start..];
            let len = if quoted {
                encoded_point_end(rest)
            } else {
                memchr::memchr(b'\n', rest).unwrap_or(rest.len())
            };
            let point = (start, start + len);
            start += len + 1;
            if len > 0 {
                return Some(point);
            }
        }
        None
    })
}

/// Bytes escaped in every name (`NAME`), and also in keys and tag values (`KEY`).
const NAME: u8 = 1;
const KEY: u8 = 2;
static SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = NAME | KEY;
    t[b',' as usize] = NAME | KEY;
    t[b'\\' as usize] = NAME | KEY;
    t[b'=' as usize] = KEY;
    t
};

fn escape(s: &str, is_key_or_tag: bool, out: &mut String) {
    let mask = if is_key_or_tag { KEY } else { NAME };
    // One table lookup per byte (every special character is ASCII); most names have none.
    let Some(first) = s.bytes().position(|b| SPECIAL[b as usize] & mask != 0) else {
        out.push_str(s);
        return;
    };
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if c.is_ascii() && SPECIAL[c as usize] & mask != 0 {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::write_float;

    #[test]
    fn floats_are_written_as_display_writes_them() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            100.0,
            123.456,
            1e15,
            1e16,
            1.5e17,
            1e21,
            1e-5,
            1e-7,
            2.5e-6,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9007199254740993.0,
            0.30000000000000004,
        ];
        for v in values {
            let mut out = String::new();
            write_float(v, &mut out);
            assert_eq!(out, format!("{v}"), "{v:e}");
        }
        // And a spread of others, bit patterns from a xorshift: the same value back, in plain
        // decimal (where two shortest texts exist, ryu and `{}` may pick different ones).
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                let mut out = String::new();
                write_float(v, &mut out);
                assert_eq!(out.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{out}");
                assert!(!out.contains('e'), "{out}");
                assert_eq!(out.len(), format!("{v}").len(), "{out} is as short as {v}");
            }
        }
    }

    /// Names reach InfluxDB 1.x as they were written to it: a `\\` pair in a name becomes one
    /// backslash; escapes, string values and the rest are copied.
    #[test]
    fn names_are_spelled_for_influxdb_1x() {
        let v1 = |t: &str| super::with_v1_names(t);
        assert_eq!(v1("cpu,host=a v=1 1\n"), None);
        assert_eq!(v1("cpu,host=a\\ b v=1,s=\"x\\\\y\" 1\n"), None);
        assert_eq!(
            v1("win,path=C:\\\\Windows\\\\System32,sp=x\\ y v=1,s=\"a\\\\b\" 1\nm\\\\n,k\\\\=v f\\\\k=2i\n")
                .as_deref(),
            Some("win,path=C:\\Windows\\System32,sp=x\\ y v=1,s=\"a\\\\b\" 1\nm\\n,k=v f\\k=2i\n")
        );
        // A literal backslash before an escaped delimiter; `\=` in a measurement, which 1.x
        // unescapes there.
        assert_eq!(
            v1("m,t=a\\\\\\,b v=1\nx\\\\=y v=1\n").as_deref(),
            Some("m,t=a\\\\,b v=1\nx\\\\=y v=1\n")
        );
        // A trailing backslash has no 1.x spelling.
        assert_eq!(v1("m,t=a\\\\ v=1\n").as_deref(), Some("m,t=a v=1\n"));
    }

    /// A name ending in a backslash is written without it (the parser refuses such names); a
    /// tag or field left without a name is not written.
    #[test]
    fn trailing_backslashes_are_dropped_from_names() {
        use crate::line_protocol::Parser;
        use crate::metric::{FieldValue, Metric};
        let mut m = Metric::new("disk\\", 1);
        m.add_tag("path", "C:\\");
        m.add_tag("only", "\\");
        m.add_field("v\\", FieldValue::Int(1));
        m.add_field("\\", FieldValue::Int(2));
        let mut out = String::new();
        assert!(super::encode(&m, &mut out));
        assert_eq!(out, "disk,path=C: v=1i 1\n");
        assert!(Parser::new(&out).all(|r| r.is_ok()));
        // Nor one whose shortened key is another's, or `time`.
        let mut m = Metric::new("m", 1);
        for tag in ["a", "a\\", "b\\", "time\\"] {
            m.add_tag(tag, "x");
        }
        m.add_field("a\\", FieldValue::Int(1));
        m.add_field("b", FieldValue::Int(2));
        m.add_field("c\\", FieldValue::Int(3));
        out.clear();
        assert!(super::encode(&m, &mut out));
        assert_eq!(out, "m,a=x b=2i,c=3i 1\n");
        assert!(Parser::new(&out).all(|r| r.is_ok()));
        let mut bare = Metric::new("\\", 1);
        bare.add_field("v", FieldValue::Int(1));
        assert!(!super::encode(&bare, &mut out));
    }
}
