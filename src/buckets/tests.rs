use std::sync::Arc;
use std::time::Duration;

use super::export::{export, ExportRequest};
use super::*;
use crate::metric::{FieldValue, Metric, Origin};

const HOUR: i64 = 3_600_000_000_000;

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_path_buf(),
        retention: crate::config::Retention(Some(Duration::from_secs(72 * 3600))),
        partition: Duration::from_secs(3600),
        // Tests drive compaction by hand.
        compaction_interval: Duration::from_secs(3600),
        settle: Duration::ZERO,
        max_pending_bytes: 64 << 20,
        default_database: "telegraf".into(),
        segment_bytes: 1 << 20,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn metric(db: &str, name: &str, host: &str, v: i64, t: i64) -> Metric {
    let mut m = Metric::new(name, t);
    m.add_tag("host", host);
    m.add_field("v", FieldValue::Int(v));
    m.origin = Arc::new(Origin::new(db, None));
    m
}

fn dump(dir: &Path, db: &str, start: Option<i64>, end: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    let req = ExportRequest {
        data_dir: dir.to_path_buf(),
        db: db.into(),
        rp: "autogen".into(),
        start,
        end,
    };
    export(&req, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The directory of db's autogen partition starting at `start`.
fn partition_dir(dir: &Path, start: i64) -> PathBuf {
    dir.join("buckets/data/db/autogen").join(start.to_string())
}

/// `n` compaction runs of one point each (host `host`, values 0.., times `t`..): `n` chunks.
fn one_point_runs(store: &BucketStore, host: &str, n: i64, t: i64) {
    rt().block_on(async {
        for i in 0..n {
            store
                .append(&[metric("db", "m", host, i, t + i)])
                .await
                .unwrap();
            store.compact_once().unwrap();
        }
    });
}

fn now() -> i64 {
    crate::pipeline::now_ns() / HOUR * HOUR
}

#[test]
fn export_is_sorted_and_sees_compacted_and_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now();
    rt().block_on(async {
        store
            .append(&[
                metric("db", "m", "b", 2, t + 2 * HOUR),
                metric("db", "m", "a", 1, t),
            ])
            .await
            .unwrap();
        store
            .append(&[metric("other", "m", "x", 9, t)])
            .await
            .unwrap();
    });
    assert_eq!(store.compact_once().unwrap(), 3);
    rt().block_on(store.append(&[metric("db", "m", "c", 3, t + HOUR)]))
        .unwrap();
    // One point compacted in each of two partitions, one still in the log.
    let lines = dump(dir.path(), "db", None, None);
    assert_eq!(
        lines,
        [
            format!("m,host=a v=1i {t}"),
            format!("m,host=c v=3i {}", t + HOUR),
            format!("m,host=b v=2i {}", t + 2 * HOUR),
        ]
    );
    assert_eq!(
        dump(dir.path(), "db", Some(t + 1), Some(t + 2 * HOUR)),
        [format!("m,host=c v=3i {}", t + HOUR)]
    );
    assert_eq!(store.databases(), ["db", "other"]);
    assert_eq!(store.measurements("db"), ["m"]);
}

#[test]
fn reopen_replays_and_crashed_compaction_leaves_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    {
        let store = BucketStore::open(options(dir.path())).unwrap();
        rt().block_on(store.append(&[metric("db", "m", "a", 1, t)]))
            .unwrap();
        store.compact_once().unwrap();
        rt().block_on(store.append(&[metric("db", "m", "b", 2, t + 1)]))
            .unwrap();
        store.close();
    }
    // Forge what a compaction that crashed before moving its cursor leaves: a chunk past the
    // cursor, a temporary file, and a merge's output beside its inputs.
    let part = partition_dir(dir.path(), t);
    fs::copy(
        part.join(
            super::compact::chunks(&part).unwrap()[0]
                .path
                .file_name()
                .unwrap(),
        ),
        part.join(format!("{:020}-{:020}.lp.gz", 2, 2)),
    )
    .unwrap();
    fs::write(part.join("junk.tmp"), b"partial").unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    assert_eq!(
        super::compact::chunks(&part).unwrap().len(),
        1,
        "the chunk past the cursor is gone"
    );
    assert!(!part.join("junk.tmp").exists());
    store.compact_once().unwrap();
    let lines = dump(dir.path(), "db", None, None);
    assert_eq!(
        lines,
        [
            format!("m,host=a v=1i {t}"),
            format!("m,host=b v=2i {}", t + 1)
        ]
    );

    // A merge that crashed after writing its output: the inputs are covered and removed.
    let chunks = super::compact::chunks(&part).unwrap();
    assert_eq!(chunks.len(), 2);
    let merged = part.join(format!(
        "{:020}-{:020}.lp.gz",
        chunks[0].first, chunks[1].last
    ));
    let mut data = Vec::new();
    for c in &chunks {
        data.extend(fs::read(&c.path).unwrap()); // gzip members concatenate
    }
    fs::write(&merged, data).unwrap();
    store.close();
    drop(store);
    let _store = BucketStore::open(options(dir.path())).unwrap();
    assert_eq!(super::compact::chunks(&part).unwrap().len(), 1);
    assert_eq!(dump(dir.path(), "db", None, None).len(), 2);
}

