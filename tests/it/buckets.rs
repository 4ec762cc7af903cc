//! Local buckets through the real binary: acknowledged writes are exported, survive SIGKILL, and
//! `/query` answers from the store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

const CONFIG: &str = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.buckets]]
  compaction_interval = "200ms"
"#;

#[test]
fn written_points_are_exported_while_running_and_queried() {
    let agent = TestAgent::start(CONFIG);
    let url = agent.url("/write?db=app&precision=s");
    let t = now_s() - 3600;
    let body = format!("cpu,host=b v=2 {}\ncpu,host=a v=1 {t}\n", t + 1);
    assert_eq!(post(&url, &[], body.as_bytes()).status, 204);
    assert_eq!(
        post(
            &agent.url("/write?db=app&rp=week&precision=s"),
            &[],
            format!("mem v=3i {t}\n").as_bytes()
        )
        .status,
        204
    );
    // Exported at once (from the log), then again after compaction: same answer.
    let expected = [
        format!("cpu,host=a v=1 {t}000000000"),
        format!("cpu,host=b v=2 {}000000000", t + 1),
    ];
    assert_eq!(agent.export("app", &[]), expected);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(agent.export("app", &[]), expected);
    assert_eq!(
        agent.export("app", &["--rp", "week"]),
        [format!("mem v=3i {t}000000000")]
    );
    let start = rfc3339(t + 1);
    assert_eq!(
        agent.export("app", &["--start", &start, "--end", "2100-01-01T00:00:00Z"]),
        expected[1..]
    );
    // Points older than the retention are refused, not stored and silently dropped.
    let r = post(&url, &[], b"old v=1 1000\n");
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("beyond retention policy"));

    let q = |q: &str| request("GET", &agent.url(&format!("/query?q={q}")), &[]).json();
    assert_eq!(
        q("SHOW+DATABASES")["results"][0]["series"][0]["values"],
        serde_json::json!([["app"]])
    );
    let rps = q("SHOW+RETENTION+POLICIES+ON+app");
    assert_eq!(
        rps["results"][0]["series"][0]["values"][0],
        serde_json::json!(["autogen", "72h0m0s", "1h0m0s", 1, true])
    );
    assert_eq!(rps["results"][0]["series"][0]["values"][1][0], "week");
    let ms = q("SHOW+MEASUREMENTS+ON+app");
    assert_eq!(
        ms["results"][0]["series"][0]["values"],
        serde_json::json!([["cpu"], ["mem"]])
    );
    let csv = request(
        "GET",
        &agent.url("/query?q=SHOW+MEASUREMENTS&db=app"),
        &[("Accept", "application/csv")],
    );
    assert_eq!(csv.body, "name,tags,name\n,,cpu\n,,mem\n");
    assert_eq!(
        q("CREATE+DATABASE+fresh")["results"][0],
        serde_json::json!({"statement_id": 0})
    );
    assert_eq!(
        q("DROP+DATABASE+app")["results"][0],
        serde_json::json!({"statement_id": 0})
    );
    assert_eq!(
        q("SHOW+DATABASES")["results"][0]["series"][0]["values"],
        serde_json::json!([["fresh"]])
    );
    // A database name that cannot be stored is a client error, and nothing is written.
    let long = "d".repeat(200);
    let r = post(&agent.url(&format!("/write?db={long}")), &[], b"m v=1 1\n");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn a_second_agent_on_the_same_data_dir_refuses_to_start() {
    let agent = TestAgent::start(CONFIG);
    let config = agent.path("agent.toml");
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use by another heliograph"));
}

/// 16 writers; the agent is killed with SIGKILL at random moments and restarted; every point of
/// every acknowledged request is exported afterwards, and nothing that was never sent.
#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    const WRITERS: usize = 16;
    const ROUNDS: usize = 4;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let sent = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let deadline = Instant::now() + Duration::from_secs(50);
    let base = (now_s() - 60) * 1_000_000_000;
    for round in 0..ROUNDS {
        let agent = TestAgent::start_in(Arc::clone(&dir), CONFIG);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (url, stop) = (agent.url("/write?db=crash"), Arc::clone(&stop));
                let (acked, sent) = (Arc::clone(&acked), Arc::clone(&sent));
                std::thread::spawn(move || {
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let lines: Vec<String> = (0..5)
                            .map(|k| {
                                format!(
                                    "crash,round=r{round},writer=w{w} v={k}i {}",
                                    base + i * 10 + k
                                )
                            })
                            .collect();
                        sent.lock().unwrap().extend(lines.iter().cloned());
                        let body = lines.join("\n") + "\n";
                        match ureq::post(&url)
                            .timeout(Duration::from_secs(5))
                            .send_string(&body)
                        {
                            Ok(r) if r.status() == 204 => acked.lock().unwrap().extend(lines),
                            _ => return, // killed mid-request: the outcome is unknown
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + next() % 1200));
        signal(&agent.child, "KILL");
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        drop(agent);
    }
    let agent = TestAgent::start_in(Arc::clone(&dir), CONFIG);
    let exported: HashSet<String> = agent.export("crash", &[]).into_iter().collect();
    let acked = acked.lock().unwrap();
    let sent = sent.lock().unwrap();
    assert!(
        acked.len() > 100,
        "the test wrote too little to mean anything: {}",
        acked.len()
    );
    let lost: Vec<_> = acked.difference(&exported).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged points lost, e.g. {lost:?}",
        acked.difference(&exported).count()
    );
    let invented: Vec<_> = exported.difference(&sent).take(5).collect();
    assert!(
        invented.is_empty(),
        "exported points never sent: {invented:?}"
    );
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn export_of_a_missing_bucket_or_store_fails_clearly() {
    let agent = TestAgent::start(CONFIG);
    let run = |db: &str, config: &std::path::Path| {
        std::process::Command::new(binary())
            .args(["export", "--db", db, "--config"])
            .arg(config)
            .current_dir(agent.dir.path())
            .output()
            .unwrap()
    };
    let out = run("nope", &agent.path("agent.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bucket nope/autogen"));
    let other = agent.path("other.toml");
    std::fs::write(
        &other,
        "[agent]\n  data_dir = \"/nonexistent/data\"\n[[outputs.buckets]]\n",
    )
    .unwrap();
    let out = run("app", &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no local buckets in /nonexistent/data"));
}
