//! `rota device`: provision devices (a key and a certificate from the manufacturer CA),
//! register them with the update server, list and show them (with what their latest
//! attestation showed), change their state, ask for fresh evidence, and set a class's
//! attestation policy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use rota_keys::KeyAddress;
use rota_keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use rota_manifest::{Sign, SoftwareKey};
use rota_protocol::api::{
    AttestationPolicy, ClassAttestation, DeviceInfo, DeviceRegister, FleetSummary,
};
use rota_protocol::identity::{valid_device_id, validate_tags};
use rota_protocol::order::{OrderAction, OrderCreate, OrderIssued};
use rota_protocol::{DeviceCertificate, certify};

use crate::client::{Client, ServerArgs, segment};
use crate::commands::release::{table, time_text};
use crate::files;
use crate::output;

/// The largest certificate file read.
const MAX_CERT_FILE: u64 = 64 * 1024;
/// Devices per page of `GET /api/v1/devices` (the server's maximum).
const PAGE: usize = 1000;

/// Provision devices and manage them on the update server.
///
/// The manufacturer CA key is made once with `rota keygen --out factory-ca`; its
/// factory-ca.pub goes into the server's DATA_DIR/device-ca/ so that the server trusts
/// the certificates it issues.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    Provision(Box<ProvisionArgs>),
    Register(RegisterArgs),
    /// List the devices the server knows.
    List(ListArgs),
    /// Count the fleet: devices per state, and active devices per running version (one
    /// request, however many devices).
    Summary(ListArgs),
    Show(ShowArgs),
    Attest(AttestArgs),
    AttestationPolicy(PolicyArgs),
    Revoke(RevokeArgs),
    Revocations(RevocationsArgs),
    /// Ask a device to rotate its identity key at its next check-in: it makes a new key
    /// (in its token where it has one), the server's device CA certifies it, and the old
    /// key is refused from then on.
    Rotate(StateArgs),
    /// Suspend an active device: the server refuses its requests until it is resumed.
    Suspend(StateArgs),
    /// Resume a suspended device.
    Resume(StateArgs),
    Decommission(DecommissionArgs),
    Transfer(TransferArgs),
    /// Withdraw the order (an erase or a transfer) waiting for a device's next check-in.
    /// A device that took it already is refused its report of it, and carries out nothing.
    WithdrawOrder(StateArgs),
}

/// Decommission a device, for good: it can never check in or be registered again.
///
/// With --erase, the server's device CA signs a decommission order instead, delivered at
/// the device's next check-in: the device sends a last report signed with its identity
/// key, then erases the key (in its token too), its state and, where the part allows,
/// its UDS; the server decommissions it on that report.
#[derive(Debug, clap::Args)]
struct DecommissionArgs {
    /// The device id.
    #[arg(value_name = "ID")]
    id: String,
    /// Have the device erase its credentials (a signed order) before it is decommissioned.
    #[arg(long)]
    erase: bool,
    /// With --erase: days the order stays valid (1 to 30).
    #[arg(long, requires = "erase", value_name = "DAYS")]
    valid_days: Option<u64>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Transfer a device to another operator: a signed order, delivered at its next
/// check-in, names the new server, its device CA and its TUF root (cross-signed with
/// `rota repo cross-sign`). The device reports it done here (and is refused from then
/// on), moves, and is certified by the new operator's server; none of its history here
/// goes with it. Factory reset for resale is a transfer to the manufacturer.
#[derive(Debug, clap::Args)]
struct TransferArgs {
    /// The device id.
    #[arg(value_name = "ID")]
    id: String,
    /// The new operator's server URL.
    #[arg(long, value_name = "URL")]
    to_server: String,
    /// The new operator's device CA public key: a PEM file (as `rota keygen` writes it)
    /// or raw hex.
    #[arg(long, value_name = "FILE.pub|HEX")]
    to_ca: String,
    /// The new operator's root.json, cross-signed by this repository's root keys.
    #[arg(long, value_name = "FILE")]
    to_root: PathBuf,
    /// Days the order stays valid (1 to 30).
    #[arg(long, value_name = "DAYS")]
    valid_days: Option<u64>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Create a device's key and certificate, and register it with the server.
///
/// Writes DIR/ID.key, the device's new Ed25519 private key (PKCS#8 PEM, mode 0600: it
/// goes onto the device and nowhere else), and DIR/ID.cert.json, its certificate signed
/// by the manufacturer CA key, binding the id, class and tags to the key. Never
/// overwrites either. With a server (--server or ROTA_SERVER), registers the device
/// there (state provisioned until it first checks in).
///
/// With --pkcs11 URI the identity key is made inside the device's token (a secure
/// element or a TPM through its PKCS#11 module) and never leaves it: DIR/ID.key is then
/// a stub naming it (one line, its URI), which `rota-agent run --device-key` opens.
/// --ca-key may name a key in an HSM as well.
#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    /// The manufacturer CA's private key: a key file (`rota keygen`) or a PKCS#11 URI.
    #[arg(long, value_name = "FILE|PKCS11-URI")]
    ca_key: KeyAddress,

