//! The durable log: segment files of checksummed, sequence-numbered records, appended with
//! group commit. It is the shared mechanism behind local buckets (and disk buffers).
//!
//! A record is `magic u32 | len u32 | crc32c u32 | seq u64 | payload`, little-endian, where the
//! CRC32C covers `seq` and the payload. Segments are named after their first sequence number
//! (`00000000000000000042.wal`) and rotate at `segment_bytes`.
//!
//! **Group commit.** One writer thread owns the active segment. It takes every append waiting in
//! its queue, writes them with one `write`, makes them durable with one `fdatasync`, and only then
//! answers each caller with its sequence number: an `Ok` from [`Log::append`] is the promise that
//! the record survives a crash. Appends that arrive during an fsync wait for the next one, so
//! concurrent writers share fsyncs. The directory is fsync'd after a segment is created or
//! removed, so the file itself survives too.
//!
//! **Failures.** A failed write or fsync answers every append of the group with an error (the
//! caller answers 503; nothing is acknowledged) and the segment is cut back to its last durable
//! length and abandoned: the next group starts a new segment rather than trusting a file whose
//! fsync failed. When space returns, appends succeed again.
//!
//! **Recovery** ([`Log::open`], and read-only [`read_from`]) scans every segment: a torn tail of
//! the last segment is truncated; a corrupt record elsewhere is skipped and counted (scanning
//! resumes at the next valid record); a missing segment and an empty file are tolerated. Opening
//! never fails because of the contents of the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::oneshot;

const MAGIC: u32 = 0x3147_4C48; // "HLG1" little-endian
const HEADER: usize = 4 + 4 + 4 + 8;
/// The largest record accepted; larger lengths in a header mean corruption.
pub const MAX_RECORD: usize = 256 << 20;
/// The most bytes one group commit writes before it fsyncs.
const MAX_GROUP_BYTES: usize = 32 << 20;

/// A log failure; appends answer with it and nothing is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// Writing or fsyncing failed (disk full, I/O error).
    #[error("cannot make the write durable in {dir}: {message}")]
    Io {
        /// The log directory.
        dir: String,
        /// The OS error.
        message: String,
        /// Whether it was a full disk.
        disk_full: bool,
    },
    /// The record is larger than [`MAX_RECORD`].
    #[error("record of {0} bytes is larger than the log's limit")]
    TooLarge(usize),
    /// The writer thread has stopped.
    #[error("the log is closed")]
    Closed,
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records found intact.
    pub records: u64,
    /// Corrupt records skipped.
    pub corrupt: u64,
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// Empty segment files removed.
    pub empty_segments: u64,
    /// Gaps in sequence numbers between segments (a segment lost).
    pub gaps: u64,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Segment files in `dir`, sorted by first sequence number.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

use crate::durable::sync_dir;

/// The header of record `seq` holding `payload`.
fn header(seq: u64, payload: &[u8]) -> [u8; HEADER] {
    let mut crc = crc32c::crc32c(&seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h
}

fn crc_ok(header: &[u8], seq: u64, payload: &[u8]) -> bool {
    let stored = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload) == stored
}

/// A record header's payload length and sequence number; `None` if it is not a header (wrong
/// magic, impossible length).
fn parse_header(h: &[u8]) -> Option<(usize, u64)> {
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let len = word(4) as usize;
    if word(0) != MAGIC || len > MAX_RECORD {
        return None;
    }
    Some((
        len,
        u64::from_le_bytes(h[12..20].try_into().expect("8 bytes")),
    ))
}

/// Tries to decode a record at `at`; `None` if there is no valid record there.
fn decode(buf: &[u8], at: usize) -> Option<(Record, usize)> {
    let h = buf.get(at..at + HEADER)?;
    let (len, seq) = parse_header(h)?;
    let payload = buf.get(at + HEADER..at + HEADER + len)?;
    if !crc_ok(h, seq, payload) {
        return None;
    }
    Some((
        Record {
            seq,
            payload: payload.to_vec(),
        },
        at + HEADER + len,
    ))
}

