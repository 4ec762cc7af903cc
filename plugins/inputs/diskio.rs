//! `inputs.diskio`: block device counters from /proc/diskstats, as Telegraf reports them
//! (sectors × 512 for bytes, times in ms), and from the second gather `io_await`, `io_svctm`
//! (ms per I/O, when I/Os happened) and `io_util` (percent of wall time busy). A device whose
//! counters went backwards (a wrap or a reset) gets no rates that gather.
//!
//! `devices` takes names or globs; `skip_serial_number = false` adds `serial` and
//! `device_tags` udev properties, both from `HOST_RUN/udev/data/b<major>:<minor>`;
//! `name_templates` (`$ID_FS_LABEL`, `${DM_NAME}`) rename a device from its udev properties.

use std::collections::HashMap;

use serde::Deserialize;

use crate::filter::GlobList;
use crate::host::{read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.diskio]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    devices: Vec<String>,
    skip_serial_number: bool,
    device_tags: Vec<String>,
    name_templates: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            devices: Vec::new(),
            skip_serial_number: true,
            device_tags: Vec::new(),
            name_templates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    reads: u64,
    merged_reads: u64,
    read_sectors: u64,
    read_time: u64,
    writes: u64,
    merged_writes: u64,
    write_sectors: u64,
    write_time: u64,
    in_progress: u64,
    io_time: u64,
    weighted_io_time: u64,
}

impl Counters {
    fn any_below(&self, before: &Counters) -> bool {
        self.reads < before.reads
            || self.writes < before.writes
            || self.read_time < before.read_time
            || self.write_time < before.write_time
            || self.io_time < before.io_time
    }
}

/// /proc/diskstats lines: (major:minor, name, counters).
fn parse(text: &str) -> Vec<(String, String, Counters)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some((
                format!("{}:{}", f[0], f[1]),
                f[2].to_owned(),
                Counters {
                    reads: n(3),
                    merged_reads: n(4),
                    read_sectors: n(5),
                    read_time: n(6),
                    writes: n(7),
                    merged_writes: n(8),
                    write_sectors: n(9),
                    write_time: n(10),
                    in_progress: n(11),
                    io_time: n(12),
                    weighted_io_time: n(13),
                },
            ))
        })
        .collect()
}

/// Bytes per sector as /proc/diskstats counts them.
const SECTOR: u64 = 512;

/// The built input.
#[derive(Debug)]
pub struct Diskio {
    config: Config,
    devices: Option<GlobList>,
    roots: Roots,
    last: HashMap<String, Counters>,
    last_at: Option<std::time::Instant>,
}

impl Diskio {
    /// The input reading from `roots`.
    ///
    /// # Errors
    /// A `devices` entry that is not a valid glob.
    pub fn with_roots(config: Config, roots: Roots) -> Result<Self, BuildError> {
        let devices = if config.devices.is_empty() {
            None
        } else {
            let names: Vec<String> = config
                .devices
                .iter()
                .map(|d| d.trim_start_matches("/dev/").to_owned())
                .collect();
            Some(
                GlobList::new(&names, "")
                    .map_err(|e| BuildError::new(format!("`devices`: {e}")))?,
            )
        };
        Ok(Diskio {
            config,
            devices,
            roots,
            last: HashMap::new(),
            last_at: None,
        })
    }

    fn udev(&self, majmin: &str) -> HashMap<String, String> {
        let path = self.roots.run.join(format!("udev/data/b{majmin}"));
        std::fs::read_to_string(path)
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("E:")?.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first template whose every `$VAR` / `${VAR}` is a udev property of the device.
    fn templated_name(&self, props: &HashMap<String, String>) -> Option<String> {
        'templates: for t in &self.config.name_templates {
            let mut out = String::new();
            let mut rest = t.as_str();
            while let Some(i) = rest.find('$') {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                let (name, next) = if let Some(inner) = after.strip_prefix('{') {
                    match inner.find('}') {
                        Some(end) => (&inner[..end], &inner[end + 1..]),
                        None => continue 'templates,
                    }
                } else {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                };
                match props.get(name) {
                    Some(v) => out.push_str(v),
                    None => continue 'templates,
                }
                rest = next;
            }
            out.push_str(rest);
            return Some(out);
        }
        None
    }
}

