use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::metric::{FieldValue, Metric, Origin};

fn one(src: &str) -> Result<Line<'_>, ParseError> {
    let mut p = Parser::new(src);
    let line = p.next().expect("one point");
    assert!(p.next().is_none(), "more than one point in {src:?}");
    line
}

fn kind(src: &str) -> ParseErrorKind {
    one(src).expect_err("should fail").kind
}

#[test]
fn parses_a_full_point() {
    let l =
        one("cpu,host=a,region=eu usage=0.5,n=3i,u=7u,s=\"x\",b=T 1700000000000000000").unwrap();
    assert_eq!(l.measurement, "cpu");
    assert_eq!(
        l.tags,
        vec![("host".into(), "a".into()), ("region".into(), "eu".into())]
    );
    assert_eq!(
        l.fields,
        vec![
            ("usage".into(), Value::Float(0.5)),
            ("n".into(), Value::Int(3)),
            ("u".into(), Value::UInt(7)),
            ("s".into(), Value::Str("x".into())),
            ("b".into(), Value::Bool(true)),
        ]
    );
    assert_eq!(l.timestamp, Some(1_700_000_000_000_000_000));
}

#[test]
fn borrows_when_nothing_is_escaped() {
    let l = one("cpu,host=a v=\"plain\"").unwrap();
    assert!(matches!(l.measurement, std::borrow::Cow::Borrowed(_)));
    assert!(matches!(
        l.fields[0].1,
        Value::Str(std::borrow::Cow::Borrowed(_))
    ));
}

