//! Every input, in the order the docs list them. The system inputs share `crate::host`.

pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod influxdb_listener;
pub mod internal;
pub mod kernel;
pub mod mem;
pub mod net;
pub mod netstat;
pub mod processes;
pub mod swap;
pub mod system;

use super::InputEntry;

/// The input registry: one line per plugin.
pub const ALL: &[InputEntry] = &[
    InputEntry::service::<influxdb_listener::InfluxdbListener>(),
    InputEntry::of::<cpu::Cpu>(),
    InputEntry::of::<mem::Mem>(),
    InputEntry::of::<swap::Swap>(),
    InputEntry::of::<disk::Disk>(),
    InputEntry::of::<diskio::Diskio>(),
    InputEntry::of::<net::Net>(),
    InputEntry::of::<netstat::Netstat>(),
    InputEntry::of::<system::System>(),
    InputEntry::of::<processes::Processes>(),
    InputEntry::of::<kernel::Kernel>(),
    InputEntry::of::<internal::Internal>(),
];

#[cfg(test)]
mod live {
    //! Every system input gathers on this machine and emits the schema's fields and types.

    use super::*;
    use crate::host::testing::gather_metrics;
    use crate::host::{schema, Roots};

    fn config<C: serde::de::DeserializeOwned>(text: &str) -> C {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_input_gathers_here_with_the_schema() {
        let roots = Roots::default();
        let mut metrics = Vec::new();
        let mut cpu = cpu::Cpu::with_roots(
            config("collect_cpu_time = true\nreport_active = true"),
            roots.clone(),
        );
        let mut diskio = diskio::Diskio::with_roots(config(""), roots.clone()).unwrap();
        gather_metrics(&mut cpu, 1);
        gather_metrics(&mut diskio, 1);
        std::thread::sleep(std::time::Duration::from_millis(200));
        metrics.extend(gather_metrics(&mut cpu, 2));
        metrics.extend(gather_metrics(&mut diskio, 2));
        metrics.extend(gather_metrics(
            &mut mem::Mem::with_roots(config("collect_extended = true"), roots.clone()),
            2,
        ));
        metrics.extend(gather_metrics(
            &mut swap::Swap::with_roots(roots.clone()),
            2,
        ));
        let mut disk = disk::Disk::with_roots(config(""), roots.clone(), disk::statvfs);
        metrics.extend(gather_metrics(&mut disk, 2));
        // Every interface, loopback included, so a machine with only `lo` up still reports.
        metrics.extend(gather_metrics(
            &mut net::Net::with_roots(config("interfaces = [\"*\"]"), roots.clone()).unwrap(),
            2,
        ));
        metrics.extend(gather_metrics(
            &mut netstat::Netstat::with_roots(roots.clone()),
            2,
        ));
        metrics.extend(gather_metrics(
            &mut system::System::with_roots(roots.clone()),
            2,
        ));
        metrics.extend(gather_metrics(
            &mut processes::Processes::with_roots(roots.clone()),
            2,
        ));
        let psi = roots.proc("pressure/cpu").exists();
        let kernel_config = if psi { "collect = [\"psi\"]" } else { "" };
        metrics.extend(gather_metrics(
            &mut kernel::Kernel::with_roots(config(kernel_config), roots.clone()).unwrap(),
            2,
        ));
        assert_eq!(schema::check(&metrics), Vec::<String>::new());
        for m in schema::ALL {
            if m.name == "pressure" && !psi {
                continue;
            }
            if m.name == "diskio" && !metrics.iter().any(|x| x.name == "diskio") {
                eprintln!("no block device in /proc/diskstats here: diskio has nothing to report");
                continue;
            }
            assert!(
                metrics.iter().any(|x| x.name == m.name),
                "{} not gathered",
                m.name
            );
            assert_eq!(
                schema::missing(&metrics, m),
                Vec::<&str>::new(),
                "{}",
                m.name
            );
        }
    }
}