    /// The device id: 1 to 64 of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "ID")]
    id: String,

    /// The device class (a UUID, the class id its firmware envelopes name).
    #[arg(long, value_name = "UUID", value_parser = uuid::Uuid::parse_str)]
    class: uuid::Uuid,

    /// A tag for rollout selectors (1 to 64 of A-Z a-z 0-9 . _ : -); repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// The device key's algorithm: ed25519, or p256 (what a TPM or a secure element
    /// without Ed25519 holds; the server accepts both).
    #[arg(long, default_value = "ed25519")]
    key_algorithm: rota_manifest::Algorithm,

    /// Make the identity key inside this PKCS#11 token (RFC 7512 URI naming the token
    /// and the key's label) instead of a key file; --key-algorithm p256 for tokens
    /// without Ed25519 (most secure elements and TPMs).
    #[arg(long, value_name = "PKCS11-URI")]
    pkcs11: Option<Pkcs11Uri>,

    /// The device's DICE DeviceID public key, for a device with a UDS: the
    /// device-id.pub `rota flash-image` wrote (or its 64 hex digits). The certificate
    /// binds it, and the server then requires every Alias certificate in the device's
    /// evidence to be signed by it (a clone on another UDS is told apart).
    #[arg(long, value_name = "FILE|HEX")]
    dice_device_id: Option<String>,

    /// The directory to write ID.key and ID.cert.json into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    #[command(flatten)]
    server: ServerArgs,
}

/// Register a provisioned device with the server from its certificate.
///
/// For devices provisioned without a server; registering one that is already
/// registered with the same certificate key and class changes nothing.
#[derive(Debug, clap::Args)]
struct RegisterArgs {
    /// The device certificate (ID.cert.json of `rota device provision`).
    #[arg(value_name = "CERT.json")]
    certificate: PathBuf,

    #[command(flatten)]
    server: ServerArgs,
}

/// Which devices (`list`, `summary`), and how to print them.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only devices of this class (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid::Uuid::parse_str)]
    class: Option<uuid::Uuid>,

    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Show one device: its state, versions, and what its latest attestation showed.
#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The device id.
    #[arg(value_name = "ID")]
    id: String,

    /// Print the server's JSON instead of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Ask a device for fresh attestation evidence at its next check-in.
#[derive(Debug, clap::Args)]
struct AttestArgs {
    /// The device id.
    #[arg(value_name = "ID")]
    id: String,

    /// Also clear its attestation flag (a clone flag included): after an investigation.
    #[arg(long)]
    clear: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Show or set a device class's attestation policy.
///
/// off: attestation is not asked for and decides nothing. software: evidence is asked
/// for, and software-measured evidence (Linux devices) is accepted. required: only
/// evidence measured by the bootloader (DICE) is accepted, and a rollout counts a device's
/// confirmation only with evidence of the new image. In both attesting policies a device
/// whose evidence shows unsigned firmware, an unexpected bootloader or another device's
/// hardware is flagged and offered no update.
#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// The device class (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid::Uuid::parse_str)]
    class: uuid::Uuid,

