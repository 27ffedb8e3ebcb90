//! PKCS#11 URIs (RFC 7512): which module, which token, which key.
//!
//! `pkcs11:token=release;object=fw-2026?module-path=/usr/lib/softhsm/libsofthsm2.so`
//!
//! The parser is strict. RFC 7512 §2.3: an attribute in the path that a consumer does not
//! understand must make the URI match nothing, so rota refuses it with its name rather
//! than matching a key the writer did not mean; every attribute may appear once; values
//! are percent-decoded (§2.3, `pk11-pchar`). `pin-value` is refused: a URI is passed on
//! command lines and in configuration, where a PIN must never be (`pin-source`, the
//! `ROTA_PKCS11_PIN` environment variable or a terminal prompt give it instead).

use std::fmt;
use std::path::PathBuf;

use super::Pkcs11Error;

/// The environment variable naming the PKCS#11 module when a URI has no `module-path`.
pub const MODULE_ENV: &str = "ROTA_PKCS11_MODULE";

/// A parsed `pkcs11:` URI naming one key in one token.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pkcs11Uri {
    /// The text as given (it holds no PIN: `pin-value` is refused).
    text: String,
    /// `token=`: the token label (`CK_TOKEN_INFO.label`).
    pub token: Option<String>,
    /// `manufacturer=`, `model=`, `serial=`: more of the token's `CK_TOKEN_INFO`.
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `slot-id=`: the slot, as a decimal number (RFC 7512 §2.3).
    pub slot_id: Option<u64>,
    /// `object=`: the key's `CKA_LABEL`.
    pub object: Option<String>,
    /// `id=`: the key's `CKA_ID` (percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// `type=`: must be `private` or `public` where given (rota addresses key pairs).
    pub object_type: Option<String>,
    /// `module-path=`: the PKCS#11 library to load.
    pub module_path: Option<PathBuf>,
    /// `pin-source=`: where the user PIN is (`file:/path` or a path).
    pub pin_source: Option<String>,
}

