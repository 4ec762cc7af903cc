//! Builds the running agent from a [`Config`]: processors, router, output buffers and tasks,
//! input schedulers and services; and stops it.
//!
//! ```text
//! listener, inputs ─> processors (inline, in order) ─> router ─> buffer per output ─> output task
//! ```
//! [`Pipeline::deliver`] is the one place that decides whether a write is admitted: all of it into
//! every output, or none of it (a [`Refusal`] the listener turns into 503 with Retry-After).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buckets::BucketStore;
use crate::buffer::{DiskBuffer, MemoryBuffer, OutputBuffer, Refusal};
use crate::config::{self, BufferMode, Config, InputCommon};
use crate::filter::Filter;
use crate::metric::Metric;
use crate::plugins::{
    Accumulator, BuiltInput, BuiltOutput, DynInput, DynOutput, DynProcessor, ServiceContext,
    StartError,
};

/// The first retry of a failed output write waits this long; each further one doubles it.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between retries of a failed output write.
const RETRY_CAP: Duration = Duration::from_secs(60);

/// Counters for one output, read by the internal input and logs.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Points written successfully.
    pub written: AtomicU64,
    /// Failed write attempts.
    pub errors: AtomicU64,
    /// Points set aside as poison by the output.
    pub dead_lettered: AtomicU64,
}

/// Counters for one gather input, read by the internal input.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Metrics gathered (after the input's selectors).
    pub gathered: AtomicU64,
    /// Gathers that failed.
    pub errors: AtomicU64,
    /// Ticks skipped because the previous gather was still running.
    pub skipped: AtomicU64,
    /// Time the last gather took, in ns.
    pub gather_time_ns: AtomicU64,
    /// Gathered metrics the outputs could not take (full buffers): dropped.
    pub dropped: AtomicU64,
}

/// A service input's own counters, for the internal input: a measurement suffix
/// (`internal_<name>`) and its fields.
pub trait ServiceStats: Send + Sync + std::fmt::Debug {
    /// The plugin name, as in `internal_<name>`.
    fn name(&self) -> &'static str;
    /// Field names and values, now.
    fn fields(&self) -> Vec<(String, u64)>;
}

/// One output as the router sees it.
#[derive(Debug)]
pub struct OutputSlot {
    /// `outputs.NAME` or `outputs.NAME::alias`.
    pub id: String,
    /// Where admitted writes wait.
    pub buffer: OutputBuffer,
    /// Counters.
    pub stats: OutputStats,
    /// The output's selectors and modifiers: what of each write it takes.
    pub filter: Filter,
    /// The most points its buffer holds.
    pub buffer_limit: usize,
    batch_size: usize,
    flush_interval: Duration,
    flush_jitter: Duration,
}

