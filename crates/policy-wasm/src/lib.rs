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
//! # Memory protocol (raw ABI)
//! The host asks for a buffer with `sidekill_alloc`, writes the request into it, and
//! calls `sidekill_plan(ptr, len)`. The call returns the address of the answer and
//! `sidekill_result_len` its length; the answer stays valid until the next call or
//! `sidekill_reset`. Requests must lie inside a buffer from `sidekill_alloc`: anything
//! else, including a call before any alloc, is answered with a `bad_pointer` error
//! envelope, never a trap.

#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "wasm32", not(feature = "js")))]
mod raw;

#[cfg(feature = "js")]
mod js;