#[test]
fn second_open_of_a_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = BucketStore::open(options(dir.path())).unwrap();
    let err = BucketStore::open(options(dir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Lock(crate::durable::LockError::Locked { .. })
        ),
        "{err}"
    );
}

#[test]
fn hostile_names_are_refused_or_contained() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now();
    rt().block_on(async {
        for db in ["..", "../../etc", "a/b", "x\0y"] {
            store.append(&[metric(db, "m", "a", 1, t)]).await.unwrap();
        }
        let long = "d".repeat(10_000);
        assert!(matches!(
            store.append(&[metric(&long, "m", "a", 1, t)]).await,
            Err(Refusal::Invalid(_))
        ));
    });
    store.compact_once().unwrap();
    let data = dir.path().join("buckets/data");
    for entry in fs::read_dir(&data).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains('.') && !name.contains('/'), "{name}");
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only LOCK and buckets/ in data_dir"
    );
    assert_eq!(dump(dir.path(), "../../etc", None, None).len(), 1);
}

#[test]
fn retention_drops_whole_expired_partitions_and_merge_keeps_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let old = t - 100 * HOUR;
    {
        // Written while the retention was longer; it has expired under the current one.
        let mut long = options(dir.path());
        long.retention = crate::config::Retention(Some(Duration::from_secs(200 * 3600)));
        let store = BucketStore::open(long).unwrap();
        rt().block_on(store.append(&[metric("db", "m", "old", 1, old)]))
            .unwrap();
        store.close();
    }
    let store = BucketStore::open(options(dir.path())).unwrap();
    let refused = rt().block_on(store.append(&[metric("db", "m", "old", 1, old)]));
    assert!(
        matches!(refused, Err(Refusal::Invalid(ref m)) if m.contains("beyond retention")),
        "{refused:?}"
    );
    one_point_runs(&store, "new", 10, t - 2 * HOUR);
    let part = partition_dir(dir.path(), t - 2 * HOUR);
    assert_eq!(super::compact::chunks(&part).unwrap().len(), 10);
    store.maintain().unwrap();
    assert_eq!(
        super::compact::chunks(&part).unwrap().len(),
        1,
        "a closed partition is merged"
    );
    let lines = dump(dir.path(), "db", None, None);
    assert_eq!(
        lines.len(),
        10,
        "the expired point is gone, the rest kept: {lines:?}"
    );
    assert!(lines.iter().all(|l| l.contains("host=new")));
    assert_eq!(store.stats.expired_partitions.load(Ordering::Relaxed), 1);
    // Compaction runs are stored uncompressed: the merge decoded every block (none copied as
    // it was) and compressed the partition.
    assert_eq!(store.stats.copied_bytes.load(Ordering::Relaxed), 0);
    assert!(store.stats.merged_bytes.load(Ordering::Relaxed) > 0);
    let merged = &super::compact::chunks(&part).unwrap()[0];
    assert!(!super::blocks::first_stored(&merged.path).unwrap());
}

