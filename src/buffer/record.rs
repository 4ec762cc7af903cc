//! The payload of a log record holding metrics: runs of `u16 len | db | u16 len | rp | u32 points
//! | u32 len | line protocol`, one run per origin, timestamps in ns. Outputs that speak line
//! protocol send a run's text as it is ([`runs`]); others decode it ([`decode`]).

use std::sync::Arc;

use crate::line_protocol::{self, Line, Parser, Precision};
use crate::metric::{Metric, Origin};

/// Encodes `metrics` (in order; consecutive metrics of one origin share a run).
pub fn encode(metrics: &[Metric]) -> Vec<u8> {
    let mut out = Vec::with_capacity(metrics.len() * 128);
    let mut i = 0;
    while i < metrics.len() {
        let origin = &metrics[i].origin;
        let start = i;
        while i < metrics.len() && metrics[i].origin == *origin {
            i += 1;
        }
        let run: Vec<&Metric> = metrics[start..i].iter().collect();
        encode_run(&origin.db, &origin.rp, &run, &mut out);
    }
    out
}

/// Appends one run: `metrics` as line protocol under `db` and `rp`.
pub fn encode_run(db: &str, rp: &str, metrics: &[&Metric], out: &mut Vec<u8>) {
    let mut lp = String::with_capacity(metrics.len() * 128);
    let mut points = 0u32;
    for m in metrics {
        if line_protocol::encode(m, &mut lp) {
            points += 1;
        }
    }
    encode_run_lp(db, rp, points as usize, &lp, out);
}

/// Appends one run of `points` lines of normalized line protocol (ns, one point per line).
pub fn encode_run_lp(db: &str, rp: &str, points: usize, lp: &str, out: &mut Vec<u8>) {
    let head = run_header(db, rp, points, lp.len());
    out.reserve(head.len() + lp.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(lp.as_bytes());
}

/// A record of one run made of `lp` itself, whose line protocol starts after `head` bytes
/// left for the header: with [`run_header_len`] bytes left, the header is written over them
/// and the text does not move; otherwise they are replaced.
pub fn run_lp_record(db: &str, rp: &str, points: usize, lp: String, head: usize) -> Vec<u8> {
    let mut out = lp.into_bytes();
    let header = run_header(db, rp, points, out.len() - head);
    if head == header.len() {
        out[..head].copy_from_slice(&header);
    } else {
        out.splice(0..head, header);
    }
    out
}

/// The length of the header of a run of `db` and `rp` (see [`run_lp_record`]).
pub fn run_header_len(db: &str, rp: &str) -> usize {
    let name = |s: &str| 2 + s.len().min(u16::MAX as usize);
    name(db) + name(rp) + 8
}

fn run_header(db: &str, rp: &str, points: usize, lp_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(db.len() + rp.len() + 12);
    for part in [db.as_bytes(), rp.as_bytes()] {
        let len = part.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&part[..len]);
    }
    out.extend_from_slice(&(points as u32).to_le_bytes());
    out.extend_from_slice(&(lp_len as u32).to_le_bytes());
    out
}

/// One run of a record: the points of one origin as line protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'a> {
    /// The database.
    pub db: &'a str,
    /// The retention policy.
    pub rp: &'a str,
    /// Points in `lp`.
    pub points: usize,
    /// One point per line, ns timestamps.
    pub lp: &'a str,
    /// The shared record `lp` lies in, when there is one: a request body can then be a slice
    /// of it instead of a copy.
    pub source: Option<&'a crate::wal::Payload>,
}

/// The runs of a payload; `None` if it is not one [`encode`] made.
pub fn runs(payload: &[u8]) -> Option<Vec<Run<'_>>> {
    raw_runs(payload)?
        .into_iter()
        .map(|r| {
            let lp = simdutf8::basic::from_utf8(r.lp).ok()?;
            Some(Run {
                db: r.db,
                rp: r.rp,
                points: r.points,
                lp,
                source: None,
            })
        })
        .collect()
}

/// [`runs`] of a shared record, each naming it as its [`Run::source`].
pub fn shared_runs(payload: &crate::wal::Payload) -> Option<Vec<Run<'_>>> {
    let mut runs = runs(payload)?;
    for r in &mut runs {
        r.source = Some(payload);
    }
    Some(runs)
}

/// A run whose line protocol is left as bytes (not checked as UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRun<'a> {
    /// The database.
    pub db: &'a str,
    /// The retention policy.
    pub rp: &'a str,
    /// Points in `lp`.
    pub points: usize,
    /// One point per line, ns timestamps.
    pub lp: &'a [u8],
}

/// [`runs`] without checking the line protocol as UTF-8, for readers that only move it (the
/// listener checked it, the record's CRC protects it since).
pub fn raw_runs(payload: &[u8]) -> Option<Vec<RawRun<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = payload.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    while at < payload.len() {
        let db_len = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let db = std::str::from_utf8(take(&mut at, db_len)?).ok()?;
        let rp_len = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let rp = std::str::from_utf8(take(&mut at, rp_len)?).ok()?;
        let points = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let lp_len = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let lp = take(&mut at, lp_len)?;
        out.push(RawRun { db, rp, points, lp });
    }
    Some(out)
}

/// Points in a payload.
pub fn points(payload: &[u8]) -> Option<usize> {
    Some(raw_runs(payload)?.iter().map(|r| r.points).sum())
}

/// Decodes a payload back into metrics; `None` if it is not one [`encode`] made.
pub fn decode(payload: &[u8]) -> Option<Vec<Metric>> {
    let mut out = Vec::new();
    for run in runs(payload)? {
        let origin = Arc::new(Origin::new(run.db, Some(run.rp)));
        let mut parser = Parser::new(run.lp);
        let mut line = Line::default();
        while let Some(r) = parser.next_into(&mut line) {
            r.ok()?;
            out.push(line.to_metric(Precision::Nanoseconds, 0, &origin).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::FieldValue;

    #[test]
    fn round_trip_keeps_origins_and_order() {
        let mut ms = Vec::new();
        for (i, db) in ["a", "a", "b", "a"].iter().enumerate() {
            let mut m = Metric::new("m", i as i64);
            m.add_field("v", FieldValue::Int(i as i64));
            m.origin = Arc::new(Origin::new(*db, Some("rp")));
            ms.push(m);
        }
        let payload = encode(&ms);
        assert_eq!(decode(&payload).unwrap(), ms);
        assert_eq!(points(&payload), Some(4));
        let r = runs(&payload).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].db, r[0].points, r[0].lp),
            ("a", 2, "m v=0i 0\nm v=1i 1\n")
        );
        assert!(decode(b"\x05\x00ab").is_none());
    }

    /// A run record made in place, with room left or not, is the one `encode_run_lp` writes.
    #[test]
    fn run_records_are_the_same_however_the_text_was_left() {
        let lp = "m v=1i 1\nm v=2i 2\n";
        let mut want = Vec::new();
        encode_run_lp("db", "autogen", 2, lp, &mut want);
        let head = run_header_len("db", "autogen");
        for room in [head, 0, 3, head + 5] {
            let text = format!("{}{lp}", "\0".repeat(room));
            assert_eq!(
                run_lp_record("db", "autogen", 2, text, room),
                want,
                "{room}"
            );
        }
        let r = runs(&want).unwrap();
        assert_eq!(
            (r.len(), r[0].db, r[0].rp, r[0].lp),
            (1, "db", "autogen", lp)
        );
    }
}
