//! Line protocol parsing: heliograph's parser against `influxdb-line-protocol` (InfluxDB 3's
//! parser) on the same corpus in the same run, so the ratio holds on a noisy machine.
//!
//! `cargo bench --bench line_protocol`. Throughput is reported per corpus in bytes; lines/s is
//! bytes/s divided by the corpus's mean line length, printed once at start.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heliograph::line_protocol::{Line, Parser};

const LINES: usize = 10_000;

/// Lines shaped like what Telegraf's system inputs send: a few tags, several numeric fields.
fn telegraf_corpus() -> String {
    let mut out = String::new();
    let mut ts: i64 = 1_700_000_000_000_000_000;
    for i in 0..LINES {
        ts += 10_000_000_000;
        let host = format!("web-{:03}.eu-west-1.example.com", i % 97);
        match i % 4 {
            0 => out.push_str(&format!(
                "cpu,cpu=cpu{},host={host} usage_idle={}.{},usage_system={}.25,usage_user={}.5 {ts}\n",
                i % 8, 90 + i % 9, i % 100, i % 7, i % 13
            )),
            1 => out.push_str(&format!(
                "mem,host={host} active={}i,available={}i,used_percent={}.125,free={}i {ts}\n",
                1_000_000 + i, 2_000_000 + i * 3, i % 100, 3_000_000 + i * 7
            )),
            2 => out.push_str(&format!(
                "disk,device=sda{},fstype=ext4,host={host},mode=rw,path=/var/lib free={}i,total={}i,used={}i,used_percent={}.5 {ts}\n",
                i % 4, 10_000_000 + i, 50_000_000, 40_000_000 - i, i % 100
            )),
            _ => out.push_str(&format!(
                "net,host={host},interface=eth{} bytes_recv={}i,bytes_sent={}i,packets_recv={}i,err_in=0i {ts}\n",
                i % 2, 123_456_789 + i, 987_654_321 + i, 55_555 + i
            )),
        }
    }
    out
}

/// Lines shaped as `loadgen` writes them (the ingest and relay benches' load): tags not in
/// key order, so every line has its tags sorted before it is stored.
fn loadgen_corpus() -> String {
    let mut out = String::new();
    let base: i64 = 1_700_000_000_000_000_000;
    for n in 0..LINES as i64 {
        out.push_str(&format!(
            "cpu,host=server-{:04},region=eu-west-{},conn=c1 usage_user={}.{},usage_system={}.5,usage_idle={}.25,procs={}i {}\n",
            n % 1000, n % 4, n % 100, n % 7, n % 13, 90 - n % 50, n % 512, base + n * 1000 + 1
        ));
    }
    out
}

/// Lines full of escapes: spaces, commas and equals signs in names, quotes in strings.
fn escaped_corpus() -> String {
    let mut out = String::new();
    let mut ts: i64 = 1_700_000_000_000_000_000;
    for i in 0..LINES {
        ts += 1_000_000;
        out.push_str(&format!(
            "http\\ requests\\,total,path=/api/v1\\,items\\=all,agent=Mozilla/5.0\\ (X11\\,\\ Linux),region\\ name=eu\\ west\\ {} msg=\"GET \\\"/api\\\" took {}ms\",status\\ code={}i,ok=true {ts}\n",
            i % 3, i % 500, 200 + i % 5
        ));
    }
    out
}

fn bench(c: &mut Criterion) {
    for (name, corpus) in [
        ("telegraf", telegraf_corpus()),
        ("escaped", escaped_corpus()),
        ("loadgen", loadgen_corpus()),
    ] {
        let count = Parser::new(&corpus).filter(|r| r.is_ok()).count();
        assert_eq!(count, LINES, "heliograph parses the whole {name} corpus");
        let theirs = influxdb_line_protocol::parse_lines(&corpus)
            .filter(|r| r.is_ok())
            .count();
        assert_eq!(
            theirs, LINES,
            "influxdb-line-protocol parses the whole {name} corpus"
        );
        println!(
            "corpus {name}: {LINES} lines, {} bytes, {:.1} bytes/line",
            corpus.len(),
            corpus.len() as f64 / LINES as f64
        );

        let mut group = c.benchmark_group(format!("parse/{name}"));
        group.throughput(Throughput::Elements(LINES as u64));
        group.bench_function("heliograph", |b| {
            b.iter(|| {
                let mut parser = Parser::new(black_box(&corpus));
                let mut line = Line::default();
                let mut fields = 0;
                while let Some(r) = parser.next_into(&mut line) {
                    r.expect("corpus is valid");
                    fields += line.fields.len();
                }
                fields
            })
        });
        group.bench_function("influxdb_line_protocol", |b| {
            b.iter(|| {
                let mut fields = 0;
                for r in influxdb_line_protocol::parse_lines(black_box(&corpus)) {
                    fields += r.expect("corpus is valid").field_set.len();
                }
                fields
            })
        });
        group.finish();
    }
}

/// A chain of three common processors, as a config would hold it.
const CHAIN: &str = r#"
[[processors.rename]]
  [[processors.rename.replace]]
    tag = "host"
    dest = "hostname"
[[processors.converter]]
  [processors.converter.fields]
    float = ["bytes_*", "packets_*"]
[[processors.override]]
  [processors.override.tags]
    dc = "eu-1"
"#;

/// The write path's CPU work with and without processors: parse a body into metrics, run the
/// chain (or not), encode them as the store and disk buffers do. The ratio of the two is the
/// chain's cost on ingest.
fn write_path(c: &mut Criterion) {
    use std::sync::Arc;

    use heliograph::line_protocol::{encode_all, Precision};
    use heliograph::metric::{Metric, Origin};
    use heliograph::pipeline::{chain, run_chain};

    let corpus = telegraf_corpus();
    let loadgen = loadgen_corpus();
    let origin = Arc::new(Origin::new("db", None));
    let parse = |text: &str| -> Vec<Metric> {
        let mut parser = Parser::new(text);
        let mut line = Line::default();
        let mut out = Vec::with_capacity(LINES);
        while let Some(r) = parser.next_into(&mut line) {
            r.expect("corpus is valid");
            out.push(
                line.to_metric(Precision::Nanoseconds, 0, &origin)
                    .expect("in range"),
            );
        }
        out
    };
    let config = heliograph::config::from_texts(
        &[(std::path::PathBuf::from("bench.toml"), CHAIN.to_owned())],
        |_| None,
    )
    .expect("the bench chain loads");
    let mut links = chain(config.processors);
    assert_eq!(links.len(), 3);

    let mut group = c.benchmark_group("write_path/telegraf");
    group.throughput(Throughput::Elements(LINES as u64));
    let mut out = String::with_capacity(corpus.len() * 2);
    group.bench_function("ingest", |b| {
        b.iter(|| {
            let metrics = parse(black_box(&corpus));
            out.clear();
            encode_all(&metrics, &mut out)
        })
    });
    // The listener's path when nothing needs metrics: parsed lines encoded straight into the
    // text the log stores.
    for (name, text) in [("normalize", &corpus), ("normalize_loadgen", &loadgen)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                heliograph::plugins::inputs::influxdb_listener::parse_lp(
                    black_box(text),
                    Precision::Nanoseconds,
                    0,
                    0,
                    0,
                )
                .0
                .points
            })
        });
    }
    group.bench_function("ingest+3_processors", |b| {
        b.iter(|| {
            let metrics = run_chain(&mut links, parse(black_box(&corpus)));
            out.clear();
            encode_all(&metrics, &mut out)
        })
    });
    group.finish();
}

criterion_group!(benches, bench, write_path);
criterion_main!(benches);