#[test]
fn drop_database_removes_compacted_and_pending_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now();
    rt().block_on(store.append(&[metric("gone", "m", "a", 1, t)]))
        .unwrap();
    store.compact_once().unwrap();
    rt().block_on(store.append(&[metric("gone", "m", "b", 2, t)]))
        .unwrap();
    store.drop_database("gone").unwrap();
    store.compact_once().unwrap();
    assert!(!store.databases().contains(&"gone".to_string()));
    rt().block_on(store.append(&[metric("gone", "m", "c", 3, t)]))
        .unwrap();
    assert_eq!(
        dump(dir.path(), "gone", None, None),
        [format!("m,host=c v=3i {t}")]
    );
}

#[test]
fn compacted_partition_is_under_a_quarter_of_its_line_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now() - HOUR;
    let mut lp_bytes = 0;
    rt().block_on(async {
        for i in 0..2000i64 {
            let mut batch = Vec::new();
            for (cpu, host) in [("cpu0", "web-01"), ("cpu1", "web-01"), ("cpu0", "web-02")] {
                let mut m = Metric::new("cpu", t + i * 1_000_000_000);
                m.add_tag("cpu", cpu);
                m.add_tag("host", host);
                m.add_field(
                    "usage_idle",
                    FieldValue::Float(90.0 + (i % 97) as f64 / 10.0),
                );
                m.add_field(
                    "usage_system",
                    FieldValue::Float(1.0 + (i % 13) as f64 / 7.0),
                );
                m.add_field("usage_user", FieldValue::Float(5.5 + (i % 31) as f64 / 3.0));
                m.origin = Arc::new(Origin::new("db", None));
                let mut text = String::new();
                crate::line_protocol::encode(&m, &mut text);
                lp_bytes += text.len();
                batch.push(m);
            }
            store.append(&batch).await.unwrap();
        }
    });
    store.compact_once().unwrap();
    let part = partition_dir(dir.path(), t);
    // The compaction run is stored uncompressed until its first merge; a closed partition is
    // merged, and compressed, once its newest chunk has settled.
    let chunks = super::compact::chunks(&part).unwrap();
    assert!(super::blocks::first_stored(&chunks[0].path).unwrap());
    store.maintain().unwrap();
    let size: u64 = super::compact::chunks(&part)
        .unwrap()
        .iter()
        .map(|c| fs::metadata(&c.path).unwrap().len())
        .sum();
    assert!(
        size * 4 <= lp_bytes as u64,
        "{size} bytes on disk for {lp_bytes} bytes of line protocol"
    );
    // Compressed in place: the one chunk is still there, with every point.
    let chunks = super::compact::chunks(&part).unwrap();
    assert_eq!(chunks.len(), 1);
    assert!(!super::blocks::first_stored(&chunks[0].path).unwrap());
    assert_eq!(dump(dir.path(), "db", None, None).len(), 6000);
}

#[test]
fn full_log_backlog_is_refused_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_pending_bytes = 1 << 20;
    let store = BucketStore::open(opts).unwrap();
    let t = now();
    let batch: Vec<Metric> = (0..10).map(|i| metric("db", "m", "a", i, t + i)).collect();
    rt().block_on(store.append(&batch)).unwrap();
    // Compaction far behind (as if the disk were slow): the backlog is over the limit.
    store.pending_bytes.store((1 << 20) + 1, Ordering::Relaxed);
    let r = rt().block_on(store.append(&batch[..1]));
    match r {
        Err(e @ Refusal::Full { .. }) => assert!(e.retry_after_secs() >= 1),
        other => panic!("expected Full, got {other:?}"),
    }
    store.pending_bytes.store(0, Ordering::Relaxed);
    assert!(
        rt().block_on(store.append(&batch[..1])).is_ok(),
        "admits again once compaction caught up"
    );
}

