//! `[[outputs.buckets]]`: local buckets on disk under `[agent] data_dir`, the embedded default.
//!
//! A write routed here is acknowledged only after the fsync of the store's log that covers it
//! (see `crate::buckets`). Read back with `heliograph export` or `/query`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::super::{BuildContext, BuildError, StoreOutput};
use crate::buckets::StoreOptions;
use crate::config::{ConfigDuration, ConfigSize, Retention};

/// What users may write under `[[outputs.buckets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketsConfig {
    /// How long points are kept, by timestamp; whole expired partitions are dropped; `"INF"`
    /// keeps them forever. Default `"72h"`.
    pub default_retention: Retention,
    /// The time span of one partition. Default `"1h"`.
    pub partition_duration: ConfigDuration,
    /// How often the log is compacted into partitions. Default `"10s"`.
    pub compaction_interval: ConfigDuration,
    /// Uncompacted log past which writes get 503 until compaction catches up. Default `"256MiB"`.
    pub max_pending: ConfigSize,
    /// The database for metrics that carry none (gathered metrics). Default `"telegraf"`.
    pub database: String,
    /// Log segment size. Default `"64MiB"`.
    pub segment_size: ConfigSize,
}

impl Default for BucketsConfig {
    fn default() -> Self {
        BucketsConfig {
            default_retention: Retention(Some(Duration::from_secs(72 * 3600))),
            partition_duration: ConfigDuration::secs(3600),
            compaction_interval: ConfigDuration::secs(10),
            max_pending: ConfigSize(256 << 20),
            database: "telegraf".into(),
            segment_size: ConfigSize(64 << 20),
        }
    }
}

/// How long a closed partition must go without new chunks before it is merged into one.
const SETTLE: Duration = Duration::from_secs(60);

/// The checked buckets output, opened by the pipeline at start.
#[derive(Debug)]
pub struct Buckets {
    config: BucketsConfig,
}

impl StoreOutput for Buckets {
    const NAME: &'static str = "buckets";
    type Config = BucketsConfig;

    fn new(config: BucketsConfig, _cx: &BuildContext) -> Result<Self, BuildError> {
        if config.partition_duration.0 < Duration::from_secs(60) {
            return Err(BuildError::new(
                "`partition_duration` must be at least 1m; try \"1h\"",
            ));
        }
        if config
            .default_retention
            .0
            .is_some_and(|r| r < config.partition_duration.0)
        {
            return Err(BuildError::new(
                "`default_retention` must be at least `partition_duration`",
            ));
        }
        if config.compaction_interval.0 < Duration::from_millis(10) {
            return Err(BuildError::new(
                "`compaction_interval` must be at least 10ms; try \"10s\"",
            ));
        }
        if config.max_pending.0 < 1 << 20 {
            return Err(BuildError::new("`max_pending` must be at least 1MiB"));
        }
        crate::buckets::names::encode("database", &config.database)
            .map_err(|e| BuildError::new(format!("`database`: {e}")))?;
        Ok(Buckets { config })
    }

    fn options(&self, data_dir: &Path) -> StoreOptions {
        StoreOptions {
            data_dir: data_dir.to_path_buf(),
            retention: self.config.default_retention,
            partition: self.config.partition_duration.0,
            compaction_interval: self.config.compaction_interval.0,
            settle: SETTLE,
            max_pending_bytes: self.config.max_pending.0,
            default_database: self.config.database.clone(),
            segment_bytes: self.config.segment_size.0.max(1 << 20),
        }
    }
}
