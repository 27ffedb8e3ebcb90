//! `rota rollout`: staged rollouts of a release to a fleet, on the update server.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use rota_protocol::api::{
    ReleaseInfo, RolloutCreate, RolloutState, RolloutStatus, Selector, Stage, StageCounts,
};

use crate::client::{Client, ServerArgs, segment};
use crate::commands::release::{table, time_text};
use crate::output;

/// Roll releases out to devices in stages, watch them, and stop them.
///
/// A rollout offers a release to the devices its selector picks, stage by stage: each
/// stage takes more devices, and the next starts only when enough of the stage's devices
/// confirmed the update (the success gate) and the soak time passed. Too many failures
/// halt it.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    Create(CreateArgs),
    Status(StatusArgs),
    /// Pause a rollout: it assigns nothing more until resumed.
    Pause(ActionArgs),
    /// Resume a paused (or halted) rollout.
    Resume(ActionArgs),
    /// Abort a rollout, for good: it assigns nothing more and cannot be resumed.
    Abort(ActionArgs),
}

/// Start a staged rollout of a release.
///
/// Devices are selected by class (default: the release's), tags and running version;
/// stages are cumulative, as percents of the selected devices or device counts.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The release to roll out (`rota release list` shows the ids).
    #[arg(long, value_name = "ID")]
    release: String,

    /// Only devices of this class (a UUID; default: the class the release is for).
    #[arg(long, value_name = "UUID", value_parser = parse_class)]
    class: Option<String>,

    /// Only devices that have this tag; repeat for several (a device needs them all).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,

    /// Only devices running this version now; repeat for several (default: any).
    #[arg(long = "from-version", value_name = "V")]
    from_versions: Vec<u64>,

    /// The cumulative stages, comma-separated: percents of the selected devices (10%)
    /// or device counts (5), counts first: `10%,50%,100%` or `5,50%,100%`.
    #[arg(long, value_name = "STAGES", required = true, value_delimiter = ',', value_parser = parse_stage)]
    stages: Vec<Stage>,

    /// The fraction of a stage's devices that must confirm the update before the next
    /// stage starts (greater than 0, at most 1).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.95)]
    success_gate: f64,

    /// The fraction of failed devices (of those that confirmed or failed) that halts
    /// the rollout (at least 0, less than 1).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.05)]
    failure_threshold: f64,

    /// How many devices must have confirmed or failed before the failure threshold
    /// applies.
    #[arg(long, value_name = "N", default_value_t = 10)]
    min_sample: u32,

    /// How long a device may take from assignment to confirmation before it counts as
    /// timed out: 90s, 30m, 2h, 1d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    device_timeout: u64,

    /// How long to wait after a stage passes its gate before the next starts.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    soak: u64,

    /// How many times a device that failed is offered the release again.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: u32,

    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Show a rollout's progress, or list every rollout.
///
/// With an ID: its state, its current stage, per-stage device counts (members, pending,
/// assigned, in progress, confirmed, failed, timed out), how many members still run an
/// older version, and why it halted. Pending members have not settled: a completed
/// rollout keeps offering them the release until each has. Without an ID: one line per
/// rollout, newest first. With --watch, refreshes every second until the rollout is
/// completed (exit 0), halted or aborted (exit 1, with the reason).
#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The rollout (default: list all).
    #[arg(value_name = "ID")]
    id: Option<String>,

    /// Print the server's JSON instead of a table (with --watch, one line per change).
    #[arg(long)]
    json: bool,

    /// Refresh every second until the rollout completes, halts or is aborted.
    #[arg(long, requires = "id")]
    watch: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// The rollout an action is for.
#[derive(Debug, clap::Args)]
struct ActionArgs {
    /// The rollout.
    #[arg(value_name = "ID")]
    id: String,

    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        RolloutCommand::Create(args) => create(args),
        RolloutCommand::Status(args) => status(args),
        RolloutCommand::Pause(args) => action(args, "pause", "paused"),
        RolloutCommand::Resume(args) => action(args, "resume", "resumed"),
        RolloutCommand::Abort(args) => action(args, "abort", "aborted"),
    }
}

/// A device class UUID in any form, as the lowercase hyphenated form the server uses.
fn parse_class(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text)
        .map(|id| id.hyphenated().to_string())
        .map_err(|e| format!("not a UUID: {e}"))
}

/// `10%` (a percent stage) or `5` (a count stage).
fn parse_stage(text: &str) -> Result<Stage, String> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        let value: f64 = percent
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a percent such as 10%"))?;
        if !(value > 0.0 && value <= 100.0) {
            return Err(format!(
                "{text} is not a stage: a percent must be greater than 0 and at most 100"
            ));
        }
        Ok(Stage::Percent(value))
    } else {
        let count: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is neither a percent (10%) nor a device count (5)"))?;
        if count == 0 {
            return Err("a device count must be at least 1".into());
        }
        Ok(Stage::Count(count))
    }
}

/// `90s`, `30m`, `2h`, `1d` (or plain seconds) in seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 30m, 2h or 1d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration such as 90s, 30m, 2h or 1d"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text} is too long a duration"))
}

