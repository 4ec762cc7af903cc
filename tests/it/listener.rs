//! The write listener through HTTP: every status of the spec, its body, and that nothing of a
//! refused write reaches the output.

use std::time::Duration;

use crate::harness::*;

const OUT: &str = "out.lp";

fn config(listener_extra: &str, output_extra: &str) -> String {
    format!(
        r#"
[agent]
  flush_interval = "50ms"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
{listener_extra}
[[outputs.file]]
  files = ["{{dir}}/{OUT}"]
{output_extra}
"#
    )
}

fn plain() -> TestAgent {
    TestAgent::start(&config("", ""))
}

/// Waits until the output holds `n` lines, then returns them sorted.
fn output(agent: &TestAgent, n: usize) -> Vec<String> {
    let ok = eventually(Duration::from_secs(10), || agent.lines(OUT).len() >= n);
    let mut lines = agent.lines(OUT);
    assert!(
        ok,
        "expected {n} lines in the output, got {}: {lines:?}",
        lines.len()
    );
    lines.sort();
    lines
}

/// The server still answers after a bad request.
fn assert_healthy(agent: &TestAgent) {
    let r = request("GET", &agent.url("/ping"), &[]);
    assert_eq!(r.status, 204, "ping after a bad request");
}

#[test]
fn write_is_acknowledged_with_204_and_reaches_the_output() {
    let agent = plain();
    let r = post(
        &agent.url("/write?db=telegraf"),
        &[],
        b"cpu,host=a,cpu=cpu0 usage_idle=99.5,n=3i 1700000000000000000\nmem,host=a used=1u,ok=true,s=\"x y\" 1700000000000000001\n",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-influxdb-version"), Some("1.8.10"));
    assert_eq!(
        output(&agent, 2),
        [
            "cpu,cpu=cpu0,host=a usage_idle=99.5,n=3i 1700000000000000000",
            "mem,host=a used=1u,ok=true,s=\"x y\" 1700000000000000001",
        ]
    );
}

#[test]
fn malformed_line_is_400_with_the_first_bad_line_and_nothing_written() {
    let agent = plain();
    let body = "m v=1 1\nm v=2 2\nm v=oops 3\nm v=4 4\nm,bad v=5 5\n";
    let r = post(&agent.url("/write?db=db"), &[], body.as_bytes());
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["code"], "invalid");
    assert_eq!(j["line"], 3);
    assert_eq!(j["op"], "writing line protocol");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.starts_with("unable to parse line 3: invalid field value \"oops\""),
        "{message}"
    );
    assert!(message.contains("(and 1 other bad lines)"), "{message}");
    let err = j["err"].as_str().unwrap();
    assert!(
        err.contains("line 3, column 5") && err.contains("line 5, column"),
        "{err}"
    );
    assert!(r
        .header("x-influxdb-error")
        .unwrap()
        .starts_with("unable to parse line 3"));
    // A good write after it is flushed; the bad body left nothing behind.
    assert_eq!(
        post(&agent.url("/write?db=db"), &[], b"after v=1 9\n").status,
        204
    );
    assert_eq!(output(&agent, 1), ["after v=1 9"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(agent.lines(OUT).len(), 1);
    assert_healthy(&agent);
}

#[test]
fn accept_partial_keeps_good_lines_and_still_answers_400() {
    let agent = TestAgent::start(&config("  accept_partial = true", ""));
    let r = post(
        &agent.url("/write?db=db"),
        &[],
        b"m v=1 1\nm v= 2\nm v=3 3\n",
    );
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["line"], 2);
    assert!(j["message"].as_str().unwrap().starts_with("partial write:"));
    assert_eq!(output(&agent, 2), ["m v=1 1", "m v=3 3"]);
}