impl Input for Diskio {
    const NAME: &'static str = "diskio";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Diskio::with_roots(config, Roots::default())
    }

    fn needs_two_gathers(&self) -> bool {
        true
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let now = std::time::Instant::now();
        let elapsed_ms = self
            .last_at
            .map(|t| now.duration_since(t).as_millis() as f64);
        let stats = parse(&read(&self.roots.proc("diskstats"))?);
        let mut next = HashMap::with_capacity(stats.len());
        let wants_udev = !self.config.skip_serial_number
            || !self.config.device_tags.is_empty()
            || !self.config.name_templates.is_empty();
        for (majmin, name, c) in stats {
            if !crate::host::any_glob(&self.devices, &name) {
                continue;
            }
            let props = if wants_udev {
                self.udev(&majmin)
            } else {
                HashMap::new()
            };
            let shown = self.templated_name(&props).unwrap_or_else(|| name.clone());
            let mut tags: Vec<(&str, String)> = vec![("name", shown)];
            if !self.config.skip_serial_number {
                let serial = props
                    .get("ID_SERIAL")
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned());
                tags.push(("serial", serial));
            }
            if let Ok(wwid) = std::fs::read_to_string(self.roots.sys(&format!("block/{name}/wwid")))
            {
                tags.push(("wwid", wwid.trim().to_owned()));
            }
            for key in &self.config.device_tags {
                if let Some(v) = props.get(key) {
                    tags.push((key.as_str(), v.clone()));
                }
            }
            let mut f = Fields::new(&schema::DISKIO);
            f.put("reads", c.reads)
                .put("writes", c.writes)
                .put("read_bytes", c.read_sectors * SECTOR)
                .put("write_bytes", c.write_sectors * SECTOR)
                .put("read_time", c.read_time)
                .put("write_time", c.write_time)
                .put("io_time", c.io_time)
                .put("weighted_io_time", c.weighted_io_time)
                .put("iops_in_progress", c.in_progress)
                .put("merged_reads", c.merged_reads)
                .put("merged_writes", c.merged_writes);
            if let (Some(last), Some(ms)) = (self.last.get(&name), elapsed_ms) {
                if !c.any_below(last) {
                    let ios = (c.reads + c.writes - last.reads - last.writes) as f64;
                    let rw_time =
                        (c.read_time + c.write_time - last.read_time - last.write_time) as f64;
                    let io_time = (c.io_time - last.io_time) as f64;
                    if ios > 0.0 {
                        f.put("io_await", rw_time / ios)
                            .put("io_svctm", io_time / ios);
                    }
                    if ms > 0.0 {
                        f.put("io_util", 100.0 * io_time / ms);
                    }
                }
            }
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.emit(acc, &tags);
            next.insert(name, c);
        }
        self.last = next;
        self.last_at = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    fn stats(dir: &std::path::Path, sda: &str) {
        tree(
            dir,
            &[(
                "proc/diskstats",
                &format!(
                    "   8       0 sda {sda} 0 0 0 0\n   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n"
                ),
            )],
        );
    }

    #[test]
    fn counters_then_rates_and_a_wrap_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // reads merged sectors time | writes merged sectors time | inflight io_time weighted
        stats(d, "100 10 2000 50 200 20 4000 150 1 300 400");
        tree(
            d,
            &[
                (
                    "run/udev/data/b8:0",
                    "S:disk/by-id/x\nE:ID_SERIAL=WD-123\nE:ID_MODEL=Blue\n",
                ),
                ("sys/block/sda/wwid", "naa.5000\n"),
            ],
        );
        let config: Config = toml::from_str(
            "devices = [\"sd*\"]\nskip_serial_number = false\ndevice_tags = [\"ID_MODEL\"]",
        )
        .unwrap();
        let mut input = Diskio::with_roots(config, Roots::under(d)).unwrap();
        assert_eq!(
            gather(&mut input, 1),
            ["diskio,ID_MODEL=Blue,name=sda,serial=WD-123,wwid=naa.5000 reads=100i,writes=200i,read_bytes=1024000i,write_bytes=2048000i,read_time=50i,write_time=150i,io_time=300i,weighted_io_time=400i,iops_in_progress=1i,merged_reads=10i,merged_writes=20i 1"]
        );
        // +100 I/Os taking +300 ms, busy +50 ms.
        stats(d, "150 10 2000 100 250 20 4000 400 0 350 400");
        input.last_at = Some(std::time::Instant::now() - std::time::Duration::from_millis(1000));
        let out = gather(&mut input, 2);
        assert!(
            out[0].contains(",io_await=3,io_svctm=0.5,io_util="),
            "{out:?}"
        );
        let util: f64 = out[0]
            .split("io_util=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (4.0..=5.0).contains(&util),
            "50 ms busy of about 1000: {util}"
        );
        // Counters went backwards: no rates this time, the counters as they are.
        stats(d, "1 0 0 0 1 0 0 0 0 0 0");
        let out = gather(&mut input, 3);
        assert!(
            !out[0].contains("io_await") && !out[0].contains("io_util"),
            "{out:?}"
        );
        assert!(
            out[0].contains(",reads=1i,") || out[0].contains(" reads=1i,"),
            "{out:?}"
        );
    }

    #[test]
    fn all_devices_and_name_templates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        stats(d, "1 0 0 0 0 0 0 0 0 0 0");
        tree(d, &[("run/udev/data/b8:0", "E:DM_NAME=root\n")]);
        let config: Config =
            toml::from_str("name_templates = [\"$ID_FS_LABEL\", \"dm-${DM_NAME}\"]").unwrap();
        let mut input = Diskio::with_roots(config, Roots::under(d)).unwrap();
        let out = gather(&mut input, 1);
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with("diskio,name=dm-root reads=1i"),
            "{out:?}"
        );
        assert!(out[1].starts_with("diskio,name=loop0 reads=1i"), "{out:?}");
    }
}
