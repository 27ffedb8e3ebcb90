//! Attestation evidence: what the server's verifier accepts, and each thing it refuses.
//! The chains here are rota-boot's own DICE derivations.

mod support;

use coset::cbor::value::Value;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable};
use rota_boot::Slot;
use rota_boot::dice::{Handoff, Measurement, Mode, Secret, derive};
use rota_protocol::attestation::{
    EvidenceError, MAX_EVIDENCE_LEN, MeasuredBy, Statement, hardware_evidence, software_evidence,
    verify,
};
use rota_protocol::{PublicKey, Sign as _, SoftwareKey};

const NONCE: [u8; 32] = [0x5a; 32];

fn measurement(version: u64) -> Measurement {
    Measurement {
        image_digest: [version as u8; 32],
        security_version: 1,
        sequence: version,
        slot: Slot::A,
        signer: [9; 32],
        bootloader: [7; 32],
    }
}

/// Device `uds` booting `version`: what its bootloader hands off.
fn boot(uds: u8, version: u64) -> Handoff {
    derive(Secret::new([uds; 32]), &measurement(version), Mode::Normal).unwrap()
}

fn alias(handoff: &Handoff) -> SoftwareKey {
    SoftwareKey::from_ed25519_seed(*handoff.alias_seed.expose())
}

fn statement() -> Statement<'static> {
    Statement {
        nonce: &NONCE,
        boot_count: 4,
    }
}

fn evidence_of(handoff: &Handoff) -> Vec<u8> {
    hardware_evidence(
        &alias(handoff),
        handoff.certificate(),
        &handoff.device_id,
        &statement(),
    )
    .unwrap()
}

fn identity() -> PublicKey {
    support::device_key().public_key()
}

#[test]
fn hardware_evidence_shows_what_the_bootloader_measured() {
    let handoff = boot(3, 2);
    let evidence = evidence_of(&handoff);
    let attested = verify(&evidence, &identity(), Some(&handoff.device_id)).unwrap();
    assert_eq!(attested.measured_by, MeasuredBy::Bootloader);
    assert_eq!(attested.measurement, measurement(2));
    assert_eq!(attested.nonce, NONCE);
    assert_eq!(attested.boot_count, 4);
    assert!(!attested.debug);
    assert!(evidence.len() < 1024, "{} bytes", evidence.len());
    eprintln!(
        "figure: hardware-rooted evidence {} bytes (Alias certificate {} bytes)",
        evidence.len(),
        handoff.certificate().len()
    );
}

#[test]
fn software_evidence_is_signed_by_the_identity_key() {
    let key = support::device_key();
    let evidence = software_evidence(&key, &measurement(5), &statement()).unwrap();
    let attested = verify(&evidence, &key.public_key(), None).unwrap();
    eprintln!(
        "figure: software-measured evidence {} bytes",
        evidence.len()
    );
    assert_eq!(attested.measured_by, MeasuredBy::Software);
    assert_eq!(attested.measurement, measurement(5));
    // Another device's identity key: refused.
    let other = support::key(0x01).public_key();
    assert_eq!(
        verify(&evidence, &other, None),
        Err(EvidenceError::BadSignature("identity"))
    );
    // A device whose certificate binds a DeviceID may not fall back to software.
    assert_eq!(
        verify(&evidence, &key.public_key(), Some(&boot(3, 1).device_id)),
        Err(EvidenceError::SoftwareFromDiceDevice)
    );
}

#[test]
fn evidence_signed_by_another_devices_alias_key_is_refused() {
    let mine = boot(3, 2);
    let theirs = boot(4, 2);
    // My chain, their Alias key signing the token.
    let forged = hardware_evidence(
        &alias(&theirs),
        mine.certificate(),
        &mine.device_id,
        &statement(),
    );
    assert!(
        forged.is_err(),
        "the agent refuses to sign with a key its chain does not name"
    );
    let mut items = outer(&evidence_of(&theirs));
    items[1] = mine.certificate().to_vec();
    let evidence = Value::Array(items.into_iter().map(Value::Bytes).collect())
        .to_vec()
        .unwrap();
    assert_eq!(
        verify(&evidence, &identity(), Some(&mine.device_id)),
        Err(EvidenceError::BadSignature("Alias"))
    );
}

