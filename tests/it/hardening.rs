//! What a hostile client or an unlucky operator can break: overlong durations, config values
//! that cannot work, two agents on one data_dir, a reload that moves data_dir, export ranges.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

const BUCKETS: &str = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.buckets]]
"#;

/// A listener (with `listener` keys) into local buckets.
fn buckets_with(listener: &str) -> String {
    BUCKETS.replace(
        "  service_address = \"127.0.0.1:0\"\n",
        &format!("  service_address = \"127.0.0.1:0\"\n{listener}\n"),
    )
}

/// The line of `config` that holds `needle`, 1-based.
fn line_of(config: &str, needle: &str) -> usize {
    config
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}

#[test]
fn durations_past_292_years_are_config_errors_never_data_loss() {
    let config =
        "[agent]\n  interval = \"10s\"\n[[outputs.buckets]]\n  default_retention = \"4000000h\"\n";
    let (code, _, err) = check(config);
    assert_eq!(code, 1, "{err}");
    let line = line_of(config, "4000000h");
    assert!(
        err.contains(&format!("agent.toml:{line}:")) && err.contains("`default_retention`"),
        "names file, line and key: {err}"
    );
    assert!(err.contains("too long") && err.contains("INF"), "{err}");
    // Every duration key: an input's interval, the listener's timeouts, the agent's.
    for (section, key) in [
        ("[agent]", "flush_interval"),
        ("[[inputs.cpu]]", "interval"),
        ("[[inputs.influxdb_listener]]", "read_timeout"),
        ("[[outputs.buckets]]", "partition_duration"),
    ] {
        let config = format!("{section}\n  {key} = \"3000000h\"\n[[outputs.file]]\n");
        let (code, _, err) = check(&config);
        assert_eq!(code, 1, "{section} {key}: {err}");
        assert!(err.contains("agent.toml:2:") && err.contains(key), "{err}");
    }
    // An integer of seconds past the bound too.
    let (code, _, err) = check("[agent]\n  flush_interval = 9300000000000\n[[outputs.file]]\n");
    assert_eq!(code, 1, "{err}");
}

