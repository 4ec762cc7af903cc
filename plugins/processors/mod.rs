//! Every processor, in the order the docs list them. The chain machinery (order, selectors,
//! bypass) lives in `crate::pipeline`; each processor here only transforms what it is given.
//!
//! Option names are Telegraf's. An option Telegraf has and heliograph does not is refused when
//! the config loads, with a message naming it ([`unsupported`]), never ignored.

pub mod converter;
pub mod date;
pub mod dedup;
pub mod defaults;
pub mod enums;
pub mod overrides;
pub mod printer;
pub mod regex;
pub mod rename;
pub mod strings;
pub mod tag_limit;

use serde::de::IgnoredAny;

use super::{BuildError, ProcessorEntry};
use crate::filter::GlobList;

/// The processor registry: one line per plugin.
pub const ALL: &[ProcessorEntry] = &[
    ProcessorEntry::of::<converter::Converter>(),
    ProcessorEntry::of::<date::Date>(),
    ProcessorEntry::of::<dedup::Dedup>(),
    ProcessorEntry::of::<defaults::Defaults>(),
    ProcessorEntry::of::<enums::Enum>(),
    ProcessorEntry::of::<overrides::Override>(),
    ProcessorEntry::of::<printer::Printer>(),
    ProcessorEntry::of::<regex::Regex>(),
    ProcessorEntry::of::<rename::Rename>(),
    ProcessorEntry::of::<strings::Strings>(),
    ProcessorEntry::of::<tag_limit::TagLimit>(),
];

/// Refuses a Telegraf option that was set but that heliograph does not implement.
///
/// # Errors
/// A [`BuildError`] naming the option and why, when `value` is set.
pub fn unsupported(option: &str, value: &Option<IgnoredAny>, why: &str) -> Result<(), BuildError> {
    match value {
        Some(_) => Err(BuildError::new(format!(
            "option `{option}` is not supported by heliograph: {why}"
        ))),
        None => Ok(()),
    }
}

/// Compiles a list of key globs, naming the option on error.
///
/// # Errors
/// A [`BuildError`] naming `option` and the bad glob.
pub fn globs(option: &str, patterns: &[String]) -> Result<GlobList, BuildError> {
    GlobList::new(patterns, "").map_err(|e| BuildError::new(format!("`{option}`: {e}")))
}

/// Compiles an optional single glob (Telegraf's `tag = "..."` style options).
///
/// # Errors
/// A [`BuildError`] naming `option` and the bad glob.
pub fn glob(option: &str, pattern: &Option<String>) -> Result<Option<GlobList>, BuildError> {
    pattern
        .as_ref()
        .map(|p| globs(option, std::slice::from_ref(p)))
        .transpose()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builds processors from TOML the way the config loader does, and runs line protocol
    //! through them, so cases read like Telegraf's documented examples.

    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::line_protocol::{encode, Line, Parser, Precision};
    use crate::metric::{Metric, Origin};
    use crate::pipeline::{chain, run_chain, ChainLink};

    /// The chain a config of `[[processors.*]]` tables builds.
    pub fn build(toml_text: &str) -> Vec<ChainLink> {
        let config = crate::config::from_texts(
            &[(PathBuf::from("test.toml"), toml_text.to_owned())],
            |_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        chain(config.processors)
    }

    /// The load error of a config, as text.
    pub fn error(toml_text: &str) -> String {
        match crate::config::from_texts(
            &[(PathBuf::from("test.toml"), toml_text.to_owned())],
            |_| None,
        ) {
            Ok(_) => panic!("config loaded:\n{toml_text}"),
            Err(e) => e.to_string(),
        }
    }

    /// Metrics from line protocol (ns; a line without a time gets 0).
    pub fn metrics(lp: &str) -> Vec<Metric> {
        let origin = Arc::new(Origin::new("db", None));
        let mut parser = Parser::new(lp);
        let mut line = Line::default();
        let mut out = Vec::new();
        while let Some(r) = parser.next_into(&mut line) {
            r.unwrap();
            out.push(line.to_metric(Precision::Nanoseconds, 0, &origin).unwrap());
        }
        out
    }

    /// Line protocol of metrics, one per line, fields in their order.
    pub fn lines(metrics: &[Metric]) -> Vec<String> {
        metrics
            .iter()
            .map(|m| {
                let mut s = String::new();
                encode(m, &mut s);
                s.trim_end().to_owned()
            })
            .collect()
    }

    /// Runs `input` through the chain built from `toml_text`; the output as lines.
    pub fn run(toml_text: &str, input: &str) -> Vec<String> {
        let mut chain = build(toml_text);
        lines(&run_chain(&mut chain, metrics(input)))
    }

    /// Asserts each `(input, expected)` case, lines separated by `\n`.
    pub fn cases(toml_text: &str, cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            let got = run(toml_text, input);
            let want: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(got, want, "config:\n{toml_text}\ninput:\n{input}");
        }
    }
}
