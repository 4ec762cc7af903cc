//! `loadgen`: an HTTP load generator for InfluxDB-style `/write` endpoints.
//!
//! `cargo run --release --bin loadgen -- URL [--batch N] [--connections C] [--duration 10s]
//! [--gzip] [--unique] [--pid PID] [--json]`
//!
//! Each connection is a keep-alive HTTP/1.1 client posting bodies of N lines of realistic
//! metrics (every point unique with `--unique`: its own timestamp; the body is made once per
//! connection and each request rewrites its timestamps in place, so the generator's CPU stays
//! small beside the server's on a shared machine). It reports
//! accepted lines/s, MB/s, p50/p99 latency and the status histogram; given the server's pid, also
//! the server's CPU-seconds and peak RSS during the run (from /proc).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "HTTP load generator for InfluxDB-style /write endpoints"
)]
struct Args {
    /// The write URL, e.g. http://127.0.0.1:8186/write?db=load
    url: String,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to run, e.g. "10s".
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Compress bodies with gzip.
    #[arg(long)]
    gzip: bool,
    /// Make every point unique (its own timestamp); otherwise bodies repeat.
    #[arg(long)]
    unique: bool,
    /// The server's pid: report its CPU-seconds and peak RSS during the run.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Stop once this many points are acknowledged (whole batches), or at --duration.
    #[arg(long)]
    points: Option<u64>,
}

#[derive(Debug, Default)]
struct ConnStats {
    lines: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

/// Splits `http://host:port/path?query` into (host:port, path?query).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_owned(), path.to_owned()))
}

fn body(conn: usize, seq: u64, lines: usize, unique: bool, gzip: bool, base_ns: i64) -> Vec<u8> {
    let mut out = String::with_capacity(lines * 130);
    for i in 0..lines {
        let n = if unique {
            seq * lines as u64 + i as u64
        } else {
            i as u64
        };
        let ts = base_ns + (n as i64) * 1000 + conn as i64;
        let host = n % 1000;
        out.push_str(&format!(
            "cpu,host=server-{host:04},region=eu-west-{},conn=c{conn} usage_user={}.{},usage_system={}.5,usage_idle={}.25,procs={}i {ts}\n",
            n % 4,
            n % 100,
            n % 7,
            n % 13,
            90 - n % 50,
            n % 512
        ));
    }
    if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(out.as_bytes()).expect("writing to memory");
        e.finish().expect("writing to memory")
    } else {
        out.into_bytes()
    }
}

/// A connection's request bodies: the same every time, or (`--unique`) each with its own
/// timestamps.
enum Bodies {
    Same(Vec<u8>),
    Unique(Unique),
}

/// A connection's `--unique` body: made once, then each request's timestamps are written over
/// the previous ones (all ns timestamps here have 19 digits).
struct Unique {
    conn: usize,
    lines: usize,
    base_ns: i64,
    text: Vec<u8>,
    /// Where each line's timestamp starts.
    stamps: Vec<usize>,
}

const STAMP_DIGITS: usize = 19;

impl Unique {
    fn new(conn: usize, lines: usize, base_ns: i64) -> Unique {
        let text = body(conn, 0, lines, true, false, base_ns);
        let mut stamps = Vec::with_capacity(lines);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &text) {
            stamps.push(end - STAMP_DIGITS);
            start = end + 1;
        }
        debug_assert_eq!(start, text.len());
        Unique {
            conn,
            lines,
            base_ns,
            text,
            stamps,
        }
    }

    /// Request `seq`'s body: line `i` at `base + (seq * lines + i) µs + conn ns`, as [`body`]
    /// writes them.
    fn render(&mut self, seq: u64, gzip: bool) -> Vec<u8> {
        let mut digits = itoa::Buffer::new();
        for (i, &at) in self.stamps.iter().enumerate() {
            let n = seq * self.lines as u64 + i as u64;
            let ts = self.base_ns + (n as i64) * 1000 + self.conn as i64;
            let text = digits.format(ts).as_bytes();
            if text.len() != STAMP_DIGITS {
                return body(self.conn, seq, self.lines, true, gzip, self.base_ns);
            }
            self.text[at..at + STAMP_DIGITS].copy_from_slice(text);
        }
        if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&self.text).expect("writing to memory");
            e.finish().expect("writing to memory")
        } else {
            self.text.clone()
        }
    }
}

async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let close = head.contains("connection: close");
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, close))
}

