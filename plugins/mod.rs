//! The plugin contracts ([`Input`], [`ServiceInput`], [`Processor`], [`Output`]) and the type
//! machinery that lets the registries in `inputs/`, `processors/` and `outputs/` hold any plugin.
//!
//! A plugin has a config type (what the user wrote, deserialized with unknown keys denied) and a
//! runtime type built from it by `new`, which checks the config and does no I/O, so a whole
//! pipeline can be built and checked before anything starts. Options every plugin shares
//! (`alias`, `interval`, buffers, ...) are parsed by [`crate::config`], never by the plugin.

pub mod inputs;
pub mod outputs;
pub mod processors;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metric::{FieldValue, Metric};
use crate::pipeline::Pipeline;

/// A boxed, sendable future: what the registry stores plugin futures as.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a plugin's constructor may read besides its own config.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The `[agent]` flush interval, as a default for outputs that batch.
    pub flush_interval: std::time::Duration,
    /// `[agent] data_dir`, for state a plugin keeps (dead-letter files).
    pub data_dir: std::path::PathBuf,
    /// The plugin's id with its alias (`outputs.influxdb::eu`), for logs and file names.
    pub id: String,
    /// What a plugin says about a config that works but probably not as meant (Telegraf's
    /// no-ops): `check` prints it, a start logs it.
    pub warnings: Warnings,
}

/// Warnings a plugin gives while it is built.
#[derive(Debug, Clone, Default)]
pub struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    /// Records a warning.
    pub fn warn(&self, message: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.into());
    }

    /// The warnings recorded so far, leaving none.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A plugin's config is valid TOML of the right shape but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// What is wrong and, when the user can fix it, how; names the key.
    pub message: String,
}

impl BuildError {
    /// A build error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
        }
    }
}

/// Why building a plugin from its table failed.
#[derive(Debug)]
pub enum BuildFailure {
    /// The table does not deserialize (unknown key, wrong type); carries the span.
    Config(toml::de::Error),
    /// The values deserialize but `new` refused them.
    Invalid(BuildError),
}

/// A gather failed; the next tick tries again.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GatherError {
    /// What failed.
    pub message: String,
}

/// An output could not write a batch; the buffer keeps it and the output retries.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An I/O error writing to a file or socket.
    #[error("writing to {target}")]
    Io {
        /// What was being written (a path, `stdout`, a URL).
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A transient failure (connection, timeout, 5xx, 408, 429): retry after a backoff, and not
    /// before `retry_after` when the upstream said so.
    #[error("{target}: {reason}")]
    Retry {
        /// The upstream.
        target: String,
        /// What happened.
        reason: String,
        /// The upstream's Retry-After.
        retry_after: Option<std::time::Duration>,
    },
    /// The upstream refuses this output (bad credentials, unknown database): retried slowly and
    /// logged loudly while the buffer keeps filling.
    #[error("{target}: {reason}; the output is paused and its buffer keeps filling")]
    Paused {
        /// The upstream.
        target: String,
        /// What the upstream said.
        reason: String,
    },
}

impl WriteError {
    /// The shortest wait before the next attempt that the upstream asked for.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            WriteError::Retry { retry_after, .. } => *retry_after,
            WriteError::Paused { .. } => Some(std::time::Duration::from_secs(10)),
            WriteError::Io { .. } => None,
        }
    }
}

/// A service input could not start (for example, its address is taken).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// What failed, with the address or resource involved.
    pub message: String,
    /// The cause, when there is one.
    #[source]
    pub source: Option<std::io::Error>,
}

/// Collects the metrics of one gather, stamping them with the gather's time.
#[derive(Debug)]
pub struct Accumulator {
    time: i64,
    metrics: Vec<Metric>,
}

impl Accumulator {
    /// An accumulator whose metrics default to `time` (ns).
    pub fn new(time: i64) -> Self {
        Accumulator {
            time,
            metrics: Vec::new(),
        }
    }

    /// Adds a metric; tags need not be sorted. A metric with no field is not added.
    pub fn add(&mut self, name: &str, tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>) {
        if fields.is_empty() {
            return;
        }
        let mut m = Metric::new(name, self.time);
        for (k, v) in tags {
            m.add_tag(*k, *v);
        }
        for (k, v) in fields {
            m.add_field(k, v);
        }
        self.metrics.push(m);
    }

    /// The metrics gathered.
    pub fn into_metrics(self) -> Vec<Metric> {
        self.metrics
    }
}

