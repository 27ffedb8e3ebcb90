//! The sub-commands, and what they share: reading keys and files.

pub mod provision;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim_image;
#[cfg(feature = "sim")]
pub mod simulate;
pub mod status;

use std::path::Path;
#[cfg(feature = "sim")]
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rota_manifest::PublicKey;

/// The largest envelope or TUF root a command reads.
const MAX_SMALL_FILE: u64 = 512 * 1024;

pub fn read_small(path: &Path, what: &str) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?
        .len();
    if len > MAX_SMALL_FILE {
        return Err(anyhow!(
            "{} is {len} bytes; {what} is at most {MAX_SMALL_FILE}",
            path.display()
        ));
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Firmware-signing public keys (PEM SubjectPublicKeyInfo, as `rota keygen` writes).
pub fn read_anchors(paths: &[std::path::PathBuf]) -> Result<Vec<PublicKey>> {
    if paths.is_empty() {
        return Err(anyhow!("at least one --trust-anchor is needed"));
    }
    paths
        .iter()
        .map(|p| {
            let pem = String::from_utf8(read_small(p, "the trust anchor")?)
                .map_err(|_| anyhow!("{} is not a PEM file", p.display()))?;
            rota_manifest::public_key_from_pem(&pem)
                .map_err(|e| anyhow!("{} is not a firmware public key: {e}", p.display()))
        })
        .collect()
}

/// A private key, Ed25519 or P-256 (a device key, a CA key): a key file or a stub, or
/// a PKCS#11 URI.
pub fn open_signing_key(
    address: &rota_keys::KeyAddress,
    what: &str,
) -> Result<rota_keys::PrivateKey> {
    address
        .open()
        .map_err(|e| anyhow!("cannot use {address} as {what}: {e}"))
}

/// A command-line value that is not what its option takes (clap prints it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[cfg(feature = "sim")]
    #[error("{0:?} is not a duration: a whole number and ms, s or m (250ms, 2s, 5m)")]
    Duration(String),
    #[error("{0:?} is not a size: bytes, or a whole number with K or M (65536, 256K, 16M)")]
    Size(String),
}

/// `250ms`, `2s`, `5m` (only `simulate` takes a duration).
#[cfg(feature = "sim")]
pub fn parse_duration(text: &str) -> Result<Duration, ArgError> {
    let bad = || ArgError::Duration(text.to_string());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// `65536`, `256K`, `16M`.
pub fn parse_size(text: &str) -> Result<u32, ArgError> {
    let (number, factor) = match text.strip_suffix(['K', 'k']) {
        Some(n) => (n, 1024),
        None => match text.strip_suffix(['M', 'm']) {
            Some(n) => (n, 1024 * 1024),
            None => (text, 1),
        },
    };
    number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| ArgError::Size(text.to_string()))
}

/// The TUF root a device trusts at first goes where the agent's TUF client reads it.
pub fn install_trusted_root(state_dir: &Path, root: &[u8]) -> Result<()> {
    let tuf = state_dir.join("tuf");
    std::fs::create_dir_all(&tuf).with_context(|| format!("cannot create {}", tuf.display()))?;
    Ok(rota_agent::state::write_atomically(
        &tuf.join("root.json"),
        root,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_or_say_why_and_never_overflow() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in ["5", "s", "5h", "-1s", "1.5s", "", "307445734561825861m"] {
            assert_eq!(
                parse_duration(bad),
                Err(ArgError::Duration(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("256K"), Ok(256 * 1024));
        assert_eq!(parse_size("16M"), Ok(16 * 1024 * 1024));
        for bad in ["4096M", "1G", "K", "-1", ""] {
            assert_eq!(parse_size(bad), Err(ArgError::Size(bad.into())), "{bad}");
        }
    }
}