    /// The policy to set; without it, the current one is shown.
    #[arg(long, value_name = "off|software|required")]
    policy: Option<AttestationPolicy>,

    /// An expected bootloader measurement (64 hex digits, as `rota flash-image` prints
    /// it); repeat for several. None: any bootloader (its measurement is still recorded).
    #[arg(long = "bootloader", value_name = "HEX")]
    bootloaders: Vec<String>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Revoke a device key, one certificate, or the certificates a CA issued (from a time
/// on: a compromised factory line). Every server replica refuses them within a second;
/// the devices refused are listed.
#[derive(Debug, clap::Args)]
#[group(id = "what", required = true, multiple = false)]
struct RevokeArgs {
    /// A device identity key: its public key file (PEM) or its raw public key in hex.
    #[arg(long, value_name = "FILE|HEX", group = "what")]
    key: Option<String>,

    /// One certificate (ID.cert.json).
    #[arg(long, value_name = "CERT.json", group = "what")]
    certificate: Option<PathBuf>,

    /// A CA: its public key file (PEM).
    #[arg(long, value_name = "CA.pub", group = "what")]
    ca: Option<PathBuf>,

    /// With --ca: only certificates issued at or after this time (unix seconds).
    #[arg(long, value_name = "UNIX-SECONDS", requires = "ca")]
    issued_after: Option<u64>,

    /// Why (recorded, and told to the devices refused): 1 to 512 characters.
    #[arg(long, value_name = "TEXT")]
    reason: String,

    #[command(flatten)]
    server: ServerArgs,
}

/// List the revocations the server holds, newest first.
#[derive(Debug, clap::Args)]
struct RevocationsArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// The device a state change is for.
#[derive(Debug, clap::Args)]
struct StateArgs {
    /// The device id.
    #[arg(value_name = "ID")]
    id: String,

    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        DeviceCommand::Provision(args) => provision(*args),
        DeviceCommand::Register(args) => register_file(args),
        DeviceCommand::List(args) => list(args),
        DeviceCommand::Summary(args) => summary(args),
        DeviceCommand::Show(args) => show(args),
        DeviceCommand::Attest(args) => attest(args),
        DeviceCommand::AttestationPolicy(args) => policy(args),
        DeviceCommand::Revoke(args) => revoke(args),
        DeviceCommand::Revocations(args) => revocations(args),
        DeviceCommand::Rotate(args) => {
            let client = Client::connect(&args.server)?;
            let id = &args.id;
            let _: DeviceInfo = client.post_empty(
                &format!("/api/v1/devices/{}/rotate", segment(id)),
                &format!("to ask device {id} to rotate its key"),
            )?;
            output::print(&format!(
                "device {id} will rotate its identity key at its next check-in\n"
            ))
        }
        DeviceCommand::Suspend(args) => change(args, "suspend", "suspended"),
        DeviceCommand::Resume(args) => change(args, "resume", "resumed"),
        DeviceCommand::Decommission(args) if args.erase => order(
            &args.server,
            &args.id,
            OrderCreate {
                action: OrderAction::Decommission,
                server: None,
                device_ca: None,
                tuf_root: None,
                valid_days: args.valid_days,
            },
        ),
        DeviceCommand::Decommission(args) => change(
            StateArgs {
                id: args.id,
                server: args.server,
            },
            "decommission",
            "decommissioned",
        ),
        DeviceCommand::WithdrawOrder(args) => {
            let client = Client::connect(&args.server)?;
            let id = &args.id;
            client.delete(
                &format!("/api/v1/devices/{}/orders", segment(id)),
                &format!("to withdraw the order of device {id}"),
            )?;
            output::print(&format!(
                "the order of device {id} is withdrawn: it is offered updates again\n"
            ))
        }
        DeviceCommand::Transfer(args) => {
            let ca = read_public_key(&args.to_ca)?;
            let root = files::read_limited(&args.to_root, 512 * 1024, "the new TUF root")?;
            use base64::Engine as _;
            order(
                &args.server,
                &args.id,
                OrderCreate {
                    action: OrderAction::Transfer,
                    server: Some(args.to_server),
                    device_ca: Some(hex::encode(ca.as_bytes())),
                    tuf_root: Some(base64::engine::general_purpose::STANDARD.encode(root)),
                    valid_days: args.valid_days,
                },
            )
        }
    }
}

/// Has the server sign `request` for device `id` and queue it for its next check-in.
fn order(server: &ServerArgs, id: &str, request: OrderCreate) -> Result<()> {
    let client = Client::connect(server)?;
    let issued: OrderIssued = client.post(
        &format!("/api/v1/devices/{}/orders", segment(id)),
        &request,
        &format!("to order device {id}"),
    )?;
    let what = match issued.action {
        OrderAction::Decommission => "erase its credentials and leave",
        OrderAction::Transfer => "move to its new operator",
    };
    output::print(&format!(
        "device {id} will {what} at its next check-in (order {}, valid until {})\n\
         the server refuses it once it reports the order done\n",
        &issued.fingerprint[..16],
        time_text(issued.not_after)
    ))
}

/// Creates `dir` (mode 0700) if it does not exist.
fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| anyhow!("cannot create {}: {}", dir.display(), files::reason(&e)))
        }
        Err(e) => bail!("cannot check {}: {}", dir.display(), files::reason(&e)),
    }
}

