//! `[[inputs.influxdb_listener]]`: the InfluxDB v1 write API (`POST /write`), plus
//! `POST /api/v2/write`, `GET|HEAD /ping`, `GET /health` and a small `/query`.
//!
//! The contract is `shared/spec/v1-write.openapi.json` and DESIGN.md: 204 only once every routed
//! output holds the write; 400 with a LineProtocolError naming the first bad line and nothing of
//! the body written (unless `accept_partial`); 413 past `max_body_size` (compressed or not),
//! found while streaming; 401/403 for token auth; 429 over a token's rate; 503 with Retry-After
//! when a buffer cannot take the write or the agent is stopping.
//!
//! Metrics: written points keep their measurement, tags and fields as written; the agent's
//! `host` and `[global_tags]` are added only with `add_agent_tags = true`.

mod auth;
mod query;
mod write;

pub use write::{parse_lp, LpBody};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::super::{BuildContext, BuildError, ServiceContext, ServiceInput, StartError};
use crate::config::{ConfigDuration, ConfigSize};
use crate::http::{self, HttpResponse, ServerOptions};
use crate::pipeline::Pipeline;
use auth::Token;

/// The InfluxDB version we answer with in `X-Influxdb-Version`: the last 1.x, whose write API we
/// implement. Clients use it to pick the v1 protocol.
pub const INFLUXDB_VERSION: &str = "1.8.10";

/// `max_body_size` when not given, or given as 0.
const DEFAULT_MAX_BODY: u64 = 32 << 20;

/// What users may write under `[[inputs.influxdb_listener]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Address to listen on: `"host:port"`, or `":port"` for every IPv4 interface. Default `":8186"`.
    pub service_address: String,
    /// Largest body accepted, on the wire and after gzip decompression; 0 is the default, as in
    /// Telegraf. Default `"32MiB"`.
    pub max_body_size: ConfigSize,
    /// Longest line accepted; 0 means no limit but `max_body_size`. Default 0.
    pub max_line_size: ConfigSize,
    /// Memory all request bodies in flight may hold together; past it, 503 with Retry-After.
    /// Default four times `max_body_size`.
    pub max_inflight_body_bytes: Option<ConfigSize>,
    /// Time to receive a request's headers and body, together. Default `"10s"`.
    pub read_timeout: ConfigDuration,
    /// Time to receive a request's headers (and a TLS handshake), and the longest a
    /// kept-alive connection waits for its next request. Default `"5s"`, at most
    /// `read_timeout`.
    pub read_header_timeout: Option<ConfigDuration>,
    /// Time to admit a received write into the buffers before answering 503. Default `"10s"`.
    pub write_timeout: ConfigDuration,
    /// Connections served at once. Default 1024.
    pub max_connections: usize,
    /// Keep the good lines of a body with bad ones (still answering 400). Default false.
    pub accept_partial: bool,
    /// Add the agent's `host` tag and `[global_tags]` to written points. Default false.
    pub add_agent_tags: bool,
    /// Tokens; with none, auth is off.
    pub token: Vec<auth::TokenConfig>,
    /// PEM certificate chain: with `tls_key`, the listener serves HTTPS only.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// CA certificates that sign client certificates: set, clients must present one (mTLS).
    pub tls_allowed_cacerts: Vec<std::path::PathBuf>,
    /// `"TLS12"` (default) or `"TLS13"`.
    pub tls_min_version: Option<String>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            service_address: ":8186".into(),
            max_body_size: ConfigSize(DEFAULT_MAX_BODY),
            max_line_size: ConfigSize(0),
            max_inflight_body_bytes: None,
            read_timeout: ConfigDuration::secs(10),
            read_header_timeout: None,
            write_timeout: ConfigDuration::secs(10),
            max_connections: 1024,
            accept_partial: false,
            add_agent_tags: false,
            token: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_allowed_cacerts: Vec::new(),
            tls_min_version: None,
        }
    }
}

/// The running listener's settings and counters, shared by every connection.
#[derive(Debug)]
struct Settings {
    max_body: usize,
    /// What the bodies in flight may hold together.
    body_budget: Arc<http::body::Budget>,
    max_line: usize,
    read_timeout: Duration,
    read_header_timeout: Duration,
    write_timeout: Duration,
    accept_partial: bool,
    add_agent_tags: bool,
    tokens: Vec<Token>,
}

/// Responses by status, for logs and the internal input.
#[derive(Debug, Default)]
pub struct ListenerStats {
    statuses: [AtomicU64; STATUSES.len()],
    /// Points admitted.
    pub points_written: AtomicU64,
    /// Bytes of request bodies received (after decompression).
    pub bytes_received: AtomicU64,
}

const STATUSES: [u16; 14] = [
    200, 204, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503, 0,
];

