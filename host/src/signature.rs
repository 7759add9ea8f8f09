//! Signed policy modules: who may put a module live.
//!
//! A hot-swapped module is code from outside (a ConfigMap, a file), so before it is even
//! compiled the [`Trust`] configured on the Deployment (never read from the ConfigMap)
//! decides whether it may go live: its sha256 is on the allowlist of pins, or a signature
//! over its bytes verifies with one of the trusted public keys, or (only when asked for
//! with `--allow-unsigned`) it is let in unsigned. The module embedded in the binary is
//! trusted as part of the binary.
//!
//! # Format: cosign-compatible, offline
//! The keys and signatures are the ones `cosign sign-blob --key` and `cosign verify-blob
//! --key` use, and `openssl dgst -sha256` reads:
//! - public key: PEM `PUBLIC KEY` (SubjectPublicKeyInfo), ECDSA P-256 (what `cosign
//!   generate-key-pair` makes) or Ed25519;
//! - private key: PEM `PRIVATE KEY` (unencrypted PKCS#8), ECDSA P-256 or Ed25519, as
//!   `sidekill policy keygen` or `openssl genpkey` write. cosign's own `ENCRYPTED SIGSTORE
//!   PRIVATE KEY` files are not read: sign with cosign itself, then verify here;
//! - signature: base64 of the ASN.1 DER ECDSA signature over the module's bytes with
//!   SHA-256 (that is, over the module's sha256), or of the 64-byte Ed25519 signature,
//!   in a file beside the module (`X.wasm.sig`) or under the ConfigMap key
//!   `policy.wasm.sig`. Whitespace around it is ignored.
//!
//! No transparency log or certificate is involved: verification is offline, against the
//! keys given. With cosign 2, `cosign verify-blob --key cosign.pub --signature X.wasm.sig
//! --insecure-ignore-tlog=true X.wasm` checks a signature made here, and a signature made by
//! `cosign sign-blob --key cosign.key --tlog-upload=false X.wasm` verifies here.

use std::path::Path;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};

use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Result};

/// What can go wrong with module signatures: a module no signature or pin lets in, a
/// signature no trusted key verifies, a key or signature that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The module comes with no signature, and neither a pin nor `--allow-unsigned` lets
    /// it in.
    #[error("the module (sha256 {sha256}) is not signed, matches no pinned sha256, and unsigned modules are not allowed (--allow-unsigned)")]
    Unsigned {
        /// The module's digest.
        sha256: String,
    },

    /// The module's signature does not verify with any trusted key.
    #[error("the signature of the module (sha256 {sha256}) does not verify with any of the {keys} trusted key{}", if *.keys == 1 { "" } else { "s" })]
    BadSignature {
        /// The module's digest.
        sha256: String,
        /// How many keys were tried.
        keys: usize,
    },

    /// A signing or verifying key, or a signature, cannot be read.
    #[error("{what}: {reason}")]
    KeyFormat {
        /// The file or the value: `key cosign.pub`, `signature X.wasm.sig`, ...
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, BIT STRING of
/// the 65-byte uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (id-Ed25519, BIT STRING of 32 bytes).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The OID of id-Ed25519 (1.3.101.112) in DER, to tell a PKCS#8 key's algorithm.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Which algorithm a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl Algorithm {
    /// `ecdsa-p256-sha256` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// A trusted public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    /// The uncompressed point (P-256) or the 32 bytes (Ed25519).
    raw: Vec<u8>,
    /// Where it came from, for messages.
    origin: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey({} {})",
            self.algorithm.as_str(),
            self.fingerprint()
        )
    }
}

fn bad(what: &str, reason: impl Into<String>) -> Error {
    Error::from(SignatureError::KeyFormat {
        what: what.to_string(),
        reason: reason.into(),
    })
}

