//! Loading `agent.toml` (and a config directory) into a checked [`Config`] with built plugins.
//!
//! The shape is Telegraf's: `[agent]`, `[global_tags]`, `[[inputs.NAME]]`,
//! `[[processors.NAME]]`, `[[outputs.NAME]]`. `${VAR}` / `${VAR:-default}` are substituted first
//! ([`env`]). Every table denies unknown keys, and loading collects every problem before failing,
//! each with file, line and key, so one pass fixes the file. Plugins are built here (their `new`
//! checks their options and does no I/O), so a config that loads is one that can start.

pub mod env;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::filter::{self, Filter, FilterConfig};
use crate::plugins::{
    self, BuildContext, BuildFailure, BuildFn, BuiltInput, BuiltOutput, DynProcessor,
};
pub use units::{ConfigDuration, ConfigSize, Retention};

/// A place in a config file: `agent.toml:12:5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error, an unknown key, a value of the wrong type or out of range.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Every problem found while loading; `Display` prints one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// `[agent]`: settings for the whole agent, Telegraf's names and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// How often inputs gather. Default `"10s"`.
    #[serde(deserialize_with = "units::interval")]
    pub interval: ConfigDuration,
    /// Align gathers to multiples of `interval`. Default true.
    pub round_interval: bool,
    /// A random delay of up to this before each gather. Default `"0s"`.
    pub collection_jitter: ConfigDuration,
    /// A fixed delay after each aligned tick before gathering. Default `"0s"`.
    pub collection_offset: ConfigDuration,
    /// Gathered timestamps are truncated to a multiple of this; `"0s"` (default) keeps ns.
    pub precision: ConfigDuration,
    /// How often outputs write what is buffered. Default `"10s"`.
    #[serde(deserialize_with = "units::flush_interval")]
    pub flush_interval: ConfigDuration,
    /// A random delay of up to this added to each flush. Default `"0s"`.
    pub flush_jitter: ConfigDuration,
    /// The most points an output writes in one batch. Default 1000.
    #[serde(deserialize_with = "units::batch_size")]
    pub metric_batch_size: usize,
    /// The most points an output's buffer holds; over it writes get 503. Default 10000.
    #[serde(deserialize_with = "units::buffer_limit")]
    pub metric_buffer_limit: usize,
    /// The `host` tag on gathered metrics; empty means the system's hostname.
    pub hostname: String,
    /// Leave the `host` tag off gathered metrics. Default false.
    pub omit_hostname: bool,
    /// Where local state lives (buckets, spools). Default `"./data"`.
    pub data_dir: PathBuf,
    /// Log at debug level. Default false.
    pub debug: bool,
    /// Log only errors. Default false.
    pub quiet: bool,
    /// Log to this file instead of stderr; empty means stderr.
    pub logfile: String,
    /// `"text"` (default) or `"json"` (one object per line).
    pub logformat: LogFormat,
    /// How long a stop (SIGTERM) may take to flush buffers before the agent exits. Default `"30s"`.
    pub shutdown_timeout: ConfigDuration,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            interval: ConfigDuration::secs(10),
            round_interval: true,
            collection_jitter: ConfigDuration::default(),
            collection_offset: ConfigDuration::default(),
            precision: ConfigDuration::default(),
            flush_interval: ConfigDuration::secs(10),
            flush_jitter: ConfigDuration::default(),
            metric_batch_size: 1000,
            metric_buffer_limit: 10_000,
            hostname: String::new(),
            omit_hostname: false,
            data_dir: PathBuf::from("./data"),
            debug: false,
            quiet: false,
            logfile: String::new(),
            logformat: LogFormat::Text,
            shutdown_timeout: ConfigDuration::secs(30),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Options every input takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputCommon {
    /// A name for this instance in logs (`inputs.cpu::alias`).
    pub alias: Option<String>,
    /// Overrides `[agent] interval` for this input.
    #[serde(default, deserialize_with = "units::interval_opt")]
    pub interval: Option<ConfigDuration>,
    /// Overrides `[agent] collection_jitter`.
    pub collection_jitter: Option<ConfigDuration>,
    /// Overrides `[agent] collection_offset`.
    pub collection_offset: Option<ConfigDuration>,
    /// Overrides `[agent] precision`.
    pub precision: Option<ConfigDuration>,
    /// Replaces the measurement name.
    pub name_override: Option<String>,
    /// Prepended to the measurement name.
    pub name_prefix: Option<String>,
    /// Appended to the measurement name.
    pub name_suffix: Option<String>,
    /// Tags added to every metric, without overwriting tags a metric has.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}
const INPUT_COMMON: &[&str] = &[
    "alias",
    "interval",
    "collection_jitter",
    "collection_offset",
    "precision",
    "name_override",
    "name_prefix",
    "name_suffix",
    "tags",
];

/// Options every processor takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorCommon {
    /// A name for this instance in logs.
    pub alias: Option<String>,
    /// Position in the chain; lower runs first, then file order.
    pub order: Option<i64>,
}
const PROCESSOR_COMMON: &[&str] = &["alias", "order"];

