//! `inputs.kernel`: counters from /proc/stat (`ctxt`, `intr`, `processes`, `btime`, `page`),
//! `entropy_avail`; with `collect = ["ksm"]` the KSM counters from /sys/kernel/mm/ksm, with
//! `collect = ["psi"]` the `pressure` measurement from /proc/pressure (resource cpu, memory, io;
//! type some, full; cpu/full left out): a counter metric `total` (µs) and a gauge metric
//! `avg10`, `avg60`, `avg300`.

use serde::Deserialize;

use crate::host::{read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.kernel]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Extra sets: `"ksm"`, `"psi"`.
    collect: Vec<String>,
}

/// The built input.
#[derive(Debug)]
pub struct Kernel {
    ksm: bool,
    psi: bool,
    roots: Roots,
}

impl Kernel {
    /// The input reading from `roots`.
    ///
    /// # Errors
    /// An unknown `collect` entry.
    pub fn with_roots(config: Config, roots: Roots) -> Result<Self, BuildError> {
        for c in &config.collect {
            if c != "ksm" && c != "psi" {
                return Err(BuildError::new(format!(
                    "`collect`: unknown set {c:?}; known: \"ksm\", \"psi\""
                )));
            }
        }
        Ok(Kernel {
            ksm: config.collect.iter().any(|c| c == "ksm"),
            psi: config.collect.iter().any(|c| c == "psi"),
            roots,
        })
    }
}

const KSM: [(&str, &str); 15] = [
    ("ksm_full_scans", "full_scans"),
    ("ksm_max_page_sharing", "max_page_sharing"),
    ("ksm_merge_across_nodes", "merge_across_nodes"),
    ("ksm_pages_shared", "pages_shared"),
    ("ksm_pages_sharing", "pages_sharing"),
    ("ksm_pages_to_scan", "pages_to_scan"),
    ("ksm_pages_unshared", "pages_unshared"),
    ("ksm_pages_volatile", "pages_volatile"),
    ("ksm_run", "run"),
    ("ksm_sleep_millisecs", "sleep_millisecs"),
    ("ksm_stable_node_chains", "stable_node_chains"),
    (
        "ksm_stable_node_chains_prune_millisecs",
        "stable_node_chains_prune_millisecs",
    ),
    ("ksm_stable_node_dups", "stable_node_dups"),
    ("ksm_use_zero_pages", "use_zero_pages"),
    ("ksm_general_profit", "general_profit"),
];

