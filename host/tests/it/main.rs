//! Integration tests of the host, one module per area:
//! - `hostile`: hostile and broken modules (`tests/modules/*.wat`) are refused or stopped
//!   with a clear error, never a panic;
//! - `swap`: the policy store under concurrent load, the file source, rollback;
//! - `cache`: the precompiled-module cache on disk;
//! - `configmap` (feature `configmap`): the ConfigMap source against a fake API server;
//! - `cli`: the real `sidekill` binary in a temporary directory;
//! - `executor` (feature `configmap`, root): plans carried out against `crates/testcluster`.

mod cache;
mod cli;
mod common;
#[cfg(feature = "configmap")]
mod configmap;
#[cfg(feature = "configmap")]
mod executor;
mod hostile;
mod swap;
