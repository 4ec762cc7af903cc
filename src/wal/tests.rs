use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::pool::Pooled;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &Path) -> (Log, Recovery, Vec<Record>) {
    open_with(dir, LogOptions { segment_bytes: 200 })
}

/// Opens the log, collecting the records recovery hands over.
fn open_with(dir: &Path, options: LogOptions) -> (Log, Recovery, Vec<Record>) {
    let mut records = Vec::new();
    let (log, recovery) = Log::open(dir, options, |r, _| records.push(r)).unwrap();
    (log, recovery, records)
}

fn payloads(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect()
}

fn append_all(log: &Log, items: &[&str]) -> Vec<u64> {
    rt().block_on(async {
        let mut seqs = Vec::new();
        for i in items {
            seqs.push(
                log.append(Pooled::from(i.as_bytes().to_vec()))
                    .await
                    .unwrap(),
            );
        }
        seqs
    })
}

#[test]
fn appends_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, rec, records) = open(dir.path());
    assert_eq!(rec, Recovery::default());
    assert!(records.is_empty());
    let items: Vec<String> = (0..50).map(|i| format!("record {i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    assert_eq!(append_all(&log, &refs), (1..=50).collect::<Vec<u64>>());
    drop(log);
    assert!(
        segments(dir.path()).unwrap().len() > 1,
        "rotated at segment_bytes"
    );
    let (log, rec, records) = open(dir.path());
    assert_eq!(rec.records, 50);
    assert_eq!(payloads(&records), items);
    assert_eq!(append_all(&log, &["more"]), [51]);
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open_with(dir.path(), LogOptions::default());
    let log = Arc::new(log);
    // Enough appends that a group holds more records than one vectored write takes.
    let n = 3000;
    let seqs = rt().block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    log.append(Pooled::from(format!("w{i}").into_bytes()))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs
    });
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), n);
    assert!(
        log.commits() < n as u64 / 2,
        "{} fsyncs for {n} appends",
        log.commits()
    );
    drop(log);
    // Every append is in the log under the sequence number it was given.
    let (_, rec, records) = open_with(dir.path(), LogOptions::default());
    assert_eq!(rec.records, n as u64);
    let by_seq: std::collections::HashMap<u64, String> = records
        .into_iter()
        .map(|r| (r.seq, String::from_utf8(r.payload).unwrap()))
        .collect();
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(by_seq[seq], format!("w{i}"));
    }
}

/// `append_then` calls back in sequence order, before the append resolves, with each record's
/// place: its header is there, in the segment named, also for records of one group
/// (concurrent appends) and across segment rotations.
#[test]
fn append_then_calls_back_in_order_with_where_each_record_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path()); // 200-byte segments: several
    let log = Arc::new(log);
    let called: Arc<std::sync::Mutex<Vec<(u64, Position)>>> = Arc::default();
    // Rounds of concurrent appends: groups of several records, a segment or more each.
    let placed = rt().block_on(async {
        let mut placed = Vec::new();
        for round in 0..4 {
            let tasks: Vec<_> = (round * 50..round * 50 + 50)
                .map(|i| {
                    let (log, called) = (Arc::clone(&log), Arc::clone(&called));
                    tokio::spawn(async move {
                        let text = format!("record {i} {}", "x".repeat(i % 40));
                        let payload = Pooled::from(text.clone().into_bytes());
                        let mine = Arc::new(std::sync::Mutex::new(None));
                        let at = Arc::clone(&mine);
                        let seq = log
                            .append_then(payload, move |seq, pos| {
                                called.lock().unwrap().push((seq, pos));
                                *at.lock().unwrap() = Some(pos);
                            })
                            .await
                            .unwrap();
                        let pos = mine.lock().unwrap().expect("called before resolving");
                        (seq, pos, text)
                    })
                })
                .collect();
            for t in tasks {
                placed.push(t.await.unwrap());
            }
        }
        placed
    });
    assert!(log.commits() < 200, "some groups held several records");
    let order: Vec<u64> = called.lock().unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order,
        (1..=200).collect::<Vec<u64>>(),
        "called in sequence order"
    );
    let segments: Vec<u64> = segments(dir.path())
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert!(segments.len() > 1, "rotated");
    let mut appended: Vec<(u64, Position)> =
        placed.iter().map(|(seq, pos, _)| (*seq, *pos)).collect();
    appended.sort_unstable();
    for (seq, (segment, offset), text) in placed {
        assert!(
            segments.contains(&segment),
            "record {seq} in segment {segment}"
        );
        let bytes = fs::read(dir.path().join(segment_name(segment))).unwrap();
        let at = offset as usize;
        let (len, found) = parse_header(&bytes[at..at + HEADER]).expect("a header there");
        assert_eq!(
            (found, &bytes[at + HEADER..at + HEADER + len]),
            (seq, text.as_bytes())
        );
        // A streaming read from there starts with the record.
        let mut first = None;
        read_streaming(dir.path(), seq, u64::MAX, Some((segment, offset)), |r| {
            first = Some(r.seq);
            false
        })
        .unwrap();
        assert_eq!(first, Some(seq));
    }
    // Recovery hands each record over with the same place.
    drop(log);
    let mut recovered = Vec::new();
    let (_log, recovery) = Log::open(dir.path(), LogOptions { segment_bytes: 200 }, |r, at| {
        recovered.push((r.seq, at));
    })
    .unwrap();
    assert_eq!(recovery.records, 200);
    assert_eq!(recovered, appended);
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open_with(dir.path(), LogOptions::default());
    append_all(&log, &["one", "two", "three"]);
    drop(log);
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (log, rec, records) = open_with(dir.path(), LogOptions::default());
    assert_eq!(payloads(&records), ["one", "two"]);
    assert_eq!(rec.truncated_bytes, (HEADER + 5 - 3) as u64);
    append_all(&log, &["four"]);
    drop(log);
    let (_, _, records) = open_with(dir.path(), LogOptions::default());
    assert_eq!(payloads(&records), ["one", "two", "four"]);
}

