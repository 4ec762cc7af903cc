//! `POST /write` (v1) and `POST /api/v2/write`: auth, parameters, body, parse, admit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use hyper::{Request, StatusCode};

use super::auth::{self, AuthError, Token};
use super::{error, json, retry_later, set_error_header, State};
use crate::buffer::Refusal;
use crate::http::body::{self, BodyError, Encoding};
use crate::http::HttpResponse;
use crate::line_protocol::{Line, ParseError, ParseErrorKind, Parser, Precision};
use crate::metric::{Metric, Origin};
use crate::pipeline::now_ns;
use crate::ratelimit::LogLimit;

/// Which write API a request came in on: they differ in parameter names and precisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/write`: `db`, `rp`, precision `n u ms s m h` (and `ns`, `us`).
    V1,
    /// `/api/v2/write`: `bucket` (`db` or `db/rp`), `org`, precision `ns us ms s`.
    V2,
}

/// The most bad lines listed in one 400 response.
const MAX_LISTED_ERRORS: usize = 100;

/// The query string as a map (last value wins), percent-decoded.
pub fn params(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Authenticates the request against the token table (a no-op when auth is off).
///
/// # Errors
/// The 403 or 401 response to send.
pub fn authenticate<'s>(
    state: &'s State,
    req: &Request<Incoming>,
    params: &HashMap<String, String>,
) -> Result<Option<&'s Token>, Box<HttpResponse>> {
    let tokens = &state.settings.tokens;
    if tokens.is_empty() {
        return Ok(None);
    }
    match auth::authenticate(tokens, req.headers(), params.get("p").map(String::as_str)) {
        Ok(t) => Ok(Some(t)),
        Err(AuthError::Missing) => Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "authentication required: send `Authorization: Token <secret>`, Basic auth, or ?u=&p=",
        ))),
        Err(AuthError::Unknown) => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authorization failed: unknown token",
        ))),
    }
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    let message = message.into();
    let mut r = json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "code": "invalid",
            "message": message,
            "op": "writing line protocol",
            "err": message,
        }),
    );
    set_error_header(&mut r, &message);
    r
}

fn too_large(max: usize) -> HttpResponse {
    let message = format!("request body is larger than max_body_size ({max} bytes)");
    let mut r = json(
        StatusCode::PAYLOAD_TOO_LARGE,
        &serde_json::json!({ "code": "invalid", "message": message, "maxLength": max }),
    );
    set_error_header(&mut r, &message);
    r
}

