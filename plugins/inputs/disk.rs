//! `inputs.disk`: usage of mounted filesystems, as Telegraf computes it: mounts from
//! `HOST_PROC/1/mountinfo` (else `self/mounts`), `statvfs` under `HOST_MOUNT_PREFIX`; total =
//! blocks × bsize, free = bavail × bsize (what non-root may use), used = (blocks − bfree) ×
//! bsize, `used_percent` = used / (used + free), as `df` shows it. `autofs` and filesystems of
//! size 0 (proc, sysfs, cgroup, ...) are skipped; a mount point seen twice is reported once.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::host::{percent, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.disk]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Only these mount points (exact); empty: all.
    mount_points: Vec<String>,
    /// Skip these filesystem types.
    ignore_fs: Vec<String>,
    /// Skip mounts with any of these options.
    ignore_mount_opts: Vec<String>,
}

/// What `statvfs` says of a filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStat {
    /// Block size.
    pub bsize: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to non-root.
    pub bavail: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
}

/// `statvfs(2)` of `path`.
///
/// # Errors
/// The system call's.
pub fn statvfs(path: &Path) -> std::io::Result<FsStat> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FsStat {
        bsize: s.f_bsize,
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
    })
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    device: String,
    point: String,
    fstype: String,
    opts: Vec<String>,
}

/// Undoes the octal escapes of mount tables (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts from mountinfo: `ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - FSTYPE SOURCE SUPER`.
fn parse_mountinfo(text: &str) -> Vec<(Mount, String)> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 2 {
                return None;
            }
            let mut opts: Vec<String> = l[5].split(',').map(str::to_owned).collect();
            if let Some(sup) = r.get(2) {
                for o in sup.split(',') {
                    if !opts.iter().any(|x| x == o) {
                        opts.push(o.to_owned());
                    }
                }
            }
            Some((
                Mount {
                    device: unescape(r[1]),
                    point: unescape(l[4]),
                    fstype: r[0].to_owned(),
                    opts,
                },
                l[2].to_owned(),
            ))
        })
        .collect()
}

/// Mounts from /proc/self/mounts: `SOURCE POINT FSTYPE OPTS 0 0`.
fn parse_mounts(text: &str) -> Vec<(Mount, String)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            (f.len() >= 4).then(|| {
                (
                    Mount {
                        device: unescape(f[0]),
                        point: unescape(f[1]),
                        fstype: f[2].to_owned(),
                        opts: f[3].split(',').map(str::to_owned).collect(),
                    },
                    String::new(),
                )
            })
        })
        .collect()
}

/// The built input.
#[derive(Debug)]
pub struct Disk {
    config: Config,
    roots: Roots,
    stat: fn(&Path) -> std::io::Result<FsStat>,
}

impl Disk {
    /// The input reading from `roots`, sizing filesystems with `stat`.
    pub fn with_roots(
        config: Config,
        roots: Roots,
        stat: fn(&Path) -> std::io::Result<FsStat>,
    ) -> Self {
        Disk {
            config,
            roots,
            stat,
        }
    }

    fn mounts(&self) -> Result<Vec<Mount>, GatherError> {
        let parsed = match std::fs::read_to_string(self.roots.proc("1/mountinfo")) {
            Ok(text) => parse_mountinfo(&text),
            Err(_) => parse_mounts(&crate::host::read(&self.roots.proc("self/mounts"))?),
        };
        Ok(parsed
            .into_iter()
            .map(|(mut m, majmin)| {
                // The kernel calls the root device `/dev/root`: name the real one.
                if m.device == "/dev/root" && !majmin.is_empty() {
                    let uevent = self.roots.sys(&format!("dev/block/{majmin}/uevent"));
                    if let Ok(text) = std::fs::read_to_string(uevent) {
                        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
                            m.device = format!("/dev/{name}");
                        }
                    }
                }
                m
            })
            .collect())
    }
}

impl Input for Disk {
    const NAME: &'static str = "disk";
    type Config = Config;

