//! Every output, in the order the docs list them.

pub mod buckets;
pub mod file;

use super::OutputEntry;

/// The output registry: one line per plugin.
pub const ALL: &[OutputEntry] = &[
    OutputEntry::store::<buckets::Buckets>(),
    OutputEntry::of::<file::File>(),
];