/// Handles one write request.
pub async fn handle(req: Request<Incoming>, state: &State, api: Api) -> HttpResponse {
    // One receive time for every point of the request that has no timestamp.
    let received = now_ns();
    // Headers and body together get read_timeout, from the request's first byte.
    let read_deadline = req
        .extensions()
        .get::<crate::http::RequestStart>()
        .map_or_else(std::time::Instant::now, |s| s.0)
        + state.settings.read_timeout;
    let params = params(&req);
    let token = match authenticate(state, &req, &params) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let origin = match api {
        Api::V1 => match params.get("db").filter(|db| !db.is_empty()) {
            Some(db) => Origin::new(db.as_str(), params.get("rp").map(String::as_str)),
            None => return bad_request("database is required: add ?db=NAME to the URL"),
        },
        Api::V2 => match params.get("bucket").filter(|b| !b.is_empty()) {
            Some(bucket) => match bucket.split_once('/') {
                Some((db, rp)) => Origin::new(db, Some(rp)),
                None => Origin::new(bucket.as_str(), None),
            },
            None => return bad_request("bucket is required: add ?bucket=NAME to the URL"),
        },
    };
    if let Some(t) = token {
        if !t.may(auth::Permission::Write, &origin.db) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "token {:?} may not write to database {:?}",
                    t.name, origin.db
                ),
            );
        }
    }
    let precision = match params.get("precision").map(String::as_str) {
        None | Some("") => Precision::Nanoseconds,
        Some(p) => match Precision::from_param(p) {
            Some(Precision::Minutes | Precision::Hours) if api == Api::V2 => {
                return bad_request(format!("invalid precision {p:?}; use ns, us, ms or s"))
            }
            Some(precision) => precision,
            None => {
                return bad_request(format!(
                    "invalid precision {p:?}; use ns, us, ms, s{}",
                    if api == Api::V1 { ", m or h" } else { "" }
                ))
            }
        },
    };
    if state.shutdown.is_cancelled() {
        return shutting_down();
    }
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let Some(encoding) = Encoding::from_header(encoding) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid",
            "unsupported Content-Encoding; use gzip or identity",
        );
    };
    let max = state.settings.max_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max);
    }
    let read = body::read(req.into_body(), encoding, max, &state.settings.body_budget);
    let deadline = tokio::time::Instant::from_std(read_deadline);
    let (body, body_memory) = match tokio::time::timeout_at(deadline, read).await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid",
                format!(
                    "request not received within read_timeout ({:?}, headers and body)",
                    state.settings.read_timeout
                ),
            )
        }
        Ok(Err(BodyError::TooLarge { max })) => return too_large(max),
        Ok(Err(e @ BodyError::Gzip(_))) => return bad_request(crate::error_chain(&e)),
        Ok(Err(e @ BodyError::Read(_))) => return bad_request(crate::error_chain(&e)),
        Ok(Err(e @ BodyError::Busy { .. })) => {
            static BUSY: LogLimit = LogLimit::new(10, std::time::Duration::from_secs(10));
            if let Some(suppressed) = BUSY.allow() {
                tracing::warn!(
                    suppressed,
                    "{e}: write refused with 503; the writer retries"
                );
            }
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; nothing was written, retry later"),
                1,
            );
        }
        Ok(Ok(body)) => body,
    };
    state
        .stats
        .bytes_received
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    // Validated with SIMD; the standard check runs only to place an error.
    let text = match simdutf8::basic::from_utf8(&body).or_else(|_| std::str::from_utf8(&body)) {
        Ok(text) => text,
        Err(e) => {
            let before = &body[..e.valid_up_to()];
            let line = memchr::memchr_iter(b'\n', before).count() + 1;
            let column = e.valid_up_to() - memchr::memrchr(b'\n', before).map_or(0, |i| i + 1) + 1;
            let error = ParseError {
                line,
                column,
                kind: ParseErrorKind::InvalidUtf8,
            };
            return parse_failure(&[error], false);
        }
    };
    let default_time = precision.truncate(received);
    let origin = Arc::new(origin);
    // Nothing on the way needs the points as metrics: they go to the store and disk buffers as
    // the normalized line protocol they are parsed into, never becoming `Metric`s.
    let lp_path = state.lp_path && !origin.db.is_empty();
    let (write, errors) = if lp_path {
        let head = crate::buffer::record::run_header_len(&origin.db, &origin.rp);
        let (lp, errors) = parse_lp(text, precision, default_time, state.settings.max_line, head);
        (Parsed::Lp(lp), errors)
    } else {
        let (metrics, errors) = parse(
            text,
            precision,
            default_time,
            &origin,
            state.settings.max_line,
        );
        (Parsed::Metrics(metrics), errors)
    };
    // The parsed write owns its text: the body is not held while the write waits for buffers.
    crate::pool::give(body);
    drop(body_memory);
    let parsed_points = match &write {
        Parsed::Lp(lp) => lp.points,
        Parsed::Metrics(m) => m.len(),
    };
    if !errors.is_empty() && (!state.settings.accept_partial || parsed_points == 0) {
        return parse_failure(&errors, false);
    }
    if let Some(t) = token {
        match t.admit(parsed_points) {
            Ok(()) => {}
            Err(auth::OverRate::Wait(wait)) => {
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests",
                    format!(
                        "token {:?} is over its max_points_per_second; this request of {parsed_points} points fits in {:.1} s",
                        t.name,
                        wait.as_secs_f64()
                    ),
                    // At most a second: the bucket refills in one.
                    wait.as_secs_f64().ceil() as u64,
                );
            }
            Err(auth::OverRate::Never { rate }) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too large",
                    format!(
                        "token {:?} may send at most {rate} points at once (max_points_per_second) and this request has {parsed_points}: split it",
                        t.name
                    ),
                );
            }
        }
    }
    let (points, admitted) = match write {
        Parsed::Lp(lp) => {
            let points = lp.points;
            let write = crate::pipeline::LpWrite {
                origin: &origin,
                lp: lp.text,
                head: lp.head,
                points,
                min_time: lp.min_time,
                names: lp.names,
            };
            let admitted = tokio::time::timeout(
                state.settings.write_timeout,
                state.pipeline.deliver_lp(write),
            )
            .await;
            (points, admitted)
        }
        Parsed::Metrics(mut metrics) => {
            let agent_tags: &[(String, String)] = if state.settings.add_agent_tags {
                state.pipeline.agent_tags()
            } else {
                &[]
            };
            state.shape.apply(&mut metrics, agent_tags);
            let points = metrics.len();
            let admitted = tokio::time::timeout(
                state.settings.write_timeout,
                state.pipeline.deliver(metrics),
            )
            .await;
            (points, admitted)
        }
    };
    match admitted {
        Ok(Ok(())) => {
            state.pipeline.note_database(&origin.db);
            state
                .stats
                .points_written
                .fetch_add(points as u64, Ordering::Relaxed);
            if errors.is_empty() {
                let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            } else {
                parse_failure(&errors, true)
            }
        }
        Ok(Err(Refusal::ShuttingDown)) => shutting_down(),
        Ok(Err(Refusal::Invalid(message))) => {
            bad_request(format!("{message}; nothing was written"))
        }
        Ok(Err(refusal)) => {
            static REFUSED: LogLimit = LogLimit::new(10, std::time::Duration::from_secs(10));
            if let Some(suppressed) = REFUSED.allow() {
                tracing::warn!(%refusal, points, db = %origin.db, suppressed, "write refused with 503; the writer retries");
            }
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{refusal}; nothing was written, retry later"),
                refusal.retry_after_secs(),
            )
        }
        Err(_) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "write not admitted within write_timeout ({:?}); retry later",
                state.settings.write_timeout
            ),
            1,
        ),
    }
}

