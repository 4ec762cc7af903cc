//! Every output, in the order the docs list them.

pub mod file;

use super::OutputEntry;

/// The output registry: one line per plugin.
pub const ALL: &[OutputEntry] = &[OutputEntry::of::<file::File>()];
