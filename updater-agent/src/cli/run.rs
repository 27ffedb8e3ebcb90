//! `rota-agent run`: the agent on a Linux device.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rota_agent::device::Identity;
use rota_agent::device::linux::{IdentityFiles, LinuxConfig, LinuxDevice, recover_identity};
use rota_agent::server::ServerClient;
use rota_agent::{Agent, Config, Outcome};
use rota_protocol::DeviceCertificate;

/// Run the update agent on this Linux device: check in, install assigned updates into
/// the inactive slot, reboot into them, confirm them after a healthy start.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// rota-server's URL.
    #[arg(long, env = "ROTA_SERVER")]
    server: String,
    /// The agent's own files (TUF metadata, the state of an update).
    #[arg(long)]
    state_dir: PathBuf,
    /// The flash image file or MTD partition holding the journal and both slots.
    #[arg(long)]
    flash: PathBuf,
    /// The OTP cells (rota's OTP map) holding the root of trust.
    #[arg(long)]
    otp: PathBuf,
    /// The largest image a slot holds (as provisioned): bytes, or with K or M.
    #[arg(long, value_parser = super::parse_size)]
    image_capacity: u32,
    /// The device's private key, from `rota device provision`: a key file (PKCS#8 PEM,
    /// or the stub naming a key in the device's token), or a PKCS#11 URI (a secure
    /// element or a TPM through tpm2-pkcs11).
    #[arg(long, value_name = "FILE|PKCS11-URI")]
    device_key: rota_keys::KeyAddress,
    /// The device's certificate, from `rota device provision`: its id, and self-enrolment.
    #[arg(long)]
    certificate: PathBuf,
    /// A firmware-signing public key the root of trust holds (repeatable).
    #[arg(long = "trust-anchor", required = true)]
    trust_anchors: Vec<PathBuf>,
    /// The operator's device CA public key (PEM, repeatable): the CA whose signed orders
    /// (decommission, ownership transfer) this device obeys. Without one it obeys none.
    /// After a transfer the new operator's, kept in the state directory, replaces it.
    #[arg(long = "operator-ca", value_name = "FILE.pub")]
    operator_cas: Vec<PathBuf>,
    /// Run after a trial boot (sh -c); exit status 0 means healthy. ROTA_VERSION is set.
    #[arg(long)]
    health_command: Option<String>,
    /// Bytes per network read and flash write: bytes, or with K or M.
    #[arg(long, default_value = "16K", value_parser = super::parse_size)]
    chunk_size: u32,
    /// One pass, then exit: 0 if up to date or updated, 1 otherwise.
    #[arg(long)]
    once: bool,
}

pub fn run(args: Args) -> Result<()> {
    let files = IdentityFiles {
        key: args.device_key.clone(),
        certificate: args.certificate.clone(),
    };
    // A rotation or a decommission a power cut interrupted is finished before the key
    // and certificate are read: they may be halfway between old and new.
    recover_identity(&files, &args.state_dir, &args.otp)
        .map_err(|e| anyhow!("cannot start: {e}"))?;
    let certificate: DeviceCertificate =
        serde_json::from_slice(&super::read_small(&args.certificate, "the certificate")?)
            .with_context(|| {
                format!("{} is not a device certificate", args.certificate.display())
            })?;
    let body = certificate.claims_unverified().map_err(|e| {
        anyhow!(
            "{} is not a valid certificate: {e}",
            args.certificate.display()
        )
    })?;
    let key = super::open_signing_key(&args.device_key, "the device key")?;
    if body.public_key != hex::encode(rota_keys::Sign::public_key(&key).as_bytes()) {
        return Err(anyhow!(
            "{} does not certify the key {}",
            args.certificate.display(),
            args.device_key
        ));
    }
    let device = LinuxDevice::open_with_identity(
        LinuxConfig {
            identity: Identity {
                device_id: body.device_id.clone(),
                key: Box::new(key),
            },
            anchors: super::read_anchors(&args.trust_anchors)?,
            state_dir: args.state_dir,
            flash: args.flash,
            otp: args.otp,
            image_capacity: args.image_capacity,
            health_command: args.health_command,
        },
        files,
    )?;
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()?;
    let config = Config {
        chunk_size: args.chunk_size as usize,
        operator_cas: args
            .operator_cas
            .iter()
            .map(|path| {
                let pem = String::from_utf8(super::read_small(path, "the operator CA")?)
                    .map_err(|_| anyhow!("{} is not a PEM file", path.display()))?;
                rota_keys::pem::public_key_from_pem(&pem)
                    .map_err(|e| anyhow!("{} is not a public key: {e}", path.display()))
            })
            .collect::<Result<_>>()?,
        ..Config::new(&args.server)
    };
    let server = ServerClient::new(http.clone(), &config.server, config.answer_limits);
    let mut agent = Agent::new(device, config, http, Some(certificate))?;
    loop {
        if agent.device().rotation_pending() {
            // A new key was made and maybe certified (the old one then refused) before a
            // restart: the same key finishes the rotation before anything else.
            match rota_agent::rotate::rotate(agent.device_mut(), &server) {
                Ok(_) => println!("finished the interrupted rotation of the identity key"),
                Err(e) => eprintln!("cannot finish the rotation of the identity key yet: {e}"),
            }
        }
        let (outcome, wait) = agent
            .cycle()
            .map_err(|e| anyhow!("the device failed: {e}"))?;
        match &outcome {
            Outcome::UpToDate => tracing::info!("up to date"),
            Outcome::Confirmed(v) => println!("updated to version {v}, confirmed"),
            Outcome::Reverted { version, reason } => {
                println!("version {version} was reverted: {reason}")
            }
            Outcome::Refused(why) => println!("update refused: {why}"),
            Outcome::Retrying(why) => eprintln!("will retry in {wait:?}: {why}"),
            Outcome::Decommissioned => {
                println!("decommissioned: the identity key and the agent's state are erased");
                return Ok(());
            }
        }
        if args.once {
            return match outcome {
                Outcome::UpToDate | Outcome::Confirmed(_) => Ok(()),
                other => Err(anyhow!("the pass ended with {other:?}")),
            };
        }
        std::thread::sleep(wait);
    }
}
