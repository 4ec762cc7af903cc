//! Per-output buffers: where a write waits between admission and its output's write.
//!
//! A buffer has a capacity in points. Admission is two-phase so a write is admitted whole into
//! every routed output or into none: [`MemoryBuffer::reserve`] on each, then
//! [`Reservation::commit`] on each; a reservation dropped uncommitted gives its room back. A
//! refusal carries a Retry-After derived from the buffer's drain rate. The output task is the only
//! consumer: it [`MemoryBuffer::peek`]s a batch, writes it, then [`MemoryBuffer::consume`]s it,
//! so a failed write leaves the batch in place for the retry.

mod memory;

pub use memory::{MemoryBuffer, Reservation};

use std::time::Duration;

/// A buffer cannot take a write now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not enough room; try again after `retry_after`.
    #[error("buffer of output {output} is full ({queued} of {capacity} points queued)")]
    Full {
        /// The output's id.
        output: String,
        /// Points queued or reserved.
        queued: usize,
        /// The buffer's capacity in points.
        capacity: usize,
        /// When the room is expected, from the drain rate.
        retry_after: Duration,
    },
    /// The write is larger than the buffer could ever hold.
    #[error(
        "write of {points} points is larger than the buffer of output {output} ({capacity} points)"
    )]
    TooLarge {
        /// The output's id.
        output: String,
        /// Points in the write.
        points: usize,
        /// The buffer's capacity in points.
        capacity: usize,
    },
    /// The agent is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Storage cannot make the write durable now (disk full, I/O error); nothing was kept.
    #[error("output {output} cannot store the write: {reason}")]
    Unavailable {
        /// The output's id.
        output: String,
        /// What failed.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The write can never be stored as it is (an invalid database name): a client error.
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    /// The Retry-After to answer with, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Full { retry_after, .. } | Refusal::Unavailable { retry_after, .. } => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
            Refusal::TooLarge { .. } | Refusal::Invalid(_) => 1,
            Refusal::ShuttingDown => 5,
        }
    }
}

/// The longest Retry-After we ever tell a writer: past a minute, a writer should try again
/// and see the state afresh rather than sleep on an estimate.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
