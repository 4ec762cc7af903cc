//! Every input, in the order the docs list them.

pub mod influxdb_listener;
pub mod internal;
pub mod system;

use super::InputEntry;
use system::{cpu, disk, diskio, kernel, mem, net, processes};

/// The input registry: one line per plugin.
pub const ALL: &[InputEntry] = &[
    InputEntry::service::<influxdb_listener::InfluxdbListener>(),
    InputEntry::of::<cpu::Cpu>(),
    InputEntry::of::<mem::Mem>(),
    InputEntry::of::<mem::Swap>(),
    InputEntry::of::<disk::Disk>(),
    InputEntry::of::<diskio::Diskio>(),
    InputEntry::of::<net::Net>(),
    InputEntry::of::<net::Netstat>(),
    InputEntry::of::<system::system::System>(),
    InputEntry::of::<processes::Processes>(),
    InputEntry::of::<kernel::Kernel>(),
    InputEntry::of::<internal::Internal>(),
];