fn register(client: &Client, certificate: &DeviceCertificate, id: &str) -> Result<DeviceInfo> {
    client.post(
        "/api/v1/devices",
        &DeviceRegister {
            certificate: certificate.clone(),
        },
        &format!("to register device {id}"),
    )
}

fn provision(args: ProvisionArgs) -> Result<()> {
    if !valid_device_id(&args.id) {
        bail!(
            "{:?} is not a valid device id: it must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
            args.id
        );
    }
    validate_tags(&args.tags).map_err(|e| anyhow!("{e}"))?;
    // Everything that can fail before a file is written, is checked first.
    let client = if args.server.is_given() {
        Some(Client::connect(&args.server)?)
    } else {
        None
    };
    let ca = args
        .ca_key
        .open()
        .map_err(|e| anyhow!("cannot use {} as the CA key: {e}", args.ca_key))?;
    let key_path = args.out.join(format!("{}.key", args.id));
    let cert_path = args.out.join(format!("{}.cert.json", args.id));
    let hint = "rota device provision never overwrites a device's key or certificate";
    files::refuse_existing(&key_path, hint)?;
    files::refuse_existing(&cert_path, hint)?;

    // The device key: made in its token (the key file is then a stub naming it), or in
    // memory and written out.
    let (device, key_file): (Box<dyn Sign>, zeroize::Zeroizing<String>) = match &args.pkcs11 {
        Some(uri) => (
            Box::new(Pkcs11Key::generate(uri, args.key_algorithm)?),
            zeroize::Zeroizing::new(rota_keys::stub_text(uri)),
        ),
        None => {
            let key = SoftwareKey::generate(args.key_algorithm).context("cannot generate a key")?;
            let pem = key.to_pkcs8_pem().context("cannot encode the device key")?;
            (Box::new(key), pem)
        }
    };
    let dice_device_id = args
        .dice_device_id
        .as_deref()
        .map(read_device_id)
        .transpose()?;
    let certificate = certify(
        &ca,
        &args.id,
        &device.public_key(),
        dice_device_id.as_ref(),
        &args.class,
        args.tags.clone(),
    )
    .context("cannot issue the certificate")?;
    let mut cert_json = serde_json::to_vec_pretty(&certificate)?;
    cert_json.push(b'\n');

    ensure_dir(&args.out)?;
    files::create_new(&key_path, key_file.as_bytes(), 0o600)?;
    if let Err(e) = files::create_new(&cert_path, &cert_json, 0o644) {
        // No key without its certificate: the key was created just now, by us.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    let mut text = format!(
        "wrote {} ({})\n\
         wrote {} (class {}, tags {}, issued by CA {})\n",
        key_path.display(),
        match &args.pkcs11 {
            Some(uri) => format!(
                "a stub naming the identity key made inside {}: the key never leaves it",
                uri.token_part()
            ),
            None => "the device's private key, mode 0600: install it on the device only".into(),
        },
        cert_path.display(),
        args.class.hyphenated(),
        if args.tags.is_empty() {
            "none".to_string()
        } else {
            args.tags.join(", ")
        },
        &rota_protocol::identity::issuer_id(&ca.public_key())[..16],
    );
    if let Some(client) = &client {
        let info = register(client, &certificate, &args.id).with_context(|| {
            format!(
                "{} and {} were written, but not registered (run `rota device register {}` later)",
                key_path.display(),
                cert_path.display(),
                cert_path.display()
            )
        })?;
        text.push_str(&format!(
            "registered device {} with {} (state {})\n",
            info.id,
            client.base(),
            info.state
        ));
    }
    output::print(&text)
}

