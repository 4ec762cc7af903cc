//! Running under systemd: readiness, stopping and watchdog notifications, SIGHUP, /metrics.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

const CONFIG: &str = r#"
[agent]
  data_dir = "{dir}/data"
  flush_interval = "50ms"
  shutdown_timeout = "5s"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.buckets]]
[[outputs.file]]
  files = ["{dir}/out.lp"]
"#;

/// What arrives on the socket within `for_` (the watchdog keeps sending, so read for a while,
/// not until silence).
fn receive(socket: &UnixDatagram, for_: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + for_;
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

#[test]
fn notifies_ready_watchdog_and_stopping() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let env = [
        ("NOTIFY_SOCKET", path.display().to_string()),
        ("WATCHDOG_USEC", "200000".to_string()),
    ];
    let mut agent = TestAgent::start_with(Arc::clone(&dir), CONFIG, &env);
    let early = receive(&socket, Duration::from_millis(500));
    assert!(early.iter().any(|m| m.starts_with("READY=1")), "{early:?}");
    assert!(early.iter().any(|m| m == "WATCHDOG=1"), "{early:?}");
    // The listener was bound before READY: a write right away succeeds.
    assert_eq!(
        post(
            &agent.url("/write?db=x"),
            &[],
            format!("m v=1 {}\n", now_ns()).as_bytes()
        )
        .status,
        204
    );
    // SIGHUP reloads and does not end the agent. (Keep-alive connections open at the reload
    // are closed once idle: wait for the reload to finish before the next request.)
    signal(&agent.child, "HUP");
    assert!(eventually(Duration::from_secs(5), || agent
        .logs()
        .contains("configuration reloaded")));
    assert_eq!(request("GET", &agent.url("/ping"), &[]).status, 204);
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let late = receive(&socket, Duration::from_millis(300));
    assert!(late.iter().any(|m| m == "STOPPING=1"), "{late:?}");
}

#[test]
fn metrics_endpoint_reports_counters() {
    // A gather input whose metrics are all filtered out: counted, nothing in the file.
    let agent = TestAgent::start(&format!(
        "{CONFIG}[[inputs.mem]]\n  interval = \"100ms\"\n  namedrop = [\"*\"]\n"
    ));
    assert_eq!(
        post(
            &agent.url("/write?db=x"),
            &[],
            format!("m v=1 {}\n", now_ns()).as_bytes()
        )
        .status,
        204
    );
    assert_eq!(post(&agent.url("/write?db=x"), &[], b"bad\n").status, 400);
    assert!(eventually(Duration::from_secs(5), || agent
        .lines("out.lp")
        .len()
        == 1));
    let expected = [
        "heliograph_listener_requests_total{status=\"204\"} 1",
        "heliograph_listener_requests_total{status=\"400\"} 1",
        "heliograph_listener_points_written_total 1",
        "heliograph_output_written_points_total{output=\"outputs.file\"} 1",
        "heliograph_output_queued_points{output=\"outputs.file\"} 0",
        "# TYPE heliograph_buckets_pending_bytes gauge",
        "heliograph_buckets_merge_copied_bytes_total 0",
        "heliograph_buckets_merge_decoded_bytes_total 0",
        "heliograph_input_gathered_metrics_total{input=\"inputs.mem\"} 0",
        "heliograph_input_skipped_ticks_total{input=\"inputs.mem\"} 0",
        "heliograph_output_buffer_limit_points{output=\"outputs.file\"} 10000",
        "# TYPE heliograph_resident_memory_bytes gauge",
    ];
    // The output's counters move just after the file is written: poll briefly.
    let mut body = String::new();
    let ok = eventually(Duration::from_secs(5), || {
        let r = request("GET", &agent.url("/metrics"), &[]);
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        body = r.body;
        expected.iter().all(|e| body.contains(e))
    });
    assert!(ok, "missing some of {expected:?} in\n{body}");
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn json_logs_to_a_logfile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let config = format!(
        "[agent]\n  data_dir = {:?}\n  logformat = \"json\"\n  logfile = {:?}\n[[inputs.influxdb_listener]]\n  service_address = \"127.0.0.1:0\"\n[[outputs.buckets]]\n",
        dir.path().join("data").display().to_string(),
        log.display().to_string()
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(binary())
        .arg("--config")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let listening = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening"))
    });
    signal(&child, "TERM");
    let _ = child.wait();
    assert!(listening, "no listening line in the logfile");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("listening")).unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["level"], "INFO");
    assert!(
        json["fields"]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

/// SIGTERM while 8 writers keep writing: the agent stops within the bound, new writes are
/// refused (503 or a closed connection), and every acknowledged point is in the buckets.
#[test]
fn sigterm_under_load_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = CONFIG.replace("[[outputs.file]]\n  files = [\"{dir}/out.lp\"]\n", "");
    let mut agent = TestAgent::start_in(Arc::clone(&dir), &config);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = now_ns() - 60_000_000_000;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, acked, stop) = (
                agent.url("/write?db=t"),
                Arc::clone(&acked),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let line = format!("t,w=w{w} v={i}i {}", base + i * 8 + w);
                    match ureq::post(&url)
                        .timeout(Duration::from_secs(5))
                        .send_string(&line)
                    {
                        Ok(r) if r.status() == 204 => acked.lock().unwrap().push(line),
                        Ok(_) | Err(ureq::Error::Status(..)) => {}
                        Err(_) => return, // the listener closed
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let started = std::time::Instant::now();
    let status = agent.terminate(Duration::from_secs(10));
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?}, over shutdown_timeout"
    );
    drop(agent);
    let agent = TestAgent::start_in(dir, &config);
    let exported: std::collections::HashSet<String> = agent.export("t", &[]).into_iter().collect();
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    let lost = acked.iter().filter(|l| !exported.contains(*l)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged points lost",
        acked.len()
    );
}

