//! Pods being worked on, as the controller's own watchers see them: the executor reads and
//! waits on these instead of a GET and a watch of its own per pod (issue #16: what a
//! controller costs the API server is requests per pod).
//!
//! - **Only pods in work.** A worker registers the pod it takes ([`PodCache::working`]) and the
//!   entry goes when the worker is done: the cache holds at most one pod per worker, never the
//!   cluster's pods (a 10,000-pod backlog stays a queue of names).
//! - **Fed by the watch, and by the executor's own writes.** The controller passes every
//!   version its watchers see ([`PodCache::seen`]); a write the executor makes stores the
//!   version the API server answered, so the executor never reads a version older than its
//!   own last write (its records are what keep a step from running twice).
//! - **Never trusted for a write.** A record is written with the cached version's
//!   `resourceVersion` as a precondition: a stale cache costs a 409 and a fresh read, never a
//!   lost or misplaced write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

/// A pod's namespace and name.
type Key = (String, String);

/// What a wait hears about a pod in work.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// A newer version.
    Applied(Arc<Pod>),
    /// Deleted.
    Deleted(Key),
}

/// The pods in work. Shared by the controller (which feeds it) and its executor.
#[derive(Debug)]
pub struct PodCache {
    /// Per pod in work: its latest version, once one is known.
    pods: Mutex<HashMap<Key, Option<Arc<Pod>>>>,
    changes: broadcast::Sender<Change>,
}

impl Default for PodCache {
    fn default() -> Self {
        PodCache {
            pods: Mutex::new(HashMap::new()),
            // Waits are few (one per worker) and quick to read; one that falls behind reads
            // the pod again.
            changes: broadcast::channel(256).0,
        }
    }
}

/// Registration of a pod in work; the entry goes with it.
#[derive(Debug)]
pub struct Working {
    cache: Arc<PodCache>,
    key: Key,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.cache.lock().remove(&self.key);
    }
}

fn key_of(pod: &Pod) -> Option<Key> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}

/// Whether `new` is not older than `old`. Resource versions are opaque to clients, but the
/// executor compares only versions of one object from one API server, which are etcd
/// revisions (integers); anything else counts as newer, as a watch event would.
fn not_older(new: &Pod, old: &Pod) -> bool {
    let version = |p: &Pod| {
        p.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (version(new), version(old)) {
        (Some(n), Some(o)) => n >= o,
        _ => true,
    }
}

impl PodCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Option<Arc<Pod>>>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `namespace/name` as in work until the returned guard is dropped.
    pub fn working(self: &Arc<Self>, namespace: &str, name: &str) -> Working {
        let key = (namespace.to_owned(), name.to_owned());
        self.lock().entry(key.clone()).or_insert(None);
        Working {
            cache: Arc::clone(self),
            key,
        }
    }

    /// A version of a pod, from a watch or a write's answer: kept when the pod is in work and
    /// the version is not older than the one kept.
    pub fn seen(&self, pod: &Pod) {
        let Some(key) = key_of(pod) else {
            return;
        };
        let pod = {
            let mut pods = self.lock();
            let Some(slot) = pods.get_mut(&key) else {
                return;
            };
            if slot.as_deref().is_some_and(|old| !not_older(pod, old)) {
                return;
            }
            let pod = Arc::new(pod.clone());
            *slot = Some(Arc::clone(&pod));
            pod
        };
        // Nobody waiting is fine.
        let _ = self.changes.send(Change::Applied(pod));
    }

    /// A pod was deleted.
    pub fn deleted(&self, pod: &Pod) {
        let Some(key) = key_of(pod) else {
            return;
        };
        if let Some(slot) = self.lock().get_mut(&key) {
            *slot = None;
            let _ = self.changes.send(Change::Deleted(key));
        }
    }

    /// The latest version of a pod in work, when one is known.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.lock()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .flatten()
    }

    /// Whether the pod is in work (its versions come here).
    pub(super) fn in_work(&self, namespace: &str, name: &str) -> bool {
        self.lock()
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// Changes from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, rv: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {
            "namespace": "n", "name": name, "resourceVersion": rv
        }}))
        .expect("pod")
    }

    #[test]
    fn only_pods_in_work_are_kept_and_never_an_older_version() {
        let cache = Arc::new(PodCache::default());
        cache.seen(&pod("a", "5"));
        assert!(cache.get("n", "a").is_none(), "not in work");
        let working = cache.working("n", "a");
        cache.seen(&pod("a", "7"));
        cache.seen(&pod("a", "6"));
        let kept = cache.get("n", "a").expect("kept");
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("7"));
        drop(working);
        assert!(cache.get("n", "a").is_none() && !cache.in_work("n", "a"));
    }
}
