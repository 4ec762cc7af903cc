//! The system inputs: `cpu`, `mem`, `swap`, `disk`, `diskio`, `net`, `netstat`, `system`,
//! `processes`, `kernel`, with Telegraf's measurement names, tags, field names and types.
//!
//! Everything is read from `/proc` and `/sys` directly (the same files gopsutil reads for
//! Telegraf), under roots taken from `HOST_PROC`, `HOST_SYS`, `HOST_RUN`, `HOST_VAR` and
//! `HOST_MOUNT_PREFIX` as Telegraf does, so a container can watch its host and tests can point
//! an input at a fixture tree. [`schema`] is the one table of field names and types: inputs
//! emit through it ([`Fields`]), and the tests check against it.

pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod kernel;
pub mod mem;
pub mod net;
pub mod processes;
pub mod schema;
#[allow(clippy::module_inception)]
pub mod system;

use std::path::{Path, PathBuf};

use crate::metric::FieldValue;
use crate::plugins::{Accumulator, GatherError};
use schema::{Kind, Measurement};

/// Where the host's `/proc`, `/sys`, `/run`, `/var` and mounts are seen from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// `HOST_PROC` or `/proc`.
    pub proc: PathBuf,
    /// `HOST_SYS` or `/sys`.
    pub sys: PathBuf,
    /// `HOST_RUN` or `/run`.
    pub run: PathBuf,
    /// `HOST_VAR` or `/var`.
    pub var: PathBuf,
    /// `HOST_MOUNT_PREFIX` or empty: prepended to mount points to reach them, stripped from
    /// the `path` tag.
    pub mount_prefix: PathBuf,
    /// Whether `HOST_PROC` was set (Telegraf's `net` then lists every interface).
    pub proc_overridden: bool,
}

impl Default for Roots {
    fn default() -> Self {
        Roots::from_env(|name| std::env::var_os(name).map(PathBuf::from))
    }
}

impl Roots {
    /// Roots from environment variables, through `lookup`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<PathBuf>) -> Self {
        let get = |name: &str, default: &str| {
            lookup(name)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Roots {
            proc: get("HOST_PROC", "/proc"),
            sys: get("HOST_SYS", "/sys"),
            run: get("HOST_RUN", "/run"),
            var: get("HOST_VAR", "/var"),
            mount_prefix: lookup("HOST_MOUNT_PREFIX").unwrap_or_default(),
            proc_overridden: lookup("HOST_PROC").is_some_and(|p| !p.as_os_str().is_empty()),
        }
    }

    /// Roots all under one directory: `dir/proc`, `dir/sys`, ... (fixture trees).
    pub fn under(dir: &Path) -> Self {
        Roots {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            run: dir.join("run"),
            var: dir.join("var"),
            mount_prefix: PathBuf::new(),
            proc_overridden: true,
        }
    }

    /// A file under the proc root.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// A file under the sys root.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}

/// Reads a whole file as text; the error names the file.
///
/// # Errors
/// A [`GatherError`] naming the path.
pub fn read(path: &Path) -> Result<String, GatherError> {
    std::fs::read_to_string(path).map_err(|e| GatherError {
        message: format!("reading {}: {e}", path.display()),
    })
}

/// A number the schema turns into the field's type.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    /// Whole.
    I(i128),
    /// Real.
    F(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::I(i128::from(v))
    }
}
impl From<i64> for Num {
    fn from(v: i64) -> Self {
        Num::I(i128::from(v))
    }
}
impl From<usize> for Num {
    fn from(v: usize) -> Self {
        Num::I(v as i128)
    }
}
impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::F(v)
    }
}

/// The fields of one metric, typed by the schema of its measurement.
#[derive(Debug)]
pub struct Fields {
    measurement: &'static Measurement,
    fields: Vec<(&'static str, FieldValue)>,
}

impl Fields {
    /// Fields for `measurement`.
    pub fn new(measurement: &'static Measurement) -> Self {
        Fields {
            measurement,
            fields: Vec::with_capacity(measurement.fields.len()),
        }
    }

