//! `processors.strings`: string functions on measurement names, tag and field values, and tag
//! and field keys. Each operation is a list of tables naming what it applies to (`measurement`,
//! `tag`, `field`, `tag_key`, `field_key`, globs) and, for values, an optional `dest`.

use base64::Engine;
use serde::Deserialize;

use crate::filter::GlobList;
use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.strings]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    lowercase: Vec<Target>,
    #[serde(default)]
    uppercase: Vec<Target>,
    #[serde(default)]
    titlecase: Vec<Target>,
    #[serde(default)]
    trim: Vec<Target>,
    #[serde(default)]
    trim_left: Vec<Target>,
    #[serde(default)]
    trim_right: Vec<Target>,
    #[serde(default)]
    trim_prefix: Vec<Target>,
    #[serde(default)]
    trim_suffix: Vec<Target>,
    #[serde(default)]
    replace: Vec<Target>,
    #[serde(default)]
    left: Vec<Target>,
    #[serde(default)]
    base64decode: Vec<Target>,
    #[serde(default)]
    valid_utf8: Vec<Target>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    measurement: Option<String>,
    tag: Option<String>,
    field: Option<String>,
    tag_key: Option<String>,
    field_key: Option<String>,
    dest: Option<String>,
    cutset: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    old: Option<String>,
    new: Option<String>,
    width: Option<usize>,
    replacement: Option<String>,
}

#[derive(Debug)]
enum Op {
    Lower,
    Upper,
    Title,
    Trim(Option<Vec<char>>),
    TrimLeft(Option<Vec<char>>),
    TrimRight(Option<Vec<char>>),
    TrimPrefix(String),
    TrimSuffix(String),
    Replace(String, String),
    Left(usize),
    Base64Decode,
    ValidUtf8,
}

impl Op {
    /// The new text, or `None` when the operation leaves `s` as it is.
    fn run(&self, s: &str) -> Option<String> {
        let out = match self {
            Op::Lower => s.to_lowercase(),
            Op::Upper => s.to_uppercase(),
            Op::Title => title(s),
            Op::Trim(None) => s.trim().to_owned(),
            Op::Trim(Some(set)) => s.trim_matches(set.as_slice()).to_owned(),
            Op::TrimLeft(None) => s.trim_start().to_owned(),
            Op::TrimLeft(Some(set)) => s.trim_start_matches(set.as_slice()).to_owned(),
            Op::TrimRight(None) => s.trim_end().to_owned(),
            Op::TrimRight(Some(set)) => s.trim_end_matches(set.as_slice()).to_owned(),
            Op::TrimPrefix(p) => s.strip_prefix(p.as_str()).unwrap_or(s).to_owned(),
            Op::TrimSuffix(p) => s.strip_suffix(p.as_str()).unwrap_or(s).to_owned(),
            Op::Replace(old, new) => s.replace(old.as_str(), new),
            Op::Left(width) => match s.char_indices().nth(*width) {
                Some((i, _)) => s[..i].to_owned(),
                None => return None,
            },
            Op::Base64Decode => {
                // As Telegraf: only when the result is valid UTF-8; otherwise left as it is.
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                String::from_utf8(bytes).ok()?
            }
            // A `String` is always valid UTF-8: nothing to replace once the value is parsed.
            Op::ValidUtf8 => return None,
        };
        (out != s).then_some(out)
    }
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

#[derive(Debug)]
struct Step {
    op: Op,
    measurement: Option<GlobList>,
    tag: Option<GlobList>,
    field: Option<GlobList>,
    tag_key: Option<GlobList>,
    field_key: Option<GlobList>,
    dest: Option<String>,
}

/// The built processor.
#[derive(Debug)]
pub struct Strings {
    steps: Vec<Step>,
}

impl Processor for Strings {
    const NAME: &'static str = "strings";
    type Config = Config;

    fn new(c: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let chars = |s: Option<String>| s.map(|s| s.chars().collect::<Vec<char>>());
        let mut steps = Vec::new();
        let groups: Vec<(&str, Vec<Target>)> = vec![
            ("lowercase", c.lowercase),
            ("uppercase", c.uppercase),
            ("titlecase", c.titlecase),
            ("trim", c.trim),
            ("trim_left", c.trim_left),
            ("trim_right", c.trim_right),
            ("trim_prefix", c.trim_prefix),
            ("trim_suffix", c.trim_suffix),
            ("replace", c.replace),
            ("left", c.left),
            ("base64decode", c.base64decode),
            ("valid_utf8", c.valid_utf8),
        ];
        for (name, targets) in groups {
            for t in targets {
                let need = |v: Option<String>, key: &str| {
                    v.ok_or_else(|| {
                        BuildError::new(format!("[[processors.strings.{name}]] needs `{key}`"))
                    })
                };
                let op = match name {
                    "lowercase" => Op::Lower,
                    "uppercase" => Op::Upper,
                    "titlecase" => Op::Title,
                    "trim" => Op::Trim(chars(t.cutset.clone())),
                    "trim_left" => Op::TrimLeft(chars(t.cutset.clone())),
                    "trim_right" => Op::TrimRight(chars(t.cutset.clone())),
                    "trim_prefix" => Op::TrimPrefix(need(t.prefix.clone(), "prefix")?),
                    "trim_suffix" => Op::TrimSuffix(need(t.suffix.clone(), "suffix")?),
                    "replace" => Op::Replace(
                        need(t.old.clone(), "old")?,
                        t.new.clone().unwrap_or_default(),
                    ),
                    "left" => Op::Left(t.width.ok_or_else(|| {
                        BuildError::new("[[processors.strings.left]] needs `width`")
                    })?),
                    "base64decode" => Op::Base64Decode,
                    _ => {
                        // Telegraf requires it; here every value is valid UTF-8 already (bodies
                        // are checked when they are received), so there is never anything to
                        // replace.
                        need(t.replacement.clone(), "replacement")?;
                        Op::ValidUtf8
                    }
                };
                let step = Step {
                    op,
                    measurement: super::glob(&format!("{name}.measurement"), &t.measurement)?,
                    tag: super::glob(&format!("{name}.tag"), &t.tag)?,
                    field: super::glob(&format!("{name}.field"), &t.field)?,
                    tag_key: super::glob(&format!("{name}.tag_key"), &t.tag_key)?,
                    field_key: super::glob(&format!("{name}.field_key"), &t.field_key)?,
                    dest: t.dest,
                };
                if step.measurement.is_none()
                    && step.tag.is_none()
                    && step.field.is_none()
                    && step.tag_key.is_none()
                    && step.field_key.is_none()
                {
                    return Err(BuildError::new(format!(
                        "[[processors.strings.{name}]]: set one of `measurement`, `tag`, `field`, `tag_key`, `field_key`"
                    )));
                }
                steps.push(step);
            }
        }
        Ok(Strings { steps })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            for step in &self.steps {
                step.apply(m);
            }
        }
        metrics
    }
}

