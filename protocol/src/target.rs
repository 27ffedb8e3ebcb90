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
}

impl RotaTarget {
    /// The key of rota's entry in a target's `custom` object.
    pub const CUSTOM_KEY: &'static str = "rota";

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
            json!({"rota": "image"}),
        ] {
            assert!(RotaTarget::from_custom(&bad).is_err(), "{bad} accepted");
        }
    }
}
