//! rota's fields in a TUF target's `custom` object: the one definition the CLI writes,
//! the server checks on upload and the agent reads before an install.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// rota's part of a target's `custom` field, under the key `"rota"`: what ties a firmware
/// image to its SUIT envelope in signed TUF targets metadata.
///
/// ```json
/// {"rota": {"kind": "image", "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
///           "version": 7, "security_version": 2, "envelope": "fw-7.suit"}}
/// {"rota": {"kind": "envelope", "image": "fw-7.bin"}}
/// ```
///
/// An image and its envelope must name each other, and both must be listed in the same
/// targets metadata (rota-repo checks this on upload, the agent before an install);
/// unknown fields are refused, so a typo never passes as a target without rota fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RotaTarget {
    /// A firmware image.
    Image {
        /// The device class it is for (the SUIT class id).
        class_id: Uuid,
        /// Its version (the SUIT sequence number).
        version: u64,
        /// Its security version (the anti-rollback floor it raises devices to).
        security_version: u64,
        /// The name of the target holding its SUIT envelope.
        envelope: String,
    },
    /// The SUIT envelope of a firmware image.
    Envelope {
        /// The name of the image target it describes.
        image: String,
    },
    /// A trust-anchor command (`rota_boot::anchor`: a COSE_Sign1 by a firmware key the
    /// devices trust), published as [`RotaTarget::anchor_command_name`] so that a device
    /// whose root of trust has applied `counter - 1` commands finds the next one by name.
    /// The command is signed twice: by the firmware key inside, by the targets keys here.
    AnchorCommand {
        /// The device class it is for (the command's own class id, repeated).
        class_id: Uuid,
        /// Its counter (the command's own, repeated): 1 for a class's first command.
        counter: u32,
        /// The raw Ed25519 public key (64 lowercase hex digits) that signed the command:
        /// the device applies it with this key, which must be in a valid, unrevoked key
        /// slot of its root of trust.
        signer: String,
        /// For a command that adds a key: the new key's raw Ed25519 public key (64 lowercase
        /// hex digits). The command holds only its hash; the device needs the key itself
        /// to verify envelopes, and checks it against the hash.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_key: Option<String>,
    },
}

impl RotaTarget {
    /// The key of rota's entry in a target's `custom` object.
    pub const CUSTOM_KEY: &'static str = "rota";

    /// The target name of class `class_id`'s trust-anchor command number `counter`:
    /// `anchors/<class uuid>/<counter>.cose`.
    pub fn anchor_command_name(class_id: &Uuid, counter: u32) -> String {
        format!("anchors/{}/{counter}.cose", class_id.hyphenated())
    }

    /// A raw 32-byte key as [`RotaTarget::AnchorCommand`] writes it (64 lowercase hex
    /// digits), or `None`.
    pub fn parse_key(hex_text: &str) -> Option<[u8; 32]> {
        if hex_text.len() != 64
            || !hex_text
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex_text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(key)
    }

    /// The `custom` object holding just this entry: `{"rota": {...}}`.
    pub fn to_custom(&self) -> Value {
        let mut object = serde_json::Map::new();
        // Serializing a plain enum of strings and integers cannot fail.
        object.insert(
            Self::CUSTOM_KEY.to_owned(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        Value::Object(object)
    }

    /// rota's entry in the `custom` value of a target, if it has one; the error says
    /// what is wrong with it in words.
    pub fn from_custom(custom: &Value) -> Result<Option<Self>, String> {
        match custom.get(Self::CUSTOM_KEY) {
            None => Ok(None),
            Some(entry) => Self::deserialize(entry)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn custom_fields_round_trip_and_are_read_strictly() {
        let image = RotaTarget::Image {
            class_id: "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse().unwrap(),
            version: 7,
            security_version: 2,
            envelope: "fw-7.suit".into(),
        };
        let custom = image.to_custom();
        assert_eq!(
            custom,
            json!({"rota": {"kind": "image", "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "version": 7, "security_version": 2, "envelope": "fw-7.suit"}})
        );
        assert_eq!(RotaTarget::from_custom(&custom).unwrap(), Some(image));
        assert_eq!(RotaTarget::from_custom(&json!({"other": 1})).unwrap(), None);
        for bad in [
            json!({"rota": {"kind": "envelope", "image": "x", "extra": 1}}),
            json!({"rota": {"kind": "image", "class_id": "not-a-uuid", "version": 1,
                "security_version": 0, "envelope": "e"}}),
            json!({"rota": {"kind": "image", "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "version": -1, "security_version": 0, "envelope": "e"}}),
            json!({"rota": {"kind": "delta", "image": "x"}}),
            json!({"rota": {"kind": "anchor_command", "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "counter": 1, "signer": "00", "extra": 1}}),
            json!({"rota": "image"}),
        ] {
            assert!(RotaTarget::from_custom(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn anchor_commands_are_named_by_class_and_counter_and_carry_their_keys() {
        let class: Uuid = "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse().unwrap();
        assert_eq!(
            RotaTarget::anchor_command_name(&class, 2),
            "anchors/1492af14-2569-5e48-bf42-9b2d51f2ab45/2.cose"
        );
        let revoke = RotaTarget::AnchorCommand {
            class_id: class,
            counter: 2,
            signer: "ab".repeat(32),
            new_key: None,
        };
        let custom = revoke.to_custom();
        assert_eq!(
            custom,
            json!({"rota": {"kind": "anchor_command", "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "counter": 2, "signer": "ab".repeat(32)}})
        );
        assert_eq!(RotaTarget::from_custom(&custom).unwrap(), Some(revoke));
        assert_eq!(RotaTarget::parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            "zz".repeat(32),
            String::new(),
        ] {
            assert_eq!(RotaTarget::parse_key(&bad), None, "{bad}");
        }
    }
}