#[test]
fn bad_parameters_are_400() {
    let agent = plain();
    let r = post(&agent.url("/write"), &[], b"m v=1\n");
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("database is required"));
    let r = post(&agent.url("/write?db="), &[], b"m v=1\n");
    assert_eq!(r.status, 400);
    let r = post(
        &agent.url("/write?db=x&precision=fortnight"),
        &[],
        b"m v=1\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("invalid precision \"fortnight\""));
    let r = post(&agent.url("/write?db=x"), &[], b"m v=1 1\nm \xff=1 2\n");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["line"], 2);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("invalid UTF-8"));
    assert_healthy(&agent);
}

#[test]
fn precision_scales_timestamps_and_missing_ones_get_the_receive_time() {
    let agent = plain();
    assert_eq!(
        post(
            &agent.url("/write?db=x&precision=s"),
            &[],
            b"s v=1 1700000000\n"
        )
        .status,
        204
    );
    assert_eq!(
        post(
            &agent.url("/write?db=x&precision=ms"),
            &[],
            b"ms v=1 1700000000123\n"
        )
        .status,
        204
    );
    assert_eq!(
        post(
            &agent.url("/write?db=x&precision=u"),
            &[],
            b"u v=1 1700000000123456\n"
        )
        .status,
        204
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        post(
            &agent.url("/write?db=x&precision=s"),
            &[],
            b"now a=1\nnow b=2\n"
        )
        .status,
        204
    );
    let lines = output(&agent, 5);
    assert!(lines.contains(&"s v=1 1700000000000000000".to_string()));
    assert!(lines.contains(&"ms v=1 1700000000123000000".to_string()));
    assert!(lines.contains(&"u v=1 1700000000123456000".to_string()));
    let times: Vec<i64> = lines
        .iter()
        .filter(|l| l.starts_with("now "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    assert_eq!(times[0], times[1], "one receive time per request");
    assert_eq!(times[0] % 1_000_000_000, 0, "truncated to the precision");
    assert!((times[0] / 1_000_000_000 - before).abs() <= 5);
}

#[test]
fn v2_write_takes_bucket_and_precision() {
    let agent = plain();
    let r = post(
        &agent.url("/api/v2/write?bucket=mydb/myrp&org=o&precision=s"),
        &[],
        b"m v=1 5\n",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(output(&agent, 1), ["m v=1 5000000000"]);
    let r = post(&agent.url("/api/v2/write?org=o"), &[], b"m v=1 5\n");
    assert_eq!(r.status, 400);
    let r = post(
        &agent.url("/api/v2/write?bucket=b&precision=h"),
        &[],
        b"m v=1 5\n",
    );
    assert_eq!(r.status, 400);
    let dbs = request("GET", &agent.url("/query?q=SHOW+DATABASES"), &[]).json();
    assert_eq!(
        dbs["results"][0]["series"][0]["values"],
        serde_json::json!([["mydb"]])
    );
}

#[test]
fn gzip_bodies_good_corrupt_and_bombs() {
    let agent = TestAgent::start(&config("  max_body_size = \"64KiB\"", ""));
    let gz = gzip(b"g v=1 1\ng v=2 2\n");
    let r = post(
        &agent.url("/write?db=x"),
        &[("Content-Encoding", "gzip")],
        &gz,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(output(&agent, 2), ["g v=1 1", "g v=2 2"]);

    let r = post(
        &agent.url("/write?db=x"),
        &[("Content-Encoding", "gzip")],
        b"g v=3 3\n",
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid gzip body"),
        "{}",
        r.body
    );
    let mut truncated = gzip(b"g v=4 4\ng v=5 5\n");
    truncated.truncate(truncated.len() - 6);
    let r = post(
        &agent.url("/write?db=x"),
        &[("Content-Encoding", "gzip")],
        &truncated,
    );
    assert_eq!(r.status, 400);

    // 10 MB of line protocol compresses to a few KiB: refused once 64 KiB is decompressed.
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&b"b v=1 1\n".repeat(1_250_000)).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 64 * 1024);
    let r = post(
        &agent.url("/write?db=x"),
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["maxLength"], 65536);

    let r = post(
        &agent.url("/write?db=x"),
        &[("Content-Encoding", "br")],
        b"g v=1 1\n",
    );
    assert_eq!(r.status, 415);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        agent.lines(OUT).len(),
        2,
        "nothing of the refused bodies was written"
    );
    assert_healthy(&agent);
}

#[test]
fn oversized_bodies_are_413_with_and_without_content_length() {
    let agent = TestAgent::start(&config("  max_body_size = 1000", ""));
    let big = b"m v=1 1\n".repeat(200);
    let r = post(&agent.url("/write?db=x"), &[], &big);
    assert_eq!(r.status, 413);
    let j = r.json();
    assert_eq!(
        (j["code"].as_str(), j["maxLength"].as_u64()),
        (Some("invalid"), Some(1000))
    );
    let r = post_chunked(&agent.url("/write?db=x"), &[], big.clone());
    assert_eq!(r.status, 413);
    assert_eq!(
        post_chunked(&agent.url("/write?db=x"), &[], big[..800].to_vec()).status,
        204
    );
    assert_eq!(output(&agent, 100).len(), 100);
    assert_healthy(&agent);
}

const TOKENS: &str = r#"
  [[inputs.influxdb_listener.token]]
    name = "team-a"
    secret = "secret-a"
    databases = ["team_a", "shared"]
  [[inputs.influxdb_listener.token]]
    name = "admin"
    secret = "secret-admin"
    databases = ["*"]
  [[inputs.influxdb_listener.token]]
    name = "slow"
    secret = "secret-slow"
    databases = ["*"]
    max_points_per_second = 10
"#;

#[test]
fn auth_matrix() {
    let agent = TestAgent::start(&config(TOKENS, ""));
    let url = agent.url("/write?db=team_a");
    // No credentials: 403.
    let r = post(&url, &[], b"m v=1 1\n");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "forbidden");
    // Unknown token: 401.
    let r = post(&url, &[("Authorization", "Token nope")], b"m v=1 1\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthorized");
    assert!(!r.body.contains("nope"), "the secret is not echoed");
    // Known token, database not allowed: 401.
    let r = post(
        &agent.url("/write?db=team_b"),
        &[("Authorization", "Token secret-a")],
        b"m v=1 1\n",
    );
    assert_eq!(r.status, 401);
    assert!(r.json()["message"].as_str().unwrap().contains("team-a"));
    // Every accepted form.
    assert_eq!(
        post(&url, &[("Authorization", "Token secret-a")], b"m v=1 1\n").status,
        204
    );
    let basic = format!("Basic {}", base64_encode("anyone:secret-a"));
    assert_eq!(
        post(&url, &[("Authorization", &basic)], b"m v=2 2\n").status,
        204
    );
    assert_eq!(
        post(
            &agent.url("/write?db=shared&u=x&p=secret-a"),
            &[],
            b"m v=3 3\n"
        )
        .status,
        204
    );
    assert_eq!(
        post(
            &agent.url("/write?db=other&u=x&p=secret-admin"),
            &[],
            b"m v=4 4\n"
        )
        .status,
        204
    );
    assert_eq!(
        post(&agent.url("/write?db=other&u=x&p=wrong"), &[], b"m v=5 5\n").status,
        401
    );
    assert_eq!(output(&agent, 4).len(), 4);
    // /ping and /health need no token; /query does.
    assert_eq!(request("GET", &agent.url("/ping"), &[]).status, 204);
    assert_eq!(request("GET", &agent.url("/health"), &[]).status, 200);
    assert_eq!(
        request("GET", &agent.url("/query?q=SHOW+DATABASES"), &[]).status,
        403
    );
    let r = request("GET", &agent.url("/query?q=SHOW+DATABASES&p=secret-a"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"],
        serde_json::json!([["shared"], ["team_a"]])
    );
    assert!(
        !agent.logs().contains("secret-a"),
        "secrets never reach the logs"
    );
}

#[test]
fn rate_limited_token_gets_429_with_retry_after() {
    let agent = TestAgent::start(&config(TOKENS, ""));
    let url = agent.url("/write?db=x&p=secret-slow");
    let body: String = (0..10).map(|i| format!("m v={i} {i}\n")).collect();
    assert_eq!(
        post(&url, &[], body.as_bytes()).status,
        204,
        "a full bucket admits a second of the rate at once"
    );
    let r = post(&url, &[], b"m v=1 100\n");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], "too many requests");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // Another token is not affected.
    assert_eq!(
        post(
            &agent.url("/write?db=x&p=secret-admin"),
            &[],
            b"m v=1 101\n"
        )
        .status,
        204
    );
}

