//! `processors.dedup`: drops a metric whose field values are unchanged since the last one of
//! its series passed, until `dedup_interval` (default 10 minutes) has gone by since that one.
//! Fields new to a series at the same timestamp are merged, as Telegraf does. State is kept in
//! memory (Telegraf's state persistence across restarts is not implemented).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigDuration;
use crate::metric::Metric;
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.dedup]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    dedup_interval: Option<ConfigDuration>,
}

/// The built processor.
#[derive(Debug)]
pub struct Dedup {
    interval_ns: i64,
    cache: HashMap<SeriesKey, Metric>,
    /// Clock in ns, swapped in tests.
    now: fn() -> i64,
}

#[derive(Debug, Hash, PartialEq, Eq)]
struct SeriesKey {
    name: String,
    tags: Vec<(String, String)>,
}

impl Dedup {
    fn expired(&self, m: &Metric, now: i64) -> bool {
        now.saturating_sub(m.time) >= self.interval_ns
    }
}

impl Processor for Dedup {
    const NAME: &'static str = "dedup";
    type Config = Config;

    fn new(c: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let interval = c.dedup_interval.map_or(Duration::from_secs(600), |d| d.0);
        if interval.is_zero() {
            return Err(BuildError::new("`dedup_interval` must be more than 0s"));
        }
        Ok(Dedup {
            interval_ns: interval.as_nanos().min(i64::MAX as u128) as i64,
            cache: HashMap::new(),
            now: crate::pipeline::now_ns,
        })
    }

    fn apply(&mut self, metrics: Vec<Metric>) -> Vec<Metric> {
        let now = (self.now)();
        let mut out = Vec::with_capacity(metrics.len());
        for m in metrics {
            let key = SeriesKey {
                name: m.name.clone(),
                tags: m.tags.clone(),
            };
            let Some(cached) = self.cache.get(&key) else {
                self.cache.insert(key, m.clone());
                out.push(m);
                continue;
            };
            if self.expired(cached, now) {
                self.cache.insert(key, m.clone());
                out.push(m);
                continue;
            }
            let same_time = cached.time == m.time;
            let mut changed = false;
            let mut added = Vec::new();
            for (k, v) in &m.fields {
                match cached.field(k) {
                    Some(old) if old != v => {
                        changed = true;
                        break;
                    }
                    Some(_) => {}
                    None if same_time => added.push((k.clone(), v.clone())),
                    None => {}
                }
            }
            if changed {
                self.cache.insert(key, m.clone());
                out.push(m);
                continue;
            }
            if !added.is_empty() {
                let cached = self.cache.get_mut(&key).expect("looked up above");
                for (k, v) in added {
                    cached.add_field(k, v);
                }
                out.push(m);
            }
        }
        // Forget series not seen within the interval, so the cache cannot grow without bound.
        if self.cache.len() > 1024 {
            let interval = self.interval_ns;
            self.cache
                .retain(|_, m| now.saturating_sub(m.time) < interval);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::processors::testing::{lines, metrics};

    fn dedup(interval: &str) -> Dedup {
        let c: Config = toml::from_str(&format!("dedup_interval = \"{interval}\"")).unwrap();
        let mut d = Dedup::new(c, &BuildContext::default()).unwrap();
        d.now = || 100_000_000_000; // t = 100 s
        d
    }

    #[test]
    fn documented_behaviour() {
        let mut d = dedup("10s");
        let steps: &[(&str, &[&str])] = &[
            // First of a series passes.
            (
                "cpu,host=a idle=90 95000000000",
                &["cpu,host=a idle=90 95000000000"],
            ),
            // Unchanged within the interval: dropped.
            ("cpu,host=a idle=90 96000000000", &[]),
            // Another series is independent.
            (
                "cpu,host=b idle=90 96000000000",
                &["cpu,host=b idle=90 96000000000"],
            ),
            // A changed value passes and refreshes the cache.
            (
                "cpu,host=a idle=80 97000000000",
                &["cpu,host=a idle=80 97000000000"],
            ),
            // A new field at the same timestamp as the cached one is merged and passes.
            (
                "cpu,host=a user=5 97000000000",
                &["cpu,host=a user=5 97000000000"],
            ),
            ("cpu,host=a idle=80,user=5 98000000000", &[]),
        ];
        for (input, want) in steps {
            assert_eq!(lines(&d.apply(metrics(input))), *want, "{input}");
        }
        // The cached point is older than the interval: the same values pass again.
        let mut d = dedup("2s");
        assert_eq!(d.apply(metrics("m v=1 90000000000")).len(), 1);
        assert_eq!(d.apply(metrics("m v=1 99000000000")).len(), 1);
        assert_eq!(d.apply(metrics("m v=1 99500000000")).len(), 0);
    }
}