/// Scans records in order, handing each (with its offset) to `each` until it returns false;
/// returns the corrupt stretches skipped and the offset just past the last valid record seen.
fn scan_with(buf: &[u8], mut each: impl FnMut(Record, usize) -> bool) -> (u64, usize) {
    let mut corrupt = 0;
    let mut at = 0;
    let mut end = 0;
    while at < buf.len() {
        if let Some((r, next)) = decode(buf, at) {
            let start = at;
            at = next;
            end = next;
            if !each(r, start) {
                break;
            }
            continue;
        }
        // Not a valid record here: look for the next one that validates.
        let magic = MAGIC.to_le_bytes();
        let mut probe = at + 1;
        let mut found = None;
        while let Some(i) = memchr::memmem::find(&buf[probe..], &magic) {
            if decode(buf, probe + i).is_some() {
                found = Some(probe + i);
                break;
            }
            probe += i + 1;
        }
        match found {
            Some(next) => {
                corrupt += 1;
                at = next;
            }
            None => break, // nothing valid after this point: a torn tail
        }
    }
    (corrupt, end)
}

fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads every intact record with `seq >= from`, without writing anything (safe beside a running
/// writer: a record is visible once its group commit completed).
///
/// # Errors
/// The directory cannot be listed or a segment cannot be read.
pub fn read_from(dir: &Path, from: u64, mut each: impl FnMut(Record)) -> io::Result<Recovery> {
    read_while(dir, from, |r| {
        each(r);
        true
    })
}

/// Like [`read_from`], but stops at the first record for which `each` returns false.
///
/// # Errors
/// The directory cannot be listed or a segment cannot be read.
pub fn read_while(
    dir: &Path,
    from: u64,
    mut each: impl FnMut(Record) -> bool,
) -> io::Result<Recovery> {
    let mut stats = Recovery::default();
    let segs = segments(dir)?;
    for (i, (_, path)) in segs.iter().enumerate() {
        // Skip whole segments that end before `from`.
        if segs.get(i + 1).is_some_and(|(next, _)| *next <= from) {
            continue;
        }
        let buf = match read_file(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // removed meanwhile
            Err(e) => return Err(e),
        };
        let mut go_on = true;
        let (corrupt, _) = scan_with(&buf, |r, _| {
            if r.seq < from {
                return true;
            }
            stats.records += 1;
            go_on = each(r);
            go_on
        });
        stats.corrupt += corrupt;
        if !go_on {
            break;
        }
    }
    Ok(stats)
}

/// A payload to append: shared, so the writer and a buffer's cache hold one copy; its buffer
/// goes back to the [`crate::pool`] when the last holder lets go.
pub type Payload = Arc<crate::pool::Pooled>;

/// A place in the log: (first sequence number of a segment, byte offset in it).
pub type Position = (u64, u64);

/// Reads records with `from <= seq <= until` in order, streaming from `hint` when it is given
/// (the position returned by the previous call), until `each` returns false, a record past
/// `until` comes, or the log ends. Returns the position just past the last record handed out
/// (before a record past `until`; at the end, past the last complete record), for the next call.
///
/// This is the fast path for a consumer that keeps reading where it stopped; on anything
/// unexpected (the hint's segment is gone, a record that does not validate) it falls back to
/// [`read_while`], which scans and skips corruption, and returns no position.
///
/// # Errors
/// The directory cannot be listed or a segment cannot be read.
pub fn read_streaming(
    dir: &Path,
    from: u64,
    until: u64,
    hint: Option<Position>,
    each: impl FnMut(Record) -> bool,
) -> io::Result<Option<Position>> {
    read_streaming_into(dir, from, until, hint, crate::pool::take, each)
}

/// [`read_streaming`], each payload read into a buffer from `take` (given the payload's
/// length).
///
/// # Errors
/// As [`read_streaming`].
pub fn read_streaming_into(
    dir: &Path,
    from: u64,
    until: u64,
    hint: Option<Position>,
    mut take: impl FnMut(usize) -> Vec<u8>,
    mut each: impl FnMut(Record) -> bool,
) -> io::Result<Option<Position>> {
    let mut each = move |r: Record| r.seq <= until && each(r);
    let segs = segments(dir)?;
    let start = match hint {
        Some((first, offset)) if segs.iter().any(|(f, _)| *f == first) => (first, offset),
        _ => match segs.iter().rev().find(|(f, _)| *f <= from.max(1)) {
            Some((first, _)) => (*first, 0),
            None => match segs.first() {
                Some((first, _)) => (*first, 0),
                None => return Ok(None),
            },
        },
    };
    let mut last_seq = from.saturating_sub(1);
    let mut end = None;
    for (first, path) in segs.iter().filter(|(f, _)| *f >= start.0) {
        let offset = if *first == start.0 { start.1 } else { 0 };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(offset))?;
        // Small records come through the buffer; a payload larger than it is read straight into
        // its own buffer (no second copy).
        let mut reader = io::BufReader::with_capacity(64 << 10, file);
        let mut at = offset;
        loop {
            let mut header = [0u8; HEADER];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break, // next segment
                Err(e) => return Err(e),
            }
            let Some((len, seq)) = parse_header(&header) else {
                return slow(dir, last_seq + 1, each);
            };
            if seq > until {
                return Ok(Some((*first, at))); // left for a later call, which starts here
            }
            // Read into spare capacity: no zeroing of a buffer about to be overwritten.
            let mut payload = take(len);
            if (&mut reader).take(len as u64).read_to_end(&mut payload)? < len {
                break; // a record being written: stop here
            }
            if !crc_ok(&header, seq, &payload) {
                return slow(dir, last_seq + 1, each);
            }
            let record = Record { seq, payload };
            at += (HEADER + len) as u64;
            if record.seq < from {
                continue;
            }
            last_seq = record.seq;
            if !each(record) {
                return Ok(Some((*first, at)));
            }
        }
        end = Some((*first, at));
    }
    Ok(end)
}