/// An input gathered once per tick by the pipeline's scheduler.
pub trait Input: Send + 'static {
    /// The plugin id, as in `[[inputs.NAME]]`.
    const NAME: &'static str;
    /// What users may write in the plugin's table.
    type Config: DeserializeOwned;
    /// Checks the config and builds the input; no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the offending key.
    fn new(config: Self::Config, cx: &BuildContext) -> Result<Self, BuildError>
    where
        Self: Sized;
    /// Gathers once into `acc`.
    fn gather(
        &mut self,
        acc: &mut Accumulator,
    ) -> impl Future<Output = Result<(), GatherError>> + Send;
    /// Whether the input reports rates or deltas, so `--test` gathers it twice, a short
    /// interval apart, to show them.
    fn needs_two_gathers(&self) -> bool {
        false
    }
    /// Gives the input the running pipeline (the `internal` input reads its counters).
    fn attach(&mut self, pipeline: &Arc<Pipeline>) {
        let _ = pipeline;
    }
}

/// What a service input gets when it starts: where to deliver, when to stop, where to spawn.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The input's selectors, `name_*` options and `tags`: apply them to every metric received.
    pub shape: Arc<crate::pipeline::InputShape>,
    /// Processors, router and output buffers; `deliver` admits a write or refuses it.
    pub pipeline: Arc<Pipeline>,
    /// Cancelled at shutdown: stop accepting work.
    pub shutdown: CancellationToken,
    /// Spawn connection tasks here so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The plugin id with its alias, for logs.
    pub id: String,
    /// Listening sockets kept across reloads: bind through it.
    pub sockets: crate::http::Sockets,
}

/// An input that owns its loop (a listener); it is started once and runs until shutdown.
pub trait ServiceInput: Send + 'static {
    /// The plugin id, as in `[[inputs.NAME]]`.
    const NAME: &'static str;
    /// What users may write in the plugin's table.
    type Config: DeserializeOwned;
    /// Checks the config and builds the input; no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the offending key.
    fn new(config: Self::Config, cx: &BuildContext) -> Result<Self, BuildError>
    where
        Self: Sized;
    /// Binds and spawns the service's tasks on `cx.tracker`; returns once it is accepting work.
    fn start(self, cx: ServiceContext) -> impl Future<Output = Result<(), StartError>> + Send;
}

/// A synchronous transform over a batch, run inline in the task that produced the batch.
pub trait Processor: Send + 'static {
    /// The plugin id, as in `[[processors.NAME]]`.
    const NAME: &'static str;
    /// What users may write in the plugin's table.
    type Config: DeserializeOwned;
    /// Checks the config and builds the processor; no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the offending key.
    fn new(config: Self::Config, cx: &BuildContext) -> Result<Self, BuildError>
    where
        Self: Sized;
    /// Transforms a batch.
    fn apply(&mut self, metrics: Vec<Metric>) -> Vec<Metric>;
}

/// Where metrics leave the agent: each output owns a buffer and writes one batch at a time.
pub trait Output: Send + 'static {
    /// The plugin id, as in `[[outputs.NAME]]`.
    const NAME: &'static str;
    /// What users may write in the plugin's table.
    type Config: DeserializeOwned;
    /// Checks the config and builds the output; no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the offending key.
    fn new(config: Self::Config, cx: &BuildContext) -> Result<Self, BuildError>
    where
        Self: Sized;
    /// Writes one batch; on error the buffer keeps the batch and the output retries it.
    fn write(&mut self, batch: &[Metric]) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Points set aside as poison (refused by the upstream for good) since start.
    fn dead_lettered(&self) -> u64 {
        0
    }
    /// Requests the output sends at once; the pipeline hands it that many batches' worth.
    fn in_flight(&self) -> usize {
        1
    }
    /// Whether the output takes batches as line protocol runs ([`Output::write_runs`]), so a disk
    /// buffer's records go out without being decoded into metrics.
    fn takes_runs(&self) -> bool {
        false
    }
    /// A handle that writes runs from several tasks at once, each call one request per
    /// upstream target: with it and [`Output::in_flight`] > 1, the pipeline keeps that many
    /// batches in flight from a disk buffer, starting the next as each one completes, instead of
    /// rounds that wait for their slowest request.
    fn shared_runs(&self) -> Option<Arc<dyn SharedRuns>> {
        None
    }
    /// Writes line protocol runs (ns, one point per line); only called when
    /// [`Output::takes_runs`] is true. Errors as [`Output::write`].
    fn write_runs(
        &mut self,
        runs: &[crate::buffer::record::Run<'_>],
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        let _ = runs;
        async {
            Err(WriteError::Io {
                target: Self::NAME.to_owned(),
                source: std::io::Error::other("this output does not take line protocol runs"),
            })
        }
    }
}

/// See [`Output::shared_runs`].
pub trait SharedRuns: Send + Sync {
    /// Writes `runs` (one batch); errors as [`Output::write`].
    fn write_batch<'a>(
        &'a self,
        runs: &'a [crate::buffer::record::Run<'a>],
    ) -> BoxFuture<'a, Result<(), WriteError>>;
}

