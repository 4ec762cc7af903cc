//! `inputs.cpu`: per-CPU and total CPU usage from /proc/stat, with Telegraf's arithmetic.
//!
//! Times are /proc/stat ticks over USER_HZ (100). Total = user + system + nice + iowait + irq +
//! softirq + steal + idle (guest is already inside user, guest_nice inside nice);
//! `usage_user` subtracts guest and `usage_nice` guest_nice; active = total − idle. The first
//! gather emits no usage (there is no delta yet); a CPU whose total did not move is skipped; a
//! total that went backwards (a counter reset) fails that gather and starts a new baseline.

use std::collections::HashMap;

use serde::Deserialize;

use crate::host::{read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// Ticks per second of /proc/stat (USER_HZ, 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// `[[inputs.cpu]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    percpu: bool,
    totalcpu: bool,
    collect_cpu_time: bool,
    report_active: bool,
    core_tags: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            percpu: true,
            totalcpu: true,
            collect_cpu_time: false,
            report_active: false,
            core_tags: false,
        }
    }
}

/// One CPU's times in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Times {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
    guest: u64,
    guest_nice: u64,
}

/// Ticks as seconds.
fn secs(ticks: u64) -> f64 {
    ticks as f64 / USER_HZ
}

impl Times {
    fn total(&self) -> u64 {
        self.user
            + self.system
            + self.nice
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
            + self.idle
    }
}

/// The built input.
#[derive(Debug)]
pub struct Cpu {
    config: Config,
    roots: Roots,
    last: HashMap<String, Times>,
}

impl Cpu {
    /// The input reading from `roots`.
    pub fn with_roots(config: Config, roots: Roots) -> Self {
        Cpu {
            config,
            roots,
            last: HashMap::new(),
        }
    }
}

fn parse_stat(text: &str) -> Vec<(String, Times)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(name) = parts.next().filter(|n| n.starts_with("cpu")) else {
            continue;
        };
        let v: Vec<u64> = parts.map(|p| p.parse::<u64>().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let name = if name == "cpu" { "cpu-total" } else { name };
        out.push((
            name.to_owned(),
            Times {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                iowait: at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
                guest: at(8),
                guest_nice: at(9),
            },
        ));
    }
    out
}

/// `cpuN` → (core id, physical id) from /proc/cpuinfo.
fn core_ids(text: &str) -> HashMap<String, (String, String)> {
    let mut out = HashMap::new();
    for block in text.split("\n\n") {
        let mut processor = None;
        let mut core = String::new();
        let mut physical = String::new();
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "processor" => processor = Some(v.trim().to_owned()),
                "core id" => core = v.trim().to_owned(),
                "physical id" => physical = v.trim().to_owned(),
                _ => {}
            }
        }
        if let Some(p) = processor {
            out.insert(format!("cpu{p}"), (core, physical));
        }
    }
    out
}

