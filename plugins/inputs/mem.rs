//! `inputs.mem`, from /proc/meminfo, as gopsutil reads it for Telegraf: kB × 1024; `cached` = Cached + SReclaimable; `used` = MemTotal − MemAvailable;
//! a line the kernel does not have reads as 0 (the field is still sent).

use serde::Deserialize;

use crate::host::{meminfo, percent, read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.mem]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemConfig {
    collect_extended: bool,
}

/// The built `mem` input.
#[derive(Debug)]
pub struct Mem {
    extended: bool,
    roots: Roots,
}

impl Mem {
    /// The input reading from `roots`.
    pub fn with_roots(config: MemConfig, roots: Roots) -> Self {
        Mem {
            extended: config.collect_extended,
            roots,
        }
    }
}

impl Input for Mem {
    const NAME: &'static str = "mem";
    type Config = MemConfig;

    fn new(config: MemConfig, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Mem::with_roots(config, Roots::default()))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let text = read(&self.roots.proc("meminfo"))?;
        let m = meminfo(&text);
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        let total = get("MemTotal");
        let available = match m.get("MemAvailable") {
            Some(v) => *v,
            // Kernels before 3.14: gopsutil's estimate.
            None => get("MemFree") + get("Buffers") + get("Cached"),
        };
        let used = total.saturating_sub(available);
        let mut f = Fields::new(&schema::MEM);
        f.put("total", total)
            .put("available", available)
            .put("used", used)
            .put("free", get("MemFree"))
            .put("used_percent", percent(used as f64, total as f64))
            .put("available_percent", percent(available as f64, total as f64))
            .put("active", get("Active"))
            .put("buffered", get("Buffers"))
            .put("cached", get("Cached") + get("SReclaimable"))
            .put("commit_limit", get("CommitLimit"))
            .put("committed_as", get("Committed_AS"))
            .put("dirty", get("Dirty"))
            .put("high_free", get("HighFree"))
            .put("high_total", get("HighTotal"))
            .put("huge_pages_free", get("HugePages_Free"))
            .put("huge_page_size", get("Hugepagesize"))
            .put("huge_pages_total", get("HugePages_Total"))
            .put("inactive", get("Inactive"))
            .put("low_free", get("LowFree"))
            .put("low_total", get("LowTotal"))
            .put("mapped", get("Mapped"))
            .put("page_tables", get("PageTables"))
            .put("shared", get("Shmem"))
            .put("slab", get("Slab"))
            .put("sreclaimable", get("SReclaimable"))
            .put("sunreclaim", get("SUnreclaim"))
            .put("swap_cached", get("SwapCached"))
            .put("swap_free", get("SwapFree"))
            .put("swap_total", get("SwapTotal"))
            .put("vmalloc_chunk", get("VmallocChunk"))
            .put("vmalloc_total", get("VmallocTotal"))
            .put("vmalloc_used", get("VmallocUsed"))
            .put("write_back", get("Writeback"))
            .put("write_back_tmp", get("WritebackTmp"));
        if self.extended {
            f.put("active_anon", get("Active(anon)"))
                .put("active_file", get("Active(file)"))
                .put("inactive_anon", get("Inactive(anon)"))
                .put("inactive_file", get("Inactive(file)"))
                .put("percpu", get("Percpu"))
                .put("unevictable", get("Unevictable"));
        }
        f.emit(acc, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    const MEMINFO: &str = "MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:    8000000 kB
Buffers:          100000 kB
Cached:          5000000 kB
SwapCached:            0 kB
Active:          6000000 kB
Inactive:        4000000 kB
Active(anon):    3000000 kB
Inactive(anon):   500000 kB
Active(file):    3000000 kB
Inactive(file):  3500000 kB
Unevictable:           0 kB
SwapTotal:       4000000 kB
SwapFree:        3000000 kB
Dirty:               100 kB
Writeback:             0 kB
Mapped:           700000 kB
Shmem:            300000 kB
Slab:             600000 kB
SReclaimable:     400000 kB
SUnreclaim:       200000 kB
PageTables:        50000 kB
CommitLimit:    12000000 kB
Committed_AS:   10000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       60000 kB
VmallocChunk:          0 kB
Percpu:            20000 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
";

    #[test]
    fn mem_follows_gopsutil() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &[("proc/meminfo", MEMINFO)]);
        let mut input = Mem::with_roots(
            MemConfig {
                collect_extended: true,
            },
            Roots::under(dir.path()),
        );
        let k = 1024i64;
        assert_eq!(
            gather(&mut input, 7),
            [format!(
                "mem total={}i,available={}i,used={}i,free={}i,used_percent=50,available_percent=50,active={}i,buffered={}i,cached={}i,commit_limit={}i,committed_as={}i,dirty={}i,high_free=0i,high_total=0i,huge_pages_free=0i,huge_page_size={}i,huge_pages_total=0i,inactive={}i,low_free=0i,low_total=0i,mapped={}i,page_tables={}i,shared={}i,slab={}i,sreclaimable={}i,sunreclaim={}i,swap_cached=0i,swap_free={}i,swap_total={}i,vmalloc_chunk=0i,vmalloc_total={}i,vmalloc_used={}i,write_back=0i,write_back_tmp=0i,active_anon={}i,active_file={}i,inactive_anon={}i,inactive_file={}i,percpu={}i,unevictable=0i 7",
                16000000 * k, 8000000 * k, 8000000 * k, 2000000 * k, 6000000 * k, 100000 * k,
                5400000 * k, 12000000 * k, 10000000 * k, 100 * k, 2048 * k, 4000000 * k,
                700000 * k, 50000 * k, 300000 * k, 600000 * k, 400000 * k, 200000 * k,
                3000000 * k, 4000000 * k, 34359738367 * k, 60000 * k, 3000000 * k, 3000000 * k,
                500000 * k, 3500000 * k, 20000 * k
            )]
        );
    }
}
