//! The compactor: log records into sorted, gzip'd partition chunks; chunk merges; retention;
//! and the recovery of a compaction that crashed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::blocks::{self, Block, BlockWriter};
use super::{line_time, names, paths, read_cursor, write_atomic, BucketStore, Catalog};
use crate::buffer::record;
use crate::line_protocol;
use crate::wal;

/// A tier of this many chunks of an open partition is merged into one. Each level of merges
/// inflates and deflates every byte again, and an hour's partition at 13 MB/s of line protocol
/// (5,600 runs) goes through 3 levels with 16 against 4-5 with 8; an export then reads at most
/// 15 chunks per level.
const MERGE_AT: usize = 16;
/// A chunk more than this many times the mean size of the newer chunks of its tier starts an
/// older tier.
const TIER_RATIO: u64 = 3;
/// Lines are read from the log in runs of at most this many payload bytes per compaction: the
/// run is held in memory while it is sorted. Runs are written stored and their first merge
/// decodes them all, so their size hardly matters for CPU (8, 10 and 12 MiB: no difference
/// above the noise); peak RSS at 16 connections, with the merger beside the compactor, is
/// 57 MiB with 8 and 62-64 MiB with 12.
pub(super) const MAX_RUN_BYTES: usize = 8 << 20;

/// A chunk file: `FIRST-LAST.lp.gz` holding log records FIRST..=LAST of its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub first: u64,
    pub last: u64,
    pub path: PathBuf,
}

fn chunk_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.lp.gz")
}

/// Chunks of a partition directory, sorted; removes leftover temporary files.
pub(crate) fn chunks(partition: &Path) -> io::Result<Vec<Chunk>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(partition)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some((a, b)) = name.strip_suffix(".lp.gz").and_then(|s| s.split_once('-')) {
            if let (Ok(first), Ok(last)) = (a.parse(), b.parse()) {
                out.push(Chunk { first, last, path });
            }
        }
    }
    out.sort_by_key(|c| (c.first, c.last));
    Ok(out)
}

/// Chunks not covered by a wider one (a merge that crashed leaves both).
pub(crate) fn live_chunks(mut all: Vec<Chunk>) -> (Vec<Chunk>, Vec<Chunk>) {
    let mut covered = Vec::new();
    let snapshot = all.clone();
    all.retain(|c| {
        let inside = snapshot.iter().any(|o| {
            o != c
                && o.first <= c.first
                && c.last <= o.last
                && (o.first, o.last) != (c.first, c.last)
        });
        if inside {
            covered.push(c.clone());
        }
        !inside
    });
    (all, covered)
}

/// `data/DB/RP/PARTITION` directories: (db, rp, partition start, path).
pub(crate) fn partitions(data: &Path) -> io::Result<Vec<(String, String, i64, PathBuf)>> {
    let mut out = Vec::new();
    for (db, rp, dir) in buckets(data)? {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if let Some(start) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<i64>().ok())
            {
                out.push((db.clone(), rp.clone(), start, path));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    Ok(out)
}

/// `data/DB/RP` directories: (db, rp, path).
pub(crate) fn buckets(data: &Path) -> io::Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(dbs) = fs::read_dir(data) else {
        return Ok(out);
    };
    for db in dbs {
        let db = db?.path();
        let Some(db_name) = db
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(names::decode)
        else {
            continue;
        };
        if !db.is_dir() {
            continue;
        }
        for rp in fs::read_dir(&db)? {
            let rp = rp?.path();
            if let Some(rp_name) = rp
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(names::decode)
            {
                if rp.is_dir() {
                    out.push((db_name.clone(), rp_name, rp));
                }
            }
        }
    }
    Ok(out)
}

/// At open: removes temporary files, chunks past the cursor, and chunks a merge covered.
pub(crate) fn recover_chunks(data: &Path, cursor: u64) -> io::Result<()> {
    for (_, _, _, dir) in partitions(data)? {
        let mut changed = false;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
                changed = true;
            }
        }
        let (live, covered) = live_chunks(chunks(&dir)?);
        for c in covered
            .iter()
            .chain(live.iter().filter(|c| c.last > cursor))
        {
            tracing::warn!(chunk = %c.path.display(), "removing a chunk of a compaction that did not complete");
            fs::remove_file(&c.path)?;
            changed = true;
        }
        if changed {
            crate::durable::sync_dir(&dir)?;
        }
    }
    Ok(())
}

/// Buckets and their measurements, from the `measurements` files.
pub(crate) fn load_catalog(data: &Path) -> io::Result<Catalog> {
    let mut catalog = Catalog::new();
    for (db, rp, dir) in buckets(data)? {
        let set = catalog.entry((db, rp)).or_default();
        if let Ok(text) = fs::read_to_string(dir.join("measurements")) {
            set.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
    }
    Ok(catalog)
}

fn dropped_path(root: &Path) -> PathBuf {
    root.join("dropped")
}

/// Databases dropped, with the last log record that belongs to the dropped data.
pub(crate) fn load_dropped(root: &Path) -> BTreeMap<String, u64> {
    let text = fs::read_to_string(dropped_path(root)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (seq, db) = l.split_once(' ')?;
            Some((names::decode(db)?, seq.parse().ok()?))
        })
        .collect()
}

/// Records that `db` was dropped when the log held records up to `seq`.
pub(crate) fn mark_dropped(root: &Path, db: &str, seq: u64) -> io::Result<()> {
    let mut dropped = load_dropped(root);
    dropped.insert(db.to_owned(), seq);
    let text: String = dropped
        .iter()
        .map(|(db, seq)| {
            format!(
                "{seq} {}\n",
                names::encode("database", db).unwrap_or_default()
            )
        })
        .collect();
    write_atomic(&dropped_path(root), text.as_bytes())
}

