//! `processors.override`: `name_override`, `name_prefix`, `name_suffix` and `[tags]` in the
//! middle of the chain. Unlike an input's `tags`, these tags replace existing values.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::metric::Metric;
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.override]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    name_override: Option<String>,
    name_prefix: Option<String>,
    name_suffix: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// The built processor.
#[derive(Debug)]
pub struct Override {
    config: Config,
}

impl Processor for Override {
    const NAME: &'static str = "override";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Override { config })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        let c = &self.config;
        for m in &mut metrics {
            m.rename_measurement(
                c.name_override.as_deref(),
                c.name_prefix.as_deref(),
                c.name_suffix.as_deref(),
            );
            for (k, v) in &c.tags {
                m.add_tag(k.clone(), v.clone());
            }
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::cases;

    #[test]
    fn documented_example() {
        cases(
            r#"
[[processors.override]]
  name_prefix = "pre_"
  name_suffix = "_post"
  [processors.override.tags]
    additional_tag = "tag_value"
    host = "replaced"
"#,
            &[(
                "cpu,host=a usage=1 1",
                "pre_cpu_post,additional_tag=tag_value,host=replaced usage=1 1",
            )],
        );
        cases(
            "[[processors.override]]\nname_override = \"x\"\nname_suffix = \"_s\"\n",
            &[("cpu v=1 1", "x_s v=1 1")],
        );
    }
}
