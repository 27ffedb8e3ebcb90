//! `rota verify`: is this envelope authentic, and is this the image it signs?

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use rota_manifest::{
    ComponentClaims, Envelope, HostVerifier, Policy, PublicKey, public_key_from_pem,
};

use crate::files;
use crate::output;

/// Check that an envelope is signed by a trusted key, and optionally that an image is
/// the one it signs.
///
/// Runs the checks a device runs, in its order: the envelope's structure, the manifest
/// digest, a signature by one of the trust anchors, the manifest itself, and, with
/// --image, the image's size and SHA-256 against the manifest (component 0).
/// Exits 0 with a one-line summary when every check passes, 1 with the failed check.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A trusted public key (PEM "PUBLIC KEY": Ed25519 or ECDSA P-256), such as the
    /// NAME.pub of `rota keygen`. Repeat to trust several keys.
    #[arg(long = "trust-anchor", value_name = "PUB.pem", required = true)]
    trust_anchors: Vec<PathBuf>,

    /// Also accept COSE algorithm -8 (polymorphic EdDSA) as Ed25519. Off by default:
    /// rota signs with -19 (Ed25519), which cannot be confused with Ed448.
    #[arg(long = "allow-eddsa-8")]
    allow_eddsa_8: bool,

    /// The envelope to verify.
    #[arg(value_name = "ENVELOPE")]
    envelope: PathBuf,

    /// The image to check against the manifest's digest and size (read in 64 KiB
    /// chunks, never whole).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let anchors = args
        .trust_anchors
        .iter()
        .map(|path| load_anchor(path))
        .collect::<Result<Vec<_>>>()?;
    let policy = Policy {
        allow_eddsa_8: args.allow_eddsa_8,
        ..Policy::default()
    };

    let path = &args.envelope;
    let bytes = files::read_envelope(path)?;
    let envelope = Envelope::decode(&bytes, &policy)
        .map_err(|e| anyhow!("{} is not a valid SUIT envelope: {e}", path.display()))?;
    let auth = envelope
        .authenticate(&anchors, &HostVerifier, &policy)
        .map_err(|e| anyhow!("{} is not authentic: {e}", path.display()))?;

    let claims = auth
        .claims(0, None)
        .map_err(|e| anyhow!("cannot read the manifest of {}: {e}", path.display()))?;
    let security_version = match claims.security_version {
        Some(v) => v.to_string(),
        None => "none".into(),
    };
    let mut summary = format!(
        "{}: authentic: sequence {}, security version {security_version}, {} signature by {}",
        path.display(),
        auth.manifest.sequence_number,
        auth.algorithm.name(),
        args.trust_anchors[auth.signer].display(),
    );

    if let Some(image) = &args.image {
        let size = check_image(image, path, &claims)?;
        summary.push_str(&format!("; image matches ({size} bytes)"));
    }
    summary.push('\n');
    output::print(&summary)
}

/// Checks that `image` is the image the manifest of `envelope` describes (component 0's
/// `claims`): its SHA-256, streamed from the file, and its size. Returns the size.
pub fn check_image(image: &Path, envelope: &Path, claims: &ComponentClaims<'_>) -> Result<u64> {
    let expected = claims.image_digest.ok_or_else(|| {
        anyhow!(
            "cannot check {}: the manifest of {} names no image digest",
            image.display(),
            envelope.display()
        )
    })?;
    let digest = files::digest_image(image)?;
    let size = digest.len();
    digest.check(&expected, claims.image_size).map_err(|e| {
        anyhow!(
            "{} is not the image {} signs: {e}",
            image.display(),
            envelope.display()
        )
    })?;
    Ok(size)
}

/// Reads a trust anchor's PEM file.
pub fn load_anchor(path: &Path) -> Result<PublicKey> {
    let pem = files::read_key_file(path)?;
    public_key_from_pem(&pem)
        .map_err(|e| anyhow!("cannot use {} as a trust anchor: {e}", path.display()))
}
