//! `rota inspect`: what an envelope says, without trusting it.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use rota_manifest::{ComponentClaims, CoseSign1, Envelope, Key, Manifest, Policy};
use serde_json::{Value, json};

use crate::files;
use crate::output;

/// Show what an envelope contains: sequence number, components, image digest and
/// size, security version, URI and signatures.
///
/// Nothing is verified: the contents shown are what the envelope claims. Use
/// `rota verify` to check that a trusted key signed them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text (for scripts; ids and digests in hex,
    /// absent values as null).
    #[arg(long)]
    json: bool,

    /// The envelope to inspect.
    #[arg(value_name = "ENVELOPE")]
    envelope: PathBuf,
}

/// Everything inspect reports, gathered once for both output forms.
struct Report<'a> {
    size: usize,
    envelope: Envelope<'a>,
    manifest: Manifest<'a>,
    digest_alg: i64,
    digest: &'a [u8],
    digest_matches: Option<bool>,
    components: Vec<Vec<&'a [u8]>>,
    claims: Vec<Result<ComponentClaims<'a>, rota_manifest::Error>>,
    signatures: Vec<Result<CoseSign1<'a>, rota_manifest::Error>>,
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.envelope;
    let bytes = files::read_envelope(path)?;
    let envelope = Envelope::decode(&bytes, &Policy::default())
        .map_err(|e| anyhow!("{} is not a valid SUIT envelope: {e}", path.display()))?;
    let invalid = |e| anyhow!("{} is not a valid SUIT envelope: {e}", path.display());
    let (_, digest, _) = envelope.authentication_wrapper().map_err(invalid)?;
    let manifest = envelope.manifest_unauthenticated().map_err(invalid)?;
    let components: Vec<Vec<&[u8]>> = manifest
        .common
        .components()
        .map(|c| c.segments().collect())
        .collect();
    let report = Report {
        size: bytes.len(),
        envelope,
        manifest,
        digest_alg: digest.alg,
        digest: digest.bytes,
        digest_matches: digest.matches(envelope.manifest_bytes()).ok(),
        claims: (0..components.len())
            .map(|i| envelope.claims(&manifest, i, None))
            .collect(),
        components,
        signatures: envelope.signatures().map_err(invalid)?.collect(),
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&report.json())?;
        text.push('\n');
        output::print(&text)
    } else {
        output::print(&report.text(&path.display().to_string()))
    }
}

/// Names of envelope members (§8.2, §8.4.11).
fn envelope_key_name(key: i64) -> Option<&'static str> {
    Some(match key {
        1 => "delegation",
        2 => "authentication-wrapper",
        3 => "manifest",
        16 => "payload-fetch (severed)",
        20 => "install (severed)",
        23 => "text (severed)",
        _ => return None,
    })
}

/// Names of manifest members (§8.4).
fn manifest_key_name(key: i64) -> Option<&'static str> {
    Some(match key {
        1 => "manifest-version",
        2 => "sequence-number",
        3 => "common",
        4 => "reference-uri",
        7 => "validate",
        8 => "load",
        9 => "invoke",
        16 => "payload-fetch",
        20 => "install",
        23 => "text",
        _ => return None,
    })
}

fn key_json(key: Key<'_>) -> Value {
    match key {
        Key::Int(i) => json!(i),
        Key::Text(s) => json!(s),
        Key::Bytes(b) | Key::Other(b) => json!(hex::encode(b)),
    }
}

fn key_text(key: Key<'_>, name: fn(i64) -> Option<&'static str>) -> String {
    match key {
        Key::Int(i) => match name(i) {
            Some(n) => format!("{i} ({n})"),
            None => i.to_string(),
        },
        Key::Text(s) => format!("{s:?}"),
        Key::Bytes(b) | Key::Other(b) => format!("h'{}'", hex::encode(b)),
    }
}

fn hex_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| json!(hex::encode(b)))
}

fn claims_json(claims: &ComponentClaims<'_>) -> Value {
    json!({
        "vendor_id": hex_or_null(claims.vendor_id),
        "class_id": hex_or_null(claims.class_id),
        "image_digest": hex_or_null(claims.image_digest.map(|d| d.bytes)),
        "image_digest_alg": claims.image_digest.map(|d| d.alg),
        "image_size": claims.image_size,
        "security_version": claims.security_version,
        "uri": claims.uri,
    })
}