/// A second SIGTERM while the first stop waits on a hung output exits at once.
#[test]
fn second_signal_exits_at_once() {
    // An upstream that accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        hung.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok((c, _)) = hung.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let config = format!(
        "[agent]\n  data_dir = \"{{dir}}/data\"\n  flush_interval = \"50ms\"\n  shutdown_timeout = \"60s\"\n[[inputs.influxdb_listener]]\n  service_address = \"127.0.0.1:0\"\n[[outputs.influxdb]]\n  urls = [\"{url}\"]\n  timeout = \"30s\"\n  skip_database_creation = true\n  buffer = \"memory\"\n"
    );
    let mut agent = TestAgent::start(&config);
    assert_eq!(
        post(&agent.url("/write?db=x"), &[], b"m v=1 1\n").status,
        204
    );
    std::thread::sleep(Duration::from_millis(300)); // the output is now stuck on its request
    signal(&agent.child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the first stop waits for the output"
    );
    let started = std::time::Instant::now();
    let status = agent.terminate(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        status.code(),
        Some(2),
        "points held in memory were lost: exit 2"
    );
    assert!(agent.logs().contains("second signal"));
    drop(held);
}

/// A flood of refused writes logs a bounded number of lines, each with its reason.
#[test]
fn a_flood_of_refused_writes_logs_a_bounded_number_of_lines() {
    let agent = TestAgent::start(
        r#"
[agent]
  data_dir = "{dir}/data"
  flush_interval = "1h"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  files = ["{dir}/out.lp"]
  buffer = "memory"
  buffer_limit = 5
"#,
    );
    let url = agent.url("/write?db=x");
    assert_eq!(
        post(&url, &[], b"m v=1 1\nm v=2 2\nm v=3 3\nm v=4 4\nm v=5 5\n").status,
        204
    );
    for i in 0..300 {
        let r = post(&url, &[], format!("m v={i} {i}\n").as_bytes());
        assert_eq!(r.status, 503);
    }
    std::thread::sleep(Duration::from_millis(200));
    let logs = agent.logs();
    let lines = logs.lines().filter(|l| l.contains("write refused")).count();
    assert!((1..=10).contains(&lines), "{lines} lines:\n{logs}");
    assert!(
        logs.contains("buffer of output outputs.file is full"),
        "{logs}"
    );
}