/// Processors, router and buffers: what every producer delivers to.
pub struct Pipeline {
    processors: Mutex<Vec<ChainLink>>,
    has_processors: bool,
    outputs: Vec<Arc<OutputSlot>>,
    /// Local buckets, when `[[outputs.buckets]]` is configured: every write is appended to it
    /// durably before it is acknowledged.
    store: Option<Arc<BucketStore>>,
    /// The selectors of `[[outputs.buckets]]`.
    store_filter: Filter,
    /// Databases written to or created, for `SHOW DATABASES` (without a store).
    databases: Mutex<BTreeSet<String>>,
    /// `host` (unless omitted) and `[global_tags]`, for gathered metrics.
    agent_tags: Vec<(String, String)>,
    /// Whether writes can go as line protocol straight to the store and disk buffers
    /// ([`Pipeline::deliver_lp`]): no processor, no selector on an output, no memory buffer.
    lp_path: bool,
    /// Writes refused for lack of room.
    pub refused: AtomicU64,
    /// Per gather input counters, by input id.
    inputs_stats: Mutex<Vec<(String, Arc<InputStats>)>>,
    /// Service inputs' counters, by input id.
    services: Mutex<Vec<(String, Arc<dyn ServiceStats>)>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Routes `metrics` to every output: admitted whole into each buffer, or refused.
    ///
    /// Processors run first, inline. A write that processors reduce to nothing is admitted.
    ///
    /// # Errors
    /// The first [`Refusal`] met; nothing of the write is queued anywhere then.
    pub async fn deliver(&self, metrics: Vec<Metric>) -> Result<(), Refusal> {
        let metrics = self.process(metrics);
        if metrics.is_empty() {
            return Ok(());
        }
        let store_view = match &self.store {
            Some(_) if !self.store_filter.is_empty() => {
                Some(filtered(&metrics, &self.store_filter))
            }
            _ => None,
        };
        let chunk: Arc<[Metric]> = metrics.into();
        // What each output takes: the whole write, or what its selectors keep.
        let mut reservations = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            let view = if out.filter.is_empty() {
                Arc::clone(&chunk)
            } else {
                let kept = filtered(&chunk, &out.filter);
                if kept.is_empty() {
                    continue;
                }
                kept.into()
            };
            match out.buffer.reserve(view.len()) {
                Ok(r) => reservations.push((r, view)),
                Err(refusal) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(refusal); // dropping `reservations` gives their room back
                }
            }
        }
        if let Some(store) = &self.store {
            // Durable first: if the store refuses, the reservations are dropped unused and
            // nothing of the write is queued anywhere.
            let view = store_view.as_deref().unwrap_or(&chunk);
            if !view.is_empty() {
                if let Err(refusal) = store.append(view).await {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(refusal);
                }
            }
        }
        // Disk buffers next (each resolves after its fsync), memory buffers last, so a failed
        // fsync leaves the memory outputs untouched. A disk buffer that committed before
        // another one failed keeps the write: the writer's retry makes it a duplicate there,
        // which InfluxDB-style outputs absorb (writes are idempotent per series and time).
        let (durable, memory): (Vec<_>, Vec<_>) =
            reservations.into_iter().partition(|(r, _)| r.is_durable());
        for (r, view) in durable {
            if let Err(refusal) = r.commit(view).await {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(refusal);
            }
        }
        for (r, view) in memory {
            r.commit(view).await?;
        }
        Ok(())
    }

    /// Whether [`Pipeline::deliver_lp`] may be used: nothing on the way needs metrics.
    pub fn takes_lp(&self) -> bool {
        self.lp_path
    }

    /// Admits a write that is already normalized line protocol of one origin, into the store
    /// and every (disk) buffer, all or nothing, as [`Pipeline::deliver`] does, without making a
    /// metric of any point. Only when [`Pipeline::takes_lp`].
    ///
    /// # Errors
    /// As [`Pipeline::deliver`].
    pub async fn deliver_lp(&self, write: LpWrite<'_>) -> Result<(), Refusal> {
        debug_assert!(self.lp_path, "deliver_lp on a pipeline that needs metrics");
        if write.points == 0 {
            return Ok(());
        }
        let refused = |r: Refusal| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            r
        };
        let mut reservations = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            reservations.push(out.buffer.reserve(write.points).map_err(refused)?);
        }
        let (db, rp) = (write.origin.db.as_str(), write.origin.rp.as_str());
        // One copy of the record, shared by the store, the disk buffers and their log writers.
        let record =
            crate::buffer::record::run_lp_record(db, rp, write.points, write.lp, write.head);
        let record = Arc::new(record.into());
        if let Some(store) = &self.store {
            store
                .append_lp(
                    db,
                    rp,
                    write.points,
                    write.min_time,
                    &write.names,
                    Arc::clone(&record),
                )
                .await
                .map_err(refused)?;
        }
        for r in reservations {
            let crate::buffer::AnyReservation::Disk(r) = r else {
                unreachable!("lp_path is only set when every buffer is on disk");
            };
            r.commit_payload(Arc::clone(&record), write.points)
                .await
                .map_err(refused)?;
        }
        Ok(())
    }

    fn process(&self, metrics: Vec<Metric>) -> Vec<Metric> {
        if !self.has_processors {
            return metrics; // no lock on the write path when there is nothing to run
        }
        let mut chain = self.processors.lock().unwrap_or_else(|e| e.into_inner());
        run_chain(&mut chain, metrics)
    }

    /// Records that `db` exists (written to). The store keeps its own catalog.
    pub fn note_database(&self, db: &str) {
        if self.store.is_some() {
            return;
        }
        let mut dbs = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        if !dbs.contains(db) {
            dbs.insert(db.to_owned());
        }
    }

    /// `CREATE DATABASE`: a bucket in the store, or a name remembered without one.
    ///
    /// # Errors
    /// The store refused the name or could not create it.
    pub fn create_database(&self, db: &str) -> Result<(), String> {
        match &self.store {
            Some(store) => store.create_database(db),
            None => {
                self.databases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(db.to_owned());
                Ok(())
            }
        }
    }

    /// `DROP DATABASE`: removes its buckets (or forgets the name without a store).
    ///
    /// # Errors
    /// The store could not remove it.
    pub fn drop_database(&self, db: &str) -> Result<(), String> {
        match &self.store {
            Some(store) => store.drop_database(db),
            None => {
                self.databases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(db);
                Ok(())
            }
        }
    }

    /// Known databases, sorted: the store's buckets, or those written to since start.
    pub fn databases(&self) -> Vec<String> {
        if let Some(store) = &self.store {
            return store.databases();
        }
        let dbs = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        dbs.iter().cloned().collect()
    }

    /// The local bucket store, if configured.
    pub fn store(&self) -> Option<&Arc<BucketStore>> {
        self.store.as_ref()
    }

    /// `host` and `[global_tags]`: what gathered metrics carry.
    pub fn agent_tags(&self) -> &[(String, String)] {
        &self.agent_tags
    }

    /// The outputs, in config order.
    pub fn outputs(&self) -> &[Arc<OutputSlot>] {
        &self.outputs
    }

    /// Counters of the gather input `id`, registered on first use.
    pub fn input_stats(&self, id: &str) -> Arc<InputStats> {
        let mut list = self.inputs_stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = list.iter().find(|(i, _)| i == id) {
            return Arc::clone(s);
        }
        let s = Arc::new(InputStats::default());
        list.push((id.to_owned(), Arc::clone(&s)));
        s
    }

    /// Every gather input's counters, by id.
    pub fn all_input_stats(&self) -> Vec<(String, Arc<InputStats>)> {
        self.inputs_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Registers a service input's counters.
    pub fn register_service(&self, id: &str, stats: Arc<dyn ServiceStats>) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id.to_owned(), stats));
    }

    /// Every service input's counters, by id.
    pub fn services(&self) -> Vec<(String, Arc<dyn ServiceStats>)> {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A write as normalized line protocol (one point per line, ns timestamps) of one origin.
#[derive(Debug)]
pub struct LpWrite<'a> {
    /// Where the write goes (db and rp, never empty here).
    pub origin: &'a crate::metric::Origin,
    /// The points, after `head` bytes left for the record header.
    pub lp: String,
    /// The bytes left at the start of `lp` ([`crate::buffer::record::run_header_len`]).
    pub head: usize,
    /// Lines in `lp`.
    pub points: usize,
    /// The oldest timestamp in `lp`.
    pub min_time: i64,
    /// The measurements in `lp`, each once.
    pub names: Vec<String>,
}

/// A copy of what `filter` keeps of `metrics`, modifiers applied.
fn filtered(metrics: &[Metric], filter: &Filter) -> Vec<Metric> {
    let mut kept: Vec<Metric> = metrics
        .iter()
        .filter(|m| filter.select(m))
        .cloned()
        .collect();
    if filter.has_modifiers() {
        filter.apply(&mut kept);
    }
    kept
}

/// One processor in the chain, with its selectors: metrics they do not select bypass it.
pub struct ChainLink {
    /// `processors.NAME` or `processors.NAME::alias`.
    pub id: String,
    filter: Filter,
    processor: Box<dyn DynProcessor>,
}

impl std::fmt::Debug for ChainLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainLink")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ChainLink {
    /// Runs the processor on the metrics its selectors choose (with its modifiers applied);
    /// the others pass by unchanged, after the processed ones.
    pub fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        if self.filter.is_empty() {
            return self.processor.apply(metrics);
        }
        let mut bypass = Vec::new();
        if self.filter.has_selectors() {
            let (chosen, other): (Vec<Metric>, Vec<Metric>) =
                metrics.into_iter().partition(|m| self.filter.select(m));
            metrics = chosen;
            bypass = other;
        }
        if self.filter.has_modifiers() {
            self.filter.apply(&mut metrics);
        }
        let mut out = if metrics.is_empty() {
            metrics
        } else {
            self.processor.apply(metrics)
        };
        out.append(&mut bypass);
        out
    }
}

/// The processors of a config as a chain, in order: what the pipeline runs on every write,
/// exposed for benchmarks and `--test`.
pub fn chain(
    processors: Vec<config::Configured<Box<dyn DynProcessor>, config::ProcessorCommon>>,
) -> Vec<ChainLink> {
    processors
        .into_iter()
        .map(|p| ChainLink {
            id: p.id("processors"),
            filter: p.filter,
            processor: p.plugin,
        })
        .collect()
}

/// Runs `metrics` through `chain`, in order.
pub fn run_chain(chain: &mut [ChainLink], mut metrics: Vec<Metric>) -> Vec<Metric> {
    for link in chain {
        if metrics.is_empty() {
            break;
        }
        metrics = link.apply(metrics);
    }
    metrics
}

