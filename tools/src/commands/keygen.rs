//! `rota keygen`: a new signing key (Ed25519, or ECDSA P-256).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rota_keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use rota_manifest::{Algorithm, Sign, SoftwareKey};

use crate::files;
use crate::output;

/// Create a new signing key pair: NAME.key and NAME.pub (Ed25519 unless --algorithm p256).
///
/// NAME.key is the private key (PKCS#8 PEM), created readable by its owner only
/// (mode 0600): keep it secret, ideally offline. NAME.pub is the public key
/// (SubjectPublicKeyInfo PEM), which goes wherever the key's signatures are checked: for
/// a firmware-signing key (`rota sign`), into the devices' root of trust and to
/// `rota verify --trust-anchor`; for a manufacturer CA key (`rota device provision`),
/// into the server's DATA_DIR/device-ca/. Existing files are never overwritten.
///
/// With --pkcs11 URI the key pair is made inside a PKCS#11 token (an HSM, a secure
/// element, a TPM through tpm2-pkcs11), sensitive and never extractable; only NAME.pub
/// is written, and every command that takes a key takes the URI in place of NAME.key.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path and base name of the key files, without extension: `--out keys/release`
    /// writes keys/release.key and keys/release.pub.
    #[arg(long, short = 'o', value_name = "NAME")]
    out: PathBuf,
    /// ed25519, or p256 (ECDSA P-256 with SHA-256: for keys that must also live in a TPM
    /// or a secure element without Ed25519; SUIT envelopes it signs are ES256). TUF role
    /// keys (`rota repo`) are Ed25519.
    #[arg(long, default_value = "ed25519")]
    algorithm: Algorithm,
    /// Make the key inside this PKCS#11 token (RFC 7512 URI naming the token and the new
    /// key's label: `pkcs11:token=release;object=fw-2026?module-path=/usr/lib/softhsm/libsofthsm2.so`).
    /// The PIN comes from the URI's pin-source, $ROTA_PKCS11_PIN, or a prompt.
    #[arg(long, value_name = "PKCS11-URI")]
    pkcs11: Option<Pkcs11Uri>,
}

pub fn run(args: Args) -> Result<()> {
    let base = args.out;
    if base.is_dir() || base.as_os_str().to_string_lossy().ends_with(['/', '\\']) {
        bail!(
            "{} is a directory; --out takes a base name such as {}",
            base.display(),
            base.join("release").display()
        );
    }
    // `--out release.key` means the pair named "release"; any other dot stays
    // (`--out fw-1.2` writes fw-1.2.key).
    let text = base.to_string_lossy();
    let stem = match text
        .strip_suffix(".key")
        .or_else(|| text.strip_suffix(".pub"))
    {
        Some(trimmed) => OsString::from(trimmed),
        None => base.clone().into_os_string(),
    };
    let with = |ext: &str| {
        let mut path = stem.clone();
        path.push(ext);
        PathBuf::from(path)
    };
    let key_path = with(".key");
    let pub_path = with(".pub");
    let hint = "rota keygen never overwrites keys (remove it or choose another --out)";
    if let Some(uri) = &args.pkcs11 {
        return in_token(uri, args.algorithm, &pub_path, hint);
    }
    // Both are checked before either is written, so a refusal leaves nothing behind.
    files::refuse_existing(&key_path, hint)?;
    files::refuse_existing(&pub_path, hint)?;

    let signer = SoftwareKey::generate(args.algorithm).context("cannot generate a key")?;
    let private_pem = signer
        .to_pkcs8_pem()
        .context("cannot encode the private key")?;
    let public_pem = signer
        .public_key_pem()
        .context("cannot encode the public key")?;

    files::create_new(&key_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = files::create_new(&pub_path, public_pem.as_bytes(), 0o644) {
        // Leave no half pair behind: the private key was created just now, by us.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }

    // One key type serves several roles; say where the public half goes for each
    // rather than guess the role from the name.
    output::print(&format!(
        "wrote {} (private key, PKCS#8 PEM, mode 0600: keep it secret)\n\
         wrote {} (public key, SubjectPublicKeyInfo PEM: it goes wherever this key's signatures are checked)\n\
         key id: {}\n\
         as a firmware-signing key (rota sign): a trust anchor in the devices' root of trust and for `rota verify --trust-anchor`\n\
         as a manufacturer CA key (rota device provision): in the server's DATA_DIR/device-ca/\n",
        key_path.display(),
        pub_path.display(),
        hex::encode(signer.public_key().key_id()),
    ))
}

/// `rota keygen --pkcs11`: the pair is made in the token; NAME.pub is the only file.
fn in_token(uri: &Pkcs11Uri, algorithm: Algorithm, pub_path: &Path, hint: &str) -> Result<()> {
    files::refuse_existing(pub_path, hint)?;
    let parent = pub_path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent
        && !parent.is_dir()
    {
        bail!("{} is not a directory", parent.display());
    }
    let key = Pkcs11Key::generate(uri, algorithm)?;
    let public_pem = rota_keys::pem::public_key_to_pem(&key.public_key())
        .context("cannot encode the public key")?;
    files::create_new(pub_path, public_pem.as_bytes(), 0o644).with_context(|| {
        format!("the key was made in the token ({uri}), but its public key was not written")
    })?;
    output::print(&format!(
        "made the key pair inside {}: {}, sensitive and never extractable (sign with --key '{uri}')\n\
         wrote {} (public key, SubjectPublicKeyInfo PEM: it goes wherever this key's signatures are checked)\n\
         key id: {}\n",
        uri.token_part(),
        uri.object_part(),
        pub_path.display(),
        hex::encode(key.public_key().key_id()),
    ))
}