fn slow(dir: &Path, from: u64, each: impl FnMut(Record) -> bool) -> io::Result<Option<Position>> {
    read_while(dir, from, each)?;
    Ok(None)
}

/// Called on the writer thread once a record is durable, with its sequence number and where it
/// starts; see [`Log::append_then`].
pub type OnDurable = Box<dyn FnOnce(u64, Position) + Send>;

enum Request {
    Append {
        payload: Payload,
        on_durable: Option<OnDurable>,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
}

/// The writing side of a log: appends with group commit. Dropping it stops the writer thread
/// once every queued append has been answered.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    tx: mpsc::Sender<Request>,
    /// The highest sequence number made durable.
    durable: Arc<AtomicU64>,
    /// Group commits (fsyncs) done.
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

/// Options for [`Log::open`].
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Rotate to a new segment past this size.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
        }
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering it, and starts the writer thread.
    ///
    /// Hands every intact record, in sequence order, to `each` with where it starts (for the
    /// caller to replay), one segment at a time: recovery holds one segment in memory, however
    /// long the log.
    ///
    /// # Errors
    /// Only I/O errors on the directory itself (cannot create, list, or open a segment); never
    /// the contents of the log.
    pub fn open(
        dir: &Path,
        options: LogOptions,
        mut each: impl FnMut(Record, Position),
    ) -> io::Result<(Log, Recovery)> {
        crate::durable::create_dir_all(dir)?;
        let mut stats = Recovery::default();
        let segs = segments(dir)?;
        let mut last_seq: Option<u64> = None;
        for (i, (first, path)) in segs.iter().enumerate() {
            let buf = read_file(path)?;
            if buf.is_empty() {
                fs::remove_file(path)?;
                stats.empty_segments += 1;
                continue;
            }
            let prev = last_seq;
            let mut first_here = None;
            let (corrupt, end) = scan_with(&buf, |r, at| {
                first_here.get_or_insert(r.seq);
                last_seq = Some(r.seq);
                stats.records += 1;
                each(r, (*first, at as u64));
                true
            });
            stats.corrupt += corrupt;
            if let (Some(prev), Some(seq)) = (prev, first_here) {
                if seq > prev + 1 {
                    stats.gaps += 1;
                }
            }
            if i == segs.len() - 1 && end < buf.len() {
                // A torn tail: cut it so appends continue from a clean end.
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(end as u64)?;
                f.sync_all()?;
                stats.truncated_bytes += (buf.len() - end) as u64;
            }
        }
        if stats.empty_segments > 0 {
            sync_dir(dir)?;
        }
        let next_seq = last_seq.map_or(1, |s| s + 1);
        let durable = Arc::new(AtomicU64::new(next_seq - 1));
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            options,
            file: None,
            segment: 0,
            file_len: 0,
            next_seq,
            durable: Arc::clone(&durable),
            commits: Arc::clone(&commits),
        };
        std::thread::Builder::new()
            .name("heliograph-wal".into())
            .spawn(move || writer.run(rx))?;
        Ok((
            Log {
                dir: dir.to_path_buf(),
                tx,
                durable,
                commits,
            },
            stats,
        ))
    }

    /// Appends `payload`; resolves once it is durable (or failed), with its sequence number.
    ///
    /// # Errors
    /// [`LogError`]: the write was not made durable and must not be acknowledged.
    pub async fn append(&self, payload: impl Into<Payload>) -> Result<u64, LogError> {
        self.send(payload.into(), None).await
    }

    /// [`Log::append`], calling `on_durable` with the record's sequence number and where it
    /// starts once it is durable: on the writer thread, before the append resolves, and for
    /// the records of a log in sequence order. (Appending tasks resume in any order: a queue
    /// filled as they resume could hold records out of order.) Not called when the append
    /// fails.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub async fn append_then(
        &self,
        payload: impl Into<Payload>,
        on_durable: impl FnOnce(u64, Position) + Send + 'static,
    ) -> Result<u64, LogError> {
        self.send(payload.into(), Some(Box::new(on_durable))).await
    }

    async fn send(&self, payload: Payload, on_durable: Option<OnDurable>) -> Result<u64, LogError> {
        if payload.len() > MAX_RECORD {
            return Err(LogError::TooLarge(payload.len()));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append {
                payload,
                on_durable,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// Group commits (fsyncs) done since open.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The highest sequence number made durable so far.
    pub fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Removes segments whose records all have `seq < before` (never the newest segment).
    ///
    /// # Errors
    /// I/O errors listing or removing.
    pub fn remove_before(&self, before: u64) -> io::Result<usize> {
        let segs = segments(&self.dir)?;
        let mut removed = 0;
        for w in segs.windows(2) {
            // A segment ends where the next begins.
            if w[1].0 <= before {
                fs::remove_file(&w[0].1)?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes all of `slices` to `out`, vectored, at most IOV_MAX slices a call; the writer takes
/// what it takes (`Write::write_all_vectored` is not stable yet). Slices must not be empty
/// (an empty first slice would read as a write of nothing).
pub(crate) fn write_all_vectored(
    out: &mut impl Write,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(&slices[..slices.len().min(1024)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct Writer {
    dir: PathBuf,
    options: LogOptions,
    /// The active segment, or `None` before the first append or after a failure.
    file: Option<File>,
    /// The active segment's first sequence number (its name).
    segment: u64,
    /// Durable length of the active segment.
    file_len: u64,
    next_seq: u64,
    durable: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        // A group: each record's header beside its payload, written with one vectored write
        // (no copy of the payloads into a group buffer).
        let mut group: Vec<([u8; HEADER], Payload)> = Vec::new();
        let mut replies = Vec::new();
        // After a commit, the first second without appends gives the group's freed memory back.
        let mut worked = false;
        loop {
            // (A wait too long for a deadline is a plain `recv`.)
            let wait = if worked {
                crate::memory::IDLE_AFTER
            } else {
                Duration::MAX
            };
            let first = match rx.recv_timeout(wait) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    crate::memory::release_thread();
                    worked = false;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            worked = true;
            group.clear();
            replies.clear();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(Request::Append {
                payload,
                on_durable,
                reply,
            }) = next.take()
            {
                bytes += HEADER + payload.len();
                group.push((
                    header(self.next_seq + group.len() as u64, &payload),
                    payload,
                ));
                replies.push((reply, on_durable));
                if bytes >= MAX_GROUP_BYTES {
                    break;
                }
                next = rx.try_recv().ok();
            }
            let result = self.commit(&group, bytes);
            self.commits.fetch_add(1, Ordering::Relaxed);
            // Sequence numbers of a failed group are not reused (a partial write of it may
            // remain in a segment that could not be cut back).
            let first_seq = self.next_seq;
            self.next_seq += group.len() as u64;
            if let Ok((segment, start)) = result {
                self.durable.store(self.next_seq - 1, Ordering::Release);
                // Each record of the group follows the one before it.
                let mut at = start;
                let records = replies.iter_mut().zip(&group).enumerate();
                for (i, ((_, on_durable), (_, payload))) in records {
                    if let Some(f) = on_durable.take() {
                        f(first_seq + i as u64, (segment, at));
                    }
                    at += (HEADER + payload.len()) as u64;
                }
            }
            for (i, (reply, _)) in replies.drain(..).enumerate() {
                let _ = reply.send(result.clone().map(|_| first_seq + i as u64));
            }
            // The group's payloads (up to MAX_GROUP_BYTES) are not kept until the next append.
            group.clear();
        }
    }

    /// Writes and fsyncs one group of `bytes` bytes; returns where it starts.
    fn commit(
        &mut self,
        group: &[([u8; HEADER], Payload)],
        bytes: usize,
    ) -> Result<Position, LogError> {
        let result = self.try_commit(group, bytes);
        if let Err(e) = &result {
            // Do not trust this segment again: cut it back to its durable length and start a
            // new one for the next group.
            if let Some(f) = self.file.take() {
                let _ = f.set_len(self.file_len);
                let _ = f.sync_all();
            }
            tracing::error!(dir = %self.dir.display(), error = %e, "log append failed; writes are refused until it succeeds");
        }
        result.map_err(|e| LogError::Io {
            dir: self.dir.display().to_string(),
            disk_full: e.raw_os_error() == Some(28),
            message: e.to_string(),
        })
    }

    fn try_commit(
        &mut self,
        group: &[([u8; HEADER], Payload)],
        bytes: usize,
    ) -> io::Result<Position> {
        if self.file.is_none() || self.file_len >= self.options.segment_bytes {
            let path = self.dir.join(segment_name(self.next_seq));
            let mut f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&path)?;
            let len = f.seek(SeekFrom::End(0))?;
            sync_dir(&self.dir)?;
            self.file = Some(f);
            self.segment = self.next_seq;
            self.file_len = len;
        }
        let start = (self.segment, self.file_len);
        let f = self.file.as_mut().expect("opened above");
        let mut slices: Vec<IoSlice<'_>> = group
            .iter()
            .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(p)])
            .collect();
        write_all_vectored(f, &mut slices)?;
        // The fsync that keeps the promise of every append in this group.
        f.sync_data()?;
        self.file_len += bytes as u64;
        Ok(start)
    }
}

#[cfg(test)]
mod tests;
