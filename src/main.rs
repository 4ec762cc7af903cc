//! The `heliograph` binary: logging, signals and exit codes around the library.
//!
//! Exit codes: 0 after a clean stop, 1 for a bad config or a failed start, 2 for a failure
//! while running (points left unwritten at exit).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use heliograph::cli::{Cli, Command};
use heliograph::config::{self, AgentSection, Config};
use heliograph::{line_protocol, pipeline};

// The write path allocates a little per point; mimalloc's thread-local free lists make that
// markedly cheaper than glibc malloc under concurrent connections.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long `--once` may take to flush buffers before it exits anyway.
const ONCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Freed memory goes back to the OS after this many milliseconds. mimalloc 3's default (1 s)
/// kept the write path's freed request bodies and compaction runs resident: under 16 writers,
/// peak RSS about twice what 10 ms gives, for no measurable CPU.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys names no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives the calling thread's freed memory back to the system (`mi_collect(true)`): what the
/// idle threads call (`heliograph::memory`).
#[allow(unsafe_code)]
fn release_thread_memory() {
    // SAFETY: mi_collect only walks and frees the calling thread's heap and the allocator's
    // own structures; it takes no pointers from us.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[allow(unsafe_code)]
fn tune_allocator() {
    heliograph::memory::set_release(release_thread_memory);
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return; // the operator's choice, read by mimalloc itself
    }
    // SAFETY: mi_option_set only stores a process-wide option value, which mimalloc reads on
    // each purge decision; it is called once, first thing in main, before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let path = cli.config_path();
    let dir = cli.config_directory.clone();
    let loaded = config::read_texts(&path, dir.as_deref())
        .and_then(|texts| config::from_texts(&texts, env_var).map(|c| (c, texts)));
    let (config, texts) = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("error: invalid configuration\n{errors}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Export { db, rp, start, end }) = &cli.command {
        return match export(&config, db, rp, start.as_deref(), end.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Check) = cli.command {
        for var in &config.unset_variables {
            eprintln!("warning: environment variable ${{{var}}} is not set; it is left as written");
        }
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}: ok ({} inputs, {} processors, {} outputs)",
                path.display(),
                config.inputs.len(),
                config.processors.len(),
                config.outputs.len()
            );
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&config.agent) {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    for var in &config.unset_variables {
        tracing::warn!(variable = %var, "environment variable is not set; it is left as written");
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // A worker that parks after traffic stopped gives back what it freed.
    builder.on_thread_park(|| {
        thread_local!(static PARK: std::cell::RefCell<heliograph::memory::ParkRelease> =
            std::cell::RefCell::new(heliograph::memory::ParkRelease::default()));
        PARK.with(|p| p.borrow_mut().on_park());
    });
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = if cli.test {
        runtime.block_on(test_once(config))
    } else if cli.once {
        runtime.block_on(run_once(config))
    } else {
        runtime.block_on(run(config, Source { path, dir, texts }))
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `export`: streams a bucket to stdout.
fn export(
    config: &Config,
    db: &str,
    rp: &str,
    start: Option<&str>,
    end: Option<&str>,
) -> anyhow::Result<()> {
    use heliograph::buckets::export::{export, parse_rfc3339, ExportRequest};
    let time = |t: Option<&str>| t.map(parse_rfc3339).transpose().map_err(anyhow::Error::msg);
    let request = ExportRequest {
        data_dir: config.agent.data_dir.clone(),
        db: db.to_owned(),
        rp: rp.to_owned(),
        start: time(start).context("--start")?,
        end: time(end).context("--end")?,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    export(&request, &mut out).with_context(|| format!("exporting {db}/{rp}"))?;
    Ok(())
}

fn init_logging(agent: &AgentSection) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let level = if agent.debug {
        tracing::Level::DEBUG
    } else if agent.quiet {
        tracing::Level::ERROR
    } else {
        tracing::Level::INFO
    };
    let (writer, ansi) = if agent.logfile.is_empty() {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&agent.logfile)
            .with_context(|| format!("opening logfile {}", agent.logfile))?;
        (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(writer);
    match agent.logformat {
        config::LogFormat::Text => builder.with_ansi(ansi).init(),
        config::LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// `--test`: gather once and print, writing no output.
async fn test_once(mut config: Config) -> anyhow::Result<ExitCode> {
    let metrics = pipeline::gather_once(&mut config).await;
    // What the outputs would get: through the processors.
    let mut chain = pipeline::chain(std::mem::take(&mut config.processors));
    let metrics = pipeline::run_chain(&mut chain, metrics);
    let mut text = String::new();
    line_protocol::encode_all(&metrics, &mut text);
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `--once`: gather once, write to the outputs, flush, exit.
async fn run_once(mut config: Config) -> anyhow::Result<ExitCode> {
    let metrics = pipeline::gather_once(&mut config).await;
    // Service inputs (listeners) do not run in --once; gather inputs have run already.
    config.inputs.clear();
    let running = pipeline::start(config).await.context("starting outputs")?;
    if let Err(refusal) = running.pipeline.deliver(metrics).await {
        anyhow::bail!("gathered metrics not admitted: {refusal}");
    }
    let left = running.shutdown(ONCE_TIMEOUT).await;
    if left > 0 {
        tracing::error!(
            points = left,
            "outputs did not take every point before the timeout"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where the running configuration came from, and its text, for reloads.
struct Source {
    path: std::path::PathBuf,
    dir: Option<std::path::PathBuf>,
    texts: Vec<(std::path::PathBuf, String)>,
}

/// SIGHUP: check the new configuration first (a bad one is logged and the running one kept),
/// then hand sockets, buffers and local buckets over to it. If it cannot start, the previous
/// configuration starts again on the same sockets and buffers.
///
/// # Errors
/// Neither the new nor the previous configuration could start.
async fn reload(
    running: pipeline::Running,
    source: &mut Source,
    timeout: Duration,
) -> anyhow::Result<pipeline::Running> {
    use heliograph::systemd::notify;
    notify("RELOADING=1\nSTATUS=reloading the configuration");
    let loaded = config::read_texts(&source.path, source.dir.as_deref())
        .and_then(|texts| config::from_texts(&texts, env_var).map(|c| (c, texts)));
    let (config, texts) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for line in errors.to_string().lines() {
                tracing::error!(problem = %line, "SIGHUP: the configuration has errors; the running one is kept");
            }
            notify("READY=1\nSTATUS=accepting writes (the last reload was refused)");
            return Ok(running);
        }
    };
    if let Some(why) = running.reload_refusal(&config) {
        tracing::error!("SIGHUP: {why}; the running configuration is kept");
        notify("READY=1\nSTATUS=accepting writes (the last reload was refused)");
        return Ok(running);
    }
    for var in &config.unset_variables {
        tracing::warn!(variable = %var, "environment variable is not set; it is left as written");
    }
    let carry = running.stop_for_reload(timeout).await;
    carry.sockets.begin_generation();
    let started = match pipeline::start_with(config, &carry).await {
        Ok(new) => {
            source.texts = texts;
            tracing::info!("SIGHUP: configuration reloaded");
            new
        }
        Err(e) => {
            tracing::error!(error = %heliograph::error_chain(&e), "SIGHUP: the new configuration cannot start; going back to the previous one");
            carry.sockets.begin_generation();
            let previous = config::from_texts(&source.texts, env_var)
                .map_err(|e| anyhow::anyhow!("the previous configuration no longer loads: {e}"))?;
            pipeline::start_with(previous, &carry)
                .await
                .context("starting the previous configuration again")?
        }
    };
    carry.sockets.end_generation();
    carry.release(&started).await;
    notify("READY=1\nSTATUS=accepting writes");
    Ok(started)
}

/// The daemon: run until SIGTERM or SIGINT, then stop within the bound.
async fn run(config: Config, mut source: Source) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // SIGHUP reloads the configuration.
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let shutdown_timeout = config.agent.shutdown_timeout.0;
    let mut running = pipeline::start(config).await.context("starting")?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "heliograph started");
    // After traffic stops, idle buffer pools are freed and the workers release what they freed.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tokio::spawn(heliograph::memory::release_after_traffic(move || {
        for _ in 0..workers {
            tokio::spawn(async {});
        }
    }));
    // Every listener is bound and storage recovered: ready.
    heliograph::systemd::notify("READY=1\nSTATUS=accepting writes");
    if let Some(every) = heliograph::systemd::watchdog_interval() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                heliograph::systemd::notify("WATCHDOG=1");
            }
        });
    }
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                running = reload(running, &mut source, shutdown_timeout).await?;
            }
        }
    }
    heliograph::systemd::notify("STOPPING=1");
    let left = tokio::select! {
        left = running.shutdown(shutdown_timeout) => left,
        _ = term.recv() => {
            tracing::warn!("second signal: exiting at once");
            return Ok(ExitCode::from(2));
        }
        _ = int.recv() => {
            tracing::warn!("second signal: exiting at once");
            return Ok(ExitCode::from(2));
        }
    };
    if left > 0 {
        tracing::error!(
            points = left,
            "stopped with points not yet written by their outputs"
        );
        return Ok(ExitCode::from(2));
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
