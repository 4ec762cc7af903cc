//! `[[outputs.file]]`: line protocol to `stdout`, `stderr` or files, as Telegraf's file output.
//!
//! Each batch is encoded once (ns precision, one point per line) and appended to every target;
//! a batch counts as written once every target has it flushed to the OS. Files are opened in
//! append mode on first write and kept open. A failed write leaves the batch buffered and the
//! pipeline retries it (a target written before the failure may then see it twice: delivery is
//! at least once).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::super::{BuildContext, BuildError, Output, WriteError};
use crate::line_protocol;
use crate::metric::Metric;

/// What users may write under `[[outputs.file]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Where to write: `"stdout"`, `"stderr"` or file paths. Default `["stdout"]`.
    pub files: Vec<String>,
    /// The format; only `"influx"` (line protocol). Default `"influx"`.
    pub data_format: String,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            files: vec!["stdout".into()],
            data_format: "influx".into(),
        }
    }
}

#[derive(Debug)]
enum Target {
    Stdout,
    Stderr,
    Path {
        path: PathBuf,
        file: Option<std::fs::File>,
    },
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Stdout => "stdout".into(),
            Target::Stderr => "stderr".into(),
            Target::Path { path, .. } => path.display().to_string(),
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }
            Target::Stderr => std::io::stderr().lock().write_all(data),
            Target::Path { path, file } => {
                let f = match file {
                    Some(f) => f,
                    None => file.insert(OpenOptions::new().create(true).append(true).open(&*path)?),
                };
                let result = f.write_all(data).and_then(|()| f.flush());
                if result.is_err() {
                    *file = None; // reopen on retry: the file may have been rotated or fixed
                }
                result
            }
        }
    }
}

/// The running file output.
#[derive(Debug)]
pub struct File {
    targets: Arc<Mutex<Vec<Target>>>,
}

impl Output for File {
    const NAME: &'static str = "file";
    type Config = FileConfig;

    fn new(config: FileConfig, _cx: &BuildContext) -> Result<Self, BuildError> {
        if config.data_format != "influx" {
            return Err(BuildError::new(format!(
                "`data_format = {:?}` is not supported; only \"influx\" (line protocol)",
                config.data_format
            )));
        }
        if config.files.is_empty() {
            return Err(BuildError::new("`files` is empty; try [\"stdout\"]"));
        }
        let targets = config
            .files
            .into_iter()
            .map(|f| match f.as_str() {
                "stdout" => Target::Stdout,
                "stderr" => Target::Stderr,
                _ => Target::Path {
                    path: PathBuf::from(f),
                    file: None,
                },
            })
            .collect();
        Ok(File {
            targets: Arc::new(Mutex::new(targets)),
        })
    }

    async fn write(&mut self, batch: &[Metric]) -> Result<(), WriteError> {
        let mut text = String::with_capacity(batch.len() * 128);
        line_protocol::encode_all(batch, &mut text);
        self.append(text).await
    }

    fn takes_runs(&self) -> bool {
        true
    }

    async fn write_runs(
        &mut self,
        runs: &[crate::buffer::record::Run<'_>],
    ) -> Result<(), WriteError> {
        let text: String = runs.iter().map(|r| r.lp).collect();
        self.append(text).await
    }
}

impl File {
    /// Appends `text` to every target, off the runtime's threads.
    async fn append(&self, text: String) -> Result<(), WriteError> {
        let targets = Arc::clone(&self.targets);
        // File I/O blocks: keep it off the runtime's worker threads.
        tokio::task::spawn_blocking(move || {
            let mut targets = targets.lock().unwrap_or_else(|e| e.into_inner());
            for t in targets.iter_mut() {
                t.write(text.as_bytes()).map_err(|source| WriteError::Io {
                    target: t.name(),
                    source,
                })?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|join| {
            Err(WriteError::Io {
                target: "file output".into(),
                source: std::io::Error::other(join.to_string()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::FieldValue;

    #[tokio::test]
    async fn appends_line_protocol_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.lp");
        let config = FileConfig {
            files: vec![path.display().to_string()],
            ..FileConfig::default()
        };
        let mut out = File::new(config, &BuildContext::default()).unwrap();
        let mut m = Metric::new("cpu", 7);
        m.add_field("v", FieldValue::Int(1));
        out.write(&[m.clone()]).await.unwrap();
        out.write(&[m]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "cpu v=1i 7\ncpu v=1i 7\n"
        );

        let config = FileConfig {
            files: vec!["/dev/full".into()],
            ..FileConfig::default()
        };
        let mut full = File::new(config, &BuildContext::default()).unwrap();
        let err = full.write(&[Metric::new("m", 0)]).await;
        // A metric without fields encodes to nothing; write one with a field.
        assert!(err.is_ok());
        let mut m = Metric::new("m", 0);
        m.add_field("v", FieldValue::Bool(true));
        assert!(full.write(&[m]).await.is_err());
    }

    #[test]
    fn rejects_other_formats() {
        let config = FileConfig {
            data_format: "json".into(),
            ..FileConfig::default()
        };
        assert!(File::new(config, &BuildContext::default()).is_err());
    }
}
