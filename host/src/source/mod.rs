//! Where new policy versions come from.
//!
//! - [`file`]: a module file, watched by polling its modification time, size and hash.
//! - `configmap` (feature `configmap`, on by default): a ConfigMap's `binaryData` key,
//!   watched with kube's runtime watcher.

#[cfg(feature = "configmap")]
pub mod configmap;
pub mod file;