/// An output that is a durable store opened by the pipeline (local buckets): a write is
/// admitted by appending to it, and acknowledged once that append is durable.
pub trait StoreOutput: Send + 'static {
    /// The plugin id, as in `[[outputs.NAME]]`.
    const NAME: &'static str;
    /// What users may write in the plugin's table.
    type Config: DeserializeOwned;
    /// Checks the config; no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the offending key.
    fn new(config: Self::Config, cx: &BuildContext) -> Result<Self, BuildError>
    where
        Self: Sized;
    /// The store's options under `data_dir`.
    fn options(&self, data_dir: &std::path::Path) -> crate::buckets::StoreOptions;
}

/// A built output of either kind.
pub enum BuiltOutput {
    /// Written batch by batch from its buffer.
    Batch(Box<dyn DynOutput>),
    /// A durable store: the options to open it with, given the data dir.
    Store(Box<dyn Fn(&std::path::Path) -> crate::buckets::StoreOptions + Send>),
}

impl fmt::Debug for BuiltOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuiltOutput::Batch(_) => "BuiltOutput::Batch",
            BuiltOutput::Store(_) => "BuiltOutput::Store",
        })
    }
}

// ---- The dyn-compatible forms the registries hold. ----

/// A built gather input.
pub trait DynInput: Send {
    /// See [`Input::gather`].
    fn gather<'a>(&'a mut self, acc: &'a mut Accumulator)
        -> BoxFuture<'a, Result<(), GatherError>>;
    /// See [`Input::needs_two_gathers`].
    fn needs_two_gathers(&self) -> bool;
    /// See [`Input::attach`].
    fn attach(&mut self, pipeline: &Arc<Pipeline>);
}
impl<T: Input> DynInput for T {
    fn gather<'a>(
        &'a mut self,
        acc: &'a mut Accumulator,
    ) -> BoxFuture<'a, Result<(), GatherError>> {
        Box::pin(Input::gather(self, acc))
    }
    fn needs_two_gathers(&self) -> bool {
        Input::needs_two_gathers(self)
    }
    fn attach(&mut self, pipeline: &Arc<Pipeline>) {
        Input::attach(self, pipeline);
    }
}

/// A built service input.
pub trait DynService: Send {
    /// See [`ServiceInput::start`].
    fn start(self: Box<Self>, cx: ServiceContext) -> BoxFuture<'static, Result<(), StartError>>;
}
impl<T: ServiceInput> DynService for T {
    fn start(self: Box<Self>, cx: ServiceContext) -> BoxFuture<'static, Result<(), StartError>> {
        Box::pin(ServiceInput::start(*self, cx))
    }
}

/// A built processor.
pub trait DynProcessor: Send {
    /// See [`Processor::apply`].
    fn apply(&mut self, metrics: Vec<Metric>) -> Vec<Metric>;
}
impl<T: Processor> DynProcessor for T {
    fn apply(&mut self, metrics: Vec<Metric>) -> Vec<Metric> {
        Processor::apply(self, metrics)
    }
}

/// A built output.
pub trait DynOutput: Send {
    /// See [`Output::write`].
    fn write<'a>(&'a mut self, batch: &'a [Metric]) -> BoxFuture<'a, Result<(), WriteError>>;
    /// See [`Output::dead_lettered`].
    fn dead_lettered(&self) -> u64;
    /// See [`Output::in_flight`].
    fn in_flight(&self) -> usize;
    /// See [`Output::takes_runs`].
    fn takes_runs(&self) -> bool;
    /// See [`Output::write_runs`].
    fn write_runs<'a>(
        &'a mut self,
        runs: &'a [crate::buffer::record::Run<'a>],
    ) -> BoxFuture<'a, Result<(), WriteError>>;
    /// See [`Output::shared_runs`].
    fn shared_runs(&self) -> Option<Arc<dyn SharedRuns>>;
}
impl<T: Output> DynOutput for T {
    fn write<'a>(&'a mut self, batch: &'a [Metric]) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(Output::write(self, batch))
    }
    fn dead_lettered(&self) -> u64 {
        Output::dead_lettered(self)
    }
    fn in_flight(&self) -> usize {
        Output::in_flight(self)
    }
    fn takes_runs(&self) -> bool {
        Output::takes_runs(self)
    }
    fn write_runs<'a>(
        &'a mut self,
        runs: &'a [crate::buffer::record::Run<'a>],
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(Output::write_runs(self, runs))
    }
    fn shared_runs(&self) -> Option<Arc<dyn SharedRuns>> {
        Output::shared_runs(self)
    }
}

/// A built input of either kind.
pub enum BuiltInput {
    /// Gathered per tick.
    Gather(Box<dyn DynInput>),
    /// Runs its own loop.
    Service(Box<dyn DynService>),
}