#[test]
fn flipped_bit_skips_one_record_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open_with(dir.path(), LogOptions::default());
    append_all(&log, &["alpha", "bravo", "charlie"]);
    drop(log);
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let second_payload = HEADER + 5 + HEADER + 2;
    bytes[second_payload] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let (_, rec, records) = open_with(dir.path(), LogOptions::default());
    assert_eq!(payloads(&records), ["alpha", "charlie"]);
    assert_eq!(rec.corrupt, 1);
    assert_eq!(rec.truncated_bytes, 0);
}

#[test]
fn missing_segment_and_empty_file_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path());
    let items: Vec<String> = (0..30).map(|i| format!("{i:040}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    append_all(&log, &refs);
    drop(log);
    let segs = segments(dir.path()).unwrap();
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1].1).unwrap();
    fs::write(dir.path().join(segment_name(999_999)), b"").unwrap();
    let (log, rec, records) = open(dir.path());
    assert_eq!(rec.gaps, 1);
    assert_eq!(rec.empty_segments, 1);
    assert!(records.len() < 30 && records.first().unwrap().seq == 1);
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(append_all(&log, &["after"]), [31]);
}

/// A streaming read that stops at `until` returns the position of the first record it left, and
/// the next read from there starts with that record: none skipped, none read twice (also when
/// the stop and the resume fall in different segments, and at the end of the log).
#[test]
fn streaming_reads_resume_where_until_stopped_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path()); // 200-byte segments: several
    let items: Vec<String> = (0..12).map(|i| format!("record {i:02}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    append_all(&log, &refs);
    let mut seen = Vec::new();
    let mut hint = None;
    let mut from = 1;
    for until in [3, 3, 7, 8, 12, 12] {
        hint = read_streaming(dir.path(), from, until, hint, |r| {
            seen.push(r.seq);
            true
        })
        .unwrap();
        assert!(hint.is_some(), "a position after reading to {until}");
        from = seen.last().map_or(1, |s| s + 1);
    }
    assert_eq!(seen, (1..=12).collect::<Vec<u64>>());
    // A stop on `each` returning false resumes past the record it took.
    let mut taken = Vec::new();
    let at = read_streaming(dir.path(), 1, u64::MAX, None, |r| {
        taken.push(r.seq);
        r.seq < 5
    })
    .unwrap();
    read_streaming(dir.path(), 6, u64::MAX, at, |r| {
        taken.push(r.seq);
        true
    })
    .unwrap();
    assert_eq!(taken, (1..=12).collect::<Vec<u64>>());
}

#[test]
fn reader_sees_durable_records_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path());
    append_all(&log, &["a", "b", "c", "d"]);
    let mut seen = Vec::new();
    read_from(dir.path(), 3, |r| seen.push(r.seq)).unwrap();
    assert_eq!(seen, [3, 4]);
    assert_eq!(
        log.remove_before(3).unwrap(),
        0,
        "segments of 200 bytes hold all four"
    );
}

#[test]
fn full_disk_refuses_then_recovers() {
    let mnt = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt.path());
    let dir = mnt.path().join("wal");
    let filler = mnt.path().join("filler");
    fs::write(&filler, vec![0u8; 96 * 1024]).unwrap();
    let (log, _, _) = open_with(&dir, LogOptions::default());
    let rt = rt();
    let record = vec![b'x'; 16 * 1024];
    let mut acked = 0;
    let err = rt.block_on(async {
        loop {
            match log.append(Pooled::from(record.clone())).await {
                Ok(_) => acked += 1,
                Err(e) => return e,
            }
        }
    });
    assert!(
        matches!(
            err,
            LogError::Io {
                disk_full: true,
                ..
            }
        ),
        "{err}"
    );
    // Still full: still refused, never a silent success, and never reported durable.
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&called);
    let on_durable = move |_, _| flag.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(rt
        .block_on(log.append_then(Pooled::from(record.clone()), on_durable))
        .is_err());
    assert!(!called.load(std::sync::atomic::Ordering::Relaxed));
    // Space returns: appends succeed again, on the same open log.
    fs::remove_file(&filler).unwrap();
    rt.block_on(log.append(Pooled::from(b"after".to_vec())))
        .unwrap();
    drop(log);
    let (_, _, records) = open_with(&dir, LogOptions::default());
    assert_eq!(
        records.len(),
        acked + 1,
        "every acknowledged record, nothing else"
    );
    assert_eq!(records.last().unwrap().payload, b"after");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Cutting the log at any byte and recovering yields a prefix of what was acknowledged.
    #[test]
    fn any_cut_recovers_a_prefix(n in 1usize..20, cut_frac in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _, _) = open_with(dir.path(), LogOptions::default());
        let items: Vec<String> = (0..n).map(|i| "p".repeat(i + 1)).collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        append_all(&log, &refs);
        drop(log);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&path).unwrap().len();
        let cut = (len as f64 * cut_frac) as u64;
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let (_, _, records) = open_with(dir.path(), LogOptions::default());
        let got = payloads(&records);
        prop_assert!(got.len() <= n);
        prop_assert_eq!(&got[..], &items[..got.len()]);
    }
}
