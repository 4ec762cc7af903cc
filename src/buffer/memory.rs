//! The memory buffer: a bounded queue of shared chunks, lost on a crash.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{DrainRate, Refusal, MAX_RETRY_AFTER};
use crate::metric::Metric;

/// A bounded in-memory queue of points for one output; see the module docs of [`super`].
#[derive(Debug)]
pub struct MemoryBuffer {
    output: String,
    capacity: usize,
    /// Retry-After when nothing has drained yet in the window (the output's flush interval).
    idle_retry: Duration,
    state: Mutex<State>,
    /// Wakes the output task when points arrive.
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Admitted writes with their admission time, oldest first; outputs may share a chunk.
    chunks: VecDeque<(Instant, Arc<[Metric]>)>,
    /// Points of `chunks[0]` already consumed.
    head: usize,
    /// Points in `chunks` not yet consumed.
    queued: usize,
    /// Points reserved by writes being admitted.
    reserved: usize,
    /// Recent consumption, for Retry-After.
    drain: DrainRate,
    closed: bool,
}

impl MemoryBuffer {
    /// A buffer for output `output` holding at most `capacity` points.
    pub fn new(output: impl Into<String>, capacity: usize, idle_retry: Duration) -> Arc<Self> {
        Arc::new(MemoryBuffer {
            output: output.into(),
            capacity,
            idle_retry: idle_retry.clamp(Duration::from_secs(1), MAX_RETRY_AFTER),
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves counters that are still consistent (every
        // critical section updates them last), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer's capacity in points.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Points queued and not yet written.
    pub fn len(&self) -> usize {
        self.lock().queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest queued write has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.lock().chunks.front().map(|(t, _)| t.elapsed())
    }

    /// Reserves room for `points`; the room is given back if the reservation is dropped.
    ///
    /// # Errors
    /// [`Refusal::Full`] with a Retry-After from the drain rate, [`Refusal::TooLarge`] when
    /// `points` exceeds the capacity, [`Refusal::ShuttingDown`] once closed.
    pub fn reserve(self: &Arc<Self>, points: usize) -> Result<Reservation, Refusal> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refusal::ShuttingDown);
        }
        if points > self.capacity {
            return Err(Refusal::TooLarge {
                output: self.output.clone(),
                points,
                capacity: self.capacity,
            });
        }
        let used = st.queued + st.reserved;
        if used + points > self.capacity {
            let needed = used + points - self.capacity;
            return Err(Refusal::Full {
                output: self.output.clone(),
                queued: used,
                capacity: self.capacity,
                retry_after: st.drain.retry_after(needed, self.idle_retry),
            });
        }
        st.reserved += points;
        Ok(Reservation {
            buffer: Arc::clone(self),
            points,
            done: false,
        })
    }

    /// Up to `max` of the oldest queued points, left in the buffer until [`Self::consume`].
    pub fn peek(&self, max: usize) -> Vec<Metric> {
        let st = self.lock();
        let mut out = Vec::with_capacity(max.min(st.queued));
        let mut skip = st.head;
        for (_, chunk) in &st.chunks {
            for m in &chunk[skip..] {
                if out.len() == max {
                    return out;
                }
                out.push(m.clone());
            }
            skip = 0;
        }
        out
    }

    /// Drops the `points` oldest points, which the output has written.
    pub fn consume(&self, points: usize) {
        let mut st = self.lock();
        let mut left = points.min(st.queued);
        st.queued -= left;
        while left > 0 {
            let front = st.chunks.front().map_or(0, |(_, c)| c.len()) - st.head;
            if left >= front {
                st.chunks.pop_front();
                st.head = 0;
                left -= front;
            } else {
                st.head += left;
                left = 0;
            }
        }
        st.drain.record(points);
    }

    /// Waits until at least `points` are queued (returns at once if they are).
    pub async fn wait_until_len(&self, points: usize) {
        super::wait_for(&self.arrived, || self.len() >= points).await;
    }

    /// Refuses further reservations (shutdown); what is queued stays for the final flush.
    pub fn close(&self) {
        self.lock().closed = true;
    }
}

/// Room reserved in a buffer for one write; commit it or drop it.
#[derive(Debug)]
pub struct Reservation {
    buffer: Arc<MemoryBuffer>,
    points: usize,
    done: bool,
}

impl Reservation {
    /// Queues `chunk` (which holds exactly the reserved number of points).
    pub fn commit(mut self, chunk: Arc<[Metric]>) {
        debug_assert_eq!(chunk.len(), self.points);
        {
            let mut st = self.buffer.lock();
            st.reserved -= self.points;
            st.queued += chunk.len();
            if !chunk.is_empty() {
                st.chunks.push_back((Instant::now(), chunk));
            }
        }
        self.done = true;
        self.buffer.arrived.notify_one();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.buffer.lock().reserved -= self.points;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, start: i64) -> Arc<[Metric]> {
        (0..n).map(|i| Metric::new("m", start + i as i64)).collect()
    }

    #[test]
    fn admits_until_full_then_refuses() {
        let b = MemoryBuffer::new("outputs.test", 10, Duration::from_secs(3));
        b.reserve(6).unwrap().commit(chunk(6, 0));
        let r = b.reserve(4).unwrap();
        match b.reserve(1) {
            Err(Refusal::Full { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(3))
            }
            other => panic!("expected Full, got {other:?}"),
        }
        drop(r); // an uncommitted reservation gives its room back
        assert!(b.reserve(4).is_ok());
        assert!(matches!(b.reserve(11), Err(Refusal::TooLarge { .. })));
    }

    #[test]
    fn peek_and_consume_across_chunks() {
        let b = MemoryBuffer::new("o", 100, Duration::from_secs(1));
        b.reserve(3).unwrap().commit(chunk(3, 0));
        b.reserve(3).unwrap().commit(chunk(3, 10));
        let times = |v: Vec<Metric>| v.iter().map(|m| m.time).collect::<Vec<_>>();
        assert_eq!(times(b.peek(4)), [0, 1, 2, 10]);
        b.consume(4);
        assert_eq!(times(b.peek(10)), [11, 12]);
        assert_eq!(b.len(), 2);
        b.consume(2);
        assert!(b.is_empty());
        assert!(b.peek(10).is_empty());
    }

    #[test]
    fn retry_after_follows_the_drain_rate() {
        let b = MemoryBuffer::new("o", 100, Duration::from_secs(9));
        b.reserve(100).unwrap().commit(chunk(100, 0));
        b.consume(10); // 10 points drained within ~1 s: about 10 points/s
        b.reserve(10).unwrap().commit(chunk(10, 0));
        match b.reserve(50) {
            Err(e @ Refusal::Full { .. }) => assert_eq!(e.retry_after_secs(), 5),
            other => panic!("expected Full, got {other:?}"),
        }
    }

    #[test]
    fn closed_buffer_refuses() {
        let b = MemoryBuffer::new("o", 10, Duration::from_secs(1));
        b.close();
        assert_eq!(b.reserve(1).unwrap_err(), Refusal::ShuttingDown);
    }
}