/// `[global_tags]` and, unless `omit_hostname`, `host`: the tags gathered metrics carry, sorted.
fn agent_tags(
    agent: &config::AgentSection,
    global: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut tags = global.clone();
    if !agent.omit_hostname {
        tags.insert("host".into(), config::hostname(agent));
    }
    tags.into_iter().collect()
}

/// Adds `tags` to `m` where it does not already have the key.
pub fn add_missing_tags(m: &mut Metric, tags: &[(String, String)]) {
    for (k, v) in tags {
        if m.tag(k).is_none() {
            m.add_tag(k.clone(), v.clone());
        }
    }
}

/// A started agent: stop it with [`Running::shutdown`], or hand it over to a reloaded config
/// with [`Running::stop_for_reload`].
#[derive(Debug)]
pub struct Running {
    /// The pipeline every producer delivers to.
    pub pipeline: Arc<Pipeline>,
    inputs_stop: CancellationToken,
    inputs: TaskTracker,
    /// Flush what is buffered, then stop.
    outputs_stop: CancellationToken,
    /// Stop after the write in flight, leaving the buffer as it is (a reload).
    outputs_abort: CancellationToken,
    outputs: TaskTracker,
    sockets: crate::http::Sockets,
    /// `[agent] data_dir`, which a reload may not change.
    data_dir: std::path::PathBuf,
    /// Held while the agent keeps any state in `data_dir` (local buckets, disk buffers).
    data_dir_lock: Option<Arc<crate::durable::DataDirLock>>,
}

/// What a running agent hands to the one a reload starts: listening sockets, output buffers and
/// local buckets, so nothing buffered or acknowledged is dropped and no connection is refused.
#[derive(Debug, Default)]
pub struct Carry {
    /// Listening sockets by address.
    pub sockets: crate::http::Sockets,
    buffers: Vec<(String, OutputBuffer)>,
    store: Option<Arc<BucketStore>>,
    data_dir_lock: Option<Arc<crate::durable::DataDirLock>>,
}

impl Carry {
    fn is_empty(&self) -> bool {
        self.buffers.is_empty() && self.store.is_none()
    }

    /// Closes what the new configuration did not take: the buffers of outputs it removed (what
    /// a memory buffer still holds is lost then, and logged) and the store if it has none.
    pub async fn release(self, running: &Running) {
        for (id, buffer) in &self.buffers {
            if running.pipeline.outputs().iter().any(|o| o.id == *id) {
                continue;
            }
            buffer.close();
            match buffer {
                OutputBuffer::Memory(_) if !buffer.is_empty() => tracing::warn!(
                    output = %id,
                    points = buffer.len(),
                    "output removed by the reload: the points its memory buffer held are dropped"
                ),
                OutputBuffer::Disk(_) if !buffer.is_empty() => tracing::warn!(
                    output = %id,
                    points = buffer.len(),
                    "output removed by the reload: its disk buffer is kept and resumes if the output comes back"
                ),
                _ => {}
            }
        }
        if let Some(store) = self.store {
            if running.pipeline.store().is_none() {
                let _ = tokio::task::spawn_blocking(move || store.close()).await;
            }
        }
    }
}

/// Moves every point queued in `from` to `to` (an output whose buffer kind changed on reload).
async fn move_points(id: &str, from: &OutputBuffer, to: &OutputBuffer) {
    loop {
        let batch = match from.peek(10_000).await {
            Ok(b) if b.is_empty() => return,
            Ok(b) => b,
            Err(error) => {
                tracing::error!(output = %id, %error, "cannot read the old buffer; its points stay where they are");
                return;
            }
        };
        let n = batch.len();
        let moved = match to.reserve(n) {
            Ok(r) => r.commit(batch.into()).await,
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = moved {
            tracing::error!(output = %id, %refusal, "cannot move buffered points to the new buffer; they stay in the old one");
            return;
        }
        if let Err(error) = from.consume(n).await {
            tracing::error!(output = %id, %error, "moved points may be sent twice");
        }
    }
}

/// Builds the pipeline, starts output tasks, service inputs and gather schedulers.
///
/// # Errors
/// A service input that cannot start (an address in use); already started parts are stopped.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, &Carry::default()).await
}