    fn kind(&self, key: &str) -> Kind {
        match self.measurement.fields.iter().find(|f| f.name == key) {
            Some(f) => f.kind,
            None => panic!(
                "field {key} of {} is not in the schema table",
                self.measurement.name
            ),
        }
    }

    /// Sets a numeric field, converted to the type the schema gives it.
    pub fn put(&mut self, key: &'static str, value: impl Into<Num>) -> &mut Self {
        let v = match (self.kind(key), value.into()) {
            (Kind::Int, Num::I(i)) => {
                FieldValue::Int(i.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
            }
            (Kind::Int, Num::F(f)) => FieldValue::Int(f as i64),
            (Kind::Float, Num::I(i)) => FieldValue::Float(i as f64),
            (Kind::Float, Num::F(f)) => FieldValue::Float(f),
            (Kind::Str, Num::I(i)) => FieldValue::Str(i.to_string()),
            (Kind::Str, Num::F(f)) => FieldValue::Str(f.to_string()),
        };
        self.fields.push((key, v));
        self
    }

    /// Sets a string field.
    pub fn put_str(&mut self, key: &'static str, value: String) -> &mut Self {
        debug_assert!(self.kind(key) == Kind::Str, "{key} is not a string field");
        self.fields.push((key, FieldValue::Str(value)));
        self
    }

    /// Adds the metric to `acc` with `tags`.
    pub fn emit(self, acc: &mut Accumulator, tags: &[(&str, &str)]) {
        acc.add(self.measurement.name, tags, self.fields);
    }
}

/// `value * 100 / total`, or 0 when `total` is 0.
pub fn percent(value: f64, total: f64) -> f64 {
    if total == 0.0 {
        0.0
    } else {
        100.0 * value / total
    }
}

/// Whether any glob of `globs` matches `name`; an empty list matches everything.
pub fn any_glob(globs: &Option<crate::filter::GlobList>, name: &str) -> bool {
    globs.as_ref().is_none_or(|g| g.is_match(name))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixture trees and checks shared by the inputs' tests.

    use std::path::Path;

    use crate::metric::Metric;
    use crate::plugins::{Accumulator, Input};

    /// Writes `files` (relative path, content) under `dir`.
    pub fn tree(dir: &Path, files: &[(&str, &str)]) {
        for (rel, content) in files {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    /// One gather at `time`; the metrics as line protocol, in emission order.
    pub fn gather<I: Input>(input: &mut I, time: i64) -> Vec<String> {
        lines(&gather_metrics(input, time))
    }

    /// One gather at `time`.
    pub fn gather_metrics<I: Input>(input: &mut I, time: i64) -> Vec<Metric> {
        let mut acc = Accumulator::new(time);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(input.gather(&mut acc)).unwrap();
        acc.into_metrics()
    }

    pub use crate::plugins::processors::testing::lines;
}

#[cfg(test)]
mod live {
    //! Every system input gathers on this machine and emits the schema's fields and types.

    use super::testing::gather_metrics;
    use super::*;
    use crate::plugins::Input;

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
        metrics.extend(gather_metrics(&mut mem::Swap::with_roots(roots.clone()), 2));
        let mut disk = disk::Disk::with_roots(config(""), roots.clone(), disk::statvfs);
        metrics.extend(gather_metrics(&mut disk, 2));
        // Every interface, loopback included, so a machine with only `lo` up still reports.
        metrics.extend(gather_metrics(
            &mut net::Net::with_roots(config("interfaces = [\"*\"]"), roots.clone()).unwrap(),
            2,
        ));
        metrics.extend(gather_metrics(
            &mut net::Netstat::with_roots(roots.clone()),
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
        let _ = <cpu::Cpu as Input>::NAME;
    }
}
