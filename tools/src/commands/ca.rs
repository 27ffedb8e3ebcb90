//! `rota ca`: the server's device CA registry (which CAs' device certificates it accepts
//! at enrolment), the rollover from one manufacturer CA to another, and a class's
//! scheduled re-certification (its maximum certificate age).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use rota_protocol::api::{CaCreate, CaInfo, ClassRotation, DeviceInfo};

use crate::client::{Client, ServerArgs, segment};
use crate::commands::release::{table, time_text};
use crate::files;
use crate::output;

/// Devices per page of `GET /api/v1/cas/{key_id}/devices` (the server's maximum).
const PAGE: usize = 1000;

/// Manage the device CAs the server trusts, and roll over to a new manufacturer CA.
///
/// A rollover without locking any device out: `rota ca add new-factory.pub --name NAME`
/// (devices it certifies may enrol from then on), `rota device rotate ID` for each device
/// of the old CA (the server's device CA re-certifies their new keys), then
/// `rota ca retire OLD_KEY_ID`, which the server refuses while `rota ca devices OLD_KEY_ID`
/// lists any device.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    Add(AddArgs),
    List(ListArgs),
    Devices(DevicesArgs),
    Retire(RetireArgs),
    RotationPolicy(RotationPolicyArgs),
}

/// Introduce a device CA: the server accepts the certificates it issues from now on, on
/// every replica within a second (admin).
#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The CA's public key (PEM, the CA.pub of `rota keygen`).
    #[arg(value_name = "CA.pub")]
    public_key: PathBuf,

    /// What the CA is, for people (a factory, a year): 1 to 64 characters.
    #[arg(long, value_name = "NAME")]
    name: String,

    #[command(flatten)]
    server: ServerArgs,
}

/// List the device CAs, with how many devices' current certificates each issued.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// List the devices (not decommissioned) whose current certificate a CA issued: those
/// that keep it from being retired.
#[derive(Debug, clap::Args)]
struct DevicesArgs {
    /// The CA: its key id (64 hex digits, as `rota ca list` shows) or its public key file.
    #[arg(value_name = "KEY_ID|CA.pub")]
    ca: String,

    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Retire a device CA: its certificates are refused at enrolment and registration from
/// now on (admin). The server refuses while any device depends on it, and for its own
/// device CA.
#[derive(Debug, clap::Args)]
struct RetireArgs {
    /// The CA: its key id (64 hex digits, as `rota ca list` shows) or its public key file.
    #[arg(value_name = "KEY_ID|CA.pub")]
    ca: String,

    #[command(flatten)]
    server: ServerArgs,
}

/// Show or set a class's scheduled key rotation: a device whose current certificate is
/// older than the maximum age is asked to rotate its key at its next check-in, and the
/// server's device CA re-certifies it (operator).
#[derive(Debug, clap::Args)]
#[group(id = "change", multiple = false)]
struct RotationPolicyArgs {
    /// The device class (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid::Uuid::parse_str)]
    class: uuid::Uuid,

    /// The maximum certificate age in days (1 to 36500).
    #[arg(long, value_name = "DAYS", group = "change")]
    max_age_days: Option<u32>,

    /// Remove the schedule (devices rotate only when asked).
    #[arg(long, group = "change")]
    off: bool,

    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        CaCommand::Add(args) => add(args),
        CaCommand::List(args) => list(args),
        CaCommand::Devices(args) => devices(args),
        CaCommand::Retire(args) => retire(args),
        CaCommand::RotationPolicy(args) => rotation_policy(args),
    }
}

/// A CA's public key from its PEM file.
fn read_ca_key(path: &Path) -> Result<rota_manifest::PublicKey> {
    let pem = files::read_limited(path, 64 * 1024, "a public key")?;
    rota_manifest::public_key_from_pem(&String::from_utf8_lossy(&pem)).map_err(|e| {
        anyhow!(
            "{} is not an Ed25519 or P-256 public key: {e}",
            path.display()
        )
    })
}

