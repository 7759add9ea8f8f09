//! Publishing a policy module to the ConfigMap a controller watches: the writing side of
//! [`crate::source::configmap`], whose layout (keys, annotations) it shares.
//!
//! [`PolicyConfigMap`] serves `sidekill policy push` and `rollback`. A push validates the
//! candidate as a hot swap would ([`crate::store::validate`]), then puts it under `key` and
//! moves the module it replaces to `<key>.previous` ([`previous_key`]); a rollback
//! validates the previous module and swaps the two. Annotations
//! `sidekill.dev/<key>` and `sidekill.dev/<key>.previous` ([`annotation`]) record each module's
//! identity as JSON: `{"name", "version", "sha256", "size"}`. Every write is conditional on
//! the `resourceVersion` that was read, so two concurrent pushes cannot lose a version: the
//! second one's write is refused (409 Conflict), and a push reads again and retries (at most
//! [`MAX_ATTEMPTS`] times) while a rollback stops. RBAC: `get`, `create` and `update` on
//! `configmaps` in the namespace. Both modules must fit in a ConfigMap (1 MiB).
//!
//! ```no_run
//! # async fn demo(runtime: sidekill::Runtime, bytes: Vec<u8>) -> anyhow::Result<()> {
//! use sidekill::publish::{Candidate, PolicyConfigMap};
//!
//! // Blocks while the module compiles and the canaries run.
//! let candidate = Candidate::validate(&runtime, bytes)?;
//! let client = kube::Client::try_default().await?;
//! let configmap = PolicyConfigMap::new(client, "sidekill", "sidekill-policy", "policy.wasm")?;
//! let published = configmap.push(&runtime, &candidate).await?;
//! println!("{} is live; kept: {:?}", published.live, published.previous);
//! // And back:
//! configmap.rollback(&runtime).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::runtime::Runtime;
use crate::source::configmap::{
    annotation, check_key, previous_key, signature_key, ConfigMapError,
};

/// How many times [`PolicyConfigMap::push`] reads and writes before it gives up with
/// [`ConfigMapError::Conflict`].
pub const MAX_ATTEMPTS: u32 = 5;

/// Who a module is: its name and version (as the module reports them) and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleId {
    /// `sidekill_info().name`; `None` when the module does not load.
    pub name: Option<String>,
    /// `sidekill_info().version`; `None` when the module does not load.
    pub version: Option<String>,
    /// The SHA-256 of the bytes.
    pub sha256: Sha256,
    /// The size in bytes.
    pub size: usize,
}

impl ModuleId {
    fn of(policy: &Policy, size: usize) -> ModuleId {
        ModuleId {
            name: Some(policy.info().name.clone()),
            version: Some(policy.info().version.clone()),
            sha256: *policy.sha256(),
            size,
        }
    }

    /// `{"name", "version", "sha256", "size"}`, as the annotations and `--format json`
    /// show it (`name` and `version` are `null` for a module that does not load).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256.to_string(),
            "size": self.size,
        })
    }

    /// The identity an annotation records, when it is about these very bytes.
    fn from_annotation(text: Option<&String>, bytes: &[u8]) -> Option<ModuleId> {
        let value: Value = serde_json::from_str(text?).ok()?;
        let sha256: Sha256 = value.get("sha256")?.as_str()?.parse().ok()?;
        if sha256 != Sha256::of(bytes) {
            return None;
        }
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        Some(ModuleId {
            name: field("name"),
            version: field("version"),
            sha256,
            size: bytes.len(),
        })
    }
}

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.version) {
            (Some(name), Some(version)) => write!(f, "{name} {version}")?,
            _ => write!(f, "a module that does not load")?,
        }
        write!(f, " (sha256 {}, {} bytes)", self.sha256.short(), self.size)
    }
}

/// A module that passed [`crate::store::validate`]: only such modules are written.
#[derive(Debug, Clone)]
pub struct Candidate {
    bytes: Vec<u8>,
    id: ModuleId,
    /// The signature file's text (base64), written beside the module.
    signature: Option<Vec<u8>>,
}

impl Candidate {
    /// Validates `bytes` exactly as a hot swap does (no pin: the pin is the running
    /// controller's). Blocks while the module compiles and the canaries run.
    ///
    /// # Errors
    /// As [`crate::store::validate`]: a load error or [`Error::Canary`]; every such
    /// error is [`Error::is_module_fault`].
    pub fn validate(runtime: &Runtime, bytes: Vec<u8>) -> Result<Candidate> {
        let policy = crate::store::validate(runtime, None, &bytes)?;
        let id = ModuleId::of(&policy, bytes.len());
        Ok(Candidate {
            bytes,
            id,
            signature: None,
        })
    }

