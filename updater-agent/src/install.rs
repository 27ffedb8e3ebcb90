//! Writing a verified release into the inactive slot: rota-boot stages it (checking the
//! envelope against the root of trust, and finding where an interrupted download
//! stopped), the image streams in with HTTP Range from there, hashed as it goes, and
//! only a slot whose bytes match every signed hash is marked pending.
//!
//! Memory is one chunk, whatever the image size.

use std::io::Read;

use embedded_storage::nor_flash::NorFlash;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};
use rota_boot::{Error as BootError, RootOfTrust, Updater};
use rota_tuf::TargetVerifier;

use crate::error::DeviceError;
use crate::release::VerifiedRelease;
use crate::server::{classify, transient};

/// Why an install step failed, sorted by what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Try again later (network, server): progress on flash is kept.
    #[error("{0}")]
    Transient(String),
    /// Never install this: report it as failed.
    #[error("{0}")]
    Refused(String),
    /// The device itself failed (flash, power): it must restart.
    #[error("the device failed: {0}")]
    Device(#[from] DeviceError),
}

/// What a download moved, for progress and for the "bytes fetched again" figure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Where the download (re)started, as rota-boot found it on flash.
    pub resumed_at: u64,
    /// Image bytes received over the network in this attempt.
    pub received: u64,
}

/// rota-boot's verdicts: a rejection is final, anything else is the device's failure.
fn boot_failure<FE: core::fmt::Debug, RE: core::fmt::Debug>(e: BootError<FE, RE>) -> Failure {
    match e {
        BootError::Rejected(rejection) => {
            Failure::Refused(format!("rota-boot refused: {rejection}"))
        }
        BootError::EnvelopeTooLarge => Failure::Refused(e.to_string()),
        other => Failure::Device(DeviceError::Boot(other.to_string())),
    }
}

/// Stages `release`, downloads the rest of its image into the inactive slot, verifies
/// it and marks it pending. `on_progress` sees (bytes on flash, image size).
pub fn install<F: NorFlash, R: RootOfTrust>(
    updater: &mut Updater<'_, F, R>,
    http: &Client,
    release: &VerifiedRelease,
    chunk_size: usize,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<Transfer, Failure> {
    let length = release.image.length;
    let from = updater
        .stage(&release.signer, &release.envelope)
        .map_err(boot_failure)?;
    let mut verifier =
        TargetVerifier::new(&release.image).map_err(|e| Failure::Refused(format!("TUF: {e}")))?;
    let mut chunk = vec![0u8; chunk_size.max(64)];

    // What an earlier attempt wrote is hashed from flash, so the digest covers the whole
    // image however many attempts it took.
    let mut at = 0u64;
    while at < u64::from(from) {
        let n = chunk.len().min((u64::from(from) - at) as usize);
        updater
            .read_staged(at as u32, &mut chunk[..n])
            .map_err(boot_failure)?;
        verifier.update(&chunk[..n]);
        at += n as u64;
    }

    let mut transfer = Transfer {
        resumed_at: at,
        received: 0,
    };
    on_progress(at, length);
    if at < length {
        let mut response = http
            .get(&release.image_url)
            .header(RANGE, format!("bytes={at}-{}", length - 1))
            .send()
            .map_err(transient)
            .map_err(|e| Failure::Transient(e.to_string()))?;
        match response.status() {
            // RFC 9110 §14.4: the part asked for, and nothing else.
            StatusCode::PARTIAL_CONTENT => {
                let expected = format!("bytes {at}-{}/{length}", length - 1);
                let got = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok());
                if got != Some(expected.as_str()) {
                    return Err(Failure::Transient(format!(
                        "the server answered the range {expected:?} with {got:?}"
                    )));
                }
            }
            // A server without range support sends it all: skip what is on flash.
            StatusCode::OK => {
                let mut skip = at;
                while skip > 0 {
                    let n = chunk.len().min(skip as usize);
                    response
                        .read_exact(&mut chunk[..n])
                        .map_err(|e| Failure::Transient(format!("the download broke: {e}")))?;
                    skip -= n as u64;
                }
            }
            status => {
                let mut body = Vec::new();
                let _ = response.by_ref().take(4096).read_to_end(&mut body);
                return Err(match classify(status, &body) {
                    crate::server::ServerError::Refused { status, message } => Failure::Transient(
                        format!("the image download was refused ({status}): {message}"),
                    ),
                    other => Failure::Transient(other.to_string()),
                });
            }
        }
        while at < length {
            // TUF 1.0.34 §5.7.3: never more than the signed length (endless data).
            let want = chunk.len().min((length - at) as usize);
            let n = fill(&mut response, &mut chunk[..want])
                .map_err(|e| Failure::Transient(format!("the download broke at byte {at}: {e}")))?;
            if n == 0 {
                return Err(Failure::Transient(format!(
                    "the download ended at byte {at} of {length}"
                )));
            }
            updater
                .write(at as u32, &chunk[..n])
                .map_err(boot_failure)?;
            verifier.update(&chunk[..n]);
            at += n as u64;
            transfer.received += n as u64;
            on_progress(at, length);
        }
    }

    // TUF 1.0.34 §5.7.3: the length and every listed hash. A slot that fails is
    // discarded, so the next attempt starts over instead of resuming on bad bytes.
    if let Err(e) = verifier.finish() {
        updater.discard().map_err(boot_failure)?;
        return Err(Failure::Refused(format!(
            "the downloaded image does not match its signed hashes: {e}"
        )));
    }
    // rota-boot verifies the slot in full as the bootloader will (signature, class,
    // floor, SUIT digest) before it marks it pending.
    updater.mark_pending().map_err(boot_failure)?;
    Ok(transfer)
}

/// Reads until `buf` is full or the body ends: whole chunks make whole flash writes,
/// however the network splits the bytes.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Bytes already read are written before the error is reported next time.
            Err(e) if filled > 0 => {
                tracing::debug!(error = %e, "the download broke after a partial chunk");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
