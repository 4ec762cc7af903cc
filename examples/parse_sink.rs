//! A parse-only sink: an HTTP server that parses each body with `influxdb-line-protocol`
//! (InfluxDB 3's parser) and answers 204. The baseline for the ingest benchmark: heliograph's
//! whole durable path against this parser alone.
//!
//! `cargo run --release --example parse_sink -- 127.0.0.1:9100`

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        eprintln!(
            "parse_sink listening address={}",
            listener.local_addr().expect("addr")
        );
        let lines = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let lines = Arc::clone(&lines);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let lines = Arc::clone(&lines);
                    async move {
                        let gzip = req
                            .headers()
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body = if gzip {
                            let mut out = Vec::new();
                            let _ = std::io::Read::read_to_end(
                                &mut flate2::read::GzDecoder::new(&body[..]),
                                &mut out,
                            );
                            Bytes::from(out)
                        } else {
                            body
                        };
                        let text = std::str::from_utf8(&body).unwrap_or("");
                        let mut ok = true;
                        let mut n = 0;
                        for line in influxdb_line_protocol::parse_lines(text) {
                            ok &= line.is_ok();
                            n += 1;
                        }
                        lines.fetch_add(n, Ordering::Relaxed);
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = if ok {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::BAD_REQUEST
                        };
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