/// How an output's buffer keeps what it has not written yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferMode {
    /// On disk under `data_dir/buffers/`: survives a crash; admission waits for its fsync.
    #[default]
    Disk,
    /// In memory: fast, lost on a crash.
    Memory,
}

/// Options every output takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputCommon {
    /// A name for this instance in logs.
    pub alias: Option<String>,
    /// How the buffer keeps unwritten points. Default `"disk"`.
    #[serde(default)]
    pub buffer: BufferMode,
    /// The most points the buffer holds; default `[agent] metric_buffer_limit`.
    #[serde(default, deserialize_with = "units::buffer_limit_opt")]
    pub buffer_limit: Option<usize>,
    /// The most bytes a disk buffer holds on disk; default unbounded (but by `buffer_limit`).
    pub buffer_max_bytes: Option<ConfigSize>,
    /// Overrides `[agent] metric_batch_size`.
    #[serde(default, deserialize_with = "units::batch_size_opt")]
    pub metric_batch_size: Option<usize>,
    /// Overrides `[agent] flush_interval`.
    #[serde(default, deserialize_with = "units::flush_interval_opt")]
    pub flush_interval: Option<ConfigDuration>,
    /// Overrides `[agent] flush_jitter`.
    pub flush_jitter: Option<ConfigDuration>,
}
const OUTPUT_COMMON: &[&str] = &[
    "alias",
    "buffer",
    "buffer_limit",
    "buffer_max_bytes",
    "metric_batch_size",
    "flush_interval",
    "flush_jitter",
];

/// A built plugin with its id, location and shared options.
#[derive(Debug)]
pub struct Configured<P, C> {
    /// The plugin id (`cpu`, `file`).
    pub name: String,
    /// Where its table starts.
    pub at: Location,
    /// The shared options.
    pub common: C,
    /// Its selectors and modifiers (`namepass`, `tagdrop`, `fieldinclude`, ...).
    pub filter: Filter,
    /// The built plugin.
    pub plugin: P,
}

impl<P, C: HasAlias> Configured<P, C> {
    /// `inputs.NAME` or `inputs.NAME::alias`, for logs.
    pub fn id(&self, kind: &str) -> String {
        match self.common.alias() {
            Some(alias) => format!("{kind}.{}::{alias}", self.name),
            None => format!("{kind}.{}", self.name),
        }
    }
}

/// Common options that carry an alias.
pub trait HasAlias {
    /// The alias, if set.
    fn alias(&self) -> Option<&str>;
}
impl HasAlias for InputCommon {
    fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }
}
impl HasAlias for ProcessorCommon {
    fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }
}
impl HasAlias for OutputCommon {
    fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }
}

/// A checked configuration with every plugin built.
#[derive(Debug)]
pub struct Config {
    /// `[agent]`.
    pub agent: AgentSection,
    /// `[global_tags]`.
    pub global_tags: BTreeMap<String, String>,
    /// Inputs in file order.
    pub inputs: Vec<Configured<BuiltInput, InputCommon>>,
    /// Processors in chain order (`order`, then file order).
    pub processors: Vec<Configured<Box<dyn DynProcessor>, ProcessorCommon>>,
    /// Outputs in file order.
    pub outputs: Vec<Configured<BuiltOutput, OutputCommon>>,
    /// Environment variables referenced without a default and not set.
    pub unset_variables: Vec<String>,
    /// Settings that work but do nothing, each with file, line and plugin.
    pub warnings: Vec<String>,
}

impl fmt::Debug for dyn DynProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("processor")
    }
}