fn duration_text(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn stage_text(stage: &Stage) -> String {
    match stage {
        Stage::Percent(p) => format!("{p}%"),
        Stage::Count(1) => "1 device".into(),
        Stage::Count(c) => format!("{c} devices"),
    }
}

fn create(args: CreateArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let class_id = match args.class.clone() {
        Some(class) => class,
        None => {
            let releases: Vec<ReleaseInfo> =
                client.get("/api/v1/releases", "to list the releases")?;
            releases
                .into_iter()
                .find(|r| r.id == args.release)
                .map(|r| r.class_id)
                .ok_or_else(|| {
                    anyhow!(
                        "the server has no release {} (`rota release list` shows them)",
                        args.release
                    )
                })?
        }
    };
    let request = RolloutCreate {
        release_id: args.release.clone(),
        selector: Selector {
            class_id,
            tags: args.tags.clone(),
            versions: args.from_versions.clone(),
        },
        stages: args.stages.clone(),
        success_gate: args.success_gate,
        failure_threshold: args.failure_threshold,
        min_sample: args.min_sample,
        device_timeout_s: args.device_timeout,
        soak_s: args.soak,
        max_retries: args.retries,
    };
    // The server checks the same rules; checking here says what is wrong in the flags' terms.
    request
        .validate()
        .map_err(|e| anyhow!("cannot create this rollout: {e}"))?;
    let status: RolloutStatus = client.post("/api/v1/rollouts", &request, "the rollout")?;
    if args.json {
        return print_json(&status);
    }
    output::print(&format!(
        "created rollout {id} of release {release}\n\
         gate {gate}, halt above {threshold} failed after {sample} devices, device timeout {timeout}, soak {soak}, {retries} retries\n\
         {table}",
        id = status.id,
        release = status.release_id,
        gate = args.success_gate,
        threshold = args.failure_threshold,
        sample = args.min_sample,
        timeout = duration_text(args.device_timeout),
        soak = duration_text(args.soak),
        retries = args.retries,
        table = status_text(&status),
    ))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    output::print(&text)
}

fn counts_row(label: String, target: String, c: &StageCounts) -> Vec<String> {
    vec![
        label,
        target,
        c.members.to_string(),
        c.pending.to_string(),
        c.assigned.to_string(),
        c.in_progress.to_string(),
        c.confirmed.to_string(),
        c.failed.to_string(),
        c.timed_out.to_string(),
    ]
}

/// One rollout, as a readable block.
fn status_text(s: &RolloutStatus) -> String {
    let stages = s.stages.len();
    let current = s.current_stage as usize;
    let state = match s.state {
        RolloutState::Active | RolloutState::Paused | RolloutState::Halted => format!(
            "{} at stage {} of {stages} ({})",
            s.state,
            current + 1,
            s.stages.get(current).map(stage_text).unwrap_or_default()
        ),
        RolloutState::Completed if s.counts.total.pending > 0 => format!(
            "completed, still offering the release to the {} members that have not updated",
            s.counts.total.pending
        ),
        RolloutState::Completed | RolloutState::Aborted => s.state.to_string(),
    };
    let selector = {
        let mut parts = vec![format!("class {}", s.selector.class_id)];
        if !s.selector.tags.is_empty() {
            parts.push(format!("tags {}", s.selector.tags.join(", ")));
        }
        if !s.selector.versions.is_empty() {
            let versions: Vec<String> = s.selector.versions.iter().map(u64::to_string).collect();
            parts.push(format!("running version {}", versions.join(" or ")));
        }
        parts.join("; ")
    };
    let mut rows: Vec<Vec<String>> = s
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let marker = if i == current && s.state != RolloutState::Completed {
                "*"
            } else {
                ""
            };
            let counts = s.counts.stages.get(i).copied().unwrap_or_default();
            counts_row(format!("{}{marker}", i + 1), stage_text(stage), &counts)
        })
        .collect();
    rows.push(counts_row("total".into(), String::new(), &s.counts.total));
    let mut text = format!(
        "rollout   {}\nrelease   {}\nstate     {state}\nselector  {selector}\ncreated   {}, updated {}\n",
        s.id,
        s.release_id,
        time_text(s.created_at),
        time_text(s.updated_at),
    );
    if let Some(reason) = &s.halted_reason {
        text.push_str(&format!("halted    {reason}\n"));
    }
    let t = &s.counts.total;
    // Pending members have not been assigned yet or are updating; failed and timed-out
    // ones reverted or never confirmed.
    let behind = t.pending + t.failed + t.timed_out;
    text.push_str(&format!(
        "behind    {behind} of {} members still run an older version ({} pending, {} failed, {} timed out)\n",
        t.members, t.pending, t.failed, t.timed_out
    ));
    if t.decommissioned > 0 {
        text.push_str(&format!(
            "left      {} assigned devices were decommissioned before they finished\n",
            t.decommissioned
        ));
    }
    text.push('\n');
    text.push_str(&table(
        &[
            "STAGE",
            "TARGET",
            "MEMBERS",
            "PENDING",
            "ASSIGNED",
            "IN PROGRESS",
            "CONFIRMED",
            "FAILED",
            "TIMED OUT",
        ],
        &rows,
    ));
    text
}