impl Input for Kernel {
    const NAME: &'static str = "kernel";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Kernel::with_roots(config, Roots::default())
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let stat = read(&self.roots.proc("stat"))?;
        let entropy = read(&self.roots.proc("sys/kernel/random/entropy_avail"))?;
        let first = |key: &str| -> Option<i64> {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .and_then(|rest| rest.split_ascii_whitespace().next()?.parse().ok())
        };
        let mut f = Fields::new(&schema::KERNEL);
        f.put("boot_time", first("btime").unwrap_or(0))
            .put("context_switches", first("ctxt").unwrap_or(0))
            .put("interrupts", first("intr").unwrap_or(0))
            .put("processes_forked", first("processes").unwrap_or(0))
            .put("entropy_avail", entropy.trim().parse::<i64>().unwrap_or(0));
        if let Some(page) = stat.lines().find_map(|l| l.strip_prefix("page ")) {
            let mut p = page
                .split_ascii_whitespace()
                .map(|v| v.parse::<i64>().unwrap_or(0));
            f.put("disk_pages_in", p.next().unwrap_or(0))
                .put("disk_pages_out", p.next().unwrap_or(0));
        }
        if self.ksm {
            for (field, file) in KSM {
                let path = self.roots.sys(&format!("kernel/mm/ksm/{file}"));
                // `general_profit` exists on newer kernels only; the others are required.
                match std::fs::read_to_string(&path) {
                    Ok(v) => {
                        f.put(field, v.trim().parse::<i64>().unwrap_or(0));
                    }
                    Err(_) if file == "general_profit" => {}
                    Err(e) => {
                        return Err(GatherError {
                            message: format!("reading {}: {e}", path.display()),
                        })
                    }
                }
            }
        }
        f.emit(acc, &[]);
        if self.psi {
            for resource in ["cpu", "memory", "io"] {
                let text = read(&self.roots.proc(&format!("pressure/{resource}")))?;
                for line in text.lines() {
                    let mut parts = line.split_ascii_whitespace();
                    let Some(kind) = parts.next() else { continue };
                    if resource == "cpu" && kind == "full" {
                        continue;
                    }
                    let mut avg = [0.0f64; 3];
                    let mut total = 0i64;
                    for p in parts {
                        match p.split_once('=') {
                            Some(("avg10", v)) => avg[0] = v.parse().unwrap_or(0.0),
                            Some(("avg60", v)) => avg[1] = v.parse().unwrap_or(0.0),
                            Some(("avg300", v)) => avg[2] = v.parse().unwrap_or(0.0),
                            Some(("total", v)) => total = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let tags = [("resource", resource), ("type", kind)];
                    let mut f = Fields::new(&schema::PRESSURE);
                    f.put("total", total);
                    f.emit(acc, &tags);
                    let mut f = Fields::new(&schema::PRESSURE);
                    f.put("avg10", avg[0])
                        .put("avg60", avg[1])
                        .put("avg300", avg[2]);
                    f.emit(acc, &tags);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    const STAT: &str = "cpu  1 2 3 4\nintr 1462898 27 9 0\nctxt 2626618\nbtime 1700000000\nprocesses 12345\nprocs_running 1\npage 5741 1808\n";

    #[test]
    fn counters_ksm_and_pressure() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut files = vec![
            ("proc/stat", STAT),
            ("proc/sys/kernel/random/entropy_avail", "256\n"),
            ("proc/pressure/cpu", "some avg10=1.50 avg60=0.00 avg300=0.00 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            ("proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n"),
            ("proc/pressure/io", "some avg10=0.10 avg60=0.20 avg300=0.30 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=8\n"),
        ];
        let ksm: Vec<(String, String)> = KSM
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| *f != "general_profit")
            .map(|(i, (_, f))| (format!("sys/kernel/mm/ksm/{f}"), format!("{i}\n")))
            .collect();
        files.extend(ksm.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        tree(d, &files);
        let mut input = Kernel::with_roots(Config::default(), Roots::under(d)).unwrap();
        assert_eq!(
            gather(&mut input, 1),
            ["kernel boot_time=1700000000i,context_switches=2626618i,interrupts=1462898i,processes_forked=12345i,entropy_avail=256i,disk_pages_in=5741i,disk_pages_out=1808i 1"]
        );
        let config: Config = toml::from_str("collect = [\"ksm\", \"psi\"]").unwrap();
        let mut input = Kernel::with_roots(config, Roots::under(d)).unwrap();
        let out = gather(&mut input, 1);
        assert!(out[0].ends_with(",ksm_full_scans=0i,ksm_max_page_sharing=1i,ksm_merge_across_nodes=2i,ksm_pages_shared=3i,ksm_pages_sharing=4i,ksm_pages_to_scan=5i,ksm_pages_unshared=6i,ksm_pages_volatile=7i,ksm_run=8i,ksm_sleep_millisecs=9i,ksm_stable_node_chains=10i,ksm_stable_node_chains_prune_millisecs=11i,ksm_stable_node_dups=12i,ksm_use_zero_pages=13i 1"), "{out:?}");
        assert_eq!(
            out[1..],
            [
                "pressure,resource=cpu,type=some total=100i 1",
                "pressure,resource=cpu,type=some avg10=1.5,avg60=0,avg300=0 1",
                "pressure,resource=memory,type=some total=7i 1",
                "pressure,resource=memory,type=some avg10=0,avg60=0,avg300=0 1",
                "pressure,resource=memory,type=full total=3i 1",
                "pressure,resource=memory,type=full avg10=0,avg60=0,avg300=0 1",
                "pressure,resource=io,type=some total=9i 1",
                "pressure,resource=io,type=some avg10=0.1,avg60=0.2,avg300=0.3 1",
                "pressure,resource=io,type=full total=8i 1",
                "pressure,resource=io,type=full avg10=0,avg60=0,avg300=0 1",
            ]
        );
        // Without a `page` line (some kernels), the page fields are left out.
        tree(
            d,
            &[("proc/stat", "intr 1\nctxt 2\nbtime 3\nprocesses 4\n")],
        );
        let mut input = Kernel::with_roots(Config::default(), Roots::under(d)).unwrap();
        assert_eq!(
            gather(&mut input, 1),
            ["kernel boot_time=3i,context_switches=2i,interrupts=1i,processes_forked=4i,entropy_avail=256i 1"]
        );
    }

    #[test]
    fn a_missing_file_fails_the_gather_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = Kernel::with_roots(Config::default(), Roots::under(dir.path())).unwrap();
        let mut acc = Accumulator::new(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(input.gather(&mut acc)).unwrap_err();
        assert!(err.message.contains("proc/stat"), "{}", err.message);
        assert!(acc.into_metrics().is_empty());
    }
}
