//! `/query` (the statements clients send on connect), `/ping` and `/health`.
//!
//! `/query` answers `SHOW DATABASES` and `CREATE DATABASE` in the spec's InfluxQLResponse JSON, or
//! CSV with `Accept: application/csv`. Any other statement gets an error in its result: the agent
//! stores no queryable series, and says so rather than answering with nothing.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::auth::{Permission, Token};
use super::write::{authenticate, params};
use super::{json, State, INFLUXDB_VERSION};
use crate::http::HttpResponse;

/// Largest `/query` form body read: statements are short.
const MAX_QUERY_BODY: usize = 1 << 20;

/// One statement, as far as we understand it.
#[derive(Debug, PartialEq, Eq)]
enum Statement {
    ShowDatabases,
    CreateDatabase(String),
    DropDatabase(String),
    /// `SHOW RETENTION POLICIES [ON db]`.
    ShowRetentionPolicies(Option<String>),
    /// `SHOW MEASUREMENTS [ON db]`.
    ShowMeasurements(Option<String>),
    Other(String),
    Invalid(String),
}

fn influx_error(status: StatusCode, message: &str) -> HttpResponse {
    let mut r = json(status, &json!({ "error": message }));
    super::set_error_header(&mut r, message);
    r
}

/// Handles `/query`.
pub async fn query(req: Request<Incoming>, state: &State) -> HttpResponse {
    let mut params = params(&req);
    let token = match authenticate(state, &req, &params) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let csv = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/csv") || v.contains("text/csv"));
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        match Limited::new(req.into_body(), MAX_QUERY_BODY)
            .collect()
            .await
        {
            Ok(body) => {
                params.extend(form_urlencoded::parse(&body.to_bytes()).into_owned());
            }
            Err(_) => return influx_error(StatusCode::BAD_REQUEST, "cannot read the form body"),
        }
    }
    let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return influx_error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let statements: Vec<Statement> = q
        .split(';')
        .filter(|s| !s.trim().is_empty())
        .map(parse_statement)
        .collect();
    if let Some(t) = token {
        if let Err(message) = authorize(t, &statements, params.get("db").map(String::as_str)) {
            return influx_error(
                StatusCode::FORBIDDEN,
                &format!("error authorizing query: {message}"),
            );
        }
    }
    let mut results = Vec::new();
    let mut csv_out = String::new();
    for (i, statement) in statements.into_iter().enumerate() {
        let result = match statement {
            Statement::ShowDatabases => {
                let dbs = state.pipeline.databases();
                let dbs: Vec<String> = match token {
                    Some(t) => dbs
                        .into_iter()
                        .filter(|d| t.may(Permission::Read, d))
                        .collect(),
                    None => dbs,
                };
                if csv {
                    if csv_out.is_empty() {
                        csv_out.push_str("name,tags,name\n");
                    }
                    for db in &dbs {
                        csv_out.push_str(&format!("databases,,{}\n", csv_field(db)));
                    }
                }
                let mut series = json!({ "name": "databases", "columns": ["name"] });
                if !dbs.is_empty() {
                    series["values"] = Value::Array(dbs.into_iter().map(|d| json!([d])).collect());
                }
                json!({ "statement_id": i, "series": [series] })
            }
            Statement::CreateDatabase(db) => match state.pipeline.create_database(&db) {
                Ok(()) => json!({ "statement_id": i }),
                Err(e) => json!({ "statement_id": i, "error": e }),
            },
            Statement::DropDatabase(db) => match state.pipeline.drop_database(&db) {
                Ok(()) => json!({ "statement_id": i }),
                Err(e) => json!({ "statement_id": i, "error": e }),
            },
            Statement::ShowRetentionPolicies(db) => {
                let Some(db) = db.or_else(|| params.get("db").cloned()) else {
                    results.push(json!({ "statement_id": i, "error": "database name required: SHOW RETENTION POLICIES ON db" }));
                    continue;
                };
                let (rps, duration, shard) = match state.pipeline.store() {
                    Some(store) => (
                        store.retention_policies(&db),
                        store
                            .retention()
                            .0
                            .map_or_else(|| "0s".to_owned(), influx_duration),
                        influx_duration(store.partition()),
                    ),
                    None => (
                        if state.pipeline.databases().contains(&db) {
                            vec!["autogen".to_string()]
                        } else {
                            vec![]
                        },
                        "0s".to_string(),
                        "168h0m0s".to_string(),
                    ),
                };
                if rps.is_empty() {
                    json!({ "statement_id": i, "error": format!("database not found: {db}") })
                } else {
                    let columns = [
                        "name",
                        "duration",
                        "shardGroupDuration",
                        "replicaN",
                        "default",
                    ];
                    let values: Vec<Value> = rps
                        .iter()
                        .map(|rp| json!([rp, duration, shard, 1, rp == "autogen"]))
                        .collect();
                    csv_rows(&mut csv_out, csv, &columns, &values);
                    json!({ "statement_id": i, "series": [{ "columns": columns, "values": values }] })
                }
            }
            Statement::ShowMeasurements(db) => {
                let Some(db) = db.or_else(|| params.get("db").cloned()) else {
                    results.push(json!({ "statement_id": i, "error": "database name required: SHOW MEASUREMENTS ON db" }));
                    continue;
                };
                match state.pipeline.store() {
                    None => {
                        json!({ "statement_id": i, "error": "SHOW MEASUREMENTS needs [[outputs.buckets]]: this agent keeps no series" })
                    }
                    Some(store) => {
                        let ms = store.measurements(&db);
                        if ms.is_empty() {
                            json!({ "statement_id": i })
                        } else {
                            let values: Vec<Value> = ms.iter().map(|m| json!([m])).collect();
                            csv_rows(&mut csv_out, csv, &["name"], &values);
                            json!({ "statement_id": i, "series": [{ "name": "measurements", "columns": ["name"], "values": values }] })
                        }
                    }
                }
            }
            Statement::Other(s) => json!({
                "statement_id": i,
                "error": format!(
                    "heliograph does not answer {s:?}: it supports SHOW DATABASES, CREATE DATABASE, DROP DATABASE, SHOW RETENTION POLICIES and SHOW MEASUREMENTS"
                ),
            }),
            Statement::Invalid(message) => json!({ "statement_id": i, "error": message }),
        };
        results.push(result);
    }
    if csv {
        let mut r = Response::new(Full::new(Bytes::from(csv_out)));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/csv"));
        return r;
    }
    json(StatusCode::OK, &json!({ "results": results }))
}