#[test]
fn a_closed_partition_still_written_to_is_merged_by_tiers_until_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let t = now() - 2 * HOUR;
    let part = partition_dir(dir.path(), t);
    let mut busy = options(dir.path());
    busy.settle = Duration::from_secs(3600);
    let store = BucketStore::open(busy).unwrap();
    one_point_runs(&store, "late", 3, t);
    store.maintain().unwrap();
    assert_eq!(
        super::compact::chunks(&part).unwrap().len(),
        3,
        "a closed partition whose newest chunk is fresh is not rewritten whole"
    );
    store.close();
    drop(store);
    let store = BucketStore::open(options(dir.path())).unwrap();
    store.maintain().unwrap();
    assert_eq!(super::compact::chunks(&part).unwrap().len(), 1);
    assert_eq!(dump(dir.path(), "db", None, None).len(), 3);
}

/// A log record that does not decode is skipped by compaction, logged, and passed by the
/// cursor; the records around it are compacted.
#[test]
fn an_undecodable_log_record_is_skipped_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now();
    let garbage = crate::pool::Pooled::from(b"\xff\xffnot a record".to_vec());
    let rt = rt();
    rt.block_on(store.append(&[metric("db", "m", "a", 1, t)]))
        .unwrap();
    rt.block_on(store.log.append(garbage)).unwrap();
    rt.block_on(store.append(&[metric("db", "m", "b", 2, t + 1)]))
        .unwrap();
    assert_eq!(store.compact_once().unwrap(), 2);
    assert_eq!(
        store.compact_once().unwrap(),
        0,
        "the cursor is past all three"
    );
    assert_eq!(dump(dir.path(), "db", None, None).len(), 2);
}

#[test]
fn merges_beside_compaction_keep_every_point_in_order() {
    // As the daemon runs them: compaction on one thread, merges (and retention) on another.
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now() - 2 * HOUR;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let merger = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut passes = 0;
            while !done.load(Ordering::Acquire) {
                store.maintain().unwrap();
                passes += 1;
            }
            passes
        })
    };
    let mut expected = Vec::new();
    rt().block_on(async {
        for run in 0..40i64 {
            // Two writers whose times interleave, so merges decode and re-sort.
            let batch: Vec<Metric> = (0..50i64)
                .flat_map(|i| {
                    let at = t + (run * 50 + i) * 1_000;
                    [
                        metric("db", "m", "a", i, at),
                        metric("db", "m", "b", i, at + 500),
                    ]
                })
                .collect();
            for m in &batch {
                let mut text = String::new();
                crate::line_protocol::encode(m, &mut text);
                expected.push(text.trim_end().to_owned());
            }
            store.append(&batch).await.unwrap();
            store.compact_once().unwrap();
        }
    });
    done.store(true, Ordering::Release);
    assert!(merger.join().unwrap() > 0);
    let part = partition_dir(dir.path(), t);
    let merged_before_settling = super::compact::chunks(&part).unwrap().len();
    assert!(
        merged_before_settling < 40,
        "{merged_before_settling} chunks"
    );
    expected.sort_by_key(|l| (super::line_time(l.as_bytes()), l.clone()));
    let got = dump(dir.path(), "db", None, None);
    assert!(
        got == expected,
        "{} lines, {} expected",
        got.len(),
        expected.len()
    );
    store.maintain().unwrap();
    assert_eq!(super::compact::chunks(&part).unwrap().len(), 1);
    assert_eq!(dump(dir.path(), "db", None, None), expected);
}