#[test]
fn infinite_retention_keeps_points_of_any_age() {
    let config = format!("{BUCKETS}  default_retention = \"INF\"\n");
    let agent = TestAgent::start(&config);
    // 1990: long past any finite default, kept forever.
    let old = 631_152_000_000_000_000i64;
    let r = post(
        &agent.url("/write?db=forever"),
        &[],
        format!("m v=1i {old}\nm v=2i {}", now_ns()).as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let lines = agent.export("forever", &[]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with(&old.to_string()), "{lines:?}");
    let r = post(
        &agent.url("/query"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"q=SHOW RETENTION POLICIES ON forever",
    );
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"][0][1],
        "0s",
        "INF is InfluxDB's 0s: {}",
        r.body
    );
}

#[test]
fn the_longest_retention_keeps_what_was_stored() {
    let agent = TestAgent::start(BUCKETS);
    let t = now_ns() - 3_600_000_000_000;
    let r = post(
        &agent.url("/write?db=d"),
        &[],
        format!("m v=1i {t}").as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let dir = Arc::clone(&agent.dir);
    drop(agent);
    // The largest retention the config takes: nothing expires, every write is accepted.
    let agent = TestAgent::start_in(
        dir,
        &format!("{BUCKETS}  default_retention = \"2562047h\"\n  compaction_interval = \"50ms\"\n"),
    );
    let r = post(
        &agent.url("/write?db=d"),
        &[],
        format!("m v=2i {}", now_ns()).as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.export("d", &[]).len(), 2);
}

#[test]
fn values_that_cannot_work_are_config_errors() {
    for (config, key) in [
        (
            "[agent]\n  interval = \"0s\"\n[[outputs.file]]\n",
            "interval",
        ),
        (
            "[[inputs.cpu]]\n  interval = \"0s\"\n[[outputs.file]]\n",
            "interval",
        ),
        ("[[outputs.file]]\n  buffer_limit = 0\n", "buffer_limit"),
        (
            "[agent]\n  metric_buffer_limit = 0\n[[outputs.file]]\n",
            "metric_buffer_limit",
        ),
        (
            "[agent]\n  metric_batch_size = 0\n[[outputs.file]]\n",
            "metric_batch_size",
        ),
        (
            "[agent]\n  flush_interval = \"0s\"\n[[outputs.file]]\n",
            "flush_interval",
        ),
    ] {
        let (code, _, err) = check(config);
        assert_eq!(code, 1, "{config}: {err}");
        assert!(
            err.contains("agent.toml:2:") && err.contains(&format!("`{key}`")),
            "{config}: {err}"
        );
    }
}

/// Waits for the process to exit (bounded) and returns its code and standard error.
fn exit_of(mut child: std::process::Child, within: Duration) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                stderr.read_to_string(&mut err).unwrap();
            }
            return (status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_agents_never_share_a_data_dir_of_disk_buffers() {
    // No [[outputs.buckets]]: only a disk-buffered relay output keeps state in data_dir.
    let config = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.influxdb]]
  urls = ["http://127.0.0.1:9"]
  skip_database_creation = true
"#;
    let agent = TestAgent::start(config);
    let r = post(&agent.url("/write?db=d"), &[], b"m v=1i");
    assert_eq!(r.status, 204, "{}", r.body);
    let second = Command::new(binary())
        .arg("--config")
        .arg(agent.path("agent.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, err) = exit_of(second, Duration::from_secs(20));
    assert_eq!(
        code,
        Some(1),
        "the second agent must refuse to start: {err}"
    );
    assert!(err.contains("is in use by another heliograph"), "{err}");
    // A memory-only configuration keeps nothing there and needs no lock.
    let memory = config.replace(
        "skip_database_creation = true",
        "skip_database_creation = true\n  buffer = \"memory\"",
    );
    let other = TestAgent::start_in(Arc::clone(&agent.dir), &memory);
    drop(other);
}

#[test]
fn a_reload_that_moves_data_dir_is_refused_and_the_running_one_kept() {
    let mut agent = TestAgent::start(BUCKETS);
    let r = post(&agent.url("/write?db=d"), &[], b"m v=1i");
    assert_eq!(r.status, 204);
    let moved = BUCKETS.replace("{dir}/data", "{dir}/elsewhere");
    let moved = moved.replace("{dir}", agent.dir.path().to_str().unwrap());
    std::fs::write(agent.path("agent.toml"), moved).unwrap();
    signal(&agent.child, "HUP");
    assert!(
        eventually(Duration::from_secs(10), || agent
            .logs()
            .contains("data_dir cannot change by a reload")),
        "{}",
        agent.logs()
    );
    // Still writing where it was: the second point is exported from the running data_dir.
    let r = post(&agent.url("/write?db=d"), &[], b"m v=2i");
    assert_eq!(r.status, 204);
    assert!(!agent.path("elsewhere").exists());
    std::fs::write(
        agent.path("agent.toml"),
        BUCKETS.replace("{dir}", agent.dir.path().to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(agent.export("d", &[]).len(), 2);
    assert!(agent.terminate(Duration::from_secs(20)).success());
}

#[test]
fn export_ranges_are_read_as_rfc_3339_and_an_inverted_one_is_an_error() {
    let agent = TestAgent::start(BUCKETS);
    let r = post(
        &agent.url("/write?db=d"),
        &[],
        format!("m v=1i {}", now_ns()).as_bytes(),
    );
    assert_eq!(r.status, 204);
    // Year 0001 is before any nanosecond timestamp: every point is after it.
    let lines = agent.export("d", &["--start", "0001-01-01T00:00:00Z"]);
    assert_eq!(lines.len(), 1);
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .args(["export", "--db", "d", "--config"])
            .arg(agent.path("agent.toml"))
            .args(args)
            .current_dir(agent.dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--start", "2024-01-01T00:00:00+25:00"]);
    assert_eq!(code, Some(1), "+25:00 is no RFC 3339 offset: {err}");
    assert!(err.contains("--start"), "{err}");
    let (code, err) = run(&[
        "--start",
        "2024-02-01T00:00:00Z",
        "--end",
        "2024-01-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("after --end"), "{err}");
}

/// Every file and directory the agent creates in `data_dir` (and `data_dir` itself) before its
/// first `204` has its parent directory fsync'd after the creation and before that `204`: on a
/// file system that does not order directory updates, nothing acknowledged hangs on an entry a
/// power cut could take away. Read from strace's record of the agent's system calls.
#[test]
fn every_new_entry_is_fsynced_in_its_parent_before_the_first_204() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (apt-get install strace)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = crate::influxd::free_port();
    let data = dir.path().join("data");
    let config = format!(
        r#"
[agent]
  data_dir = "{}"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:{port}"
[[outputs.buckets]]
[[outputs.influxdb]]
  urls = ["http://127.0.0.1:9"]
  skip_database_creation = true
"#,
        data.display()
    );
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let trace = dir.path().join("trace");
    let child = Command::new("strace")
        .args(["-f", "-y", "-s", "24", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=mkdir,mkdirat,open,openat,rename,renameat,renameat2,fsync,fdatasync,write,writev,sendto,sendmsg",
        ])
        .arg(binary())
        .arg("--config")
        .arg(&config_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/write?db=d");
    let mut status = 0;
    let up = eventually(Duration::from_secs(30), || {
        match ureq::post(&url).send_bytes(b"m v=1i") {
            Ok(r) => status = r.status(),
            Err(ureq::Error::Status(s, _)) => status = s,
            Err(_) => return false,
        }
        true
    });
    // A killed strace leaves its tracee running: stop the agent itself (the trace's first
    // pid); strace then ends by itself, its trace complete.
    let first = std::fs::read_to_string(&trace).unwrap_or_default();
    if let Some(pid) = first
        .split_whitespace()
        .next()
        .filter(|p| p.parse::<u32>().is_ok())
    {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    let _ = exit_of(child, Duration::from_secs(10));
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(up, "the agent did not answer under strace");
    assert_eq!(status, 204);
    let data = data.to_str().unwrap();
    let violations = unsynced_entries(&text, data);
    assert!(
        violations.is_empty(),
        "created before the first 204 without an fsync of their parent before it: {violations:?}"
    );
    // The check has teeth: data_dir itself was created, and its parent synced.
    assert!(text.contains(&format!("mkdir(\"{data}\"")), "{text}");
}

/// The entries under `root` (and `root`) created before the first `HTTP/1.1 204` written to a
/// socket whose parent was not fsync'd between their creation and that response.
fn unsynced_entries(trace: &str, root: &str) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    // strace -f prefixes each line with the pid; -y adds <path> after descriptors.
    let quoted =
        |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut opened: BTreeSet<String> = BTreeSet::new();
    let mut synced: Vec<(usize, String)> = Vec::new();
    let mut answered = None;
    for (i, line) in trace.lines().enumerate() {
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest.trim_start());
        let ok = !call.contains("= -1");
        if (call.starts_with("writev(")
            || call.starts_with("write(")
            || call.starts_with("sendto("))
            && call.contains("HTTP/1.1 204")
        {
            answered = Some(i);
            break;
        }
        if !ok || call.contains("<unfinished") {
            continue;
        }
        if call.starts_with("mkdir") {
            if let Some(p) = quoted(call).into_iter().next() {
                created.entry(p).or_insert(i);
            }
        } else if call.starts_with("open") {
            if let Some(p) = quoted(call).into_iter().next() {
                if call.contains("O_CREAT") && !opened.contains(&p) {
                    created.entry(p.clone()).or_insert(i);
                }
                opened.insert(p);
            }
        } else if call.starts_with("rename") {
            if let Some(p) = quoted(call).into_iter().nth(1) {
                created.insert(p, i);
            }
        } else if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            if let Some(p) = call.split_once('<').and_then(|(_, r)| r.split_once('>')) {
                synced.push((i, p.0.to_owned()));
            }
        }
    }
    let Some(answered) = answered else {
        return vec!["no 204 in the trace".into()];
    };
    created
        .into_iter()
        .filter(|(p, _)| (p == root || p.starts_with(&format!("{root}/"))) && !p.ends_with(".tmp"))
        .filter(|(p, at)| {
            let parent = std::path::Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            !synced
                .iter()
                .any(|(i, d)| *i > *at && *i < answered && *d == parent)
        })
        .map(|(p, _)| p)
        .collect()
}

/// The token tables of a listener (into local buckets: [`buckets_with`]).
const RATED: &str = r#"  [[inputs.influxdb_listener.token]]
    name = "slow"
    secret = "s3cret"
    databases = ["*"]
    max_points_per_second = 10
"#;

#[test]
fn a_request_over_the_rate_is_refused_and_never_locks_the_token_out() {
    let agent = TestAgent::start(&buckets_with(RATED));
    let url = agent.url("/write?db=r&p=s3cret");
    let t = now_ns();
    // 200,000 points can never fit in 10 per second: 413, and nothing taken from the rate.
    let big: String = (0..200_000)
        .map(|i| format!("m v={i}i {}\n", t + i))
        .collect();
    let r = post(&url, &[], big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("split"), "{}", r.body);
    assert!(r.header("retry-after").is_none());
    // The token is not locked out: a request within its rate goes through at once.
    let eight: String = (0..8).map(|i| format!("m v={i}i {}\n", t + i)).collect();
    assert_eq!(post(&url, &[], eight.as_bytes()).status, 204);
    // Eight more do not fit yet: 429, with when they will.
    let r = post(&url, &[], eight.as_bytes());
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // And they do after that wait.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(post(&url, &[], eight.as_bytes()).status, 204);
    assert_eq!(
        agent.export("r", &[]).len(),
        16,
        "both admitted writes are stored, nothing of the refused ones"
    );
}

/// The token tables of a listener (into local buckets: [`buckets_with`]).
const TENANTS: &str = r#"  [[inputs.influxdb_listener.token]]
    name = "team-a"
    secret = "sa"
    databases = ["team_a"]
  [[inputs.influxdb_listener.token]]
    name = "team-b"
    secret = "sb"
    databases = ["team_b"]
  [[inputs.influxdb_listener.token]]
    name = "ops"
    secret = "so"
    databases = ["*"]
    permissions = ["write", "read", "manage"]
  [[inputs.influxdb_listener.token]]
    name = "ingest"
    secret = "si"
    databases = ["*"]
    permissions = ["write"]
"#;

fn query_as(agent: &TestAgent, secret: &str, q: &str, db: Option<&str>) -> Reply {
    let mut form = format!("q={}", q.replace(' ', "+"));
    if let Some(db) = db {
        form.push_str(&format!("&db={db}"));
    }
    post(
        &agent.url("/query"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &format!("Token {secret}")),
        ],
        form.as_bytes(),
    )
}

#[test]
fn tokens_carry_permissions_and_a_refusal_reveals_no_database() {
    let agent = TestAgent::start(&buckets_with(TENANTS));
    for (secret, db) in [("sa", "team_a"), ("sb", "team_b")] {
        let r = post(
            &agent.url(&format!("/write?db={db}")),
            &[("Authorization", &format!("Token {secret}"))],
            b"cpu v=1i",
        );
        assert_eq!(r.status, 204, "{}", r.body);
    }
    // Reading its own database: yes; another's, no, and the answer for a database that
    // exists is the answer for one that does not.
    let r = query_as(&agent, "sa", "SHOW MEASUREMENTS ON team_a", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][0]["series"][0]["values"][0][0], "cpu");
    for statement in ["SHOW MEASUREMENTS ON", "SHOW RETENTION POLICIES ON"] {
        let exists = query_as(&agent, "sa", &format!("{statement} team_b"), None);
        let missing = query_as(&agent, "sa", &format!("{statement} team_z"), None);
        assert_eq!(exists.status, 403, "{}", exists.body);
        assert_eq!(missing.status, 403, "{}", missing.body);
        assert_eq!(
            exists.body.replace("team_b", "DB"),
            missing.body.replace("team_z", "DB"),
            "the refusal is the same whether the database exists"
        );
        assert!(!exists.body.contains("not found"), "{}", exists.body);
    }
    // The db parameter is checked too.
    assert_eq!(
        query_as(&agent, "sa", "SHOW MEASUREMENTS", Some("team_b")).status,
        403
    );
    // SHOW DATABASES lists only what the token may read.
    let r = query_as(&agent, "sa", "SHOW DATABASES", None);
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"],
        serde_json::json!([["team_a"]])
    );
    // Writing is not managing: a default token cannot drop even its own database.
    let r = query_as(&agent, "sa", "DROP DATABASE team_a", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("may not manage"), "{}", r.body);
    // One refused statement refuses the request: nothing of it runs.
    let r = query_as(&agent, "so", "SHOW DATABASES", None);
    assert_eq!(r.status, 200);
    let r = query_as(
        &agent,
        "sa",
        "CREATE DATABASE team_a; DROP DATABASE team_b",
        None,
    );
    assert_eq!(r.status, 403);
    // A write-only token reads nothing.
    let r = query_as(&agent, "si", "SHOW DATABASES", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        post(
            &agent.url("/write?db=any"),
            &[("Authorization", "Token si")],
            b"m v=1i"
        )
        .status,
        204
    );
    // A manager manages.
    assert_eq!(
        query_as(&agent, "so", "DROP DATABASE team_b", None).status,
        200
    );
    assert!(agent.export("team_a", &[]).len() == 1);
    let r = query_as(&agent, "so", "SHOW DATABASES", None);
    assert!(!r.body.contains("team_b"), "{}", r.body);
}

/// Telegraf's generated configuration (its `agent.conf` and the sample config of each plugin
/// heliograph shares) loads unchanged: `check` accepts it and `--test` runs it.
#[test]
fn telegrafs_generated_config_loads_unchanged() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("clientca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/telegraf.conf");
    let text = std::fs::read_to_string(fixture).unwrap();
    assert!(text.contains("max_body_size = 0") && text.contains("[processors.converter.tags]"));
    let config = dir.path().join("telegraf.conf");
    std::fs::write(
        &config,
        text.replace("/etc/telegraf/", &format!("{}/", dir.path().display())),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check refused Telegraf's config: {err}"
    );
    // The converter that converts nothing is a no-op, as in Telegraf: said, not refused.
    assert!(
        err.contains("warning:") && err.contains("no conversion"),
        "{err}"
    );
    let out = Command::new(binary())
        .args(["--test", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "--test failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout);
    for m in ["cpu", "mem", "system", "processes", "kernel", "swap"] {
        assert!(
            lines.lines().any(|l| l.split([',', ' ']).next() == Some(m)),
            "{m} missing from --test: {lines}"
        );
    }
}

/// The agent's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Sends a raw HTTP request (headers, then `body`) and returns the status of the answer, or 0
/// when the connection closed without one.
fn raw_post(addr: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        // The agent may answer (and close) before the whole body is sent.
    }
    let mut answer = [0u8; 12];
    match s.read_exact(&mut answer) {
        Ok(()) => std::str::from_utf8(&answer[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// 60 concurrent gzip bombs and 300 connections that claim a full-size body and send 6 KB:
/// the bodies in flight stay within `max_inflight_body_bytes`, RSS stays under a bound far
/// below what the bombs alone would take, and an honest writer is served all along.
#[test]
fn bombs_and_lying_content_lengths_cannot_exhaust_memory() {
    const MAX_BODY: usize = 4 << 20;
    let agent = TestAgent::start(&buckets_with(
        "  max_body_size = \"4MiB\"\n  read_timeout = \"30s\"",
    ));
    let pid = agent.child.id();
    let addr = agent.addr.clone();
    // Decompresses to more than max_body_size: each would hold 4 MiB, 240 MiB in all.
    let line = b"bomb,host=h value=1i 1700000000000000000\n";
    let mut plain = Vec::with_capacity(MAX_BODY + 1024 * 1024);
    while plain.len() < MAX_BODY + (1 << 20) {
        plain.extend_from_slice(line);
    }
    let bomb = Arc::new(gzip(&plain));
    drop(plain);
    assert!(bomb.len() < 200 << 10, "{}", bomb.len());
    // 300 connections that claim 4 MiB, send 6 KB and wait.
    let liars: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&addr).ok()?;
            let head = format!(
                "POST /write?db=l HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).ok()?;
            s.write_all(&vec![b'x'; 6 << 10]).ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(liars.len(), 300);
    let bombs: Vec<_> = (0..60)
        .map(|_| {
            let (addr, bomb) = (addr.clone(), Arc::clone(&bomb));
            std::thread::spawn(move || {
                raw_post(
                    &addr,
                    "/write?db=b",
                    &format!(
                        "Content-Encoding: gzip\r\nContent-Length: {}\r\n",
                        bomb.len()
                    ),
                    &bomb,
                )
            })
        })
        .collect();
    // The honest writer, meanwhile: each write is served (after Retry-After waits at most).
    let honest_url = agent.url("/write?db=h");
    let honest = std::thread::spawn(move || {
        let mut served = 0;
        for i in 0..20 {
            let body = format!("ok,i={i} v={i}i");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let r = post(&honest_url, &[], body.as_bytes());
                if r.status == 204 {
                    served += 1;
                    break;
                }
                assert_eq!(r.status, 503, "{}", r.body);
                assert!(
                    std::time::Instant::now() < deadline,
                    "an honest write was not served"
                );
                let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
                std::thread::sleep(Duration::from_millis(200 * wait));
            }
        }
        served
    });
    let statuses: Vec<u16> = bombs.into_iter().map(|b| b.join().unwrap()).collect();
    assert_eq!(honest.join().unwrap(), 20);
    // Each bomb is refused: 413 (past max_body_size) or 503 (past the bodies' budget).
    assert!(
        statuses.iter().all(|s| *s == 413 || *s == 503),
        "{statuses:?}"
    );
    let peak = peak_rss(pid);
    eprintln!(
        "peak RSS under 60 bombs and 300 lying Content-Lengths: {} MiB; bomb statuses: 413 x{}, 503 x{}",
        peak >> 20,
        statuses.iter().filter(|s| **s == 413).count(),
        statuses.iter().filter(|s| **s == 503).count()
    );
    // The bodies together hold at most 16 MiB (4 x max_body_size); the rest is the agent.
    assert!(peak < 160 << 20, "peak RSS {} MiB", peak >> 20);
    drop(liars);
    assert_eq!(agent.export("h", &[]).len(), 20);
}

/// Every slot held by idle and slowloris connections: a new writer is served within a second,
/// because the connections that wait outside a request are closed to make room.
#[test]
fn idle_and_slowloris_connections_cannot_hold_every_slot() {
    use std::io::Write;
    let agent = TestAgent::start(&buckets_with("  max_connections = 64"));
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = std::net::TcpStream::connect(&agent.addr).unwrap();
        if i % 2 == 0 {
            // Slowloris: headers begun, never finished.
            s.write_all(b"POST /write?db=s HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        held.push(s);
    }
    for i in 0..5 {
        let started = std::time::Instant::now();
        let r = post(
            &agent.url("/write?db=h"),
            &[],
            format!("m,i={i} v=1i").as_bytes(),
        );
        let waited = started.elapsed();
        assert_eq!(r.status, 204, "{}", r.body);
        assert!(
            waited < Duration::from_secs(1),
            "an honest writer waited {waited:?} for a slot"
        );
        eprintln!("honest write {i} served in {waited:?} with every slot taken");
    }
    drop(held);
    assert_eq!(agent.export("h", &[]).len(), 5);
}

/// `read_timeout` bounds headers and body together, and its answer is a 408.
#[test]
fn read_timeout_bounds_headers_and_body_together_with_a_408() {
    use std::io::{Read, Write};
    let agent = TestAgent::start(&buckets_with(
        "  read_timeout = \"3s\"\n  read_header_timeout = \"3s\"",
    ));
    let mut s = std::net::TcpStream::connect(&agent.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = std::time::Instant::now();
    // Headers over two seconds, then a body that never completes.
    let head = b"POST /write?db=slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    for chunk in head.chunks(head.len() / 4 + 1) {
        s.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    s.write_all(b"m v=1i\n").unwrap();
    let mut answer = String::new();
    let mut buf = [0u8; 1024];
    while !answer.contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed without an answer after {:?}",
            started.elapsed()
        );
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // 3 s from the first byte, not 3 s after the headers (which took 2 s).
    assert!(took < Duration::from_millis(4200), "408 after {took:?}");
    eprintln!("408 after {took:?} from the first byte");
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// After a burst of large writes, with no traffic, the agent's resident memory comes back to
/// within twice its idle size in a few seconds (it stayed at the burst's size until later
/// traffic arrived).
#[test]
fn memory_goes_back_after_a_burst() {
    let agent = TestAgent::start(&format!("{BUCKETS}  compaction_interval = \"1s\"\n"));
    let pid = agent.child.id();
    // The idle size of an agent that has taken a write (its write path's code is resident),
    // once it compacted that write.
    let r = post(&agent.url("/write?db=burst"), &[], b"warm v=1i");
    assert_eq!(r.status, 204);
    std::thread::sleep(Duration::from_millis(2500));
    let idle = rss(pid);
    let url = agent.url("/write?db=burst");
    let base = now_ns();
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut n = 0i64;
                while std::time::Instant::now() < until {
                    let body: String = (0..20_000)
                        .map(|i| {
                            format!(
                                "burst,writer={w},host=h{} value={i}i,text=\"some text {i}\" {}\n",
                                i % 100,
                                base + n * 20_000 + i
                            )
                        })
                        .collect();
                    let r = post(&url, &[], body.as_bytes());
                    assert!(r.status == 204 || r.status == 503, "{}", r.body);
                    n += 1;
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let peak = peak_rss(pid);
    let mut after = rss(pid);
    let settled = eventually(Duration::from_secs(10), || {
        after = rss(pid);
        after <= 2 * idle
    });
    eprintln!(
        "idle {} MiB, burst peak {} MiB, {} MiB after",
        idle >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        settled,
        "RSS {} MiB after the burst, idle {} MiB (peak {} MiB)",
        after >> 20,
        idle >> 20,
        peak >> 20
    );
}

#[test]
fn listener_limits_that_cannot_work_are_config_errors() {
    for (keys, says) in [
        (
            "  max_body_size = \"8MiB\"\n  max_inflight_body_bytes = \"1MiB\"",
            "`max_inflight_body_bytes`",
        ),
        (
            "  read_timeout = \"2s\"\n  read_header_timeout = \"5s\"",
            "`read_header_timeout` cannot be longer than `read_timeout`",
        ),
        (
            "  read_header_timeout = \"10ms\"",
            "`read_header_timeout` must be",
        ),
    ] {
        let config = format!("[[inputs.influxdb_listener]]\n{keys}\n[[outputs.file]]\n");
        let (code, _, err) = check(&config);
        assert_eq!(code, 1, "{config}: {err}");
        assert!(
            err.contains("agent.toml:1:") && err.contains(says),
            "{config}: {err}"
        );
    }
}
