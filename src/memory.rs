//! Giving freed memory back to the system when a thread goes idle.
//!
//! The allocator (mimalloc, set up by the binary) keeps what a thread frees in that thread's
//! heap and returns it to the system only when the thread allocates again: after a burst, the
//! threads that served it went idle holding hundreds of MiB until later traffic arrived. Each
//! long-lived thread therefore calls [`release_thread`] as it goes idle after work: the log's
//! writer after a second without appends, the compactor once caught up, the merger after each
//! pass, and the runtime's workers at their first park after traffic stops ([`ParkRelease`]). The binary installs the
//! allocator's collect function with [`set_release`]; without one (tests, the library alone)
//! these calls do nothing.

use std::sync::atomic::{AtomicU64, Ordering};
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
/// bodies and records, the compactor's blocks): called once per [`IDLE_AFTER`], it keeps
/// them while traffic flows and lets them go once it stops. Returns whether there was
/// traffic since the last call.
pub fn release_idle_pools() -> bool {
    let bodies = crate::pool::POOL.clear_if_idle();
    let blocks = crate::buckets::blocks::clear_idle_buffers();
    bodies || blocks
}

/// Asks the runtime's workers to release at their next park ([`ParkRelease`]): called once
/// when traffic stops, not while it flows (a release purges memory the next request would
/// fault in again).
pub fn request_release() {
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
