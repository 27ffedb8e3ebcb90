//! `rota sign`: build and sign the envelope of one firmware image.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use rota_keys::{KeyAddress, PrivateKey};
use rota_manifest::{ImageManifest, Sign};

use crate::files;
use crate::output;

/// Sign a firmware image: write a SUIT envelope (a signed manifest) for it.
///
/// The image is hashed (SHA-256) as it is read, never loaded whole. The manifest says
/// which devices may install the image (vendor and class id), what it is (digest and
/// size), its place in the release order (sequence number) and its anti-rollback level
/// (security version); it is signed with the key's algorithm (Ed25519, COSE alg -19, or
/// ECDSA P-256, ES256), in a PKCS#11 token when --key is a `pkcs11:` URI.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The private signing key: a key file (PKCS#8 PEM, as written by `rota keygen`) or
    /// a PKCS#11 URI naming a key in an HSM (`rota keygen --pkcs11`).
    #[arg(long, value_name = "NAME.key|PKCS11-URI")]
    key: KeyAddress,

    /// The firmware image to sign.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,

    /// The vendor's UUID (SUIT vendor-id); devices refuse other vendors' images.
    /// Any UUID form: fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe, or 32 hex digits.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    vendor_id: [u8; 16],

    /// The device class's UUID (SUIT class-id); devices of other classes refuse the image.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    class_id: [u8; 16],

    /// The manifest sequence number: orders releases. Each release needs a higher
    /// number than the last; devices refuse a manifest older than the one they run.
    #[arg(long, value_name = "N")]
    sequence: u64,

    /// The security version (anti-rollback level) of the image. Raise it only when
    /// older images must stop booting: devices refuse images below their floor.
    #[arg(long, value_name = "N")]
    security_version: u64,

    /// The component the image is for, as hex byte strings (the segments of a SUIT
    /// component identifier) separated by '/' or ','. For example `00` (the default,
    /// [h'00']) or `6669726d77617265/01` ([h'6669726d77617265', h'01']).
    #[arg(long, value_name = "ID", value_parser = parse_component, default_value = "00")]
    component: Component,

    /// Where devices download the image from. Adds an install step (fetch from URI,
    /// then check the digest) to the manifest.
    #[arg(long, value_name = "URI")]
    uri: Option<String>,

    /// The envelope to write (conventionally NAME.suit).
    #[arg(long, short = 'o', value_name = "OUT.suit")]
    output: PathBuf,

    /// Replace OUTPUT if it exists (it is replaced atomically).
    #[arg(long)]
    force: bool,
}

/// The segments of a component identifier.
#[derive(Clone, Debug)]
pub struct Component(Vec<Vec<u8>>);

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    uuid::Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|_| {
            format!("'{s}' is not a UUID (expected e.g. fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe)")
        })
}

fn parse_component(s: &str) -> Result<Component, String> {
    let segments = s
        .split(['/', ','])
        .map(|segment| {
            let hex_digits = segment.trim();
            if hex_digits.is_empty() {
                return Err(format!("'{s}' has an empty segment"));
            }
            hex::decode(hex_digits)
                .map_err(|_| format!("'{segment}' is not hex bytes (expected e.g. 00 or 6669726d)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Component(segments))
}

pub fn run(args: Args) -> Result<()> {
    if !args.force {
        files::refuse_existing(
            &args.output,
            "pass --force to replace it, or choose another -o",
        )?;
    }
    let signer = load_signing_key(&args.key)?;

    let digest = files::digest_image(&args.image)?;
    let image_size = digest.len();
    if image_size == 0 {
        bail!(
            "{} is empty; refusing to sign an empty image",
            args.image.display()
        );
    }
    let image_digest = digest.finalize();

    let manifest = ImageManifest {
        vendor_id: args.vendor_id,
        class_id: args.class_id,
        component: args.component.0,
        image_digest,
        image_size,
        sequence_number: args.sequence,
        security_version: args.security_version,
        uri: args.uri,
        description: None,
    };
    let envelope = manifest
        .build_envelope(&[&signer])
        .map_err(|e| anyhow!("cannot sign {}: {e}", args.image.display()))?;
    files::write_atomically(&args.output, &envelope, args.force)?;

    output::print(&format!(
        "signed {} ({image_size} bytes, sha-256 {}) -> {} ({} bytes): sequence {}, \
         security version {}, {} key {}\n",
        args.image.display(),
        hex::encode(image_digest),
        args.output.display(),
        envelope.len(),
        args.sequence,
        args.security_version,
        match signer.algorithm() {
            rota_keys::Algorithm::Ed25519 => "Ed25519",
            rota_keys::Algorithm::EcdsaP256Sha256 => "ECDSA P-256",
        },
        output::short_id(&signer.public_key().key_id()),
    ))
}

/// Opens the signing key (a file, warning when others can read it, or a token key).
pub fn load_signing_key(address: &KeyAddress) -> Result<PrivateKey> {
    let key = address
        .open()
        .map_err(|e| anyhow!("cannot use {address} as a signing key: {e}"))?;
    #[cfg(unix)]
    if let Some(path) = address.file() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} is readable by other users (mode {mode:04o}); chmod 600 it",
                    path.display()
                );
            }
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_segments() {
        assert_eq!(parse_component("00").unwrap().0, vec![vec![0x00]]);
        assert_eq!(
            parse_component("6669726d77617265/01").unwrap().0,
            vec![b"firmware".to_vec(), vec![0x01]]
        );
        assert_eq!(
            parse_component("AB,cd").unwrap().0,
            vec![vec![0xab], vec![0xcd]]
        );
        assert!(parse_component("").unwrap_err().contains("empty segment"));
        assert!(
            parse_component("00//01")
                .unwrap_err()
                .contains("empty segment")
        );
        assert!(parse_component("0").unwrap_err().contains("not hex"));
        assert!(parse_component("zz").unwrap_err().contains("not hex"));
    }

    #[test]
    fn uuids_in_any_form() {
        let expected = [
            0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4,
            0x1f, 0xfe,
        ];
        for form in [
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
            "fa6b4a53d5ad5fdfbe9de663e4d41ffe",
            "urn:uuid:fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        ] {
            assert_eq!(parse_uuid(form).unwrap(), expected, "{form}");
        }
        assert!(parse_uuid("fa6b4a53").is_err());
    }
}