impl Report<'_> {
    fn json(&self) -> Value {
        let component_claims: Vec<Value> = self
            .claims
            .iter()
            .map(|c| match c {
                Ok(claims) => claims_json(claims),
                Err(e) => json!({ "error": e.to_string() }),
            })
            .collect();
        let signatures: Vec<Value> = self
            .signatures
            .iter()
            .map(|s| match s {
                Ok(cose) => json!({
                    "alg": cose.alg,
                    "alg_name": output::signature_alg_name(cose.alg),
                    "kid": hex_or_null(cose.kid),
                }),
                Err(e) => json!({
                    "alg": null,
                    "alg_name": null,
                    "kid": null,
                    "error": e.to_string(),
                }),
            })
            .collect();
        // Component 0's claims at the top level: what `rota verify --image` checks.
        let first = match self.claims.first() {
            Some(Ok(claims)) => *claims,
            _ => ComponentClaims::default(),
        };
        let digest = first.image_digest;
        json!({
            "authenticated": false,
            "envelope_size": self.size,
            "sequence_number": self.manifest.sequence_number,
            "security_version": first.security_version,
            "manifest_digest": hex::encode(self.digest),
            "manifest_digest_alg": self.digest_alg,
            "manifest_digest_matches": self.digest_matches,
            "components": self
                .components
                .iter()
                .map(|c| c.iter().map(hex::encode).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "vendor_id": hex_or_null(first.vendor_id),
            "class_id": hex_or_null(first.class_id),
            "image_digest": hex_or_null(digest.map(|d| d.bytes)),
            "image_digest_alg": digest.map(|d| d.alg),
            "image_size": first.image_size,
            "uri": first.uri,
            "reference_uri": self.manifest.reference_uri,
            "signatures": signatures,
            "envelope_keys": self.envelope.member_keys().map(key_json).collect::<Vec<_>>(),
            "manifest_keys": self.manifest.member_keys().map(key_json).collect::<Vec<_>>(),
            "component_claims": component_claims,
        })
    }

    fn text(&self, name: &str) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let mut line = |label: &str, value: &str| {
            let _ = writeln!(s, "  {label:<20} {value}");
        };
        let digest_note = match self.digest_matches {
            Some(true) => "matches the manifest",
            Some(false) => "DOES NOT match the manifest",
            None => "algorithm not supported",
        };
        let digest = rota_manifest::SuitDigest {
            alg: self.digest_alg,
            bytes: self.digest,
        };
        let keys = |keys: Vec<String>| keys.join(", ");
        line(
            "envelope keys",
            &keys(
                self.envelope
                    .member_keys()
                    .map(|k| key_text(k, envelope_key_name))
                    .collect(),
            ),
        );
        line(
            "manifest keys",
            &keys(
                self.manifest
                    .member_keys()
                    .map(|k| key_text(k, manifest_key_name))
                    .collect(),
            ),
        );
        line(
            "manifest digest",
            &format!("{} ({digest_note})", output::digest_text(&digest)),
        );
        line(
            "sequence number",
            &self.manifest.sequence_number.to_string(),
        );
        if let Some(uri) = self.manifest.reference_uri {
            line("reference uri", uri);
        }
        for (i, (component, claims)) in self.components.iter().zip(&self.claims).enumerate() {
            let id = component
                .iter()
                .map(|segment| format!("h'{}'", hex::encode(segment)))
                .collect::<Vec<_>>()
                .join(", ");
            line(&format!("component {i}"), &format!("[{id}]"));
            match claims {
                Ok(c) => {
                    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
                    line("  vendor id", &or_none(c.vendor_id.map(output::id_text)));
                    line("  class id", &or_none(c.class_id.map(output::id_text)));
                    line(
                        "  image digest",
                        &or_none(c.image_digest.as_ref().map(output::digest_text)),
                    );
                    line(
                        "  image size",
                        &or_none(c.image_size.map(|n| format!("{n} bytes"))),
                    );
                    line(
                        "  security version",
                        &or_none(c.security_version.map(|v| v.to_string())),
                    );
                    line("  uri", &or_none(c.uri.map(str::to_string)));
                }
                Err(e) => line("  error", &e.to_string()),
            }
        }
        line("signatures", &self.signatures.len().to_string());
        for (i, signature) in self.signatures.iter().enumerate() {
            let text = match signature {
                Ok(cose) => format!(
                    "{} ({}), kid {}",
                    output::signature_alg_name(cose.alg).unwrap_or("unknown algorithm"),
                    cose.alg,
                    cose.kid.map_or("none".into(), hex::encode),
                ),
                Err(e) => format!("unreadable: {e}"),
            };
            line(&format!("  [{i}]"), &text);
        }
        format!(
            "{name}: SUIT envelope, {} bytes\n\
             NOT VERIFIED: this is what the envelope claims; `rota verify` checks who signed it\n\
             {s}",
            self.size
        )
    }
}
