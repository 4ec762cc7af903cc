//! Fuzzes the line protocol parser: it never panics, every error has a position, and every
//! point it accepts encodes to text that parses back to the same metric; the text copied as
//! written (`Line::verbatim`) is what encoding the point's parts writes.
#![no_main]

use std::sync::Arc;

use heliograph::line_protocol::{encode, encode_line, Parser, Precision, Verbatim};
use heliograph::metric::Origin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Arc::new(Origin::new("fuzz", None));
    for result in Parser::new(text) {
        match result {
            Err(e) => assert!(e.line >= 1 && e.column >= 1),
            Ok(line) => {
                let mut parts = line.clone();
                parts.verbatim = Verbatim::No;
                for time in [7, line.timestamp.unwrap_or(7)] {
                    let mut copied = String::new();
                    let mut encoded = String::new();
                    assert_eq!(
                        encode_line(&line, time, &mut copied),
                        encode_line(&parts, time, &mut encoded)
                    );
                    assert_eq!(copied, encoded);
                }
                let Ok(metric) = line.to_metric(Precision::Nanoseconds, 0, &origin) else {
                    continue;
                };
                let mut out = String::new();
                if !encode(&metric, &mut out) {
                    continue;
                }
                let again: Vec<_> = Parser::new(&out).collect();
                assert_eq!(again.len(), 1, "{out:?}");
                let back = again[0]
                    .as_ref()
                    .expect("encoded metric parses")
                    .to_metric(Precision::Nanoseconds, 0, &origin)
                    .expect("timestamp fits");
                assert_eq!(back, metric);
            }
        }
    }
});
