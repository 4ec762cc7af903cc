//! The disk buffer: an output's queue kept in its own [`crate::wal`] log, so a write admitted
//! into it survives a crash until the output has written it.
//!
//! Committing a write appends it as one record and resolves once the group commit's fsync
//! covering it completed. The output consumes records in order; a `cursor` file (replaced
//! atomically) records the last record fully written, and segments below it are removed. After a
//! restart the output resumes after the cursor; a record partly written before the crash is sent
//! again whole (delivery is at least once). Recent records are also kept in memory as they were
//! written to the log, up to a bound; older ones are read back when the output reaches them.
//! Outputs that speak line protocol take whole records ([`DiskBuffer::peek_records`]) and send
//! their text as it is; others get decoded metrics ([`DiskBuffer::peek`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{record, DrainRate, Refusal, MAX_RETRY_AFTER};
use crate::metric::Metric;
use crate::wal::{self, Log, LogOptions};

/// Record bytes kept in memory past what the output is writing; the rest stays on disk only.
const CACHE_BYTES: u64 = if cfg!(test) { 1 << 20 } else { 64 << 20 };
/// How often, at most, the cursor file is rewritten while the output works through a backlog.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// Points read per read from disk, at least: one read serves several batches.
const LOAD_POINTS: usize = 20_000;

#[derive(Debug)]
struct Rec {
    /// When it was admitted (for records found at open: when the buffer opened).
    admitted: Instant,
    seq: u64,
    points: usize,
    bytes: u64,
    /// The record's payload, when cached.
    payload: Option<wal::Payload>,
    /// Where the record is in the log, so a read of it starts there.
    at: wal::Position,
}

#[derive(Debug, Default)]
struct State {
    /// Records not fully written yet, oldest first.
    records: VecDeque<Rec>,
    /// Points of `records[0]` already written.
    head: usize,
    queued: usize,
    queued_bytes: u64,
    reserved: usize,
    /// Bytes of cached payloads.
    cached: u64,
    drain: DrainRate,
    closed: bool,
    /// Where the last read from disk stopped: (next seq, position), to continue from there.
    read_pos: Option<(u64, wal::Position)>,
    /// The last record fully written, and whether the cursor file already says so.
    done_seq: u64,
    cursor_saved: bool,
    /// When the cursor file was last written.
    cursor_at: Option<Instant>,
}

impl State {
    /// Queues a durable record of `points` points, keeping its payload in memory while the
    /// cache has room.
    fn push_record(&mut self, seq: u64, at: wal::Position, points: usize, payload: wal::Payload) {
        let bytes = payload.len() as u64;
        self.queued += points;
        self.queued_bytes += bytes;
        let cache = self.cached + bytes <= CACHE_BYTES;
        if cache {
            self.cached += bytes;
        }
        self.records.push_back(Rec {
            admitted: Instant::now(),
            seq,
            points,
            bytes,
            payload: cache.then_some(payload),
            at,
        });
    }
}

