//! Giving freed memory back to the system when a thread goes idle.
//!
//! The allocator (mimalloc, set up by the binary) keeps what a thread frees in that thread's
//! heap and returns it to the system only when the thread allocates again: after a burst, the
//! threads that served it went idle holding hundreds of MiB until later traffic arrived. Each
//! long-lived thread therefore calls [`release_thread`] as it goes idle after work: the log's
//! writer after a second without appends, the compactor a second after its last full run, the
//! merger after each pass, and the runtime's workers at their first park after traffic stops
//! ([`ParkRelease`], asked for by [`release_after_traffic`], which also frees the idle buffer
//! pools). The binary installs the allocator's collect function with [`set_release`]; without
//! one (tests, the library alone) these calls do nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// How long a thread waits without work before it gives its freed memory back.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Installs the function that hands the calling thread's freed memory back to the system.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Hands the calling thread's freed memory back to the system (when a release is installed).
pub fn release_thread() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}

/// Frees the buffer pools that nothing took from since the last call (the write path's
/// bodies and records, the compactor's blocks): called once per [`IDLE_AFTER`] after traffic,
/// it keeps them while traffic flows and lets them go once it stops. Returns whether there was
/// traffic since the last call.
fn release_idle_pools() -> bool {
    let bodies = crate::pool::POOL.clear_if_idle();
    let blocks = crate::buckets::blocks::clear_idle_buffers();
    bodies || blocks
}

/// Bytes taken from the buffer pools since the start.
fn traffic() -> u64 {
    crate::pool::POOL.taken_bytes() + crate::buckets::blocks::buffer_traffic()
}

/// Set while [`release_after_traffic`] sleeps until the next traffic.
static WAITING: AtomicBool = AtomicBool::new(false);
static TRAFFIC: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Called as a buffer is taken from a pool: wakes [`release_after_traffic`] when it waits.
pub(crate) fn note_traffic() {
    if WAITING.load(Ordering::Relaxed) && WAITING.swap(false, Ordering::AcqRel) {
        TRAFFIC.notify_one();
    }
}

/// A burst smaller than this (the system inputs' gathers, a trickle of writes) leaves little
/// to give back: the workers are not asked to release after it.
const RELEASE_AFTER_BYTES: u64 = 8 << 20;

/// Runs for the agent's life: asleep while there is no traffic; after traffic, ticks once per
/// [`IDLE_AFTER`] until a tick finds the pools unused, frees them, and, when the traffic moved
/// at least [`RELEASE_AFTER_BYTES`], asks the workers to release ([`request_release`]) and
/// calls `wake_workers` so that they park (and release). An idle agent is not woken; a busy one
/// does not purge memory its next requests would fault in again.
pub async fn release_after_traffic(wake_workers: impl Fn()) {
    let mut released_at = traffic();
    loop {
        let seen = traffic();
        WAITING.store(true, Ordering::Release);
        if traffic() == seen {
            TRAFFIC.notified().await;
        }
        WAITING.store(false, Ordering::Release);
        loop {
            tokio::time::sleep(IDLE_AFTER).await;
            if !release_idle_pools() {
                break;
            }
        }
        let moved = traffic();
        if moved.saturating_sub(released_at) >= RELEASE_AFTER_BYTES {
            request_release();
            wake_workers();
        }
        released_at = moved;
    }
}

/// Asks the runtime's workers to release at their next park ([`ParkRelease`]): called once
/// when traffic stops, not while it flows (a release purges memory the next request would
/// fault in again).
fn request_release() {
    RELEASE_EPOCH.fetch_add(1, Ordering::Relaxed);
}

static RELEASE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// For a thread that parks often (a runtime worker): releases at a park once per
/// [`request_release`].
#[derive(Debug, Default)]
pub struct ParkRelease {
    seen: u64,
}

impl ParkRelease {
    /// Called as the thread parks; returns whether it released.
    pub fn on_park(&mut self) -> bool {
        let epoch = RELEASE_EPOCH.load(Ordering::Relaxed);
        if epoch == self.seen {
            return false;
        }
        self.seen = epoch;
        release_thread();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_releases_once_per_request() {
        let mut p = ParkRelease::default();
        request_release();
        assert!(p.on_park());
        assert!(!p.on_park(), "once per request, however often it parks");
        request_release();
        assert!(p.on_park());
    }
}