/// Whether a record `seq` of `db` belongs to data dropped since.
pub(crate) fn is_dropped(dropped: &BTreeMap<String, u64>, db: &str, seq: u64) -> bool {
    dropped.get(db).is_some_and(|until| seq <= *until)
}

/// Lines of one partition in a compaction run: (time, line) borrowed from the run's payloads.
pub(super) type Lines<'a> = Vec<(i64, &'a [u8])>;

/// An emptied line list, kept for the next run without its borrow. Collecting the empty list
/// into one of another lifetime reuses its allocation (same layout). Grown afresh each run,
/// the lists' reallocations and the page faults of their new memory were a sixth of the
/// compactor's time.
fn unborrowed(mut lines: Lines<'_>) -> Lines<'static> {
    lines.clear();
    lines.into_iter().map(|_| unreachable!("empty")).collect()
}

/// A sorted stream of (time, line): a chunk, or log records sorted in memory.
pub(crate) type Source = Box<dyn Iterator<Item = io::Result<(i64, String)>> + Send>;

/// Lines of gzip'd line protocol (a chunk, or a range of its blocks), one at a time into a
/// buffer that is reused, each with the time at its end.
struct LineReader {
    reader: Box<dyn Read + Send>,
    /// Text read and not yet passed: `buf[..filled]`; the current point is `buf[line]`.
    buf: Vec<u8>,
    filled: usize,
    line: Range<usize>,
    /// Where the next point starts.
    next: usize,
    eof: bool,
    time: i64,
    done: bool,
}

/// How much a [`LineReader`] reads at a time (more when a point is longer).
const LINE_READER_BYTES: usize = 32 << 10;

impl LineReader {
    fn new(reader: Box<dyn Read + Send>) -> LineReader {
        LineReader {
            reader,
            buf: vec![0; LINE_READER_BYTES],
            filled: 0,
            line: 0..0,
            next: 0,
            eof: false,
            time: 0,
            done: false,
        }
    }

    /// The lines of `size` bytes of whole blocks of `path` from `offset`, at the first line.
    fn range(path: &Path, offset: u64, size: u64) -> io::Result<LineReader> {
        let mut lines = LineReader::new(Box::new(blocks::open_range(path, offset, size)?));
        lines.advance()?;
        Ok(lines)
    }

    /// The current point, without its LF. Lines are handed out where they lie in the read
    /// buffer: copying each into a line of its own (`read_until`) was an eighth of a merge.
    fn line(&self) -> &[u8] {
        &self.buf[self.line.clone()]
    }

    /// Moves to the next non-empty point; `done` at the end.
    fn advance(&mut self) -> io::Result<()> {
        loop {
            let rest = &self.buf[self.next..self.filled];
            // A string value may hold an LF: a point is not simply a line.
            let end = line_protocol::encoded_point_end(rest);
            if end == rest.len() && !self.eof {
                self.fill()?; // the point may go on past what has been read
                continue;
            }
            if rest.is_empty() {
                self.done = true;
                return Ok(());
            }
            self.line = self.next..self.next + end;
            self.next = (self.next + end + 1).min(self.filled);
            if !self.line.is_empty() {
                self.time = line_time(self.line()).unwrap_or(i64::MIN);
                return Ok(());
            }
        }
    }

    /// Reads more text after the unpassed rest, which moves to the front of the buffer.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.next..self.filled, 0);
        self.filled -= self.next;
        self.next = 0;
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            return Ok(());
        }
    }
}

/// A sorted stream of (time, line) from a chunk.
pub(crate) struct ChunkLines(LineReader);

impl ChunkLines {
    pub(crate) fn open(path: &Path) -> io::Result<ChunkLines> {
        let f = File::open(path)?;
        Ok(ChunkLines(LineReader::new(Box::new(
            flate2::read::MultiGzDecoder::new(BufReader::new(f)),
        ))))
    }
}

impl Iterator for ChunkLines {
    type Item = io::Result<(i64, String)>;
    fn next(&mut self) -> Option<Self::Item> {
        let lines = &mut self.0;
        if let Err(e) = lines.advance() {
            return Some(Err(e));
        }
        if lines.done {
            return None;
        }
        let line = String::from_utf8(lines.line().to_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        Some(line.map(|l| (lines.time, l)))
    }
}

/// Writes the lines of `inputs`, each sorted, to `w` in (time, line) order. A merge has few
/// inputs (a tier of chunks, or the live chunks of a settled partition, which tiering keeps to
/// tens), so the next line is found by a scan of their current times (lines are compared only
/// where times are equal); the input found goes on without a scan while its lines stay before
/// every other input's current time.
fn merge_lines<W: io::Write>(
    mut inputs: Vec<LineReader>,
    w: &mut BlockWriter<W>,
) -> io::Result<()> {
    inputs.retain(|i| !i.done);
    while !inputs.is_empty() {
        // The input with the least (time, line), and the least time of the others.
        let (mut next, mut bound) = (0, i64::MAX);
        for i in 1..inputs.len() {
            let (t, least) = (inputs[i].time, inputs[next].time);
            if t < least || (t == least && inputs[i].line() < inputs[next].line()) {
                bound = least;
                next = i;
            } else {
                bound = bound.min(t);
            }
        }
        let input = &mut inputs[next];
        loop {
            w.line(input.time, input.line())?;
            input.advance()?;
            if input.done || input.time >= bound {
                break;
            }
        }
        if input.done {
            inputs.swap_remove(next);
        }
    }
    Ok(())
}

/// Merges sorted streams of (time, line) into one, ordered by (time, line); holds one line per
/// stream.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<(i64, String, usize)>>,
    primed: bool,
}

