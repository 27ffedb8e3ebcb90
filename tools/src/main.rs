//! `rota`: sign firmware images as SUIT envelopes and check them, as a release engineer
//! or an operator does.
//!
//! Every failure is reported as one line on stderr, `error: <what failed>`, with exit
//! code 1; usage mistakes are clap's, with exit code 2.

mod client;
mod commands;
mod files;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sign firmware images as SUIT envelopes (draft-ietf-suit-manifest-37), verify them, and
/// publish and roll them out through the rota update server.
///
/// A typical release: `rota keygen --out release` once, then for every image
/// `rota sign --key release.key --image fw.bin ... -o fw.suit`, and before shipping
/// `rota verify --trust-anchor release.pub fw.suit --image fw.bin`.
///
/// With an update server (--server URL --token TOKEN, or ROTA_SERVER and ROTA_TOKEN):
/// `rota repo init` and `rota repo push` once, `rota device provision` per device, then
/// per release `rota release publish` and `rota rollout create`.
#[derive(Debug, Parser)]
#[command(name = "rota", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Keygen(commands::keygen::Args),
    Sign(commands::sign::Args),
    Verify(commands::verify::Args),
    Inspect(commands::inspect::Args),
    FlashImage(commands::flash_image::Args),
    Repo(commands::repo::Args),
    Release(commands::release::Args),
    Rollout(commands::rollout::Args),
    Device(commands::device::Args),
    Anchor(commands::anchor::Args),
    Ca(commands::ca::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen::run(args),
        Command::Sign(args) => commands::sign::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::FlashImage(args) => commands::flash_image::run(args),
        Command::Repo(args) => commands::repo::run(args),
        Command::Release(args) => commands::release::run(args),
        Command::Rollout(args) => commands::rollout::run(args),
        Command::Device(args) => commands::device::run(args),
        Command::Anchor(args) => commands::anchor::run(args),
        Command::Ca(args) => commands::ca::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the context chain on one line: "cannot read x: no such file".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
