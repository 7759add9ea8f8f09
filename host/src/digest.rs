//! SHA-256 digests of module bytes: the module cache's key, the pin, and the identity logged
//! at every swap.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::Error;

/// The SHA-256 digest of a module's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, for tables and log lines.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(12);
        text
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    /// Parses 64 hex digits, upper or lower case, with an optional `sha256:` prefix.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadDigest {
            value: text.to_string(),
        };
        let hex = text.trim();
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Sha256(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_round_trips() {
        let d = Sha256::of(b"abc");
        let text = d.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text.parse::<Sha256>().unwrap(), d);
        assert_eq!(
            format!("sha256:{}", text.to_uppercase())
                .parse::<Sha256>()
                .unwrap(),
            d
        );
        assert_eq!(d.short(), "ba7816bf8f01");
    }

    #[test]
    fn bad_digests_are_refused() {
        for text in ["", "abc", &"g".repeat(64), &"é".repeat(32)] {
            assert_eq!(text.parse::<Sha256>().unwrap_err().name(), "bad_digest");
        }
    }
}