#[test]
fn a_clone_with_a_copied_certificate_is_told_apart() {
    // The certificate binds device 3's DeviceID; the hardware is device 4's.
    let original = boot(3, 2);
    let clone = boot(4, 2);
    let err = verify(&evidence_of(&clone), &identity(), Some(&original.device_id)).unwrap_err();
    assert!(err.is_clone(), "{err}");
    assert!(matches!(err, EvidenceError::NotTheCertifiedDeviceId { .. }));
}

#[test]
fn an_application_cannot_claim_a_measurement_the_bootloader_did_not_make() {
    // The application holds the Alias key of version 1 and claims version 2 in its token.
    let booted = boot(3, 1);
    let claimed = boot(3, 2);
    let mut items = outer(&evidence_of(&claimed));
    // Re-sign version 2's token with version 1's Alias key, and send version 1's chain.
    let mut token = CoseSign1::from_tagged_slice(&items[0]).unwrap();
    token.signature = alias(&booted).sign(&token.tbs_data(b"")).unwrap();
    items[0] = token.to_tagged_vec().unwrap();
    items[1] = booted.certificate().to_vec();
    let evidence = Value::Array(items.into_iter().map(Value::Bytes).collect())
        .to_vec()
        .unwrap();
    assert_eq!(
        verify(&evidence, &identity(), Some(&booted.device_id)),
        Err(EvidenceError::MeasurementsDiffer)
    );
}

#[test]
fn malformed_oversized_or_unknown_algorithm_evidence_is_refused() {
    let handoff = boot(3, 2);
    let device_id = Some(&handoff.device_id);
    let good = evidence_of(&handoff);
    let refused = |bytes: &[u8]| verify(bytes, &identity(), device_id).unwrap_err();

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(refused(&trailing), EvidenceError::Malformed(_)));
    assert!(matches!(
        refused(&vec![0; MAX_EVIDENCE_LEN + 1]),
        EvidenceError::TooLarge { .. }
    ));
    assert!(matches!(refused(&[]), EvidenceError::Malformed(_)));
    for cut in [1, good.len() / 2, good.len() - 1] {
        assert!(matches!(refused(&good[..cut]), EvidenceError::Malformed(_)));
    }
    // Every single-byte change is refused, none panics.
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(verify(&bad, &identity(), device_id).is_err(), "byte {at}");
    }
    // The token signed with ES256's label: an algorithm the Alias key does not use.
    let mut items = outer(&good);
    let mut token = CoseSign1::from_tagged_slice(&items[0]).unwrap();
    token.protected.header.alg = Some(coset::Algorithm::Assigned(coset::iana::Algorithm::ES256));
    token.protected.original_data = None;
    items[0] = token.to_tagged_vec().unwrap();
    let evidence = Value::Array(items.into_iter().map(Value::Bytes).collect())
        .to_vec()
        .unwrap();
    assert!(matches!(
        refused(&evidence),
        EvidenceError::UnknownAlgorithm(_)
    ));
    // A chain for a device whose certificate binds no DeviceID.
    assert_eq!(
        verify(&good, &identity(), None),
        Err(EvidenceError::NoCertifiedDeviceId)
    );
}

#[test]
fn a_short_nonce_is_refused() {
    let handoff = boot(3, 2);
    let evidence = hardware_evidence(
        &alias(&handoff),
        handoff.certificate(),
        &handoff.device_id,
        &Statement {
            nonce: &[1; 8],
            boot_count: 1,
        },
    )
    .unwrap();
    assert_eq!(
        verify(&evidence, &identity(), Some(&handoff.device_id)),
        Err(EvidenceError::NonceLength(8))
    );
}

fn outer(evidence: &[u8]) -> Vec<Vec<u8>> {
    match Value::from_slice(evidence).unwrap() {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => b,
                _ => panic!("not bytes"),
            })
            .collect(),
        _ => panic!("not an array"),
    }
}
