//! heliograph: a metrics agent whose InfluxDB v1-compatible write listener never loses an
//! acknowledged point.
//!
//! Map of the modules:
//! - [`metric`]: the data every stage passes on.
//! - [`line_protocol`]: the parser and encoder.
//! - [`config`]: `agent.toml` into a checked config with built plugins.
//! - [`filter`]: Telegraf's selectors and modifiers (`namepass`, `tagdrop`, ...).
//! - [`host`]: what the system inputs share: host roots, typed fields, the schema table.
//! - [`pipeline`]: processors, router, output buffers and tasks; start and stop.
//! - [`buffer`]: per-output buffers with all-or-nothing admission.
//! - [`buckets`]: the local bucket store (durable log, partitions, export).
//! - [`wal`]: the durable log with group commit.
//! - [`durable`]: creating files and directories that survive a power cut; the `data_dir` lock.
//! - [`http`]: the server plumbing and capped body reading.
//! - [`pool`]: large buffers reused across writes.
//! - [`memory`]: threads give freed memory back to the system as they go idle.
//! - [`plugins`]: the plugin contracts and the registries of inputs, processors and outputs.
//! - [`ratelimit`]: log lines that a flood cannot multiply.
//! - [`systemd`]: readiness, stopping and watchdog notifications.
//! - [`cli`]: flags and subcommands.

pub mod buckets;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod durable;
pub mod filter;
pub mod host;
pub mod http;
pub mod line_protocol;
pub mod memory;
pub mod metric;
pub mod pipeline;
#[path = "../plugins/mod.rs"]
pub mod plugins;
pub mod pool;
pub mod ratelimit;
pub mod systemd;
pub mod wal;

/// An error and its chain of causes on one line: `outer: inner: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