/// Loads `path` and, when given, every `*.toml` in `dir` in name order.
///
/// # Errors
/// Every problem found, each naming file, line and key.
pub fn load(path: &Path, dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    let texts = read_texts(path, dir)?;
    from_texts(&texts, |name| std::env::var(name).ok())
}

/// Reads `path` and, when given, every `*.toml` in `dir` in name order: the texts [`load`]
/// builds a config from (kept by a running agent so a failed reload can go back).
///
/// # Errors
/// A file or the directory cannot be read.
pub fn read_texts(path: &Path, dir: Option<&Path>) -> Result<Vec<(PathBuf, String)>, ConfigErrors> {
    let mut files = vec![path.to_path_buf()];
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(|source| {
            ConfigErrors(vec![ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            }])
        })?;
        let mut extra: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        extra.sort();
        files.extend(extra);
    }
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => texts.push((file, text)),
            Err(source) => errors.push(ConfigError::Read { path: file, source }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(texts)
}

/// Loads config from `(file name, text)` pairs; the first holds `[agent]`, later ones add plugins.
///
/// # Errors
/// Every problem found, each naming file, line and key.
pub fn from_texts(
    texts: &[(PathBuf, String)],
    lookup: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Config, ConfigErrors> {
    let mut loader = Loader::default();
    loader.cx.data_dir = AgentSection::default().data_dir;
    let mut unset_variables = Vec::new();
    for (file, raw) in texts {
        let (text, unset) = env::substitute(raw, lookup);
        unset_variables.extend(unset);
        loader.file(Arc::from(file.as_path()), &text);
    }
    if !loader.errors.is_empty() {
        return Err(ConfigErrors(loader.errors));
    }
    // One store per data_dir: a second [[outputs.buckets]] would fight over its lock.
    let stores: Vec<&Location> = loader
        .outputs
        .iter()
        .filter(|o| matches!(o.plugin, BuiltOutput::Store(_)))
        .map(|o| &o.at)
        .collect();
    if stores.len() > 1 {
        return Err(ConfigErrors(vec![ConfigError::Invalid {
            at: stores[1].clone(),
            message: format!(
                "[[outputs.buckets]] may appear once (the first is at {}): local buckets live in [agent] data_dir",
                stores[0]
            ),
        }]));
    }
    // Disk buffers live in a directory named after the output's id: ids must differ.
    let mut seen: Vec<(String, &Location)> = Vec::new();
    for o in &loader.outputs {
        if !matches!(o.plugin, BuiltOutput::Batch(_)) || o.common.buffer != BufferMode::Disk {
            continue;
        }
        let id = o.id("outputs");
        if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
            return Err(ConfigErrors(vec![ConfigError::Invalid {
                at: o.at.clone(),
                message: format!(
                    "[[outputs.{}]] needs an `alias` distinct from the one at {first}: each disk buffer is kept under its output's id",
                    o.name
                ),
            }]));
        }
        seen.push((id, &o.at));
    }
    let mut processors = loader.processors;
    // As Telegraf: processors without `order` first (in file order), then by `order`.
    processors.sort_by_key(|p| (p.common.order.is_some(), p.common.order.unwrap_or(0)));
    Ok(Config {
        agent: loader.agent.unwrap_or_default(),
        global_tags: loader.global_tags,
        inputs: loader.inputs,
        processors,
        outputs: loader.outputs,
        unset_variables,
        warnings: loader.warnings,
    })
}

#[derive(Default)]
struct Loader {
    agent: Option<AgentSection>,
    global_tags: BTreeMap<String, String>,
    inputs: Vec<Configured<BuiltInput, InputCommon>>,
    processors: Vec<Configured<Box<dyn DynProcessor>, ProcessorCommon>>,
    outputs: Vec<Configured<BuiltOutput, OutputCommon>>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// The build context; its values come from `[agent]` of the first file.
    cx: BuildContext,
}

struct FileCx<'t> {
    file: Arc<Path>,
    text: &'t str,
}

impl FileCx<'_> {
    fn at(&self, span: Option<Range<usize>>) -> Location {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Location {
            file: Arc::clone(&self.file),
            line,
            column,
        }
    }

    fn invalid(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(span),
            message: message.into(),
        }
    }

    fn de_error(&self, context: &str, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim_end().to_owned();
        // A value's error names its key, as the line it points at does (`key = value`).
        let key = e
            .span()
            .and_then(|s| self.key_at(s.start))
            .filter(|k| !message.contains(&format!("`{k}`")));
        match key {
            Some(key) => self.invalid(e.span(), format!("{context}: `{key}`: {message}")),
            None => self.invalid(e.span(), format!("{context}: {message}")),
        }
    }

    /// The key of the `key = value` line holding `offset`, when the offset is in its value.
    fn key_at(&self, offset: usize) -> Option<&str> {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line = &self.text[start..offset];
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        (!key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
        .then_some(key)
    }
}