fn register_file(args: RegisterArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let path = &args.certificate;
    let bytes = files::read_limited(path, MAX_CERT_FILE, "a device certificate")?;
    let certificate: DeviceCertificate = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{} is not a device certificate: {e}", path.display()))?;
    let name = path.display().to_string();
    let info = register(&client, &certificate, &name)?;
    output::print(&format!(
        "registered device {} (class {}) with {} (state {})\n",
        info.id,
        info.class_id,
        client.base(),
        info.state
    ))
}

fn summary(args: ListArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let query: Vec<(&str, String)> = args
        .class
        .iter()
        .map(|class| ("class", class.hyphenated().to_string()))
        .collect();
    let fleet: FleetSummary = client.get_query("/api/v1/fleet", &query, "to count the fleet")?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&fleet)?;
        text.push('\n');
        return output::print(&text);
    }
    if fleet.states.is_empty() {
        return output::print("no devices\n");
    }
    let states: Vec<Vec<String>> = fleet
        .states
        .iter()
        .map(|c| vec![c.state.to_string(), c.devices.to_string()])
        .collect();
    let mut text = table(&["STATE", "DEVICES"], &states);
    if !fleet.versions.is_empty() {
        let versions: Vec<Vec<String>> = fleet
            .versions
            .iter()
            .map(|c| vec![c.version.to_string(), c.devices.to_string()])
            .collect();
        text.push('\n');
        text.push_str(&table(&["RUNNING VERSION", "ACTIVE DEVICES"], &versions));
    }
    output::print(&text)
}

fn list(args: ListArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let mut devices: Vec<DeviceInfo> = Vec::new();
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        if let Some(class) = &args.class {
            query.push(("class", class.hyphenated().to_string()));
        }
        if let Some(last) = devices.last() {
            query.push(("after", last.id.clone()));
        }
        let page: Vec<DeviceInfo> =
            client.get_query("/api/v1/devices", &query, "to list the devices")?;
        let full = page.len() >= PAGE;
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
    if devices.is_empty() {
        return output::print("no devices\n");
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.class_id.clone(),
                d.state.to_string(),
                or_dash(d.running_version.map(|v| v.to_string())),
                or_dash(d.slot.map(|s| s.to_string())),
                or_dash(d.last_result.map(|r| r.to_string())),
                attested_text(d),
                or_dash(d.last_seen_at.map(time_text)),
                if d.tags.is_empty() {
                    "-".into()
                } else {
                    d.tags.join(",")
                },
            ]
        })
        .collect();
    let mut text = table(
        &[
            "ID",
            "CLASS",
            "STATE",
            "VERSION",
            "SLOT",
            "LAST RESULT",
            "ATTESTED",
            "LAST SEEN",
            "TAGS",
        ],
        &rows,
    );
    text.push_str(&format!("{} devices\n", devices.len()));
    output::print(&text)
}

fn change(args: StateArgs, action: &str, done: &str) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let id = &args.id;
    let info: DeviceInfo = client.post_empty(
        &format!("/api/v1/devices/{}/{action}", segment(id)),
        &format!("to {action} device {id}"),
    )?;
    output::print(&format!("{done} device {id}: it is now {}\n", info.state))
}

