//! Arbitrary bytes as the COSE_Sign1 authentication block of the Ed25519 test envelope
//! (manifest/testdata/ed25519-envelope.suit): the envelope around it, its manifest and
//! its digest stay valid, so every input gets past the digest check and reaches COSE
//! decoding, key selection, Sig_structure and signature verification.
//!
//! The envelope is rebuilt as
//! `107({2: bstr .cbor [digest bstr, bstr INPUT], 3: manifest bstr})` and handed to the
//! same checks as `envelope_decode` (including the independent re-verification).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rota_manifest::{Envelope, Policy};

mod common;

const FIXTURE: &[u8] = include_bytes!("../../testdata/ed25519-envelope.suit");

/// The fixture's digest bstr and manifest bstr, each with its header.
fn parts() -> &'static (Vec<u8>, Vec<u8>) {
    static PARTS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    PARTS.get_or_init(|| {
        let envelope = Envelope::decode(FIXTURE, &Policy::default()).expect("the fixture decodes");
        let (digest, _, _) = envelope.authentication_wrapper().expect("its wrapper");
        (digest.encoded.to_vec(), envelope.manifest_bytes().to_vec())
    })
}

/// A CBOR head (RFC 8949 §3), shortest form.
fn head(out: &mut Vec<u8>, major: u8, n: usize) {
    let m = major << 5;
    let n = n as u64;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn bstr(out: &mut Vec<u8>, content: &[u8]) {
    head(out, 2, content.len());
    out.extend_from_slice(content);
}

fuzz_target!(|block: &[u8]| {
    let (digest, manifest) = parts();
    let mut wrapper = Vec::with_capacity(digest.len() + block.len() + 16);
    head(&mut wrapper, 4, 2);
    wrapper.extend_from_slice(digest);
    bstr(&mut wrapper, block);
    let mut envelope = Vec::with_capacity(wrapper.len() + manifest.len() + 16);
    envelope.extend([0xd8, 107]); // tag 107
    head(&mut envelope, 5, 2);
    head(&mut envelope, 0, 2);
    bstr(&mut envelope, &wrapper);
    head(&mut envelope, 0, 3);
    envelope.extend_from_slice(manifest);
    common::exercise(&envelope);
});
