//! A policy module in a ConfigMap's `binaryData`, watched with kube's runtime watcher.
//!
//! The source watches one ConfigMap (a field selector on its name) in one namespace. Each
//! version of it (the initial list, then every modification) is handled like a file
//! change: the bytes under the key are hashed, and when the SHA-256 differs from the
//! last one seen they are proposed to the [`PolicyStore`] on a blocking thread (loading
//! compiles, which can take a few hundred milliseconds).
//!
//! Only `binaryData[key]` and its signature are read: `binaryData[key.sig]` or
//! `data[key.sig]` ([`signature_key`]; base64 text, as `sidekill policy sign` and `cosign
//! sign-blob` write it). The signature is checked against the keys configured on the
//! controller, never against anything in the ConfigMap. The module a push replaced (`<key>.previous`, see
//! below), the annotations and every other key are ignored, so a ConfigMap written by
//! [`PolicyConfigMap`](crate::publish::PolicyConfigMap) goes live with its new module, never the previous one.
//!
//! Failure modes: a ConfigMap without the key, a deleted ConfigMap, a refused module and a
//! watch error are logged (`warn`); the live version keeps serving. Watch errors are
//! retried with kube's default backoff; the stream, and [`ConfigMapSource::run`], never
//! ends while the API server is reachable. RBAC: `get`, `list` and `watch` on
//! `configmaps` in the namespace.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<sidekill::PolicyStore>) -> anyhow::Result<()> {
//! // A kubeconfig, or the in-cluster service account.
//! let client = kube::Client::try_default().await?;
//! let source = sidekill::source::configmap::ConfigMapSource::new(
//!     client, "sidekill-system", "sidekill-policy", "policy.wasm");
//! source.run(store).await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::store::{PolicyStore, Swap};

/// What can go wrong with the ConfigMap a policy module lives in: reading a key, writing
/// a version (`policy push`, `policy rollback`). None is the module's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigMapError {
    /// A ConfigMap version has no module under the expected `binaryData` key.
    #[error("{origin}: no `binaryData` key `{key}`")]
    MissingKey {
        /// The ConfigMap, as the source names it.
        origin: String,
        /// The key.
        key: String,
    },

    /// A key cannot hold a policy module in a ConfigMap that `sidekill policy push` writes.
    #[error("`{key}` cannot be the policy key of a ConfigMap: {reason}")]
    BadKey {
        /// The key given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The policy ConfigMap does not exist (`policy rollback`).
    #[error("{configmap} not found")]
    NoConfigMap {
        /// The ConfigMap, as `configmap NAMESPACE/NAME`.
        configmap: String,
    },

    /// A rollback was asked for, but the ConfigMap keeps no module the live one replaced.
    #[error("{configmap} has no previous module to roll back to: no `binaryData` key `{previous_key}` next to `{key}` (`sidekill policy push` keeps the module it replaces there)")]
    NoPreviousModule {
        /// The ConfigMap, as `configmap NAMESPACE/NAME`.
        configmap: String,
        /// The live module's key.
        key: String,
        /// The key the previous module would be under.
        previous_key: String,
    },

    /// The ConfigMap changed between being read and being written, at every attempt
    /// (optimistic concurrency on its `resourceVersion`): nothing was written.
    #[error("{configmap} was changed by someone else while being written ({attempts} attempt{}); nothing was written: look at it and try again", if *.attempts == 1 { "" } else { "s" })]
    Conflict {
        /// The ConfigMap, as `configmap NAMESPACE/NAME`.
        configmap: String,
        /// How many read-and-write attempts were made.
        attempts: u32,
    },
}

/// One ConfigMap key holding a policy module.
pub struct ConfigMapSource {
    api: Api<ConfigMap>,
    name: String,
    key: String,
    origin: String,
    seen: Option<(Sha256, Option<Sha256>)>,
}

