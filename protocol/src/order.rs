//! Operator orders: what an operator tells one of its devices to do to its own
//! credentials — erase them for good (decommission) or move to another operator
//! (ownership transfer). `docs/design/lifecycle.md`, sections 6 and 7.
//!
//! # Format (version 1)
//!
//! A [`SignedOrder`] has the shape of a device certificate: JSON with exactly two fields,
//! both standard padded base64, `{"body": …, "signature": …}`. The signature is by the
//! operator's device CA (Ed25519, or ECDSA P-256 as `r || s`) over
//! `b"rota-device-order-v1\0" || body`: another context than a certificate's, so neither
//! can be passed off as the other. The body is one JSON object ([`OrderBody`]):
//!
//! | field       | type    | rule |
//! |-------------|---------|------|
//! | `version`   | integer | `1` |
//! | `device_id` | string  | the one device the order is for ([`crate::valid_device_id`]) |
//! | `issuer`    | string  | lowercase hex SHA-256 of the CA's raw public key |
//! | `issued_at` | integer | unix seconds |
//! | `not_after` | integer | unix seconds; after `issued_at`, at most [`MAX_ORDER_LIFETIME_S`] later |
//! | `nonce`     | string  | 16 random bytes, lowercase hex: two orders never have the same body |
//! | `action`    | string  | `decommission` or `transfer` |
//! | `transfer`  | object, only with `transfer` | `server` (the new operator's `http(s)://` URL), `device_ca` (the new operator's device CA public key, lowercase hex), `tuf_root` (base64 of the new repository's `root.json`, cross-signed by the device's current root keys) |
//!
//! Verification ([`SignedOrder::verify`]) is strict: unknown or duplicate fields, bytes
//! after the object, a body over [`MAX_ORDER_BODY_LEN`], an untrusted issuer, another
//! device's id, an order not yet valid or expired, and a non-canonical signature are
//! refused, each with its own [`OrderError`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{PublicKey, Sign, Signature, encoding, identity};

/// What the CA signs: this context, then the body bytes.
pub const ORDER_SIGNING_CONTEXT: &[u8] = b"rota-device-order-v1\0";
/// The body `version` this crate issues and accepts.
pub const ORDER_VERSION: u32 = 1;
/// Longest body accepted, in bytes: a transfer carries a TUF root (a few KiB), and the
/// whole order must fit a device request ([`TRANSFER_PATH`]) of 16 KiB.
pub const MAX_ORDER_BODY_LEN: usize = 10 * 1024;
/// Longest validity an order may claim: a device offline longer gets a new order.
pub const MAX_ORDER_LIFETIME_S: u64 = 30 * 24 * 3600;
/// How far ahead of the device's clock an order's `issued_at` may be (clocks drift).
pub const CLOCK_SKEW_S: u64 = 300;
/// Longest new server URL in a transfer.
pub const MAX_SERVER_URL_LEN: usize = 2048;

/// `POST`, signed by the device: the order was carried out as far as this server is
/// concerned (an [`OrderDone`] body). The device's last word to the operator: for a
/// decommission it is signed just before the key is erased; for a transfer, before the
/// device leaves for the new server.
pub const ORDER_DONE_PATH: &str = "/api/v1/device/order-done";
/// `POST`, signed by the device, to the new operator's server: a [`TransferIn`] body;
/// answers a [`crate::api::KeyRotated`] (the device's certificate from the new operator).
pub const TRANSFER_PATH: &str = "/api/v1/device/transfer";

/// What an order tells the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    /// Erase the identity key, the agent's state and (where the part allows) the UDS.
    Decommission,
    /// Move to the operator named in [`OrderBody::transfer`].
    Transfer,
}

/// Where a transferred device goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferTo {
    /// The new operator's server, `http://` or `https://`.
    pub server: String,
    /// The new operator's device CA public key (lowercase hex): the CA whose orders the
    /// device obeys from then on, and which certifies it at the new server.
    pub device_ca: String,
    /// The new repository's `root.json`, standard padded base64: signed by a threshold
    /// of its own root keys and of the device's current root keys (TUF §5.3.4's two
    /// rules, across repositories).
    #[serde(with = "encoding::base64_bytes")]
    pub tuf_root: Vec<u8>,
}

/// The claims of an order: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    pub version: u32,
    pub device_id: String,
    pub issuer: String,
    pub issued_at: u64,
    pub not_after: u64,
    pub nonce: String,
    pub action: OrderAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferTo>,
}

