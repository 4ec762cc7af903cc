//! The delivery policy shared by `outputs.influxdb` (v1) and `outputs.influxdb_v2`.
//!
//! A batch is split by (db, rp) and each part sent with ns precision, gzip'd when configured.
//! The upstream's answer decides, in one place ([`Relay::send`]):
//!
//! | answer | action |
//! |---|---|
//! | 2xx | delivered |
//! | connection error, timeout, 408, 429, 5xx | next URL; if none takes it, retry later (backoff, Retry-After) |
//! | 413 | split the part in halves and send each; a single point that is still too large is poison |
//! | 401, 403, database / bucket not found | pause: retried slowly, logged loudly, the buffer keeps filling |
//! | other 4xx (a type conflict, bad data) | poison: appended to the dead-letter file with the upstream's message, counted, never retried |
//!
//! Failover: URLs are tried in order; after the first URL failed, the next batches go to the one
//! that answered, and the first is tried again after [`PRIMARY_RETRY`].

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;

use super::super::super::{BuildError, WriteError};
use crate::buffer::record::Run;
use crate::http::client::{HttpClient, Reply};
use crate::line_protocol;
use crate::metric::Metric;

/// How long after a failure of the first URL it is tried again.
pub const PRIMARY_RETRY: Duration = Duration::from_secs(30);

/// How the upstream is addressed.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// InfluxDB 1.x `/write`.
    V1 {
        /// Overrides every write's db.
        database: Option<String>,
        /// Overrides every write's rp.
        retention_policy: Option<String>,
        /// Basic auth, when set.
        credentials: Option<(String, String)>,
        /// Do not `CREATE DATABASE` before the first write to a db.
        skip_database_creation: bool,
    },
    /// InfluxDB 2.x `/api/v2/write`.
    V2 {
        /// `Authorization: Token ...`.
        token: String,
        /// `org`.
        organization: String,
        /// Overrides every write's bucket (otherwise `db` or `db/rp`).
        bucket: Option<String>,
    },
}

/// What happened to one part.
enum Sent {
    Delivered,
    TooLarge,
    Poison(u16, String),
}

/// The relay core; see the module docs.
#[derive(Debug)]
pub struct Relay {
    id: String,
    urls: Vec<String>,
    protocol: Protocol,
    client: HttpClient,
    gzip: bool,
    in_flight: usize,
    state: Mutex<Failover>,
    dead_letter: PathBuf,
    dead_lettered: Arc<AtomicU64>,
}

/// Which URL to use, and which databases exist where.
#[derive(Debug, Default)]
struct Failover {
    created: HashSet<(usize, String)>,
    current: usize,
    primary_failed: Option<Instant>,
}

