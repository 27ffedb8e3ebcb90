//! `rota-server --data-dir DIR --listen ADDR`: the update server on embedded defaults
//! (SQLite and artifacts in DIR); `--database-url postgres://…` and
//! `--artifacts s3://bucket/prefix` for replicas at scale.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rota_server::config::{LogFormat, Settings};

#[derive(Debug, Parser)]
#[command(name = "rota-server", version)]
struct Cli {
    /// A TOML file of settings (the flags' names as keys); flags and environment win.
    #[arg(long, env = "ROTA_SERVER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match cli.config.as_deref().map(Settings::from_file).transpose() {
        Ok(file) => file,
        Err(err) => return fail(err),
    };
    let config = match cli.settings.resolve(file) {
        Ok(config) => config,
        Err(err) => return fail(err),
    };
    init_tracing(config.log_format);
    match rota_server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

fn fail(err: anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