impl Loader {
    fn file(&mut self, file: Arc<Path>, text: &str) {
        let fcx = FileCx { file, text };
        let root = match DeTable::parse(text) {
            Ok(root) => root.into_inner(),
            Err(e) => {
                self.errors.push(fcx.de_error("invalid TOML", &e));
                return;
            }
        };
        // `[agent]` first: plugins read its defaults.
        let mut rest = Vec::new();
        for (key, value) in root {
            if key.get_ref() == "agent" {
                if self.agent.is_some() {
                    self.errors.push(fcx.invalid(
                        Some(key.span()),
                        "[agent] may appear only once, in the main config file",
                    ));
                    continue;
                }
                match deserialize::<AgentSection>(value) {
                    Ok(agent) => {
                        self.cx.flush_interval = agent.flush_interval.0;
                        self.cx.data_dir = agent.data_dir.clone();
                        self.agent = Some(agent);
                    }
                    Err(e) => self.errors.push(fcx.de_error("[agent]", &e)),
                }
            } else {
                rest.push((key, value));
            }
        }
        for (key, value) in rest {
            match key.get_ref().as_ref() {
                "global_tags" => match deserialize::<BTreeMap<String, String>>(value) {
                    Ok(tags) => self.global_tags.extend(tags),
                    Err(e) => self.errors.push(fcx.de_error("[global_tags]", &e)),
                },
                kind @ ("inputs" | "processors" | "outputs") => {
                    let kind = kind.to_owned();
                    self.plugins(&fcx, &kind, value);
                }
                other => self.errors.push(fcx.invalid(
                    Some(key.span()),
                    format!(
                        "unknown top-level key `{other}`; expected agent, global_tags, inputs, processors or outputs"
                    ),
                )),
            }
        }
    }

    fn plugins(&mut self, fcx: &FileCx<'_>, kind: &str, value: Spanned<DeValue<'_>>) {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.errors.push(fcx.invalid(
                Some(span),
                format!("`{kind}` must hold tables such as [[{kind}.NAME]]"),
            ));
            return;
        };
        for (name, entries) in table {
            let name_span = name.span();
            let name = name.into_inner().into_owned();
            let known: Vec<&str> = match kind {
                "inputs" => plugins::inputs::ALL.iter().map(|e| e.name).collect(),
                "processors" => plugins::processors::ALL.iter().map(|e| e.name).collect(),
                _ => plugins::outputs::ALL.iter().map(|e| e.name).collect(),
            };
            if !known.contains(&name.as_str()) {
                let known = if known.is_empty() {
                    "none yet".to_owned()
                } else {
                    known.join(", ")
                };
                self.errors.push(fcx.invalid(
                    Some(name_span),
                    format!(
                        "unknown {} plugin `{name}`; known: {known}",
                        &kind[..kind.len() - 1]
                    ),
                ));
                continue;
            }
            let entries_span = entries.span();
            let tables = match entries.into_inner() {
                DeValue::Array(items) => items,
                _ => {
                    self.errors.push(fcx.invalid(
                        Some(entries_span),
                        format!(
                            "write [[{kind}.{name}]] (an array of tables), not [{kind}.{name}]"
                        ),
                    ));
                    continue;
                }
            };
            for item in tables {
                self.plugin(fcx, kind, &name, item);
            }
        }
    }

    fn plugin(&mut self, fcx: &FileCx<'_>, kind: &str, name: &str, item: Spanned<DeValue<'_>>) {
        let context = format!("[[{kind}.{name}]]");
        let span = item.span();
        let DeValue::Table(table) = item.into_inner() else {
            self.errors
                .push(fcx.invalid(Some(span), format!("{context} must be a table")));
            return;
        };
        let at = fcx.at(Some(span.clone()));
        let common_keys = match kind {
            "inputs" => INPUT_COMMON,
            "processors" => PROCESSOR_COMMON,
            _ => OUTPUT_COMMON,
        };
        let mut common = DeTable::new();
        let mut selectors = DeTable::new();
        let mut own = DeTable::new();
        for (k, v) in table {
            if common_keys.contains(&k.get_ref().as_ref()) {
                common.insert(k, v);
            } else if filter::KEYS.contains(&k.get_ref().as_ref()) {
                selectors.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
        let common = Spanned::new(span.clone(), DeValue::Table(common));
        let selectors = Spanned::new(span.clone(), DeValue::Table(selectors));
        let own = ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(own)));
        let cx = &self.cx;
        let warnings = &mut self.warnings;
        // The same steps for each kind; only the registry and the list differ.
        macro_rules! build_into {
            ($registry:expr, $list:expr) => {{
                let entry = $registry.iter().find(|e| e.name == name);
                match build(
                    fcx,
                    &context,
                    at,
                    name,
                    common,
                    selectors,
                    own,
                    cx,
                    warnings,
                    entry.map(|e| e.build),
                ) {
                    Ok(configured) => {
                        $list.push(configured);
                        Vec::new()
                    }
                    Err(errors) => errors,
                }
            }};
        }
        let errors = match kind {
            "inputs" => build_into!(plugins::inputs::ALL, self.inputs),
            "processors" => build_into!(plugins::processors::ALL, self.processors),
            _ => build_into!(plugins::outputs::ALL, self.outputs),
        };
        self.errors.extend(errors);
    }
}