/// As [`start`], taking over what `carry` holds from the agent a reload replaces: sockets,
/// buffers of outputs with the same id, and local buckets. `carry` is left as it was: on
/// failure the caller still has everything and can start the previous configuration again.
///
/// # Errors
/// As [`start`]; carried buffers and store are left open.
pub async fn start_with(config: Config, carry: &Carry) -> Result<Running, StartError> {
    let Config {
        agent,
        global_tags,
        inputs,
        processors,
        outputs,
        ..
    } = config;
    if outputs.is_empty() {
        // Writes would be acknowledged and kept nowhere: refuse to run rather than drop them.
        return Err(StartError {
            message: "no [[outputs.*]] configured: nothing would keep the points; add [[outputs.buckets]] for local storage".into(),
            source: None,
        });
    }
    // Any state kept in data_dir (local buckets, a disk buffer) is kept under its lock: a
    // second agent on the same directory would append to the same spools and cursors, and
    // one agent's acknowledged points would be taken as delivered by the other.
    let keeps_state = outputs.iter().any(|o| match o.plugin {
        BuiltOutput::Store(_) => true,
        BuiltOutput::Batch(_) => o.common.buffer == BufferMode::Disk,
    });
    let data_dir_lock = match &carry.data_dir_lock {
        Some(lock) => Some(Arc::clone(lock)),
        None if keeps_state => {
            let dir = agent.data_dir.clone();
            let locked = tokio::task::spawn_blocking(move || crate::durable::lock_data_dir(&dir))
                .await
                .map_err(|e| StartError {
                    message: format!("locking data_dir: {e}"),
                    source: None,
                })?;
            Some(Arc::new(locked.map_err(|e| StartError {
                message: crate::error_chain(&e),
                source: None,
            })?))
        }
        None => None,
    };
    let agent_tags = agent_tags(&agent, &global_tags);
    let has_processors = !processors.is_empty();
    let mut output_tasks = Vec::new();
    let mut slots = Vec::new();
    let mut store = None;
    let mut store_filter = Filter::default();
    for o in outputs {
        let id = o.id("outputs");
        let output = match o.plugin {
            BuiltOutput::Batch(output) => output,
            BuiltOutput::Store(_) if carry.store.is_some() => {
                tracing::info!(output = %id, "local buckets kept open across the reload (changes to their options apply at the next start)");
                store = carry.store.clone();
                store_filter = o.filter;
                continue;
            }
            BuiltOutput::Store(options) => {
                let options = options(&agent.data_dir);
                let lock = Arc::clone(data_dir_lock.as_ref().expect("taken above for a store"));
                let opened =
                    tokio::task::spawn_blocking(move || BucketStore::open_locked(options, lock))
                        .await
                        .map_err(|e| StartError {
                            message: format!("{id}: {e}"),
                            source: None,
                        })?;
                let opened = opened.map_err(|e| StartError {
                    message: format!("{id}: {}", crate::error_chain(&e)),
                    source: None,
                })?;
                tracing::info!(output = %id, data_dir = %agent.data_dir.display(), "local buckets open");
                store = Some(opened);
                store_filter = o.filter;
                continue;
            }
        };
        let flush_interval = config::flush_interval(&agent, &o.common);
        let capacity = o.common.buffer_limit.unwrap_or(agent.metric_buffer_limit);
        let carried = carry.buffers.iter().find(|(i, _)| *i == id).map(|(_, b)| b);
        let same_kind = |b: &OutputBuffer| {
            matches!(
                (b, o.common.buffer),
                (OutputBuffer::Memory(_), BufferMode::Memory)
                    | (OutputBuffer::Disk(_), BufferMode::Disk)
            )
        };
        let buffer = match o.common.buffer {
            _ if carried.is_some_and(same_kind) => {
                tracing::debug!(output = %id, "buffer kept across the reload");
                carried.expect("checked").clone()
            }
            BufferMode::Memory => {
                OutputBuffer::Memory(MemoryBuffer::new(id.clone(), capacity, flush_interval))
            }
            BufferMode::Disk => {
                let dir = agent.data_dir.join("buffers").join(buffer_dir_name(&id));
                let max_bytes = o.common.buffer_max_bytes.map_or(0, |s| s.0);
                let name = id.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    DiskBuffer::open(name, &dir, capacity, max_bytes, flush_interval)
                })
                .await
                .map_err(|e| StartError {
                    message: format!("{id}: {e}"),
                    source: None,
                })?;
                OutputBuffer::Disk(opened.map_err(|e| StartError {
                    message: format!("{id}: cannot open its disk buffer"),
                    source: Some(e),
                })?)
            }
        };
        if let Some(old) = carried.filter(|b| !same_kind(b)) {
            // The output's buffer kind changed: its queue moves to the new buffer.
            move_points(&id, old, &buffer).await;
        }
        let slot = Arc::new(OutputSlot {
            buffer,
            id,
            filter: o.filter,
            buffer_limit: capacity,
            stats: OutputStats::default(),
            batch_size: o
                .common
                .metric_batch_size
                .unwrap_or(agent.metric_batch_size)
                .max(1),
            flush_interval,
            flush_jitter: o.common.flush_jitter.unwrap_or(agent.flush_jitter).0,
        });
        output_tasks.push((Arc::clone(&slot), output));
        slots.push(slot);
    }
    let lp_path = !has_processors
        && store_filter.is_empty()
        && slots.iter().all(|o: &Arc<OutputSlot>| {
            o.filter.is_empty() && matches!(o.buffer, OutputBuffer::Disk(_))
        });
    let pipeline = Arc::new(Pipeline {
        lp_path,
        has_processors,
        processors: Mutex::new(chain(processors)),
        outputs: slots,
        store,
        store_filter,
        databases: Mutex::new(BTreeSet::new()),
        agent_tags,
        refused: AtomicU64::new(0),
        inputs_stats: Mutex::new(Vec::new()),
        services: Mutex::new(Vec::new()),
    });
    let running = Running {
        pipeline: Arc::clone(&pipeline),
        inputs_stop: CancellationToken::new(),
        inputs: TaskTracker::new(),
        outputs_stop: CancellationToken::new(),
        outputs_abort: CancellationToken::new(),
        outputs: TaskTracker::new(),
        sockets: carry.sockets.clone(),
        data_dir: agent.data_dir.clone(),
        data_dir_lock,
    };
    for (slot, output) in output_tasks {
        let stop = running.outputs_stop.clone();
        let abort = running.outputs_abort.clone();
        running.outputs.spawn(run_output(slot, output, stop, abort));
    }
    for input in inputs {
        let id = input.id("inputs");
        match input.plugin {
            BuiltInput::Service(service) => {
                let cx = ServiceContext {
                    shape: Arc::new(InputShape::new(input.common, input.filter)),
                    pipeline: Arc::clone(&pipeline),
                    shutdown: running.inputs_stop.clone(),
                    tracker: running.inputs.clone(),
                    id: id.clone(),
                    sockets: carry.sockets.clone(),
                };
                if let Err(e) = service.start(cx).await {
                    if carry.is_empty() {
                        running.shutdown(Duration::from_secs(5)).await;
                    } else {
                        // Leave carried buffers and store open for the caller.
                        running.stop_for_reload(Duration::from_secs(5)).await;
                    }
                    return Err(e);
                }
            }
            BuiltInput::Gather(mut gather) => {
                gather.attach(&pipeline);
                let c = &input.common;
                let schedule = Schedule {
                    interval: c.interval.unwrap_or(agent.interval).0,
                    round: agent.round_interval,
                    jitter: c.collection_jitter.unwrap_or(agent.collection_jitter).0,
                    offset: c.collection_offset.unwrap_or(agent.collection_offset).0,
                    precision: c.precision.unwrap_or(agent.precision).0,
                };
                running.inputs.spawn(run_input(
                    id,
                    gather,
                    InputShape::new(input.common, input.filter),
                    schedule,
                    Arc::clone(&pipeline),
                    running.inputs_stop.clone(),
                ));
            }
        }
    }
    Ok(running)
}

impl Running {
    /// Stops inputs (in-flight requests finish into the buffers) and output tasks (after the
    /// write in flight), leaving buffers, store and sockets open; returns them for the agent a
    /// reload starts ([`start_with`]).
    pub async fn stop_for_reload(&self, timeout: Duration) -> Carry {
        let deadline = tokio::time::Instant::now() + timeout;
        self.inputs_stop.cancel();
        self.inputs.close();
        let _ = tokio::time::timeout_at(deadline, self.inputs.wait()).await;
        self.outputs_abort.cancel();
        self.outputs.close();
        if tokio::time::timeout_at(deadline, self.outputs.wait())
            .await
            .is_err()
        {
            tracing::warn!("an output is still writing after the reload's timeout; that batch may be sent twice");
        }
        Carry {
            sockets: self.sockets.clone(),
            buffers: self
                .pipeline
                .outputs()
                .iter()
                .map(|o| (o.id.clone(), o.buffer.clone()))
                .collect(),
            store: self.pipeline.store().cloned(),
            data_dir_lock: self.data_dir_lock.clone(),
        }
    }

