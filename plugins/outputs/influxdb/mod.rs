//! `[[outputs.influxdb]]`: relay to InfluxDB 1.x (`/write`) with the policy of [`relay`].
//!
//! Each write keeps its own db and rp upstream unless `database` / `retention_policy` override
//! them; points go with ns precision; the database is created on first use unless
//! `skip_database_creation`.

pub mod relay;

use serde::Deserialize;

use super::super::{BuildContext, BuildError, Output};
use crate::config::ConfigDuration;
use relay::{Protocol, Relay};

/// What users may write under `[[outputs.influxdb]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxdbConfig {
    /// Upstream base URLs, tried in order (failover). Default `["http://127.0.0.1:8086"]`.
    pub urls: Vec<String>,
    /// Send every point to this database instead of its own.
    pub database: Option<String>,
    /// Send every point to this retention policy instead of its own.
    pub retention_policy: Option<String>,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// `"gzip"` to compress bodies. Default `"identity"`.
    pub content_encoding: String,
    /// Timeout of each request. Default `"5s"`.
    pub timeout: ConfigDuration,
    /// Requests in flight at once; 1 keeps the order of writes upstream. Default 1.
    pub max_in_flight: usize,
    /// Do not create databases upstream. Default false.
    pub skip_database_creation: bool,
}

impl Default for InfluxdbConfig {
    fn default() -> Self {
        InfluxdbConfig {
            urls: vec!["http://127.0.0.1:8086".into()],
            database: None,
            retention_policy: None,
            username: None,
            password: None,
            content_encoding: "identity".into(),
            timeout: ConfigDuration::secs(5),
            max_in_flight: 1,
            skip_database_creation: false,
        }
    }
}

/// The running v1 relay.
#[derive(Debug)]
pub struct Influxdb {
    relay: std::sync::Arc<Relay>,
}

impl Output for Influxdb {
    const NAME: &'static str = "influxdb";
    type Config = InfluxdbConfig;

    fn new(c: InfluxdbConfig, cx: &BuildContext) -> Result<Self, BuildError> {
        let credentials = match (c.username, c.password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(BuildError::new(
                    "set both `username` and `password`, or neither",
                ))
            }
        };
        let protocol = Protocol::V1 {
            database: c.database,
            retention_policy: c.retention_policy,
            credentials,
            skip_database_creation: c.skip_database_creation,
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
        Ok(Influxdb {
            relay: std::sync::Arc::new(relay),
        })
    }

    relay::relay_output_methods!();
}
