//! `outputs.influxdb` / `outputs.influxdb_v2` against a real InfluxDB 1.6.7, and against a
//! scripted fake upstream for the answers a real one cannot be made to give.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use crate::influxd::{free_port, Influxd};

fn relay_config(urls: &[String], extra: &str, buffer: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"
[agent]
  data_dir = "{{dir}}/data"
  flush_interval = "100ms"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.influxdb]]
  urls = [{}]
  timeout = "1s"
{extra}
{buffer}
"#,
        urls.join(", ")
    )
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn delivers_dbs_rps_precisions_with_exact_values_and_types() {
    let influx = Influxd::start(0);
    influx.query(
        "CREATE DATABASE b; CREATE RETENTION POLICY week ON b DURATION 7d REPLICATION 1",
        "",
    );
    let agent = TestAgent::start(&relay_config(&[influx.url("")], "", ""));
    let s = now_ns() / 1_000_000_000;
    let body = format!("m,host=a i=-5i,f=1.5,s=\"say \\\"hi\\\"\",b=true {s}\n");
    assert_eq!(
        post(&agent.url("/write?db=a&precision=s"), &[], body.as_bytes()).status,
        204
    );
    let ms = now_ns() / 1_000_000;
    let body = format!("w,t=x\\ y v=42i {ms}\n");
    assert_eq!(
        post(
            &agent.url("/write?db=b&rp=week&precision=ms"),
            &[],
            body.as_bytes()
        )
        .status,
        204
    );
    // Both writes upstream (the `||` once bound looser than `&&`, and the test went on with
    // only the second there, failing on the first's missing series).
    assert!(eventually(Duration::from_secs(15), || influx
        .count("a", "m", "i")
        == 1
        && (influx.count("b", "week.w", "v") == 1
            || influx.query("SELECT count(v) FROM week.w", "b")
                ["results"][0]["series"][0]["values"][0][1]
                == 1)));
    let a = influx.query("SELECT * FROM m", "a");
    let row = &a["results"][0]["series"][0];
    let cols: Vec<&str> = row["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let vals = &row["values"][0];
    let get = |c: &str| &vals[cols.iter().position(|x| *x == c).unwrap()];
    assert_eq!(get("time").as_i64().unwrap(), s * 1_000_000_000);
    assert_eq!(get("i").as_i64(), Some(-5));
    assert_eq!(get("f").as_f64(), Some(1.5));
    assert_eq!(get("s").as_str(), Some("say \"hi\""));
    assert_eq!(get("b").as_bool(), Some(true));
    assert_eq!(get("host").as_str(), Some("a"));
    let types = influx.query("SHOW FIELD KEYS FROM m", "a");
    let types: Vec<(String, String)> = types["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap().to_owned(),
                v[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        types.contains(&("i".into(), "integer".into()))
            && types.contains(&("f".into(), "float".into()))
    );
    assert!(
        types.contains(&("s".into(), "string".into()))
            && types.contains(&("b".into(), "boolean".into()))
    );
    let w = influx.query("SELECT * FROM week.w", "b");
    assert_eq!(
        w["results"][0]["series"][0]["values"][0][0]
            .as_i64()
            .unwrap(),
        ms * 1_000_000
    );
    assert_eq!(
        w["results"][0]["series"][0]["values"][0][1].as_str(),
        Some("x y")
    );
}

/// Waits until the upstream has all `acked` points of measurement `load` in `db`.
fn assert_delivered(influx: &Influxd, db: &str, acked: u64, agent: &TestAgent, within: Duration) {
    assert!(
        eventually(within, || influx.count(db, "load", "v") == acked),
        "upstream has {} of {acked} acknowledged points\n{}",
        influx.count(db, "load", "v"),
        agent.logs()
    );
}

/// Writes `requests` requests of 10 unique points on a thread; returns the points acknowledged.
fn write_load(
    url: String,
    requests: usize,
    stop: Arc<AtomicBool>,
    base: i64,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut acked = 0;
        for r in 0..requests {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let body: String = (0..10)
                .map(|k| format!("load v={k}i {}\n", base + (r * 10 + k) as i64))
                .collect();
            if post(&url, &[], body.as_bytes()).status == 204 {
                acked += 10;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        acked
    })
}

#[test]
fn upstream_killed_restarted_and_hung_loses_nothing() {
    outage_loses_nothing("");
}

/// The same outages with several batches in flight at once (the pipelined path: batches
/// complete out of order, are consumed in order, and a failure cancels those behind it).
#[test]
fn upstream_outages_lose_nothing_with_batches_in_flight() {
    outage_loses_nothing("  max_in_flight = 4\n  metric_batch_size = 30");
}

fn outage_loses_nothing(extra: &str) {
    let mut influx = Influxd::start(0);
    let agent = TestAgent::start(&relay_config(&[influx.url("")], extra, ""));
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(
        agent.url("/write?db=load"),
        400,
        Arc::clone(&stop),
        now_ns() - 3_600_000_000_000,
    );
    std::thread::sleep(Duration::from_millis(800));
    influx.kill();
    std::thread::sleep(Duration::from_millis(1500));
    influx.restart();
    std::thread::sleep(Duration::from_millis(800));
    influx.signal("STOP"); // hung: accepts connections, never answers
    std::thread::sleep(Duration::from_millis(2500));
    influx.signal("CONT");
    let acked = load.join().unwrap();
    assert!(acked > 1000, "acked {acked}");
    assert_delivered(&influx, "load", acked, &agent, Duration::from_secs(60));
}

/// Writes 500 points (50 requests of 10, an hour back) into `db` and checks every one was
/// acknowledged; returns how many.
fn write_500(agent: &TestAgent, db: &str) -> u64 {
    let base = now_ns() - 3_600_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = write_load(agent.url(&format!("/write?db={db}")), 50, stop, base)
        .join()
        .unwrap();
    assert_eq!(acked, 500);
    acked
}

#[test]
fn backlog_survives_sigkill_of_heliograph() {
    let mut influx = Influxd::start(0);
    influx.kill(); // upstream down: everything spools to disk
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = relay_config(&[influx.url("")], "", "");
    let agent = TestAgent::start_in(Arc::clone(&dir), &config);
    let acked = write_500(&agent, "spool");
    signal(&agent.child, "KILL");
    drop(agent);
    influx.restart();
    let agent = TestAgent::start_in(dir, &config);
    assert_delivered(&influx, "spool", acked, &agent, Duration::from_secs(30));
}

/// heliograph killed while several batches are in flight to a hung upstream: after the restart
/// every acknowledged point arrives (those in flight are sent again; InfluxDB keeps one copy).
#[test]
fn sigkill_with_batches_in_flight_loses_nothing() {
    let influx = Influxd::start(0);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let extra = "  max_in_flight = 4\n  metric_batch_size = 30";
    let config = relay_config(&[influx.url("")], extra, "");
    let agent = TestAgent::start_in(Arc::clone(&dir), &config);
    influx.signal("STOP"); // requests reach it and hang there
    let acked = write_500(&agent, "inflight");
    std::thread::sleep(Duration::from_millis(300)); // batches sent, none answered
    signal(&agent.child, "KILL");
    drop(agent);
    influx.signal("CONT");
    let agent = TestAgent::start_in(dir, &config);
    assert_delivered(&influx, "inflight", acked, &agent, Duration::from_secs(30));
}

#[test]
fn poison_batch_is_dead_lettered_while_the_rest_flows() {
    let influx = Influxd::start(0);
    let agent = TestAgent::start(&relay_config(&[influx.url("")], "", ""));
    let t = now_ns() - 1_000_000_000;
    assert_eq!(
        post(
            &agent.url("/write?db=p"),
            &[],
            format!("m v=1 {t}\n").as_bytes()
        )
        .status,
        204
    );
    assert!(eventually(Duration::from_secs(10), || influx
        .count("p", "m", "v")
        == 1));
    // A string into a float field: InfluxDB answers 400 (field type conflict) for good.
    assert_eq!(
        post(
            &agent.url("/write?db=p"),
            &[],
            format!("m v=\"text\" {}\n", t + 1).as_bytes()
        )
        .status,
        204
    );
    assert!(eventually(Duration::from_secs(10), || agent
        .logs()
        .contains("moved to the dead-letter file")));
    assert_eq!(
        post(
            &agent.url("/write?db=p"),
            &[],
            format!("m v=3 {}\n", t + 2).as_bytes()
        )
        .status,
        204
    );
    assert!(
        eventually(Duration::from_secs(10), || influx.count("p", "m", "v") == 2),
        "{}",
        agent.logs()
    );
    let dead = std::fs::read_to_string(agent.path("data/deadletter/outputs_influxdb.lp")).unwrap();
    assert!(
        dead.contains("status=400") && dead.contains("field type conflict"),
        "{dead}"
    );
    assert!(dead.contains(&format!("m v=\"text\" {}", t + 1)), "{dead}");
}

#[test]
fn too_large_batches_are_split() {
    let influx = Influxd::start(2000);
    let agent = TestAgent::start(&relay_config(&[influx.url("")], "", ""));
    let base = now_ns() - 1_000_000_000;
    let body: String = (0..200)
        .map(|i| format!("big,host=h{i} value={i}i {}\n", base + i))
        .collect();
    assert_eq!(
        post(&agent.url("/write?db=s"), &[], body.as_bytes()).status,
        204
    );
    assert!(
        eventually(Duration::from_secs(20), || influx
            .count("s", "big", "value")
            == 200),
        "{} of 200\n{}",
        influx.count("s", "big", "value"),
        agent.logs()
    );
}

#[test]
fn full_spool_answers_503_then_recovers() {
    let mut influx = Influxd::start(0);
    influx.kill();
    let agent = TestAgent::start(&relay_config(&[influx.url("")], "  buffer_limit = 100", ""));
    let base = now_ns() - 1_000_000_000;
    let body = |from: i64| -> String {
        (0..50)
            .map(|i| format!("f v={i}i {}\n", base + from + i))
            .collect()
    };
    assert_eq!(
        post(&agent.url("/write?db=f"), &[], body(0).as_bytes()).status,
        204
    );
    assert_eq!(
        post(&agent.url("/write?db=f"), &[], body(50).as_bytes()).status,
        204
    );
    let r = post(&agent.url("/write?db=f"), &[], body(100).as_bytes());
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    influx.restart();
    assert!(
        eventually(Duration::from_secs(30), || influx.count("f", "f", "v")
            == 100),
        "{}",
        agent.logs()
    );
    // Points are queryable upstream a moment before heliograph has the 204 and frees their
    // room in the spool: wait for that, then the spool takes writes again.
    let drained = "heliograph_output_queued_points{output=\"outputs.influxdb\"} 0";
    assert!(eventually(Duration::from_secs(10), || request(
        "GET",
        &agent.url("/metrics"),
        &[]
    )
    .body
    .lines()
    .any(|l| l == drained)));
    assert_eq!(
        post(&agent.url("/write?db=f"), &[], body(100).as_bytes()).status,
        204
    );
    assert!(eventually(Duration::from_secs(10), || influx
        .count("f", "f", "v")
        == 150));
}

/// A scripted upstream: answers each request with the next (status, headers) of `script`
/// (the last one repeats) and records what it got.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

fn fake(script: Vec<(u16, &'static str)>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock()
                    .unwrap()
                    .push((target.clone(), String::from_utf8_lossy(&body).into_owned()));
                let (status, headers) = if target.starts_with("/query") {
                    (200, "")
                } else {
                    let s = script[n.min(script.len() - 1)];
                    n += 1;
                    s
                };
                let body = r#"{"error":"scripted"}"#;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{headers}\r\n{body}",
                    body.len()
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    Fake { url, seen }
}

impl Fake {
    fn writes(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.contains("write?"))
            .map(|(_, b)| b.clone())
            .collect()
    }
}

#[test]
fn retries_5xx_and_429_honouring_retry_after() {
    let up = fake(vec![(503, ""), (429, "Retry-After: 2\r\n"), (204, "")]);
    let agent = TestAgent::start(&relay_config(
        std::slice::from_ref(&up.url),
        "",
        "  buffer = \"memory\"",
    ));
    let started = std::time::Instant::now();
    assert_eq!(
        post(&agent.url("/write?db=r"), &[], b"m v=1 1\n").status,
        204
    );
    assert!(
        eventually(Duration::from_secs(15), || up.writes().len() == 3),
        "{:?}",
        up.writes()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
    assert!(up.writes().iter().all(|b| b == "m v=1 1\n"));
}

#[test]
fn unauthorized_pauses_and_keeps_the_batch() {
    let up = fake(vec![(401, ""), (401, ""), (204, "")]);
    let agent = TestAgent::start(&relay_config(
        std::slice::from_ref(&up.url),
        "",
        "  buffer = \"memory\"",
    ));
    assert_eq!(
        post(&agent.url("/write?db=r"), &[], b"m v=1 1\n").status,
        204
    );
    assert!(eventually(Duration::from_secs(5), || agent
        .logs()
        .contains("the output is paused")));
    assert!(
        eventually(Duration::from_secs(40), || up.writes().len() == 3),
        "{}",
        agent.logs()
    );
}

#[test]
fn fails_over_to_the_next_url() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let up = fake(vec![(204, "")]);
    let agent = TestAgent::start(&relay_config(
        &[dead, up.url.clone()],
        "",
        "  buffer = \"memory\"",
    ));
    assert_eq!(
        post(&agent.url("/write?db=r"), &[], b"m v=1 1\n").status,
        204
    );
    assert!(
        eventually(Duration::from_secs(5), || up.writes().len() == 1),
        "{}",
        agent.logs()
    );
}

#[test]
fn influxdb_v2_writes_to_buckets_with_a_token() {
    let up = fake(vec![(204, "")]);
    let cfg = format!(
        r#"
[agent]
  data_dir = "{{dir}}/data"
  flush_interval = "100ms"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.influxdb_v2]]
  urls = ["{}"]
  token = "tok"
  organization = "org"
  content_encoding = "identity"
"#,
        up.url
    );
    let agent = TestAgent::start(&cfg);
    assert_eq!(
        post(&agent.url("/write?db=d&rp=r"), &[], b"m v=1 1\n").status,
        204
    );
    assert!(eventually(Duration::from_secs(5), || !up
        .writes()
        .is_empty()));
    let seen = up.seen.lock().unwrap();
    assert!(
        seen[0]
            .0
            .starts_with("/api/v2/write?org=org&bucket=d%2Fr&precision=ns"),
        "{:?}",
        seen[0]
    );
}

