//! The default policy module, built from `crates/policy-wasm` by `build.rs` in the same
//! `cargo build` and included in the binary.

use std::sync::OnceLock;

use crate::digest::Sha256;

/// The embedded module's bytes (the raw ABI build of `sidekill-policy-wasm`, profile `wasm`).
pub static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sidekill_policy.wasm"));

/// The origin string logged for the embedded module.
pub const ORIGIN: &str = "embedded";

/// The SHA-256 of [`BYTES`].
pub fn sha256() -> Sha256 {
    static DIGEST: OnceLock<Sha256> = OnceLock::new();
    *DIGEST.get_or_init(|| Sha256::of(BYTES))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_module_is_wasm() {
        assert!(super::BYTES.starts_with(b"\0asm"));
    }
}