#[test]
fn full_buffer_is_503_with_retry_after_and_nothing_admitted() {
    // /dev/full fails every write (ENOSPC): the buffer fills and stays full.
    let cfg = r#"
[agent]
  flush_interval = "50ms"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[outputs.file]]
  files = ["/dev/full"]
  buffer_limit = 10
[[outputs.file]]
  alias = "good"
  files = ["{dir}/out.lp"]
"#;
    let agent = TestAgent::start(cfg);
    let url = agent.url("/write?db=x");
    let body: String = (0..8).map(|i| format!("m v={i} {i}\n")).collect();
    assert_eq!(post(&url, &[], body.as_bytes()).status, 204);
    let r = post(&url, &[], body.as_bytes());
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "unavailable");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(r.json()["message"].as_str().unwrap().contains("is full"));
    // All or nothing: the second output did not get the refused write either.
    assert_eq!(output(&agent, 8).len(), 8);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(agent.lines(OUT).len(), 8);
    // A write larger than the buffer can ever hold is 503 too (never a silent drop).
    let huge: String = (0..11).map(|i| format!("m v={i} {i}\n")).collect();
    assert_eq!(post(&url, &[], huge.as_bytes()).status, 503);
    assert!(agent
        .logs()
        .contains("write failed; the batch stays buffered"));
    assert_healthy(&agent);
}