/// `--once` delivers what it gathered before it exits, with batches in flight too (a shutdown
/// keeps sending; only a reload stops taking new batches).
#[test]
fn once_delivers_before_exit_with_batches_in_flight() {
    let influx = Influxd::start(0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("once.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
  data_dir = "{}"
  omit_hostname = true
[[inputs.mem]]
[[outputs.influxdb]]
  urls = ["{}"]
  max_in_flight = 4
"#,
            dir.path().join("data").display(),
            influx.url("")
        ),
    )
    .unwrap();
    run_ok(&["--config", config.to_str().unwrap(), "--once"], &[], None);
    assert_eq!(influx.count("telegraf", "mem", "total"), 1);
}

/// Names with backslashes (Windows paths, as Telegraf writes them) arrive upstream as they do
/// when written to InfluxDB directly: the relay spells them as 1.x reads them.
#[test]
fn backslashes_in_names_arrive_as_written_directly() {
    let influx = Influxd::start(0);
    influx.query("CREATE DATABASE direct", "");
    let agent = TestAgent::start(&relay_config(&[influx.url("")], "", ""));
    let s = now_ns() / 1_000_000_000;
    let body = format!(
        "win\\ disk,instance=C:\\Windows\\System32,share=x\\y\\,z,sp=a\\ b free=1i,s=\"q\\\\r\" {s}\n"
    );
    let direct = post(
        &influx.url("/write?db=direct&precision=s"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(direct.status, 204);
    let relayed = post(
        &agent.url("/write?db=relay&precision=s"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(relayed.status, 204);
    assert!(eventually(Duration::from_secs(15), || influx
        .count("relay", "win disk", "free")
        == 1));
    let rows = |db: &str| influx.query("SELECT * FROM \"win disk\"", db)["results"][0].clone();
    let want = rows("direct");
    assert_eq!(
        want["series"][0]["values"][0][2].as_str(),
        Some("C:\\Windows\\System32"),
        "{want}"
    );
    assert_eq!(rows("relay"), want);
}