/// The base64 body of the first PEM block, with its label.
fn pem(text: &str, what: &str) -> Result<(String, Vec<u8>)> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| bad(what, "not a PEM file (no -----BEGIN line)"))?;
    let rest = &text[begin + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| bad(what, "a PEM BEGIN line without its closing dashes"))?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body
        .find("-----END ")
        .ok_or_else(|| bad(what, format!("no -----END {label}----- line")))?;
    let base64: String = body[..end]
        .lines()
        .filter(|line| !line.contains(':')) // RFC 1421 headers, as in encrypted keys
        .collect::<String>()
        .split_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|e| bad(what, format!("the PEM body is not base64 ({e})")))?;
    Ok((label, der))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) for ECDSA P-256 or Ed25519.
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`] for another PEM label, another algorithm or curve.
    pub fn from_pem(text: &str, origin: &str) -> Result<PublicKey> {
        let (label, der) = pem(text, origin)?;
        if label != "PUBLIC KEY" {
            return Err(bad(
                origin,
                format!("a PEM `{label}`, expected `PUBLIC KEY` (SubjectPublicKeyInfo)"),
            ));
        }
        let (algorithm, raw) = if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            (Algorithm::EcdsaP256, point)
        } else if let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            (Algorithm::Ed25519, raw)
        } else {
            return Err(bad(
                origin,
                "not an ECDSA P-256 or Ed25519 public key (other curves and RSA are not supported)",
            ));
        };
        let expected = match algorithm {
            Algorithm::EcdsaP256 => 65,
            Algorithm::Ed25519 => 32,
        };
        if raw.len() != expected || (algorithm == Algorithm::EcdsaP256 && raw[0] != 4) {
            return Err(bad(origin, "a malformed public key"));
        }
        Ok(PublicKey {
            algorithm,
            raw: raw.to_vec(),
            origin: origin.to_string(),
        })
    }

    /// Reads a PEM public key file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`SignatureError::KeyFormat`].
    pub fn from_file(path: &Path) -> Result<PublicKey> {
        let text = read_small(path)?;
        PublicKey::from_pem(&text, &format!("key {}", path.display()))
    }

    /// The key as PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        let prefix: &[u8] = match self.algorithm {
            Algorithm::EcdsaP256 => &P256_SPKI_PREFIX,
            Algorithm::Ed25519 => &ED25519_SPKI_PREFIX,
        };
        pem_encode("PUBLIC KEY", &[prefix, &self.raw].concat())
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The sha256 of the key's raw bytes, shortened: how logs name a key.
    pub fn fingerprint(&self) -> String {
        Sha256::of(&self.raw).short()
    }

    /// Where the key was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether `signature` (raw: DER for ECDSA, 64 bytes for Ed25519) is this key's over
    /// `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn sig::VerificationAlgorithm = match self.algorithm {
            Algorithm::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1,
            Algorithm::Ed25519 => &sig::ED25519,
        };
        sig::UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

/// A private key that signs modules.
pub struct SigningKey {
    inner: Signer,
    public: PublicKey,
}

enum Signer {
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.public)
    }
}

