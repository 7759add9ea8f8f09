//! Integration tests of the host, one module per area:
//! - `abi`: the host and the debugger page require the exports `docs/ABI.md` lists;
//! - `hostile`: hostile and broken modules (`tests/modules/*.wat`) are refused or stopped
//!   with a clear error, never a panic;
//! - `swap`: the policy store under concurrent load, the file source, rollback;
//! - `cache`: the precompiled-module cache on disk;
//! - `configmap` (feature `configmap`, root): the ConfigMap source, `policy push` and
//!   `policy rollback` against `crates/testcluster`;
//! - `cli`: the real `sidekill` binary in a temporary directory;
//! - `http`: the HTTP server of `sidekill web` and the controller's health endpoints, under
//!   hostile clients (`http_client`, shared with the benches, is the one client);
//! - `controller` (feature `configmap`, root): the controller against `crates/testcluster`;
//! - `demo` (feature `demo`, root): `sidekill demo` as a newcomer runs it;
//! - `executor` (feature `configmap`): plans carried out against `crates/testcluster` (root),
//!   or a real cluster with `SIDEKILL_E2E=1` (see `cluster`);
//! - `cluster`: where the executor's tests run, and their fixture helpers;
//! - `sandbox_edges`: issue 17, the module trusted no further than the sandbox (signatures,
//!   the cache, pristine state per call, compile bounds, answer cost);
//! - `fuzz`: proptest targets through wasmtime (`PROPTEST_CASES` bounds their time).

mod abi;
mod cache;
mod cli;
#[cfg(feature = "configmap")]
mod cluster;
mod common;
#[cfg(feature = "configmap")]
mod configmap;
#[cfg(feature = "configmap")]
mod controller;
#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "configmap")]
mod executor;
mod fuzz;
mod hostile;
mod http;
#[path = "../support/http_client.rs"]
mod http_client;
mod sandbox_edges;
mod swap;
