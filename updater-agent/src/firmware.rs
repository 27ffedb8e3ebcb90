//! The firmware a simulated device runs: an image whose first line says what it is and
//! how its self-test behaves, so that a demo or a test can ship a release that fails its
//! health check on some devices, exactly as a real regression would.
//!
//! ```text
//! rota-sim-firmware/1 label=1.2.0 fail-health-percent=30\n<filler up to the image size>
//! ```

use sha2::{Digest, Sha256};

const MAGIC: &str = "rota-sim-firmware/1";

/// What a simulated firmware image says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFirmware {
    /// A human-readable version, for logs and the demo.
    pub label: String,
    /// On this share of devices (by a hash of the device id) the self-test fails.
    pub fail_health_percent: u8,
}

impl SimFirmware {
    /// The image: the description line, then deterministic filler up to `size` bytes.
    pub fn image(&self, size: usize) -> Vec<u8> {
        let mut image = format!(
            "{MAGIC} label={} fail-health-percent={}\n",
            self.label, self.fail_health_percent
        )
        .into_bytes();
        let mut counter = Sha256::digest(self.label.as_bytes());
        while image.len() < size {
            counter = Sha256::digest(counter);
            image.extend_from_slice(&counter);
        }
        image.truncate(size);
        image
    }

    /// Reads the description line at the start of an image.
    pub fn parse(image_start: &[u8]) -> Option<Self> {
        let end = image_start.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&image_start[..end]).ok()?;
        let mut words = line.split(' ');
        if words.next()? != MAGIC {
            return None;
        }
        let (mut label, mut fail) = (None, None);
        for word in words {
            match word.split_once('=')? {
                ("label", v) => label = Some(v.to_string()),
                ("fail-health-percent", v) => fail = Some(v.parse().ok().filter(|p| *p <= 100)?),
                _ => return None,
            }
        }
        Some(Self {
            label: label?,
            fail_health_percent: fail?,
        })
    }

    /// Whether this firmware's self-test fails on `device_id`: a fixed subset of the
    /// fleet, the same on every boot.
    pub fn fails_on(&self, device_id: &str) -> bool {
        let hash = Sha256::digest(device_id.as_bytes());
        let bucket = u16::from_be_bytes([hash[0], hash[1]]) % 100;
        bucket < u16::from(self.fail_health_percent)
    }
}

/// The longest description line [`SimFirmware::parse`] reads.
pub const DESCRIPTION_MAX: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_describes_itself_and_has_the_requested_size() {
        let fw = SimFirmware {
            label: "1.2.0".into(),
            fail_health_percent: 30,
        };
        let image = fw.image(10_000);
        assert_eq!(image.len(), 10_000);
        assert_eq!(SimFirmware::parse(&image[..DESCRIPTION_MAX]), Some(fw));
    }

    #[test]
    fn the_failing_share_is_close_to_the_percentage() {
        let fw = SimFirmware {
            label: "bad".into(),
            fail_health_percent: 30,
        };
        let failing = (0..1000)
            .filter(|i| fw.fails_on(&format!("device-{i}")))
            .count();
        assert!((250..350).contains(&failing), "{failing} of 1000");
        let healthy = SimFirmware {
            fail_health_percent: 0,
            ..fw
        };
        assert!((0..1000).all(|i| !healthy.fails_on(&format!("device-{i}"))));
    }

    #[test]
    fn other_images_are_not_simulated_firmware() {
        assert_eq!(SimFirmware::parse(b"\x7fELF..."), None);
        assert_eq!(
            SimFirmware::parse(b"rota-sim-firmware/1 label=x fail-health-percent=101\n"),
            None
        );
        assert_eq!(
            SimFirmware::parse(b"rota-sim-firmware/1 label=x fail-health-percent=1 extra=2\n"),
            None
        );
    }
}