fn shutting_down() -> HttpResponse {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "heliograph is shutting down; nothing was written, retry later".into(),
        Refusal::ShuttingDown.retry_after_secs(),
    )
}

/// Parses a whole body into metrics; returns the good metrics and every bad line.
pub fn parse(
    text: &str,
    precision: Precision,
    default_time: i64,
    origin: &Arc<Origin>,
    max_line: usize,
) -> (Vec<Metric>, Vec<ParseError>) {
    let mut parser = Parser::new(text).with_max_line(max_line);
    let mut line = Line::default();
    let mut metrics = Vec::with_capacity(text.len() / 64);
    let mut errors = Vec::new();
    while let Some(result) = parser.next_into(&mut line) {
        let converted = result.and_then(|()| {
            line.to_metric(precision, default_time, origin)
                .map_err(|kind| ParseError {
                    line: 0, // filled in below: the parser has moved on, so ask it for the line
                    column: 1,
                    kind,
                })
        });
        match converted {
            Ok(m) => metrics.push(m),
            Err(mut e) => {
                if e.line == 0 {
                    e.line = parser.last_line();
                }
                errors.push(e);
            }
        }
    }
    (metrics, errors)
}

/// 400 with the spec's LineProtocolError: the first bad line, and every bad line in `err`.
/// A body parsed one way or the other.
enum Parsed {
    /// Normalized line protocol (the store and disk buffers take it as it is).
    Lp(LpBody),
    /// Metrics (processors, selectors or memory buffers need them).
    Metrics(Vec<Metric>),
}

/// A body as normalized line protocol: one point per line, escaped as the encoder does, the
/// timestamp in ns (the write's default time where a line had none).
#[derive(Debug)]
pub struct LpBody {
    /// The lines, after `head` NUL bytes left for a record header.
    pub text: String,
    /// The bytes left at the start of `text`.
    pub head: usize,
    /// How many.
    pub points: usize,
    /// The oldest timestamp.
    pub min_time: i64,
    /// The measurements, each once.
    pub names: Vec<String>,
}

