//! `inputs.processes`: processes by state from `/proc/<pid>/stat`, and their threads.
//!
//! States: R running, S sleeping, D blocked, Z zombies, X dead, T/t stopped, W paging, I idle,
//! P parked (only sent when there is one), anything else unknown. Telegraf sends `parked = 1`
//! whatever their number (a bug); heliograph sends the count.

use serde::Deserialize;

use crate::host::{schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.processes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// BSD only in Telegraf (`ps` through sudo): refused here.
    use_sudo: Option<bool>,
}

/// The built input.
#[derive(Debug)]
pub struct Processes {
    roots: Roots,
}

impl Processes {
    /// The input reading from `roots`.
    pub fn with_roots(roots: Roots) -> Self {
        Processes { roots }
    }
}

impl Input for Processes {
    const NAME: &'static str = "processes";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        if config.use_sudo == Some(true) {
            return Err(BuildError::new(
                "`use_sudo` is not supported by heliograph: processes are read from /proc, which needs no privilege",
            ));
        }
        Ok(Processes::with_roots(Roots::default()))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let dir = std::fs::read_dir(&self.roots.proc).map_err(|e| GatherError {
            message: format!("listing {}: {e}", self.roots.proc.display()),
        })?;
        let mut n = [0u64; 10]; // running sleeping blocked zombies dead stopped paging idle unknown parked
        let mut total = 0u64;
        let mut threads = 0u64;
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // A process that ended since the listing is simply not counted.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let fields: Vec<&str> = stat[close + 1..].split_ascii_whitespace().collect();
            let Some(state) = fields.first().and_then(|s| s.bytes().next()) else {
                continue;
            };
            let i = match state {
                b'R' => 0,
                b'S' => 1,
                b'D' => 2,
                b'Z' => 3,
                b'X' => 4,
                b'T' | b't' => 5,
                b'W' => 6,
                b'I' => 7,
                b'P' => 9,
                _ => 8,
            };
            n[i] += 1;
            total += 1;
            threads += fields
                .get(17)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
        let mut f = Fields::new(&schema::PROCESSES);
        f.put("blocked", n[2])
            .put("zombies", n[3])
            .put("stopped", n[5])
            .put("running", n[0])
            .put("sleeping", n[1])
            .put("total", total)
            .put("unknown", n[8])
            .put("dead", n[4])
            .put("paging", n[6])
            .put("idle", n[7])
            .put("total_threads", threads);
        if n[9] > 0 {
            f.put("parked", n[9]);
        }
        f.emit(acc, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    fn stat(pid: u32, comm: &str, state: char, threads: u32) -> (String, String) {
        (
            format!("proc/{pid}/stat"),
            format!("{pid} ({comm}) {state} 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 {threads} 0 100 1000 200\n"),
        )
    }

    #[test]
    fn states_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            stat(1, "init", 'S', 1),
            stat(2, "a) R (b", 'R', 4), // a name with ") " in it
            stat(3, "zz", 'Z', 1),
            stat(4, "d", 'D', 2),
            stat(5, "t", 't', 1),
            stat(6, "i", 'I', 1),
            stat(7, "k", 'K', 1),
        ];
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        tree(dir.path(), &files);
        tree(
            dir.path(),
            &[
                ("proc/self/stat", "x"),
                ("proc/stat", "cpu 1\n"),
                ("proc/99/status", ""),
            ],
        );
        let mut input = Processes::with_roots(Roots::under(dir.path()));
        assert_eq!(
            gather(&mut input, 1),
            ["processes blocked=1i,zombies=1i,stopped=1i,running=1i,sleeping=1i,total=7i,unknown=1i,dead=0i,paging=0i,idle=1i,total_threads=11i 1"]
        );
        tree(
            dir.path(),
            &[
                ("proc/8/stat", &stat(8, "p", 'P', 1).1),
                ("proc/9/stat", &stat(9, "p", 'P', 1).1),
            ],
        );
        assert!(gather(&mut input, 1)[0].contains(",parked=2i "));
    }
}