#[test]
fn merges_leave_chunks_past_the_cursor_alone() {
    // A compaction run in progress has written a chunk but not yet moved the cursor: a merge
    // must not fold it into older data, which recovery would then remove with it.
    let dir = tempfile::tempdir().unwrap();
    let t = now() - 2 * HOUR;
    let part = partition_dir(dir.path(), t);
    {
        let store = BucketStore::open(options(dir.path())).unwrap();
        one_point_runs(&store, "a", 8, t);
        let uncommitted = part.join(format!("{:020}-{:020}.lp.gz", 100, 100));
        let mut w = super::blocks::BlockWriter::stored(fs::File::create(&uncommitted).unwrap());
        w.line(t + 50, format!("m,host=z v=1i {}", t + 50).as_bytes())
            .unwrap();
        w.finish().unwrap();
        store.maintain().unwrap();
        let names: Vec<String> = super::compact::chunks(&part)
            .unwrap()
            .iter()
            .map(|c| format!("{}-{}", c.first, c.last))
            .collect();
        assert_eq!(names, ["1-8", "100-100"]);
        store.close();
    }
    // Reopened as after a crash: the uncommitted chunk goes, every acknowledged point stays.
    let _store = BucketStore::open(options(dir.path())).unwrap();
    let lines = dump(dir.path(), "db", None, None);
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("host=a")));
}

#[test]
fn a_string_field_holding_a_line_feed_survives_compaction_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now() - 2 * HOUR;
    let mut m = metric("db", "log", "a", 1, t);
    m.add_field("msg", FieldValue::Str("first\nsecond".into()));
    rt().block_on(store.append(&[m])).unwrap();
    // From the log (not compacted yet), then from a stored chunk, then a compressed one.
    let pending = dump(dir.path(), "db", None, None);
    store.compact_once().unwrap();
    let before = dump(dir.path(), "db", None, None);
    assert_eq!(pending, before);
    store.maintain().unwrap();
    assert_eq!(dump(dir.path(), "db", None, None), before);
    assert_eq!(before.len(), 2, "{before:?}");
}

#[test]
fn the_compactor_works_through_a_backlog_of_full_runs_by_itself() {
    // A backlog of several full runs in the log at open (the agent restarted behind): the
    // compactor goes through it at once and on its own, with no append to wake it and long
    // before its interval (an hour here).
    let dir = tempfile::tempdir().unwrap();
    let t = now() - HOUR;
    let host = "h".repeat(200);
    let batch: Vec<Metric> = (0..5000)
        .map(|k| metric("db", "backlog", &host, k, t + k))
        .collect();
    let record = crate::buffer::record::encode(&batch);
    let runs = 3 * super::compact::MAX_RUN_BYTES / record.len() + 1;
    {
        let (wal_dir, _, _) = paths(dir.path());
        fs::create_dir_all(&wal_dir).unwrap();
        let (log, _) = Log::open(&wal_dir, LogOptions::default(), |_, _| {}).unwrap();
        rt().block_on(async {
            for _ in 0..runs {
                log.append(crate::pool::Pooled::from(record.clone()))
                    .await
                    .unwrap();
            }
        });
    }
    let store = BucketStore::open(options(dir.path())).unwrap();
    assert!(store.pending_bytes() >= 3 * store.run_due());
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending_bytes() >= store.run_due() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        store.pending_bytes() < store.run_due(),
        "{} bytes still pending",
        store.pending_bytes()
    );
    assert!(store.stats.compactions.load(Ordering::Relaxed) >= 3);
}

#[test]
fn a_compaction_run_that_cannot_write_loses_nothing_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketStore::open(options(dir.path())).unwrap();
    let t = now();
    let rt = rt();
    rt.block_on(store.append(&[
        metric("db", "m", "a", 1, t),
        metric("db", "m", "b", 2, t + 1),
    ]))
    .unwrap();
    // A file where the run's partition directory must go: the run fails after reading the
    // log and before the cursor moves.
    let blocked = partition_dir(dir.path(), t);
    fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    fs::write(&blocked, b"in the way").unwrap();
    assert!(store.compact_once().is_err());
    assert!(store.pending_bytes() > 0, "the backlog is still pending");
    // Export still sees the acknowledged points, from the log.
    assert_eq!(dump(dir.path(), "db", None, None).len(), 2);
    fs::remove_file(&blocked).unwrap();
    assert_eq!(store.compact_once().unwrap(), 2);
    assert_eq!(store.compact_once().unwrap(), 0);
    assert_eq!(store.pending_bytes(), 0);
    let lines = dump(dir.path(), "db", None, None);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("m,host=a v=1i") && lines[1].starts_with("m,host=b v=2i"));
}
