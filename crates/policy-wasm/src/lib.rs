//! sidekill's policy as a WebAssembly module.
//!
//! Built without features, this is the **raw module**: a tiny JSON-in, JSON-out ABI with
//! no imports, documented in `docs/ABI.md`, that any runtime can instantiate with an
//! empty import object (Go's wazero, Python's wasmtime, Java's chicory, Node's
//! `WebAssembly`, and sidekill's own host). Built with the `js` feature, it is the
//! wasm-bindgen build for JavaScript, made by wasm-pack (see `wasm-pack.toml`).
//!
//! The module only moves bytes: every decision is `sidekill_policy`'s.
//!
//! ```text
//! $ scripts/build-wasm            # dist/raw/sidekill_policy.wasm, dist/pkg-web, dist/pkg-node
//! $ node -e 'const p = require("./dist/pkg-node");
//!            console.log(p.plan({object: {kind: "Pod", spec: {containers: []}}}))'
//! ```
//! A loader for the raw module is a dozen lines in any language: `docs/ABI.md` walks through
//! Go, Python, Java and Node, and `tests/module/` drives it from wasmtime.
//!
//! # Memory protocol (raw ABI)
//! The host asks for a buffer with `sidekill_alloc`, writes the request into it, and
//! calls `sidekill_plan(ptr, len)`. The call returns the address of the answer and
//! `sidekill_result_len` its length; the answer stays valid until the next call or
//! `sidekill_reset`. Requests must lie inside a buffer from `sidekill_alloc`: anything
//! else, including a call before any alloc, is answered with a `bad_pointer` error
//! envelope, never a trap.
//!
//! # Features
//! - `js` (off): the wasm-bindgen functions of `js.rs` (`plan`, `classify`, `matrix`,
//!   `policyInfo`, `parseDocuments`, `callJson`) with TypeScript types, instead of the raw
//!   ABI. It turns on the core's `yaml` feature for `parseDocuments`.
//! - `yaml` (off): the raw module plus the optional export `sidekill_documents` (YAML in,
//!   the documents as JSON out). The `sidekill` binary embeds this build and serves it to the
//!   debugger page, so a plain `cargo build` has everything the page needs.
//!
//! On targets other than wasm32 the crate is empty: its tests load the built module.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The raw module leaves std out: its panic machinery and allocator are a fifth of the module,
// and the core is no_std already. The JS build keeps std, which wasm-bindgen expects.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "js")), no_std)]

#[cfg(all(target_arch = "wasm32", not(feature = "js")))]
extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(feature = "js")))]
mod heap;
#[cfg(all(target_arch = "wasm32", not(feature = "js")))]
mod raw;

#[cfg(feature = "js")]
mod js;
