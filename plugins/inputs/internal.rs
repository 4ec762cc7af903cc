//! `inputs.internal`: heliograph's own counters, in Telegraf's `internal_*` measurements where
//! Telegraf has one: `internal_agent` (whole agent), `internal_gather` (per input, tag
//! `input`), `internal_write` (per output, tag `output`), `internal_<service>` (a listener's
//! requests by status, tag `input`), and `internal_memstats` (the process's memory).
//! The same counters are served by the listener's `GET /metrics`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::Deserialize;

use crate::metric::FieldValue;
use crate::pipeline::Pipeline;
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.internal]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Send `internal_memstats`. Default true.
    collect_memstats: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collect_memstats: true,
        }
    }
}

/// The built input.
#[derive(Debug)]
pub struct Internal {
    memstats: bool,
    pipeline: Option<Arc<Pipeline>>,
}

fn int(v: u64) -> FieldValue {
    FieldValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Resident and virtual size of this process, from /proc/self/status, in bytes.
fn memory() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_ascii_whitespace().next()?.parse::<u64>().ok())
    };
    Some((
        get("VmRSS:")? * 1024,
        get("VmSize:")? * 1024,
        get("Threads:")?,
    ))
}

impl Input for Internal {
    const NAME: &'static str = "internal";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Internal {
            memstats: config.collect_memstats,
            pipeline: None,
        })
    }

    fn attach(&mut self, pipeline: &Arc<Pipeline>) {
        self.pipeline = Some(Arc::clone(pipeline));
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let (mut gathered, mut gather_errors, mut written, mut dropped, mut refused) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        if let Some(p) = &self.pipeline {
            for (id, s) in p.all_input_stats() {
                let g = s.gathered.load(Relaxed);
                let e = s.errors.load(Relaxed);
                let d = s.dropped.load(Relaxed);
                gathered += g;
                gather_errors += e;
                dropped += d;
                acc.add(
                    "internal_gather",
                    &[("input", id.as_str())],
                    vec![
                        ("metrics_gathered", int(g)),
                        ("errors", int(e)),
                        ("gather_time_ns", int(s.gather_time_ns.load(Relaxed))),
                        ("skipped_ticks", int(s.skipped.load(Relaxed))),
                        ("metrics_dropped", int(d)),
                    ],
                );
            }
            for o in p.outputs() {
                let w = o.stats.written.load(Relaxed);
                let d = o.stats.dead_lettered.load(Relaxed);
                written += w;
                dropped += d;
                acc.add(
                    "internal_write",
                    &[("output", o.id.as_str())],
                    vec![
                        ("buffer_limit", int(o.buffer_limit as u64)),
                        ("buffer_size", int(o.buffer.len() as u64)),
                        ("buffer_bytes", int(o.buffer.bytes())),
                        (
                            "oldest_undelivered_seconds",
                            int(o.buffer.oldest_age().map_or(0, |a| a.as_secs())),
                        ),
                        ("metrics_written", int(w)),
                        ("errors", int(o.stats.errors.load(Relaxed))),
                        ("metrics_dropped", int(d)),
                    ],
                );
            }
            if let Some(store) = p.store() {
                // Local buckets: admitted writes are durable at once; "written" is what
                // compaction has moved into partitions, the backlog the log it has not.
                let w = store.stats.compacted_points.load(Relaxed);
                written += w;
                acc.add(
                    "internal_write",
                    &[("output", "outputs.buckets")],
                    vec![
                        ("buffer_bytes", int(store.pending_bytes())),
                        ("metrics_written", int(w)),
                        ("compactions", int(store.stats.compactions.load(Relaxed))),
                        (
                            "corrupt_records",
                            int(store.stats.corrupt_records.load(Relaxed)),
                        ),
                        (
                            "expired_partitions",
                            int(store.stats.expired_partitions.load(Relaxed)),
                        ),
                    ],
                );
            }
            for (id, s) in p.services() {
                let name = format!("internal_{}", s.name());
                let fields: Vec<(String, FieldValue)> =
                    s.fields().into_iter().map(|(k, v)| (k, int(v))).collect();
                acc.add(
                    &name,
                    &[("input", id.as_str())],
                    fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect(),
                );
            }
            refused = p.refused.load(Relaxed);
        }
        acc.add(
            "internal_agent",
            &[],
            vec![
                ("metrics_gathered", int(gathered)),
                ("gather_errors", int(gather_errors)),
                ("metrics_written", int(written)),
                ("metrics_dropped", int(dropped)),
                ("writes_refused", int(refused)),
            ],
        );
        if self.memstats {
            if let Some((rss, vsize, threads)) = memory() {
                acc.add(
                    "internal_memstats",
                    &[],
                    vec![
                        ("rss_bytes", int(rss)),
                        ("virtual_bytes", int(vsize)),
                        ("threads", int(threads)),
                    ],
                );
            }
        }
        Ok(())
    }
}