impl Pkcs11Uri {
    /// The library to load: `module-path`, else `$ROTA_PKCS11_MODULE`.
    pub fn module(&self) -> Result<PathBuf, Pkcs11Error> {
        if let Some(path) = &self.module_path {
            return Ok(path.clone());
        }
        match std::env::var_os(MODULE_ENV) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(Pkcs11Error::NoModule),
        }
    }

    /// How the URI names the token, for messages: `token=release`, or the first of the
    /// other token attributes given, or "the token" when the URI names none.
    pub fn token_part(&self) -> String {
        let parts = [
            ("token", self.token.as_deref()),
            ("serial", self.serial.as_deref()),
            ("model", self.model.as_deref()),
            ("manufacturer", self.manufacturer.as_deref()),
        ];
        match parts.iter().find_map(|(name, v)| v.map(|v| (name, v))) {
            Some((name, value)) => format!("{name}={value}"),
            None => match self.slot_id {
                Some(slot) => format!("slot-id={slot}"),
                None => "the token".to_owned(),
            },
        }
    }

    /// The same token, module and PIN source, naming another key: `object=label`, and
    /// `id=` where given (where `None`, the key is matched by its label alone). What a key
    /// rotation uses to address the key it makes beside the current one (`…-next`).
    pub fn with_key(&self, label: &str, id: Option<&[u8]>) -> Self {
        let mut uri = Self {
            object: Some(label.to_owned()),
            id: id.map(<[u8]>::to_vec),
            ..self.clone()
        };
        uri.text = uri.canonical_text();
        uri
    }

    /// The URI written from its attributes (each value percent-encoded where RFC 7512
    /// requires it), path attributes in a fixed order.
    fn canonical_text(&self) -> String {
        let mut path = Vec::new();
        let text = |name: &str, value: &Option<String>, path: &mut Vec<String>| {
            if let Some(value) = value {
                path.push(format!("{name}={}", encode_text(value)));
            }
        };
        text("token", &self.token, &mut path);
        text("manufacturer", &self.manufacturer, &mut path);
        text("model", &self.model, &mut path);
        text("serial", &self.serial, &mut path);
        if let Some(slot) = self.slot_id {
            path.push(format!("slot-id={slot}"));
        }
        text("object", &self.object, &mut path);
        if let Some(id) = &self.id {
            path.push(format!("id={}", percent_encode(id)));
        }
        text("type", &self.object_type, &mut path);
        let mut query = Vec::new();
        if let Some(module) = &self.module_path {
            query.push(format!(
                "module-path={}",
                encode_text(&module.to_string_lossy())
            ));
        }
        if let Some(source) = &self.pin_source {
            query.push(format!("pin-source={}", encode_text(source)));
        }
        let mut text = format!("pkcs11:{}", path.join(";"));
        if !query.is_empty() {
            text.push('?');
            text.push_str(&query.join("&"));
        }
        text
    }

    /// How the URI names the key, for messages: `object=fw-2026`, `id=%01`, or both.
    pub fn object_part(&self) -> String {
        let mut parts = Vec::new();
        if let Some(object) = &self.object {
            parts.push(format!("object={object}"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", percent_encode(id)));
        }
        parts.join(";")
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({})", self.text)
    }
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = Pkcs11Error;

    fn from_str(text: &str) -> Result<Self, Pkcs11Error> {
        let bad = |detail: String| Pkcs11Error::Uri { detail };
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it does not start with \"pkcs11:\"".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut uri = Self {
            text: text.to_owned(),
            ..Self::default()
        };
        let mut seen: Vec<String> = Vec::new();
        let mut once = |name: &str| {
            if seen.iter().any(|s| s == name) {
                Err(bad(format!("the attribute {name} appears twice")))
            } else {
                seen.push(name.to_owned());
                Ok(())
            }
        };
        // RFC 7512 §2.3: path attributes separated by ';'.
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, raw) = attribute
                .split_once('=')
                .ok_or_else(|| bad(format!("\"{attribute}\" is not NAME=VALUE")))?;
            once(name)?;
            let bytes = percent_decode(raw, name)?;
            let string = || text_value(&bytes, name);
            match name {
                "token" => uri.token = Some(string()?),
                "manufacturer" => uri.manufacturer = Some(string()?),
                "model" => uri.model = Some(string()?),
                "serial" => uri.serial = Some(string()?),
                "object" => uri.object = Some(string()?),
                "id" => uri.id = Some(bytes),
                "slot-id" => {
                    uri.slot_id =
                        Some(string()?.parse().map_err(|_| {
                            bad(format!("slot-id={raw} is not a decimal slot number"))
                        })?)
                }
                "type" => {
                    let value = string()?;
                    if !matches!(value.as_str(), "private" | "public") {
                        return Err(bad(format!(
                            "type={value} names no key: rota's keys are type=private (or public)"
                        )));
                    }
                    uri.object_type = Some(value);
                }
                _ => {
                    return Err(bad(format!(
                        "rota does not match on the path attribute {name} (it uses token, \
                         manufacturer, model, serial, slot-id, object, id and type); RFC 7512 \
                         §2.3 makes a URI with an attribute its reader does not know match \
                         nothing"
                    )));
                }
            }
        }
        // RFC 7512 §2.3: query attributes separated by '&'.
        for attribute in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (name, raw) = attribute
                .split_once('=')
                .ok_or_else(|| bad(format!("\"{attribute}\" is not NAME=VALUE")))?;
            once(name)?;
            let value = text_value(&percent_decode(raw, name)?, name)?;
            match name {
                "module-path" => uri.module_path = Some(PathBuf::from(value)),
                "pin-source" => uri.pin_source = Some(value),
                "pin-value" => return Err(Pkcs11Error::PinInUri),
                "module-name" => {
                    return Err(bad(
                        "module-name is not supported: give module-path=/path/to/module.so".into(),
                    ));
                }
                // §2.3: vendor-specific query attributes ("x-…") may be ignored.
                _ if name.starts_with("x-") => {}
                _ => {
                    return Err(bad(format!(
                        "unknown query attribute {name} (rota uses module-path and pin-source)"
                    )));
                }
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad(
                "it names no key: add object=LABEL (or id=…) to the path".into(),
            ));
        }
        Ok(uri)
    }
}

