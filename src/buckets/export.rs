//! `heliograph export`: a bucket as line protocol, sorted by time, streamed.
//!
//! A reader beside the running agent, never a second writer. It takes the readers lock shared
//! (the compactor then leaves the log and chunks it reads in place), reads the compaction
//! cursor, and merges, partition by partition, the chunks up to the cursor with the log records
//! past it. Every write acknowledged before the export started is in one or the other. Memory
//! holds one line per chunk of the current partition, plus the uncompacted log records of the
//! bucket (bounded by `max_pending_bytes`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::compact::{
    chunks, is_dropped, live_chunks, load_dropped, partitions, ChunkLines, Merge, Source,
};
use super::{line_time, names, paths, read_cursor};
use crate::buffer::record;
use crate::wal;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// `[agent] data_dir`.
    pub data_dir: PathBuf,
    /// The database.
    pub db: String,
    /// The retention policy.
    pub rp: String,
    /// Points at or after this time (ns), if given.
    pub start: Option<i64>,
    /// Points before this time (ns), if given.
    pub end: Option<i64>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `start` is after `end`: nothing could be in the range.
    #[error("--start is after --end: nothing is in the range")]
    EmptyRange,
    /// No store in the data dir.
    #[error("no local buckets in {} (is this the agent's data_dir?)", .0.display())]
    NoStore(PathBuf),
    /// No such bucket.
    #[error("no bucket {db}/{rp}")]
    NoBucket {
        /// The db.
        db: String,
        /// The rp.
        rp: String,
    },
    /// Reading the store or writing the output failed.
    #[error("exporting")]
    Io(#[from] io::Error),
}

/// Streams the bucket to `out`; returns the points written.
///
/// # Errors
/// [`ExportError`]: an inverted range, no store, no bucket, or an I/O error.
pub fn export(req: &ExportRequest, out: &mut dyn Write) -> Result<u64, ExportError> {
    if let (Some(s), Some(e)) = (req.start, req.end) {
        if s > e {
            return Err(ExportError::EmptyRange);
        }
    }
    let (wal_dir, cursor_path, readers_path) = paths(&req.data_dir);
    let root = req.data_dir.join("buckets");
    if !root.join("data").is_dir() {
        return Err(ExportError::NoStore(req.data_dir.clone()));
    }
    let readers = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&readers_path)?;
    readers.lock_shared()?;
    let cursor = read_cursor(&cursor_path)?;
    let dropped = load_dropped(&root);
    let in_range = |t: i64| req.start.is_none_or(|s| t >= s) && req.end.is_none_or(|e| t < e);

    // The log past the cursor: this bucket's lines, by partition start.
    let mut tail: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    let mut found = false;
    let partition_of = partition_span(&root);
    wal::read_from(&wal_dir, cursor + 1, |r| {
        for run in record::runs(&r.payload).unwrap_or_default() {
            if run.db != req.db || run.rp != req.rp || is_dropped(&dropped, run.db, r.seq) {
                continue;
            }
            found = true;
            for (start, end) in crate::line_protocol::encoded_points(run.lp.as_bytes()) {
                let line = &run.lp[start..end];
                if let Some(t) = line_time(line.as_bytes()).filter(|t| in_range(*t)) {
                    tail.entry(partition_of(t))
                        .or_default()
                        .push((t, line.to_owned()));
                }
            }
        }
    })?;

    let bucket_dir = bucket_dir(&root, &req.db, &req.rp)?;
    let mut parts: BTreeMap<i64, Option<PathBuf>> = tail.keys().map(|k| (*k, None)).collect();
    if bucket_dir.is_dir() {
        found = true;
        for (db, rp, start, dir) in partitions(&root.join("data"))? {
            if db == req.db && rp == req.rp {
                parts.insert(start, Some(dir));
            }
        }
    }
    if !found {
        return Err(ExportError::NoBucket {
            db: req.db.clone(),
            rp: req.rp.clone(),
        });
    }
    let mut written = 0;
    let mut buf = io::BufWriter::with_capacity(1 << 16, out);
    for (start, dir) in parts {
        let mut sources: Vec<Source> = Vec::new();
        if let Some(dir) = dir {
            let (live, _) = live_chunks(chunks(&dir)?);
            for c in live.into_iter().filter(|c| c.last <= cursor) {
                sources.push(Box::new(ChunkLines::open(&c.path)?));
            }
        }
        if let Some(mut lines) = tail.remove(&start) {
            lines.sort();
            sources.push(Box::new(lines.into_iter().map(Ok)));
        }
        for item in Merge::new(sources) {
            let (t, line) = item?;
            if in_range(t) {
                buf.write_all(line.as_bytes())?;
                buf.write_all(b"\n")?;
                written += 1;
            }
        }
    }
    buf.flush()?;
    drop(readers);
    Ok(written)
}