/// Why an order could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    #[error("the order body is {len} bytes, more than the {MAX_ORDER_BODY_LEN} allowed")]
    BodyTooLarge { len: usize },
    #[error("the order is not a valid version 1 order: {0}")]
    Malformed(String),
    #[error("the order has data after its JSON object")]
    TrailingData,
    #[error("the order is version {0}, but only version 1 is supported")]
    UnsupportedVersion(u32),
    #[error("the order was signed by {issuer}, which this device does not take orders from")]
    UnknownIssuer { issuer: String },
    #[error("the order signature does not verify with its issuer's key")]
    BadSignature,
    #[error("the order is for device {order}, not {this}")]
    WrongDevice { order: String, this: String },
    #[error("the order is not valid before {issued_at} (unix seconds); it is {now}")]
    NotYetValid { issued_at: u64, now: u64 },
    #[error("the order expired at {not_after} (unix seconds); it is {now}")]
    Expired { not_after: u64, now: u64 },
    #[error("the order's validity is wrong: {0}")]
    BadValidity(String),
    #[error("the transfer is not valid: {0}")]
    BadTransfer(String),
    #[error("the CA could not sign: {0}")]
    Sign(String),
}

/// A CA-signed [`OrderBody`]; see the [module docs](self) for the format.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedOrder {
    #[serde(with = "encoding::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    body: Vec<u8>,
    #[serde(with = "encoding::base64_signature")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    signature: Signature,
}

impl fmt::Debug for SignedOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOrder")
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish_non_exhaustive()
    }
}

/// The body of `POST` [`ORDER_DONE_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderDone {
    /// [`SignedOrder::fingerprint`] of the order carried out, lowercase hex.
    pub order: String,
}

/// The body of `POST` [`TRANSFER_PATH`]: the device's current certificate, and the
/// order by which its previous operator released it to this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransferIn {
    pub certificate: crate::DeviceCertificate,
    pub order: SignedOrder,
}

/// Days an order stays valid unless the operator says otherwise.
pub const DEFAULT_ORDER_DAYS: u64 = 7;

/// The body of `POST /api/v1/devices/{id}/orders` (admin): the server signs the order
/// with its device CA and delivers it with the device's check-ins until it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderCreate {
    pub action: OrderAction,
    /// With `transfer`: the new operator's server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// With `transfer`: the new operator's device CA public key, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ca: Option<String>,
    /// With `transfer`: the new repository's root.json, cross-signed by this
    /// repository's root keys (`rota repo cross-sign`), standard padded base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_root: Option<String>,
    /// Days the order stays valid: 1 to 30, default [`DEFAULT_ORDER_DAYS`]. A device
    /// offline longer needs a new order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_days: Option<u64>,
}

/// An order issued, as the operator is shown it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderIssued {
    pub device_id: String,
    pub action: OrderAction,
    /// [`SignedOrder::fingerprint`], lowercase hex: what the device's report names.
    pub fingerprint: String,
    /// Unix seconds.
    pub not_after: u64,
}

impl OrderBody {
    /// A version 1 order for `device_id` from the CA `ca`, valid from `issued_at` for
    /// `lifetime_s` seconds, with a fresh nonce.
    pub fn new(
        ca: &PublicKey,
        device_id: &str,
        action: OrderAction,
        transfer: Option<TransferTo>,
        issued_at: u64,
        lifetime_s: u64,
    ) -> Result<Self, OrderError> {
        let nonce = crate::random_bytes::<16>().map_err(|e| OrderError::Sign(e.to_string()))?;
        let body = Self {
            version: ORDER_VERSION,
            device_id: device_id.to_owned(),
            issuer: identity::issuer_id(ca),
            issued_at,
            not_after: issued_at.saturating_add(lifetime_s),
            nonce: hex::encode(nonce),
            action,
            transfer,
        };
        body.validate()?;
        Ok(body)
    }

    /// Every field rule but the issuer's trust and the clock.
    pub fn validate(&self) -> Result<(), OrderError> {
        if self.version != ORDER_VERSION {
            return Err(OrderError::UnsupportedVersion(self.version));
        }
        if !identity::valid_device_id(&self.device_id) {
            return Err(OrderError::Malformed(format!(
                "the device id {:?} is not valid",
                self.device_id
            )));
        }
        if encoding::lower_hex_decode::<32>(&self.issuer).is_none() {
            return Err(OrderError::Malformed(
                "the issuer is not a SHA-256 key id in lowercase hex".into(),
            ));
        }
        if encoding::lower_hex_decode::<16>(&self.nonce).is_none() {
            return Err(OrderError::Malformed(
                "the nonce is not 16 bytes of lowercase hex".into(),
            ));
        }
        if self.not_after <= self.issued_at
            || self.not_after - self.issued_at > MAX_ORDER_LIFETIME_S
        {
            return Err(OrderError::BadValidity(format!(
                "not_after must follow issued_at by at most {MAX_ORDER_LIFETIME_S} s"
            )));
        }
        match (self.action, &self.transfer) {
            (OrderAction::Decommission, None) => Ok(()),
            (OrderAction::Transfer, Some(to)) => to.validate(),
            (OrderAction::Decommission, Some(_)) => Err(OrderError::Malformed(
                "a decommission order names no new operator".into(),
            )),
            (OrderAction::Transfer, None) => Err(OrderError::Malformed(
                "a transfer order must name the new operator".into(),
            )),
        }
    }
}

