//! The exports the raw ABI requires: one list, `docs/ABI.md`'s "Exports" table, read by
//! `build.rs` (issue 15). The host checks a module against it before it accepts it, and the
//! debugger page's `web/abi-exports.js` is generated from it (`tests/it/abi.rs` fails when the
//! two differ and rewrites the page's file with `SIDEKILL_BLESS=1`).

include!(concat!(env!("OUT_DIR"), "/abi_exports.rs"));

/// The page's list, `web/abi-exports.js`: each export with the kind `WebAssembly.Module.exports`
/// gives it (`memory` or `function`).
pub fn page_module() -> String {
    let mut js = String::from(
        "// Generated from docs/ABI.md's \"Exports\" table (host/src/abi.rs, page_module): do not edit.\n\
         // Regenerate with `SIDEKILL_BLESS=1 cargo test -p sidekill --test it abi::`.\n\
         /** The exports every sidekill module has, with their kinds: the list the host checks too. */\n\
         export const REQUIRED = {\n",
    );
    for (name, kind) in EXPORTS {
        let kind = if kind == "memory" {
            "memory"
        } else {
            "function"
        };
        js.push_str(&format!("  {name}: '{kind}',\n"));
    }
    js.push_str("};\n");
    js
}