    /// The candidate with its signature (a `.sig` file's base64 text), which a push writes
    /// under `<key>.sig` ([`signature_key`]) for the controller to verify.
    ///
    /// # Errors
    /// [`SignatureError::KeyFormat`](crate::signature::SignatureError::KeyFormat) when `text` is not base64.
    pub fn with_signature(mut self, text: Vec<u8>) -> Result<Candidate> {
        crate::signature::decode_signature(&text, "signature")?;
        self.signature = Some(text);
        Ok(self)
    }

    /// Who the module is.
    pub fn id(&self) -> &ModuleId {
        &self.id
    }
}

/// What a push or a rollback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The ConfigMap did not exist; it was created with the module.
    Created,
    /// The module went under the key; the one it replaced under `<key>.previous`.
    Pushed,
    /// The key already held these bytes: nothing was written.
    Unchanged,
    /// The live and the previous modules were swapped.
    RolledBack,
}

impl Action {
    /// `created`, `pushed`, `unchanged` or `rolled-back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Pushed => "pushed",
            Action::Unchanged => "unchanged",
            Action::RolledBack => "rolled-back",
        }
    }
}

/// A module as one key of the ConfigMap holds it, moved to another key by a write.
struct Stored {
    bytes: Vec<u8>,
    id: ModuleId,
    signature: Option<Vec<u8>>,
}

/// The ConfigMap after a push or a rollback.
#[derive(Debug, Clone)]
pub struct Published {
    /// What was done.
    pub action: Action,
    /// The module now under the key.
    pub live: ModuleId,
    /// The module now under `<key>.previous`, if any.
    pub previous: Option<ModuleId>,
    /// The ConfigMap's `resourceVersion` after the write (or as read, when unchanged).
    pub resource_version: Option<String>,
    /// How many read-and-write attempts it took (more than 1 after conflicts).
    pub attempts: u32,
}

/// One version of the ConfigMap as read, or its absence.
#[derive(Debug, Clone)]
pub struct Snapshot {
    configmap: Option<ConfigMap>,
}

impl Snapshot {
    /// The ConfigMap, or `None` when it does not exist.
    pub fn configmap(&self) -> Option<&ConfigMap> {
        self.configmap.as_ref()
    }

    /// Its `resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.configmap
            .as_ref()?
            .metadata
            .resource_version
            .as_deref()
    }

    fn bytes(&self, key: &str) -> Option<&[u8]> {
        self.configmap
            .as_ref()?
            .binary_data
            .as_ref()?
            .get(key)
            .map(|b| b.0.as_slice())
    }

    fn annotation(&self, key: &str) -> Option<&String> {
        self.configmap
            .as_ref()?
            .metadata
            .annotations
            .as_ref()?
            .get(&annotation(key))
    }
}

/// The writing side of a policy ConfigMap: the live module under `key`, the one it
/// replaced under `<key>.previous`. See the [module documentation](self#publishing).
pub struct PolicyConfigMap {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    key: String,
    previous_key: String,
    label: String,
}

