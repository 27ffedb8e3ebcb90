//! `rota-agent`: the device side of rota.
//!
//! - `rota-agent run`: the agent on a Linux device (slots on a flash file or MTD).
//! - `rota-agent provision`: what a factory does to a Linux device's flash and OTP.
//! - `rota-agent status`: a Linux device's boot state and what its root of trust has left
//!   (free key slots, trust-anchor commands, floor raises).
//! - `rota-agent simulate`: a fleet of simulated devices (the demo, load tests).
//! - `rota-agent sim-image`: firmware for simulated devices.
//!
//! The last two exist only with the feature `sim` (`cargo build -p rota-agent --features
//! sim`), so the agent that ships on devices carries no simulator.
//! - `rota-agent tuf-client`: the TUF client alone, with the tuf-conformance interface.
//!
//! Failures are one line on stderr and exit code 1.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The rota device agent: checks in with rota-server, verifies updates with TUF and SUIT,
/// installs them into the inactive slot through rota-boot, and confirms them after a
/// healthy boot.
#[derive(Debug, Parser)]
#[command(name = "rota-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(cli::run::Args),
    Provision(cli::provision::Args),
    Status(cli::status::Args),
    #[cfg(feature = "sim")]
    Simulate(cli::simulate::Args),
    #[cfg(feature = "sim")]
    SimImage(cli::sim_image::Args),
    /// The TUF client alone (TUF 1.0.34 §5), with the tuf-conformance command line:
    /// `tuf-client --metadata-dir DIR [--metadata-url URL] [--target-name NAME]…
    /// [--target-base-url URL] [--target-dir DIR] init ROOT | refresh | download`.
    #[command(disable_help_flag = true)]
    TufClient {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    // The conformance interface owns its arguments and exit codes (0 or 1, usage
    // errors included), so it is dispatched before clap sees anything.
    let mut args = std::env::args_os();
    let program = args.next();
    let rest: Vec<_> = args.collect();
    if rest.first().is_some_and(|a| a == "tuf-client") {
        return ExitCode::from(rota_tuf::cli::run(rest.into_iter().skip(1)) as u8);
    }
    let cli = Cli::parse_from(program.into_iter().chain(rest));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Provision(args) => cli::provision::run(args),
        Command::Status(args) => cli::status::run(args),
        #[cfg(feature = "sim")]
        Command::Simulate(args) => cli::simulate::run(args),
        #[cfg(feature = "sim")]
        Command::SimImage(args) => cli::sim_image::run(args),
        Command::TufClient { args } => {
            return ExitCode::from(rota_tuf::cli::run(args) as u8);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
