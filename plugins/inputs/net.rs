//! `inputs.net`: per-interface counters from /proc/net/dev, `speed` from sysfs.
//!
//! Without `interfaces` it reports every interface that is up and not a loopback (flags in
//! `/sys/class/net/<if>/flags`); with `HOST_PROC` set those checks are skipped, as in Telegraf.

use serde::Deserialize;

use crate::filter::GlobList;
use crate::host::{read, schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.net]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Interfaces (globs); empty: those up and not loopback.
    interfaces: Vec<String>,
    /// Deprecated and ignored by Telegraf since 1.37 (protocol counters are not sent).
    ignore_protocol_stats: bool,
}

/// The built `net` input.
#[derive(Debug)]
pub struct Net {
    interfaces: Option<GlobList>,
    roots: Roots,
}

impl Net {
    /// The input reading from `roots`.
    ///
    /// # Errors
    /// An `interfaces` entry that is not a valid glob.
    pub fn with_roots(config: NetConfig, roots: Roots) -> Result<Self, BuildError> {
        let _ = config.ignore_protocol_stats;
        let interfaces = (!config.interfaces.is_empty())
            .then(|| GlobList::new(&config.interfaces, ""))
            .transpose()
            .map_err(|e| BuildError::new(format!("`interfaces`: {e}")))?;
        Ok(Net { interfaces, roots })
    }

    /// Up and not loopback, from the interface's flags (IFF_UP 0x1, IFF_LOOPBACK 0x8).
    fn up_and_not_loopback(&self, name: &str) -> bool {
        let flags = std::fs::read_to_string(self.roots.sys(&format!("class/net/{name}/flags")))
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok());
        matches!(flags, Some(f) if f & 0x1 != 0 && f & 0x8 == 0)
    }
}

impl Input for Net {
    const NAME: &'static str = "net";
    type Config = NetConfig;

    fn new(config: NetConfig, _: &BuildContext) -> Result<Self, BuildError> {
        Net::with_roots(config, Roots::default())
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let text = read(&self.roots.proc("net/dev"))?;
        for line in text.lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            match &self.interfaces {
                Some(g) if !g.is_match(name) => continue,
                None if !self.roots.proc_overridden && !self.up_and_not_loopback(name) => continue,
                _ => {}
            }
            let v: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                continue;
            }
            let speed = std::fs::read_to_string(self.roots.sys(&format!("class/net/{name}/speed")))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(-1);
            let mut f = Fields::new(&schema::NET);
            f.put("bytes_sent", v[8])
                .put("bytes_recv", v[0])
                .put("packets_sent", v[9])
                .put("packets_recv", v[1])
                .put("err_in", v[2])
                .put("err_out", v[10])
                .put("drop_in", v[3])
                .put("drop_out", v[11])
                .put("speed", speed);
            f.emit(acc, &[("interface", name)]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    1    2    0     0          0         0     6000      60    3    4    0     0       0          0
 wlan0: 7 1 0 0 0 0 0 0 8 2 0 0 0 0 0 0
";

    #[test]
    fn net_counters_speed_and_selection() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree(
            d,
            &[
                ("proc/net/dev", DEV),
                ("sys/class/net/lo/flags", "0x9\n"),
                ("sys/class/net/eth0/flags", "0x1003\n"),
                ("sys/class/net/eth0/speed", "1000\n"),
                ("sys/class/net/wlan0/flags", "0x1002\n"),
            ],
        );
        // With HOST_PROC set (fixture roots): every interface.
        let mut input = Net::with_roots(NetConfig::default(), Roots::under(d)).unwrap();
        let out = gather(&mut input, 1);
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[1],
            "net,interface=eth0 bytes_sent=6000i,bytes_recv=5000i,packets_sent=60i,packets_recv=50i,err_in=1i,err_out=3i,drop_in=2i,drop_out=4i,speed=1000i 1"
        );
        assert!(
            out[2].ends_with("speed=-1i 1"),
            "no speed file: -1: {out:?}"
        );
        // On the host itself: up and not loopback only (wlan0 is down).
        let mut roots = Roots::under(d);
        roots.proc_overridden = false;
        let mut input = Net::with_roots(NetConfig::default(), roots).unwrap();
        let out = gather(&mut input, 1);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("net,interface=eth0 "));
        let config: NetConfig = toml::from_str("interfaces = [\"eth*\", \"lo\"]").unwrap();
        let mut input = Net::with_roots(config, Roots::under(d)).unwrap();
        assert_eq!(gather(&mut input, 1).len(), 2);
    }
}
