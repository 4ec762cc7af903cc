//! `inputs.system` (Telegraf's legacy set): load averages, CPU counts and logged-in users in
//! one metric, `uptime` in a second and `uptime_format` in a third, all at one timestamp.
//! `n_users` and `n_unique_users` come from utmp (`HOST_VAR/run/utmp`) and are left out when
//! it cannot be read, as Telegraf does.

use std::collections::HashSet;

use serde::Deserialize;

use crate::host::{read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.system]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Only `["legacy"]` (the default) is supported.
    include: Option<Vec<String>>,
}

/// The built input.
#[derive(Debug)]
pub struct System {
    roots: Roots,
}

impl System {
    /// The input reading from `roots`.
    pub fn with_roots(roots: Roots) -> Self {
        System { roots }
    }
}

/// Telegraf's `uptime_format`: `14 days, 11:07`, `1 day,  0:05`, ` 3:09`.
pub fn format_uptime(secs: u64) -> String {
    let days = secs / 86_400;
    let mut out = String::new();
    if days != 0 {
        let s = if days > 1 { "s" } else { "" };
        out.push_str(&format!("{days} day{s}, "));
    }
    let minutes = secs / 60;
    out.push_str(&format!("{:2}:{:02}", (minutes / 60) % 24, minutes % 60));
    out
}

/// Logical CPUs (`processor` lines) and physical cores (distinct physical id / core id pairs;
/// the logical count where cpuinfo does not say).
fn cpu_counts(cpuinfo: &str) -> (usize, usize) {
    let mut logical = 0;
    let mut cores = HashSet::new();
    let mut physical = String::new();
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "processor" => logical += 1,
            "physical id" => physical = v.trim().to_owned(),
            "core id" => {
                cores.insert((physical.clone(), v.trim().to_owned()));
            }
            _ => {}
        }
    }
    let physical = if cores.is_empty() {
        logical
    } else {
        cores.len()
    };
    (logical, physical)
}

/// Size of one glibc `struct utmp` on Linux, and where its fields are.
const UTMP_SIZE: usize = 384;
const USER_PROCESS: i16 = 7;

/// (sessions, distinct users) of USER_PROCESS records in a utmp file.
fn users(utmp: &[u8]) -> (usize, usize) {
    let mut sessions = 0;
    let mut names = HashSet::new();
    for rec in utmp.chunks_exact(UTMP_SIZE) {
        let kind = i16::from_ne_bytes([rec[0], rec[1]]);
        if kind != USER_PROCESS {
            continue;
        }
        sessions += 1;
        let user = &rec[44..76];
        let end = user.iter().position(|&b| b == 0).unwrap_or(user.len());
        names.insert(user[..end].to_vec());
    }
    (sessions, names.len())
}

impl Input for System {
    const NAME: &'static str = "system";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        match config.include.as_deref() {
            None => {}
            Some([one]) if one == "legacy" => {}
            Some(other) => {
                return Err(BuildError::new(format!(
                    "`include = {other:?}` is not supported by heliograph: only [\"legacy\"] (the default)"
                )))
            }
        }
        Ok(System::with_roots(Roots::default()))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let load = read(&self.roots.proc("loadavg"))?;
        let l: Vec<f64> = load
            .split_ascii_whitespace()
            .take(3)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let (logical, physical) = cpu_counts(&read(&self.roots.proc("cpuinfo"))?);
        let mut f = Fields::new(&schema::SYSTEM);
        f.put("load1", l.first().copied().unwrap_or(0.0))
            .put("load5", l.get(1).copied().unwrap_or(0.0))
            .put("load15", l.get(2).copied().unwrap_or(0.0))
            .put("n_cpus", logical)
            .put("n_physical_cpus", physical);
        if let Ok(utmp) = std::fs::read(self.roots.var.join("run/utmp")) {
            let (sessions, unique) = users(&utmp);
            f.put("n_users", sessions).put("n_unique_users", unique);
        }
        f.emit(acc, &[]);
        let uptime = read(&self.roots.proc("uptime"))?;
        let secs = uptime
            .split_ascii_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        let mut f = Fields::new(&schema::SYSTEM);
        f.put("uptime", secs);
        f.emit(acc, &[]);
        let mut f = Fields::new(&schema::SYSTEM);
        f.put_str("uptime_format", format_uptime(secs));
        f.emit(acc, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    #[test]
    fn uptime_format_as_telegraf() {
        assert_eq!(format_uptime(0), " 0:00");
        assert_eq!(format_uptime(3 * 3600 + 9 * 60 + 59), " 3:09");
        assert_eq!(format_uptime(86_400 + 5 * 60), "1 day,  0:05");
        assert_eq!(
            format_uptime(14 * 86_400 + 11 * 3600 + 7 * 60),
            "14 days, 11:07"
        );
    }

    fn utmp_record(kind: i16, user: &str) -> Vec<u8> {
        let mut rec = vec![0u8; UTMP_SIZE];
        rec[..2].copy_from_slice(&kind.to_ne_bytes());
        rec[44..44 + user.len()].copy_from_slice(user.as_bytes());
        rec
    }

    #[test]
    fn three_metrics_with_users_when_utmp_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree(d, &[
            ("proc/loadavg", "0.50 1.25 2.00 1/300 4000\n"),
            ("proc/cpuinfo", "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\n"),
            ("proc/uptime", "1234567.89 100.0\n"),
        ]);
        let mut input = System::with_roots(Roots::under(d));
        assert_eq!(
            gather(&mut input, 5),
            [
                "system load1=0.5,load5=1.25,load15=2,n_cpus=3i,n_physical_cpus=2i 5",
                "system uptime=1234567i 5",
                "system uptime_format=\"14 days,  6:56\" 5",
            ]
        );
        let mut utmp = utmp_record(USER_PROCESS, "alice");
        utmp.extend(utmp_record(USER_PROCESS, "bob"));
        utmp.extend(utmp_record(USER_PROCESS, "alice"));
        utmp.extend(utmp_record(8, "gone"));
        std::fs::create_dir_all(d.join("var/run")).unwrap();
        std::fs::write(d.join("var/run/utmp"), utmp).unwrap();
        assert_eq!(
            gather(&mut input, 5)[0],
            "system load1=0.5,load5=1.25,load15=2,n_cpus=3i,n_physical_cpus=2i,n_users=3i,n_unique_users=2i 5"
        );
    }
}
