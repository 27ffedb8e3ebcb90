//! A test-only envelope assembler that can break any byte rule and still sign the
//! result, so a negative test proves that the *rule* rejects the input, not a
//! signature or digest failure that happens to come first.
#![allow(dead_code)]

use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

/// RFC 8032 §7.1 TEST 1 secret seed (test key, never for real use).
pub const TEST1_SEED: [u8; 32] =
    hex_lit("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");

pub const VENDOR: [u8; 16] = hex_lit("fa6b4a53d5ad5fdfbe9de663e4d41ffe");
pub const CLASS: [u8; 16] = hex_lit("1492af1425695e48bf429b2d51f2ab45");
pub const IMAGE: &[u8] = b"rota test image";

const fn hex_lit<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not hex"),
    }
}

/// A CBOR value, with an escape hatch (`Raw`) for deliberately malformed bytes.
#[derive(Clone, Debug)]
pub enum V {
    U(u64),
    N(i64),
    B(Vec<u8>),
    T(&'static str),
    A(Vec<V>),
    M(Vec<(V, V)>),
    Tag(u64, Box<V>),
    Null,
    True,
    /// Encoded bytes inserted verbatim.
    Raw(Vec<u8>),
}

fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes())
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes())
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes())
        }
    }
}

impl V {
    pub fn enc(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            V::U(n) => head(0, *n, out),
            V::N(n) if *n >= 0 => head(0, *n as u64, out),
            V::N(n) => head(1, (-1 - *n) as u64, out),
            V::B(b) => {
                head(2, b.len() as u64, out);
                out.extend(b)
            }
            V::T(t) => {
                head(3, t.len() as u64, out);
                out.extend(t.as_bytes())
            }
            V::A(items) => {
                head(4, items.len() as u64, out);
                items.iter().for_each(|i| i.write(out))
            }
            V::M(entries) => {
                head(5, entries.len() as u64, out);
                for (k, v) in entries {
                    k.write(out);
                    v.write(out);
                }
            }
            V::Tag(t, v) => {
                head(6, *t, out);
                v.write(out)
            }
            V::Null => out.push(0xf6),
            V::True => out.push(0xf5),
            V::Raw(b) => out.extend(b),
        }
    }
}

/// `bstr .cbor value`.
pub fn wrap(v: &V) -> V {
    V::B(v.enc())
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&TEST1_SEED)
}

pub fn public_key() -> rota_manifest::PublicKey {
    rota_manifest::PublicKey::Ed25519(signing_key().verifying_key().to_bytes())
}

/// Every part of an envelope, each replaceable by a test.
#[derive(Clone, Debug)]
pub struct Parts {
    pub shared_params: Vec<(V, V)>,
    pub shared_sequence: Vec<V>,
    pub manifest_extra: Vec<(V, V)>,
    /// The manifest map; `None` builds it from the fields above.
    pub manifest: Option<V>,
    /// Protected header map bytes (the bstr content).
    pub protected: Vec<u8>,
    pub unprotected: V,
    pub payload: V,
    pub cose_tag: Option<u64>,
    pub envelope_tag: Option<u64>,
    pub envelope_extra: Vec<(V, V)>,
    /// Envelope members placed before the authentication wrapper.
    pub envelope_leading: Vec<(V, V)>,
    /// Put the manifest (key 3) before the authentication wrapper (key 2).
    pub manifest_first: bool,
    /// Digest algorithm id and a function of the manifest bstr to the digest bytes.
    pub digest_alg: i64,
    pub digest_over_content_only: bool,
    /// Replace the manifest digest bytes.
    pub digest_bytes: Option<Vec<u8>>,
    /// Sign these protected-header bytes instead of the transmitted ones.
    pub sign_protected: Option<Vec<u8>>,
    /// Replace the signature after signing.
    pub signature: Option<Vec<u8>>,
}

impl Default for Parts {
    fn default() -> Self {
        let kid = public_key().key_id().to_vec();
        Parts {
            shared_params: vec![
                (V::U(1), V::B(VENDOR.to_vec())),
                (V::U(2), V::B(CLASS.to_vec())),
                (V::U(3), wrap(&V::A(vec![V::N(-16), V::B(sha256(IMAGE))]))),
                (V::U(14), V::U(IMAGE.len() as u64)),
                (V::N(-256), V::U(3)),
            ],
            shared_sequence: vec![V::U(1), V::U(15), V::U(2), V::U(15)],
            manifest_extra: vec![],
            manifest: None,
            protected: V::M(vec![(V::U(1), V::N(-19)), (V::U(4), V::B(kid))]).enc(),
            unprotected: V::M(vec![]),
            payload: V::Null,
            cose_tag: Some(18),
            envelope_tag: Some(107),
            envelope_extra: vec![],
            envelope_leading: vec![],
            manifest_first: false,
            digest_alg: -16,
            digest_over_content_only: false,
            digest_bytes: None,
            sign_protected: None,
            signature: None,
        }
    }
}