    fn new(config: Config, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Disk::with_roots(config, Roots::default(), statvfs))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let c = &self.config;
        let mut seen = HashSet::new();
        for m in self.mounts()? {
            if !c.mount_points.is_empty() && !c.mount_points.contains(&m.point) {
                continue;
            }
            if m.fstype == "autofs" || c.ignore_fs.contains(&m.fstype) {
                continue;
            }
            if m.opts.iter().any(|o| c.ignore_mount_opts.contains(o)) {
                continue;
            }
            let prefix = self.roots.mount_prefix.to_string_lossy();
            let reach = format!("{prefix}{}", m.point);
            if !seen.insert(reach.clone()) {
                continue;
            }
            let Ok(st) = (self.stat)(Path::new(&reach)) else {
                continue; // gone, or not ours to read: as Telegraf, skipped
            };
            let total = st.blocks * st.bsize;
            if total == 0 {
                continue;
            }
            let free = st.bavail * st.bsize;
            let used = st.blocks.saturating_sub(st.bfree) * st.bsize;
            let inodes_used = st.files.saturating_sub(st.ffree);
            let mode = if m.opts.iter().any(|o| o == "rw") {
                "rw"
            } else if m.opts.iter().any(|o| o == "ro") {
                "ro"
            } else {
                "unknown"
            };
            let device = match m.device.replace("/dev/", "") {
                d if d.is_empty() => m.fstype.clone(),
                d => d,
            };
            let path = format!(
                "/{}",
                m.point
                    .trim_start_matches(prefix.as_ref())
                    .trim_start_matches('/')
            );
            let label = std::fs::read_to_string(self.roots.sys(&format!("block/{device}/dm/name")))
                .ok()
                .map(|s| s.trim().to_owned());
            let mut tags = vec![
                ("path", path.as_str()),
                ("device", device.as_str()),
                ("fstype", m.fstype.as_str()),
                ("mode", mode),
            ];
            if let Some(label) = &label {
                tags.push(("label", label));
            }
            let mut f = Fields::new(&schema::DISK);
            f.put("total", total)
                .put("free", free)
                .put("used", used)
                .put("used_percent", percent(used as f64, (used + free) as f64))
                .put("inodes_total", st.files)
                .put("inodes_free", st.ffree)
                .put("inodes_used", inodes_used)
                .put(
                    "inodes_used_percent",
                    percent(inodes_used as f64, st.files as f64),
                );
            f.emit(acc, &tags);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    fn fake_stat(path: &Path) -> std::io::Result<FsStat> {
        match path.to_str().unwrap() {
            "/" => Ok(FsStat {
                bsize: 4096,
                blocks: 1000,
                bfree: 400,
                bavail: 300,
                files: 100,
                ffree: 75,
            }),
            "/mnt/my disk" => Ok(FsStat {
                bsize: 1024,
                blocks: 10,
                bfree: 10,
                bavail: 10,
                files: 0,
                ffree: 0,
            }),
            "/boot" => Ok(FsStat {
                bsize: 4096,
                blocks: 100,
                bfree: 50,
                bavail: 50,
                files: 10,
                ffree: 5,
            }),
            "/proc" => Ok(FsStat::default()),
            _ => Err(std::io::Error::other("no such mount")),
        }
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw,errors=remount-ro
23 22 0:5 / /proc rw,nosuid - proc proc rw
24 22 8:2 / /mnt/my\\040disk ro,relatime - vfat /dev/sdb1 ro
25 22 0:40 / /auto rw - autofs systemd-1 rw
26 22 8:3 / /boot rw - xfs /dev/sda3 rw
27 22 8:1 / / rw,relatime - ext4 /dev/sda1 rw
28 22 0:41 / /gone rw - tmpfs tmpfs rw
";

    #[test]
    fn usage_and_tags_follow_telegraf() {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            &[
                ("proc/1/mountinfo", MOUNTINFO),
                (
                    "sys/dev/block/8:1/uevent",
                    "MAJOR=8\nMINOR=1\nDEVNAME=sda1\n",
                ),
            ],
        );
        let mut input = Disk::with_roots(Config::default(), Roots::under(dir.path()), fake_stat);
        assert_eq!(
            gather(&mut input, 1),
            [
                // used = (1000-400)*4096, free = 300*4096: used% = 600/900.
                "disk,device=sda1,fstype=ext4,mode=rw,path=/ total=4096000i,free=1228800i,used=2457600i,used_percent=66.66666666666667,inodes_total=100i,inodes_free=75i,inodes_used=25i,inodes_used_percent=25 1",
                "disk,device=sdb1,fstype=vfat,mode=ro,path=/mnt/my\\ disk total=10240i,free=10240i,used=0i,used_percent=0,inodes_total=0i,inodes_free=0i,inodes_used=0i,inodes_used_percent=0 1",
                "disk,device=sda3,fstype=xfs,mode=rw,path=/boot total=409600i,free=204800i,used=204800i,used_percent=50,inodes_total=10i,inodes_free=5i,inodes_used=5i,inodes_used_percent=50 1",
            ]
        );
        let config: Config =
            toml::from_str("mount_points = [\"/\", \"/boot\"]\nignore_fs = [\"xfs\"]").unwrap();
        let mut input = Disk::with_roots(config, Roots::under(dir.path()), fake_stat);
        let out = gather(&mut input, 1);
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("path=/ "), "{out:?}");
        let config: Config = toml::from_str("ignore_mount_opts = [\"ro\"]").unwrap();
        let mut input = Disk::with_roots(config, Roots::under(dir.path()), fake_stat);
        assert_eq!(gather(&mut input, 1).len(), 2);
    }

    #[test]
    fn mounts_fall_back_to_self_mounts() {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            &[(
                "proc/self/mounts",
                "/dev/sda3 /boot xfs rw 0 0\nproc /proc proc rw 0 0\n",
            )],
        );
        let mut input = Disk::with_roots(Config::default(), Roots::under(dir.path()), fake_stat);
        let out = gather(&mut input, 1);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].starts_with("disk,device=sda3,fstype=xfs,mode=rw,path=/boot "),
            "{out:?}"
        );
    }
}
