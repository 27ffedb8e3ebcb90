//! Device certificates (rota-protocol `identity`) as the server reads them at enrolment.
//!
//! First byte even: the rest is the `POST /api/v1/device/enroll` body, decoded as the
//! server decodes it (`serde_json::from_slice::<Enroll>`) and verified against a fixed CA
//! (`DeviceCertificate::verify`). First byte odd: the rest is a certificate body that the
//! harness signs with that CA, so every field rule behind the signature is reached.
//!
//! Whatever `verify` accepts must pass `CertBody::validate`, read the same through
//! `claims_unverified`, yield a usable device key, survive a JSON round trip, and be
//! re-issuable: `issue` (which refuses bodies `verify` would refuse) accepts it.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rota_protocol::api::Enroll;
use rota_protocol::identity::CERT_SIGNING_CONTEXT;
use rota_protocol::{DeviceCertificate, PublicKey, Sign as _, SoftwareKey, issue};

/// The CA the seeds are issued by (seed bytes 3), and another trusted one.
static CA: LazyLock<SoftwareKey> = LazyLock::new(|| SoftwareKey::from_ed25519_seed([3; 32]));
static TRUSTED: LazyLock<[PublicKey; 2]> = LazyLock::new(|| {
    [
        SoftwareKey::from_ed25519_seed([4; 32]).public_key(),
        CA.public_key(),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let certificate = if mode & 1 == 0 {
        match serde_json::from_slice::<Enroll>(rest) {
            Ok(enroll) => enroll.certificate,
            Err(_) => return,
        }
    } else {
        let mut message = CERT_SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(rest);
        let signature = CA.sign(&message).expect("Ed25519 signing cannot fail");
        let signature = signature.try_into().expect("64 bytes");
        DeviceCertificate::from_parts(rest.to_vec(), signature)
    };
    let unverified = certificate.claims_unverified();
    let Ok(body) = certificate.verify(&*TRUSTED) else {
        return;
    };
    body.validate().expect("a verified body follows every rule");
    assert_eq!(
        unverified.as_ref(),
        Ok(&body),
        "claims_unverified reads another body"
    );
    body.device_key()
        .expect("a verified body has a usable device key");
    let json = serde_json::to_vec(&Enroll {
        certificate: certificate.clone(),
    })
    .unwrap();
    let again: Enroll = serde_json::from_slice(&json).expect("an encoded enrolment decodes");
    assert_eq!(
        again.certificate, certificate,
        "the certificate changed in a JSON round trip"
    );
    if body.issuer == rota_protocol::identity::issuer_id(&CA.public_key()) {
        let reissued = issue(&*CA, &body).expect("the CA can issue what its servers accept");
        assert_eq!(
            reissued.verify(&*TRUSTED),
            Ok(body),
            "a re-issued body reads differently"
        );
    }
});