impl crate::pipeline::ServiceStats for ListenerStats {
    fn name(&self) -> &'static str {
        "influxdb_listener"
    }

    /// Telegraf's names where it has one (`bytes_received`, `requests_served`,
    /// `authentication_failures`), plus `points_written` and one
    /// `responses_<status>` per status.
    fn fields(&self) -> Vec<(String, u64)> {
        let served: u64 = STATUSES.iter().map(|s| self.responses(*s)).sum();
        let mut out = vec![
            (
                "bytes_received".to_owned(),
                self.bytes_received.load(Ordering::Relaxed),
            ),
            ("requests_served".to_owned(), served),
            (
                "authentication_failures".to_owned(),
                self.responses(401) + self.responses(403),
            ),
            (
                "points_written".to_owned(),
                self.points_written.load(Ordering::Relaxed),
            ),
        ];
        for s in STATUSES {
            let name = if s == 0 {
                "responses_other".to_owned()
            } else {
                format!("responses_{s}")
            };
            out.push((name, self.responses(s)));
        }
        out
    }
}

impl ListenerStats {
    fn count(&self, status: StatusCode) {
        let i = STATUSES
            .iter()
            .position(|s| *s == status.as_u16())
            .unwrap_or(STATUSES.len() - 1);
        self.statuses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses sent with `status` so far (0: any status not listed).
    pub fn responses(&self, status: u16) -> u64 {
        STATUSES
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.statuses[i].load(Ordering::Relaxed))
    }
}

/// What every request handler sees.
#[derive(Debug)]
pub struct State {
    settings: Settings,
    pipeline: Arc<Pipeline>,
    /// The listener's selectors, `name_*` and `tags`.
    shape: Arc<crate::pipeline::InputShape>,
    /// Whether writes go as line protocol (`Pipeline::deliver_lp`): nothing on the way, here or
    /// in the pipeline, needs them as metrics. Fixed for the listener's life.
    lp_path: bool,
    shutdown: tokio_util::sync::CancellationToken,
    /// Counters.
    pub stats: Arc<ListenerStats>,
}

/// The built listener, not yet bound.
#[derive(Debug)]
pub struct InfluxdbListener {
    address: String,
    max_connections: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    mutual_tls: bool,
    settings: Settings,
}

impl ServiceInput for InfluxdbListener {
    const NAME: &'static str = "influxdb_listener";
    type Config = ListenerConfig;

    fn new(config: ListenerConfig, _cx: &BuildContext) -> Result<Self, BuildError> {
        // Telegraf: "0 means to use the default of 32MiB" (its generated config says 0).
        let max_body = match config.max_body_size.0 {
            0 => DEFAULT_MAX_BODY,
            n => n,
        };
        let max_body = usize::try_from(max_body)
            .map_err(|_| BuildError::new("`max_body_size` is too large"))?;
        let inflight = match config.max_inflight_body_bytes {
            None => max_body.saturating_mul(4),
            Some(ConfigSize(n)) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n < max_body {
                    return Err(BuildError::new(format!(
                        "`max_inflight_body_bytes` ({n}) must be at least `max_body_size` ({max_body}): a body of the largest size could never be read"
                    )));
                }
                n
            }
        };
        if config.read_timeout.0 < Duration::from_millis(100) {
            return Err(BuildError::new(
                "`read_timeout` must be at least 100ms; try \"10s\"",
            ));
        }
        let read_header_timeout = match config.read_header_timeout {
            None => config.read_timeout.0.min(Duration::from_secs(5)),
            Some(ConfigDuration(t)) if t < Duration::from_millis(100) => {
                return Err(BuildError::new(
                    "`read_header_timeout` must be at least 100ms; try \"5s\"",
                ))
            }
            Some(ConfigDuration(t)) if t > config.read_timeout.0 => {
                return Err(BuildError::new(
                    "`read_header_timeout` cannot be longer than `read_timeout`, which bounds headers and body together",
                ))
            }
            Some(ConfigDuration(t)) => t,
        };
        if config.write_timeout.0 < Duration::from_millis(100) {
            return Err(BuildError::new(
                "`write_timeout` must be at least 100ms; try \"10s\"",
            ));
        }
        if config.max_connections == 0 {
            return Err(BuildError::new("`max_connections` must be at least 1"));
        }
        let tokens = auth::build(config.token)?;
        // Certificates are read here, not at start: `check` and a reload find a bad file
        // before anything changes.
        let mutual_tls = !config.tls_allowed_cacerts.is_empty();
        let tls = http::tls::TlsConfig {
            tls_cert: config.tls_cert,
            tls_key: config.tls_key,
            tls_allowed_cacerts: config.tls_allowed_cacerts,
            tls_min_version: config.tls_min_version,
        }
        .server()
        .map_err(BuildError::new)?;
        Ok(InfluxdbListener {
            address: config.service_address,
            max_connections: config.max_connections,
            tls,
            mutual_tls,
            settings: Settings {
                max_body,
                body_budget: http::body::Budget::new(inflight),
                max_line: usize::try_from(config.max_line_size.0).unwrap_or(usize::MAX),
                read_timeout: config.read_timeout.0,
                read_header_timeout,
                write_timeout: config.write_timeout.0,
                accept_partial: config.accept_partial,
                add_agent_tags: config.add_agent_tags,
                tokens,
            },
        })
    }

    async fn start(self, cx: ServiceContext) -> Result<(), StartError> {
        let listener = cx.sockets.bind(&self.address).map_err(|e| StartError {
            message: format!("{}: cannot listen on {}", cx.id, self.address),
            source: Some(e),
        })?;
        let local = listener.local_addr().map_err(|e| StartError {
            message: format!("{}: cannot read the bound address", cx.id),
            source: Some(e),
        })?;
        let lp_path =
            cx.pipeline.takes_lp() && cx.shape.is_plain() && !self.settings.add_agent_tags;
        let state = Arc::new(State {
            lp_path,
            settings: self.settings,
            pipeline: cx.pipeline,
            shape: cx.shape,
            shutdown: cx.shutdown.clone(),
            stats: Arc::new(ListenerStats::default()),
        });
        state.pipeline.register_service(
            &cx.id,
            Arc::clone(&state.stats) as Arc<dyn crate::pipeline::ServiceStats>,
        );
        let options = ServerOptions {
            tls: self.tls.clone(),
            max_connections: self.max_connections,
            header_timeout: state.settings.read_header_timeout,
        };
        let auth = if state.settings.tokens.is_empty() {
            "off"
        } else {
            "token"
        };
        let scheme = match (&self.tls, self.mutual_tls) {
            (None, _) => "http",
            (Some(_), false) => "https",
            (Some(_), true) => "https+client-cert",
        };
        tracing::info!(input = %cx.id, address = %local, auth, scheme, "listening");
        http::serve(
            listener,
            options,
            move |req, peer| {
                let state = Arc::clone(&state);
                async move { handle(req, peer, &state).await }
            },
            cx.shutdown,
            cx.tracker,
        );
        Ok(())
    }
}