impl Merge {
    pub(crate) fn new(sources: Vec<Source>) -> Merge {
        Merge {
            sources,
            heap: BinaryHeap::new(),
            primed: false,
        }
    }

    fn pull(&mut self, i: usize) -> io::Result<()> {
        if let Some(item) = self.sources[i].next() {
            let (t, line) = item?;
            self.heap.push(Reverse((t, line, i)));
        }
        Ok(())
    }
}

impl Iterator for Merge {
    type Item = io::Result<(i64, String)>;
    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.sources.len() {
                if let Err(e) = self.pull(i) {
                    return Some(Err(e));
                }
            }
        }
        let Reverse((t, line, i)) = self.heap.pop()?;
        if let Err(e) = self.pull(i) {
            return Some(Err(e));
        }
        Some(Ok((t, line)))
    }
}

/// Which chunks of an open partition to merge (consecutive in `live`, in log order), if any:
/// size-tiered, so a byte is rewritten a logarithmic number of times. The newest stored chunks
/// (compaction runs not yet merged) are the first tier. Before them, among compressed chunks
/// from the newest back, an older chunk joins the tier while it is at most [`TIER_RATIO`]
/// times the mean size of the tier so far. A tier is merged once it holds [`MERGE_AT`] chunks.
/// (Comparing with the sum of the newer chunks instead, as this did before, rewrote each merged
/// chunk again after it had grown by half: `scripts/bench-ingest.sh`'s load merged 4x the bytes
/// it compacted.) The compressed tier is looked at whatever is stored after it: under a steady
/// load there nearly always is a run waiting, and compressed chunks piled up unmerged until
/// the partition closed (27 of them after 8 s of `bench-ingest.sh`'s load).
fn merge_range(live: &[Chunk]) -> Option<Range<usize>> {
    // Each chunk's size and kind read once, from the newest back, only as far as needed.
    let mut kinds = live
        .iter()
        .rev()
        .map(|c| {
            let size = fs::metadata(&c.path).map_or(0, |m| m.len());
            (size, blocks::first_stored(&c.path).unwrap_or(false))
        })
        .peekable();
    let mut from = live.len();
    while kinds.next_if(|(_, stored)| *stored).is_some() {
        from -= 1;
    }
    if live.len() - from >= MERGE_AT {
        return Some(from..live.len());
    }
    let end = from;
    let (mut total, mut count) = (0u64, 0u64);
    for (size, stored) in kinds {
        if stored || (count > 0 && size > (total / count).saturating_mul(TIER_RATIO)) {
            break;
        }
        total += size;
        count += 1;
        from -= 1;
    }
    (end - from >= MERGE_AT).then_some(from..end)
}

/// The points of stored line protocol (`\n`-terminated, no `\r`: the listener normalized
/// them; a string value may hold an LF).
fn stored_lines(lp: &[u8]) -> impl Iterator<Item = &[u8]> {
    line_protocol::encoded_points(lp).map(move |(start, end)| &lp[start..end])
}

/// Whether the newest of `live` (non-empty, in log order) was written at least `settle` ago.
fn settled(live: &[Chunk], settle: Duration) -> bool {
    live.last()
        .and_then(|c| fs::metadata(&c.path).ok()?.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= settle)
}

/// What a chunk is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// A compaction run: stored blocks; the partition's directories are made if need be.
    Run,
    /// A merge: compressed blocks, into a partition that must still exist (a merge beside
    /// DROP DATABASE or retention must not bring a removed partition back).
    Merge,
}

/// Writes a chunk durably: temporary file, `fill` writes its blocks, fsync, rename, fsync of
/// the directory (and of new parent directories).
fn write_chunk(
    dir: &Path,
    first: u64,
    last: u64,
    written: Written,
    fill: impl FnOnce(&mut BlockWriter<BufWriter<File>>) -> io::Result<()>,
) -> io::Result<PathBuf> {
    if written == Written::Run {
        crate::durable::create_dir_all(dir)?;
    }
    let path = dir.join(chunk_name(first, last));
    let tmp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    let file = BufWriter::with_capacity(1 << 16, file);
    let mut writer = if written == Written::Run {
        BlockWriter::stored(file)
    } else {
        BlockWriter::new(file)
    };
    fill(&mut writer)?;
    let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    crate::durable::sync_dir(dir)?;
    Ok(path)
}

/// One input's share of a merge cluster: a contiguous byte range of whole blocks.
struct Span {
    input: usize,
    offset: u64,
    size: u64,
    /// The range is compressed blocks of an indexed chunk: alone in its cluster, it is copied
    /// as it is.
    copy: bool,
}

/// Splits the blocks of `inputs` into clusters of overlapping time ranges, in time order. A
/// cluster of one compressed indexed block is copied; any other (stored blocks too) is decoded
/// and merged. Clusters do not
/// overlap, so writing them one after the other gives sorted output.
fn clusters(inputs: &[Chunk]) -> io::Result<Vec<Vec<Span>>> {
    let mut all: Vec<(Block, usize, bool)> = Vec::new();
    for (i, c) in inputs.iter().enumerate() {
        match blocks::index(&c.path)? {
            Some(index) => all.extend(index.into_iter().map(|b| (b, i, !b.stored))),
            None => {
                let size = fs::metadata(&c.path)?.len();
                let whole = Block {
                    offset: 0,
                    size,
                    tmin: i64::MIN,
                    tmax: i64::MAX,
                    stored: false,
                };
                all.push((whole, i, false));
            }
        }
    }
    all.sort_by_key(|(b, i, _)| (b.tmin, b.tmax, *i));
    let mut out: Vec<Vec<Span>> = Vec::new();
    let mut reach = None;
    for (b, input, copy) in all {
        let joins = reach.is_some_and(|r| b.tmin <= r);
        reach = Some(if joins {
            reach.unwrap_or(b.tmax).max(b.tmax)
        } else {
            b.tmax
        });
        if !joins {
            out.push(Vec::new());
        }
        let cluster = out.last_mut().expect("pushed above");
        // An input's blocks in one cluster are consecutive in its file: extend its span.
        match cluster.iter_mut().find(|s| s.input == input) {
            Some(span) => {
                span.size = b.offset + b.size - span.offset;
                span.copy &= copy;
            }
            None => cluster.push(Span {
                input,
                offset: b.offset,
                size: b.size,
                copy,
            }),
        }
    }
    Ok(coalesce_copies(out))
}

