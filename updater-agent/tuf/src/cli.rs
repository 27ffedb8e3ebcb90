//! `rota-agent tuf-client`: the tuf-conformance client-under-test interface
//! (tuf-conformance `CLIENT-CLI.md`).
//!
//! ```text
//! rota-agent tuf-client --metadata-dir DIR [--metadata-url URL] [--target-name NAME]…
//!     [--target-base-url URL] [--target-dir DIR] init TRUSTED_ROOT | refresh | download
//! ```
//!
//! Every option comes before the sub-command. Exit code 0 on success, 1 on any failure
//! (usage errors included). Afterwards `--metadata-dir` holds exactly the trusted top-level
//! and delegated metadata, byte-exact as received, under non-versioned names.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use crate::{Client, Config, Error, HttpFetcher, store, trusted::TrustedSet};

#[derive(Debug, Parser)]
#[command(
    name = "rota-agent tuf-client",
    no_binary_name = true,
    about = "TUF 1.0.34 client with the tuf-conformance command-line interface"
)]
struct Args {
    /// Directory of the trusted metadata.
    #[arg(long)]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata.
    #[arg(long)]
    metadata_url: Option<String>,
    /// Target path to download (repeatable).
    #[arg(long = "target-name")]
    target_names: Vec<String>,
    /// Base URL of the repository's targets.
    #[arg(long)]
    target_base_url: Option<String>,
    /// Directory the targets are downloaded to.
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// Check expiry as if this many days later (older conformance clients' option).
    #[arg(long)]
    days_in_future: Option<u64>,
    /// Most root versions fetched in one update.
    #[arg(long)]
    max_root_rotations: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trust TRUSTED_ROOT: copy it to METADATA_DIR/root.json (no request is made).
    Init { trusted_root: PathBuf },
    /// Update the top-level metadata (TUF 1.0.34 §5.1–§5.6).
    Refresh,
    /// Refresh, then download each --target-name to --target-dir (§5.6.7–§5.7).
    Download,
}

/// Runs the client with `args` (what follows `rota-agent tuf-client`) and returns the
/// exit code: 0 on success, 1 on any failure, each failure reported on one stderr line.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match execute(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tuf-client: {e}");
            1
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Tuf(#[from] Error),
    #[error("{0}")]
    Usage(&'static str),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

fn execute(args: Args) -> Result<(), CliError> {
    match args.command {
        Command::Init { ref trusted_root } => init(&args.metadata_dir, trusted_root),
        Command::Refresh => {
            let mut client = client(&args)?;
            client.refresh()?;
            Ok(())
        }
        Command::Download => {
            let target_dir = args
                .target_dir
                .as_deref()
                .ok_or(CliError::Usage("download needs --target-dir"))?;
            let mut client = client(&args)?;
            client.refresh()?;
            for name in &args.target_names {
                let info = client.target_info(name)?;
                client.download_target(&info, target_dir)?;
            }
            Ok(())
        }
    }
}

/// `init`: the root is validated (parse and self-signature, TUF 1.0.34 §5.2) and its bytes
/// written unchanged to `root.json`; other files in the directory stay.
fn init(metadata_dir: &Path, trusted_root: &Path) -> Result<(), CliError> {
    let bytes = std::fs::read(trusted_root).map_err(|e| CliError::Read {
        path: trusted_root.display().to_string(),
        reason: e.to_string(),
    })?;
    TrustedSet::at(&bytes, 0)?;
    std::fs::create_dir_all(metadata_dir).map_err(|e| Error::storage(metadata_dir, e))?;
    store::write_atomic(&metadata_dir.join("root.json"), &bytes, true)?;
    Ok(())
}

fn client(args: &Args) -> Result<Client<HttpFetcher>, CliError> {
    let metadata_url = args
        .metadata_url
        .as_deref()
        .ok_or(CliError::Usage("refresh and download need --metadata-url"))?;
    // Targets are only fetched by `download`, which always gets a base URL from the suite.
    let target_base_url = args.target_base_url.as_deref().unwrap_or(metadata_url);
    let mut config = Config::new(metadata_url, target_base_url);
    if let Some(max) = args.max_root_rotations {
        config.max_root_rotations = max;
    }
    // §5.1: the start time, read once (from the real or faked clock: the suite runs the
    // client under libfaketime).
    let start = SystemTime::now()
        + Duration::from_secs(args.days_in_future.unwrap_or(0).saturating_mul(86_400));
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::Http(e.to_string()))?;
    Ok(Client::new(
        &args.metadata_dir,
        config,
        HttpFetcher::new(http),
        start,
    )?)
}