impl Relay {
    /// Checks the URLs and builds the relay.
    ///
    /// # Errors
    /// A [`BuildError`] for a missing or unusable URL or encoding.
    pub fn new(
        id: &str,
        urls: Vec<String>,
        protocol: Protocol,
        timeout: Duration,
        content_encoding: &str,
        data_dir: &std::path::Path,
        in_flight: usize,
    ) -> Result<Relay, BuildError> {
        if in_flight == 0 {
            return Err(BuildError::new("`max_in_flight` must be at least 1"));
        }
        if urls.is_empty() {
            return Err(BuildError::new(
                "`urls` is empty; try [\"http://127.0.0.1:8086\"]",
            ));
        }
        for u in &urls {
            if !u.starts_with("http://") {
                return Err(BuildError::new(format!(
                    "`urls`: {u:?} is not supported; only http:// upstreams (TLS upstreams are not supported yet)"
                )));
            }
        }
        let gzip = match content_encoding {
            "gzip" => true,
            "" | "identity" => false,
            other => {
                return Err(BuildError::new(format!(
                    "`content_encoding = {other:?}` is not supported; use \"gzip\" or \"identity\""
                )))
            }
        };
        if timeout.is_zero() {
            return Err(BuildError::new("`timeout` must be more than 0; try \"5s\""));
        }
        let file: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(Relay {
            id: id.to_owned(),
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            protocol,
            client: HttpClient::new(timeout),
            gzip,
            in_flight,
            state: Mutex::new(Failover::default()),
            dead_letter: data_dir.join("deadletter").join(format!("{file}.lp")),
            dead_lettered: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Points dead-lettered since start.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }

    /// Requests this relay keeps in flight at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn state(&self) -> MutexGuard<'_, Failover> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers a batch of metrics: encoded, then as [`Relay::write_runs`].
    ///
    /// # Errors
    /// As [`Relay::write_runs`].
    pub async fn write(&self, batch: &[Metric]) -> Result<(), WriteError> {
        let mut texts: Vec<(crate::metric::Origin, String, usize)> = Vec::new();
        for m in batch {
            match texts.last_mut() {
                Some((o, text, n)) if *o == *m.origin => {
                    if line_protocol::encode(m, text) {
                        *n += 1;
                    }
                }
                _ => {
                    let mut text = String::new();
                    let n = usize::from(line_protocol::encode(m, &mut text));
                    texts.push(((*m.origin).clone(), text, n));
                }
            }
        }
        let runs: Vec<Run<'_>> = texts
            .iter()
            .map(|(o, text, n)| Run {
                db: &o.db,
                rp: &o.rp,
                points: *n,
                lp: text,
                source: None,
            })
            .collect();
        self.write_runs(&runs).await
    }

    /// Delivers line protocol runs: grouped by upstream (db, rp), and with `max_in_flight` > 1
    /// spread over that many requests sent at once (order between them is then not kept).
    ///
    /// # Errors
    /// [`WriteError::Retry`] or [`WriteError::Paused`]: the whole batch stays buffered (parts
    /// already delivered are sent again: InfluxDB writes are idempotent).
    pub async fn write_runs(&self, runs: &[Run<'_>]) -> Result<(), WriteError> {
        self.write_runs_in(runs, self.in_flight).await
    }

    /// As [`Relay::write_runs`], each (db, rp) spread over at most `requests` requests.
    async fn write_runs_in(&self, runs: &[Run<'_>], requests: usize) -> Result<(), WriteError> {
        let mut groups: Vec<((String, String), Vec<&Run<'_>>)> = Vec::new();
        for r in runs.iter().filter(|r| r.points > 0) {
            let key = self.target(r.db, r.rp);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(r),
                None => groups.push((key, vec![r])),
            }
        }
        let mut jobs: Vec<crate::plugins::BoxFuture<'_, Result<(), WriteError>>> = Vec::new();
        for ((db, rp), rs) in &groups {
            let total: usize = rs.iter().map(|r| r.points).sum();
            let per_job = total.div_ceil(requests.max(1)).max(1);
            let mut from = 0;
            let mut points = 0;
            for (i, r) in rs.iter().enumerate() {
                points += r.points;
                if points >= per_job || i + 1 == rs.len() {
                    jobs.push(Box::pin(self.deliver(db, rp, body(&rs[from..=i]))));
                    from = i + 1;
                    points = 0;
                }
            }
        }
        join_all(jobs).await.into_iter().collect()
    }

    /// Delivers one (db, rp) text, splitting on 413 and setting poison aside.
    async fn deliver(&self, db: &str, rp: &str, text: Bytes) -> Result<(), WriteError> {
        // Parts share the text's buffer (no copy for the request body).
        let mut parts: Vec<Bytes> = vec![text];
        while let Some(bytes) = parts.pop() {
            match self.send(db, rp, &bytes).await? {
                Sent::Delivered => {}
                Sent::TooLarge => match split_half(as_text(&bytes)) {
                    Some(at) => {
                        parts.push(bytes.slice(at..));
                        parts.push(bytes.slice(..at));
                    }
                    None => self.poison(
                        db,
                        rp,
                        as_text(&bytes),
                        413,
                        "a single point is larger than the upstream accepts",
                    ),
                },
                Sent::Poison(status, message) => {
                    self.poison(db, rp, as_text(&bytes), status, &message);
                }
            }
        }
        Ok(())
    }

    /// The (db, rp) a write's points go to upstream, after overrides.
    fn target(&self, db: &str, rp: &str) -> (String, String) {
        match &self.protocol {
            Protocol::V1 {
                database,
                retention_policy,
                ..
            } => (
                database.clone().unwrap_or_else(|| or_default(db)),
                retention_policy.clone().unwrap_or_else(|| rp.to_owned()),
            ),
            Protocol::V2 { bucket, .. } => match bucket {
                Some(b) => (b.clone(), String::new()),
                None => (or_default(db), rp.to_owned()),
            },
        }
    }

    fn write_url(&self, base: &str, db: &str, rp: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        match &self.protocol {
            Protocol::V1 { .. } => {
                q.append_pair("db", db);
                if !rp.is_empty() && rp != crate::metric::DEFAULT_RETENTION_POLICY {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", "ns");
                format!("{base}/write?{}", q.finish())
            }
            Protocol::V2 {
                organization,
                bucket,
                ..
            } => {
                let bucket = match bucket {
                    Some(b) => b.clone(),
                    None if rp.is_empty() || rp == crate::metric::DEFAULT_RETENTION_POLICY => {
                        db.to_owned()
                    }
                    None => format!("{db}/{rp}"),
                };
                q.append_pair("org", organization);
                q.append_pair("bucket", &bucket);
                q.append_pair("precision", "ns");
                format!("{base}/api/v2/write?{}", q.finish())
            }
        }
    }

    fn auth_header(&self) -> Option<String> {
        match &self.protocol {
            Protocol::V1 {
                credentials: Some((u, p)),
                ..
            } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            Protocol::V1 { .. } => None,
            Protocol::V2 { token, .. } => Some(format!("Token {token}")),
        }
    }

    /// `CREATE DATABASE` on URL `idx` before its first write to `db` (v1, unless skipped).
    async fn ensure_database(&self, idx: usize, db: &str) {
        let Protocol::V1 {
            skip_database_creation: false,
            ..
        } = &self.protocol
        else {
            return;
        };
        if self.state().created.contains(&(idx, db.to_owned())) {
            return;
        }
        let q = format!(
            "CREATE DATABASE \"{}\"",
            db.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q)
            .finish();
        let mut headers = vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        if let Some(a) = self.auth_header() {
            headers.push(("Authorization", a));
        }
        let url = format!("{}/query", self.urls[idx]);
        match self.client.post(&url, &headers, Bytes::from(body)).await {
            Ok(r) if r.status < 300 => {
                self.state().created.insert((idx, db.to_owned()));
            }
            Ok(r) => {
                tracing::warn!(output = %self.id, url = %self.urls[idx], db, status = r.status, message = %r.text(), "cannot create the database upstream")
            }
            Err(e) => {
                tracing::debug!(output = %self.id, url = %self.urls[idx], error = %e, "cannot create the database upstream")
            }
        }
    }

    /// Sends one part to the first URL that takes it; see the module docs for the policy.
    async fn send(&self, db: &str, rp: &str, text: &Bytes) -> Result<Sent, WriteError> {
        let body = if self.gzip {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(text.len() / 4),
                flate2::Compression::fast(),
            );
            e.write_all(text)
                .map_err(|e| self.retry("gzip", e.to_string(), None))?;
            Bytes::from(
                e.finish()
                    .map_err(|e| self.retry("gzip", e.to_string(), None))?,
            )
        } else {
            text.clone()
        };
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_string())];
        if self.gzip {
            headers.push(("Content-Encoding", "gzip".to_string()));
        }
        if let Some(a) = self.auth_header() {
            headers.push(("Authorization", a));
        }
        // The first URL again once it has had time to recover; otherwise the one that worked.
        let start = {
            let st = self.state();
            match st.primary_failed {
                Some(t) if t.elapsed() >= PRIMARY_RETRY => 0,
                _ => st.current,
            }
        };
        let order: Vec<usize> = (0..self.urls.len())
            .map(|i| (start + i) % self.urls.len())
            .collect();
        let mut last = None;
        for idx in order {
            self.ensure_database(idx, db).await;
            let url = self.write_url(&self.urls[idx], db, rp);
            let reply: Reply = match self.client.post(&url, &headers, body.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    self.failed(idx);
                    last = Some(self.retry(&self.urls[idx], crate::error_chain(&e), None));
                    continue;
                }
            };
            match reply.status {
                200..=299 => {
                    let mut st = self.state();
                    st.current = idx;
                    if idx == 0 {
                        st.primary_failed = None;
                    }
                    return Ok(Sent::Delivered);
                }
                413 => return Ok(Sent::TooLarge),
                401 | 403 => {
                    return Err(WriteError::Paused {
                        target: self.urls[idx].clone(),
                        reason: format!("{} {}", reply.status, reply.text()),
                    })
                }
                404 => {
                    // Database (v1) or bucket (v2) not found: creating it is the operator's call.
                    self.state().created.remove(&(idx, db.to_owned()));
                    return Err(WriteError::Paused {
                        target: self.urls[idx].clone(),
                        reason: format!("404 {}", reply.text()),
                    });
                }
                408 | 429 | 500..=599 => {
                    self.failed(idx);
                    last = Some(self.retry(
                        &self.urls[idx],
                        format!("{} {}", reply.status, reply.text()),
                        reply.retry_after(),
                    ));
                }
                status => return Ok(Sent::Poison(status, reply.text())),
            }
        }
        Err(last.expect("at least one URL"))
    }

    fn failed(&self, idx: usize) {
        if idx == 0 {
            self.state().primary_failed = Some(Instant::now());
        }
    }

    fn retry(&self, target: &str, reason: String, retry_after: Option<Duration>) -> WriteError {
        WriteError::Retry {
            target: target.to_owned(),
            reason,
            retry_after,
        }
    }

    /// Appends a refused part to the dead-letter file with the upstream's message.
    fn poison(&self, db: &str, rp: &str, part: &str, status: u16, message: &str) {
        let points = line_protocol::Parser::new(part).count();
        self.dead_lettered
            .fetch_add(points as u64, Ordering::Relaxed);
        static POISON: crate::ratelimit::LogLimit =
            crate::ratelimit::LogLimit::new(10, std::time::Duration::from_secs(10));
        if let Some(suppressed) = POISON.allow() {
            tracing::error!(
                output = %self.id,
                db, rp, status, points,
                upstream = %message,
                file = %self.dead_letter.display(),
                suppressed,
                "upstream refused a batch for good; moved to the dead-letter file"
            );
        }
        let mut text = format!(
            "# {} status={status} db={db:?} rp={rp:?} upstream={:?}\n",
            crate::pipeline::now_ns(),
            message.lines().next().unwrap_or("")
        );
        text.push_str(part);
        // The batch leaves the spool once this returns: its file and directory are made
        // durable first.
        let written = crate::durable::create_dir_all(
            self.dead_letter
                .parent()
                .unwrap_or(std::path::Path::new(".")),
        )
        .and_then(|_| {
            let mut f = crate::durable::create_file(
                &self.dead_letter,
                std::fs::OpenOptions::new().append(true),
            )?;
            f.write_all(text.as_bytes())?;
            f.sync_data()
        });
        if let Err(e) = written {
            tracing::error!(output = %self.id, error = %e, "cannot write the dead-letter file; the refused points are only in this log");
        }
    }
}

impl crate::plugins::SharedRuns for Relay {
    fn write_batch<'a>(
        &'a self,
        runs: &'a [Run<'a>],
    ) -> crate::plugins::BoxFuture<'a, Result<(), WriteError>> {
        // The pipeline keeps several batches in flight itself: one request per target each.
        Box::pin(self.write_runs_in(runs, 1))
    }
}