impl Input for Cpu {
    const NAME: &'static str = "cpu";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Cpu::with_roots(config, Roots::default()))
    }

    fn needs_two_gathers(&self) -> bool {
        true
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let times = parse_stat(&read(&self.roots.proc("stat"))?);
        let cores = if self.config.core_tags {
            core_ids(&read(&self.roots.proc("cpuinfo"))?)
        } else {
            HashMap::new()
        };
        let c = &self.config;
        let mut result = Ok(());
        for (name, t) in &times {
            let total_cpu = name == "cpu-total";
            if (total_cpu && !c.totalcpu) || (!total_cpu && !c.percpu) {
                continue;
            }
            let mut tags: Vec<(&str, &str)> = vec![("cpu", name)];
            if let Some((core, physical)) = cores.get(name) {
                tags.push(("core_id", core));
                tags.push(("physical_id", physical));
            }
            if c.collect_cpu_time {
                let mut f = Fields::new(&schema::CPU);
                f.put("time_user", secs(t.user))
                    .put("time_system", secs(t.system))
                    .put("time_idle", secs(t.idle))
                    .put("time_nice", secs(t.nice))
                    .put("time_iowait", secs(t.iowait))
                    .put("time_irq", secs(t.irq))
                    .put("time_softirq", secs(t.softirq))
                    .put("time_steal", secs(t.steal))
                    .put("time_guest", secs(t.guest))
                    .put("time_guest_nice", secs(t.guest_nice));
                if c.report_active {
                    f.put("time_active", secs(t.total().saturating_sub(t.idle)));
                }
                f.emit(acc, &tags);
            }
            let Some(last) = self.last.get(name) else {
                continue;
            };
            if t.total() < last.total() {
                result = Err(GatherError {
                    message: format!(
                        "{name}: total CPU time went backwards ({} to {} ticks); usage starts again next gather",
                        last.total(),
                        t.total()
                    ),
                });
                break;
            }
            let total_delta = (t.total() - last.total()) as f64;
            if total_delta == 0.0 {
                continue;
            }
            // Deltas as floats, as Telegraf computes them (a single counter may step back).
            let d = |now: u64, before: u64| now as f64 - before as f64;
            let pct = |now: u64, before: u64| 100.0 * d(now, before) / total_delta;
            let mut f = Fields::new(&schema::CPU);
            f.put(
                "usage_user",
                100.0 * (d(t.user, last.user) - d(t.guest, last.guest)) / total_delta,
            )
            .put("usage_system", pct(t.system, last.system))
            .put("usage_idle", pct(t.idle, last.idle))
            .put(
                "usage_nice",
                100.0 * (d(t.nice, last.nice) - d(t.guest_nice, last.guest_nice)) / total_delta,
            )
            .put("usage_iowait", pct(t.iowait, last.iowait))
            .put("usage_irq", pct(t.irq, last.irq))
            .put("usage_softirq", pct(t.softirq, last.softirq))
            .put("usage_steal", pct(t.steal, last.steal))
            .put("usage_guest", pct(t.guest, last.guest))
            .put("usage_guest_nice", pct(t.guest_nice, last.guest_nice));
            if c.report_active {
                f.put(
                    "usage_active",
                    100.0 * (total_delta - d(t.idle, last.idle)) / total_delta,
                );
            }
            f.emit(acc, &tags);
        }
        self.last = times.into_iter().collect();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    fn cpu(dir: &std::path::Path, extra: &str) -> Cpu {
        let config: Config = toml::from_str(extra).unwrap();
        Cpu::with_roots(config, Roots::under(dir))
    }

    fn stat(dir: &std::path::Path, total: &str, cpu0: &str) {
        tree(
            dir,
            &[(
                "proc/stat",
                &format!("cpu  {total}\ncpu0 {cpu0}\nintr 1 2 3\nctxt 5\n"),
            )],
        );
    }

    #[test]
    fn first_gather_has_no_usage_then_deltas_follow_telegraf() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // user nice system idle iowait irq softirq steal guest guest_nice (ticks)
        stat(
            d,
            "100 20 50 800 10 5 5 10 40 10",
            "100 20 50 800 10 5 5 10 40 10",
        );
        let mut input = cpu(
            d,
            "collect_cpu_time = true\nreport_active = true\ncore_tags = false",
        );
        assert_eq!(
            gather(&mut input, 1),
            [
                "cpu,cpu=cpu-total time_user=1,time_system=0.5,time_idle=8,time_nice=0.2,time_iowait=0.1,time_irq=0.05,time_softirq=0.05,time_steal=0.1,time_guest=0.4,time_guest_nice=0.1,time_active=2 1",
                "cpu,cpu=cpu0 time_user=1,time_system=0.5,time_idle=8,time_nice=0.2,time_iowait=0.1,time_irq=0.05,time_softirq=0.05,time_steal=0.1,time_guest=0.4,time_guest_nice=0.1,time_active=2 1",
            ]
        );
        // +200 ticks in all: user +60 (guest +20 of it), nice +10 (guest_nice +10), system +20,
        // idle +100, iowait +10; cpu0 did not move.
        stat(
            d,
            "160 30 70 900 20 5 5 10 60 20",
            "100 20 50 800 10 5 5 10 40 10",
        );
        let mut input2 = cpu(d, "report_active = true");
        input2.last = input.last.clone();
        assert_eq!(
            gather(&mut input2, 2),
            ["cpu,cpu=cpu-total usage_user=20,usage_system=10,usage_idle=50,usage_nice=0,usage_iowait=5,usage_irq=0,usage_softirq=0,usage_steal=0,usage_guest=10,usage_guest_nice=5,usage_active=50 2"]
        );
    }

    #[test]
    fn a_counter_reset_fails_the_gather_and_rebases() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        stat(d, "100 0 100 800 0 0 0 0 0 0", "100 0 100 800 0 0 0 0 0 0");
        let mut input = cpu(d, "percpu = false");
        assert!(gather(&mut input, 1).is_empty());
        stat(d, "10 0 10 80 0 0 0 0 0 0", "10 0 10 80 0 0 0 0 0 0");
        let mut acc = Accumulator::new(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(input.gather(&mut acc)).unwrap_err();
        assert!(err.message.contains("went backwards"), "{}", err.message);
        // The next gather measures from the new baseline.
        stat(d, "20 0 20 160 0 0 0 0 0 0", "20 0 20 160 0 0 0 0 0 0");
        assert_eq!(
            gather(&mut input, 3),
            ["cpu,cpu=cpu-total usage_user=10,usage_system=10,usage_idle=80,usage_nice=0,usage_iowait=0,usage_irq=0,usage_softirq=0,usage_steal=0,usage_guest=0,usage_guest_nice=0 3"]
        );
    }

    #[test]
    fn core_tags_come_from_cpuinfo() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        stat(d, "1 0 0 1 0 0 0 0 0 0", "1 0 0 1 0 0 0 0 0 0");
        tree(
            d,
            &[(
                "proc/cpuinfo",
                "processor\t: 0\nphysical id\t: 0\ncore id\t\t: 3\n\n",
            )],
        );
        let mut input = cpu(
            d,
            "core_tags = true\ntotalcpu = false\ncollect_cpu_time = true",
        );
        let out = gather(&mut input, 1);
        assert!(
            out[0].starts_with("cpu,core_id=3,cpu=cpu0,physical_id=0 time_user=0.01"),
            "{out:?}"
        );
    }
}