impl SigningKey {
    /// A new ECDSA P-256 key pair; returns it with its PKCS#8 PEM.
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`] when the system's random source fails.
    pub fn generate() -> Result<(SigningKey, String)> {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| bad("new key", "the system's random source failed"))?;
        let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
        Ok((SigningKey::from_pem(&pem, "new key")?, pem))
    }

    /// Reads a PEM `PRIVATE KEY` (unencrypted PKCS#8), ECDSA P-256 or Ed25519.
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`], with what to do for cosign's encrypted keys and SEC1 `EC
    /// PRIVATE KEY` files.
    pub fn from_pem(text: &str, origin: &str) -> Result<SigningKey> {
        let (label, der) = pem(text, origin)?;
        match label.as_str() {
            "PRIVATE KEY" => {}
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                return Err(bad(
                    origin,
                    "cosign's encrypted private keys are not read: sign with `cosign sign-blob` \
                     (its signature verifies here), or make a key with `sidekill policy keygen`",
                ))
            }
            "EC PRIVATE KEY" => {
                return Err(bad(
                    origin,
                    "a SEC1 `EC PRIVATE KEY`; convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in KEY -out key.pem`",
                ))
            }
            other => {
                return Err(bad(
                    origin,
                    format!("a PEM `{other}`, expected `PRIVATE KEY` (unencrypted PKCS#8)"),
                ))
            }
        }
        let is_ed25519 = der
            .windows(ED25519_OID.len())
            .take(16)
            .any(|w| w == ED25519_OID);
        let rejected = |e: ring::error::KeyRejected| bad(origin, format!("key rejected: {e}"));
        let (inner, algorithm, raw) = if is_ed25519 {
            let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(rejected)?;
            let raw = pair.public_key().as_ref().to_vec();
            (Signer::Ed25519(pair), Algorithm::Ed25519, raw)
        } else {
            let pair = sig::EcdsaKeyPair::from_pkcs8(
                &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                &der,
                &SystemRandom::new(),
            )
            .map_err(rejected)?;
            let raw = pair.public_key().as_ref().to_vec();
            (Signer::Ecdsa(pair), Algorithm::EcdsaP256, raw)
        };
        Ok(SigningKey {
            inner,
            public: PublicKey {
                algorithm,
                raw,
                origin: origin.to_string(),
            },
        })
    }

    /// Reads a PEM private key file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`SignatureError::KeyFormat`].
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        let text = read_small(path)?;
        SigningKey::from_pem(&text, &format!("key {}", path.display()))
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `module`; returns the signature as a `.sig` file holds it (base64, newline).
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`] when the random source fails (ECDSA needs a nonce).
    pub fn sign(&self, module: &[u8]) -> Result<String> {
        let raw = match &self.inner {
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), module)
                .map_err(|_| bad("signing", "the system's random source failed"))?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair.sign(module).as_ref().to_vec(),
        };
        let mut text = base64::engine::general_purpose::STANDARD.encode(raw);
        text.push('\n');
        Ok(text)
    }
}

/// Decodes a `.sig` file's content: base64, whitespace around it ignored.
///
/// # Errors
/// [`SignatureError::KeyFormat`] when it is not base64.
pub fn decode_signature(text: &[u8], what: &str) -> Result<Vec<u8>> {
    let text: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(what, format!("not a base64 signature ({e})")))
}

/// Reads a key file, refusing anything over 64 KiB (a key is a few hundred bytes).
fn read_small(path: &Path) -> Result<String> {
    let bytes = crate::limits::read_capped(path, 64 << 10)?;
    String::from_utf8(bytes).map_err(|_| bad(&path.display().to_string(), "not text"))
}

/// How a module was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The module is the one embedded in the binary.
    Embedded,
    /// Its sha256 is on the allowlist.
    Pinned,
    /// Its signature verifies with this key (fingerprint).
    Signed(String),
    /// Unsigned, let in by `--allow-unsigned`.
    Unsigned,
}

impl std::fmt::Display for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Embedded => write!(f, "embedded in the binary"),
            Admission::Pinned => write!(f, "sha256 pinned"),
            Admission::Signed(key) => write!(f, "signed by key {key}"),
            Admission::Unsigned => write!(f, "unsigned, allowed by --allow-unsigned"),
        }
    }
}

/// Who may put a module live: trusted keys, an allowlist of sha256 pins, and whether
/// unsigned modules are let in. Configured on the Deployment, never from the ConfigMap.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys whose signatures are accepted.
    pub keys: Vec<PublicKey>,
    /// Module digests accepted without a signature.
    pub pins: Vec<Sha256>,
    /// Let in a module that is neither pinned nor signed. Only when no pin is set: pins
    /// say which modules are wanted. Default false.
    pub allow_unsigned: bool,
}

impl Trust {
    /// Lets every module in (the library's default for local use and tests).
    pub fn allow_all() -> Trust {
        Trust {
            allow_unsigned: true,
            ..Trust::default()
        }
    }

    /// Decides whether `bytes` (with its `signature`, raw, when one travels with it) may
    /// be loaded. Checked before anything is compiled.
    ///
    /// # Errors
    /// [`SignatureError::BadSignature`] when a signature is given, keys are configured and none
    /// verifies it (whatever `allow_unsigned` says); [`LoadError::Pin`] when pins are set and
    /// none matches; [`SignatureError::Unsigned`] otherwise.
    pub fn admit(&self, bytes: &[u8], signature: Option<&[u8]>) -> Result<Admission> {
        let sha256 = Sha256::of(bytes);
        if sha256 == crate::embedded::sha256() {
            return Ok(Admission::Embedded);
        }
        if self.pins.contains(&sha256) {
            return Ok(Admission::Pinned);
        }
        if let Some(signature) = signature {
            if let Some(key) = self.keys.iter().find(|k| k.verifies(bytes, signature)) {
                return Ok(Admission::Signed(key.fingerprint()));
            }
            if !self.keys.is_empty() {
                return Err(Error::from(SignatureError::BadSignature {
                    sha256: sha256.to_string(),
                    keys: self.keys.len(),
                }));
            }
        }
        if self.allow_unsigned && self.pins.is_empty() {
            return Ok(Admission::Unsigned);
        }
        if !self.pins.is_empty() && self.keys.is_empty() {
            return Err(Error::Load(LoadError::Pin {
                expected: self
                    .pins
                    .iter()
                    .map(Sha256::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: sha256.to_string(),
            }));
        }
        Err(Error::from(SignatureError::Unsigned {
            sha256: sha256.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let (key, pem) = SigningKey::generate().expect("key");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = PublicKey::from_pem(&key.public().to_pem(), "pub").expect("public");
        let sig =
            decode_signature(key.sign(b"module").expect("sign").as_bytes(), "sig").expect("base64");
        assert!(public.verifies(b"module", &sig));
        assert!(!public.verifies(b"module2", &sig));
        let (other, _) = SigningKey::generate().expect("key");
        assert!(!other.public().verifies(b"module", &sig));
    }

    #[test]
    fn trust_refuses_unsigned_and_badly_signed_modules() {
        let (key, _) = SigningKey::generate().expect("key");
        let (other, _) = SigningKey::generate().expect("key");
        let trust = Trust {
            keys: vec![key.public().clone()],
            ..Trust::default()
        };
        let module = b"\0asm not really";
        let good = decode_signature(key.sign(module).expect("sign").as_bytes(), "s").expect("s");
        let evil = decode_signature(other.sign(module).expect("sign").as_bytes(), "s").expect("s");
        assert!(matches!(
            trust.admit(module, Some(&good)),
            Ok(Admission::Signed(_))
        ));
        assert_eq!(
            trust.admit(module, Some(&evil)).unwrap_err().name(),
            "bad_signature"
        );
        assert_eq!(trust.admit(module, None).unwrap_err().name(), "unsigned");
        let lax = Trust {
            allow_unsigned: true,
            ..trust.clone()
        };
        assert_eq!(
            lax.admit(module, None).expect("allowed"),
            Admission::Unsigned
        );
        assert_eq!(
            lax.admit(module, Some(&evil)).unwrap_err().name(),
            "bad_signature"
        );
        let pinned = Trust {
            pins: vec![Sha256::of(module)],
            ..Trust::default()
        };
        assert_eq!(
            pinned.admit(module, None).expect("pinned"),
            Admission::Pinned
        );
        assert_eq!(pinned.admit(b"other", None).unwrap_err().name(), "pin");
        assert_eq!(
            Trust::default()
                .admit(crate::embedded::BYTES, None)
                .expect("embedded"),
            Admission::Embedded
        );
    }

    #[test]
    fn ed25519_and_foreign_pems_are_read_or_named() {
        let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed");
        let key = SigningKey::from_pem(&pem_encode("PRIVATE KEY", ed.as_ref()), "ed").expect("ed");
        assert_eq!(key.public().algorithm(), Algorithm::Ed25519);
        let public = PublicKey::from_pem(&key.public().to_pem(), "p").expect("p");
        let sig = decode_signature(key.sign(b"m").expect("s").as_bytes(), "s").expect("s");
        assert!(public.verifies(b"m", &sig));
        let cosign = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(cosign, "cosign.key").unwrap_err();
        assert!(err.to_string().contains("cosign sign-blob"), "{err}");
    }
}
