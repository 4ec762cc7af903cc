//! Every input, in the order the docs list them.

pub mod influxdb_listener;

use super::InputEntry;

/// The input registry: one line per plugin.
pub const ALL: &[InputEntry] = &[InputEntry::service::<influxdb_listener::InfluxdbListener>()];