/// Parses a body into normalized line protocol, collecting every bad line; the text starts
/// after `head` bytes left for the header of the record it becomes (so it never moves).
pub fn parse_lp(
    text: &str,
    precision: Precision,
    default_time: i64,
    max_line: usize,
    head: usize,
) -> (LpBody, Vec<ParseError>) {
    let mut parser = Parser::new(text).with_max_line(max_line);
    let mut line = Line::default();
    let mut buf = crate::pool::take(head + text.len() + text.len() / 8);
    buf.resize(head, 0);
    let mut out = LpBody {
        // NUL bytes are valid UTF-8.
        text: String::from_utf8(buf).unwrap_or_default(),
        head,
        points: 0,
        min_time: i64::MAX,
        names: Vec::new(),
    };
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut errors = Vec::new();
    while let Some(result) = parser.next_into(&mut line) {
        if let Err(e) = result {
            errors.push(e);
            continue;
        }
        let time = match line.time_ns(precision, default_time) {
            Ok(t) => t,
            Err(kind) => {
                errors.push(ParseError {
                    line: parser.last_line(),
                    column: 1,
                    kind,
                });
                continue;
            }
        };
        if crate::line_protocol::encode_line(&line, time, &mut out.text) {
            out.points += 1;
            out.min_time = out.min_time.min(time);
            let name = line.measurement.as_ref();
            if out.names.last().is_none_or(|n| n != name) && !seen.contains(name) {
                seen.insert(name.to_owned());
                out.names.push(name.to_owned());
            }
        }
    }
    (out, errors)
}

fn parse_failure(errors: &[ParseError], partial: bool) -> HttpResponse {
    let first = &errors[0];
    let mut message = format!("unable to parse line {}: {}", first.line, first.kind);
    message.push_str(&format!(" (column {})", first.column));
    if errors.len() > 1 {
        message.push_str(&format!(" (and {} other bad lines)", errors.len() - 1));
    }
    message = if partial {
        format!("partial write: {message}; the other lines were written")
    } else {
        format!("{message}; nothing was written")
    };
    let mut err: Vec<String> = errors
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(ToString::to_string)
        .collect();
    if errors.len() > MAX_LISTED_ERRORS {
        err.push(format!("... and {} more", errors.len() - MAX_LISTED_ERRORS));
    }
    let mut r = json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "code": "invalid",
            "message": message,
            "op": "writing line protocol",
            "err": err.join("\n"),
            "line": first.line,
        }),
    );
    set_error_header(&mut r, &message);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line protocol path writes what the metric path encodes, for the same body (floats
    /// as written), and it reads back to the same metrics.
    #[test]
    fn lp_path_matches_the_metric_path() {
        let body = "cpu,host=a,dc=x usage=0.5,n=3i,u=7u,ok=t,s=\"a \\\"q\\\" \\\\ b\" 1700000000\n\
                    # a comment\n\
                    \n\
                    weird\\ name,tag\\,k=v\\=x f\\ k=1e3\n\
                    cpu,host=b usage=1 1700000001\n\
                    mem free=2i 1700000002\n\
                    cpu,host=c usage=-0.25 1700000003\n";
        for precision in [Precision::Seconds, Precision::Milliseconds] {
            let origin = Arc::new(Origin::new("db", None));
            let (metrics, e1) = parse(body, precision, 42, &origin, 0);
            let (lp, e2) = parse_lp(body, precision, 42, 0, 3);
            assert!(e1.is_empty() && e2.is_empty());
            let mut want = String::new();
            crate::line_protocol::encode_all(&metrics, &mut want);
            // The same text, but for floats, which keep the text they were written with,
            // after the room left for a header.
            assert_eq!(lp.head, 3);
            assert_eq!(&lp.text[..3], "\0\0\0");
            let text = &lp.text[3..];
            assert_eq!(text, want.replace("f\\ k=1000 ", "f\\ k=1e3 "));
            // And it reads back to the same metrics.
            let (again, errors) = parse(text, Precision::Nanoseconds, 0, &origin, 0);
            assert!(errors.is_empty());
            assert_eq!(again, metrics);
            assert_eq!(lp.points, metrics.len());
            assert_eq!(lp.min_time, metrics.iter().map(|m| m.time).min().unwrap());
            assert_eq!(lp.names, ["cpu", "weird name", "mem"]);
        }
        // Bad lines are reported the same way.
        let bad = "ok v=1 1\nbad line\nok v=2 99999999999999999\n";
        let origin = Arc::new(Origin::new("db", None));
        let (_, e1) = parse(bad, Precision::Seconds, 0, &origin, 0);
        let (lp, e2) = parse_lp(bad, Precision::Seconds, 0, 0, 0);
        assert_eq!(e1, e2);
        assert_eq!(lp.points, 1);
    }
}
