//! `rota-agent status`: what a Linux device's flash and root of trust say, read only.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use rota_agent::anchors::Report;
use rota_agent::device::file_flash::{ERASE_SIZE, FileFlash};
use rota_agent::device::linux::{FileOtp, HEADER_SIZE};
use rota_agent::device::standard_layout;
use rota_boot::otp_map::OtpRot;
use rota_boot::{Status, TrustStatus, Updater};

/// Show the device's boot state and what its root of trust has left: free key slots (for
/// new firmware keys), revoked slots, trust-anchor commands applied and left, and
/// security-version floor raises left. OTP is finite: a rollover spends a key slot and
/// two command bits. Changes nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The flash image file or MTD partition holding the journal and both slots.
    #[arg(long)]
    flash: PathBuf,
    /// The OTP cells (rota's OTP map) holding the root of trust.
    #[arg(long)]
    otp: PathBuf,
    /// The largest image a slot holds (as provisioned): bytes, or with K or M.
    #[arg(long, value_parser = super::parse_size)]
    image_capacity: u32,
    /// The agent's state directory: also show what it last did with trust-anchor
    /// commands (applied, deferred, refused).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let layout = standard_layout(ERASE_SIZE as u32, HEADER_SIZE, args.image_capacity);
    let flash = FileFlash::open(&args.flash, layout.erased)
        .map_err(|e| anyhow!("cannot open the flash {}: {e}", args.flash.display()))?;
    let cells = FileOtp::open(&args.otp)
        .map_err(|e| anyhow!("cannot open the OTP {}: {e}", args.otp.display()))?;
    let rot = OtpRot::open(cells)
        .map_err(|e| anyhow!("the OTP {} is not provisioned: {e:?}", args.otp.display()))?;
    let mut scratch = vec![0; HEADER_SIZE as usize - rota_boot::header::FIXED_LEN];
    let mut updater = Updater::<_, _>::new(flash, rot, layout, &mut scratch)
        .map_err(|e| anyhow!("cannot read the boot state: {e}"))?;
    let boot = updater.status();
    let trust = updater
        .trust_status()
        .map_err(|e| anyhow!("cannot read the root of trust: {e}"))?;
    let report = match &args.state_dir {
        Some(dir) => Report::load(dir)?,
        None => None,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&boot, &trust, report.as_ref()))?
        );
    } else {
        print!("{}", text(&boot, &trust, report.as_ref()));
    }
    Ok(())
}

fn json(boot: &Status, trust: &TrustStatus, report: Option<&Report>) -> serde_json::Value {
    serde_json::json!({
        "running_slot": format!("{:?}", boot.running),
        "on_trial": boot.on_trial,
        "pending_slot": boot.pending.map(|s| format!("{s:?}")),
        "key_slots": trust.key_slots,
        "free_key_slots": trust.free_key_slots,
        "revoked_key_slots": trust.revoked_key_slots,
        "anchor_commands": trust.anchor_commands,
        "anchor_commands_left": trust.anchor_commands_left,
        "floor": trust.floor,
        "floor_raises_left": trust.floor_left,
        "last_anchor_commands": report,
    })
}

/// The text `status` prints.
pub fn text(boot: &Status, trust: &TrustStatus, report: Option<&Report>) -> String {
    let mut out = format!(
        "running slot:           {:?}{}\n",
        boot.running,
        if boot.on_trial { " (on trial)" } else { "" }
    );
    if let Some(pending) = boot.pending {
        out += &format!("pending slot:           {pending:?}\n");
    }
    out += &format!(
        "firmware key slots:     {} ({} free for new keys, {} revoked)\n\
         trust-anchor commands:  {} applied, {} left\n\
         security floor:         {} ({} raises left)\n",
        trust.key_slots,
        trust.free_key_slots,
        trust.revoked_key_slots,
        trust.anchor_commands,
        trust.anchor_commands_left,
        trust.floor,
        trust.floor_left,
    );
    if let Some(report) = report {
        if !report.applied.is_empty() {
            out += &format!("last commands applied:  {:?}\n", report.applied);
        }
        if let Some(deferred) = &report.deferred {
            out += &format!(
                "command deferred:       {} ({})\n",
                deferred.counter, deferred.reason
            );
        }
        if let Some(refused) = &report.refused {
            out += &format!(
                "command refused:        {} ({})\n",
                refused.counter, refused.reason
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_agent::anchors::Pending;
    use rota_boot::Slot;

    #[test]
    fn the_text_shows_the_slots_and_commands_left() {
        let boot = Status {
            running: Slot::B,
            on_trial: false,
            pending: None,
            last_revert: None,
        };
        let trust = TrustStatus {
            key_slots: 4,
            free_key_slots: 2,
            revoked_key_slots: 1,
            anchor_commands: 2,
            anchor_commands_left: 6,
            floor: 3,
            floor_left: 29,
        };
        let report = Report {
            applied: vec![2],
            deferred: None,
            refused: Some(Pending {
                counter: 3,
                reason: "the command does not verify".into(),
            }),
        };
        let text = text(&boot, &trust, Some(&report));
        assert!(
            text.contains("4 (2 free for new keys, 1 revoked)"),
            "{text}"
        );
        assert!(text.contains("2 applied, 6 left"), "{text}");
        assert!(text.contains("3 (29 raises left)"), "{text}");
        assert!(text.contains("command refused:        3"), "{text}");
        let json = json(&boot, &trust, Some(&report));
        assert_eq!(json["free_key_slots"], 2);
        assert_eq!(json["last_anchor_commands"]["refused"]["counter"], 3);
    }
}
