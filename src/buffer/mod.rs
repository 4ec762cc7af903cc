//! Per-output buffers: where a write waits between admission and its output's write.
//!
//! A buffer has a capacity in points. Admission is two-phase so a write is admitted whole into
//! every routed output or into none: [`MemoryBuffer::reserve`] on each, then
//! [`Reservation::commit`] on each; a reservation dropped uncommitted gives its room back. A
//! refusal carries a Retry-After derived from the buffer's drain rate. The output task is the only
//! consumer: it [`MemoryBuffer::peek`]s a batch, writes it, then [`MemoryBuffer::consume`]s it,
//! so a failed write leaves the batch in place for the retry.

mod disk;
mod memory;
pub mod record;

pub use disk::{DiskBuffer, DiskReservation};
pub use memory::{MemoryBuffer, Reservation};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metric::Metric;

/// How far back the drain rate looks: long enough to span a few flushes.
const DRAIN_WINDOW: Duration = Duration::from_secs(60);

/// Recent consumption of a buffer, from which a refusal's Retry-After is derived.
#[derive(Debug, Default)]
pub struct DrainRate {
    drained: VecDeque<(Instant, usize)>,
}

impl DrainRate {
    /// Records that `points` were written by the output just now.
    pub fn record(&mut self, points: usize) {
        self.drained.push_back((Instant::now(), points));
        self.prune(Instant::now());
    }

    fn prune(&mut self, now: Instant) {
        while self
            .drained
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > DRAIN_WINDOW)
        {
            self.drained.pop_front();
        }
    }

    /// How long until `needed` points have drained at the recent rate; `idle` when nothing
    /// drained lately. Between 1 s and [`MAX_RETRY_AFTER`].
    pub fn retry_after(&mut self, needed: usize, idle: Duration) -> Duration {
        let now = Instant::now();
        self.prune(now);
        let Some((oldest, _)) = self.drained.front() else {
            return idle;
        };
        let total: usize = self.drained.iter().map(|(_, n)| n).sum();
        let span = now.duration_since(*oldest).max(Duration::from_secs(1));
        let rate = total as f64 / span.as_secs_f64();
        Duration::from_secs_f64(needed as f64 / rate).clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
    }
}

/// Waits on `arrived` (notified at each commit) until `ready` holds.
async fn wait_for(arrived: &tokio::sync::Notify, ready: impl Fn() -> bool) {
    loop {
        // Registered before the check, so a commit between the check and the await wakes us.
        let notified = arrived.notified();
        if ready() {
            return;
        }
        notified.await;
    }
}

/// An output's buffer: in memory, or on disk.
#[derive(Debug, Clone)]
pub enum OutputBuffer {
    /// Lost on a crash.
    Memory(Arc<MemoryBuffer>),
    /// Survives a crash; admission waits for its fsync.
    Disk(Arc<DiskBuffer>),
}

/// Room reserved in an [`OutputBuffer`].
#[derive(Debug)]
pub enum AnyReservation {
    /// In a memory buffer.
    Memory(Reservation),
    /// In a disk buffer.
    Disk(DiskReservation),
}

impl OutputBuffer {
    /// See [`MemoryBuffer::reserve`].
    ///
    /// # Errors
    /// A [`Refusal`] when the write cannot be admitted.
    pub fn reserve(&self, points: usize) -> Result<AnyReservation, Refusal> {
        match self {
            OutputBuffer::Memory(b) => b.reserve(points).map(AnyReservation::Memory),
            OutputBuffer::Disk(b) => b.reserve(points).map(AnyReservation::Disk),
        }
    }

    /// Points queued.
    pub fn len(&self) -> usize {
        match self {
            OutputBuffer::Memory(b) => b.len(),
            OutputBuffer::Disk(b) => b.len(),
        }
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes on disk (a disk buffer) or 0.
    pub fn bytes(&self) -> u64 {
        match self {
            OutputBuffer::Memory(_) => 0,
            OutputBuffer::Disk(b) => b.bytes(),
        }
    }

    /// How long the oldest queued write has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        match self {
            OutputBuffer::Memory(b) => b.oldest_age(),
            OutputBuffer::Disk(b) => b.oldest_age(),
        }
    }

    /// Up to `max` of the oldest queued points, left queued.
    ///
    /// # Errors
    /// A disk buffer could not read its log.
    pub async fn peek(&self, max: usize) -> std::io::Result<Vec<Metric>> {
        match self {
            OutputBuffer::Memory(b) => Ok(b.peek(max)),
            OutputBuffer::Disk(b) => b.peek(max).await,
        }
    }

    /// Drops the `points` oldest points, written by the output.
    ///
    /// # Errors
    /// A disk buffer could not persist its cursor.
    pub async fn consume(&self, points: usize) -> std::io::Result<()> {
        match self {
            OutputBuffer::Memory(b) => {
                b.consume(points);
                Ok(())
            }
            OutputBuffer::Disk(b) => b.consume(points).await,
        }
    }

    /// Persists what a disk buffer knows has been written (its cursor); a no-op in memory.
    ///
    /// # Errors
    /// The cursor file could not be written.
    pub async fn save_cursor(&self) -> std::io::Result<()> {
        match self {
            OutputBuffer::Memory(_) => Ok(()),
            OutputBuffer::Disk(b) => b.save_cursor().await,
        }
    }

    /// Waits until at least `points` are queued.
    pub async fn wait_until_len(&self, points: usize) {
        match self {
            OutputBuffer::Memory(b) => b.wait_until_len(points).await,
            OutputBuffer::Disk(b) => b.wait_until_len(points).await,
        }
    }

    /// Refuses further reservations.
    pub fn close(&self) {
        match self {
            OutputBuffer::Memory(b) => b.close(),
            OutputBuffer::Disk(b) => b.close(),
        }
    }
}

impl AnyReservation {
    /// Queues `chunk`; for a disk buffer, once it is durable.
    ///
    /// # Errors
    /// A disk buffer could not make it durable; nothing was queued there.
    pub async fn commit(self, chunk: Arc<[Metric]>) -> Result<(), Refusal> {
        match self {
            AnyReservation::Memory(r) => {
                r.commit(chunk);
                Ok(())
            }
            AnyReservation::Disk(r) => r.commit(chunk).await,
        }
    }

    /// Whether committing waits for disk.
    pub fn is_durable(&self) -> bool {
        matches!(self, AnyReservation::Disk(_))
    }
}

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
