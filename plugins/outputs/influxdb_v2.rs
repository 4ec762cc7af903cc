//! `[[outputs.influxdb_v2]]`: relay to InfluxDB 2.x (`/api/v2/write`) with the policy of
//! [`super::influxdb::relay`]. Each write goes to bucket `db` (or `db/rp` for a non-default rp)
//! unless `bucket` overrides it.

use serde::Deserialize;

use super::super::{BuildContext, BuildError, Output};
use super::influxdb::relay::{Protocol, Relay};
use crate::config::ConfigDuration;

/// What users may write under `[[outputs.influxdb_v2]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxdbV2Config {
    /// Upstream base URLs, tried in order (failover). Default `["http://127.0.0.1:8086"]`.
    pub urls: Vec<String>,
    /// The API token.
    pub token: String,
    /// The organization.
    pub organization: String,
    /// Send every point to this bucket instead of its own db/rp.
    pub bucket: Option<String>,
    /// `"gzip"` to compress bodies. Default `"gzip"`, as Telegraf's.
    pub content_encoding: String,
    /// Timeout of each request. Default `"5s"`.
    pub timeout: ConfigDuration,
    /// Requests in flight at once; 1 keeps the order of writes upstream. Default 1.
    pub max_in_flight: usize,
}

impl Default for InfluxdbV2Config {
    fn default() -> Self {
        InfluxdbV2Config {
            urls: vec!["http://127.0.0.1:8086".into()],
            token: String::new(),
            organization: String::new(),
            bucket: None,
            content_encoding: "gzip".into(),
            timeout: ConfigDuration::secs(5),
            max_in_flight: 1,
        }
    }
}

/// The running v2 relay.
#[derive(Debug)]
pub struct InfluxdbV2 {
    relay: std::sync::Arc<Relay>,
}

impl Output for InfluxdbV2 {
    const NAME: &'static str = "influxdb_v2";
    type Config = InfluxdbV2Config;

    fn new(c: InfluxdbV2Config, cx: &BuildContext) -> Result<Self, BuildError> {
        if c.token.is_empty() {
            return Err(BuildError::new(
                "`token` is empty (is its environment variable set?)",
            ));
        }
        let protocol = Protocol::V2 {
            token: c.token,
            organization: c.organization,
            bucket: c.bucket,
        };
        let relay = Relay::new(
            &cx.id,
            c.urls,
            protocol,
            c.timeout.0,
            &c.content_encoding,
            &cx.data_dir,
            c.max_in_flight,
        )?;
        Ok(InfluxdbV2 {
            relay: std::sync::Arc::new(relay),
        })
    }

    super::influxdb::relay::relay_output_methods!();
}