impl std::fmt::Debug for ConfigMapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapSource")
            .field("origin", &self.origin)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl ConfigMapSource {
    /// A source for `binaryData[key]` of ConfigMap `namespace/name`. Nothing is read
    /// until [`ConfigMapSource::run`].
    pub fn new(client: Client, namespace: &str, name: &str, key: &str) -> Self {
        ConfigMapSource {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            key: key.to_string(),
            origin: format!("configmap {namespace}/{name} key {key}"),
            seen: None,
        }
    }

    /// Where versions from this source say they come from, in logs and [`Version::origin`].
    ///
    /// [`Version::origin`]: crate::Version::origin
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The module bytes of one ConfigMap version.
    ///
    /// # Errors
    /// [`ConfigMapError::MissingKey`] when `binaryData` has no such key.
    pub fn module_bytes<'c>(&self, configmap: &'c ConfigMap) -> Result<&'c [u8]> {
        configmap
            .binary_data
            .as_ref()
            .and_then(|data| data.get(&self.key))
            .map(|bytes| bytes.0.as_slice())
            .ok_or_else(|| {
                Error::from(ConfigMapError::MissingKey {
                    origin: self.origin.clone(),
                    key: self.key.clone(),
                })
            })
    }

    /// The raw signature beside the module in one ConfigMap version, when there is one.
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`](crate::signature::SignatureError::KeyFormat) when it is not base64.
    pub fn signature(&self, configmap: &ConfigMap) -> Result<Option<Vec<u8>>> {
        let key = signature_key(&self.key);
        let text = configmap
            .binary_data
            .as_ref()
            .and_then(|data| data.get(&key))
            .map(|bytes| bytes.0.clone())
            .or_else(|| {
                configmap
                    .data
                    .as_ref()
                    .and_then(|data| data.get(&key))
                    .map(|text| text.as_bytes().to_vec())
            });
        text.map(|text| {
            crate::signature::decode_signature(&text, &format!("{} key {key}", self.origin))
        })
        .transpose()
    }

    /// Handles one ConfigMap version: proposes its module when its SHA-256 is new.
    /// `Ok(None)` when the bytes were seen already. Blocks while the candidate is
    /// validated; [`ConfigMapSource::run`] calls it on a blocking thread.
    ///
    /// # Errors
    /// [`ConfigMapError::MissingKey`], or the store's refusal.
    pub fn apply(&mut self, store: &PolicyStore, configmap: &ConfigMap) -> Result<Option<Swap>> {
        let bytes = self.module_bytes(configmap)?;
        let signature = self.signature(configmap)?;
        // A signature added after its module is a change too.
        let seen = (Sha256::of(bytes), signature.as_deref().map(Sha256::of));
        if self.seen == Some(seen) {
            return Ok(None);
        }
        self.seen = Some(seen);
        store
            .propose_signed(bytes, signature.as_deref(), &self.origin)
            .map(Some)
    }

    /// Watches the ConfigMap and proposes every new module to `store`. Runs until the
    /// watch stream ends, which kube's watcher does not do on its own: drop or abort the
    /// task to stop it.
    ///
    /// # Errors
    /// None in practice; the signature leaves room for a fatal error.
    pub async fn run(self, store: Arc<PolicyStore>) -> Result<()> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events =
            std::pin::pin!(watcher::watcher(self.api.clone(), config).default_backoff());
        let mut source = Some(self);
        while let Some(event) = events.next().await {
            let configmap = match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => cm,
                Ok(Event::Delete(_)) => {
                    let origin = source.as_ref().map_or("configmap", |s| s.origin.as_str());
                    tracing::warn!(
                        origin,
                        "the policy ConfigMap was deleted; the live version keeps serving"
                    );
                    continue;
                }
                Ok(Event::Init | Event::InitDone) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "policy ConfigMap watch error; retrying with backoff");
                    continue;
                }
            };
            let Some(mut current) = source.take() else {
                break;
            };
            let store = Arc::clone(&store);
            let handled = tokio::task::spawn_blocking(move || {
                let outcome = current.apply(&store, &configmap);
                (current, outcome)
            })
            .await;
            match handled {
                Ok((current, outcome)) => {
                    if let Err(e @ Error::ConfigMap(ConfigMapError::MissingKey { .. })) = &outcome {
                        tracing::warn!(error = %e, "the live version keeps serving");
                    }
                    source = Some(current);
                }
                // The blocking task panicked (nothing in it should); the source went with it.
                Err(e) => {
                    tracing::error!(error = %e, "policy ConfigMap handler failed; watch stopped");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// What `<key>.previous` ends with: the key that keeps the module a push or a rollback
/// replaced.
pub const PREVIOUS_SUFFIX: &str = ".previous";

/// The prefix of the annotations that record each module's identity.
pub const ANNOTATION_PREFIX: &str = "sidekill.dev/";

/// The key that keeps the module the one under `key` replaced: `<key>.previous`.
pub fn previous_key(key: &str) -> String {
    format!("{key}{PREVIOUS_SUFFIX}")
}

/// The key of the signature of the module under `data_key`: `<data_key>.sig`.
pub fn signature_key(data_key: &str) -> String {
    format!("{data_key}.sig")
}

/// The annotation that records the identity of the module under `data_key`:
/// `sidekill.dev/<data_key>`.
pub fn annotation(data_key: &str) -> String {
    format!("{ANNOTATION_PREFIX}{data_key}")
}

/// Checks that `key` can be the policy key of a ConfigMap
/// [`PolicyConfigMap`](crate::publish::PolicyConfigMap) writes:
/// a ConfigMap key (letters, digits, `-`, `_`, `.`) that starts and ends with a letter or
/// a digit (it also names an annotation), at most 54 characters (so that
/// `sidekill.dev/<key>.previous` is a valid annotation name), and not itself ending with
/// `.previous`. Does no IO.
///
/// # Errors
/// [`ConfigMapError::BadKey`] naming what is wrong.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::from(ConfigMapError::BadKey {
            key: key.to_string(),
            reason,
        }))
    };
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if key.is_empty() {
        return bad("it is empty");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("a ConfigMap key has only letters, digits, `-`, `_` and `.`");
    }
    if !edge(key.chars().next()) || !edge(key.chars().last()) {
        return bad("it must start and end with a letter or a digit");
    }
    if key.len() + PREVIOUS_SUFFIX.len() > 63 {
        return bad("it is longer than 54 characters");
    }
    if key.ends_with(PREVIOUS_SUFFIX) {
        return bad("keys ending with `.previous` keep replaced modules");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_name_a_configmap_key_and_an_annotation() {
        for good in ["policy.wasm", "p", "a-b_c.d9", &"k".repeat(54)] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            ".policy",
            "policy.",
            "x-",
            "policy.wasm.previous",
            &"k".repeat(55),
        ] {
            let err = check_key(bad).expect_err(bad);
            assert_eq!(err.name(), "bad_key");
        }
        assert_eq!(previous_key("policy.wasm"), "policy.wasm.previous");
        assert_eq!(
            annotation("policy.wasm.previous"),
            "sidekill.dev/policy.wasm.previous"
        );
    }
}
