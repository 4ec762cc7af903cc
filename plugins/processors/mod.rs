//! Every processor, in the order the docs list them. The chain machinery lives in
//! `crate::pipeline`; concrete processors arrive with their own changes.

use super::ProcessorEntry;

/// The processor registry: one line per plugin.
pub const ALL: &[ProcessorEntry] = &[];