/// RFC 3986 §2.1 percent-decoding; a '%' not followed by two hex digits is an error.
fn percent_decode(raw: &str, name: &str) -> Result<Vec<u8>, Pkcs11Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Pkcs11Error::Uri {
                    detail: format!("{name}= has a '%' not followed by two hex digits"),
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn text_value(bytes: &[u8], name: &str) -> Result<String, Pkcs11Error> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Pkcs11Error::Uri {
        detail: format!("{name}= is not UTF-8 text"),
    })
}

/// Text as RFC 7512 carries it: unreserved characters and `/`, `:` and `@` as they are,
/// every other byte as `%XX` (so `;`, `?`, `&`, `=` and `%` never end a value).
fn encode_text(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'@' => char::from(b).to_string(),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

/// Every byte as `%XX` (how RFC 7512 writes `id`).
pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pkcs11Uri, String> {
        text.parse::<Pkcs11Uri>().map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_rfc_7512_attributes_rota_matches_on() {
        let uri = parse(
            "pkcs11:token=My%20token;object=fw-2026;id=%01%ff;type=private;slot-id=7\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin&x-vendor=1",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My token"));
        assert_eq!(uri.object.as_deref(), Some("fw-2026"));
        assert_eq!(uri.id.as_deref(), Some(&[1, 0xff][..]));
        assert_eq!(uri.slot_id, Some(7));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(uri.pin_source.as_deref(), Some("file:/run/pin"));
        assert_eq!(uri.token_part(), "token=My token");
        assert_eq!(uri.object_part(), "object=fw-2026;id=%01%ff");
    }

    #[test]
    fn another_key_in_the_same_token_keeps_module_and_pin_source() {
        let uri = parse(
            "pkcs11:token=My%20token;object=device;id=%01?module-path=/usr/lib/m.so&pin-source=file:/run/pin",
        )
        .unwrap();
        let next = uri.with_key("device-next", Some(&[0xab, 0x01]));
        assert_eq!(
            next.to_string(),
            "pkcs11:token=My%20token;object=device-next;id=%ab%01\
             ?module-path=/usr/lib/m.so&pin-source=file:/run/pin"
        );
        assert_eq!(parse(&next.to_string()).unwrap(), next);
        let by_label = uri.with_key("a;b", None);
        assert_eq!(by_label.id, None);
        assert_eq!(
            parse(&by_label.to_string()).unwrap().object.as_deref(),
            Some("a;b")
        );
    }

    #[test]
    fn refuses_a_pin_in_the_uri() {
        let e = parse("pkcs11:token=t;object=k?pin-value=1234").unwrap_err();
        assert!(e.contains("pin-value"), "{e}");
    }

    #[test]
    fn refuses_unknown_repeated_and_malformed_attributes() {
        for (uri, part) in [
            (
                "pkcs11:token=t;object=k;library-version=1",
                "library-version",
            ),
            ("pkcs11:token=t;object=k;object=j", "object appears twice"),
            ("pkcs11:token=t;object=k%4", "object= has a '%'"),
            ("pkcs11:token=t;object", "\"object\" is not NAME=VALUE"),
            ("pkcs11:token=t", "names no key"),
            ("pkcs11:token=t;object=k?module=x", "module"),
            ("pkcs11:token=t;object=k;type=cert", "type=cert"),
            ("pkcs11:token=t;object=k;slot-id=x", "slot-id=x"),
            ("pkcs12:token=t;object=k", "pkcs11:"),
        ] {
            let e = parse(uri).unwrap_err();
            assert!(e.contains(part), "{uri}: {e}");
        }
    }
}