#[test]
fn escapes_per_element() {
    let l = one(r#"my\ cpu\,x\=y,t\ k\=\,=v\ a\=\,\\x f\ k\==1"#).unwrap();
    assert_eq!(l.measurement, r"my cpu,x\=y"); // `\=` is not an escape in a measurement
    assert_eq!(l.tags[0], ("t k=,".into(), r"v a=,\x".into()));
    assert_eq!(l.fields[0].0, "f k=");
    let l = one(r#"m s="a\"b\\c\nd""#).unwrap();
    assert_eq!(l.fields[0].1, Value::Str(r#"a"b\c\nd"#.into()));
    let l = one(r"m\x,t=a\b f=1").unwrap();
    assert_eq!(l.measurement, r"m\x");
    assert_eq!(l.tags[0].1, r"a\b");
}

#[test]
fn booleans_in_every_spelling() {
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(
            one(&format!("m f={t}")).unwrap().fields[0].1,
            Value::Bool(true)
        );
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(
            one(&format!("m f={f}")).unwrap().fields[0].1,
            Value::Bool(false)
        );
    }
    for bad in ["tRUE", "TrUe", "tru", "truex", "yes"] {
        assert!(
            matches!(kind(&format!("m f={bad}")), ParseErrorKind::InvalidValue(_)),
            "{bad}"
        );
    }
}

#[test]
fn numbers() {
    let float = |s: &str| {
        let body = format!("m f={s}");
        one(&body).map(|l| match &l.fields[0].1 {
            Value::Str(_) => unreachable!("numbers only"),
            v => v.clone().to_owned_value(),
        })
    };
    assert_eq!(float("1").unwrap(), Value::Float(1.0));
    assert_eq!(float("-1.5").unwrap(), Value::Float(-1.5));
    assert_eq!(float("1e5").unwrap(), Value::Float(1e5));
    assert_eq!(float("1E+5").unwrap(), Value::Float(1e5));
    assert_eq!(float("1.5e-5").unwrap(), Value::Float(1.5e-5));
    assert_eq!(float("0001.5").unwrap(), Value::Float(1.5));
    assert_eq!(
        float("-9223372036854775808i").unwrap(),
        Value::Int(i64::MIN)
    );
    assert_eq!(
        float("18446744073709551615u").unwrap(),
        Value::UInt(u64::MAX)
    );
    for bad in [
        "+1.5",
        "1.",
        ".5",
        "-.5",
        "1e",
        "1e+",
        "1ee5",
        "1.2.3",
        "--1",
        "-",
        "0x10",
        "1_000",
        "NaN",
        "Inf",
        "-Inf",
        "1e309",
        "+1i",
        "1I",
        "1.5i",
        "9e10i",
        "1ii",
        "i",
        "-1u",
        "9223372036854775808i",
        "18446744073709551616u",
    ] {
        assert!(float(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn strings() {
    let l = one("m s=\"\",t=\"a b,c=d\"").unwrap();
    assert_eq!(l.fields[0].1, Value::Str("".into()));
    assert_eq!(l.fields[1].1, Value::Str("a b,c=d".into()));
    assert_eq!(kind("m s=\"abc"), ParseErrorKind::UnterminatedString);
    assert_eq!(kind("m s='a'"), ParseErrorKind::InvalidValue("'a'".into()));
    let long = "x".repeat(MAX_STRING_LEN + 1);
    assert!(matches!(
        kind(&format!("m s=\"{long}\"")),
        ParseErrorKind::TooLong(..)
    ));
}

#[test]
fn lines_comments_blanks_and_crlf() {
    let body = "# a comment\n\n   \ncpu v=1 1\r\n  mem v=2 2\r\n\r\n# end";
    let lines: Vec<_> = Parser::new(body).map(|r| r.unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].measurement, "mem");
    assert_eq!(lines[1].timestamp, Some(2));
    assert!(Parser::new("").next().is_none());
    assert!(Parser::new("\n\n# only\n").next().is_none());
    // A CR that is not part of CRLF is an error.
    assert!(one("m f=\"s\"\r").is_err());
    assert!(one("m f=1\r").is_err());
}

#[test]
fn newline_inside_string_does_not_end_the_point() {
    let mut p = Parser::new("m s=\"a\nb\"\nbad\nm f=1");
    assert_eq!(
        p.next().unwrap().unwrap().fields[0].1,
        Value::Str("a\nb".into())
    );
    let err = p.next().unwrap().unwrap_err();
    assert_eq!(err.line, 3);
    assert!(p.next().unwrap().is_ok());
}

/// A good point holding an LF (in a string, or escaped in a name) spans two physical lines:
/// errors after it are numbered past both; points without either are not scanned for one.
#[test]
fn lines_inside_good_points_count_for_later_errors() {
    for (body, bad_line) in [
        ("m s=\"a\nb\" 1\nbad\n", 3),
        ("m\\\nx v=1 1\nbad\n", 3),
        ("m,t=a\\\nb v=1 1\nbad\n", 3),
        ("m s=\"a\nb\nc\" 1\nok v=1\nbad\n", 5),
        ("m v=1 1\nok v=2\nbad\n", 3),
    ] {
        let errors: Vec<ParseError> = Parser::new(body).filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1, "{body:?}: {errors:?}");
        assert_eq!(errors[0].line, bad_line, "{body:?}");
    }
}

#[test]
fn reports_every_bad_line_and_resyncs() {
    let body = "ok f=1\nbad line\nok f=2\nm f=\"open\nstill string\" x\nok f=3\n";
    let results: Vec<_> = Parser::new(body).collect();
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok() && results[2].is_ok() && results[4].is_ok());
    let e1 = results[1].as_ref().unwrap_err();
    assert_eq!((e1.line, e1.kind.clone()), (2, ParseErrorKind::BadField));
    let e2 = results[3].as_ref().unwrap_err();
    assert_eq!(e2.line, 4);
    // Columns count from the point's first line, across the LF inside the string.
    assert_eq!(e2.column, 1 + "m f=\"open\nstill string\" ".len());
}

#[test]
fn error_columns_are_one_based() {
    let e = one("cpu v=1.2.3").unwrap_err();
    assert_eq!((e.line, e.column), (1, 7));
    assert_eq!(e.to_string(), "line 1, column 7: invalid number \"1.2.3\": use 1.5 (float), 1i (integer) or 1u (unsigned)");
}

#[test]
fn structural_errors() {
    assert_eq!(kind("cpu"), ParseErrorKind::MissingFields);
    assert_eq!(kind("cpu "), ParseErrorKind::MissingFields);
    assert_eq!(kind("cpu,host=a"), ParseErrorKind::MissingFields);
    assert_eq!(kind(",t=a f=1"), ParseErrorKind::EmptyMeasurement);
    assert_eq!(kind("m,t f=1"), ParseErrorKind::BadTag);
    assert_eq!(kind("m,t= f=1"), ParseErrorKind::BadTag);
    assert_eq!(kind("m,=v f=1"), ParseErrorKind::BadTag);
    assert_eq!(kind("m,,t=v f=1"), ParseErrorKind::BadTag);
    assert_eq!(kind("m,t=v=v f=1"), ParseErrorKind::BadTag);
    assert_eq!(kind("m f"), ParseErrorKind::BadField);
    assert_eq!(kind("m f=1,"), ParseErrorKind::BadField);
    assert_eq!(kind("m ,f=1"), ParseErrorKind::BadField);
    assert_eq!(kind("m a=1,,b=2"), ParseErrorKind::BadField);
    assert_eq!(kind("m f="), ParseErrorKind::MissingFieldValue);
    assert!(matches!(
        kind("m f=1 1.5"),
        ParseErrorKind::InvalidTimestamp(_)
    ));
    assert!(matches!(
        kind("m f=1 1 2"),
        ParseErrorKind::InvalidTimestamp(_)
    ));
    assert!(matches!(
        kind("m f=1 +1"),
        ParseErrorKind::InvalidTimestamp(_)
    ));
    assert!(matches!(
        kind("m f=1 99999999999999999999"),
        ParseErrorKind::InvalidTimestamp(_)
    ));
    assert!(matches!(
        kind("m f=1 # comment"),
        ParseErrorKind::InvalidTimestamp(_)
    ));
    assert!(matches!(
        kind("m\tx f=1"),
        ParseErrorKind::InvalidCharacter("measurement", '\t')
    ));
    assert!(matches!(
        kind("m,t=a\0 f=1"),
        ParseErrorKind::InvalidCharacter(..)
    ));
    assert!(matches!(
        kind(r"m,t=a\\ f=1"),
        ParseErrorKind::TrailingBackslash("tag value")
    ));
}

#[test]
fn line_rules() {
    assert_eq!(
        kind("m,a=1,a=2 f=1"),
        ParseErrorKind::DuplicateTag("a".into())
    );
    assert_eq!(kind("m,time=1 f=1"), ParseErrorKind::TimeTag);
    assert_eq!(kind("m time=1"), ParseErrorKind::TimeField);
    assert_eq!(
        one("m time=1,f=2").unwrap().fields,
        vec![("f".into(), Value::Float(2.0))]
    );
    assert_eq!(
        one("m f=1,f=2").unwrap().fields,
        vec![("f".into(), Value::Float(2.0))]
    );
    assert_eq!(
        kind("m f=1,f=2i"),
        ParseErrorKind::FieldTypeConflict("f".into())
    );
    assert_eq!(kind("m,x=a x=1"), ParseErrorKind::TagFieldClash("x".into()));
    let l = one("m,b=2,a=1,c=3 f=1").unwrap();
    let keys: Vec<_> = l.tags.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    let many: String = (0..40).map(|i| format!("f{i}=1,")).collect::<String>() + "f7=2";
    assert_eq!(one(&format!("m {many}")).unwrap().fields.len(), 40);
}

#[test]
fn trailing_spaces_are_accepted() {
    assert!(one("m f=1   ").is_ok());
    assert!(one("m f=1 5   ").is_ok());
    assert!(one("m  f=1  5").is_ok());
}

#[test]
fn max_line_is_enforced() {
    let mut p = Parser::new("m f=1\nmeasurement f=12345\nm f=2").with_max_line(10);
    assert!(p.next().unwrap().is_ok());
    assert_eq!(
        p.next().unwrap().unwrap_err().kind,
        ParseErrorKind::LineTooLong(10)
    );
    assert!(p.next().unwrap().is_ok());
}

#[test]
fn precision_names_and_scaling() {
    for (name, nanos) in [
        ("ns", 1),
        ("n", 1),
        ("us", 1_000),
        ("u", 1_000),
        ("µ", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ] {
        assert_eq!(
            Precision::from_param(name).unwrap().nanos(),
            nanos,
            "{name}"
        );
    }
    for bad in ["", "NS", "S", "rfc3339", "x"] {
        assert_eq!(Precision::from_param(bad), None);
    }
    let origin = Arc::new(Origin::new("db", None));
    let l = one("m f=1 9223372036").unwrap();
    assert_eq!(
        l.to_metric(Precision::Seconds, 0, &origin).unwrap().time,
        9_223_372_036_000_000_000
    );
    let l = one("m f=1 9223372037").unwrap();
    assert_eq!(
        l.to_metric(Precision::Seconds, 0, &origin),
        Err(ParseErrorKind::TimestampOutOfRange)
    );
    assert_eq!(Precision::Seconds.truncate(1_500_000_000), 1_000_000_000);
    assert_eq!(Precision::Seconds.truncate(-1), -1_000_000_000);
}

#[test]
fn encode_skips_non_finite_floats() {
    let mut m = Metric::new("m", 1);
    m.add_field("a", FieldValue::Float(f64::NAN));
    let mut out = String::new();
    assert!(!encode(&m, &mut out));
    assert!(out.is_empty());
    m.add_field("b", FieldValue::Int(1));
    assert!(encode(&m, &mut out));
    assert_eq!(out, "m b=1i 1\n");
}

// Names the parser accepts: non-empty, no tab/CR/LF/NUL, not ending in a backslash; a measurement
// does not start with `#`; keys are not `time`.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,=\\\\\"#_.µ-]{0,12}[a-zA-Z0-9 ,=\"#µ]"
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Int),
        any::<u64>().prop_map(FieldValue::UInt),
        any::<bool>().prop_map(FieldValue::Bool),
        "(?s).{0,20}".prop_map(FieldValue::Str),
    ]
}

prop_compose! {
    fn metric()(
        name in name().prop_filter("no comment", |n| !n.starts_with('#')),
        tags in proptest::collection::btree_map(name(), name(), 0..4),
        fields in proptest::collection::btree_map(name(), field_value(), 1..5),
        time in any::<i64>(),
    ) -> Metric {
        let mut m = Metric::new(name, time);
        for (k, v) in tags.into_iter().filter(|(k, _)| k != "time") {
            m.add_tag(k, v);
        }
        for (k, v) in fields {
            if k != "time" && m.tag(&k).is_none() {
                m.add_field(k, v);
            }
        }
        m
    }
}

proptest! {
    #[test]
    fn encode_then_parse_gives_the_same_metric(m in metric()) {
        prop_assume!(!m.fields.is_empty());
        let mut text = String::new();
        prop_assert!(encode(&m, &mut text));
        let origin = Arc::clone(&m.origin);
        let parsed: Vec<_> = Parser::new(&text).collect();
        prop_assert_eq!(parsed.len(), 1, "{:?}", text);
        let line = parsed[0].clone().map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        let back = line.to_metric(Precision::Nanoseconds, 0, &origin).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn parser_never_panics(body in "(?s).{0,200}") {
        for result in Parser::new(&body) {
            if let Err(e) = result {
                prop_assert!(e.line >= 1 && e.column >= 1);
            }
        }
    }
}

#[test]
fn float_text_is_kept_in_field_order_or_dropped_when_fields_merge() {
    let line = |text: &'static str| Parser::new(text).next().unwrap().unwrap();
    assert_eq!(line("m a=1.50,b=2i,c=3e0 1").float_text, ["1.50", "3e0"]);
    // A repeated field: the values no longer line up with the text, so none is kept.
    assert!(line("m a=1.50,a=2.0 1").float_text.is_empty());
    // A `time` field dropped: the same.
    assert!(line("m time=1.0,v=2.5 1").float_text.is_empty());
    // Encoding a line copies the kept text.
    let mut out = String::new();
    assert!(crate::line_protocol::encode_line(
        &line("m a=1.50,c=3e0 7"),
        7,
        &mut out
    ));
    assert_eq!(out, "m a=1.50,c=3e0 7\n");
}

/// `encode_line`'s output for `line` at `time`, copying what the parser offered, and with
/// nothing copied.
fn copied_and_encoded(line: &Line<'_>, time: i64) -> (String, String) {
    let mut parts = line.clone();
    parts.verbatim = Verbatim::No;
    let (mut copied, mut encoded) = (String::new(), String::new());
    assert!(encode_line(line, time, &mut copied));
    assert!(encode_line(&parts, time, &mut encoded));
    (copied, encoded)
}

/// `encode_line`'s output for a line at `time`, and how much of the text the parser offered to
/// copy; the output is the same as with nothing copied.
fn encoded_at(text: &str, time: i64) -> (String, Verbatim<'_>) {
    let line = one(text).unwrap();
    let (out, encoded) = copied_and_encoded(&line, time);
    assert_eq!(out, encoded, "{text:?}");
    (out, line.verbatim)
}

fn encoded_and_verbatim(text: &str) -> (String, Verbatim<'_>) {
    encoded_at(text, 7)
}

#[test]
fn text_already_in_encoded_form_is_copied() {
    for text in [
        "cpu,host=a,region=eu usage=0.5,n=-3i,u=0u,s=\"x y,z=\",b=true 1700000000",
        "cpu usage=1e3,n=0i,ok=false",
        "m=x,k=v a=1",
        "µ,ключ=значение f=\"é\" 1",
        // Spaces around the timestamp are not part of the copy.
        "cpu,host=a usage=0.5   1  ",
    ] {
        let (_, verbatim) = encoded_and_verbatim(text);
        assert!(
            matches!(verbatim, Verbatim::Whole { .. }),
            "{text:?}: {verbatim:?}"
        );
    }
    // Tags out of order or more than one space: the fields are still copied.
    for text in ["cpu,z=1,a=2 v=1,s=\"x\"", "cpu,a=1  v=1", "cpu  v=1"] {
        let (out, verbatim) = encoded_and_verbatim(text);
        let fields = &text[text.rfind(' ').unwrap() + 1..];
        assert_eq!(
            verbatim,
            Verbatim::Fields {
                text: fields,
                stamp: 0
            }
        );
        assert!(
            out.ends_with(" v=1 7\n") || out.ends_with(" v=1,s=\"x\" 7\n"),
            "{out:?}"
        );
    }
    for text in [
        // Escapes, long forms, merged or dropped fields.
        "cpu\\ x v=1",
        "cpu,h=a\\,b v=1",
        "cpu s=\"a \\\"q\\\"\"",
        "cpu,z=1,a\\ b=2 v=1",
        "cpu v=1,v=2",
        "cpu time=1i,v=2",
        "cpu n=007i",
        "cpu n=-0i",
        "cpu n=01u",
        "cpu b=t",
        "cpu b=FALSE",
        "cpu a\\b=1",
    ] {
        let (_, verbatim) = encoded_and_verbatim(text);
        assert_eq!(verbatim, Verbatim::No, "{text:?}");
    }
}

#[test]
fn a_timestamp_in_its_shortest_form_is_copied_when_it_is_the_time_written() {
    let stamp = |v: Verbatim<'_>| match v {
        Verbatim::Whole { stamp, .. } | Verbatim::Fields { stamp, .. } => stamp,
        Verbatim::No => panic!("nothing copied"),
    };
    // One space, shortest form: the copy takes it, and the output is the same whether the time
    // is the one written (ns) or another (scaled from s, or the default time).
    for (text, len) in [
        ("cpu v=1 1700000000000000000", 20),
        ("cpu,b=1,a=2 v=1 -5", 3),
        ("cpu v=1 0", 2),
        ("cpu v=1 0017", 0),
        ("cpu v=1 -0", 0),
        ("cpu v=1  17", 0),
        ("cpu v=1", 0),
    ] {
        let line = one(text).unwrap();
        for time in [line.timestamp.unwrap_or(7), 42] {
            let (out, verbatim) = encoded_at(text, time);
            assert_eq!(stamp(verbatim), len, "{text:?}");
            assert!(out.ends_with(&format!(" {time}\n")), "{out:?}");
        }
    }
}

proptest! {
    #[test]
    fn copying_text_as_written_encodes_what_encoding_the_parts_writes(
        text in "[a-c\\\\ ]{1,3}(,[ab]{1,2}=[a0\\\\]{1,2}){0,3} {1,2}[ab]{1,2}=(-?0?[0-9]{1,2}[iu]?|t|true|F|false|\"[a\\\\\"]{0,3}\"|1\\.50)(,[ab]{1,2}=(-?0?[0-9]{1,2}[iu]?|t|true|\"[a\\\\\"]{0,3}\"|2e1)){0,3}( {1,2}-?0?[0-9]{1,5})? ?"
    ) {
        for line in Parser::new(&text).flatten() {
            // At the time written (ns) and at another.
            for time in [line.timestamp.unwrap_or(7), 7] {
                let (out, encoded) = copied_and_encoded(&line, time);
                prop_assert_eq!(out, encoded, "{:?}", text);
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn encoded_points_are_the_encoded_lines(
        metrics in proptest::collection::vec(
            (
                "[a-z\"\\\\ ,=]{1,6}",
                "[a-z\"\\\\ ,=]{1,6}",
                "[a-z\"\\\\ ,=\n]{0,12}",
                proptest::bool::ANY,
            ),
            1..8,
        )
    ) {
        let mut text = String::new();
        let mut lines = Vec::new();
        for (i, (name, tag, string, number)) in metrics.iter().enumerate() {
            let mut m = Metric::new(name.as_str(), i as i64);
            m.add_tag("t", tag.as_str());
            if *number {
                m.add_field("n", FieldValue::Float(1.5));
            }
            m.add_field("s", FieldValue::Str(string.clone()));
            let mut line = String::new();
            if !crate::line_protocol::encode(&m, &mut line) {
                continue; // a measurement of backslashes only: not written
            }
            lines.push(line.trim_end_matches('\n').to_owned());
            text.push_str(&line);
        }
        let found: Vec<&str> = encoded_points(text.as_bytes())
            .map(|(start, end)| &text[start..end])
            .collect();
        proptest::prop_assert_eq!(found, lines);
    }
}

proptest! {
    /// A `Line` reused from point to point (its tags and fields written over the previous
    /// point's) holds what a fresh one does, whatever the shapes in turn, bad points included.
    #[test]
    fn a_reused_line_parses_as_a_fresh_one(
        text in "(m(,[abc]=[xy]{1,2}){0,4}( [uv]=[0-9]{1,2}i?(,[uvw]=(1|\"[ab]\")){0,3}| ,=|,a x=1| x=1,)( [0-9]{1,3})?\n){1,8}"
    ) {
        let mut reused = Line::default();
        let mut parser = Parser::new(&text);
        let mut fresh = Parser::new(&text);
        while let Some(result) = parser.next_into(&mut reused) {
            let expected = fresh.next().expect("as many points");
            match (result, expected) {
                (Ok(()), Ok(line)) => prop_assert_eq!(&reused, &line, "{:?}", text),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{:?} against {:?} in {:?}", a, b.map(|_| ()), text),
            }
        }
        prop_assert!(fresh.next().is_none());
    }
}
