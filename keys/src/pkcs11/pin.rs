//! Where a token's user PIN comes from: never a command-line argument.
//!
//! In order: the URI's `pin-source` (RFC 7512 §2.3: a file, as `file:/path` or a path),
//! the `ROTA_PKCS11_PIN` environment variable, a prompt when standard input is a
//! terminal. A PIN file may end in one newline, which is not part of the PIN.

use std::io::{IsTerminal as _, Read as _};

use zeroize::Zeroizing;

use super::{Pkcs11Error, Pkcs11Uri};

/// The environment variable holding a token's user PIN.
pub const PIN_ENV: &str = "ROTA_PKCS11_PIN";

/// Largest PIN file read: PKCS#11 PINs are short (SoftHSM2 allows 255 bytes).
const MAX_PIN_FILE_LEN: u64 = 4096;

/// The user PIN for the token `uri` names.
pub(super) fn user_pin(uri: &Pkcs11Uri) -> Result<Zeroizing<String>, Pkcs11Error> {
    if let Some(source) = &uri.pin_source {
        return pin_file(uri, source);
    }
    if let Ok(pin) = std::env::var(PIN_ENV) {
        return Ok(Zeroizing::new(pin));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("PIN for PKCS#11 {}: ", uri.token_part());
        return rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| Pkcs11Error::PinSource {
                source_name: "the terminal".into(),
                reason: e.to_string(),
            });
    }
    Err(Pkcs11Error::NoPin {
        token: uri.token_part(),
    })
}

fn pin_file(uri: &Pkcs11Uri, source: &str) -> Result<Zeroizing<String>, Pkcs11Error> {
    let path = source
        .strip_prefix("file://")
        .or_else(|| source.strip_prefix("file:"))
        .unwrap_or(source);
    let fail = |reason: String| Pkcs11Error::PinSource {
        source_name: format!("pin-source={source}"),
        reason,
    };
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PIN_FILE_LEN + 1).read_to_string(&mut text))
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_PIN_FILE_LEN {
        return Err(fail(format!("the file is over {MAX_PIN_FILE_LEN} bytes")));
    }
    let pin = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if pin.is_empty() {
        return Err(fail(format!(
            "the file is empty (for {})",
            uri.token_part()
        )));
    }
    Ok(Zeroizing::new(pin.to_owned()))
}
