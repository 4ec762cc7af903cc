//! Flags and subcommands: `heliograph [--config FILE] [--config-directory DIR] [--test|--once]`
//! and `heliograph check`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "heliograph",
    version,
    about = "A metrics agent that never loses an acknowledged point"
)]
pub struct Cli {
    /// The config file; default ./agent.toml if present, else /etc/heliograph/agent.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A directory whose *.toml files add plugins, read in name order.
    #[arg(long = "config-directory", global = true, value_name = "DIR")]
    pub config_directory: Option<PathBuf>,
    /// Gather every input once, print line protocol on stdout, write no output, exit.
    #[arg(long, conflicts_with = "once")]
    pub test: bool,
    /// Gather every input once, write to the outputs, flush, exit.
    #[arg(long)]
    pub once: bool,
    /// A subcommand instead of running the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config (and config directory); exit 0, or 1 naming file, line and key.
    Check,
    /// Print a local bucket as line protocol (ns, one point per line), sorted by time.
    Export {
        /// The database.
        #[arg(long)]
        db: String,
        /// The retention policy (default `autogen`).
        #[arg(long, default_value = "autogen")]
        rp: String,
        /// Only points at or after this RFC 3339 time.
        #[arg(long)]
        start: Option<String>,
        /// Only points before this RFC 3339 time.
        #[arg(long)]
        end: Option<String>,
    },
}

impl Cli {
    /// The config file to read: `--config`, else `./agent.toml` if present, else the system one.
    pub fn config_path(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        let local = Path::new("agent.toml");
        if local.exists() {
            local.to_path_buf()
        } else {
            PathBuf::from("/etc/heliograph/agent.toml")
        }
    }
}
