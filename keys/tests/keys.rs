//! The key seam: loading, signing and verifying with both algorithms.

use rota_keys::{
    Algorithm, KeyError, KeyFile, KeySource, PublicKey, Sign, SoftwareKey, VerifyError,
    public_key_from_pem,
};

/// RFC 8032 §7.1 TEST 1.
const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const PUBLIC: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// Made with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
const OPENSSL_P256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghPQtX4WC32Ni0Yzg
YVbadQeqIps6DUh+zsZXlk9agFWhRANCAATad7Epivo5mZ+s61ogdw3w6akGgpAw
Am7wu2KNj1KcgZC+2Xhxsr8JCcXPc1I9K9ulJyc50+d7bR/zR5d10yaV
-----END PRIVATE KEY-----
";

#[test]
fn rfc8032_test1_signature() {
    let key = SoftwareKey::from_ed25519_seed(SEED);
    assert_eq!(key.public_key(), PublicKey::Ed25519(PUBLIC));
    let sig = key.sign(b"").unwrap();
    // RFC 8032 §7.1 TEST 1: the empty message.
    assert_eq!(sig[..8], [0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72]);
    key.public_key().verify(b"", &sig).unwrap();
}

#[test]
fn ed25519_pem_is_the_form_openssl_writes() {
    let key = SoftwareKey::from_ed25519_seed(SEED);
    let private = key.to_pkcs8_pem().unwrap();
    // PKCS#8 v1 as OpenSSL writes it: 30 2e 02 01 00 30 05 06 03 2b 65 70 04 22 04 20 <seed>.
    assert_eq!(
        private.as_str(),
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
         -----END PRIVATE KEY-----\n"
    );
    let again = SoftwareKey::from_pkcs8_pem(&private).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    let public = key.public_key_pem().unwrap();
    assert_eq!(public_key_from_pem(&public).unwrap(), key.public_key());
    // Explanatory text before the block is allowed (RFC 7468 §2).
    let with_text = format!("Ed25519 test key\n{public}");
    assert_eq!(public_key_from_pem(&with_text).unwrap(), key.public_key());
}

#[test]
fn both_algorithms_generate_sign_verify_and_round_trip_through_pem() {
    for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
        let a = SoftwareKey::generate(algorithm).unwrap();
        let b = SoftwareKey::generate(algorithm).unwrap();
        assert_ne!(a.public_key(), b.public_key(), "{algorithm:?}");
        assert_eq!(a.algorithm(), algorithm);

        let sig = a.sign(b"message").unwrap();
        assert_eq!(sig.len(), rota_keys::SIGNATURE_LEN);
        a.public_key().verify(b"message", &sig).unwrap();
        assert_eq!(
            a.public_key().verify(b"messagf", &sig),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            b.public_key().verify(b"message", &sig),
            Err(VerifyError::BadSignature)
        );

        let pem = a.to_pkcs8_pem().unwrap();
        let again = SoftwareKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        let public = public_key_from_pem(&a.public_key_pem().unwrap()).unwrap();
        assert_eq!(public, a.public_key());
        assert_eq!(public.key_id(), a.public_key().key_id());
    }
}

#[test]
fn openssl_p256_key_loads_and_its_signatures_are_low_s() {
    let key = SoftwareKey::from_pkcs8_pem(OPENSSL_P256_PRIVATE).unwrap();
    let PublicKey::P256(point) = key.public_key() else {
        panic!("expected a P-256 key");
    };
    assert_eq!(point[0], 0x04);
    // n / 2 for P-256: a low-S signature has s ≤ n/2, the one form rota emits.
    const HALF_N: [u8; 32] = [
        0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31,
        0x92, 0xa8,
    ];
    for i in 0..32u8 {
        let sig = key.sign(&[i]).unwrap();
        assert!(sig[32..] <= HALF_N[..], "high S for message {i}");
    }
}

#[test]
fn key_file_source_yields_a_signer_for_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    std::fs::write(&path, OPENSSL_P256_PRIVATE).unwrap();
    let source: Box<dyn KeySource> = Box::new(KeyFile::new(&path));
    let signer = source.as_sign().unwrap();
    let sig = signer.sign(b"x").unwrap();
    signer.public_key().verify(b"x", &sig).unwrap();

    let missing = KeyFile::new(dir.path().join("absent.key")).as_sign();
    assert!(matches!(missing, Err(KeyError::Io { .. })));
    std::fs::write(&path, vec![b'A'; 70 * 1024]).unwrap();
    assert!(matches!(
        KeyFile::new(&path).as_sign(),
        Err(KeyError::Invalid { .. })
    ));
}

#[test]
fn invalid_public_keys_are_refused() {
    // Small order: the identity point (y = 1).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        PublicKey::Ed25519(identity).validate(),
        Err(VerifyError::InvalidPublicKey)
    );
    // Not on the curve.
    let mut off_curve = [0x04u8; 65];
    off_curve[1] = 7;
    assert_eq!(
        PublicKey::P256(off_curve).validate(),
        Err(VerifyError::InvalidPublicKey)
    );
    let key = SoftwareKey::generate(Algorithm::EcdsaP256Sha256).unwrap();
    key.public_key().validate().unwrap();
}

#[test]
fn key_errors_are_specific() {
    let key = SoftwareKey::from_ed25519_seed(SEED);
    let private = key.to_pkcs8_pem().unwrap();
    let public = key.public_key_pem().unwrap();
    assert!(matches!(
        public_key_from_pem(&private),
        Err(KeyError::PrivateKeyGiven)
    ));
    assert!(matches!(
        SoftwareKey::from_pkcs8_pem(&public),
        Err(KeyError::PublicKeyGiven)
    ));
    assert!(matches!(
        public_key_from_pem("hello"),
        Err(KeyError::NotPem)
    ));
    assert!(matches!(
        public_key_from_pem("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"),
        Err(KeyError::Invalid { .. })
    ));
    // Keys of other types (made with `openssl genpkey`) are named in the error.
    let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE1DL16Ys979SbDGlLyfWSFVoJyJmPmzNV
saKbuD4/wnPphFp9S8/2ceWy9wczIK1FIc07+g6BaUMJ2iVJqikUBHqKP6ZXxrTa
KnIuo4f+K38Ga3sFkHn4rIDhyViIbCX8
-----END PUBLIC KEY-----
";
    let ed448 = "-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoA9b7M+IGo6IeIm4pjO1sATNQHMBIozPUB2zClGhAP8gfEYoDN
qPpfHRzc/6i+m8bxpjCHVGYKmRsA
-----END PUBLIC KEY-----
";
    let rsa = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCuIofo8OMetX5tTpjtYkUfLLe9
yPQeqHbwP28mhYGL2Ude4QoGJ68IpPopPZbpBSokqsjzw1FJyd1CdRwx1jjbLnDX
R1g6k+8I7VipEPwMhbPL8gkDZqN0penbB+T5ZGpyCHVGhBGixXIxSVIcjbMfVhqI
Mx6NAWNEFa+fjnfOPwIDAQAB
-----END PUBLIC KEY-----
";
    for (pem, name) in [(p384, "ECDSA P-384"), (ed448, "Ed448"), (rsa, "RSA")] {
        let e = public_key_from_pem(pem).unwrap_err();
        assert!(
            matches!(e, KeyError::UnsupportedKeyType(ref s) if s.starts_with(name)),
            "unexpected error for {name}: {e}"
        );
    }
}