/// Deserializes the shared options and builds the plugin, reporting problems in both.
#[allow(clippy::too_many_arguments)]
fn build<P, C: DeserializeOwned + HasAlias>(
    fcx: &FileCx<'_>,
    context: &str,
    at: Location,
    name: &str,
    common: Spanned<DeValue<'_>>,
    selectors: Spanned<DeValue<'_>>,
    own: ValueDeserializer<'_>,
    cx: &BuildContext,
    warnings: &mut Vec<String>,
    build: Option<BuildFn<P>>,
) -> Result<Configured<P, C>, Vec<ConfigError>> {
    let build = build.expect("the caller checked the plugin name against the registry");
    let common = deserialize::<C>(common);
    let mut cx = cx.clone();
    let kind = context
        .trim_start_matches("[[")
        .split('.')
        .next()
        .unwrap_or("");
    cx.id = match common.as_ref().ok().and_then(|c| c.alias()) {
        Some(alias) => format!("{kind}.{name}::{alias}"),
        None => format!("{kind}.{name}"),
    };
    cx.warnings = crate::plugins::Warnings::default();
    let plugin = build(own, &cx);
    warnings.extend(
        cx.warnings
            .take()
            .into_iter()
            .map(|w| format!("{at}: {context}: {w}")),
    );
    let filter = match deserialize::<FilterConfig>(selectors) {
        Ok(c) => Filter::compile(&c).map_err(|(key, message)| ConfigError::Invalid {
            at: at.clone(),
            message: format!("{context}: `{key}`: {message}"),
        }),
        Err(e) => Err(fcx.de_error(context, &e)),
    };
    match (common, filter, plugin) {
        (Ok(common), Ok(filter), Ok(plugin)) => Ok(Configured {
            name: name.to_owned(),
            at,
            common,
            filter,
            plugin,
        }),
        (common, filter, plugin) => {
            let mut errors = Vec::new();
            if let Err(e) = common {
                errors.push(fcx.de_error(context, &e));
            }
            if let Err(e) = filter {
                errors.push(e);
            }
            match plugin {
                Err(BuildFailure::Config(e)) => errors.push(fcx.de_error(context, &e)),
                Err(BuildFailure::Invalid(e)) => errors.push(ConfigError::Invalid {
                    at,
                    message: format!("{context}: {e}"),
                }),
                Ok(_) => {}
            }
            Err(errors)
        }
    }
}

fn deserialize<T: DeserializeOwned>(value: Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(value))
}

/// The `host` tag for gathered metrics: `[agent] hostname`, else the system's.
pub fn hostname(agent: &AgentSection) -> String {
    if !agent.hostname.is_empty() {
        return agent.hostname.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `flush_interval` of an output: its own, else `[agent]`'s.
pub fn flush_interval(agent: &AgentSection, common: &OutputCommon) -> Duration {
    common.flush_interval.unwrap_or(agent.flush_interval).0
}

#[cfg(test)]
mod tests;
