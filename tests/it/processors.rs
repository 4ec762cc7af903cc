//! Processors and selectors on metrics written through the listener, checked in what the
//! outputs keep; and configs with unsupported options refused by `check`.

use std::time::Duration;

use crate::harness::*;

const CONFIG: &str = r#"
[agent]
  data_dir = "{dir}/data"
  omit_hostname = true
  flush_interval = "100ms"

[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
  namedrop = ["debug_*"]
  tagexclude = ["secret"]

[[processors.rename]]
  order = 2
  [[processors.rename.replace]]
    tag = "hostname"
    dest = "host"

[[processors.converter]]
  order = 1
  [processors.converter.tags]
    integer = ["port"]

[[processors.strings]]
  order = 3
  namepass = ["Web*"]
  [[processors.strings.lowercase]]
    measurement = "*"

[[processors.tag_limit]]
  order = 4
  limit = 2
  keep = ["host"]
  [processors.tag_limit.tagpass]
    host = ["noisy"]

[[outputs.buckets]]
  namepass = ["web", "cpu"]
  fieldexclude = ["internal_*"]

[[outputs.file]]
  files = ["{dir}/cpu.lp"]
  buffer = "memory"
  namepass = ["cpu"]
  [outputs.file.tagdrop]
    host = ["b*"]
"#;

#[test]
fn listener_writes_go_through_selectors_and_processors() {
    let agent = TestAgent::start(CONFIG);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let body = format!(
        "\
Web,hostname=a,port=8080,secret=x hits=1i,internal_id=7i {t}
debug_trace,hostname=a v=1 {t}
cpu,hostname=a,z=1 usage=0.5 {t}
cpu,hostname=b1 usage=0.7 {t}
cpu,hostname=noisy,a=1,b=2,c=3 usage=0.9 {t}
mem,hostname=a used=1i {t}
"
    );
    let r = post(
        &agent.url("/write?db=app&precision=s"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    // Buckets: only web and cpu; `secret` and `internal_*` removed; port an integer field
    // (converter runs first, by `order`), hostname renamed, the name lower-cased.
    let exported = agent.export("app", &[]);
    assert_eq!(
        exported,
        [
            // tag_limit ran on this one only (tagpass): a, b dropped in key order.
            format!("cpu,c=3,host=noisy usage=0.9 {t}000000000"),
            format!("cpu,host=a,z=1 usage=0.5 {t}000000000"),
            format!("cpu,host=b1 usage=0.7 {t}000000000"),
            format!("web,host=a hits=1i,port=8080i {t}000000000"),
        ],
        "{}",
        agent.logs()
    );
    // The file output takes cpu only, without host=b*.
    let ok = eventually(Duration::from_secs(10), || agent.lines("cpu.lp").len() >= 2);
    assert!(ok, "{:?}\n{}", agent.lines("cpu.lp"), agent.logs());
    let mut lines = agent.lines("cpu.lp");
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("cpu,c=3,host=noisy usage=0.9 {t}000000000"),
            format!("cpu,host=a,z=1 usage=0.5 {t}000000000"),
        ]
    );
    // A write the selectors reduce to nothing is still acknowledged.
    let r = post(&agent.url("/write?db=app"), &[], b"debug_x v=1 1\n");
    assert_eq!(r.status, 204);
}

#[test]
fn check_refuses_unsupported_options_with_a_clear_message() {
    let base = "[[outputs.file]]\n  files = [\"stdout\"]\n";
    let cases = [
        (
            "[[processors.converter]]\n  [processors.converter.fields]\n    timestamp = [\"t\"]\n    timestamp_format = \"2006-01-02\"\n",
            "agent.toml:4:1: [[processors.converter]]: `fields.timestamp_format = \"2006-01-02\"` is not supported by heliograph",
        ),
        (
            "[[processors.printer]]\n  data_format = \"json\"\n",
            "`data_format = \"json\"` is not supported by heliograph",
        ),
        (
            "[[processors.rename]]\n  metricpass = \"name == 'x'\"\n  [[processors.rename.replace]]\n    tag = \"a\"\n    dest = \"b\"\n",
            "`metricpass`: `metricpass` (a CEL expression) is not supported by heliograph",
        ),
        (
            "[[processors.dedup]]\n  dedup_interval = \"10s\"\n  persist = true\n",
            "agent.toml:6:3: [[processors.dedup]]: unknown field `persist`",
        ),
        (
            "[[processors.strings]]\n  [[processors.strings.lowercase]]\n    tag = \"[x\"\n",
            "`lowercase.tag`: invalid glob \"[x\"",
        ),
        (
            "[[processors.rename]]\n  namepass = [\"[x\"]\n  [[processors.rename.replace]]\n    tag = \"a\"\n    dest = \"b\"\n",
            "`namepass`: invalid glob",
        ),
    ];
    for (extra, want) in cases {
        let (code, _, stderr) = check(&format!("{base}\n{extra}"));
        assert_eq!(code, 1, "accepted:\n{extra}");
        assert!(stderr.contains(want), "want {want:?} in:\n{stderr}");
    }
    let (code, _, stderr) = check(&format!(
        "{base}[[processors.override]]\n  name_prefix = \"p_\"\n  namepass = [\"cpu\"]\n"
    ));
    assert_eq!(code, 0, "{stderr}");
}