/// Joins clusters that are each one copied span and follow one another in the same input into
/// one span, so a merge copies a run of untouched blocks in one go.
fn coalesce_copies(clusters: Vec<Vec<Span>>) -> Vec<Vec<Span>> {
    let mut out: Vec<Vec<Span>> = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        if let ([next], Some([prev])) = (&cluster[..], out.last_mut().map(Vec::as_mut_slice)) {
            if next.copy
                && prev.copy
                && next.input == prev.input
                && prev.offset + prev.size == next.offset
            {
                prev.size += next.size;
                continue;
            }
        }
        out.push(cluster);
    }
    out
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl BucketStore {
    pub(super) fn run_compactor(&self) {
        let interval = self.options.compaction_interval;
        // A backlog recovered at open may already hold full runs.
        let mut wait = self.pending_bytes() < self.run_due();
        // Whether run buffers are held from runs since the compactor last went idle.
        let mut holding = false;
        loop {
            if wait {
                let mut left = interval;
                if holding {
                    // A second without a full run due: the runs are over for now, and
                    // their buffers (up to 9 MiB) go back to the system instead of waiting
                    // for the next burst. Under a steady load the next run comes sooner and
                    // they are kept (faulting them in afresh each run cost a tenth of the
                    // compactor's time).
                    let short = crate::memory::IDLE_AFTER.min(interval);
                    match self.wake.wait_for(short, &self.stopped) {
                        super::Wake::Stopped => return,
                        super::Wake::Notified => left = Duration::ZERO,
                        super::Wake::TimedOut => {
                            self.release_run_buffers();
                            holding = false;
                            left = interval - short;
                        }
                    }
                }
                if !left.is_zero() && !self.wake.wait(left, &self.stopped) {
                    return;
                }
            }
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            // Straight on while full runs are pending; after an idle run or an error, wait.
            wait = match self.compact_once() {
                Ok(0) => true,
                Ok(_) => {
                    holding = true;
                    self.wake_merger.notify();
                    self.pending_bytes() < self.run_due()
                }
                Err(e) => {
                    tracing::error!(error = %e, "compaction failed; it will be retried");
                    true
                }
            };
        }
    }

    /// Frees the buffers kept from one run to the next, and what this thread freed.
    fn release_run_buffers(&self) {
        self.run_buffers.clear();
        self.line_lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        crate::memory::release_thread();
    }

    /// Merges, retention and log trimming, beside compaction; also on a timer, since a
    /// partition settles (and expires) without new writes.
    pub(super) fn run_merger(&self) {
        while self
            .wake_merger
            .wait(self.options.compaction_interval, &self.stopped)
        {
            if let Err(e) = self.maintain() {
                tracing::error!(error = %e, "merge or retention failed; it will be retried");
            }
            crate::memory::release_thread();
        }
    }

    /// Moves log records past the cursor into partition chunks; returns the points written.
    ///
    /// # Errors
    /// I/O errors; the cursor then stays where it was and the next run repeats the work.
    pub fn compact_once(&self) -> io::Result<u64> {
        let started = Instant::now();
        let (wal_dir, cursor_path, _) = paths(&self.options.data_dir);
        let cursor = read_cursor(&cursor_path)?;
        let dropped = load_dropped(&self.root);
        let partition = self.options.partition.as_nanos().max(1) as i64;
        // The run's payloads stay in memory; lines are sorted as slices of them.
        let mut payloads: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut first = None;
        let mut last = cursor;
        let mut bytes = 0usize;
        // Only records made durable: a record written but not yet fsync'd could vanish in a
        // power loss, and its sequence number be reused by a write the cursor would then skip.
        let durable = self.log.durable_seq();
        let hint = *self.read_at.lock().unwrap_or_else(|e| e.into_inner());
        let take = |len| self.run_buffers.take_replacing(len);
        let next_at = wal::read_streaming_into(&wal_dir, cursor + 1, durable, hint, take, |r| {
            bytes += r.payload.len();
            first.get_or_insert(r.seq);
            last = r.seq;
            payloads.push((r.seq, r.payload));
            bytes < MAX_RUN_BYTES
        })?;
        let Some(first) = first else {
            *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = next_at;
            return Ok(0);
        };
        let mut groups: BTreeMap<(&str, &str, i64), Lines<'_>> = BTreeMap::new();
        let mut spare: Vec<Lines<'_>> =
            std::mem::take(&mut *self.line_lists.lock().unwrap_or_else(|e| e.into_inner()));
        // Each record decoded once, here; one that does not decode is skipped (the cursor
        // still moves past it).
        let runs = payloads.iter().flat_map(|(seq, payload)| {
            let runs = record::raw_runs(payload).unwrap_or_else(|| {
                tracing::error!(seq = *seq, "skipping an undecodable log record");
                Vec::new()
            });
            runs.into_iter().map(move |run| (*seq, run))
        });
        for (seq, run) in runs {
            let (db, rp, lp) = (run.db, run.rp, run.lp);
            if is_dropped(&dropped, db, seq) {
                continue;
            }
            let mut current: Option<(i64, &mut Lines<'_>)> = None;
            for line in stored_lines(lp) {
                let Some(t) = line_time(line) else {
                    continue;
                };
                let start = t.div_euclid(partition) * partition;
                // Lines of one record mostly share a partition: look the group up only on change.
                let group = match current.take() {
                    Some((s, g)) if s == start => g,
                    _ => groups
                        .entry((db, rp, start))
                        .or_insert_with(|| spare.pop().unwrap_or_default()),
                };
                group.push((t, line));
                current = Some((start, group));
            }
        }
        let data = self.root.join("data");
        // Retention (on the merger thread) does not remove a partition while chunks are
        // written into it.
        let layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let mut points = 0;
        let mut touched: BTreeSet<(&str, &str)> = BTreeSet::new();
        for ((db, rp, start), mut lines) in groups {
            // Each record's lines mostly come in time order: a sort that finds and merges
            // such runs does less work than one that does not look for them.
            lines.sort();
            touched.insert((db, rp));
            let dir = data
                .join(names::encode("database", db).map_err(io::Error::other)?)
                .join(names::encode("retention policy", rp).map_err(io::Error::other)?)
                .join(start.to_string());
            // Stored: most of a run is decoded again by its first merge, which compresses it.
            write_chunk(&dir, first, last, Written::Run, |w| {
                lines.iter().try_for_each(|(t, line)| w.line(*t, line))
            })?;
            points += lines.len() as u64;
            spare.push(lines);
        }
        // Measurements files before the cursor moves: the names of compacted data are recorded.
        for (db, rp) in touched {
            let dir = data
                .join(names::encode("database", db).map_err(io::Error::other)?)
                .join(names::encode("retention policy", rp).map_err(io::Error::other)?);
            let known = self
                .catalog()
                .get(&(db.to_owned(), rp.to_owned()))
                .cloned()
                .unwrap_or_default();
            let path = dir.join("measurements");
            let on_disk: BTreeSet<String> = fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            if !known.is_subset(&on_disk) {
                let all: BTreeSet<&String> = known.iter().chain(on_disk.iter()).collect();
                let text: String = all.iter().map(|m| format!("{m}\n")).collect();
                write_atomic(&path, text.as_bytes())?;
            }
        }
        drop(layout);
        write_atomic(&cursor_path, last.to_string().as_bytes())?;
        *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = next_at;
        // Caught up (the next run may be a while): do not hold its memory. Otherwise keep as
        // many line lists as a run mostly has partitions.
        let caught_up = bytes < MAX_RUN_BYTES / 2;
        spare.truncate(if caught_up { 0 } else { 2 });
        *self.line_lists.lock().unwrap_or_else(|e| e.into_inner()) =
            spare.into_iter().map(unborrowed).collect();
        payloads
            .into_iter()
            .for_each(|(_, payload)| self.run_buffers.give(payload));
        if caught_up {
            self.run_buffers.clear();
        }
        self.pending_bytes
            .fetch_sub((bytes as u64).min(self.pending_bytes()), Ordering::Relaxed);
        *self.drain.lock().unwrap_or_else(|e| e.into_inner()) = Some((bytes as u64, started));
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .compacted_points
            .fetch_add(points, Ordering::Relaxed);
        tracing::debug!(
            first,
            last,
            points,
            ms = started.elapsed().as_millis() as u64,
            "compacted"
        );
        Ok(points)
    }

    /// Trims the log, merges partitions with many chunks, drops expired partitions. Skipped
    /// while an `export` holds the readers lock (it reads the files these steps remove).
    pub(crate) fn maintain(&self) -> io::Result<()> {
        let (_, cursor_path, readers_path) = paths(&self.options.data_dir);
        let readers = crate::durable::create_file(
            &readers_path,
            OpenOptions::new().truncate(false).write(true),
        )?;
        if readers.try_lock().is_err() {
            return Ok(());
        }
        let cursor = read_cursor(&cursor_path)?;
        self.log.remove_before(cursor + 1)?;
        let data = self.root.join("data");
        let horizon = self.options.retention.horizon(now_ns());
        let span = self.options.partition.as_nanos() as i64;
        for (db, rp, start, dir) in partitions(&data)? {
            if start.saturating_add(span) <= horizon {
                let _layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
                fs::remove_dir_all(&dir)?;
                crate::durable::sync_dir(dir.parent().unwrap_or(&data))?;
                self.stats
                    .expired_partitions
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(db, rp, partition = start, "dropped an expired partition");
                continue;
            }
            let (mut live, _) = live_chunks(chunks(&dir)?);
            // Only chunks of records the cursor has passed: a compaction run still in progress
            // (on the compactor thread) may have written some past it, which recovery removes
            // after a crash; merged with older data, they would take it with them.
            live.retain(|c| c.last <= cursor);
            let closed = start.saturating_add(span) < now_ns();
            // A settled partition is merged into one compressed chunk (a chunk is opened to
            // see whether it is stored only for a closed partition).
            let whole = || {
                live.len() > 1
                    || live
                        .first()
                        .is_some_and(|c| blocks::first_stored(&c.path).unwrap_or(false))
            };
            if closed && whole() && settled(&live, self.options.settle) {
                self.merge(&dir, &live)?;
            } else if let Some(range) = merge_range(&live) {
                self.merge(&dir, &live[range])?;
            }
        }
        drop(readers);
        Ok(())
    }

    /// Merges `inputs` (see [`merge_chunks`]) and counts what was copied and merged.
    fn merge(&self, dir: &Path, inputs: &[Chunk]) -> io::Result<()> {
        let (copied, merged) = merge_chunks(dir, inputs)?;
        self.stats.merged_bytes.fetch_add(merged, Ordering::Relaxed);
        self.stats.copied_bytes.fetch_add(copied, Ordering::Relaxed);
        Ok(())
    }
}

/// Merges `inputs`, chunks of one partition consecutive in log order, into one and removes
/// them: blocks whose time range overlaps no other input's are copied, the rest decoded and
/// merged. Returns the compressed bytes (copied, merged).
fn merge_chunks(dir: &Path, inputs: &[Chunk]) -> io::Result<(u64, u64)> {
    let first = inputs.iter().map(|c| c.first).min().unwrap_or(0);
    let last = inputs.iter().map(|c| c.last).max().unwrap_or(0);
    let clusters = clusters(inputs)?;
    let (mut copied, mut decoded) = (0u64, 0u64);
    let merged = write_chunk(dir, first, last, Written::Merge, |w| {
        for cluster in clusters {
            if let [span] = &cluster[..] {
                if span.copy {
                    w.raw(&inputs[span.input].path, span.offset, span.size)?;
                    copied += span.size;
                    continue;
                }
            }
            let mut lines = Vec::with_capacity(cluster.len());
            for span in &cluster {
                decoded += span.size;
                let path = &inputs[span.input].path;
                lines.push(LineReader::range(path, span.offset, span.size)?);
            }
            merge_lines(lines, w)?;
        }
        Ok(())
    })?;
    // A chunk compressed alone (a settled partition's one stored chunk) was replaced by the
    // rename: it is the output, not an input to remove.
    for c in inputs.iter().filter(|c| c.path != merged) {
        fs::remove_file(&c.path)?;
    }
    crate::durable::sync_dir(dir)?;
    Ok((copied, decoded))
}

#[cfg(test)]
mod tiering {
    use super::*;
    use std::io::Write;

    /// Writes a chunk of lines `cpu,src=NAME v=T T` for the times given, in blocks of about
    /// 10 lines; `plain` writes it as one gzip member without an index.
    fn chunk_of(dir: &Path, seq: u64, name: &str, times: &[i64], plain: bool) -> Chunk {
        let path = dir.join(chunk_name(seq, seq));
        let mut times = times.to_vec();
        times.sort_unstable();
        let lines = times
            .iter()
            .map(|t| (*t, format!("cpu,src={name} v={t} {t}")));
        let file = File::create(&path).unwrap();
        if plain {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            for (_, l) in lines {
                writeln!(gz, "{l}").unwrap();
            }
            gz.finish().unwrap();
        } else {
            let mut w = BlockWriter::with_block_bytes(file, 250, false);
            for (t, l) in lines {
                w.line(t, l.as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        Chunk {
            first: seq,
            last: seq,
            path,
        }
    }

    fn read_all(path: &Path) -> Vec<String> {
        ChunkLines::open(path)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect()
    }

    fn sorted_union(chunks: &[&Chunk]) -> Vec<String> {
        let mut all: Vec<(i64, String)> = chunks
            .iter()
            .flat_map(|c| ChunkLines::open(&c.path).unwrap().map(Result::unwrap))
            .collect();
        all.sort();
        all.into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn a_merge_copies_blocks_that_overlap_nothing_and_merges_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let times = |r: std::ops::Range<i64>| r.collect::<Vec<_>>();
        // In time order, then a late chunk overlapping the middle of the second one, sharing
        // boundary times with it.
        let a = chunk_of(dir.path(), 1, "a", &times(0..100), false);
        let b = chunk_of(dir.path(), 2, "b", &times(100..200), false);
        let c = chunk_of(dir.path(), 3, "c", &times(150..160), false);
        let expected = sorted_union(&[&a, &b, &c]);
        let (copied, merged) =
            merge_chunks(dir.path(), &[a.clone(), b.clone(), c.clone()]).unwrap();
        assert!(copied > 0 && merged > 0, "copied {copied}, merged {merged}");
        let (live, covered) = live_chunks(chunks(dir.path()).unwrap());
        assert!(covered.is_empty());
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!((live[0].first, live[0].last), (1, 3));
        assert_eq!(read_all(&live[0].path), expected);
        // The output is indexed too, its blocks in order and apart.
        let index = blocks::index(&live[0].path).unwrap().expect("an index");
        assert!(index.windows(2).all(|w| w[0].tmax < w[1].tmin), "{index:?}");
        // Only the blocks around 150..160 were decoded: most bytes were copied.
        assert!(copied > 3 * merged, "copied {copied}, merged {merged}");
    }

    #[test]
    fn a_merge_compresses_stored_blocks_and_never_copies_them() {
        let dir = tempfile::tempdir().unwrap();
        let stored = |seq: u64, r: std::ops::Range<i64>| {
            let c = chunk_of(dir.path(), seq, "s", &[], false);
            let mut w = BlockWriter::with_block_bytes(File::create(&c.path).unwrap(), 250, true);
            for t in r {
                w.line(t, format!("cpu,src=s v={t} {t}").as_bytes())
                    .unwrap();
            }
            w.finish().unwrap();
            c
        };
        // Apart in time: compressed blocks would all be copied.
        let (a, b) = (stored(1, 0..100), stored(2, 100..200));
        let expected = sorted_union(&[&a, &b]);
        let plain: u64 = [&a, &b]
            .iter()
            .map(|c| fs::metadata(&c.path).unwrap().len())
            .sum();
        let (copied, merged) = merge_chunks(dir.path(), &[a, b]).unwrap();
        assert_eq!((copied, merged), (0, plain));
        let (live, _) = live_chunks(chunks(dir.path()).unwrap());
        assert_eq!(read_all(&live[0].path), expected);
        let index = blocks::index(&live[0].path).unwrap().expect("an index");
        assert!(index.iter().all(|b| !b.stored), "{index:?}");
        assert!(fs::metadata(&live[0].path).unwrap().len() < plain);
    }

    #[test]
    fn a_merge_with_an_input_cut_short_fails_and_keeps_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let a = chunk_of(dir.path(), 1, "a", &(0..2000).collect::<Vec<_>>(), false);
        let b = chunk_of(dir.path(), 2, "b", &(1000..3000).collect::<Vec<_>>(), false);
        let before_a = read_all(&a.path);
        // A torn tail: the second input's last block ends early.
        let len = fs::metadata(&b.path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&b.path)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        assert!(merge_chunks(dir.path(), &[a.clone(), b.clone()]).is_err());
        // Nothing was removed or replaced: both inputs are live, the first one whole.
        let (live, _) = live_chunks(chunks(dir.path()).unwrap());
        assert_eq!(live, vec![a.clone(), b.clone()]);
        assert_eq!(read_all(&a.path), before_a);
    }

    #[test]
    fn a_merge_does_not_bring_back_a_removed_partition() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("db/autogen/0");
        let fill = |w: &mut BlockWriter<BufWriter<File>>| w.line(1, b"m v=1 1");
        assert!(write_chunk(&gone, 1, 2, Written::Merge, fill).is_err());
        assert!(!gone.exists());
        // A compaction run makes the directories it needs.
        let path = write_chunk(&gone, 1, 2, Written::Run, fill).unwrap();
        assert_eq!(read_all(&path), ["m v=1 1"]);
    }

    #[test]
    fn a_chunk_line_that_is_not_utf8_is_an_error_for_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(chunk_name(1, 1));
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"m v=1 1\nm v=\xff 2\nm v=3 3\n").unwrap();
        gz.finish().unwrap();
        let mut lines = ChunkLines::open(&path).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), (1, "m v=1 1".to_owned()));
        let e = lines.next().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(lines.next().unwrap().unwrap(), (3, "m v=3 3".to_owned()));
        assert!(lines.next().is_none());
    }

    proptest::proptest! {
        /// Inputs overlapping in time, with equal times and equal lines across inputs, merge
        /// into their sorted union (the scan, the runs taken without one, and the ties).
        #[test]
        fn merged_lines_are_the_sorted_union_of_the_inputs(
            inputs in proptest::collection::vec(
                proptest::collection::vec((0i64..40, 0u8..3), 0..60),
                1..7,
            ),
        ) {
            let texts: Vec<Vec<(i64, String)>> = inputs
                .iter()
                .map(|points| {
                    let mut lines: Vec<(i64, String)> = points
                        .iter()
                        .map(|(t, s)| (*t, format!("m,s={s} v=1 {t}")))
                        .collect();
                    lines.sort();
                    lines
                })
                .collect();
            let readers = texts
                .iter()
                .map(|lines| {
                    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
                    let mut r = LineReader::new(Box::new(io::Cursor::new(text.into_bytes())));
                    r.advance().unwrap();
                    r
                })
                .collect();
            let mut w = BlockWriter::with_block_bytes(Vec::new(), 200, true);
            merge_lines(readers, &mut w).unwrap();
            let written = w.finish().unwrap();
            let mut merged = String::new();
            if !written.is_empty() {
                flate2::read::MultiGzDecoder::new(&written[..])
                    .read_to_string(&mut merged)
                    .unwrap();
            }
            let mut want: Vec<(i64, String)> = texts.into_iter().flatten().collect();
            want.sort();
            let want: Vec<String> = want.into_iter().map(|(_, l)| l).collect();
            proptest::prop_assert_eq!(merged.lines().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn an_emptied_line_list_keeps_its_allocation() {
        let text = b"m v=1 1".to_vec();
        let mut lines: Lines<'_> = Vec::with_capacity(1_000);
        lines.push((1, &text[..]));
        let at = lines.as_ptr().cast::<u8>();
        let kept = unborrowed(lines);
        assert!(kept.is_empty());
        assert_eq!(kept.capacity(), 1_000);
        assert_eq!(kept.as_ptr().cast::<u8>(), at);
    }

    #[test]
    fn stored_lines_are_split_as_str_lines_splits_them() {
        for text in [
            "",
            "\n",
            "a 1\n",
            "a 1\nb 2\n",
            "a 1\nb 2",
            "a 1",
            "a 1\n\nb 2\n",
        ] {
            let lines: Vec<&[u8]> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::as_bytes)
                .collect();
            assert_eq!(
                stored_lines(text.as_bytes()).collect::<Vec<_>>(),
                lines,
                "{text:?}"
            );
        }
    }

    #[test]
    fn chunks_in_time_order_merge_by_copying_only() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<Chunk> = (0..4)
            .map(|i| {
                let times: Vec<i64> = (i * 50..i * 50 + 50).collect();
                chunk_of(dir.path(), i as u64 + 1, "x", &times, false)
            })
            .collect();
        let expected = sorted_union(&inputs.iter().collect::<Vec<_>>());
        let size: u64 = inputs
            .iter()
            .map(|c| fs::metadata(&c.path).unwrap().len())
            .sum();
        // Each input's blocks overlap nothing: one copy per input, not one per block.
        let pieces = clusters(&inputs).unwrap();
        assert_eq!(pieces.len(), 4);
        assert!(pieces.iter().all(|c| c.len() == 1 && c[0].copy));
        let (copied, merged) = merge_chunks(dir.path(), &inputs).unwrap();
        assert_eq!((copied, merged), (size, 0));
        let (live, _) = live_chunks(chunks(dir.path()).unwrap());
        assert_eq!(read_all(&live[0].path), expected);
    }

    #[test]
    fn a_chunk_without_an_index_is_decoded_and_merged_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let a = chunk_of(dir.path(), 1, "a", &[5, 1, 9, 3], true);
        let b = chunk_of(dir.path(), 2, "b", &(0..40).collect::<Vec<_>>(), false);
        let c = chunk_of(dir.path(), 3, "c", &[1000, 1001], false);
        let expected = sorted_union(&[&a, &b, &c]);
        let (_, merged) = merge_chunks(dir.path(), &[a, b, c]).unwrap();
        assert!(merged > 0);
        let (live, _) = live_chunks(chunks(dir.path()).unwrap());
        assert_eq!(read_all(&live[0].path), expected);
        assert!(blocks::index(&live[0].path).unwrap().is_some());
    }

    #[test]
    fn merges_pick_the_newest_tier_and_leave_big_old_chunks_alone() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |i: u64, size: usize| {
            let path = dir.path().join(chunk_name(i, i));
            fs::write(&path, vec![b'x'; size]).unwrap();
            Chunk {
                first: i,
                last: i,
                path,
            }
        };
        const N: u64 = MERGE_AT as u64;
        let n = MERGE_AT;
        // One big merged chunk, then N-1 small new ones: not yet a full tier.
        let mut live = vec![chunk(1, 100_000)];
        live.extend((2..N + 1).map(|i| chunk(i, 1000)));
        assert_eq!(merge_range(&live), None);
        // An Nth small one: the small ones merge, the big one is not rewritten.
        live.push(chunk(N + 1, 1000));
        assert_eq!(merge_range(&live), Some(1..n + 1));
        // Chunks of similar size all join the tier.
        let even: Vec<Chunk> = (1..=N).map(|i| chunk(i + 100, 1000)).collect();
        assert_eq!(merge_range(&even), Some(0..n));
        // A chunk merged from a tier is not rewritten with the next tier of small chunks (it
        // was while it stayed under twice their sum), only with chunks of its own size.
        let mut live = vec![chunk(200, 8000)];
        live.extend((201..201 + N).map(|i| chunk(i, 1000)));
        assert_eq!(merge_range(&live), Some(1..n + 1));
        let mut live: Vec<Chunk> = (300..300 + N - 1).map(|i| chunk(i, 8000)).collect();
        live.extend((400..400 + N).map(|i| chunk(i, 1000)));
        assert_eq!(merge_range(&live), Some(n - 1..2 * n - 1));
        live.truncate(n - 1);
        live.push(chunk(500, 8000));
        assert_eq!(merge_range(&live), Some(0..n));
        // Stored chunks (compaction runs) are a tier of their own, whatever their size against
        // the compressed chunks before them.
        let stored = |i: u64| {
            let c = chunk(i, 0);
            let mut w = BlockWriter::stored(File::create(&c.path).unwrap());
            w.line(1, &[b'x'; 3000]).unwrap();
            w.finish().unwrap();
            c
        };
        let mut live = vec![chunk(600, 2000)];
        live.extend((601..600 + N).map(stored));
        assert_eq!(merge_range(&live), None);
        live.push(stored(600 + N));
        assert_eq!(merge_range(&live), Some(1..n + 1));
        // A full tier of compressed chunks is merged though runs wait after it (under a steady
        // load there nearly always are some); the runs are left for their own tier.
        let mut live = vec![chunk(700, 640_000)];
        live.extend((701..701 + N).map(|i| chunk(i, 8000)));
        live.extend((800..803).map(stored));
        assert_eq!(merge_range(&live), Some(1..n + 1));
        live.truncate(n);
        live.extend((800..803).map(stored));
        assert_eq!(merge_range(&live), None);
    }
}