/// A DeviceID public key: 64 lowercase hex digits, given or in a file (device-id.pub).
fn read_device_id(given: &str) -> Result<[u8; 32]> {
    let text = if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        given.to_string()
    } else {
        let bytes = files::read_limited(Path::new(given), 1024, "a DeviceID public key")
            .map_err(|e| {
                anyhow!("{given} is not a DeviceID public key (64 hex digits) or a file holding one: {e:#}")
            })?;
        String::from_utf8_lossy(&bytes).trim().to_string()
    };
    hex::decode(&text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            anyhow!("{given} is not a DeviceID public key (64 hex digits, as device-id.pub holds)")
        })
}

/// What a device's latest attestation showed, in one word for a table cell:
/// `v2/bootloader` (version 2, measured by the bootloader), `FAILED`, or `-` (none yet).
fn attested_text(d: &DeviceInfo) -> String {
    use rota_protocol::api::AttestationState;
    match d.attestation {
        AttestationState::None => "-".into(),
        AttestationState::Failed => "FAILED".into(),
        AttestationState::Ok => format!(
            "v{}/{}",
            d.attested_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            d.attested_by.as_deref().unwrap_or("?")
        ),
    }
}

fn show(args: ShowArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let id = &args.id;
    let d: DeviceInfo = client.get(
        &format!("/api/v1/devices/{}", segment(id)),
        &format!("to show device {id}"),
    )?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&d)?;
        text.push('\n');
        return output::print(&text);
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut text = String::new();
    let mut line = |name: &str, value: String| text.push_str(&format!("{name:<20}{value}\n"));
    line("device", d.id.clone());
    line("class", d.class_id.clone());
    line(
        "tags",
        if d.tags.is_empty() {
            "-".into()
        } else {
            d.tags.join(", ")
        },
    );
    line("state", d.state.to_string());
    line(
        "running version",
        or_dash(d.running_version.map(|v| v.to_string())),
    );
    line("slot", or_dash(d.slot.map(|s| s.to_string())));
    line("last result", or_dash(d.last_result.map(|r| r.to_string())));
    line("last seen", or_dash(d.last_seen_at.map(time_text)));
    line("attestation", d.attestation.to_string());
    if let Some(reason) = &d.attestation_reason {
        line("  reason", reason.clone());
    }
    line(
        "  attested version",
        or_dash(d.attested_version.map(|v| v.to_string())),
    );
    line("  measured by", or_dash(d.attested_by.clone()));
    line("  attested at", or_dash(d.attested_at.map(time_text)));
    output::print(&text)
}

fn attest(args: AttestArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let id = &args.id;
    let path = format!(
        "/api/v1/devices/{}/attest{}",
        segment(id),
        if args.clear { "?clear=true" } else { "" }
    );
    let info: DeviceInfo = client.post_empty(&path, &format!("to ask device {id} for evidence"))?;
    output::print(&format!(
        "{}device {id} will send fresh evidence at its next check-in (attestation now {})\n",
        if args.clear { "cleared the flag; " } else { "" },
        info.attestation
    ))
}

fn policy(args: PolicyArgs) -> Result<()> {
    let client = Client::connect(&args.server)?;
    let class = args.class.hyphenated().to_string();
    let path = format!("/api/v1/classes/{class}/attestation");
    let current: ClassAttestation = match args.policy {
        Some(policy) => {
            let body = ClassAttestation {
                policy,
                bootloaders: args
                    .bootloaders
                    .iter()
                    .map(|b| b.to_ascii_lowercase())
                    .collect(),
            };
            body.validate().map_err(|e| anyhow!(e))?;
            client.put_json(
                &path,
                &serde_json::to_vec(&body)?,
                &format!("to set the attestation policy of class {class}"),
            )?
        }
        None => {
            if !args.bootloaders.is_empty() {
                bail!(
                    "--bootloader needs --policy: the policy and its bootloaders are set together"
                );
            }
            client.get(
                &path,
                &format!("to read the attestation policy of class {class}"),
            )?
        }
    };
    output::print(&format!(
        "class {class}: attestation {}; expected bootloaders: {}\n",
        current.policy,
        if current.bootloaders.is_empty() {
            "any".to_string()
        } else {
            current.bootloaders.join(", ")
        }
    ))
}