/// A CA's key id: given as 64 hex digits, or computed from its public key file.
fn key_id(given: &str) -> Result<String> {
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(given.to_ascii_lowercase());
    }
    let path = Path::new(given);
    if !path.exists() {
        bail!("{given} is neither a CA key id (64 hex digits) nor a public key file");
    }
    Ok(hex::encode(read_ca_key(path)?.key_id()))
}

fn add(args: AddArgs) -> Result<()> {
    let key = read_ca_key(&args.public_key)?;
    let body = CaCreate {
        public_key: hex::encode(key.as_bytes()),
        name: args.name.clone(),
    };
    body.validate().map_err(|e| anyhow!(e))?;
    let client = Client::connect(&args.server)?;
    let info: CaInfo = client.post(
        "/api/v1/cas",
        &body,
        &format!("to introduce device CA {}", args.public_key.display()),
    )?;
    output::print(&format!(
        "introduced device CA {} ({}): devices it certifies may enrol from now on\n",
        info.key_id, info.name
    ))
}

fn list(args: ListArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let list: Vec<CaInfo> = client.get("/api/v1/cas", "to list device CAs")?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&list)?;
        text.push('\n');
        return output::print(&text);
    }
    if list.is_empty() {
        return output::print("no device CAs: no device can enrol\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.key_id.clone(),
                if c.device_ca {
                    format!("{} (device CA)", c.state)
                } else {
                    c.state.to_string()
                },
                c.devices.to_string(),
                time_text(c.created_at),
                c.retired_at.map(time_text).unwrap_or_else(|| "-".into()),
                c.name.clone(),
            ]
        })
        .collect();
    output::print(&table(
        &["KEY ID", "STATE", "DEVICES", "ADDED", "RETIRED", "NAME"],
        &rows,
    ))
}

fn devices(args: DevicesArgs) -> Result<()> {
    let key_id = key_id(&args.ca)?;
    let client = Client::connect(&args.server)?;
    let path = format!("/api/v1/cas/{}/devices", segment(&key_id));
    let mut devices: Vec<DeviceInfo> = Vec::new();
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        if let Some(last) = devices.last() {
            query.push(("after", last.id.clone()));
        }
        let page: Vec<DeviceInfo> = client.get_query(
            &path,
            &query,
            &format!("to list the devices of device CA {key_id}"),
        )?;
        let full = page.len() == PAGE;
        devices.extend(page);
        if !full {
            break;
        }
    }
    if args.json {
        let mut text = serde_json::to_string_pretty(&devices)?;
        text.push('\n');
        return output::print(&text);
    }
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| vec![d.id.clone(), d.class_id.clone(), d.state.to_string()])
        .collect();
    let mut text = table(&["ID", "CLASS", "STATE"], &rows);
    text.push_str(&format!(
        "{} devices depend on device CA {key_id}\n",
        devices.len()
    ));
    output::print(&text)
}

fn retire(args: RetireArgs) -> Result<()> {
    let key_id = key_id(&args.ca)?;
    let client = Client::connect(&args.server)?;
    let info: CaInfo = client.post_empty(
        &format!("/api/v1/cas/{}/retire", segment(&key_id)),
        &format!("to retire device CA {key_id}"),
    )?;
    output::print(&format!(
        "retired device CA {} ({}): its certificates are refused at enrolment from now on\n",
        info.key_id, info.name
    ))
}

fn rotation_policy(args: RotationPolicyArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let class = args.class.hyphenated().to_string();
    let path = format!("/api/v1/classes/{class}/rotation");
    let current: ClassRotation = if args.off || args.max_age_days.is_some() {
        let body = ClassRotation {
            max_certificate_age_days: args.max_age_days,
        };
        body.validate().map_err(|e| anyhow!(e))?;
        client.put_json(
            &path,
            &serde_json::to_vec(&body)?,
            &format!("to set the scheduled key rotation of class {class}"),
        )?
    } else {
        client.get(
            &path,
            &format!("to read the scheduled key rotation of class {class}"),
        )?
    };
    output::print(&match current.max_certificate_age_days {
        Some(days) => format!(
            "class {class}: a device rotates its key once its certificate is older than {days} days\n"
        ),
        None => format!("class {class}: no scheduled key rotation (devices rotate when asked)\n"),
    })
}