impl fmt::Debug for BuiltInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuiltInput::Gather(_) => "BuiltInput::Gather",
            BuiltInput::Service(_) => "BuiltInput::Service",
        })
    }
}

/// The plugin-specific part of a `[[kind.NAME]]` table, ready to deserialize with spans kept.
pub type PluginTable<'a> = toml::de::ValueDeserializer<'a>;

/// How a registry builds a plugin of type `P` from its table.
pub type BuildFn<P> = fn(PluginTable<'_>, &BuildContext) -> Result<P, BuildFailure>;

fn config_of<C: DeserializeOwned>(table: PluginTable<'_>) -> Result<C, BuildFailure> {
    C::deserialize(table).map_err(BuildFailure::Config)
}

/// One line of the input registry.
#[derive(Debug, Clone, Copy)]
pub struct InputEntry {
    /// The plugin id.
    pub name: &'static str,
    /// Deserializes the table and builds the input.
    pub build: BuildFn<BuiltInput>,
}

impl InputEntry {
    /// The entry for a gather input.
    pub const fn of<T: Input>() -> Self {
        fn build<T: Input>(
            t: PluginTable<'_>,
            cx: &BuildContext,
        ) -> Result<BuiltInput, BuildFailure> {
            let input = T::new(config_of(t)?, cx).map_err(BuildFailure::Invalid)?;
            Ok(BuiltInput::Gather(Box::new(input)))
        }
        InputEntry {
            name: T::NAME,
            build: build::<T>,
        }
    }

    /// The entry for a service input.
    pub const fn service<T: ServiceInput>() -> Self {
        fn build<T: ServiceInput>(
            t: PluginTable<'_>,
            cx: &BuildContext,
        ) -> Result<BuiltInput, BuildFailure> {
            let input = T::new(config_of(t)?, cx).map_err(BuildFailure::Invalid)?;
            Ok(BuiltInput::Service(Box::new(input)))
        }
        InputEntry {
            name: T::NAME,
            build: build::<T>,
        }
    }
}

/// One line of the processor registry.
#[derive(Debug, Clone, Copy)]
pub struct ProcessorEntry {
    /// The plugin id.
    pub name: &'static str,
    /// Deserializes the table and builds the processor.
    pub build: BuildFn<Box<dyn DynProcessor>>,
}

impl ProcessorEntry {
    /// The entry for a processor.
    pub const fn of<T: Processor>() -> Self {
        fn build<T: Processor>(
            t: PluginTable<'_>,
            cx: &BuildContext,
        ) -> Result<Box<dyn DynProcessor>, BuildFailure> {
            Ok(Box::new(
                T::new(config_of(t)?, cx).map_err(BuildFailure::Invalid)?,
            ))
        }
        ProcessorEntry {
            name: T::NAME,
            build: build::<T>,
        }
    }
}

/// One line of the output registry.
#[derive(Debug, Clone, Copy)]
pub struct OutputEntry {
    /// The plugin id.
    pub name: &'static str,
    /// Deserializes the table and builds the output.
    pub build: BuildFn<BuiltOutput>,
}

impl OutputEntry {
    /// The entry for a batch output.
    pub const fn of<T: Output>() -> Self {
        fn build<T: Output>(
            t: PluginTable<'_>,
            cx: &BuildContext,
        ) -> Result<BuiltOutput, BuildFailure> {
            let output = T::new(config_of(t)?, cx).map_err(BuildFailure::Invalid)?;
            Ok(BuiltOutput::Batch(Box::new(output)))
        }
        OutputEntry {
            name: T::NAME,
            build: build::<T>,
        }
    }

    /// The entry for a store output.
    pub const fn store<T: StoreOutput>() -> Self {
        fn build<T: StoreOutput>(
            t: PluginTable<'_>,
            cx: &BuildContext,
        ) -> Result<BuiltOutput, BuildFailure> {
            let output = T::new(config_of(t)?, cx).map_err(BuildFailure::Invalid)?;
            Ok(BuiltOutput::Store(Box::new(move |dir| output.options(dir))))
        }
        OutputEntry {
            name: T::NAME,
            build: build::<T>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snake_case(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }

    #[test]
    fn registry_names_are_unique_snake_case() {
        let mut names: Vec<String> = Vec::new();
        names.extend(inputs::ALL.iter().map(|e| format!("inputs.{}", e.name)));
        names.extend(
            processors::ALL
                .iter()
                .map(|e| format!("processors.{}", e.name)),
        );
        names.extend(outputs::ALL.iter().map(|e| format!("outputs.{}", e.name)));
        for n in &names {
            assert!(snake_case(n.split('.').nth(1).unwrap()), "{n}");
        }
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate plugin names");
    }
}
