//! The system inputs through the real binary: `--test` on a fixture host (exact output) and on
//! this machine with the shipped `agent.toml` (every measurement, rates included).

use crate::harness::run_ok;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/host");

const CONFIG: &str = r#"
[agent]
  omit_hostname = true
[[inputs.cpu]]
  collect_cpu_time = true
  report_active = true
  core_tags = true
[[inputs.mem]]
  collect_extended = true
[[inputs.swap]]
[[inputs.disk]]
[[inputs.diskio]]
  skip_serial_number = false
  device_tags = ["ID_MODEL"]
[[inputs.net]]
[[inputs.netstat]]
[[inputs.system]]
[[inputs.processes]]
[[inputs.kernel]]
  collect = ["psi"]
[[outputs.file]]
"#;

fn run_test(config_path: &std::path::Path, env: &[(&str, String)]) -> Vec<String> {
    let args: [&std::ffi::OsStr; 3] =
        ["--test".as_ref(), "--config".as_ref(), config_path.as_ref()];
    run_ok(&args, env, None)
}

fn without_time(line: &str) -> &str {
    line.rsplit_once(' ').map_or(line, |(l, _)| l)
}

#[test]
fn test_flag_on_a_fixture_host_prints_exact_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let env = [
        ("HOST_PROC", format!("{FIXTURE}/proc")),
        ("HOST_SYS", format!("{FIXTURE}/sys")),
        ("HOST_RUN", format!("{FIXTURE}/run")),
        ("HOST_VAR", format!("{FIXTURE}/var")),
        ("HOST_MOUNT_PREFIX", FIXTURE.to_owned()),
    ];
    let lines = run_test(&path, &env);
    let got: Vec<&str> = lines
        .iter()
        .map(|l| without_time(l))
        .filter(|l| !l.starts_with("disk,"))
        .collect();
    let expected = std::fs::read_to_string(format!("{FIXTURE}/expected.lp")).unwrap();
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(got, want);
    // Disk: the root mount of the fixture, its device named through sysfs, sized by statvfs
    // under HOST_MOUNT_PREFIX.
    let root = lines
        .iter()
        .find(|l| l.starts_with("disk,device=sda1,fstype=ext4,mode=rw,path=/ "))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(root.contains(",used_percent="), "{root}");
    // Every line shares the gather's timestamp rules: integers in ns.
    assert!(lines
        .iter()
        .all(|l| l.rsplit(' ').next().unwrap().parse::<i64>().is_ok()));
}

#[test]
fn test_flag_on_the_shipped_config_prints_every_system_measurement() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml"));
    let lines = run_test(path, &[]);
    let measurement = |l: &String| l.split([',', ' ']).next().unwrap().to_owned();
    let names: std::collections::BTreeSet<String> = lines.iter().map(measurement).collect();
    for want in [
        "cpu",
        "mem",
        "swap",
        "disk",
        "net",
        "netstat",
        "system",
        "processes",
        "kernel",
        "internal_agent",
        "internal_memstats",
    ] {
        assert!(
            names.contains(want),
            "{want} missing from:\n{}",
            lines.join("\n")
        );
    }
    // Rates need two gathers: --test made them.
    let cpu = lines
        .iter()
        .find(|l| l.starts_with("cpu,cpu=cpu-total"))
        .unwrap();
    assert!(cpu.contains("usage_idle="), "{cpu}");
    let has_block_devices =
        std::fs::read_to_string("/proc/diskstats").is_ok_and(|s| !s.trim().is_empty());
    if has_block_devices {
        let diskio = lines.iter().find(|l| l.starts_with("diskio,")).unwrap();
        assert!(diskio.contains("io_util="), "{diskio}");
    }
    // Every gathered metric carries the host tag.
    assert!(lines.iter().all(|l| l.contains(",host=")), "{lines:#?}");
}

#[test]
fn internal_reports_the_agent_the_listener_and_each_output() {
    use crate::harness::{eventually, post, TestAgent};
    let agent = TestAgent::start(
        r#"
[agent]
  data_dir = "{dir}/data"
  interval = "200ms"
  round_interval = false
  flush_interval = "100ms"
  hostname = "h1"
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
[[inputs.internal]]
[[outputs.file]]
  files = ["{dir}/out.lp"]
  buffer = "memory"
[[outputs.buckets]]
  compaction_interval = "100ms"
"#,
    );
    for _ in 0..3 {
        assert_eq!(post(&agent.url("/write?db=x"), &[], b"m v=1\n").status, 204);
    }
    assert_eq!(
        post(&agent.url("/write?db=x"), &[], b"bad line\n").status,
        400
    );
    let find = |prefix: &str, needle: &str| {
        agent
            .lines("out.lp")
            .into_iter()
            .rev()
            .find(|l| l.starts_with(prefix) && l.contains(needle))
    };
    let ok = eventually(std::time::Duration::from_secs(10), || {
        find("internal_influxdb_listener,", "responses_400=1i").is_some()
            && find("internal_write,", "metrics_written=").is_some()
    });
    assert!(ok, "{:#?}\n{}", agent.lines("out.lp"), agent.logs());
    let listener = find("internal_influxdb_listener,", "responses_400=1i").unwrap();
    assert!(
        listener.contains(",input=inputs.influxdb_listener"),
        "{listener}"
    );
    assert!(listener.contains("responses_204=3i"), "{listener}");
    let write = find("internal_write,", "output=outputs.file").unwrap();
    assert!(write.contains("buffer_limit=10000i"), "{write}");
    let ok = eventually(std::time::Duration::from_secs(10), || {
        find("internal_write,", "output=outputs.buckets")
            .is_some_and(|l| !l.contains("metrics_written=0i"))
    });
    assert!(ok, "{:#?}", agent.lines("out.lp"));
    let gather = find("internal_gather,", "").unwrap();
    assert!(gather.contains("input=inputs.internal"), "{gather}");
    let agent_line = find("internal_agent,", "").unwrap();
    assert!(agent_line.contains("host=h1"), "{agent_line}");
    assert!(find("internal_memstats,", "rss_bytes=").is_some());
}
