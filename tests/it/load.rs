//! Many writers and large bodies: every acknowledged point arrives exactly once.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;

fn agent() -> TestAgent {
    TestAgent::start(
        r#"
[agent]
  flush_interval = "100ms"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  files = ["{dir}/out.lp"]
"#,
    )
}

#[test]
fn hundred_concurrent_writers_every_point_exactly_once() {
    let agent = agent();
    const WRITERS: usize = 100;
    const REQUESTS: usize = 10;
    const LINES: usize = 20;
    let url = agent.url("/write?db=load");
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut acked = 0;
                for r in 0..REQUESTS {
                    let body: String = (0..LINES)
                        .map(|l| format!("load,writer=w{w} v={l}i {}\n", (r * LINES + l) as i64))
                        .collect();
                    let reply = post(&url, &[], body.as_bytes());
                    assert_eq!(reply.status, 204, "{}", reply.body);
                    acked += LINES;
                }
                acked
            })
        })
        .collect();
    let acked: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(acked, WRITERS * REQUESTS * LINES);
    assert!(eventually(Duration::from_secs(20), || agent
        .lines("out.lp")
        .len()
        >= acked));
    std::thread::sleep(Duration::from_millis(300));
    let lines = agent.lines("out.lp");
    let unique: HashSet<&String> = lines.iter().collect();
    assert_eq!(lines.len(), acked, "no duplicates, nothing lost");
    assert_eq!(unique.len(), acked);
}

#[test]
fn hundred_thousand_line_body() {
    let agent = agent();
    let body: String = (0..100_000)
        .map(|i| format!("big,host=h{} value={i}i,f=1.5 {i}\n", i % 10))
        .collect();
    let reply = post(&agent.url("/write?db=big"), &[], body.as_bytes());
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(eventually(Duration::from_secs(20), || agent
        .lines("out.lp")
        .len()
        >= 100_000));
    let lines = agent.lines("out.lp");
    assert_eq!(lines.len(), 100_000);
    assert_eq!(lines[0], "big,host=h0 value=0i,f=1.5 0");
}
