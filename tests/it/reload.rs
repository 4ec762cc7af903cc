//! SIGHUP: the configuration reloads under write load without a refused connection or a lost
//! acknowledged point; a bad configuration is refused and the running one kept; systemd hears
//! RELOADING=1 then READY=1.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;

const CONFIG: &str = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
  shutdown_timeout = "10s"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.buckets]]
[[outputs.file]]
  files = ["{dir}/out.lp"]
  buffer = "memory"
  flush_interval = "1h"
  metric_batch_size = 1000000
  buffer_limit = 1000000
"#;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn with_generation(dir: &std::path::Path, generation: u32) -> String {
    let config = CONFIG.replace("{dir}", dir.to_str().unwrap());
    format!("{config}[[processors.override]]\n  [processors.override.tags]\n    gen = \"g{generation}\"\n")
}

#[test]
fn sighup_under_load_keeps_every_point_and_every_connection() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut agent = TestAgent::start_with(
        Arc::clone(&dir),
        &with_generation(dir.path(), 0),
        &[("NOTIFY_SOCKET", notify_path.display().to_string())],
    );
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused_connections = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let base = now_ns() - 60_000_000_000;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = agent.url("/write?db=t");
            let (acked, refused, retried, stop) = (
                Arc::clone(&acked),
                Arc::clone(&refused_connections),
                Arc::clone(&retried),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let line = format!("t,w=w{w} v={i}i {}", base + i * 4 + w);
                    match ureq::post(&url)
                        .timeout(Duration::from_secs(10))
                        .send_string(&line)
                    {
                        Ok(r) if r.status() == 204 => {
                            acked.lock().unwrap().push(line);
                            i += 1;
                        }
                        Ok(_) | Err(ureq::Error::Status(..)) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(ureq::Error::Transport(t)) => {
                            if t.to_string().to_lowercase().contains("refused") {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            retried.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();
    let config_path = dir.path().join("agent.toml");
    for generation in 1..=3 {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write(&config_path, with_generation(dir.path(), generation)).unwrap();
        signal(&agent.child, "HUP");
    }
    // A bad configuration: refused, the running one kept.
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&config_path, "[agent\n").unwrap();
    signal(&agent.child, "HUP");
    std::thread::sleep(Duration::from_millis(400));
    // Back to the text that runs (export reads it), without a signal.
    std::fs::write(&config_path, with_generation(dir.path(), 3)).unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let reloads = agent.logs().matches("configuration reloaded").count();
    assert_eq!(reloads, 3, "{}", agent.logs());
    assert!(
        agent
            .logs()
            .contains("the configuration has errors; the running one is kept"),
        "{}",
        agent.logs()
    );
    assert_eq!(refused_connections.load(Ordering::Relaxed), 0);
    // The running configuration is generation 3: a new write carries its tag.
    let marker = format!("marker v=1i {}", base - 1);
    assert_eq!(
        post(&agent.url("/write?db=t"), &[], marker.as_bytes()).status,
        204
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    // Local buckets: every acknowledged point, with the tag of the generation that took it.
    let exported = agent.export("t", &[]);
    let untagged = without_gen_tag(&exported);
    let lost: Vec<&String> = acked.iter().filter(|l| !untagged.contains(*l)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        exported.iter().any(|l| l.starts_with("marker,gen=g3 ")),
        "{exported:?}"
    );
    for g in 0..=3 {
        assert!(
            exported.iter().any(|l| l.contains(&format!(",gen=g{g},"))),
            "no point of generation {g}"
        );
    }
    // The memory-buffered file output held its points across every reload; the stop flushes
    // them all.
    let status = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    let file = without_gen_tag(&agent.lines("out.lp"));
    let missing = acked.iter().filter(|l| !file.contains(*l)).count();
    assert_eq!(
        missing, 0,
        "{missing} acknowledged points not in the file output"
    );
    // systemd heard each reload begin and end.
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = notify.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let reloading = messages
        .iter()
        .filter(|m| m.starts_with("RELOADING=1"))
        .count();
    let ready = messages.iter().filter(|m| m.starts_with("READY=1")).count();
    assert_eq!(reloading, 4, "{messages:?}");
    assert_eq!(
        ready, 5,
        "one at start, one after each reload: {messages:?}"
    );
}

#[test]
fn a_reload_that_cannot_start_goes_back_to_the_running_configuration() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let agent = TestAgent::start_in(Arc::clone(&dir), &with_generation(dir.path(), 0));
    // A second listener on the same port as the first: valid config, cannot start.
    let port = agent.addr.rsplit(':').next().unwrap().to_owned();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let config = with_generation(dir.path(), 1).replace(
        "[[outputs.buckets]]",
        &format!("[[inputs.influxdb_listener]]\n  alias = \"b\"\n  service_address = \"127.0.0.1:{busy}\"\n[[outputs.buckets]]"),
    );
    std::fs::write(dir.path().join("agent.toml"), config).unwrap();
    signal(&agent.child, "HUP");
    let ok = eventually(Duration::from_secs(10), || {
        agent.logs().contains("going back to the previous one")
    });
    assert!(ok, "{}", agent.logs());
    // Still serving on the same port, with generation 0's processors.
    let first = format!("m v=1i {}\n", now_ns());
    let ok = eventually(Duration::from_secs(10), || {
        post(&agent.url("/write?db=t"), &[], first.as_bytes()).status == 204
    });
    assert!(ok, "{}", agent.logs());
    assert_eq!(agent.addr.rsplit(':').next().unwrap(), port);
    let now = now_ns();
    let line = format!("m v=2i {now}");
    assert_eq!(
        post(&agent.url("/write?db=t"), &[], line.as_bytes()).status,
        204
    );
    assert!(agent
        .export("t", &[])
        .contains(&format!("m,gen=g0 v=2i {now}")));
    drop(taken);
}

/// An output whose buffer changes from memory to disk on reload keeps what it held: the points
/// move to the disk buffer, survive a SIGKILL, and are written after the restart.
#[test]
fn a_buffer_changed_to_disk_on_reload_keeps_its_points_through_a_crash() {
    let config = |buffer: &str, flush: &str| {
        format!(
            r#"
[agent]
  data_dir = "{{dir}}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  files = ["{{dir}}/out.lp"]
  buffer = "{buffer}"
  flush_interval = "{flush}"
  metric_batch_size = 1000000
"#
        )
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut agent = TestAgent::start_in(Arc::clone(&dir), &config("memory", "1h"));
    let body = "m v=1i 1\nm v=2i 2\nm v=3i 3\n";
    assert_eq!(
        post(&agent.url("/write?db=t"), &[], body.as_bytes()).status,
        204
    );
    // Same output, now on disk: SIGHUP moves its queue there.
    let disk = config("disk", "1h").replace("{dir}", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("agent.toml"), disk).unwrap();
    signal(&agent.child, "HUP");
    let ok = eventually(Duration::from_secs(10), || {
        agent.logs().contains("configuration reloaded")
    });
    assert!(ok, "{}", agent.logs());
    assert!(agent.lines("out.lp").is_empty(), "nothing written yet");
    // Killed before any flush: only the disk buffer has the points.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    drop(agent);
    let agent = TestAgent::start_in(Arc::clone(&dir), &config("disk", "100ms"));
    let ok = eventually(Duration::from_secs(10), || agent.lines("out.lp").len() == 3);
    assert!(ok, "{:?}\n{}", agent.lines("out.lp"), agent.logs());
    assert_eq!(agent.lines("out.lp"), ["m v=1i 1", "m v=2i 2", "m v=3i 3"]);
}

/// An output removed by a reload: its memory buffer's points are dropped, and the log says how
/// many; the remaining outputs keep theirs.
#[test]
fn an_output_removed_by_reload_is_logged_with_what_it_held() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let both = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  alias = "kept"
  files = ["{dir}/kept.lp"]
  buffer = "memory"
  flush_interval = "1h"
  metric_batch_size = 1000000
[[outputs.file]]
  alias = "gone"
  files = ["{dir}/gone.lp"]
  buffer = "memory"
  flush_interval = "1h"
  metric_batch_size = 1000000
"#;
    let mut agent = TestAgent::start_in(Arc::clone(&dir), both);
    assert_eq!(
        post(&agent.url("/write?db=t"), &[], b"m v=1i 1\nm v=2i 2\n").status,
        204
    );
    let one = both.replace("{dir}", dir.path().to_str().unwrap());
    let one = &one[..one.find("[[outputs.file]]\n  alias = \"gone\"").unwrap()];
    std::fs::write(dir.path().join("agent.toml"), one).unwrap();
    signal(&agent.child, "HUP");
    let ok = eventually(Duration::from_secs(10), || {
        agent.logs().contains("configuration reloaded")
    });
    assert!(ok, "{}", agent.logs());
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("output removed by the reload"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains("output=outputs.file::gone") && line.contains("points=2"),
        "{line}"
    );
    // The kept output still holds its two points; the stop writes them.
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success());
    assert_eq!(agent.lines("kept.lp"), ["m v=1i 1", "m v=2i 2"]);
    assert!(agent.lines("gone.lp").is_empty());
}

/// Lines with their `gen=` tag (the generation that took them) taken out.
fn without_gen_tag(lines: &[String]) -> std::collections::HashSet<String> {
    lines
        .iter()
        .map(|l| {
            let (head, rest) = l.split_once(' ').unwrap();
            let head: Vec<&str> = head.split(',').filter(|p| !p.starts_with("gen=")).collect();
            format!("{} {rest}", head.join(","))
        })
        .collect()
}
