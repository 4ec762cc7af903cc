//! Every output, in the order the docs list them.

pub mod buckets;
pub mod file;
pub mod influxdb;
pub mod influxdb_v2;

use super::OutputEntry;

/// The output registry: one line per plugin.
pub const ALL: &[OutputEntry] = &[
    OutputEntry::store::<buckets::Buckets>(),
    OutputEntry::of::<file::File>(),
    OutputEntry::of::<influxdb::Influxdb>(),
    OutputEntry::of::<influxdb_v2::InfluxdbV2>(),
];
