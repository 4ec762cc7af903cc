//! Giving freed memory back to the system when a thread goes idle.
//!
//! The allocator (mimalloc, set up by the binary) keeps what a thread frees in that thread's
//! heap and returns it to the system only when the thread allocates again: after a burst, the
//! threads that served it went idle holding hundreds of MiB until later traffic arrived. Each
//! long-lived thread therefore calls [`release_thread`] as it goes idle after work: the log's
//! writer after a second without appends, the compactor once caught up, the merger after each
//! pass, and the runtime's workers when they park ([`ParkRelease`]). The binary installs the
//! allocator's collect function with [`set_release`]; without one (tests, the library alone)
//! these calls do nothing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// For a thread that parks often (a runtime worker): releases at most once per
/// [`IDLE_AFTER`], so a busy worker that parks between tasks pays almost nothing.
#[derive(Debug, Default)]
pub struct ParkRelease {
    last: Option<Instant>,
}

impl ParkRelease {
    /// Called as the thread parks; returns whether it released.
    pub fn on_park(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < IDLE_AFTER)
        {
            return false;
        }
        self.last = Some(now);
        release_thread();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_releases_at_most_once_per_idle_period() {
        let start = Instant::now();
        let mut p = ParkRelease::default();
        assert!(p.on_park(start));
        assert!(!p.on_park(start + Duration::from_millis(10)));
        assert!(!p.on_park(start + IDLE_AFTER - Duration::from_millis(1)));
        assert!(p.on_park(start + IDLE_AFTER));
    }
}
