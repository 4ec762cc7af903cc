//! Local buckets: a durable store where an acknowledged write survives a crash.
//!
//! A bucket is (db, rp). A write is appended to the store's [`crate::wal`] log and acknowledged
//! once the group commit's fsync covering it has completed. A compactor thread then moves what
//! the log holds into time partitions per bucket: gzip'd chunks of line protocol sorted by time,
//! named after the range of log records they hold. The log is trimmed once everything in a
//! segment is compacted; retention drops whole expired partitions.
//!
//! ```text
//! data_dir/LOCK                       held by the running agent: one writer per data_dir
//! data_dir/buckets/wal/               the log
//! data_dir/buckets/compacted          the last log record compacted (replaced atomically)
//! data_dir/buckets/readers.lock       shared by `export`; the compactor deletes only when free
//! data_dir/buckets/data/DB/RP/measurements
//! data_dir/buckets/data/DB/RP/PARTITION_START_NS/FIRST-LAST.lp.gz
//! ```
//!
//! Crash safety of compaction: a chunk is written to a temporary name, fsync'd and renamed, and
//! only then is the `compacted` cursor advanced. At open, chunks past the cursor (a compaction
//! that crashed before its cursor moved) and chunks whose range another chunk covers (a merge
//! that crashed before removing its inputs) are removed; the log still holds their records.

pub(crate) mod blocks;
mod compact;
pub mod export;
pub mod names;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::buffer::{record, Refusal};
pub(crate) use crate::durable::write_atomic;
use crate::line_protocol;
use crate::metric::Metric;
use crate::wal::{self, Log, LogError, LogOptions};

/// Settings of the store (from `[[outputs.buckets]]` and `[agent] data_dir`).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where the store lives: `data_dir/buckets`.
    pub data_dir: PathBuf,
    /// How long points are kept, by their timestamp (`INF`: forever).
    pub retention: crate::config::Retention,
    /// The time span of one partition.
    pub partition: Duration,
    /// How often the compactor runs.
    pub compaction_interval: Duration,
    /// A closed partition (its time span over) whose newest chunk is at least this old is
    /// merged into one chunk; until then it is merged by tiers like an open one (late writes
    /// keep adding chunks, and merging the whole partition after each would rewrite it again and
    /// again).
    pub settle: Duration,
    /// Log bytes not yet compacted past which writes are refused (503).
    pub max_pending_bytes: u64,
    /// The database for metrics that carry none (gathered metrics).
    pub default_database: String,
    /// Log segment size.
    pub segment_bytes: u64,
}

