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
    let mut results = Vec::new();
    let mut csv_out = String::new();
    for (i, statement) in q.split(';').filter(|s| !s.trim().is_empty()).enumerate() {
        let result = match parse_statement(statement) {
            Statement::ShowDatabases => {
                let dbs = state.pipeline.databases();
                let dbs: Vec<String> = match token {
                    Some(t) => dbs.into_iter().filter(|d| t.allows(d)).collect(),
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
            Statement::CreateDatabase(db) => match token {
                Some(t) if !t.allows(&db) => json!({
                    "statement_id": i,
                    "error": format!("token {:?} may not create database {db:?}", t.name),
                }),
                _ => {
                    state.pipeline.note_database(&db);
                    json!({ "statement_id": i })
                }
            },
            Statement::Other(s) => json!({
                "statement_id": i,
                "error": format!(
                    "heliograph does not answer {s:?}: it supports SHOW DATABASES and CREATE DATABASE"
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn parse_statement(text: &str) -> Statement {
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words
        .iter()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    match upper
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["SHOW", "DATABASES"] if words.len() == 2 => Statement::ShowDatabases,
        ["CREATE", "DATABASE"] => {
            // The name is everything after the two keywords, up to a WITH clause.
            let rest = text.trim_start();
            let rest = rest[rest.find(char::is_whitespace).unwrap_or(0)..].trim_start();
            let rest = rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..].trim();
            match identifier(rest) {
                Ok((name, tail)) if tail.trim().is_empty() => Statement::CreateDatabase(name),
                Ok((_, tail)) => Statement::Invalid(format!(
                    "CREATE DATABASE: unsupported clause {:?}; heliograph sets retention itself",
                    tail.trim()
                )),
                Err(e) => Statement::Invalid(format!("CREATE DATABASE: {e}")),
            }
        }
        _ => Statement::Other(text.trim().to_owned()),
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
