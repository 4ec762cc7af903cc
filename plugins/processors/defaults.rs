//! `processors.defaults`: sets fields (and tags) that are missing, or whose value is an empty
//! or all-blank string, to a default.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.defaults]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Field key to default value (string, integer, float or boolean).
    #[serde(default)]
    fields: BTreeMap<String, DefaultValue>,
    /// Tag key to default value.
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DefaultValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl DefaultValue {
    fn value(&self) -> FieldValue {
        match self {
            DefaultValue::Bool(b) => FieldValue::Bool(*b),
            DefaultValue::Int(i) => FieldValue::Int(*i),
            DefaultValue::Float(f) => FieldValue::Float(*f),
            DefaultValue::Str(s) => FieldValue::Str(s.clone()),
        }
    }
}

/// The built processor.
#[derive(Debug)]
pub struct Defaults {
    fields: Vec<(String, FieldValue)>,
    tags: Vec<(String, String)>,
}

impl Processor for Defaults {
    const NAME: &'static str = "defaults";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        if config.fields.is_empty() && config.tags.is_empty() {
            return Err(BuildError::new(
                "set [processors.defaults.fields] (or .tags): the processor would do nothing",
            ));
        }
        Ok(Defaults {
            fields: config
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.value()))
                .collect(),
            tags: config.tags.into_iter().collect(),
        })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            for (k, v) in &self.fields {
                let blank = match m.field(k) {
                    None => true,
                    Some(FieldValue::Str(s)) => s.trim().is_empty(),
                    Some(_) => false,
                };
                if blank {
                    m.add_field(k.clone(), v.clone());
                }
            }
            for (k, v) in &self.tags {
                if m.tag(k).is_none_or(|t| t.trim().is_empty()) {
                    m.add_tag(k.clone(), v.clone());
                }
            }
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::cases;

    #[test]
    fn documented_examples() {
        let config = r#"
[[processors.defaults]]
  [processors.defaults.fields]
    status_code = "N/A"
    time_idle = 0
    is_error = true
  [processors.defaults.tags]
    region = "unknown"
"#;
        cases(
            config,
            &[
                (
                    "lb,http_method=GET cache_status=\"HIT\",latency=230i 1",
                    "lb,http_method=GET,region=unknown cache_status=\"HIT\",latency=230i,is_error=true,status_code=\"N/A\",time_idle=0i 1",
                ),
                (
                    "lb,region=eu status_code=\"\",time_idle=5i,is_error=false 1",
                    "lb,region=eu status_code=\"N/A\",time_idle=5i,is_error=false 1",
                ),
                (
                    "lb,region=eu status_code=\"   \",time_idle=5i,is_error=false 1",
                    "lb,region=eu status_code=\"N/A\",time_idle=5i,is_error=false 1",
                ),
            ],
        );
    }
}