/// Checks every statement of a request, and its `db` parameter, against the token before any
/// runs: InfluxDB 1.x refuses the whole request (403) when one statement is not allowed. The
/// message names the token, the permission and the database asked for, whether or not that
/// database exists, so a refusal tells nothing about other tenants.
fn authorize(
    token: &Token,
    statements: &[Statement],
    db_param: Option<&str>,
) -> Result<(), String> {
    let refuse = |p: Permission, db: &str| {
        Err(format!(
            "token {:?} may not {} database {db:?}",
            token.name,
            p.verb()
        ))
    };
    if let Some(db) = db_param.filter(|d| !d.is_empty()) {
        if !token.allows(db) {
            return refuse(Permission::Read, db);
        }
    }
    for s in statements {
        let (needed, db) = match s {
            Statement::ShowDatabases => (Permission::Read, None),
            Statement::CreateDatabase(db) | Statement::DropDatabase(db) => {
                (Permission::Manage, Some(db.as_str()))
            }
            Statement::ShowRetentionPolicies(db) | Statement::ShowMeasurements(db) => {
                (Permission::Read, db.as_deref().or(db_param))
            }
            Statement::Other(_) | Statement::Invalid(_) => continue,
        };
        match db {
            Some(db) if !token.may(needed, db) => return refuse(needed, db),
            None if !token.has(needed) => {
                return Err(format!("token {:?} may not {}", token.name, needed.verb()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Appends CSV rows (`name,tags,COLUMNS...`) for a result, when CSV was asked for.
fn csv_rows(out: &mut String, csv: bool, columns: &[&str], values: &[Value]) {
    if !csv {
        return;
    }
    out.push_str(&format!("name,tags,{}\n", columns.join(",")));
    for row in values {
        let cells: Vec<String> = row
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        Value::String(s) => csv_field(s),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(",,{}\n", cells.join(",")));
    }
}

/// A duration as InfluxDB prints it: `72h0m0s`.
fn influx_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn parse_statement(text: &str) -> Statement {
    let text = text.trim();
    let mut rest = text;
    let mut keywords = Vec::new();
    // Up to three leading keywords, upper-cased; what follows is read as identifiers.
    for _ in 0..3 {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() || word.starts_with('"') {
            break;
        }
        keywords.push(word.to_ascii_uppercase());
        rest = rest[end..].trim_start();
    }
    let on_db = |rest: &str| -> Result<Option<String>, String> {
        if rest.is_empty() {
            return Ok(None);
        }
        match identifier(rest) {
            Ok((name, tail)) if tail.trim().is_empty() => Ok(Some(name)),
            Ok((_, tail)) => Err(format!("unexpected {:?}", tail.trim())),
            Err(e) => Err(e),
        }
    };
    let k: Vec<&str> = keywords.iter().map(String::as_str).collect();
    let named = |verb: &str, keyword_count: usize| -> Result<String, String> {
        // The name starts after the first `keyword_count` keywords of the original text.
        let mut rest = text;
        for _ in 0..keyword_count {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            rest = rest[end..].trim_start();
        }
        match identifier(rest) {
            Ok((name, tail)) if tail.trim().is_empty() => Ok(name),
            Ok((_, tail)) => Err(format!(
                "{verb}: unsupported clause {:?}; heliograph sets retention itself",
                tail.trim()
            )),
            Err(e) => Err(format!("{verb}: {e}")),
        }
    };
    match k.as_slice() {
        ["SHOW", "DATABASES"] => Statement::ShowDatabases,
        ["CREATE", "DATABASE", ..] => match named("CREATE DATABASE", 2) {
            Ok(db) => Statement::CreateDatabase(db),
            Err(e) => Statement::Invalid(e),
        },
        ["DROP", "DATABASE", ..] => match named("DROP DATABASE", 2) {
            Ok(db) => Statement::DropDatabase(db),
            Err(e) => Statement::Invalid(e),
        },
        ["SHOW", "RETENTION", "POLICIES"] | ["SHOW", "MEASUREMENTS", ..] => {
            let measurements = k[1] == "MEASUREMENTS";
            let mut rest = text;
            for _ in 0..if measurements { 2 } else { 3 } {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                rest = rest[end..].trim_start();
            }
            let db = if rest.is_empty() {
                Ok(None)
            } else if rest.len() > 3 && rest[..3].eq_ignore_ascii_case("ON ") {
                on_db(rest[3..].trim_start())
            } else {
                Err(format!("unsupported clause {rest:?}"))
            };
            match (db, measurements) {
                (Ok(db), true) => Statement::ShowMeasurements(db),
                (Ok(db), false) => Statement::ShowRetentionPolicies(db),
                (Err(e), _) => Statement::Invalid(e),
            }
        }
        _ => Statement::Other(text.to_owned()),
    }
}

/// An InfluxQL identifier: bare (`[A-Za-z_][A-Za-z0-9_]*`) or double-quoted with `\"` escapes.
fn identifier(text: &str) -> Result<(String, &str), String> {
    if let Some(rest) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                '"' if out.is_empty() => return Err("empty database name".into()),
                '"' => return Ok((out, &rest[i + 1..])),
                c => out.push(c),
            }
        }
        return Err("unterminated quoted identifier".into());
    }
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    if end == 0 || text.as_bytes()[0].is_ascii_digit() {
        return Err(format!("expected a database name, got {text:?}"));
    }
    Ok((text[..end].to_owned(), &text[end..]))
}

/// `/ping`: 204 with the version headers; `?verbose=true` gives 200 and a JSON body.
pub fn ping(req: &Request<Incoming>) -> HttpResponse {
    let verbose = req.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "verbose" && !matches!(v.as_ref(), "" | "0" | "false"))
    });
    if verbose {
        return json(StatusCode::OK, &json!({ "version": INFLUXDB_VERSION }));
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// One metric family in the Prometheus text format.
fn family(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    use std::fmt::Write as _;
    let _ = writeln!(
        text,
        "# HELP heliograph_{name} {help}\n# TYPE heliograph_{name} {kind}"
    );
    for (labels, v) in samples {
        let _ = writeln!(text, "heliograph_{name}{labels} {v}");
    }
}

/// `/metrics`: the agent's counters in the Prometheus text format, names prefixed `heliograph_`.
pub fn metrics(state: &State) -> HttpResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let mut text = String::new();
    let one = |v: u64| vec![(String::new(), v)];
    let statuses: Vec<(String, u64)> = super::STATUSES
        .iter()
        .map(|s| (format!("{{status=\"{s}\"}}"), state.stats.responses(*s)))
        .collect();
    family(
        &mut text,
        "listener_requests_total",
        "counter",
        "Listener responses by HTTP status (0: any other).",
        &statuses,
    );
    family(
        &mut text,
        "listener_points_written_total",
        "counter",
        "Points admitted through the listener.",
        &one(state.stats.points_written.load(Relaxed)),
    );
    family(
        &mut text,
        "listener_bytes_received_total",
        "counter",
        "Request body bytes received, decompressed.",
        &one(state.stats.bytes_received.load(Relaxed)),
    );
    family(
        &mut text,
        "writes_refused_total",
        "counter",
        "Writes refused because an output could not take them.",
        &one(state.pipeline.refused.load(Relaxed)),
    );
    let outputs = state.pipeline.outputs();
    let per_output = |f: &dyn Fn(&crate::pipeline::OutputSlot) -> u64| -> Vec<(String, u64)> {
        outputs
            .iter()
            .map(|o| (format!("{{output=\"{}\"}}", escape_label(&o.id)), f(o)))
            .collect()
    };
    family(
        &mut text,
        "output_queued_points",
        "gauge",
        "Points buffered and not yet written.",
        &per_output(&|o| o.buffer.len() as u64),
    );
    family(
        &mut text,
        "output_queued_bytes",
        "gauge",
        "Bytes a disk buffer holds.",
        &per_output(&|o| o.buffer.bytes()),
    );
    family(
        &mut text,
        "output_oldest_undelivered_seconds",
        "gauge",
        "Age of the oldest buffered write.",
        &per_output(&|o| o.buffer.oldest_age().map_or(0, |d| d.as_secs())),
    );
    family(
        &mut text,
        "output_written_points_total",
        "counter",
        "Points written by the output.",
        &per_output(&|o| o.stats.written.load(Relaxed)),
    );
    family(
        &mut text,
        "output_errors_total",
        "counter",
        "Failed write attempts (retried).",
        &per_output(&|o| o.stats.errors.load(Relaxed)),
    );
    family(
        &mut text,
        "output_dead_lettered_points_total",
        "counter",
        "Points the upstream refused for good.",
        &per_output(&|o| o.stats.dead_lettered.load(Relaxed)),
    );
    if let Some(store) = state.pipeline.store() {
        family(
            &mut text,
            "buckets_pending_bytes",
            "gauge",
            "Bucket log bytes not yet compacted.",
            &one(store.pending_bytes()),
        );
        family(
            &mut text,
            "buckets_compacted_points_total",
            "counter",
            "Points compacted into partitions.",
            &one(store.stats.compacted_points.load(Relaxed)),
        );
        family(
            &mut text,
            "buckets_corrupt_records_total",
            "counter",
            "Corrupt log records skipped at recovery.",
            &one(store.stats.corrupt_records.load(Relaxed)),
        );
        family(
            &mut text,
            "buckets_expired_partitions_total",
            "counter",
            "Partitions dropped by retention.",
            &one(store.stats.expired_partitions.load(Relaxed)),
        );
        family(
            &mut text,
            "buckets_merge_copied_bytes_total",
            "counter",
            "Compressed bytes merges copied as they were (no other chunk overlapped them in time).",
            &one(store.stats.copied_bytes.load(Relaxed)),
        );
        family(
            &mut text,
            "buckets_merge_decoded_bytes_total",
            "counter",
            "Compressed bytes merges decoded and merged (their time ranges overlapped).",
            &one(store.stats.merged_bytes.load(Relaxed)),
        );
    }
    // The gather inputs' counters, as the internal input reports them.
    let inputs = state.pipeline.all_input_stats();
    let per_input = |f: &dyn Fn(&crate::pipeline::InputStats) -> u64| -> Vec<(String, u64)> {
        inputs
            .iter()
            .map(|(id, s)| (format!("{{input=\"{}\"}}", escape_label(id)), f(s)))
            .collect()
    };
    family(
        &mut text,
        "input_gathered_metrics_total",
        "counter",
        "Metrics gathered by each input.",
        &per_input(&|s| s.gathered.load(Relaxed)),
    );
    family(
        &mut text,
        "input_gather_errors_total",
        "counter",
        "Gathers that failed.",
        &per_input(&|s| s.errors.load(Relaxed)),
    );
    family(
        &mut text,
        "input_skipped_ticks_total",
        "counter",
        "Ticks skipped because the previous gather was still running.",
        &per_input(&|s| s.skipped.load(Relaxed)),
    );
    family(
        &mut text,
        "input_dropped_metrics_total",
        "counter",
        "Gathered metrics the outputs' buffers could not take.",
        &per_input(&|s| s.dropped.load(Relaxed)),
    );
    family(
        &mut text,
        "output_buffer_limit_points",
        "gauge",
        "The most points each output's buffer holds.",
        &per_output(&|o| o.buffer_limit as u64),
    );
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        })
    {
        family(
            &mut text,
            "resident_memory_bytes",
            "gauge",
            "Resident memory of the agent.",
            &one(rss * 1024),
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// A Prometheus label value with `\` and `"` escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `/health`: 200 while accepting writes, 503 once shutting down (InfluxDB 2's shape).
pub fn health(state: &State) -> HttpResponse {
    if state.shutdown.is_cancelled() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "name": "heliograph", "status": "fail", "message": "shutting down", "checks": [],
                     "version": env!("CARGO_PKG_VERSION") }),
        );
    }
    json(
        StatusCode::OK,
        &json!({ "name": "heliograph", "status": "pass", "message": "ready for queries and writes",
                 "checks": [], "version": env!("CARGO_PKG_VERSION") }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(
            parse_statement(" show  databases "),
            Statement::ShowDatabases
        );
        assert_eq!(
            parse_statement("CREATE DATABASE telegraf"),
            Statement::CreateDatabase("telegraf".into())
        );
        assert_eq!(
            parse_statement("create database \"my db\""),
            Statement::CreateDatabase("my db".into())
        );
        assert!(matches!(
            parse_statement("CREATE DATABASE x WITH DURATION 1d"),
            Statement::Invalid(_)
        ));
        assert!(matches!(
            parse_statement("CREATE DATABASE"),
            Statement::Invalid(_)
        ));
        assert!(matches!(
            parse_statement("SELECT * FROM cpu"),
            Statement::Other(_)
        ));
    }
}
