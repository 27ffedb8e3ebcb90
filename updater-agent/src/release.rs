//! What the agent proves about an assignment before anything touches flash.
//!
//! The server's assignment is only a pointer: every fact the install relies on comes
//! from signed data. TUF (rota-tuf, TUF 1.0.34 §5) says which image and envelope the
//! offline targets keys released, with their lengths and hashes and rota's fields; the
//! SUIT envelope, signed by a firmware key the device's root of trust holds, says what
//! the image is for. The two must agree, and both must agree with the assignment.

use std::time::SystemTime;

use rota_manifest::labels::alg;
use rota_manifest::{Envelope, HostVerifier, Policy, PublicKey};
use rota_protocol::RotaTarget;
use rota_protocol::api::Assignment;
use rota_tuf::{Client as TufClient, HttpFetcher, TargetInfo};

use crate::device::Device;
use crate::install::Failure;

/// rota's fields of a signed target (`custom.rota`, one type with the CLI and server's):
/// refused when absent or malformed, as a target without them is not rota firmware.
fn rota_fields(info: &TargetInfo) -> Result<RotaTarget, Failure> {
    let custom = info.custom.as_ref().unwrap_or(&serde_json::Value::Null);
    match RotaTarget::from_custom(custom) {
        Ok(Some(fields)) => Ok(fields),
        Ok(None) => refused(format!(
            "the signed target {:?} carries no rota fields",
            info.name
        )),
        Err(e) => refused(format!(
            "the signed target {:?} has malformed rota fields: {e}",
            info.name
        )),
    }
}

/// An assignment proven by TUF and SUIT: what to stage and what to download.
pub struct VerifiedRelease {
    /// The image's signed target: its length and every hash it must match.
    pub image: TargetInfo,
    /// Where the image is fetched from (TUF §5.7.3 naming).
    pub image_url: String,
    /// The SUIT envelope, verified.
    pub envelope: Vec<u8>,
    /// The firmware key that signed the envelope: it goes into the slot header.
    pub signer: [u8; 32],
    pub version: u64,
}

/// Where the device finds the repository and what it trusts.
pub struct Trust<'a> {
    pub tuf_dir: &'a std::path::Path,
    pub tuf: rota_tuf::Config,
    pub http: reqwest::blocking::Client,
    pub anchors: &'a [PublicKey],
    pub class_id: [u8; 16],
    /// The version running now: an update must be newer.
    pub running_version: u64,
}

/// Where the device finds the repository.
pub struct Repo<'a> {
    pub tuf_dir: &'a std::path::Path,
    pub tuf: rota_tuf::Config,
    pub http: reqwest::blocking::Client,
}

impl Repo<'_> {
    /// A TUF client of the repository, refreshed (TUF 1.0.34 §5.1: one start time for
    /// every expiry check of this update).
    pub fn refreshed(&self) -> Result<TufClient<HttpFetcher>, Failure> {
        let mut tuf = TufClient::new(
            self.tuf_dir,
            self.tuf.clone(),
            HttpFetcher::new(self.http.clone()),
            SystemTime::now(),
        )
        .map_err(tuf_failure)?;
        tuf.refresh().map_err(tuf_failure)?;
        Ok(tuf)
    }
}

/// What the device's agent does before it installs `assignment`: applies the
/// trust-anchor commands published for its class since its root of trust's counter
/// ([`crate::anchors::catch_up`]: a release signed by a new key comes after the command
/// that adds the key), then checks the assignment as [`verify`] does, with the firmware
/// keys the root of trust now holds valid and unrevoked.
pub fn verify_on<D: Device>(
    assignment: &Assignment,
    repo: &Repo,
    device: &mut D,
    class_id: [u8; 16],
    running_version: u64,
) -> Result<VerifiedRelease, Failure> {
    let mut tuf = repo.refreshed()?;
    crate::anchors::catch_up(device, &mut tuf, class_id)?;
    let anchors = crate::anchors::trusted(device)?;
    let trust = Trust {
        tuf_dir: repo.tuf_dir,
        tuf: repo.tuf.clone(),
        http: repo.http.clone(),
        anchors: &anchors,
        class_id,
        running_version,
    };
    verify_refreshed(assignment, &mut tuf, &trust)
}

