//! What the system inputs (`cpu`, `mem`, `swap`, `disk`, `diskio`, `net`, `netstat`, `system`,
//! `processes`, `kernel`, in `plugins/inputs/`) share: where the host's files are, and how a
//! metric's fields get Telegraf's types.
//!
//! Everything is read from `/proc` and `/sys` directly (the same files gopsutil reads for
//! Telegraf), under roots taken from `HOST_PROC`, `HOST_SYS`, `HOST_RUN`, `HOST_VAR` and
//! `HOST_MOUNT_PREFIX` as Telegraf does, so a container can watch its host and tests can point
//! an input at a fixture tree. [`schema`] is the one table of field names and types: inputs
//! emit through it ([`Fields`]), and the tests check against it.

pub mod schema;

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

/// /proc/meminfo as key → bytes (`HugePages_*` are counts, kept as they are).
pub fn meminfo(text: &str) -> std::collections::HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, rest) = line.split_once(':')?;
            let mut parts = rest.split_ascii_whitespace();
            let v: u64 = parts.next()?.parse().ok()?;
            let v = if parts.next() == Some("kB") {
                v * 1024
            } else {
                v
            };
            Some((k.trim(), v))
        })
        .collect()
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
