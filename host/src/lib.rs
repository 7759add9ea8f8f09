//! sidekill's native host: it loads the policy module in wasmtime, runs every call under a
//! deadline and a memory limit, hot-swaps the module without dropping a call, and is the
//! `sidekill` command line.
//!
//! Every decision (what a container is, how to stop it, in what order) comes from the
//! policy module (`crates/policy` compiled to `crates/policy-wasm`). This crate turns
//! YAML into JSON, moves bytes in and out of the sandbox, and renders answers.
//!
//! ```
//! use sidekill::{embedded, Config, Runtime};
//!
//! let runtime = Runtime::new(Config::default())?;
//! let policy = runtime.load(embedded::BYTES)?;
//! let request = br#"{"object": {"kind": "Pod", "metadata": {"name": "pi"},
//!   "spec": {"restartPolicy": "Never", "containers": [
//!     {"name": "pi", "image": "perl"},
//!     {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}]}}}"#;
//! let plan = policy.plan(request)?;
//! assert_eq!(plan["subjects"][0]["plan"]["stops"][0]["container"], "istio-proxy");
//! # Ok::<(), sidekill::Error>(())
//! ```
//!
//! # Concepts
//! - [`Runtime`]: one wasmtime engine, the [`Limits`] of every call (deadline 100 ms,
//!   memory 64 MiB, answer 16 MiB by default), the epoch ticker, and the cache of compiled
//!   modules keyed by SHA-256 (in memory, and on disk with [`Config::cache_dir`]).
//! - [`Policy`]: one loaded module. Loading refuses anything that is not a WebAssembly
//!   binary, has an import, lacks an ABI export, or reports another ABI major version.
//!   Each call runs in a fresh store from a reused `InstancePre`.
//! - [`PolicyStore`]: the live version behind an `RwLock<Arc<Policy>>`. A candidate goes
//!   live only after the pin, the load checks and the [`canary`] self-test pass; a call
//!   in flight finishes on the version it started with; [`PolicyStore::rollback`] returns
//!   to the previous version.
//! - [`source::file`]: a module file polled for changes; `source::configmap` (feature
//!   `configmap`): a ConfigMap's `binaryData` key, watched with kube's runtime watcher.
//! - [`cli`]: the `sidekill` command line (`plan`, `matrix`, `policy
//!   inspect|diff|test|push|rollback`, `stop`, `controller`, `demo`, `web`).
//! - `exec` and `controller` (feature `configmap`): carry plans out through `pods/exec`, and
//!   watch pods to do it as soon as they are ready.
//! - [`Error`]: one variant per failure, each with a stable [`Error::name`].
//!
//! # Features
//! - `configmap` (default): `source::configmap`, `exec`, `controller`, and the `stop` and
//!   `controller` commands, with kube, k8s-openapi and tokio. `--no-default-features` builds
//!   the command line and the file source without them.
//! - `demo` (default): `sidekill demo`, with the embedded test cluster (`crates/testcluster`).
//!
//! The default policy module is always embedded ([`embedded`]); `build.rs` builds it from
//! `crates/policy-wasm` (it needs `rustup target add wasm32-unknown-unknown`) or takes
//! `SIDEKILL_POLICY_WASM=/path/to/module.wasm`.

#![warn(missing_docs)]

pub mod abi;
pub mod answer;
pub mod canary;
pub mod cli;
#[cfg(feature = "configmap")]
pub mod controller;
#[cfg(feature = "configmap")]
pub mod corpus;
pub mod diff;
pub mod digest;
pub mod embedded;
pub mod error;
pub mod escape;
#[cfg(feature = "configmap")]
pub mod exec;
pub mod http;
pub mod input;
pub mod limits;
pub mod policy;
#[cfg(feature = "configmap")]
pub mod publish;
pub mod render;
#[cfg(feature = "configmap")]
pub mod requests;
pub mod runtime;
pub mod signature;
pub mod source;
pub mod store;
pub mod web;

pub use digest::Sha256;
pub use error::{AnswerError, CallError, Error, LoadError, Result};
pub use policy::{AbiVersion, Policy, PolicyInfo};
pub use runtime::{Config, Limits, Runtime};
pub use store::{PolicyStore, Swap, Version};

impl Policy {
    /// Runs every canary and returns every outcome, as `sidekill policy test` shows them.
    pub fn self_test(&self) -> Vec<canary::CanaryResult> {
        canary::run_all(self)
    }
}