/// Applies the trust-anchor commands published since the device's counter, on their own
/// (a revocation deferred until an image signed by the new key runs).
pub fn apply_anchor_commands<D: Device>(
    repo: &Repo,
    device: &mut D,
    class_id: [u8; 16],
) -> Result<crate::anchors::Report, Failure> {
    let mut tuf = repo.refreshed()?;
    crate::anchors::catch_up(device, &mut tuf, class_id)
}

/// Checks `assignment` against signed TUF metadata and the signed envelope.
pub fn verify(assignment: &Assignment, trust: &Trust) -> Result<VerifiedRelease, Failure> {
    let mut tuf = Repo {
        tuf_dir: trust.tuf_dir,
        tuf: trust.tuf.clone(),
        http: trust.http.clone(),
    }
    .refreshed()?;
    verify_refreshed(assignment, &mut tuf, trust)
}

fn verify_refreshed(
    assignment: &Assignment,
    tuf: &mut TufClient<HttpFetcher>,
    trust: &Trust,
) -> Result<VerifiedRelease, Failure> {
    let class = uuid::Uuid::from_bytes(trust.class_id);
    // The assigned image must be a target the offline targets keys signed (§5.7.1–2).
    let image = tuf.target_info(&assignment.target).map_err(tuf_failure)?;
    let RotaTarget::Image {
        class_id,
        version,
        security_version,
        envelope: envelope_name,
    } = rota_fields(&image)?
    else {
        return refused(format!("{:?} is not a firmware image", assignment.target));
    };
    if class_id != class {
        return refused(format!(
            "{:?} is firmware for class {class_id}, not this device's class {class}",
            assignment.target
        ));
    }
    // The server's copy of the signed facts must be the signed facts.
    let signed_sha256 = image
        .hashes
        .iter()
        .find(|(alg, _)| alg == "sha256")
        .map(|(_, hex)| hex.as_str());
    if version != assignment.version
        || security_version != assignment.security_version
        || envelope_name != assignment.envelope_target
        || image.length != assignment.length
        || signed_sha256 != Some(assignment.sha256.as_str())
    {
        return refused(format!(
            "the assignment of {:?} does not match its signed target (version, security version, envelope, length or hash)",
            assignment.target
        ));
    }
    if version <= trust.running_version {
        return refused(format!(
            "{:?} is version {version}, not newer than the running version {}",
            assignment.target, trust.running_version
        ));
    }

    let envelope_info = tuf.target_info(&envelope_name).map_err(tuf_failure)?;
    match rota_fields(&envelope_info)? {
        RotaTarget::Envelope { image } if image == assignment.target => {}
        _ => {
            return refused(format!(
                "{envelope_name:?} is not the signed envelope of {:?}",
                assignment.target
            ));
        }
    }
    // §5.7.3: length and every listed hash, before the bytes are used.
    let envelope = tuf.fetch_target(&envelope_info).map_err(tuf_failure)?;
    // The signed sha256 is the assignment's (checked above).
    let signer = check_envelope(
        &envelope,
        &image,
        &assignment.sha256,
        version,
        security_version,
        trust,
    )?;
    let image_url = tuf.target_url(&image).map_err(tuf_failure)?;
    Ok(VerifiedRelease {
        image,
        image_url,
        envelope,
        signer,
        version,
    })
}

