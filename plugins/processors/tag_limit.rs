//! `processors.tag_limit`: caps the number of tags of a metric at `limit`, removing tags not in
//! `keep` in key order until it fits.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::metric::Metric;
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.tag_limit]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The most tags a metric keeps.
    limit: usize,
    /// Tags never removed.
    #[serde(default)]
    keep: Vec<String>,
}

/// The built processor.
#[derive(Debug)]
pub struct TagLimit {
    limit: usize,
    keep: BTreeSet<String>,
}

impl Processor for TagLimit {
    const NAME: &'static str = "tag_limit";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let keep: BTreeSet<String> = config.keep.into_iter().collect();
        if keep.len() > config.limit {
            return Err(BuildError::new(format!(
                "`keep` lists {} tags, more than `limit` ({})",
                keep.len(),
                config.limit
            )));
        }
        Ok(TagLimit {
            limit: config.limit,
            keep,
        })
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            let mut excess = m.tags.len().saturating_sub(self.limit);
            if excess == 0 {
                continue;
            }
            m.tags.retain(|(k, _)| {
                if excess > 0 && !self.keep.contains(k) {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
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
[[processors.tag_limit]]
  limit = 3
  keep = ["environment", "region"]
"#,
            &[
                (
                    "throughput,month=Mar,environment=qa,region=us-east1,lower=10i,upper=1000i,mean=500i value=1 1",
                    "throughput,environment=qa,region=us-east1,upper=1000i value=1 1",
                ),
                ("m,a=1,b=2 v=1 1", "m,a=1,b=2 v=1 1"),
            ],
        );
        assert!(
            error("[[processors.tag_limit]]\nlimit = 1\nkeep = [\"a\", \"b\"]\n")
                .contains("more than `limit`")
        );
    }
}