async fn run_conn(
    conn: usize,
    args: Arc<Args>,
    host: String,
    path: String,
    stop: Arc<AtomicBool>,
    base_ns: i64,
    budget: Arc<std::sync::atomic::AtomicI64>,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    let mut bodies = if args.unique {
        Bodies::Unique(Unique::new(conn, args.batch, base_ns))
    } else {
        Bodies::Same(body(conn, 0, args.batch, false, args.gzip, base_ns))
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // With --points, each request first claims its batch from the budget.
        if budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            budget.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let payload = match &mut bodies {
            Bodies::Same(same) => same.clone(),
            Bodies::Unique(unique) => unique.render(seq, args.gzip),
        };
        seq += 1;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
            payload.len()
        );
        if args.gzip {
            request.push_str("Content-Encoding: gzip\r\n");
        }
        request.push_str("\r\n");
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(&host).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream.insert(s)
                }
                Err(_) => {
                    stats.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        let sent = async {
            s.write_all(request.as_bytes()).await?;
            s.write_all(&payload).await?;
            read_response(s, &mut buf).await
        }
        .await;
        match sent {
            Ok((status, close)) => {
                stats
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                *stats.statuses.entry(status).or_default() += 1;
                if status == 204 {
                    stats.lines += args.batch as u64;
                    stats.bytes += payload.len() as u64;
                } else {
                    budget.fetch_add(1, Ordering::Relaxed); // not taken: send it again
                    if status == 503 || status == 429 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                if close {
                    stream = None;
                }
            }
            Err(_) => {
                budget.fetch_add(1, Ordering::Relaxed);
                stats.errors += 1;
                stream = None;
            }
        }
    }
    stats
}

/// (utime + stime in seconds, current RSS in KiB) of a process.
fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, rss))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> std::process::ExitCode {
    let args = Arc::new(Args::parse());
    let (host, path) = match split_url(&args.url) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let duration = match heliograph::config::units::parse_duration(&args.duration) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --duration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("starting the runtime");
    let base_ns = heliograph::pipeline::now_ns() - 3_600_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let batches = args
        .points
        .map_or(i64::MAX, |p| p.div_ceil(args.batch.max(1) as u64) as i64);
    let budget = Arc::new(std::sync::atomic::AtomicI64::new(batches));
    let before = args.pid.and_then(proc_sample);
    let started = Instant::now();
    let (stats, peak_rss) = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| {
                tokio::spawn(run_conn(
                    c,
                    Arc::clone(&args),
                    host.clone(),
                    path.clone(),
                    Arc::clone(&stop),
                    base_ns,
                    Arc::clone(&budget),
                ))
            })
            .collect();
        let mut peak = 0u64;
        let end = Instant::now() + duration;
        while Instant::now() < end && !tasks.iter().all(|t| t.is_finished()) {
            if let Some((_, rss)) = args.pid.and_then(proc_sample) {
                peak = peak.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("connection task"));
        }
        (all, peak)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = args.pid.and_then(proc_sample);
    let lines: u64 = stats.iter().map(|s| s.lines).sum();
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    let errors: u64 = stats.iter().map(|s| s.errors).sum();
    let mut latencies: Vec<u64> = stats
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for s in &stats {
        for (k, v) in &s.statuses {
            *statuses.entry(*k).or_default() += v;
        }
    }
    let cpu = match (before, after) {
        (Some((a, _)), Some((b, _))) => Some(b - a),
        _ => None,
    };
    let report = serde_json::json!({
        "url": args.url,
        "batch": args.batch,
        "connections": args.connections,
        "gzip": args.gzip,
        "seconds": elapsed,
        "lines_per_sec": lines as f64 / elapsed,
        "mb_per_sec": bytes as f64 / elapsed / 1e6,
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": errors,
        "server_cpu_seconds": cpu,
        "lines_per_server_cpu_second": cpu.filter(|c| *c > 0.0).map(|c| lines as f64 / c),
        "server_peak_rss_mib": args.pid.map(|_| peak_rss as f64 / 1024.0),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializing the report")
        );
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_bodies_rewrite_timestamps_as_body_writes_them() {
        let base = 1_700_000_000_000_000_000;
        let mut u = Unique::new(3, 50, base);
        for seq in [0, 1, 7, 1000] {
            let made = String::from_utf8(body(3, seq, 50, true, false, base)).unwrap();
            let rendered = String::from_utf8(u.render(seq, false)).unwrap();
            let stamps = |t: &str| -> Vec<String> {
                t.lines()
                    .map(|l| l.rsplit_once(' ').unwrap().1.to_owned())
                    .collect()
            };
            assert_eq!(stamps(&rendered), stamps(&made), "seq {seq}");
            assert_eq!(rendered.lines().count(), 50);
        }
    }
}
