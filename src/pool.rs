//! Large byte buffers kept for reuse: request bodies, their normalized text and log records.
//!
//! Each write moves body-sized buffers through parsing, the log and the store. Allocated anew
//! each time, they were handed back to the system by the allocator (its purge delay is short,
//! to keep RSS low) and faulted in again for the next request; kept here, the same memory is
//! reused (durable ingest: about 7% more lines per CPU-second). The pool is bounded
//! ([`MAX_POOLED`] bytes), so idle buffers cost little memory.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Smaller buffers are not worth keeping: the allocator reuses them well.
const MIN_KEPT: usize = 64 << 10;
/// Larger buffers are rare (bodies near `max_body_size`) and would hold too much memory.
const MAX_KEPT: usize = 8 << 20;
/// The most bytes of capacity kept idle.
const MAX_POOLED: usize = 4 << 20;

/// A bounded set of idle buffers.
#[derive(Debug)]
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    max_pooled: usize,
    /// Bytes of capacity asked for so far (at least one a take: what traffic went through the
    /// pool), and as last seen by [`Pool::clear_if_idle`].
    taken_bytes: AtomicU64,
    seen_bytes: AtomicU64,
}

/// The process's pool.
pub static POOL: Pool = Pool::new(MAX_POOLED);

impl Pool {
    /// A pool that keeps at most `max_pooled` bytes of capacity idle.
    pub const fn new(max_pooled: usize) -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            max_pooled,
            taken_bytes: AtomicU64::new(0),
            seen_bytes: AtomicU64::new(0),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for at least `capacity` bytes: the smallest idle one big
    /// enough, or a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        self.note_take(capacity);
        if (MIN_KEPT..=MAX_KEPT).contains(&capacity) {
            let mut free = self.free();
            if let Some(i) = best_fit(&free, capacity) {
                return free.swap_remove(i);
            }
        }
        Vec::with_capacity(capacity)
    }

    /// As [`Pool::take`], but when no idle buffer is big enough the largest idle one is freed
    /// first: for a user that takes many buffers at once (a compaction run), so idle buffers
    /// that are too small are not held beside new ones.
    pub fn take_replacing(&self, capacity: usize) -> Vec<u8> {
        self.note_take(capacity);
        let mut free = self.free();
        if let Some(i) = best_fit(&free, capacity) {
            return free.swap_remove(i);
        }
        let largest = free
            .iter()
            .enumerate()
            .max_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = largest {
            drop(free.swap_remove(i));
        }
        drop(free);
        Vec::with_capacity(capacity)
    }

    /// Keeps `buf` for reuse if its size is worth it and the pool has room; otherwise frees it.
    pub fn give(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if !(MIN_KEPT..=MAX_KEPT).contains(&capacity) {
            return;
        }
        buf.clear();
        let mut free = self.free();
        let pooled: usize = free.iter().map(Vec::capacity).sum();
        if pooled + capacity <= self.max_pooled {
            free.push(buf);
        }
    }

    fn note_take(&self, capacity: usize) {
        self.taken_bytes
            .fetch_add(capacity.max(1) as u64, Ordering::Relaxed);
        crate::memory::note_traffic();
    }

    /// Bytes of capacity asked for so far.
    pub fn taken_bytes(&self) -> u64 {
        self.taken_bytes.load(Ordering::Relaxed)
    }

    /// Frees every idle buffer.
    pub fn clear(&self) {
        self.free().clear();
    }

    /// Frees every idle buffer if none was taken since the last call: called on a timer, it
    /// keeps the pool while traffic flows and lets it go once traffic stops. Returns whether
    /// a buffer was taken since the last call (the pool was busy, and kept).
    pub fn clear_if_idle(&self) -> bool {
        let taken = self.taken_bytes.load(Ordering::Relaxed);
        if self.seen_bytes.swap(taken, Ordering::Relaxed) != taken {
            return true;
        }
        self.free().clear();
        false
    }

    /// The bytes of capacity idle in the pool.
    #[cfg(test)]
    fn pooled_bytes(&self) -> usize {
        self.free().iter().map(Vec::capacity).sum()
    }

    /// `buf`, to be returned to this pool when dropped.
    pub fn wrap(&'static self, buf: Vec<u8>) -> Pooled {
        Pooled { buf, pool: self }
    }
}

