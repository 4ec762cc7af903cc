//! `processors.enum`: maps field and tag values through a table (`value_mappings`), with an
//! optional `default` for values not in it, in place or into `dest`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::filter::GlobList;
use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.enum]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    mapping: Vec<Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    /// Deprecated single-field form.
    field: Option<String>,
    #[serde(default)]
    fields: Vec<String>,
    /// Deprecated single-tag form.
    tag: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    dest: Option<String>,
    default: Option<MapValue>,
    #[serde(default)]
    value_mappings: BTreeMap<String, MapValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum MapValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl MapValue {
    fn field(&self) -> FieldValue {
        match self {
            MapValue::Bool(b) => FieldValue::Bool(*b),
            MapValue::Int(i) => FieldValue::Int(*i),
            MapValue::Float(f) => FieldValue::Float(*f),
            MapValue::Str(s) => FieldValue::Str(s.clone()),
        }
    }
}

#[derive(Debug)]
struct Compiled {
    fields: Option<GlobList>,
    tags: Option<GlobList>,
    dest: Option<String>,
    default: Option<FieldValue>,
    table: BTreeMap<String, FieldValue>,
}

impl Compiled {
    fn lookup(&self, value: &FieldValue) -> Option<FieldValue> {
        // Only values that read as text are mapped: strings, booleans, integers.
        let key = match value {
            FieldValue::Float(_) => return None,
            v => v.to_text(),
        };
        self.table
            .get(key.as_ref())
            .or(self.default.as_ref())
            .cloned()
    }
}

/// The built processor.
#[derive(Debug)]
pub struct Enum {
    mappings: Vec<Compiled>,
}

impl Processor for Enum {
    const NAME: &'static str = "enum";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let mut mappings = Vec::new();
        for (i, m) in config.mapping.into_iter().enumerate() {
            let mut fields = m.fields;
            fields.extend(m.field);
            let mut tags = m.tags;
            tags.extend(m.tag);
            if fields.is_empty() && tags.is_empty() {
                return Err(BuildError::new(format!(
                    "mapping #{}: set `fields` or `tags` (the keys to map)",
                    i + 1
                )));
            }
            let list = |name: &str, keys: &[String]| {
                (!keys.is_empty())
                    .then(|| super::globs(&format!("mapping.{name}"), keys))
                    .transpose()
            };
            mappings.push(Compiled {
                fields: list("fields", &fields)?,
                tags: list("tags", &tags)?,
                dest: m.dest,
                default: m.default.map(|d| d.field()),
                table: m
                    .value_mappings
                    .into_iter()
                    .map(|(k, v)| (k, v.field()))
                    .collect(),
            });
        }
        if mappings.is_empty() {
            return Err(BuildError::new(
                "no [[processors.enum.mapping]] given: the processor would do nothing",
            ));
        }
        Ok(Enum { mappings })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            for map in &self.mappings {
                let key = |k: &str| map.dest.clone().unwrap_or_else(|| k.to_owned());
                if let Some(globs) = &map.tags {
                    m.update_tags(|k, v| {
                        if !globs.is_match(k) {
                            return None;
                        }
                        let mapped = map.lookup(&FieldValue::Str(v.to_owned()))?;
                        Some((key(k), mapped.to_text().into_owned()))
                    });
                }
                if let Some(globs) = &map.fields {
                    m.update_fields(|k, v| {
                        globs.is_match(k).then(|| Some((key(k), map.lookup(v)?)))?
                    });
                }
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
        cases(
            r#"
[[processors.enum]]
  [[processors.enum.mapping]]
    fields = ["status"]
    dest = "status_code"
    [processors.enum.mapping.value_mappings]
      green = 1
      amber = 2
      red = 3
"#,
            &[
                (
                    "xyzzy status=\"green\" 1",
                    "xyzzy status=\"green\",status_code=1i 1",
                ),
                // No default: an unmapped value is left alone.
                ("xyzzy status=\"blue\" 1", "xyzzy status=\"blue\" 1"),
            ],
        );
        cases(
            r#"
[[processors.enum]]
  [[processors.enum.mapping]]
    tag = "status"
    default = "unknown"
    [processors.enum.mapping.value_mappings]
      200 = "ok"
"#,
            &[
                ("http,status=200 v=1 1", "http,status=ok v=1 1"),
                ("http,status=503 v=1 1", "http,status=unknown v=1 1"),
            ],
        );
        // Booleans and integers are looked up by their text; globs select keys.
        cases(
            r#"
[[processors.enum]]
  [[processors.enum.mapping]]
    fields = ["up_*"]
    [processors.enum.mapping.value_mappings]
      true = 1
      false = 0
      7 = "seven"
"#,
            &[(
                "m up_a=true,up_b=false,up_c=7i,other=true 1",
                "m up_a=1i,up_b=0i,up_c=\"seven\",other=true 1",
            )],
        );
        assert!(
            error("[[processors.enum]]\n[[processors.enum.mapping]]\ndest = \"x\"\n")
                .contains("set `fields` or `tags`")
        );
    }
}