#[cfg(test)]
mod line_reader {
    use super::LineReader;
    use std::io::{self, Read};

    /// A reader that hands out at most `step` bytes per read, so the points of a text fall
    /// across the reader's refills at every offset.
    struct Trickle {
        text: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.text.len() - self.at);
            buf[..n].copy_from_slice(&self.text[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn points(text: &[u8], step: usize) -> Vec<(i64, Vec<u8>)> {
        let reader = Trickle {
            text: text.to_vec(),
            at: 0,
            step,
        };
        let mut lines = LineReader::new(Box::new(reader));
        let mut out = Vec::new();
        loop {
            lines.advance().unwrap();
            if lines.done {
                return out;
            }
            out.push((lines.time, lines.line().to_vec()));
        }
    }

    /// Points of every length, string values holding LFs and quotes, empty lines, a point
    /// longer than the read buffer and a last point without its LF: read in steps that put
    /// the refills everywhere, the reader hands out what the encoder's scanner finds.
    #[test]
    fn points_across_refills_and_longer_than_the_buffer() {
        let mut text = Vec::new();
        for i in 0..3000i64 {
            let pad = "x".repeat((i as usize * 37) % 300);
            let point = match i % 5 {
                0 => format!("m,t={pad} v={i}i {i}\n"),
                1 => format!("m s=\"a\nb{pad}\\\"\n\",v=1 {i}\n"),
                2 => "\n".to_owned(),
                3 => format!("m\\ n,t=\"q v=\"{pad}\" {i}\n"),
                _ => format!("m s=\"{pad}\" {i}\n"),
            };
            text.extend_from_slice(point.as_bytes());
        }
        let long = format!(
            "m s=\"{}\n{}\" 7\n",
            "y".repeat(100_000),
            "z".repeat(30_000)
        );
        text.extend_from_slice(long.as_bytes());
        text.extend_from_slice(b"m v=1 8");
        let want: Vec<(i64, Vec<u8>)> = crate::line_protocol::encoded_points(&text)
            .map(|(s, e)| (super::line_time(&text[s..e]).unwrap(), text[s..e].to_vec()))
            .collect();
        assert_eq!(want.len(), 3000 - 600 + 2);
        for step in [1 << 20, 65_536, 4096, 1000, 7] {
            assert!(points(&text, step) == want, "reads of {step} bytes");
        }
    }
}
