//! `processors.rename`: renames measurements, tags and fields (`[[processors.rename.replace]]`
//! with one of `measurement`, `tag`, `field`, and `dest`). A renamed tag or field replaces one
//! already named `dest`.

use serde::Deserialize;

use crate::metric::Metric;
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.rename]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The renames, applied in order.
    #[serde(default)]
    replace: Vec<Replace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replace {
    measurement: Option<String>,
    tag: Option<String>,
    field: Option<String>,
    dest: String,
}

#[derive(Debug)]
enum Target {
    Measurement(String),
    Tag(String),
    Field(String),
}

/// The built processor.
#[derive(Debug)]
pub struct Rename {
    replaces: Vec<(Target, String)>,
}

impl Processor for Rename {
    const NAME: &'static str = "rename";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let mut replaces = Vec::new();
        for (i, r) in config.replace.into_iter().enumerate() {
            let target = match (r.measurement, r.tag, r.field) {
                (Some(m), None, None) => Target::Measurement(m),
                (None, Some(t), None) => Target::Tag(t),
                (None, None, Some(f)) => Target::Field(f),
                _ => {
                    return Err(BuildError::new(format!(
                        "replace #{}: set exactly one of `measurement`, `tag` or `field`",
                        i + 1
                    )))
                }
            };
            replaces.push((target, r.dest));
        }
        if replaces.is_empty() {
            return Err(BuildError::new(
                "no [[processors.rename.replace]] given: the processor would do nothing",
            ));
        }
        Ok(Rename { replaces })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            for (target, dest) in &self.replaces {
                match target {
                    Target::Measurement(from) => {
                        if m.name == *from {
                            m.name.clone_from(dest);
                        }
                    }
                    Target::Tag(from) => {
                        m.rename_tag(from, dest.as_str());
                    }
                    Target::Field(from) => {
                        m.rename_field(from, dest.as_str());
                    }
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
    fn documented_example() {
        cases(
            r#"
[[processors.rename]]
  [[processors.rename.replace]]
    measurement = "network_interface_throughput"
    dest = "throughput"
  [[processors.rename.replace]]
    tag = "hostname"
    dest = "host"
  [[processors.rename.replace]]
    field = "lower"
    dest = "min"
  [[processors.rename.replace]]
    field = "upper"
    dest = "max"
"#,
            &[
                (
                    "network_interface_throughput,hostname=backend.example.com lower=10i,upper=1000i,mean=500i 1502489900000000000",
                    "throughput,host=backend.example.com mean=500i,min=10i,max=1000i 1502489900000000000",
                ),
                ("other,h=x v=1 1", "other,h=x v=1 1"),
                // The renamed tag replaces an existing one.
                ("m,host=a,hostname=b v=1 1", "m,host=b v=1 1"),
            ],
        );
    }

    #[test]
    fn a_replace_names_one_target() {
        let e = error("[[processors.rename]]\n[[processors.rename.replace]]\ntag = \"a\"\nfield = \"b\"\ndest = \"c\"\n");
        assert!(e.contains("exactly one"), "{e}");
        let e = error(
            "[[processors.rename]]\n[[processors.rename.replace]]\ntags = \"a\"\ndest = \"c\"\n",
        );
        assert!(e.contains("unknown field `tags`"), "{e}");
    }
}