#[test]
fn ping_health_query_and_unknown_routes() {
    let agent = plain();
    let r = request("GET", &agent.url("/ping"), &[]);
    assert_eq!(
        (r.status, r.header("x-influxdb-version")),
        (204, Some("1.8.10"))
    );
    assert_eq!(request("HEAD", &agent.url("/ping"), &[]).status, 204);
    let r = request("GET", &agent.url("/ping?verbose=true"), &[]);
    assert_eq!(
        (r.status, r.json()["version"].as_str()),
        (200, Some("1.8.10"))
    );
    let r = request("GET", &agent.url("/health"), &[]);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("pass")));
    let r = request("GET", &agent.url("/nope"), &[]);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("not found"))
    );
    let r = request("GET", &agent.url("/write?db=x"), &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(r.json()["code"], "method not allowed");

    let r = request(
        "POST",
        &agent.url("/query?q=CREATE+DATABASE+%22my+db%22;SHOW+DATABASES"),
        &[],
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["results"][0], serde_json::json!({"statement_id": 0}));
    assert_eq!(
        j["results"][1]["series"][0]["values"],
        serde_json::json!([["my db"]])
    );
    let r = post(
        &agent.url("/query"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"q=SELECT+*+FROM+cpu",
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["results"][0]["error"]
        .as_str()
        .unwrap()
        .contains("does not answer"));
    let r = request(
        "GET",
        &agent.url("/query?q=SHOW+DATABASES"),
        &[("Accept", "application/csv")],
    );
    assert_eq!(r.body, "name,tags,name\ndatabases,,my db\n");
    assert_eq!(request("GET", &agent.url("/query"), &[]).status, 400);
}

#[test]
fn sigterm_flushes_buffered_writes_and_then_refuses() {
    let cfg = config("", "").replace("flush_interval = \"50ms\"", "flush_interval = \"1h\"");
    let mut agent = TestAgent::start(&cfg);
    assert_eq!(
        post(&agent.url("/write?db=x"), &[], b"m v=1 1\n").status,
        204
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(agent.lines(OUT).is_empty(), "held until the flush interval");
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    assert_eq!(agent.lines(OUT), ["m v=1 1"]);
}

#[test]
fn add_agent_tags_is_off_by_default_and_never_overwrites() {
    let cfg = r#"
[agent]
  flush_interval = "50ms"
  hostname = "relay-1"
[global_tags]
  dc = "eu"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
  add_agent_tags = true
[[outputs.file]]
  files = ["{dir}/out.lp"]
"#;
    let agent = TestAgent::start(cfg);
    // Both listeners log their address; the harness took the first (no agent tags).
    assert_eq!(
        post(&agent.url("/write?db=x"), &[], b"plain v=1 1\n").status,
        204
    );
    let second = eventually(Duration::from_secs(5), || {
        agent.logs().matches("address=").count() == 2
    });
    assert!(second);
    let logs = agent.logs();
    let addr2 = logs
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
        })
        .find(|a| *a != agent.addr)
        .unwrap()
        .to_string();
    let url2 = format!("http://{addr2}/write?db=x");
    assert_eq!(post(&url2, &[], b"tagged,host=writer v=1 2\n").status, 204);
    assert_eq!(
        output(&agent, 2),
        ["plain v=1 1", "tagged,dc=eu,host=writer v=1 2"]
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

mod raw {
    //! Connection-level behaviour, over raw TCP: keep-alive, read timeout, connection limit.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    fn connect(agent: &TestAgent) -> TcpStream {
        let s = TcpStream::connect(&agent.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Reads one response head and its (Content-Length) body.
    fn read_response(s: &mut TcpStream) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        Ok(head + &String::from_utf8_lossy(&body))
    }

    fn write_request(body: &str) -> String {
        format!(
            "POST /write?db=x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let agent = plain();
        let mut s = connect(&agent);
        for i in 0..3 {
            s.write_all(write_request(&format!("k v={i} {i}\n")).as_bytes())
                .unwrap();
            let r = read_response(&mut s).unwrap();
            assert!(r.starts_with("HTTP/1.1 204"), "{r}");
        }
        assert_eq!(output(&agent, 3).len(), 3);
    }

    #[test]
    fn slow_body_gets_408_after_read_timeout() {
        let agent = TestAgent::start(&config("  read_timeout = \"300ms\"", ""));
        let mut s = connect(&agent);
        s.write_all(b"POST /write?db=x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nm v=1")
            .unwrap();
        let r = read_response(&mut s).unwrap();
        assert!(r.starts_with("HTTP/1.1 408"), "{r}");
        assert!(r.contains("read_timeout"), "{r}");
        assert_healthy(&agent);
    }

    #[test]
    fn connection_limit_closes_an_idle_connection_for_a_new_one() {
        let agent = TestAgent::start(&config("  max_connections = 1", ""));
        let mut first = connect(&agent);
        first
            .write_all(write_request("a v=1 1\n").as_bytes())
            .unwrap();
        assert!(read_response(&mut first)
            .unwrap()
            .starts_with("HTTP/1.1 204"));
        // The first connection is idle but open, holding the only slot: a new writer is
        // served at once, and the idle connection is closed to make room (never both open).
        let mut second = connect(&agent);
        second
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        second
            .write_all(write_request("b v=1 2\n").as_bytes())
            .unwrap();
        assert!(read_response(&mut second)
            .unwrap()
            .starts_with("HTTP/1.1 204"));
        first
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut rest = [0u8; 16];
        assert!(
            matches!(first.read(&mut rest), Ok(0) | Err(_)),
            "served beyond max_connections"
        );
    }
}