impl std::fmt::Debug for PolicyConfigMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyConfigMap")
            .field("configmap", &self.label)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PolicyConfigMap {
    /// The policy module under `binaryData[key]` of ConfigMap `namespace/name`. Nothing
    /// is read until a method is called.
    ///
    /// # Errors
    /// [`ConfigMapError::BadKey`] as [`check_key`].
    pub fn new(client: Client, namespace: &str, name: &str, key: &str) -> Result<Self> {
        check_key(key)?;
        Ok(PolicyConfigMap {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            previous_key: previous_key(key),
            label: format!("configmap {namespace}/{name}"),
        })
    }

    /// `configmap NAMESPACE/NAME`, as errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The live module's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The previous module's key, `<key>.previous`.
    pub fn previous_key(&self) -> &str {
        &self.previous_key
    }

    fn kube(&self, action: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |e| Error::Kube {
            configmap: self.label.clone(),
            action,
            source: Box::new(e),
        }
    }

    /// Reads the ConfigMap.
    ///
    /// # Errors
    /// [`Error::Kube`] when the API call fails (a missing ConfigMap is not an error).
    pub async fn read(&self) -> Result<Snapshot> {
        let configmap = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.kube("read it"))?;
        Ok(Snapshot { configmap })
    }

    /// Makes `candidate` the live module, keeping the one it replaces: reads the
    /// ConfigMap and [`PolicyConfigMap::write`]s, again while the write conflicts (at
    /// most [`MAX_ATTEMPTS`] times). Each retry keeps whatever another writer made live
    /// meanwhile as the previous module, so no pushed version is lost unrecorded.
    ///
    /// # Errors
    /// [`Error::Kube`], or [`ConfigMapError::Conflict`] when every attempt conflicted.
    pub async fn push(&self, runtime: &Runtime, candidate: &Candidate) -> Result<Published> {
        for attempt in 1..=MAX_ATTEMPTS {
            let snapshot = self.read().await?;
            match self.write(runtime, &snapshot, candidate).await {
                Ok(mut published) => {
                    published.attempts = attempt;
                    return Ok(published);
                }
                Err(Error::ConfigMap(ConfigMapError::Conflict { .. })) => {
                    tracing::info!(
                        configmap = %self.label,
                        attempt,
                        "the policy ConfigMap changed while being written; reading it again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::from(ConfigMapError::Conflict {
            configmap: self.label.clone(),
            attempts: MAX_ATTEMPTS,
        }))
    }

    /// One attempt of [`PolicyConfigMap::push`] on the version `snapshot` read: creates
    /// the ConfigMap when it did not exist, does nothing when the key already holds these
    /// bytes, else puts the candidate under the key and the module it replaces under
    /// `<key>.previous` (removing `<key>.previous` when the key was empty), with the
    /// annotations. The write is conditional on the snapshot's `resourceVersion`.
    ///
    /// # Errors
    /// [`ConfigMapError::Conflict`] when the ConfigMap changed (or was created) since the
    /// snapshot; [`Error::Kube`] for any other API error.
    pub async fn write(
        &self,
        runtime: &Runtime,
        snapshot: &Snapshot,
        candidate: &Candidate,
    ) -> Result<Published> {
        let live = snapshot.bytes(&self.key);
        let same_signature =
            snapshot.bytes(&signature_key(&self.key)) == candidate.signature.as_deref();
        let previous = match live {
            Some(bytes) if Sha256::of(bytes) == candidate.id.sha256 && same_signature => {
                let previous = match snapshot.bytes(&self.previous_key) {
                    Some(bytes) => Some(
                        self.identify(runtime, bytes, snapshot.annotation(&self.previous_key))
                            .await,
                    ),
                    None => None,
                };
                return Ok(Published {
                    action: Action::Unchanged,
                    live: candidate.id.clone(),
                    previous,
                    resource_version: snapshot.resource_version().map(str::to_string),
                    attempts: 1,
                });
            }
            // The same module with a new signature: only the signature changes.
            Some(bytes) if Sha256::of(bytes) == candidate.id.sha256 => {
                self.stored(runtime, snapshot, &self.previous_key).await
            }
            Some(_) => self.stored(runtime, snapshot, &self.key).await,
            None => None,
        };
        let action = if snapshot.configmap.is_some() {
            Action::Pushed
        } else {
            Action::Created
        };
        self.store(snapshot, candidate, previous, action).await
    }

    /// Swaps the live and the previous modules, after validating the previous one as a
    /// hot swap would. One attempt: a ConfigMap changed since it was read is left alone
    /// ([`ConfigMapError::Conflict`]), since rolling back someone else's new push would surprise.
    ///
    /// # Errors
    /// [`ConfigMapError::NoConfigMap`]; [`ConfigMapError::NoPreviousModule`] when `<key>.previous` is
    /// missing; the previous module's validation error ([`Error::is_module_fault`]),
    /// with nothing written; [`ConfigMapError::Conflict`]; [`Error::Kube`].
    pub async fn rollback(&self, runtime: &Runtime) -> Result<Published> {
        let snapshot = self.read().await?;
        if snapshot.configmap.is_none() {
            return Err(Error::from(ConfigMapError::NoConfigMap {
                configmap: self.label.clone(),
            }));
        }
        let Some(previous) = snapshot.bytes(&self.previous_key) else {
            return Err(Error::from(ConfigMapError::NoPreviousModule {
                configmap: self.label.clone(),
                key: self.key.clone(),
                previous_key: self.previous_key.clone(),
            }));
        };
        let (runtime_copy, bytes) = (runtime.clone(), previous.to_vec());
        let mut candidate = self
            .blocking(move || Candidate::validate(&runtime_copy, bytes))
            .await??;
        candidate.signature = snapshot
            .bytes(&signature_key(&self.previous_key))
            .map(<[u8]>::to_vec);
        let replaced = self.stored(runtime, &snapshot, &self.key).await;
        self.store(&snapshot, &candidate, replaced, Action::RolledBack)
            .await
    }

    /// The module the snapshot holds under `key`, to be kept under `<key>.previous` by
    /// [`Self::store`]: its bytes, its identity (from its annotation, else by loading it) and
    /// its signature (`<key>.sig`). `None` when the key holds nothing.
    async fn stored(&self, runtime: &Runtime, snapshot: &Snapshot, key: &str) -> Option<Stored> {
        let bytes = snapshot.bytes(key)?;
        Some(Stored {
            bytes: bytes.to_vec(),
            id: self
                .identify(runtime, bytes, snapshot.annotation(key))
                .await,
            signature: snapshot.bytes(&signature_key(key)).map(<[u8]>::to_vec),
        })
    }

    /// Writes `candidate` under the key and `previous` (or nothing) under
    /// `<key>.previous`, each with its signature under `.sig` when it has one,
    /// conditional on the snapshot's version.
    async fn store(
        &self,
        snapshot: &Snapshot,
        candidate: &Candidate,
        previous: Option<Stored>,
        action: Action,
    ) -> Result<Published> {
        let mut configmap = snapshot.configmap.clone().unwrap_or_else(|| ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        });
        let data = configmap.binary_data.get_or_insert_with(BTreeMap::new);
        let notes = configmap
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        data.insert(self.key.clone(), ByteString(candidate.bytes.clone()));
        notes.insert(annotation(&self.key), candidate.id.to_json().to_string());
        let set = |data: &mut BTreeMap<String, ByteString>, key: String, value: Option<Vec<u8>>| {
            match value {
                Some(value) => data.insert(key, ByteString(value)),
                None => data.remove(&key),
            };
        };
        set(data, signature_key(&self.key), candidate.signature.clone());
        let previous_id = match previous {
            Some(Stored {
                bytes,
                id,
                signature,
            }) => {
                data.insert(self.previous_key.clone(), ByteString(bytes));
                notes.insert(annotation(&self.previous_key), id.to_json().to_string());
                set(data, signature_key(&self.previous_key), signature);
                Some(id)
            }
            None => {
                data.remove(&self.previous_key);
                set(data, signature_key(&self.previous_key), None);
                notes.remove(&annotation(&self.previous_key));
                None
            }
        };
        // A signature left in `data` by hand would shadow none of these: the source reads
        // `binaryData` first.
        let params = PostParams {
            field_manager: Some("sidekill".into()),
            ..PostParams::default()
        };
        // The snapshot's resourceVersion travels in the object: the API server applies
        // the update only to that version (and a create only where nothing exists).
        let written = if snapshot.configmap.is_some() {
            self.api.replace(&self.name, &params, &configmap).await
        } else {
            self.api.create(&params, &configmap).await
        };
        let written = match written {
            Ok(written) => written,
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                return Err(Error::from(ConfigMapError::Conflict {
                    configmap: self.label.clone(),
                    attempts: 1,
                }))
            }
            Err(e) if snapshot.configmap.is_some() => return Err(self.kube("replace it")(e)),
            Err(e) => return Err(self.kube("create it")(e)),
        };
        tracing::info!(
            event = action.as_str(),
            configmap = %self.label,
            key = %self.key,
            live = %candidate.id,
            previous = previous_id.as_ref().map(ToString::to_string),
            "policy ConfigMap written"
        );
        Ok(Published {
            action,
            live: candidate.id.clone(),
            previous: previous_id,
            resource_version: written.metadata.resource_version,
            attempts: 1,
        })
    }

    /// Who the module under a key is: from its annotation when that is about these very
    /// bytes, else by loading it (`name` and `version` are `None` when it does not load).
    async fn identify(&self, runtime: &Runtime, bytes: &[u8], note: Option<&String>) -> ModuleId {
        if let Some(id) = ModuleId::from_annotation(note, bytes) {
            return id;
        }
        let (runtime, bytes) = (runtime.clone(), bytes.to_vec());
        let size = bytes.len();
        let sha256 = Sha256::of(&bytes);
        let loaded = self
            .blocking(move || runtime.load(&bytes).map(|p| ModuleId::of(&p, size)))
            .await;
        match loaded {
            Ok(Ok(id)) => id,
            _ => ModuleId {
                name: None,
                version: None,
                sha256,
                size,
            },
        }
    }

    /// Runs compilation work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        match tokio::task::spawn_blocking(work).await {
            Ok(value) => Ok(value),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => Err(Error::Kube {
                    configmap: self.label.clone(),
                    action: "validate a module (the async runtime is shutting down)",
                    source: Box::new(e),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn an_annotation_identifies_only_the_bytes_it_names() {
        let bytes = b"module";
        let id = ModuleId {
            name: Some("p".into()),
            version: Some("1".into()),
            sha256: Sha256::of(bytes),
            size: bytes.len(),
        };
        let note = id.to_json().to_string();
        assert_eq!(ModuleId::from_annotation(Some(&note), bytes), Some(id));
        assert_eq!(ModuleId::from_annotation(Some(&note), b"other"), None);
        assert_eq!(
            ModuleId::from_annotation(Some(&"{".to_string()), bytes),
            None
        );
        assert_eq!(ModuleId::from_annotation(None, bytes), None);
    }
}
