//! `inputs.netstat`: sockets by state from /proc/net/{tcp,tcp6,udp,udp6,unix}.
//!
//! It counts as Telegraf (through gopsutil) does: every datagram socket, inet or unix, is a
//! `udp_socket`; unix stream sockets have no TCP state and count as `tcp_none`. It reads the
//! socket tables only, never every process's file descriptors.

use serde::Deserialize;

use crate::host::{schema, Fields, Roots};
use crate::plugins::{Accumulator, BuildContext, BuildError, GatherError, Input};

/// `[[inputs.netstat]]`: no options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetstatConfig {}

/// The built `netstat` input.
#[derive(Debug)]
pub struct Netstat {
    roots: Roots,
}

impl Netstat {
    /// The input reading from `roots`.
    pub fn with_roots(roots: Roots) -> Self {
        Netstat { roots }
    }
}

/// TCP states by their /proc code, 1 to 11, as field names.
const TCP_STATES: [&str; 11] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
];

impl Input for Netstat {
    const NAME: &'static str = "netstat";
    type Config = NetstatConfig;

    fn new(_: NetstatConfig, _: &BuildContext) -> Result<Self, BuildError> {
        Ok(Netstat::with_roots(Roots::default()))
    }

    async fn gather(&mut self, acc: &mut Accumulator) -> Result<(), GatherError> {
        let mut tcp = [0u64; 11];
        let mut none = 0u64;
        let mut udp = 0u64;
        // A missing table (no IPv6, say) counts nothing.
        let table = |rel: &str| std::fs::read_to_string(self.roots.proc(rel)).unwrap_or_default();
        for rel in ["net/tcp", "net/tcp6"] {
            for line in table(rel).lines().skip(1) {
                let state = line
                    .split_ascii_whitespace()
                    .nth(3)
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                match state {
                    Some(s @ 1..=11) => tcp[usize::from(s - 1)] += 1,
                    Some(_) => none += 1,
                    None => {}
                }
            }
        }
        for rel in ["net/udp", "net/udp6"] {
            udp += table(rel)
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .count() as u64;
        }
        // unix: `Num RefCount Protocol Flags Type St Inode Path`; Type 0002 is SOCK_DGRAM.
        for line in table("net/unix").lines().skip(1) {
            match line.split_ascii_whitespace().nth(4) {
                Some("0002") => udp += 1,
                Some(_) => none += 1,
                None => {}
            }
        }
        let mut f = Fields::new(&schema::NETSTAT);
        for (name, count) in TCP_STATES.iter().zip(tcp) {
            f.put(name, count);
        }
        f.put("tcp_none", none).put("udp_socket", udp);
        f.emit(acc, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{gather, tree};

    #[test]
    fn netstat_counts_like_gopsutil() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree(d, &[
            ("proc/net/tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n   2: 0100007F:1F90 0100007F:9C41 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n"),
            ("proc/net/tcp6", "  sl  local_address remote_address st\n   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0 0\n"),
            ("proc/net/udp", "  sl  local_address rem_address   st\n   0: 00000000:0044 00000000:0000 07 0 0\n"),
            ("proc/net/unix", "Num       RefCount Protocol Flags    Type St Inode Path\n0000: 00000002 00000000 00010000 0001 01 100 /run/a\n0000: 00000002 00000000 00000000 0002 01 101 /run/b\n0000: 00000003 00000000 00000000 0001 03 102\n"),
        ]);
        let mut input = Netstat::with_roots(Roots::under(d));
        assert_eq!(
            gather(&mut input, 1),
            ["netstat tcp_established=1i,tcp_syn_sent=0i,tcp_syn_recv=0i,tcp_fin_wait1=0i,tcp_fin_wait2=0i,tcp_time_wait=1i,tcp_close=0i,tcp_close_wait=0i,tcp_last_ack=0i,tcp_listen=2i,tcp_closing=0i,tcp_none=2i,udp_socket=2i 1"]
        );
    }
}
