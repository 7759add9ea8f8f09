//! The default policy module, built from `crates/policy-wasm` by `build.rs` in the same
//! `cargo build` and included in the binary.

use std::sync::OnceLock;

use crate::digest::Sha256;

/// The embedded module's bytes (the raw ABI build of `sidekill-policy-wasm`, profile `wasm`).
pub static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sidekill_policy.wasm"));

/// The origin string logged for the embedded module, and the name that stands for it
/// where a module file is expected (`sidekill policy inspect embedded`, `--policy embedded`).
pub const ORIGIN: &str = "embedded";

/// How the embedded module was built (`host/build.rs`): `cargo profile wasm, opt-level 3,
/// feature yaml`, or `prebuilt FILE (SIDEKILL_POLICY_WASM)`. The module's identity (name,
/// version) is the same for every build of one source; its sha256 and this tell them apart.
pub const BUILD: &str = env!("SIDEKILL_EMBEDDED_BUILD");

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