impl Parts {
    pub fn manifest(&self) -> V {
        if let Some(m) = &self.manifest {
            return m.clone();
        }
        let mut shared = vec![V::U(20), V::M(self.shared_params.clone())];
        shared.extend(self.shared_sequence.clone());
        let common = V::M(vec![
            (V::U(2), V::A(vec![V::A(vec![V::B(vec![0])])])),
            (V::U(4), wrap(&V::A(shared))),
        ]);
        let mut entries = vec![
            (V::U(1), V::U(1)),
            (V::U(2), V::U(7)),
            (V::U(3), wrap(&common)),
            (V::U(7), wrap(&V::A(vec![V::U(3), V::U(15)]))),
            (V::U(9), wrap(&V::A(vec![V::U(23), V::U(2)]))),
        ];
        entries.extend(self.manifest_extra.clone());
        V::M(entries)
    }

    pub fn build(&self) -> Vec<u8> {
        let manifest = self.manifest().enc();
        let manifest_bstr = V::B(manifest.clone()).enc();
        let digest_input = if self.digest_over_content_only {
            &manifest[..]
        } else {
            &manifest_bstr[..]
        };
        let digest_bytes = self
            .digest_bytes
            .clone()
            .unwrap_or_else(|| sha256(digest_input));
        let digest = V::A(vec![V::N(self.digest_alg), V::B(digest_bytes)]).enc();

        let signed_protected = self.sign_protected.as_ref().unwrap_or(&self.protected);
        let tbs = V::A(vec![
            V::T("Signature1"),
            V::B(signed_protected.clone()),
            V::B(vec![]),
            V::B(digest.clone()),
        ])
        .enc();
        let signature = self
            .signature
            .clone()
            .unwrap_or_else(|| signing_key().sign(&tbs).to_bytes().to_vec());
        let sign1 = V::A(vec![
            V::B(self.protected.clone()),
            self.unprotected.clone(),
            self.payload.clone(),
            V::B(signature),
        ]);
        let cose = match self.cose_tag {
            Some(t) => V::Tag(t, Box::new(sign1)),
            None => sign1,
        };
        let wrapper = V::A(vec![V::B(digest), wrap(&cose)]);
        let mut entries = self.envelope_leading.clone();
        let (wrapper, manifest) = ((V::U(2), wrap(&wrapper)), (V::U(3), V::Raw(manifest_bstr)));
        if self.manifest_first {
            entries.extend([manifest, wrapper]);
        } else {
            entries.extend([wrapper, manifest]);
        }
        entries.extend(self.envelope_extra.clone());
        let env = V::M(entries);
        match self.envelope_tag {
            Some(t) => V::Tag(t, Box::new(env)).enc(),
            None => env.enc(),
        }
    }
}

/// Decodes and authenticates with the TEST 1 key and the default (strict) policy.
pub fn verify(bytes: &[u8]) -> Result<(), rota_manifest::Error> {
    verify_with(bytes, &rota_manifest::Policy::default())
}

pub fn verify_with(
    bytes: &[u8],
    policy: &rota_manifest::Policy,
) -> Result<(), rota_manifest::Error> {
    let env = rota_manifest::Envelope::decode(bytes, policy)?;
    env.authenticate(&[public_key()], &rota_manifest::Ed25519Verifier, policy)
        .map(|_| ())
}

/// The install sequence rota's builder writes for a URI (SUIT §8.4.6): set the URI,
/// fetch, then check the image.
pub fn install_sequence() -> V {
    wrap(&V::A(vec![
        V::U(20),
        V::M(vec![(V::U(21), V::T("https://updates.example/fw.bin"))]),
        V::U(21),
        V::U(2),
        V::U(3),
        V::U(15),
    ]))
}

/// Every single-byte change of `bytes` (each byte xored with 0x01, 0x80 and 0xff), with
/// where it was made.
pub fn single_byte_mutations(bytes: &[u8]) -> impl Iterator<Item = (usize, u8, Vec<u8>)> + '_ {
    (0..bytes.len()).flat_map(move |i| {
        [0x01u8, 0x80, 0xff].into_iter().map(move |flip| {
            let mut bad = bytes.to_vec();
            bad[i] ^= flip;
            (i, flip, bad)
        })
    })
}