impl TransferTo {
    /// The new operator's device CA key.
    pub fn device_ca(&self) -> Result<PublicKey, OrderError> {
        encoding::public_key_hex(&self.device_ca).ok_or_else(|| {
            OrderError::BadTransfer(
                "device_ca is not an Ed25519 or P-256 public key in lowercase hex".into(),
            )
        })
    }

    fn validate(&self) -> Result<(), OrderError> {
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| self.server.starts_with(s) && self.server.len() > s.len());
        if !scheme_ok
            || self.server.len() > MAX_SERVER_URL_LEN
            || self
                .server
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(OrderError::BadTransfer(format!(
                "the server must be an http:// or https:// URL of at most {MAX_SERVER_URL_LEN} characters"
            )));
        }
        self.device_ca()?;
        if self.tuf_root.is_empty() {
            return Err(OrderError::BadTransfer("the TUF root is empty".into()));
        }
        Ok(())
    }
}

/// Signs `body` with the CA key after checking every rule a device applies, so an
/// operator never issues an order its devices would refuse for its form.
pub fn issue_order(ca: &dyn Sign, body: &OrderBody) -> Result<SignedOrder, OrderError> {
    body.validate()?;
    let key = identity::issuer_id(&ca.public_key());
    if body.issuer != key {
        return Err(OrderError::Malformed(format!(
            "the body names issuer {}, but the signing CA key's id is {key}",
            body.issuer
        )));
    }
    let bytes = serde_json::to_vec(body).expect("a struct of strings and integers serializes");
    if bytes.len() > MAX_ORDER_BODY_LEN {
        return Err(OrderError::BodyTooLarge { len: bytes.len() });
    }
    let signature = ca
        .sign(&signed_bytes(&bytes))
        .map_err(|e| OrderError::Sign(e.to_string()))?
        .try_into()
        .map_err(|s: Vec<u8>| {
            OrderError::Sign(format!("the CA returned a {}-byte signature", s.len()))
        })?;
    Ok(SignedOrder {
        body: bytes,
        signature,
    })
}

impl SignedOrder {
    /// SHA-256 of the signed body: what names this order in an [`OrderDone`].
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.body).into()
    }

    /// The claims as written, without checking who signed them (the server shows its
    /// own orders with it).
    pub fn claims_unverified(&self) -> Result<OrderBody, OrderError> {
        let body = parse_body(&self.body)?;
        body.validate()?;
        Ok(body)
    }

    /// The order's claims, if one of `trusted_cas` signed it for `device_id` and it is
    /// valid at `now` (unix seconds; an `issued_at` up to [`CLOCK_SKEW_S`] ahead is
    /// taken, as clocks drift).
    pub fn verify(
        &self,
        trusted_cas: &[PublicKey],
        device_id: &str,
        now: u64,
    ) -> Result<OrderBody, OrderError> {
        let body = parse_body(&self.body)?;
        if body.version != ORDER_VERSION {
            return Err(OrderError::UnsupportedVersion(body.version));
        }
        let ca = trusted_cas
            .iter()
            .find(|ca| identity::issuer_id(ca) == body.issuer)
            .ok_or_else(|| OrderError::UnknownIssuer {
                issuer: body.issuer.clone(),
            })?;
        ca.verify(&signed_bytes(&self.body), &self.signature)
            .map_err(|_| OrderError::BadSignature)?;
        body.validate()?;
        if body.device_id != device_id {
            return Err(OrderError::WrongDevice {
                order: body.device_id,
                this: device_id.to_owned(),
            });
        }
        if body.issued_at > now.saturating_add(CLOCK_SKEW_S) {
            return Err(OrderError::NotYetValid {
                issued_at: body.issued_at,
                now,
            });
        }
        if now > body.not_after {
            return Err(OrderError::Expired {
                not_after: body.not_after,
                now,
            });
        }
        Ok(body)
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [ORDER_SIGNING_CONTEXT, body].concat()
}

