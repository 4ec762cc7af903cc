//! `buffer = "disk"` on an ordinary output: acknowledged writes survive a crash of the agent
//! while the output cannot write, and are delivered after the restart.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

fn config(target: &str) -> String {
    format!(
        r#"
[agent]
  data_dir = "{{dir}}/data"
  flush_interval = "50ms"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  files = ["{target}"]
  buffer = "disk"
  buffer_limit = 1000
"#
    )
}

#[test]
fn backlog_survives_sigkill_and_is_delivered_after_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // The output fails every write (a full disk), so everything stays buffered.
    let agent = TestAgent::start_in(Arc::clone(&dir), &config("/dev/full"));
    for i in 0..10 {
        let body = format!(
            "spool,batch=b{i} v=1i {i}\nspool,batch=b{i} v=2i {}\n",
            i + 100
        );
        assert_eq!(
            post(&agent.url("/write?db=x"), &[], body.as_bytes()).status,
            204
        );
    }
    // 20 points of 1000: room left; past the limit, 503.
    let big: String = (0..990).map(|i| format!("fill v={i}i {i}\n")).collect();
    assert_eq!(
        post(&agent.url("/write?db=x"), &[], big.as_bytes()).status,
        503
    );
    signal(&agent.child, "KILL");
    drop(agent);

    let out = dir.path().join("out.lp");
    let agent = TestAgent::start_in(Arc::clone(&dir), &config(out.to_str().unwrap()));
    assert!(
        agent.logs().contains("resuming a disk buffer backlog")
            || eventually(Duration::from_secs(2), || agent.logs().contains("resuming"))
    );
    assert!(eventually(Duration::from_secs(10), || read_lines(&out)
        .len()
        >= 20));
    let mut lines = read_lines(&out);
    lines.sort();
    assert_eq!(lines.len(), 20, "{lines:?}");
    assert_eq!(lines[0], "spool,batch=b0 v=1i 0");
    // Delivered and consumed: a second restart sends nothing again.
    let mut agent = agent;
    assert!(agent.terminate(Duration::from_secs(10)).success());
    drop(agent);
    let agent = TestAgent::start_in(Arc::clone(&dir), &config(out.to_str().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_lines(&out).len(), 20);
    drop(agent);
}