impl Step {
    fn apply(&self, m: &mut Metric) {
        if let Some(g) = &self.measurement {
            if g.is_match(&m.name) {
                if let Some(new) = self.op.run(&m.name) {
                    m.name = new;
                }
            }
        }
        // With `dest`, the result goes there (even when unchanged); without, in place.
        if let Some(g) = &self.tag {
            m.update_tags(|k, v| {
                if !g.is_match(k) {
                    return None;
                }
                match (&self.dest, self.op.run(v)) {
                    (Some(dest), new) => Some((dest.clone(), new.unwrap_or_else(|| v.to_owned()))),
                    (None, new) => Some((k.to_owned(), new?)),
                }
            });
        }
        if let Some(g) = &self.field {
            m.update_fields(|k, v| {
                let FieldValue::Str(s) = v else { return None };
                if !g.is_match(k) {
                    return None;
                }
                let (key, text) = match (&self.dest, self.op.run(s)) {
                    (Some(dest), new) => (dest.clone(), new.unwrap_or_else(|| s.clone())),
                    (None, new) => (k.to_owned(), new?),
                };
                Some((key, FieldValue::Str(text)))
            });
        }
        if let Some(g) = &self.tag_key {
            let renames: Vec<(String, String)> = m
                .tags
                .iter()
                .filter(|(k, _)| g.is_match(k))
                .filter_map(|(k, _)| Some((k.clone(), self.op.run(k)?)))
                .collect();
            for (old, new) in renames {
                m.rename_tag(&old, new);
            }
        }
        if let Some(g) = &self.field_key {
            for (k, _) in &mut m.fields {
                if g.is_match(k) {
                    if let Some(new) = self.op.run(k) {
                        *k = new;
                    }
                }
            }
            // A renamed key that collides with another: the later one wins, as in a map.
            let mut seen = std::collections::HashSet::new();
            let mut i = m.fields.len();
            while i > 0 {
                i -= 1;
                if !seen.insert(m.fields[i].0.clone()) {
                    m.fields.remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::{cases, error};

    #[test]
    fn documented_examples() {
        cases(
            r#"
[[processors.strings]]
  [[processors.strings.lowercase]]
    tag = "uri_stem"
  [[processors.strings.trim_prefix]]
    tag = "uri_stem"
    prefix = "/api/"
  [[processors.strings.uppercase]]
    field = "cs-host"
    dest = "cs-host_normalised"
"#,
            &[(
                "iis_log,method=get,uri_stem=/API/HealthCheck cs-host=\"MIXEDCASE_host\",http_version=1.1 1519652321000000000",
                "iis_log,method=get,uri_stem=healthcheck cs-host=\"MIXEDCASE_host\",http_version=1.1,cs-host_normalised=\"MIXEDCASE_HOST\" 1519652321000000000",
            )],
        );
        cases(
            r#"
[[processors.strings]]
  [[processors.strings.trim]]
    field = "message"
    cutset = "\t "
  [[processors.strings.trim_left]]
    tag = "a"
    cutset = "x"
  [[processors.strings.trim_right]]
    tag = "b"
  [[processors.strings.trim_suffix]]
    field = "f"
    suffix = ".log"
  [[processors.strings.replace]]
    measurement = "*"
    old = ":"
    new = "_"
  [[processors.strings.left]]
    field = "long"
    width = 3
  [[processors.strings.titlecase]]
    field = "t"
  [[processors.strings.base64decode]]
    field = "b64"
"#,
            &[(
                "cpu:load,a=xxv,b=w\\  message=\"\t hi \",f=\"x.log\",long=\"abcdef\",t=\"hello big world\",b64=\"aGVsbG8=\" 1",
                "cpu_load,a=v,b=w message=\"hi\",f=\"x\",long=\"abc\",t=\"Hello Big World\",b64=\"hello\" 1",
            )],
        );
        // Keys: glob on tag and field keys.
        cases(
            r#"
[[processors.strings]]
  [[processors.strings.lowercase]]
    tag_key = "*"
    field_key = "V*"
"#,
            &[(
                "m,Host=A,zone=B Val=1,Other=2 1",
                "m,host=A,zone=B val=1,Other=2 1",
            )],
        );
        assert!(
            error("[[processors.strings]]\n[[processors.strings.trim_prefix]]\ntag = \"a\"\n")
                .contains("needs `prefix`")
        );
        assert!(
            error("[[processors.strings]]\n[[processors.strings.lowercase]]\n")
                .contains("set one of")
        );
    }
}
