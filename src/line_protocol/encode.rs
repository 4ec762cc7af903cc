//! Line protocol encoding: one metric per line, nanosecond timestamps, every element escaped.
//!
//! The output parses back to the same metric with [`super::Parser`]. Float fields that are NaN or
//! infinite cannot be written in line protocol; they are left out, and a metric left with no
//! field is not written at all (as Telegraf does).

use std::fmt::Write as _;

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
    let rewind = out.len();
    escape(&metric.name, false, out);
    for (key, value) in &metric.tags {
        out.push(',');
        escape(key, true, out);
        out.push('=');
        escape(value, true, out);
    }
    let mut sep = ' ';
    for (key, value) in &metric.fields {
        if let FieldValue::Float(v) = value {
            if !v.is_finite() {
                continue;
            }
        }
        out.push(sep);
        sep = ',';
        escape(key, true, out);
        out.push('=');
        match value {
            FieldValue::Float(v) => {
                // `{}` prints the shortest text that reads back to the same f64; add nothing.
                let _ = write!(out, "{v}");
            }
            FieldValue::Int(v) => {
                let _ = write!(out, "{v}i");
            }
            FieldValue::UInt(v) => {
                let _ = write!(out, "{v}u");
            }
            FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            FieldValue::Str(s) => {
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
    let _ = writeln!(out, " {}", metric.time);
    true
}

/// Encodes every metric in `metrics`, one line each; returns how many were written.
pub fn encode_all<'m>(metrics: impl IntoIterator<Item = &'m Metric>, out: &mut String) -> usize {
    metrics.into_iter().filter(|m| encode(m, out)).count()
}

fn escape(s: &str, is_key_or_tag: bool, out: &mut String) {
    let special = |c: char| c == ' ' || c == ',' || c == '\\' || (is_key_or_tag && c == '=');
    if !s.contains(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
}
