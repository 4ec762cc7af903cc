//! `inputs.swap`: swap sizes from /proc/meminfo (one metric) and pages swapped in and out from
//! /proc/vmstat, in bytes (another), as Telegraf sends them.

use serde::Deserialize;

use crate::host::{meminfo, percent, read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.swap]]`: no options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapConfig {}

/// The built `swap` input.
#[derive(Debug)]
pub struct Swap {
    roots: Roots,
}

impl Swap {
    /// The input reading from `roots`.
    pub fn with_roots(roots: Roots) -> Self {
        Swap { roots }
    }
}

/// Bytes per page counted by /proc/vmstat's pswpin/pswpout, as gopsutil assumes.
const PAGE: u64 = 4096;

impl Input for Swap {
    const NAME: &'static str = "swap";
    type Config = SwapConfig;

    fn new(_: SwapConfig, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Swap::with_roots(Roots::default()))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let text = read(&self.roots.proc("meminfo"))?;
        let m = meminfo(&text);
        let total = m.get("SwapTotal").copied().unwrap_or(0);
        let free = m.get("SwapFree").copied().unwrap_or(0);
        let used = total.saturating_sub(free);
        let mut f = Fields::new(&schema::SWAP);
        f.put("total", total)
            .put("used", used)
            .put("free", free)
            .put("used_percent", percent(used as f64, total as f64));
        f.emit(acc, &[]);
        let vmstat = read(&self.roots.proc("vmstat"))?;
        let counter = |key: &str| {
            vmstat
                .lines()
                .find_map(|l| {
                    l.strip_prefix(key)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        let mut f = Fields::new(&schema::SWAP);
        f.put("in", counter("pswpin") * PAGE)
            .put("out", counter("pswpout") * PAGE);
        f.emit(acc, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    const MEMINFO: &str =
        "MemTotal:       16000000 kB\nSwapTotal:       4000000 kB\nSwapFree:        3000000 kB\n";

    #[test]
    fn swap_sizes_and_paging() {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            &[
                ("proc/meminfo", MEMINFO),
                ("proc/vmstat", "nr_free_pages 1\npswpin 10\npswpout 20\n"),
            ],
        );
        let mut input = Swap::with_roots(Roots::under(dir.path()));
        assert_eq!(
            gather(&mut input, 7),
            [
                format!(
                    "swap total={}i,used={}i,free={}i,used_percent=25 7",
                    4096000000i64, 1024000000i64, 3072000000i64
                ),
                "swap in=40960i,out=81920i 7".to_owned(),
            ]
        );
        // No swap at all: zeros, not a division by zero.
        tree(
            dir.path(),
            &[(
                "proc/meminfo",
                "MemTotal: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
            )],
        );
        assert_eq!(
            gather(&mut input, 8)[0],
            "swap total=0i,used=0i,free=0i,used_percent=0 8"
        );
    }
}