/// Counters of the store.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Corrupt log records skipped at open.
    pub corrupt_records: AtomicU64,
    /// Compaction runs that wrote something.
    pub compactions: AtomicU64,
    /// Points written to partitions.
    pub compacted_points: AtomicU64,
    /// Partitions dropped by retention.
    pub expired_partitions: AtomicU64,
    /// Compressed bytes of chunks that merges decoded and merged (time ranges overlapped).
    pub merged_bytes: AtomicU64,
    /// Compressed bytes of chunks that merges copied as they were.
    pub copied_bytes: AtomicU64,
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the data directory, or it cannot be created.
    #[error(transparent)]
    Lock(#[from] crate::durable::LockError),
    /// An I/O error on the store's directories.
    #[error("opening the bucket store in {}", .dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A flag a thread sleeps on until it is set or a timeout passes.
#[derive(Debug, Default)]
struct Signal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.set.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Waits until notified (or `timeout`), unless already notified or `stopped`; clears it.
    /// Returns whether the thread should go on (not `stopped`).
    fn wait(&self, timeout: Duration, stopped: &AtomicBool) -> bool {
        self.wait_for(timeout, stopped) != Wake::Stopped
    }

    /// As [`Signal::wait`], saying why it returned.
    fn wait_for(&self, timeout: Duration, stopped: &AtomicBool) -> Wake {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if !*set && !stopped.load(Ordering::Acquire) {
            set = self
                .cv
                .wait_timeout(set, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let notified = std::mem::replace(&mut *set, false);
        if stopped.load(Ordering::Acquire) {
            Wake::Stopped
        } else if notified {
            Wake::Notified
        } else {
            Wake::TimedOut
        }
    }
}

/// Why [`Signal::wait_for`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Notified,
    TimedOut,
    Stopped,
}

/// (db, rp) → measurements seen.
type Catalog = BTreeMap<(String, String), BTreeSet<String>>;

/// The store; see the module docs.
#[derive(Debug)]
pub struct BucketStore {
    root: PathBuf,
    options: StoreOptions,
    log: Log,
    _lock: Arc<crate::durable::DataDirLock>,
    pending_bytes: AtomicU64,
    catalog: Mutex<Catalog>,
    /// Wakes the compactor early (a full run pending, or stop).
    wake: Signal,
    /// Wakes the merger (a compaction run wrote chunks, or stop).
    wake_merger: Signal,
    /// Held while compaction writes chunks and while retention removes partitions, which run
    /// on different threads.
    layout: Mutex<()>,
    stopped: AtomicBool,
    closed: AtomicBool,
    /// Counters.
    pub stats: StoreStats,
    /// Recent compaction throughput (bytes, duration) for Retry-After.
    drain: Mutex<Option<(u64, Instant)>>,
    /// The compactor and merger threads, joined by [`BucketStore::close`].
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The compactor's payload buffers, kept from one run to the next while runs are full
    /// (faulting a run's megabytes in afresh each time was a tenth of the compactor's time).
    run_buffers: crate::pool::Pool,
    /// The compactor's emptied line lists, kept from one full run to the next like
    /// `run_buffers`.
    line_lists: Mutex<Vec<compact::Lines<'static>>>,
    /// Where the last compaction run stopped reading the log.
    read_at: Mutex<Option<wal::Position>>,
}

pub(crate) fn paths(data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root = data_dir.join("buckets");
    (
        root.join("wal"),
        root.join("compacted"),
        root.join("readers.lock"),
    )
}

pub(crate) fn read_cursor(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a number", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// The timestamp of a stored line: its last space-separated token.
pub(crate) fn line_time(line: &[u8]) -> Option<i64> {
    let space = memchr::memrchr(b' ', line)?;
    crate::line_protocol::parse_timestamp(&line[space + 1..])
}

/// The measurement of a stored line (unescaped).
/// Refuses a db or rp name that cannot be stored.
fn check_names(db: &str, rp: &str) -> Result<(), Refusal> {
    names::encode("database", db).map_err(|e| Refusal::Invalid(e.to_string()))?;
    names::encode("retention policy", rp).map_err(|e| Refusal::Invalid(e.to_string()))?;
    Ok(())
}

fn line_measurement(line: &str) -> Option<String> {
    let mut p = line_protocol::Parser::new(line);
    p.next()?.ok().map(|l| l.measurement.into_owned())
}

impl BucketStore {
    /// Opens the store under `options.data_dir`, recovering the log and any crashed compaction,
    /// and starts the compactor thread.
    ///
    /// # Errors
    /// [`OpenError::Lock`] when another agent holds the data dir; I/O errors on the directories.
    /// Never the contents of the log.
    pub fn open(options: StoreOptions) -> Result<Arc<BucketStore>, OpenError> {
        let lock = Arc::new(crate::durable::lock_data_dir(&options.data_dir)?);
        Self::open_locked(options, lock)
    }

    /// As [`BucketStore::open`], under a lock of `options.data_dir` the caller holds (and
    /// shares with the disk buffers kept there).
    ///
    /// # Errors
    /// As [`BucketStore::open`].
    pub fn open_locked(
        options: StoreOptions,
        lock: Arc<crate::durable::DataDirLock>,
    ) -> Result<Arc<BucketStore>, OpenError> {
        let data_dir = options.data_dir.clone();
        let io_err = |source| OpenError::Io {
            dir: data_dir.clone(),
            source,
        };
        let (wal_dir, cursor_path, _) = paths(&data_dir);
        let root = data_dir.join("buckets");
        crate::durable::create_dir_all(&root.join("data")).map_err(io_err)?;
        let cursor = read_cursor(&cursor_path).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the compaction cursor; recompacting the whole log");
            0
        });
        compact::recover_chunks(&root.join("data"), cursor).map_err(io_err)?;
        let span = options.partition.as_nanos().max(1).to_string();
        if fs::read_to_string(root.join("partition_ns"))
            .ok()
            .as_deref()
            != Some(span.as_str())
        {
            write_atomic(&root.join("partition_ns"), span.as_bytes()).map_err(io_err)?;
        }
        let mut catalog = compact::load_catalog(&root.join("data")).map_err(io_err)?;
        // The records not compacted yet: their bytes are pending, their measurements listed.
        let mut pending = 0u64;
        let (log, recovery) = Log::open(
            &wal_dir,
            LogOptions {
                segment_bytes: options.segment_bytes,
            },
            |r, _| {
                if r.seq <= cursor {
                    return;
                }
                pending += r.payload.len() as u64;
                for run in record::runs(&r.payload).unwrap_or_default() {
                    let set = catalog
                        .entry((run.db.to_owned(), run.rp.to_owned()))
                        .or_default();
                    for (start, end) in line_protocol::encoded_points(run.lp.as_bytes()) {
                        if let Some(m) = line_measurement(&run.lp[start..end]) {
                            set.insert(m);
                        }
                    }
                }
            },
        )
        .map_err(io_err)?;
        if recovery.corrupt > 0 || recovery.truncated_bytes > 0 || recovery.gaps > 0 {
            tracing::warn!(
                corrupt_records = recovery.corrupt,
                truncated_bytes = recovery.truncated_bytes,
                missing_segments = recovery.gaps,
                "recovered the bucket log"
            );
        }
        let store = Arc::new(BucketStore {
            root,
            options,
            log,
            _lock: lock,
            pending_bytes: AtomicU64::new(pending),
            catalog: Mutex::new(catalog),
            wake: Signal::default(),
            wake_merger: Signal::default(),
            layout: Mutex::new(()),
            stopped: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stats: StoreStats::default(),
            drain: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            run_buffers: crate::pool::Pool::new(compact::MAX_RUN_BYTES + (1 << 20)),
            line_lists: Mutex::new(Vec::new()),
            read_at: Mutex::new(None),
        });
        store
            .stats
            .corrupt_records
            .store(recovery.corrupt, Ordering::Relaxed);
        // Merges run beside compaction: a merge of large chunks takes seconds, which would
        // otherwise stall compaction and turn writers away.
        let (compactor, merger) = (Arc::clone(&store), Arc::clone(&store));
        let threads = [
            std::thread::Builder::new()
                .name("heliograph-compactor".into())
                .spawn(move || compactor.run_compactor()),
            std::thread::Builder::new()
                .name("heliograph-merger".into())
                .spawn(move || merger.run_merger()),
        ];
        for handle in threads {
            let handle = handle.map_err(io_err)?;
            store.threads().push(handle);
        }
        Ok(store)
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<std::thread::JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `metrics` durably; resolves once the fsync covering them has completed.
    ///
    /// # Errors
    /// [`Refusal::Invalid`] for an unusable db or rp name (a client error), [`Refusal::Full`]
    /// when compaction is behind, [`Refusal::Unavailable`] when the log cannot make the write
    /// durable (disk full), [`Refusal::ShuttingDown`] once closed. Nothing is stored then.
    pub async fn append(&self, metrics: &[Metric]) -> Result<(), Refusal> {
        self.admit(metrics.len())?;
        // InfluxDB refuses points older than the retention; storing them only for retention to
        // drop them at once would be a silent loss of acknowledged points.
        let horizon = self.horizon();
        let expired = metrics.iter().filter(|m| m.time < horizon).count();
        self.check_retention(expired, metrics.len())?;
        // Group by bucket: one log record per bucket in this write (usually one).
        let mut groups: BTreeMap<(&str, &str), Vec<&Metric>> = BTreeMap::new();
        for m in metrics {
            let db = if m.origin.db.is_empty() {
                self.options.default_database.as_str()
            } else {
                m.origin.db.as_str()
            };
            groups
                .entry((db, m.origin.rp.as_str()))
                .or_default()
                .push(m);
        }
        // One log record for the whole write: one run per bucket, in the format disk buffers use.
        let mut payload = Vec::with_capacity(metrics.len() * 128);
        for ((db, rp), ms) in &groups {
            check_names(db, rp)?;
            record::encode_run(db, rp, ms, &mut payload);
        }
        self.append_payload(Arc::new(payload.into())).await?;
        for ((db, rp), ms) in groups {
            self.note_measurements(db, rp, ms.iter().map(|m| m.name.as_str()));
        }
        Ok(())
    }

    /// Appends one write already in normalized line protocol to bucket (`db`, `rp`), durably:
    /// the listener's path when nothing needs the points as metrics. `record` is the log record
    /// (one run, [`record::run_lp_record`]: `points` lines, ns timestamps, the oldest
    /// `min_time`, measurements `names`).
    ///
    /// # Errors
    /// As [`BucketStore::append`].
    #[allow(clippy::too_many_arguments)]
    pub async fn append_lp(
        &self,
        db: &str,
        rp: &str,
        points: usize,
        min_time: i64,
        names: &[String],
        record: wal::Payload,
    ) -> Result<(), Refusal> {
        self.admit(points)?;
        let horizon = self.horizon();
        if min_time < horizon {
            let runs = record::runs(&record).unwrap_or_default();
            let expired = runs
                .iter()
                .flat_map(|run| crate::line_protocol::Parser::new(run.lp))
                .filter_map(Result::ok)
                .filter(|l| l.timestamp.is_some_and(|t| t < horizon))
                .count();
            self.check_retention(expired.max(1), points)?;
        }
        check_names(db, rp)?;
        self.append_payload(record).await?;
        self.note_measurements(db, rp, names.iter().map(String::as_str));
        Ok(())
    }

    /// Refuses a write when closed or when compaction is too far behind.
    fn admit(&self, points: usize) -> Result<(), Refusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refusal::ShuttingDown);
        }
        let pending = self.pending_bytes.load(Ordering::Relaxed);
        if pending > self.options.max_pending_bytes {
            self.wake_compactor();
            return Err(Refusal::Full {
                output: "outputs.buckets".into(),
                queued: points,
                capacity: 0,
                retry_after: self.retry_after(pending - self.options.max_pending_bytes),
            });
        }
        Ok(())
    }

    /// Points older than this (ns) are beyond the retention.
    fn horizon(&self) -> i64 {
        self.options.retention.horizon(crate::pipeline::now_ns())
    }

    fn check_retention(&self, expired: usize, total: usize) -> Result<(), Refusal> {
        if expired == 0 {
            return Ok(());
        }
        Err(Refusal::Invalid(format!(
            "points beyond retention policy: {expired} of {total} points are older than the retention ({})",
            self.options.retention
        )))
    }

    /// Appends one log record; resolves after its fsync.
    async fn append_payload(&self, payload: wal::Payload) -> Result<(), Refusal> {
        let len = payload.len() as u64;
        self.log
            .append(payload)
            .await
            .map_err(|e| self.unavailable(&e))?;
        // Wake the compactor as the backlog reaches a full run (not on every append after:
        // it goes on by itself while a run is due).
        let before = self.pending_bytes.fetch_add(len, Ordering::Relaxed);
        let due = self.run_due();
        if before < due && before + len >= due {
            self.wake_compactor();
        }
        Ok(())
    }

    /// Records the measurement names a bucket holds (for SHOW MEASUREMENTS).
    fn note_measurements<'n>(&self, db: &str, rp: &str, names: impl Iterator<Item = &'n str>) {
        let mut catalog = self.catalog();
        let key = (db.to_owned(), rp.to_owned());
        let set = match catalog.get_mut(&key) {
            Some(set) => set,
            None => catalog.entry(key).or_default(),
        };
        for name in names {
            if !set.contains(name) {
                set.insert(name.to_owned());
            }
        }
    }

    fn unavailable(&self, e: &LogError) -> Refusal {
        Refusal::Unavailable {
            output: "outputs.buckets".into(),
            reason: e.to_string(),
            retry_after: Duration::from_secs(5),
        }
    }

    fn retry_after(&self, excess: u64) -> Duration {
        let drain = self.drain.lock().unwrap_or_else(|e| e.into_inner());
        match *drain {
            Some((bytes, since)) if bytes > 0 => {
                let rate = bytes as f64 / since.elapsed().as_secs_f64().max(1.0);
                Duration::from_secs_f64(excess as f64 / rate)
                    .clamp(Duration::from_secs(1), crate::buffer::MAX_RETRY_AFTER)
            }
            _ => self.options.compaction_interval.max(Duration::from_secs(1)),
        }
    }

    /// Pending bytes from which the compactor runs at once rather than at its next interval (a
    /// full run), so the backlog stays near one run and `max_pending_bytes` is left for bursts.
    fn run_due(&self) -> u64 {
        (compact::MAX_RUN_BYTES as u64).min(self.options.max_pending_bytes / 2)
    }

    fn wake_compactor(&self) {
        self.wake.notify();
    }

    /// Creates the bucket (db, `autogen`) if it does not exist.
    ///
    /// # Errors
    /// An invalid name, or the directory cannot be created.
    pub fn create_database(&self, db: &str) -> Result<(), String> {
        let dir = self.bucket_dir(db, crate::metric::DEFAULT_RETENTION_POLICY)?;
        crate::durable::create_dir_all(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.catalog()
            .entry((
                db.to_owned(),
                crate::metric::DEFAULT_RETENTION_POLICY.to_owned(),
            ))
            .or_default();
        Ok(())
    }

    /// Drops every bucket of `db`: its data and catalog entries (the log's records of it are
    /// skipped by compaction from now on).
    ///
    /// # Errors
    /// An invalid name, or the directory cannot be removed.
    pub fn drop_database(&self, db: &str) -> Result<(), String> {
        let enc = names::encode("database", db).map_err(|e| e.to_string())?;
        let dir = self.root.join("data").join(enc);
        self.catalog().retain(|(d, _), _| d != db);
        // The log may still hold records of this db not compacted yet: remember the drop so
        // compaction skips them.
        compact::mark_dropped(&self.root, db, self.log.durable_seq()).map_err(|e| e.to_string())?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => crate::durable::sync_dir(&self.root.join("data")).map_err(|e| e.to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", dir.display())),
        }
    }

    fn bucket_dir(&self, db: &str, rp: &str) -> Result<PathBuf, String> {
        let d = names::encode("database", db).map_err(|e| e.to_string())?;
        let r = names::encode("retention policy", rp).map_err(|e| e.to_string())?;
        Ok(self.root.join("data").join(d).join(r))
    }

    /// Databases that have a bucket, sorted.
    pub fn databases(&self) -> Vec<String> {
        let dbs: BTreeSet<String> = self.catalog().keys().map(|(d, _)| d.clone()).collect();
        dbs.into_iter().collect()
    }

    /// Retention policies of `db`, sorted; empty if the db does not exist.
    pub fn retention_policies(&self, db: &str) -> Vec<String> {
        self.catalog()
            .keys()
            .filter(|(d, _)| d == db)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Measurements of `db` (every rp), sorted.
    pub fn measurements(&self, db: &str) -> Vec<String> {
        let catalog = self.catalog();
        let all: BTreeSet<&String> = catalog
            .iter()
            .filter(|((d, _), _)| d == db)
            .flat_map(|(_, ms)| ms.iter())
            .collect();
        all.into_iter().cloned().collect()
    }

    /// The configured retention.
    pub fn retention(&self) -> crate::config::Retention {
        self.options.retention
    }

    /// The configured partition span.
    pub fn partition(&self) -> Duration {
        self.options.partition
    }

    /// Log bytes not yet compacted.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Refuses further appends and stops the compactor and the merger, waiting for a run or
    /// merge in progress to end (what the log holds is already durable). The store's lock is
    /// released once the last handle to it is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        self.wake.notify();
        self.wake_merger.notify();
        let threads = std::mem::take(&mut *self.threads());
        for handle in threads {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