    /// Why `config` cannot replace this configuration by a reload, if it cannot: it moves
    /// `[agent] data_dir` (the buckets and spools stay where they are; writing on in the old
    /// directory would hide that data at the next start, and moving would copy it all).
    pub fn reload_refusal(&self, config: &Config) -> Option<String> {
        (config.agent.data_dir != self.data_dir).then(|| {
            format!(
                "[agent] data_dir cannot change by a reload (from {} to {}): restart the agent to use another directory",
                self.data_dir.display(),
                config.agent.data_dir.display()
            )
        })
    }

    /// Stops inputs (the listener answers 503 from now on), then flushes every buffer to its
    /// output, waiting at most `timeout` in all. Returns the points lost: those left in memory
    /// buffers (disk buffers keep theirs for the next start).
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        self.inputs_stop.cancel();
        for out in self.pipeline.outputs() {
            out.buffer.close();
        }
        self.inputs.close();
        let _ = tokio::time::timeout_at(deadline, self.inputs.wait()).await;
        if let Some(store) = self.pipeline.store() {
            // Every acknowledged write is already durable in its log; stop the compactor (which
            // may be mid-run: wait for it off the runtime's threads).
            let store = Arc::clone(store);
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
        self.outputs_stop.cancel();
        self.outputs.close();
        let _ = tokio::time::timeout_at(deadline, self.outputs.wait()).await;
        // What disk buffers still hold is safe and goes out after the next start; only memory
        // buffers lose what they hold.
        self.pipeline
            .outputs()
            .iter()
            .filter(|o| matches!(o.buffer, OutputBuffer::Memory(_)))
            .map(|o| o.buffer.len())
            .sum()
    }
}

/// How a gather input is scheduled.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Time between gathers.
    pub interval: Duration,
    /// Align ticks to multiples of `interval` since the epoch.
    pub round: bool,
    /// Random delay of up to this before each gather.
    pub jitter: Duration,
    /// Fixed delay after each tick.
    pub offset: Duration,
    /// Timestamps are truncated to a multiple of this (zero: kept).
    pub precision: Duration,
}

/// Truncates metric times to a multiple of `precision` (nothing when it is zero).
pub fn truncate_times(metrics: &mut [Metric], precision: Duration) {
    let p = precision.as_nanos().min(i64::MAX as u128) as i64;
    if p > 1 {
        for m in metrics {
            m.time -= m.time.rem_euclid(p);
        }
    }
}