fn list_text(rollouts: &[RolloutStatus]) -> String {
    if rollouts.is_empty() {
        return "no rollouts\n".into();
    }
    let rows: Vec<Vec<String>> = rollouts
        .iter()
        .map(|s| {
            let t = &s.counts.total;
            vec![
                s.id.clone(),
                s.release_id.clone(),
                s.state.to_string(),
                format!(
                    "{}/{}",
                    (s.current_stage as usize + 1).min(s.stages.len()),
                    s.stages.len()
                ),
                t.members.to_string(),
                t.pending.to_string(),
                t.confirmed.to_string(),
                t.failed.to_string(),
                t.timed_out.to_string(),
                time_text(s.created_at),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "RELEASE",
            "STATE",
            "STAGE",
            "MEMBERS",
            "PENDING",
            "CONFIRMED",
            "FAILED",
            "TIMED OUT",
            "CREATED",
        ],
        &rows,
    )
}

fn get_status(client: &Client, id: &str) -> Result<RolloutStatus> {
    client.get(
        &format!("/api/v1/rollouts/{}", segment(id)),
        &format!("to show rollout {id}"),
    )
}

fn status(args: StatusArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let Some(id) = &args.id else {
        let rollouts: Vec<RolloutStatus> =
            client.get("/api/v1/rollouts", "to list the rollouts")?;
        return if args.json {
            print_json(&rollouts)
        } else {
            output::print(&list_text(&rollouts))
        };
    };
    if !args.watch {
        let status = get_status(&client, id)?;
        return if args.json {
            print_json(&status)
        } else {
            output::print(&status_text(&status))
        };
    }
    let terminal = std::io::stdout().is_terminal();
    let mut last: Option<RolloutStatus> = None;
    loop {
        let status = get_status(&client, id)?;
        if last.as_ref() != Some(&status) {
            if args.json {
                output::print(&(serde_json::to_string(&status)? + "\n"))?;
            } else if terminal {
                // Clear the screen and redraw in place.
                output::print(&format!("\x1b[H\x1b[2J{}", status_text(&status)))?;
            } else {
                let separator = if last.is_some() { "\n" } else { "" };
                output::print(&format!("{separator}{}", status_text(&status)))?;
            }
        }
        match status.state {
            RolloutState::Completed => return Ok(()),
            RolloutState::Halted => bail!(
                "rollout {id} halted: {}",
                status
                    .halted_reason
                    .as_deref()
                    .unwrap_or("the server gave no reason")
            ),
            RolloutState::Aborted => bail!("rollout {id} was aborted"),
            RolloutState::Active | RolloutState::Paused => {}
        }
        last = Some(status);
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn action(args: ActionArgs, verb: &str, done: &str) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let id = &args.id;
    let status: RolloutStatus = client.post_empty(
        &format!("/api/v1/rollouts/{}/{verb}", segment(id)),
        &format!("to {verb} rollout {id}"),
    )?;
    output::print(&format!(
        "{done} rollout {id}: it is now {}\n",
        status.state
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_durations_parse() {
        assert_eq!(parse_stage("10%"), Ok(Stage::Percent(10.0)));
        assert_eq!(parse_stage("2.5%"), Ok(Stage::Percent(2.5)));
        assert_eq!(parse_stage("5"), Ok(Stage::Count(5)));
        for bad in ["0%", "101%", "0", "-1", "x", "%", "5 devices"] {
            assert!(parse_stage(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86400));
        assert_eq!(parse_duration("45"), Ok(45));
        for bad in ["", "h", "1w", "1.5h", "-1s", "1 h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_text(5400), "90m");
        assert_eq!(duration_text(86400), "1d");
    }

    /// The failure it prevents: a rollout reported as simply "completed" while members
    /// never received the release.
    #[test]
    fn completed_rollout_shows_the_members_still_on_an_older_version() {
        let counts = StageCounts {
            members: 300,
            assigned: 298,
            in_progress: 1,
            confirmed: 290,
            failed: 5,
            timed_out: 1,
            pending: 4,
            decommissioned: 1,
        };
        let status = RolloutStatus {
            id: "ro-1".into(),
            release_id: "rel-1".into(),
            state: RolloutState::Completed,
            current_stage: 0,
            stages: vec![Stage::Percent(100.0)],
            selector: Selector {
                class_id: "8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f".into(),
                tags: vec![],
                versions: vec![],
            },
            counts: rota_protocol::api::RolloutCounts {
                stages: vec![counts],
                total: counts,
            },
            halted_reason: None,
            created_at: 0,
            updated_at: 0,
        };
        let text = status_text(&status);
        assert!(
            text.contains(
                "state     completed, still offering the release to the 4 members that have not updated"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "behind    10 of 300 members still run an older version (4 pending, 5 failed, 1 timed out)"
            ),
            "{text}"
        );
        assert!(text.contains("left      1 assigned devices"), "{text}");
        assert!(text.contains("MEMBERS  PENDING  ASSIGNED"), "{text}");
        assert!(list_text(&[status]).contains("PENDING"));
    }
}