/// The envelope's own checks (the device repeats them when it stages and boots): signed
/// by a trust anchor, for this class, describing exactly the TUF-signed image, at the
/// TUF-signed version and security version.
fn check_envelope(
    envelope: &[u8],
    image: &TargetInfo,
    image_sha256: &str,
    version: u64,
    security_version: u64,
    trust: &Trust,
) -> Result<[u8; 32], Failure> {
    let policy = Policy::default();
    // draft-ietf-suit-manifest §8.3: authenticated by a key the device trusts.
    let authenticated = Envelope::decode(envelope, &policy)
        .and_then(|e| e.authenticate(trust.anchors, &HostVerifier, &policy))
        .map_err(|e| Failure::Refused(format!("the envelope does not verify: {e}")))?;
    let signer = match trust.anchors.get(authenticated.signer) {
        Some(PublicKey::Ed25519(key)) => *key,
        _ => return refused("the envelope's signer is not an Ed25519 trust anchor".into()),
    };
    let claims = authenticated
        .claims(0, None)
        .map_err(|e| Failure::Refused(format!("cannot read the envelope's manifest: {e}")))?;
    // §8.4.8.4 condition-class-identifier.
    if claims.class_id != Some(trust.class_id.as_slice()) {
        return refused("the envelope is for another device class".into());
    }
    // §8.4.2: the sequence number is the release's version, as TUF says.
    if authenticated.manifest.sequence_number != version {
        return refused(format!(
            "the envelope's sequence number {} is not the signed target's version {version}",
            authenticated.manifest.sequence_number
        ));
    }
    // rota's anti-rollback level (parameter -256): the bootloader enforces the envelope's,
    // while the server, its rollouts and the operator see the TUF-signed one. When the two
    // signed statements disagree, the floor the device would set is not the one the
    // release was published with.
    if claims.security_version != Some(security_version) {
        return refused(format!(
            "the envelope's security version ({}) is not the signed target's security version {security_version}",
            claims
                .security_version
                .map_or_else(|| "none".to_owned(), |v| v.to_string())
        ));
    }
    // §8.4.9.2 condition-image-match: the digest and size the envelope promises are the
    // TUF target's, so the two signatures vouch for the same bytes.
    let tuf_sha256 = hex::decode(image_sha256).ok();
    let digest_matches = claims
        .image_digest
        .is_some_and(|d| d.alg == alg::SHA256 && Some(d.bytes) == tuf_sha256.as_deref());
    if !digest_matches || claims.image_size != Some(image.length) {
        return refused(
            "the envelope's image digest or size is not the signed target's".to_string(),
        );
    }
    Ok(signer)
}

fn refused<T>(why: String) -> Result<T, Failure> {
    Err(Failure::Refused(why))
}

fn tuf_failure(e: rota_tuf::Error) -> Failure {
    if e.is_transient() {
        Failure::Transient(format!("TUF: {e}"))
    } else {
        Failure::Refused(format!("TUF: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_manifest::{ImageManifest, Sign, SoftwareKey};
    use sha2::{Digest, Sha256};

    const CLASS: [u8; 16] = [7; 16];
    const IMAGE: &[u8] = b"firmware image";

    /// An envelope for `IMAGE` at version 5 with `security_version`, and the TUF target
    /// of the image.
    fn release(security_version: u64) -> (Vec<u8>, TargetInfo, String, SoftwareKey) {
        let key = SoftwareKey::from_ed25519_seed([9; 32]);
        let digest: [u8; 32] = Sha256::digest(IMAGE).into();
        let envelope = ImageManifest {
            class_id: CLASS,
            image_digest: digest,
            image_size: IMAGE.len() as u64,
            sequence_number: 5,
            security_version,
            ..ImageManifest::default()
        }
        .build_envelope(&[&key])
        .unwrap();
        let sha256 = hex::encode(digest);
        let image = TargetInfo {
            name: "fw-5.bin".into(),
            length: IMAGE.len() as u64,
            hashes: vec![("sha256".into(), sha256.clone())],
            custom: None,
        };
        (envelope, image, sha256, key)
    }

    /// The TUF target says security version 2; an envelope signed with another one (the
    /// firmware key's statement, which the bootloader enforces) must not install: it would
    /// raise the device's anti-rollback floor past what the release says, or leave it
    /// below the level the release is published as carrying.
    #[test]
    fn envelope_whose_security_version_differs_from_the_signed_target_is_refused() {
        let dir = std::env::temp_dir();
        let check = |envelope_security_version: u64| {
            let (envelope, image, sha256, key) = release(envelope_security_version);
            let anchors = [key.public_key()];
            let trust = Trust {
                tuf_dir: &dir,
                tuf: rota_tuf::Config::new("http://unused/", "http://unused/"),
                http: reqwest::blocking::Client::new(),
                anchors: &anchors,
                class_id: CLASS,
                running_version: 1,
            };
            check_envelope(&envelope, &image, &sha256, 5, 2, &trust)
        };
        assert!(check(2).is_ok());
        for other in [1, 3] {
            match check(other) {
                Err(Failure::Refused(why)) => assert!(
                    why.contains(&format!(
                        "security version ({other}) is not the signed target's security version 2"
                    )),
                    "{why}"
                ),
                _ => panic!("an envelope at security version {other} was not refused"),
            }
        }
    }
}