async fn run_input(
    id: String,
    mut input: Box<dyn DynInput>,
    shape: InputShape,
    schedule: Schedule,
    pipeline: Arc<Pipeline>,
    stop: CancellationToken,
) {
    let interval = schedule.interval.max(Duration::from_millis(10));
    let first = if schedule.round {
        let now = now_ns() as u128;
        let step = interval.as_nanos();
        Duration::from_nanos((step - now % step) as u64)
    } else {
        Duration::ZERO
    };
    let start = tokio::time::Instant::now() + first + schedule.offset;
    let mut ticker = tokio::time::interval_at(start, interval);
    // A slow gather never bunches ticks up: the missed ones are skipped, logged and counted.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stats = pipeline.input_stats(&id);
    let mut rng = seed();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if !schedule.jitter.is_zero() {
            let delay = schedule.jitter.mul_f64(next_unit(&mut rng));
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        let began = tokio::time::Instant::now();
        let mut acc = Accumulator::new(now_ns());
        let result = input.gather(&mut acc).await;
        let took = began.elapsed();
        stats
            .gather_time_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        let skipped = (took.as_nanos() / interval.as_nanos()) as u64;
        if skipped > 0 {
            stats.skipped.fetch_add(skipped, Ordering::Relaxed);
            tracing::warn!(input = %id, took = ?took, interval = ?interval, skipped, "gather took longer than its interval; ticks skipped");
        }
        match result {
            Ok(()) => {
                let mut metrics = acc.into_metrics();
                shape.apply(&mut metrics, pipeline.agent_tags());
                truncate_times(&mut metrics, schedule.precision);
                let n = metrics.len();
                stats.gathered.fetch_add(n as u64, Ordering::Relaxed);
                if let Err(refusal) = pipeline.deliver(metrics).await {
                    static NOT_ADMITTED: crate::ratelimit::LogLimit =
                        crate::ratelimit::LogLimit::new(10, Duration::from_secs(60));
                    if let Some(suppressed) = NOT_ADMITTED.allow() {
                        tracing::warn!(input = %id, %refusal, points = n, suppressed, "gathered metrics dropped: the outputs could not take them");
                    }
                    stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            Err(error) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(input = %id, %error, "gather failed");
            }
        }
    }
}

/// What an input does to its metrics before they enter the pipeline, in Telegraf's order:
/// selectors on the raw metric, `name_override` then `name_prefix`/`name_suffix`, the plugin's
/// `tags`, the agent's tags, then the modifiers; a metric left without fields is dropped.
#[derive(Debug, Default)]
pub struct InputShape {
    common: InputCommon,
    plugin_tags: Vec<(String, String)>,
    filter: Filter,
}

impl InputShape {
    /// The shaping of an input with these shared options and selectors.
    pub fn new(common: InputCommon, filter: Filter) -> Self {
        let plugin_tags = common.tags.clone().into_iter().collect();
        InputShape {
            common,
            plugin_tags,
            filter,
        }
    }

    /// Whether shaping changes nothing but the agent's tags.
    pub fn is_plain(&self) -> bool {
        self.filter.is_empty()
            && self.plugin_tags.is_empty()
            && self.common.name_override.is_none()
            && self.common.name_prefix.is_none()
            && self.common.name_suffix.is_none()
    }

    /// Shapes `metrics` in place, adding `agent_tags` where a metric lacks the key.
    pub fn apply(&self, metrics: &mut Vec<Metric>, agent_tags: &[(String, String)]) {
        if self.is_plain() {
            if !agent_tags.is_empty() {
                for m in metrics.iter_mut() {
                    add_missing_tags(m, agent_tags);
                }
            }
            return;
        }
        let c = &self.common;
        metrics.retain_mut(|m| {
            if !self.filter.select(m) {
                return false;
            }
            m.rename_measurement(
                c.name_override.as_deref(),
                c.name_prefix.as_deref(),
                c.name_suffix.as_deref(),
            );
            add_missing_tags(m, &self.plugin_tags);
            add_missing_tags(m, agent_tags);
            self.filter.modify(m);
            !m.fields.is_empty()
        });
    }
}

async fn run_output(
    slot: Arc<OutputSlot>,
    mut output: Box<dyn DynOutput>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let mut rng = seed();
    let mut failures: u32 = 0;
    let mut last_report = tokio::time::Instant::now();
    loop {
        if abort.is_cancelled() {
            return; // a reload: the buffer goes on, as it is, with the new configuration
        }
        let stopping = stop.is_cancelled();
        if !stopping && slot.buffer.len() < slot.batch_size {
            // Wait for a full batch, the flush interval, or shutdown.
            let jitter = slot.flush_jitter.mul_f64(next_unit(&mut rng));
            let flush = tokio::time::sleep(slot.flush_interval + jitter);
            tokio::select! {
                () = stop.cancelled() => {}
                () = abort.cancelled() => return,
                () = flush => {}
                () = slot.buffer.wait_until_len(slot.batch_size) => {}
            }
        }
        let max = slot.batch_size * output.in_flight().max(1);
        let shared = output.shared_runs().filter(|_| output.in_flight() > 1);
        let attempt = match (&slot.buffer, shared) {
            (OutputBuffer::Disk(disk), Some(writer)) if disk.head() == 0 => {
                write_records_pipelined(&slot, disk, writer, output.in_flight(), &abort).await
            }
            (OutputBuffer::Disk(disk), _) if output.takes_runs() && disk.head() == 0 => {
                write_records(disk, &mut *output, max).await
            }
            (buffer, _) => write_metrics(buffer, &mut *output, max).await,
        };
        let written = match attempt {
            Attempt::Empty => {
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            Attempt::ReadFailed(error) => {
                tracing::error!(output = %slot.id, %error, "cannot read the disk buffer; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_BASE) => continue,
                }
            }
            Attempt::Written(points) => Ok(points),
            Attempt::Consumed => Ok(0),
            Attempt::Failed(points, error) => Err((points, error)),
        };
        slot.stats
            .dead_lettered
            .store(output.dead_lettered(), Ordering::Relaxed);
        match written {
            Ok(points) => {
                failures = 0;
                if points > 0 {
                    consume(&slot, points).await;
                }
            }
            Err((points, error)) => {
                failures = failures.saturating_add(1);
                slot.stats.errors.fetch_add(1, Ordering::Relaxed);
                let backoff =
                    backoff(failures, &mut rng).max(error.retry_after().unwrap_or_default());
                // Loud on the first failure, then on every doubling: a long outage cannot flood
                // the log.
                if failures.is_power_of_two() {
                    tracing::error!(
                        output = %slot.id,
                        error = %crate::error_chain(&error),
                        points,
                        queued = slot.buffer.len(),
                        failures,
                        retry_in = ?backoff,
                        "write failed; the batch stays buffered"
                    );
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        if failures >= 3 {
                            return; // shutting down and the output keeps failing: give up
                        }
                    }
                    () = abort.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
        if last_report.elapsed() >= STATS_EVERY {
            last_report = tokio::time::Instant::now();
            report(&slot, output.dead_lettered());
        }
    }
}

/// One attempt of an output task at writing what its buffer holds.
enum Attempt {
    Empty,
    ReadFailed(std::io::Error),
    /// Points written, to be consumed from the buffer.
    Written(usize),
    /// Points were written and consumed as they went.
    Consumed,
    Failed(usize, crate::plugins::WriteError),
}

/// Takes `points` written out of the output's buffer and counts them.
async fn consume(slot: &OutputSlot, points: usize) {
    if let Err(error) = slot.buffer.consume(points).await {
        tracing::error!(output = %slot.id, %error, "cannot persist the disk buffer cursor; these points may be sent again after a restart");
    }
    slot.stats
        .written
        .fetch_add(points as u64, Ordering::Relaxed);
}

/// How long one pipelined attempt goes on taking new batches.
const PIPELINE_SPAN: Duration = Duration::from_secs(5);

/// A batch sent and not yet consumed: its records, its points, the task sending it, and its
/// result once the task has reported.
struct Flying {
    records: usize,
    points: usize,
    task: tokio::task::JoinHandle<()>,
    done: Option<Result<(), crate::plugins::WriteError>>,
}

/// Keeps up to `in_flight` batches of whole disk buffer records in flight through `writer`,
/// starting the next batch as soon as any one completes, and consumes them in order (a batch
/// that completes early waits for those before it). Returns when the buffer has nothing more
/// to send, or at the first failure in order: batches still in flight are then cancelled and,
/// with the failed one, stay buffered (any of them that arrived is sent again; InfluxDB writes
/// are idempotent). Stops taking new batches after [`PIPELINE_SPAN`] or once `abort` (a reload)
/// is cancelled; a shutdown goes on sending, as the one-batch path does.
async fn write_records_pipelined(
    slot: &OutputSlot,
    disk: &Arc<DiskBuffer>,
    writer: Arc<dyn crate::plugins::SharedRuns>,
    in_flight: usize,
    abort: &CancellationToken,
) -> Attempt {
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let mut batches: std::collections::VecDeque<Flying> = std::collections::VecDeque::new();
    let mut first_id = 0usize; // id of batches[0]; ids count batches sent in this attempt
    let mut delivered = false;
    let mut more = true;
    let started = tokio::time::Instant::now();
    loop {
        let sending = batches.iter().filter(|b| b.done.is_none()).count();
        let mut room = in_flight.saturating_sub(sending);
        // A steady stream ends now and then, so the output task updates its counters and logs.
        more &= started.elapsed() < PIPELINE_SPAN;
        while more && room > 0 && !abort.is_cancelled() {
            let skip = batches.iter().map(|b| b.records).sum();
            let records = match disk.peek_records_after(skip, slot.batch_size).await {
                Ok(r) => r,
                Err(e) if batches.is_empty() && !delivered => return Attempt::ReadFailed(e),
                Err(_) => break, // the next attempt reports it
            };
            if records.is_empty() {
                more = false;
                break;
            }
            let id = first_id + batches.len();
            let (writer, target, report) = (Arc::clone(&writer), slot.id.clone(), report.clone());
            let count = records.len();
            let points = records.iter().map(|(n, _)| n).sum();
            let task = tokio::spawn(async move {
                let mut report = Report {
                    id,
                    target,
                    tx: Some(report),
                };
                let mut runs = Vec::new();
                for (_, payload) in &records {
                    let Some(r) = crate::buffer::record::shared_runs(payload) else {
                        let source = std::io::Error::other("undecodable buffer record");
                        let target = report.target.clone();
                        report.send(Err(crate::plugins::WriteError::Io { target, source }));
                        return;
                    };
                    runs.extend(r);
                }
                let result = writer.write_batch(&runs).await;
                report.send(result);
            });
            batches.push_back(Flying {
                records: count,
                points,
                task,
                done: None,
            });
            room -= 1;
        }
        if batches.is_empty() {
            break;
        }
        // The next report: every task sends exactly one (see `Report`), and this function
        // holds a sender, so the wait ends.
        if batches.front().is_some_and(|b| b.done.is_none()) {
            if let Some((id, result)) = reports.recv().await {
                if let Some(b) = id.checked_sub(first_id).and_then(|i| batches.get_mut(i)) {
                    b.done = Some(result);
                }
            }
        }
        // Consume the completed prefix, in order.
        while batches.front().is_some_and(|b| b.done.is_some()) {
            let b = batches.pop_front().expect("checked above");
            first_id += 1;
            if let Some(Err(error)) = b.done {
                for rest in batches {
                    rest.task.abort();
                }
                return Attempt::Failed(b.points, error);
            }
            delivered = true;
            consume(slot, b.points).await;
        }
    }
    if delivered {
        Attempt::Consumed
    } else {
        Attempt::Empty
    }
}

/// A batch task's report of its result: sent once, by the task or, if it panics, when it
/// unwinds.
struct Report {
    id: usize,
    target: String,
    tx: Option<tokio::sync::mpsc::UnboundedSender<(usize, Result<(), crate::plugins::WriteError>)>>,
}

impl Report {
    fn send(&mut self, result: Result<(), crate::plugins::WriteError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.id, result));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if self.tx.is_none() {
            return; // reported: the usual case, nothing to build
        }
        let source = std::io::Error::other("the task sending this batch ended without a result");
        let target = std::mem::take(&mut self.target);
        self.send(Err(crate::plugins::WriteError::Io { target, source }));
    }
}

/// Writes up to `max` points as decoded metrics.
async fn write_metrics(buffer: &OutputBuffer, output: &mut dyn DynOutput, max: usize) -> Attempt {
    let batch = match buffer.peek(max).await {
        Ok(batch) if batch.is_empty() => return Attempt::Empty,
        Ok(batch) => batch,
        Err(e) => return Attempt::ReadFailed(e),
    };
    match output.write(&batch).await {
        Ok(()) => Attempt::Written(batch.len()),
        Err(e) => Attempt::Failed(batch.len(), e),
    }
}

/// Writes whole disk buffer records, about `max` points, as line protocol runs.
async fn write_records(disk: &Arc<DiskBuffer>, output: &mut dyn DynOutput, max: usize) -> Attempt {
    let records = match disk.peek_records(max).await {
        Ok(r) if r.is_empty() => return Attempt::Empty,
        Ok(r) => r,
        Err(e) => return Attempt::ReadFailed(e),
    };
    let points: usize = records.iter().map(|(n, _)| n).sum();
    let mut runs = Vec::new();
    for (_, payload) in &records {
        match crate::buffer::record::shared_runs(payload) {
            Some(r) => runs.extend(r),
            None => return Attempt::ReadFailed(std::io::Error::other("undecodable buffer record")),
        }
    }
    match output.write_runs(&runs).await {
        Ok(()) => Attempt::Written(points),
        Err(e) => Attempt::Failed(points, e),
    }
}

/// How often each output logs its counters.
const STATS_EVERY: Duration = Duration::from_secs(60);

fn report(slot: &OutputSlot, dead_lettered: u64) {
    tracing::info!(
        output = %slot.id,
        queued = slot.buffer.len(),
        queued_bytes = slot.buffer.bytes(),
        oldest_undelivered_s = slot.buffer.oldest_age().map_or(0, |d| d.as_secs()),
        delivered = slot.stats.written.load(Ordering::Relaxed),
        retried = slot.stats.errors.load(Ordering::Relaxed),
        dead_lettered,
        "output status"
    );
}

/// The directory name of an output's disk buffer: its id, with anything but `[A-Za-z0-9_-]`
/// encoded (`outputs.file::good` → `outputs%2Efile%3A%3Agood`).
fn buffer_dir_name(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(n-1))].
fn backoff(failures: u32, rng: &mut u64) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(RETRY_CAP).mul_f64(next_unit(rng))
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn seed() -> u64 {
    (now_ns() as u64) ^ 0x9E37_79B9_7F4A_7C15 | 1
}

/// A uniform number in [0, 1) from a xorshift state: jitter needs spread, not quality.
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// How far apart `--test` and `--once` gather inputs that report rates, so they have some.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Gathers every gather input once and returns the shaped metrics (for `--test`/`--once`).
/// Inputs that report deltas (cpu usage, diskio rates) gather twice, [`RATE_WINDOW`] apart,
/// and only the second gather is kept.
pub async fn gather_once(config: &mut Config) -> Vec<Metric> {
    let agent_tags = agent_tags(&config.agent, &config.global_tags);
    let mut primed = false;
    for input in &mut config.inputs {
        if let BuiltInput::Gather(g) = &mut input.plugin {
            if g.needs_two_gathers() {
                let mut acc = Accumulator::new(now_ns());
                let _ = g.gather(&mut acc).await;
                primed = true;
            }
        }
    }
    if primed {
        tokio::time::sleep(RATE_WINDOW).await;
    }
    let mut out = Vec::new();
    for input in &mut config.inputs {
        let id = input.id("inputs");
        if let BuiltInput::Gather(g) = &mut input.plugin {
            let mut acc = Accumulator::new(now_ns());
            match g.gather(&mut acc).await {
                Ok(()) => {
                    let mut metrics = acc.into_metrics();
                    let shape = InputShape::new(input.common.clone(), input.filter.clone());
                    shape.apply(&mut metrics, &agent_tags);
                    let precision = input.common.precision.unwrap_or(config.agent.precision).0;
                    truncate_times(&mut metrics, precision);
                    out.extend(metrics);
                }
                Err(error) => tracing::error!(input = %id, %error, "gather failed"),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let mut rng = seed();
        for n in 1..40 {
            let b = backoff(n, &mut rng);
            assert!(b <= RETRY_CAP);
            assert!(b <= RETRY_BASE * 2u32.pow((n - 1).min(6)));
        }
    }

    #[test]
    fn decorate_keeps_existing_tags() {
        let mut m = Metric::new("cpu", 0);
        m.add_tag("host", "remote");
        m.add_field("v", crate::metric::FieldValue::Int(1));
        let common = InputCommon {
            name_prefix: Some("p_".into()),
            name_suffix: Some("_s".into()),
            tags: [
                ("dc".to_string(), "x".to_string()),
                ("host".into(), "y".into()),
            ]
            .into(),
            ..InputCommon::default()
        };
        let mut ms = vec![m];
        InputShape::new(common, Filter::default()).apply(
            &mut ms,
            &[("host".into(), "me".into()), ("env".into(), "prod".into())],
        );
        assert_eq!(ms[0].name, "p_cpu_s");
        assert_eq!(ms[0].tag("host"), Some("remote"));
        assert_eq!(ms[0].tag("dc"), Some("x"));
        assert_eq!(ms[0].tag("env"), Some("prod"));
    }

    #[test]
    fn input_selectors_see_the_raw_metric_and_modifiers_the_decorated_one() {
        let filter: crate::filter::FilterConfig = toml::from_str(
            "namepass = [\"cpu\"]\ntaginclude = [\"dc\", \"cpu\"]\n[tagdrop]\ncpu = [\"cpu7\"]",
        )
        .unwrap();
        let common = InputCommon {
            name_prefix: Some("sys_".into()),
            tags: [("dc".to_string(), "x".to_string())].into(),
            ..InputCommon::default()
        };
        let shape = InputShape::new(common, Filter::compile(&filter).unwrap());
        let mut ms = Vec::new();
        for (name, cpu) in [("cpu", "cpu0"), ("cpu", "cpu7"), ("mem", "cpu0")] {
            let mut m = Metric::new(name, 0);
            m.add_tag("cpu", cpu);
            m.add_field("v", crate::metric::FieldValue::Int(1));
            ms.push(m);
        }
        shape.apply(&mut ms, &[("host".into(), "me".into())]);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].name, "sys_cpu");
        // `dc` came from the plugin's tags and is kept; `host` (agent) is removed by taginclude.
        assert_eq!(
            ms[0].tags,
            vec![("cpu".into(), "cpu0".into()), ("dc".into(), "x".into())]
        );
    }

    #[test]
    fn metrics_a_processor_does_not_select_bypass_it() {
        let config = crate::config::from_texts(
            &[(
                std::path::PathBuf::from("t.toml"),
                "[[processors.override]]\n  order = 1\n  name_suffix = \"_a\"\n  namepass = [\"x*\"]\n  fieldexclude = [\"drop\"]\n[[processors.override]]\n  name_prefix = \"first_\"\n".into(),
            )],
            |_| None,
        )
        .unwrap();
        let mut links = chain(config.processors);
        let mut x = Metric::new("x", 0);
        x.add_field("v", crate::metric::FieldValue::Int(1));
        x.add_field("drop", crate::metric::FieldValue::Int(1));
        let mut y = Metric::new("y", 0);
        y.add_field("drop", crate::metric::FieldValue::Int(1));
        // Unordered runs first: names get `first_`, so `x*` no longer matches anything.
        let out = run_chain(&mut links, vec![x.clone(), y.clone()]);
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["first_x", "first_y"]);
        // The ordered one alone: x is chosen (and loses `drop`), y bypasses untouched.
        let out = run_chain(&mut links[1..], vec![x, y]);
        assert_eq!(out[0].name, "x_a");
        assert_eq!(out[0].fields.len(), 1);
        assert_eq!(out[1].name, "y");
        assert_eq!(out[1].fields.len(), 1);
    }

    /// An input that takes `delay` to gather one metric.
    struct Sleepy {
        delay: Duration,
    }

    impl crate::plugins::Input for Sleepy {
        const NAME: &'static str = "sleepy";
        type Config = ();
        fn new(
            _: (),
            _: &crate::plugins::BuildContext,
        ) -> Result<Self, crate::plugins::BuildError> {
            Ok(Sleepy {
                delay: Duration::ZERO,
            })
        }
        async fn gather(
            &mut self,
            acc: &mut Accumulator,
        ) -> Result<(), crate::plugins::GatherError> {
            tokio::time::sleep(self.delay).await;
            acc.add(
                "sleepy",
                &[],
                vec![("v", crate::metric::FieldValue::Int(1))],
            );
            Ok(())
        }
    }

    fn sleepy(name: &str, delay: Duration) -> config::Configured<BuiltInput, InputCommon> {
        config::Configured {
            name: "sleepy".to_owned(),
            at: config::Location {
                file: Arc::from(std::path::Path::new("test.toml")),
                line: 1,
                column: 1,
            },
            common: InputCommon {
                alias: Some(name.to_owned()),
                ..InputCommon::default()
            },
            filter: Filter::default(),
            plugin: BuiltInput::Gather(Box::new(Sleepy { delay })),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_gather_skips_its_ticks_and_delays_no_other_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.lp");
        let text = format!(
            "[agent]\ninterval = \"100ms\"\nround_interval = false\nomit_hostname = true\nprecision = \"1s\"\ndata_dir = \"{}\"\n[[outputs.file]]\nfiles = [\"{}\"]\nbuffer = \"memory\"\nflush_interval = \"50ms\"\n",
            dir.path().display(),
            out.display()
        );
        let mut config =
            config::from_texts(&[(std::path::PathBuf::from("t.toml"), text)], |_| None).unwrap();
        config
            .inputs
            .push(sleepy("slow", Duration::from_millis(350)));
        config.inputs.push(sleepy("fast", Duration::ZERO));
        let began = std::time::Instant::now();
        let running = start(config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let slow = running.pipeline.input_stats("inputs.sleepy::slow");
        let fast = running.pipeline.input_stats("inputs.sleepy::fast");
        running.shutdown(Duration::from_secs(5)).await;
        let elapsed = began.elapsed();
        let skipped = slow.skipped.load(Ordering::Relaxed);
        let slow_gathered = slow.gathered.load(Ordering::Relaxed);
        let fast_gathered = fast.gathered.load(Ordering::Relaxed);
        // Gathers of 350 ms never overlap (at most one per 350 ms of the run, plus the one cut
        // short by the stop), each counting the 3 ticks it missed; the fast input is not held
        // back by the slow one.
        let most = (elapsed.as_millis() / 350) as u64 + 1;
        assert!(
            (1..=most).contains(&slow_gathered),
            "slow gathered {slow_gathered} in {elapsed:?}"
        );
        assert!(
            skipped >= 3 * slow_gathered,
            "skipped {skipped} in {slow_gathered} gathers"
        );
        assert!(
            fast_gathered > slow_gathered,
            "fast gathered {fast_gathered}, slow {slow_gathered}"
        );
        // precision = 1s: every timestamp a whole second.
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(!text.is_empty());
        for line in text.lines() {
            let t: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(t % 1_000_000_000, 0, "{line}");
        }
    }

    #[test]
    fn truncation_and_offset_schedule() {
        let mut ms = vec![Metric::new("m", 1_999_999_999), Metric::new("m", -1)];
        truncate_times(&mut ms, Duration::from_secs(1));
        assert_eq!(ms[0].time, 1_000_000_000);
        assert_eq!(ms[1].time, -1_000_000_000);
        truncate_times(&mut ms, Duration::ZERO);
        assert_eq!(ms[0].time, 1_000_000_000);
    }
}