/// Routes one request.
async fn handle(req: Request<Incoming>, _peer: SocketAddr, state: &State) -> HttpResponse {
    let path = req.uri().path();
    let method = req.method().clone();
    let mut response = match (path, &method) {
        ("/write", &Method::POST) => write::handle(req, state, write::Api::V1).await,
        ("/api/v2/write", &Method::POST) => write::handle(req, state, write::Api::V2).await,
        ("/query", &Method::GET | &Method::POST) => query::query(req, state).await,
        ("/ping", &Method::GET | &Method::HEAD) => query::ping(&req),
        ("/health", &Method::GET | &Method::HEAD) => query::health(state),
        ("/metrics", &Method::GET) => query::metrics(state),
        ("/write" | "/api/v2/write", _) => not_allowed("POST"),
        ("/query", _) => not_allowed("GET, POST"),
        ("/ping" | "/health", _) => not_allowed("GET, HEAD"),
        ("/metrics", _) => not_allowed("GET"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not found",
            format!("no endpoint at {path}"),
        ),
    };
    state.stats.count(response.status());
    let headers = response.headers_mut();
    headers.insert(
        "X-Influxdb-Version",
        HeaderValue::from_static(INFLUXDB_VERSION),
    );
    headers.insert(
        "X-Heliograph-Version",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert("Allow", HeaderValue::from_static(allow));
    r
}

/// A JSON response.
fn json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    r
}

/// The spec's Error body, with the message also in `X-Influxdb-Error` for 1.x clients.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    let message = message.into();
    let mut r = json(
        status,
        &serde_json::json!({ "code": code, "message": message }),
    );
    set_error_header(&mut r, &message);
    r
}

fn set_error_header(r: &mut HttpResponse, message: &str) {
    // Header values must be visible ASCII; keep the first line, and replace anything else.
    let clean: String = message
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(512)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&clean) {
        r.headers_mut().insert("X-Influxdb-Error", v);
    }
}

/// 503 or 429 with a Retry-After in whole seconds.
fn retry_later(status: StatusCode, code: &str, message: String, retry_after: u64) -> HttpResponse {
    let mut r = error(status, code, message);
    r.headers_mut()
        .insert("Retry-After", HeaderValue::from(retry_after.max(1)));
    r
}

/// The set of databases a token may write, `*` for any.
fn databases_of(list: &[String]) -> (bool, BTreeSet<String>) {
    let any = list.iter().any(|d| d == "*");
    (any, list.iter().filter(|d| *d != "*").cloned().collect())
}