fn bucket_dir(root: &Path, db: &str, rp: &str) -> io::Result<PathBuf> {
    let d = names::encode("database", db).map_err(io::Error::other)?;
    let r = names::encode("retention policy", rp).map_err(io::Error::other)?;
    Ok(root.join("data").join(d).join(r))
}

/// Maps a time to its partition start, using the partition span recorded by the store.
fn partition_span(root: &Path) -> impl Fn(i64) -> i64 {
    let span = std::fs::read_to_string(root.join("partition_ns"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(3_600_000_000_000);
    move |t| t.div_euclid(span) * span
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05Z`, `...05.123+02:00`) into ns since the epoch.
/// Times before 1677-09-21 or after 2262-04-11 (what ns in an `i64` holds) are clamped to the
/// first or last representable nanosecond: every stored point lies between them, so a bound
/// there (`0001-01-01T00:00:00Z`) includes them all.
///
/// # Errors
/// A message saying what is wrong: not RFC 3339 (jiff's reading), or an offset beyond ±23:59,
/// which RFC 3339 does not allow (jiff's parser accepts up to ±25:59).
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let err = |why: &dyn std::fmt::Display| {
        format!("invalid RFC 3339 time {s:?} ({why}); expected e.g. 2024-01-02T03:04:05Z")
    };
    let t: jiff::Timestamp = s.trim().parse().map_err(|e| err(&e))?;
    // RFC 3339's time-offset is `Z` or `[+-]HH:MM` with HH of 00-23.
    let b = s.trim().as_bytes();
    if !b.ends_with(b"Z") && !b.ends_with(b"z") {
        let hours = b
            .len()
            .checked_sub(6)
            .filter(|&i| matches!(b[i], b'+' | b'-') && b[i + 3] == b':')
            .and_then(|i| {
                std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()?
                    .parse::<u8>()
                    .ok()
            });
        match hours {
            Some(h) if h <= 23 => {}
            Some(_) => return Err(err(&"the offset's hours must be 00 to 23")),
            None => return Err(err(&"it needs an offset: Z or +HH:MM")),
        }
    }
    let ns = t.as_nanosecond();
    Ok(i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20.5+02:00").unwrap(),
            1_700_000_000_500_000_000
        );
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2023-13-01T00:00:00Z").is_err());
        // Outside what ns in an i64 holds: clamped, so the bound still includes every point.
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z").unwrap(), i64::MIN);
        assert_eq!(parse_rfc3339("9999-01-01T00:00:00Z").unwrap(), i64::MAX);
        // RFC 3339 offsets are -23:59 to +23:59.
        assert!(parse_rfc3339("2023-11-14T22:13:20+25:00").is_err());
        assert!(parse_rfc3339("2023-11-14T22:13:20+24:00").is_err());
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+23:00").unwrap(),
            1_699_920_800_000_000_000
        );
        assert!(parse_rfc3339("2023-11-14T22:13:20").is_err(), "no offset");
    }
}