/// A public key given as a PEM file or as raw hex.
fn read_public_key(given: &str) -> Result<rota_manifest::PublicKey> {
    if let Some(key) = hex::decode(given)
        .ok()
        .and_then(|b| rota_manifest::PublicKey::from_raw(&b))
    {
        return Ok(key);
    }
    let pem = files::read_limited(Path::new(given), 64 * 1024, "a public key")
        .map_err(|e| anyhow!("{given} is not a public key in hex or a key file: {e:#}"))?;
    rota_manifest::public_key_from_pem(&String::from_utf8_lossy(&pem))
        .map_err(|e| anyhow!("{given} is not an Ed25519 or P-256 public key: {e}"))
}

fn revoke(args: RevokeArgs) -> Result<()> {
    use rota_protocol::api::{RevocationCreate, RevocationInfo, RevocationKind};
    let (kind, subject) = if let Some(key) = &args.key {
        (
            RevocationKind::DeviceKey,
            hex::encode(read_public_key(key)?.as_bytes()),
        )
    } else if let Some(path) = &args.certificate {
        let bytes = files::read_limited(path, MAX_CERT_FILE, "a device certificate")?;
        let certificate: DeviceCertificate = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("{} is not a device certificate: {e}", path.display()))?;
        (
            RevocationKind::Certificate,
            hex::encode(certificate.fingerprint()),
        )
    } else if let Some(path) = &args.ca {
        let key = read_public_key(&path.display().to_string())?;
        (RevocationKind::Ca, hex::encode(key.key_id()))
    } else {
        bail!("name what to revoke: --key, --certificate or --ca");
    };
    let body = RevocationCreate {
        kind,
        subject,
        issued_after: args.issued_after,
        reason: args.reason.clone(),
    };
    body.validate().map_err(|e| anyhow!(e))?;
    let client = Client::connect(&args.server)?;
    let info: RevocationInfo = client.post(
        "/api/v1/revocations",
        &body,
        &format!("to revoke {kind} {}", body.subject),
    )?;
    let mut text = format!(
        "revoked {} {} ({}): {} registered devices are refused from now on\n",
        info.kind, info.subject, info.reason, info.devices
    );
    if info.devices > 0 {
        let devices: Vec<DeviceInfo> = client.get_query(
            &format!("/api/v1/revocations/{}/devices", segment(&info.id)),
            &[("limit", PAGE.to_string())],
            "to list the devices refused",
        )?;
        for d in &devices {
            text.push_str(&format!("  {} (class {}, {})\n", d.id, d.class_id, d.state));
        }
        if (devices.len() as u64) < info.devices {
            text.push_str(&format!(
                "  … and {} more\n",
                info.devices - devices.len() as u64
            ));
        }
    }
    output::print(&text)
}

fn revocations(args: RevocationsArgs) -> Result<()> {
    use rota_protocol::api::RevocationInfo;
    let client = Client::connect(&args.server)?;
    let list: Vec<RevocationInfo> = client.get("/api/v1/revocations", "to list revocations")?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&list)?;
        text.push('\n');
        return output::print(&text);
    }
    if list.is_empty() {
        return output::print("no revocations\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                time_text(r.created_at),
                r.kind.to_string(),
                r.subject.chars().take(16).collect(),
                r.issued_after.map(time_text).unwrap_or_else(|| "-".into()),
                r.devices.to_string(),
                r.reason.clone(),
            ]
        })
        .collect();
    output::print(&table(
        &[
            "REVOKED",
            "KIND",
            "SUBJECT",
            "ISSUED AFTER",
            "DEVICES",
            "REASON",
        ],
        &rows,
    ))
}
