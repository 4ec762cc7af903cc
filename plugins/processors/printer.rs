//! `processors.printer`: prints every metric to stdout as line protocol, for debugging, and
//! passes it on unchanged.

use std::io::Write;

use serde::Deserialize;

use crate::metric::Metric;
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.printer]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Only `"influx"` (line protocol).
    data_format: Option<String>,
    /// Print fields sorted by key.
    #[serde(default)]
    influx_sort_fields: bool,
}

/// The built processor.
#[derive(Debug)]
pub struct Printer {
    sort_fields: bool,
}

impl Processor for Printer {
    const NAME: &'static str = "printer";
    type Config = Config;

    fn new(c: Config, _: &BuildContext) -> Result<Self, BuildError> {
        match c.data_format.as_deref() {
            None | Some("influx") => Ok(Printer {
                sort_fields: c.influx_sort_fields,
            }),
            Some(other) => Err(BuildError::new(format!(
                "`data_format = {other:?}` is not supported by heliograph: only \"influx\" (line protocol)"
            ))),
        }
    }

    fn apply(&mut self, metrics: Vec<Metric>) -> Vec<Metric> {
        let mut text = String::new();
        for m in &metrics {
            if self.sort_fields {
                let mut sorted = m.clone();
                sorted.fields.sort_by(|a, b| a.0.cmp(&b.0));
                crate::line_protocol::encode(&sorted, &mut text);
            } else {
                crate::line_protocol::encode(m, &mut text);
            }
        }
        let mut out = std::io::stdout().lock();
        if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(%error, "processors.printer cannot write to stdout");
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::{cases, error};

    #[test]
    fn passes_metrics_on_and_refuses_other_formats() {
        cases(
            "[[processors.printer]]\n",
            &[("m,a=b v=1 1", "m,a=b v=1 1")],
        );
        assert!(error("[[processors.printer]]\ndata_format = \"json\"\n").contains("not supported"));
    }
}
