//! One list of the exports a module must have (issue 15): `docs/ABI.md`'s "Exports" table,
//! which `build.rs` reads into [`sidekill::abi::EXPORTS`]. The host's load check and the
//! debugger page's `web/abi-exports.js` must both be that list; each test fails when one drifts.

use std::path::Path;

use sidekill::abi::{page_module, EXPORTS};

/// The documented list is the ABI's 11 exports, with wasmtime's types (a table the build read
/// wrongly would differ); the host's load check is that list itself (`policy::ABI_EXPORTS`).
#[test]
fn the_host_checks_the_documented_exports() {
    assert_eq!(EXPORTS.len(), 11);
    assert!(EXPORTS.contains(&("sidekill_plan", "func(i32, i32) -> i32")));
    assert!(EXPORTS.contains(&("memory", "memory")));
}

/// The page's list is generated from the documented one; `SIDEKILL_BLESS=1` rewrites it.
#[test]
fn the_page_checks_the_documented_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/abi-exports.js");
    let want = page_module();
    if std::env::var_os("SIDEKILL_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        have, want,
        "web/abi-exports.js differs from docs/ABI.md's Exports table: rerun with SIDEKILL_BLESS=1"
    );
}