/// A durable queue of points for one output; see the module docs.
#[derive(Debug)]
pub struct DiskBuffer {
    output: String,
    capacity: usize,
    max_bytes: u64,
    idle_retry: Duration,
    dir: PathBuf,
    log: Log,
    /// Shared with the log's writer thread, which queues each record as it becomes durable.
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

fn cursor_path(dir: &Path) -> PathBuf {
    dir.join("cursor")
}

impl DiskBuffer {
    /// Opens (recovering) the buffer of `output` in `dir`.
    ///
    /// # Errors
    /// I/O errors on the directory; never the contents of the log.
    pub fn open(
        output: impl Into<String>,
        dir: &Path,
        capacity: usize,
        max_bytes: u64,
        idle_retry: Duration,
    ) -> std::io::Result<Arc<DiskBuffer>> {
        let output = output.into();
        let cursor = match std::fs::read_to_string(cursor_path(dir)) {
            Ok(s) => s.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        // The backlog is queued as the log hands it over: the first records' payloads stay
        // cached, the others are read back from where they are when their turn comes.
        let mut st = State::default();
        let (log, recovery) = Log::open(&dir.join("log"), LogOptions::default(), |r, at| {
            if r.seq <= cursor {
                return;
            }
            let Some(points) = record::points(&r.payload) else {
                tracing::error!(output = %output, seq = r.seq, "skipping an undecodable buffer record");
                return;
            };
            st.push_record(r.seq, at, points, Arc::new(r.payload.into()));
        })?;
        if recovery.corrupt > 0 || recovery.truncated_bytes > 0 || recovery.gaps > 0 {
            tracing::warn!(output = %output, ?recovery, "recovered the disk buffer");
        }
        if st.queued > 0 {
            tracing::info!(output = %output, points = st.queued, "resuming a disk buffer backlog");
        }
        Ok(Arc::new(DiskBuffer {
            output,
            capacity,
            max_bytes,
            idle_retry: idle_retry.clamp(Duration::from_secs(1), MAX_RETRY_AFTER),
            dir: dir.to_path_buf(),
            log,
            state: Arc::new(Mutex::new(st)),
            arrived: Arc::new(Notify::new()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Points queued and not yet written.
    pub fn len(&self) -> usize {
        self.lock().queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the queued records on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().queued_bytes
    }

    /// How long the oldest queued write has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.lock().records.front().map(|r| r.admitted.elapsed())
    }

    /// Reserves room for `points` (given back if the reservation is dropped).
    ///
    /// # Errors
    /// As [`super::MemoryBuffer::reserve`]; also [`Refusal::Full`] past `max_bytes` on disk.
    pub fn reserve(self: &Arc<Self>, points: usize) -> Result<DiskReservation, Refusal> {
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
        let over_bytes = self.max_bytes > 0 && st.queued_bytes >= self.max_bytes;
        if used + points > self.capacity || over_bytes {
            let needed = (used + points).saturating_sub(self.capacity).max(1);
            let retry_after = st.drain.retry_after(needed, self.idle_retry);
            return Err(Refusal::Full {
                output: self.output.clone(),
                queued: used,
                capacity: self.capacity,
                retry_after,
            });
        }
        st.reserved += points;
        Ok(DiskReservation {
            buffer: Arc::clone(self),
            points,
            settled: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Up to `max` of the oldest queued points (at least the rest of the oldest record),
    /// decoded. They stay queued until [`Self::consume`].
    ///
    /// # Errors
    /// The log could not be read.
    pub async fn peek(self: &Arc<Self>, max: usize) -> std::io::Result<Vec<Metric>> {
        let records = self.peek_records(max).await?;
        let skip = self.lock().head;
        let mut out = Vec::with_capacity(max);
        for (i, (_, payload)) in records.iter().enumerate() {
            let Some(ms) = record::decode(payload) else {
                return Err(std::io::Error::other("undecodable buffer record"));
            };
            let from = if i == 0 { skip.min(ms.len()) } else { 0 };
            out.extend(ms.into_iter().skip(from));
        }
        Ok(out)
    }

    /// Whole records from the oldest on, about `max` points (at least one record), read back
    /// from disk when not cached: (points, payload). They stay queued until consumed.
    ///
    /// # Errors
    /// The log could not be read.
    pub async fn peek_records(
        self: &Arc<Self>,
        max: usize,
    ) -> std::io::Result<Vec<(usize, wal::Payload)>> {
        self.peek_records_after(0, max).await
    }

    /// As [`DiskBuffer::peek_records`], past the `skip` oldest records (those of batches
    /// already in flight).
    ///
    /// # Errors
    /// The log could not be read.
    pub async fn peek_records_after(
        self: &Arc<Self>,
        skip: usize,
        max: usize,
    ) -> std::io::Result<Vec<(usize, wal::Payload)>> {
        let missing = {
            let st = self.lock();
            st.records
                .get(skip)
                .filter(|r| r.payload.is_none())
                .map(|r| r.seq)
        };
        if let Some(from) = missing {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.load(from, max))
                .await
                .map_err(std::io::Error::other)??;
        }
        let st = self.lock();
        let mut out = Vec::new();
        let mut points = 0;
        for r in st.records.iter().skip(skip) {
            let Some(p) = &r.payload else { break };
            if !out.is_empty() && points + r.points > max {
                break;
            }
            points += r.points;
            out.push((r.points, Arc::clone(p)));
        }
        Ok(out)
    }

    /// Points of the oldest record already written (non-zero only after a partial batch).
    pub fn head(&self) -> usize {
        self.lock().head
    }

    /// Reads records from `from` on, until about `max` points (at least [`LOAD_POINTS`]),
    /// continuing from where the previous read stopped.
    fn load(&self, from: u64, max: usize) -> std::io::Result<()> {
        let want = max.max(LOAD_POINTS);
        let mut loaded: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut points = 0;
        // Where `from` is, as its append or the recovery said; else where the last read stopped,
        // if that was `from`. (Without either, the read starts at the segment's beginning and
        // reads every record before `from`: under a relay backlog a quarter of the reads, each
        // up to a segment of 64 MiB, were such misses, a fifth of the listener threads' CPU.)
        let hint = {
            let st = self.lock();
            st.records
                .binary_search_by_key(&from, |r| r.seq)
                .ok()
                .map(|i| st.records[i].at)
                .or_else(|| {
                    st.read_pos
                        .filter(|(next, _)| *next == from)
                        .map(|(_, p)| p)
                })
        };
        let mut next = from;
        let pos = wal::read_streaming(self.log.dir(), from, u64::MAX, hint, |r| {
            next = r.seq + 1;
            points += record::points(&r.payload).unwrap_or(0);
            loaded.push((r.seq, r.payload));
            points < want
        })?;
        let mut st = self.lock();
        st.read_pos = pos.map(|p| (next, p));
        for (seq, payload) in loaded {
            let Ok(i) = st.records.binary_search_by_key(&seq, |r| r.seq) else {
                continue;
            };
            if st.records[i].payload.is_none() {
                st.cached += payload.len() as u64;
                st.records[i].payload = Some(Arc::new(payload.into()));
            }
        }
        Ok(())
    }

    /// Marks the `points` oldest points written; persists the cursor past fully written records.
    ///
    /// # Errors
    /// The cursor could not be written (the points stay consumed in memory; after a crash they
    /// would be sent again).
    pub async fn consume(self: &Arc<Self>, points: usize) -> std::io::Result<()> {
        let done_seq = {
            let mut st = self.lock();
            let mut left = points.min(st.queued);
            st.queued -= left;
            st.drain.record(left);
            let mut done = None;
            while left > 0 {
                let Some(front) = st.records.front() else {
                    break;
                };
                let rest = front.points - st.head;
                if left >= rest {
                    let rec = st.records.pop_front().expect("front exists");
                    st.queued_bytes -= rec.bytes;
                    if rec.payload.is_some() {
                        st.cached -= rec.bytes.min(st.cached);
                    }
                    st.head = 0;
                    left -= rest;
                    done = Some(rec.seq);
                } else {
                    st.head += left;
                    left = 0;
                }
            }
            done
        };
        let due = {
            let mut st = self.lock();
            if let Some(seq) = done_seq {
                st.done_seq = seq;
                st.cursor_saved = false;
            }
            // The cursor is saved at most every CURSOR_EVERY (and when the buffer empties or
            // the output stops): a crash may then send the last records again, which delivery
            // at least once allows, and the output does not wait on an fsync per batch.
            !st.cursor_saved
                && (st.records.is_empty()
                    || st.cursor_at.is_none_or(|t| t.elapsed() >= CURSOR_EVERY))
        };
        if due {
            self.save_cursor().await?;
        }
        Ok(())
    }

    /// Writes the cursor file (and trims the log) if it is behind what has been written.
    ///
    /// # Errors
    /// The cursor file could not be written.
    pub async fn save_cursor(self: &Arc<Self>) -> std::io::Result<()> {
        let seq = {
            let mut st = self.lock();
            if st.cursor_saved {
                return Ok(());
            }
            st.cursor_saved = true;
            st.cursor_at = Some(Instant::now());
            st.done_seq
        };
        let this = Arc::clone(self);
        let saved = tokio::task::spawn_blocking(move || {
            crate::durable::write_atomic(&cursor_path(&this.dir), seq.to_string().as_bytes())?;
            this.log.remove_before(seq + 1).map(|_| ())
        })
        .await
        .map_err(std::io::Error::other)?;
        if saved.is_err() {
            self.lock().cursor_saved = false;
        }
        saved
    }

    /// Waits until at least `points` are queued (returns at once if they are).
    pub async fn wait_until_len(&self, points: usize) {
        super::wait_for(&self.arrived, || self.len() >= points).await;
    }

    /// Refuses further reservations (shutdown).
    pub fn close(&self) {
        self.lock().closed = true;
    }
}

/// Room reserved in a disk buffer for one write.
#[derive(Debug)]
pub struct DiskReservation {
    buffer: Arc<DiskBuffer>,
    points: usize,
    /// Whether the reserved points were given back: when the record is queued (its points
    /// move from reserved to queued), or when the reservation is dropped first.
    settled: Arc<AtomicBool>,
}

impl DiskReservation {
    /// Appends `chunk` durably; resolves once its fsync completed.
    ///
    /// # Errors
    /// [`Refusal::Unavailable`] when the log cannot make it durable (disk full): nothing queued.
    pub async fn commit(self, chunk: Arc<[Metric]>) -> Result<(), Refusal> {
        let payload = Arc::new(record::encode(&chunk).into());
        self.commit_payload(payload, chunk.len()).await
    }

    /// Appends a record [`record`] made of `points` points durably; resolves once its fsync
    /// completed.
    ///
    /// # Errors
    /// [`Refusal::Unavailable`] when the log cannot make it durable (disk full): nothing queued.
    pub async fn commit_payload(self, payload: wal::Payload, points: usize) -> Result<(), Refusal> {
        let appended = Arc::clone(&payload);
        let b = Arc::clone(&self.buffer);
        // Queued by the log's writer thread once durable, in sequence order: queued here, after
        // the append resolved, appends of one group could queue out of order (tasks resume in
        // any order), and the output's cursor, past a later record sent first, would skip an
        // earlier one after a restart.
        let (state, arrived) = (Arc::clone(&b.state), Arc::clone(&b.arrived));
        let reserved = self.points;
        let settled = Arc::clone(&self.settled);
        let queue = move |seq, at| {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            if !settled.swap(true, Ordering::Relaxed) {
                st.reserved -= reserved;
            }
            // Queued also when the committing task is gone: the record is durable.
            st.push_record(seq, at, points, payload);
            drop(st);
            arrived.notify_one();
        };
        b.log
            .append_then(appended, queue)
            .await
            .map_err(|e| Refusal::Unavailable {
                output: b.output.clone(),
                reason: e.to_string(),
                retry_after: Duration::from_secs(5),
            })?;
        Ok(())
    }
}

impl Drop for DiskReservation {
    fn drop(&mut self) {
        let mut st = self.buffer.lock();
        if !self.settled.swap(true, Ordering::Relaxed) {
            st.reserved -= self.points;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::FieldValue;

    fn chunk(n: usize, start: i64) -> Arc<[Metric]> {
        (0..n)
            .map(|i| {
                let mut m = Metric::new("m", start + i as i64);
                m.add_field("v", FieldValue::Int(i as i64));
                m
            })
            .collect()
    }

    #[tokio::test]
    async fn survives_reopen_and_resumes_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = DiskBuffer::open("o", dir.path(), 100, 0, Duration::from_secs(1)).unwrap();
            b.reserve(3).unwrap().commit(chunk(3, 0)).await.unwrap();
            b.reserve(2).unwrap().commit(chunk(2, 10)).await.unwrap();
            let batch = b.peek(10).await.unwrap();
            assert_eq!(
                batch.iter().map(|m| m.time).collect::<Vec<_>>(),
                [0, 1, 2, 10, 11]
            );
            b.consume(3).await.unwrap(); // the first record is written
        }
        let b = DiskBuffer::open("o", dir.path(), 100, 0, Duration::from_secs(1)).unwrap();
        assert_eq!(b.len(), 2);
        let batch = b.peek(10).await.unwrap();
        assert_eq!(batch.iter().map(|m| m.time).collect::<Vec<_>>(), [10, 11]);
        b.consume(2).await.unwrap();
        assert!(b.is_empty());
    }

    /// A record intact in the log but not a buffer record is skipped at open; the records
    /// around it are queued and read back.
    #[tokio::test]
    async fn an_undecodable_record_is_skipped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let open = || DiskBuffer::open("o", dir.path(), 100, 0, Duration::from_secs(1)).unwrap();
        let b = open();
        b.reserve(3).unwrap().commit(chunk(3, 0)).await.unwrap();
        drop(b);
        let (log, _) =
            Log::open(&dir.path().join("log"), LogOptions::default(), |_, _| {}).unwrap();
        log.append(crate::pool::Pooled::from(vec![0xff; 7]))
            .await
            .unwrap();
        drop(log);
        let b = open();
        assert_eq!(b.len(), 3);
        b.reserve(2).unwrap().commit(chunk(2, 10)).await.unwrap();
        drop(b);
        let b = open();
        assert_eq!(b.len(), 5);
        let batch = b.peek(10).await.unwrap();
        assert_eq!(
            batch.iter().map(|m| m.time).collect::<Vec<_>>(),
            [0, 1, 2, 10, 11]
        );
    }

    #[tokio::test]
    async fn capacity_and_bytes_bound_admission() {
        let dir = tempfile::tempdir().unwrap();
        let b = DiskBuffer::open("o", dir.path(), 5, 0, Duration::from_secs(2)).unwrap();
        b.reserve(5).unwrap().commit(chunk(5, 0)).await.unwrap();
        assert!(matches!(b.reserve(1), Err(Refusal::Full { .. })));
        let dir2 = tempfile::tempdir().unwrap();
        let b = DiskBuffer::open("o", dir2.path(), 1000, 10, Duration::from_secs(2)).unwrap();
        b.reserve(5).unwrap().commit(chunk(5, 0)).await.unwrap();
        assert!(
            matches!(b.reserve(1), Err(Refusal::Full { .. })),
            "over max_bytes"
        );
    }

    /// Records of concurrent commits queue in sequence order (the output's cursor relies on
    /// it), and a commit whose task is dropped after the append went out is still queued once
    /// durable, its reservation given back once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_queue_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = DiskBuffer::open("o", dir.path(), 10_000, 0, Duration::from_secs(1)).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let b = Arc::clone(&b);
                tokio::spawn(async move { b.reserve(10).unwrap().commit(chunk(10, i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let seqs: Vec<u64> = b.lock().records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());

        let mut commit = Box::pin(b.reserve(7_000).unwrap().commit(chunk(7_000, 0)));
        tokio::select! {
            biased;
            _ = &mut commit => panic!("not durable at its first poll"),
            () = std::future::ready(()) => {}
        }
        drop(commit);
        b.wait_until_len(2_000 + 7_000).await;
        assert_eq!(b.lock().reserved, 0);
        assert!(
            b.reserve(1_000).is_ok(),
            "the buffer holds what it queued, no more"
        );
        assert!(b.reserve(1_001).is_err());
    }

    /// A buffer in `dir` holding records of `per` points, `extra` more of them than its cache
    /// holds (a point encodes to about 15 bytes here); returns it, `per` and the record count.
    async fn past_the_cache(dir: &Path, extra: usize) -> (Arc<DiskBuffer>, usize, usize) {
        let b = DiskBuffer::open("o", dir, 100_000_000, 0, Duration::from_secs(1)).unwrap();
        let per = 20_000;
        let n = (CACHE_BYTES / (per as u64 * 15)) as usize + extra;
        for i in 0..n {
            b.reserve(per)
                .unwrap()
                .commit(chunk(per, (i * per) as i64))
                .await
                .unwrap();
        }
        (b, per, n)
    }

    /// A record past the cache is read from where its append put it, not found by reading the
    /// segment from its start: a damaged record before it (written already) is never read, and
    /// the read leaves a position for the next one to go on from.
    #[tokio::test]
    async fn a_record_not_cached_is_read_from_where_it_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (b, per, n) = past_the_cache(dir.path(), 3).await;
        read_past_damage(dir.path(), b, per, n).await;
    }

    /// The same after a restart: a backlog found at open is read from where recovery found each
    /// record.
    #[tokio::test]
    async fn a_record_not_cached_is_read_from_where_recovery_found_it() {
        let dir = tempfile::tempdir().unwrap();
        let (b, per, n) = past_the_cache(dir.path(), 3).await;
        drop(b);
        let b = DiskBuffer::open("o", dir.path(), 100_000_000, 0, Duration::from_secs(1)).unwrap();
        assert_eq!(b.len(), n * per, "the whole backlog, queued again");
        read_past_damage(dir.path(), b, per, n).await;
    }

    /// Consumes the cached records of `b`, damages the first record of its log, and reads the
    /// next one.
    async fn read_past_damage(dir: &Path, b: Arc<DiskBuffer>, per: usize, n: usize) {
        let cached = b
            .lock()
            .records
            .iter()
            .take_while(|r| r.payload.is_some())
            .count();
        assert!(cached > 0 && cached < n, "{cached} of {n} records cached");
        for _ in 0..cached {
            let records = b.peek_records(per).await.unwrap();
            b.consume(records[0].0).await.unwrap();
        }
        // Damage the segment's first record, written and consumed.
        let segments = wal::segments(&dir.join("log")).unwrap();
        assert_eq!(segments.len(), 1);
        let mut bytes = std::fs::read(&segments[0].1).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&segments[0].1, &bytes).unwrap();

        let records = b.peek_records(per).await.unwrap();
        let ms = record::decode(&records[0].1).unwrap();
        assert_eq!(ms[0].time, (cached * per) as i64);
        assert!(
            b.lock().read_pos.is_some(),
            "read from the record's place (a read from the segment's start meets the damage and \
             falls back to a scan, which leaves no position)"
        );
    }

    #[tokio::test]
    async fn reads_back_records_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (b, per, n) = past_the_cache(dir.path(), 2).await;
        let mut seen = 0;
        while !b.is_empty() {
            let records = b.peek_records(per).await.unwrap();
            assert_eq!(records.len(), 1);
            let ms = record::decode(&records[0].1).unwrap();
            assert_eq!(
                ms[0].time, seen as i64,
                "records come back in order, from disk too"
            );
            seen += ms.len();
            b.consume(records[0].0).await.unwrap();
        }
        assert_eq!(seen, n * per);
    }
}