/// The smallest of `free` that holds `capacity`.
fn best_fit(free: &[Vec<u8>], capacity: usize) -> Option<usize> {
    free.iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= capacity)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i)
}

/// [`Pool::take`] from the process's pool.
pub fn take(capacity: usize) -> Vec<u8> {
    POOL.take(capacity)
}

/// [`Pool::give`] to the process's pool.
pub fn give(buf: Vec<u8>) {
    POOL.give(buf);
}

/// A buffer that goes back to its pool when dropped (a log record shared by the log writer,
/// the store and disk buffers: whichever lets go last returns it).
#[derive(Debug)]
pub struct Pooled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl From<Vec<u8>> for Pooled {
    /// `buf`, returned to the process's pool when dropped.
    fn from(buf: Vec<u8>) -> Pooled {
        POOL.wrap(buf)
    }
}

impl PartialEq for Pooled {
    fn eq(&self, other: &Pooled) -> bool {
        self.buf == other.buf
    }
}

impl Eq for Pooled {}

impl Deref for Pooled {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_pool_is_cleared_a_busy_one_kept() {
        let pool = Pool::new(4 << 20);
        let b = pool.take(1 << 20);
        pool.give(b);
        assert!(
            pool.clear_if_idle(),
            "taken since the last look: busy, kept"
        );
        assert_eq!(pool.pooled_bytes(), 1 << 20);
        assert!(!pool.clear_if_idle(), "nothing taken since: cleared");
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn buffers_are_reused_within_bounds() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(4 << 20)));
        // A buffer given back is handed out again, cleared, for a request it can hold.
        let mut a = pool.take(1 << 20);
        a.extend_from_slice(b"data");
        let at = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.pooled_bytes(), 1 << 20);
        let b = pool.take(512 << 10);
        assert_eq!((b.as_ptr(), b.len()), (at, 0));
        assert_eq!(pool.pooled_bytes(), 0);
        // Too big a request gets a new buffer; the idle one stays.
        pool.give(b);
        let big = pool.take(2 << 20);
        assert_ne!(big.as_ptr(), at);
        assert_eq!(pool.pooled_bytes(), 1 << 20);
        // Small and oversized buffers are not kept; nor any past the bound.
        pool.give(Vec::with_capacity(1024));
        pool.give(Vec::with_capacity(MAX_KEPT + 1));
        assert_eq!(pool.pooled_bytes(), 1 << 20);
        for _ in 0..8 {
            pool.give(Vec::with_capacity(1 << 20));
        }
        assert_eq!(pool.pooled_bytes(), 4 << 20);
        // Of several that fit, the smallest is handed out.
        let fit = pool.take(700 << 10);
        assert_eq!(fit.capacity(), 1 << 20);
        let _another = pool.take(1 << 20);
        pool.give(big);
        assert_eq!(pool.pooled_bytes(), 4 << 20);
        assert_eq!(pool.take(700 << 10).capacity(), 1 << 20);
        assert_eq!(pool.take(1500 << 10).capacity(), 2 << 20);
    }

    #[test]
    fn taking_with_replacement_frees_the_largest_idle_buffer_that_is_too_small() {
        let pool = Pool::new(4 << 20);
        pool.give(Vec::with_capacity(100 << 10));
        pool.give(Vec::with_capacity(200 << 10));
        // One fits: the smallest that does, as `take`.
        let fit = pool.take_replacing(150 << 10);
        assert_eq!(fit.capacity(), 200 << 10);
        pool.give(fit);
        // None fits: the largest idle one goes, so it is not held beside the new one.
        let new = pool.take_replacing(300 << 10);
        assert!(new.capacity() >= 300 << 10);
        assert_eq!(pool.pooled_bytes(), 100 << 10);
        pool.clear();
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn a_pooled_buffer_returns_when_dropped() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(4 << 20)));
        let shared = std::sync::Arc::new(pool.wrap(Vec::with_capacity(1 << 20)));
        let other = std::sync::Arc::clone(&shared);
        drop(shared);
        assert_eq!(pool.pooled_bytes(), 0, "still held");
        drop(other);
        assert_eq!(pool.pooled_bytes(), 1 << 20);
    }
}