/// Exactly one JSON object of the version 1 fields and nothing after it.
fn parse_body(bytes: &[u8]) -> Result<OrderBody, OrderError> {
    encoding::one_json_object(bytes, MAX_ORDER_BODY_LEN).map_err(|e| match e {
        encoding::BodyError::TooLarge(len) => OrderError::BodyTooLarge { len },
        encoding::BodyError::Malformed(why) => OrderError::Malformed(why),
        encoding::BodyError::TrailingData => OrderError::TrailingData,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SoftwareKey;

    const NOW: u64 = 1_800_000_000;

    fn ca() -> SoftwareKey {
        SoftwareKey::from_ed25519_seed(crate::random_bytes::<32>().unwrap())
    }

    fn decommission(ca: &SoftwareKey) -> SignedOrder {
        let body = OrderBody::new(
            &ca.public_key(),
            "dev-1",
            OrderAction::Decommission,
            None,
            NOW,
            3600,
        )
        .unwrap();
        issue_order(ca, &body).unwrap()
    }

    fn with_body(order: &SignedOrder, body: Vec<u8>, ca: &SoftwareKey) -> SignedOrder {
        let signature = ca.sign(&signed_bytes(&body)).unwrap().try_into().unwrap();
        let _ = order;
        SignedOrder { body, signature }
    }

    #[test]
    fn an_order_verifies_for_its_device_within_its_validity_only() {
        let ca = ca();
        let order = decommission(&ca);
        let trusted = [ca.public_key()];
        let body = order.verify(&trusted, "dev-1", NOW + 10).unwrap();
        assert_eq!(body.action, OrderAction::Decommission);
        assert!(matches!(
            order.verify(&trusted, "dev-2", NOW),
            Err(OrderError::WrongDevice { .. })
        ));
        assert!(matches!(
            order.verify(&trusted, "dev-1", NOW + 3601),
            Err(OrderError::Expired { .. })
        ));
        assert!(matches!(
            order.verify(&trusted, "dev-1", NOW - CLOCK_SKEW_S - 1),
            Err(OrderError::NotYetValid { .. })
        ));
        assert!(order.verify(&trusted, "dev-1", NOW - CLOCK_SKEW_S).is_ok());
        assert!(matches!(
            order.verify(&[self::ca().public_key()], "dev-1", NOW),
            Err(OrderError::UnknownIssuer { .. })
        ));
    }

    #[test]
    fn a_tampered_or_strange_order_is_refused() {
        let ca = ca();
        let order = decommission(&ca);
        let trusted = [ca.public_key()];
        // The body changed after signing.
        let mut forged = order.clone();
        let text = String::from_utf8(forged.body.clone()).unwrap();
        forged.body = text.replace("dev-1", "dev-2").into_bytes();
        assert_eq!(
            forged.verify(&trusted, "dev-2", NOW),
            Err(OrderError::BadSignature)
        );
        // Validly signed, but not a valid order.
        let body = String::from_utf8(order.body.clone()).unwrap();
        let cases = [
            (format!("{body} "), "trailing"),
            (body.replacen('{', "{\"extra\":1,", 1), "unknown field"),
            (
                body.replacen('{', "{\"device_id\":\"dev-1\",", 1),
                "duplicate field",
            ),
            (
                body.replace("\"decommission\"", "\"transfer\""),
                "transfer without its operator",
            ),
            (body.replace("\"version\":1", "\"version\":2"), "version"),
        ];
        for (bytes, why) in cases {
            let signed = with_body(&order, bytes.into_bytes(), &ca);
            assert!(signed.verify(&trusted, "dev-1", NOW).is_err(), "{why}");
        }
        let huge = with_body(&order, vec![b' '; MAX_ORDER_BODY_LEN + 1], &ca);
        assert!(matches!(
            huge.verify(&trusted, "dev-1", NOW),
            Err(OrderError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn a_transfer_names_a_usable_operator() {
        let ca = ca();
        let next = self::ca().public_key();
        let to = |server: &str, device_ca: String| TransferTo {
            server: server.into(),
            device_ca,
            tuf_root: b"{}".to_vec(),
        };
        let good = to("https://new.example", hex::encode(next.as_bytes()));
        let body = OrderBody::new(
            &ca.public_key(),
            "dev-1",
            OrderAction::Transfer,
            Some(good.clone()),
            NOW,
            60,
        )
        .unwrap();
        let order = issue_order(&ca, &body).unwrap();
        let claims = order.verify(&[ca.public_key()], "dev-1", NOW).unwrap();
        assert_eq!(claims.transfer, Some(good));
        for bad in [
            to("ftp://new.example", hex::encode(next.as_bytes())),
            to("https://", hex::encode(next.as_bytes())),
            to("https://a b", hex::encode(next.as_bytes())),
            to("https://new.example", "00".repeat(32)),
        ] {
            assert!(
                OrderBody::new(
                    &ca.public_key(),
                    "dev-1",
                    OrderAction::Transfer,
                    Some(bad.clone()),
                    NOW,
                    60
                )
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            OrderBody::new(
                &ca.public_key(),
                "dev-1",
                OrderAction::Decommission,
                None,
                NOW,
                MAX_ORDER_LIFETIME_S + 1
            )
            .is_err()
        );
    }
}