/// The [`crate::plugins::Output`] methods of an output that is a [`Relay`] (behind an `Arc`) in a
/// field `relay`:
/// batches and line protocol runs go to it as they are.
macro_rules! relay_output_methods {
    () => {
        async fn write(
            &mut self,
            batch: &[crate::metric::Metric],
        ) -> Result<(), crate::plugins::WriteError> {
            self.relay.write(batch).await
        }

        fn dead_lettered(&self) -> u64 {
            self.relay.dead_lettered()
        }

        fn in_flight(&self) -> usize {
            self.relay.in_flight()
        }

        fn takes_runs(&self) -> bool {
            true
        }

        async fn write_runs(
            &mut self,
            runs: &[crate::buffer::record::Run<'_>],
        ) -> Result<(), crate::plugins::WriteError> {
            self.relay.write_runs(runs).await
        }

        fn shared_runs(&self) -> Option<std::sync::Arc<dyn crate::plugins::SharedRuns>> {
            Some(self.relay.clone())
        }
    };
}
pub(crate) use relay_output_methods;

/// The request body for `runs`: the one run's text where it lies in its shared record (no
/// copy: the record stays alive until the request is done), otherwise their texts in one
/// buffer made at its size; names with a backslash spelled as InfluxDB 1.x and 2.x read them
/// ([`line_protocol::with_v1_names`]).
fn body(runs: &[&Run<'_>]) -> Bytes {
    if let [Run {
        source: Some(record),
        lp,
        ..
    }] = runs
    {
        return match line_protocol::with_v1_names(lp) {
            Some(text) => Bytes::from(text),
            None => Bytes::from_owner(SharedRecord(Arc::clone(record))).slice_ref(lp.as_bytes()),
        };
    }
    let mut text = String::with_capacity(runs.iter().map(|r| r.lp.len()).sum());
    for r in runs {
        text.push_str(r.lp);
    }
    Bytes::from(line_protocol::with_v1_names(&text).unwrap_or(text))
}

/// A disk buffer record as the owner of request bodies sliced from it.
struct SharedRecord(crate::wal::Payload);

impl AsRef<[u8]> for SharedRecord {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Runs every future to completion, concurrently; results in order.
async fn join_all<T>(mut futures: Vec<crate::plugins::BoxFuture<'_, T>>) -> Vec<T> {
    let mut results: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => results[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}

/// The database of gathered metrics, which carry none: Telegraf's default.
pub const DEFAULT_DATABASE: &str = "telegraf";

fn or_default(db: &str) -> String {
    if db.is_empty() {
        DEFAULT_DATABASE.to_owned()
    } else {
        db.to_owned()
    }
}

/// A part of a request's text: slices of a `String` at line ends, so still UTF-8 (checked only
/// where a part is split or set aside).
fn as_text(part: &[u8]) -> &str {
    std::str::from_utf8(part).unwrap_or_default()
}

/// Where to split line protocol text into two halves, at a point boundary; `None` for a single
/// point.
fn split_half(text: &str) -> Option<usize> {
    let mut parser = line_protocol::Parser::new(text);
    let mut ends = Vec::new();
    while parser.next().is_some() {
        ends.push(parser.offset());
    }
    if ends.len() < 2 {
        return None;
    }
    Some(ends[ends.len() / 2 - 1])
}
