//! Writing results to stdout, and the names and formats shared by the commands.

use std::io::{self, Write};

use anyhow::Result;
use rota_manifest::{SignatureAlgorithm, SuitDigest};

/// Prints `text` to stdout. A closed pipe (`rota inspect x | head -1`) is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

/// The registered name of a COSE signature algorithm, for the ones worth naming.
pub fn signature_alg_name(id: i64) -> Option<&'static str> {
    if let Some(alg) = SignatureAlgorithm::from_cose(id) {
        return Some(alg.name());
    }
    Some(match id {
        -35 => "ES384",
        -36 => "ES512",
        -37 => "PS256",
        -53 => "Ed448",
        -257 => "RS256",
        5 => "HMAC 256/256",
        _ => return None,
    })
}

/// The name of a SUIT digest algorithm (COSE ids, RFC 9054).
pub fn digest_alg_name(id: i64) -> Option<&'static str> {
    Some(match id {
        -16 => "sha-256",
        -43 => "sha-384",
        -44 => "sha-512",
        -18 => "shake128",
        -45 => "shake256",
        _ => return None,
    })
}

/// `sha-256 0011…` (or the numeric id of an unknown algorithm).
pub fn digest_text(digest: &SuitDigest<'_>) -> String {
    match digest_alg_name(digest.alg) {
        Some(name) => format!("{name} {}", hex::encode(digest.bytes)),
        None => format!("alg {} {}", digest.alg, hex::encode(digest.bytes)),
    }
}

/// A 16-byte identifier as a UUID, anything else as hex.
pub fn id_text(id: &[u8]) -> String {
    match uuid::Uuid::from_slice(id) {
        Ok(uuid) => uuid.hyphenated().to_string(),
        Err(_) => hex::encode(id),
    }
}

/// The first bytes of a key id, enough to tell keys apart in a summary.
pub fn short_id(id: &[u8]) -> String {
    hex::encode(&id[..id.len().min(8)])
}
