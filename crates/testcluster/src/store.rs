//! The object store: one per kind, sharing one global resource-version counter as etcd does.
//!
//! Every change gets the next resource version, is kept in a bounded history (so a watch can
//! resume from an older version) and is broadcast to live watches. A watch that asks for a version
//! older than the history holds is answered `410 Expired`, as the real watch cache does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::status::ApiError;

/// What the store needs of an object type: one of k8s-openapi's namespaced resources.
pub(crate) trait ApiObject:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Clone
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<T> ApiObject for T where
    T: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Clone
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

/// The type of a change, as a watch event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One change to one object.
#[derive(Debug, Clone)]
pub(crate) struct Change<K> {
    /// The resource version the change got.
    pub rv: u64,
    /// Added, modified or deleted.
    pub kind: ChangeType,
    /// The object after the change (for a deletion: the last state, with the deletion's version).
    pub object: K,
    /// The object before the change, so a filtered watch can tell an object leaving its filter.
    pub previous: Option<K>,
}

struct Inner<K> {
    objects: BTreeMap<Key, K>,
    history: VecDeque<Arc<Change<K>>>,
    /// Changes at or below this version are no longer in `history`.
    floor: u64,
    /// Versions below this one are compacted away: a continue token naming one is too old.
    compacted: u64,
    /// The last compaction tick, and the version then (the next tick compacts to it).
    tick: (std::time::Instant, u64),
}

/// How often the API server compacts etcd (`--etcd-compaction-interval`, default 5 min):
/// each time to the revision of the tick before (k8s.io/apiserver storage/etcd3 compact.go).
/// A list's continue token stays valid until its version is compacted, however many changes
/// happen meanwhile (storage/etcd3 store.go GetList answers 410 only for a compacted one).
const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// A store of one kind.
pub(crate) struct Store<K> {
    inner: Mutex<Inner<K>>,
    rv: Arc<AtomicU64>,
    tx: broadcast::Sender<Arc<Change<K>>>,
    limit: usize,
}

/// Where a watch starts.
pub(crate) struct WatchStart<K> {
    /// Changes to send first (replayed history, or synthetic ADDED events for the current state).
    pub replay: Vec<Arc<Change<K>>>,
    /// Live changes after those.
    pub rx: broadcast::Receiver<Arc<Change<K>>>,
    /// The version the store was at when the watch started.
    pub rv: u64,
}

pub(crate) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn key_of<K: ApiObject>(obj: &K) -> Key {
    let m = obj.metadata();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl<K: ApiObject> Store<K> {
    /// A new, empty store using the shared counter `rv` and keeping `limit` changes of history.
    pub fn new(rv: Arc<AtomicU64>, limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let floor = rv.load(Ordering::SeqCst);
        Store {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor,
                compacted: floor,
                tick: (std::time::Instant::now(), floor),
            }),
            rv,
            tx,
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // A panic while holding the lock leaves consistent data (every mutation is a whole
        // replace), so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current global resource version.
    pub fn current_rv(&self) -> u64 {
        self.rv.load(Ordering::SeqCst)
    }

    fn record(&self, inner: &mut Inner<K>, change: Change<K>) {
        let change = Arc::new(change);
        inner.history.push_back(change.clone());
        while inner.history.len() > self.limit {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.rv;
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    fn next_rv(&self) -> u64 {
        self.rv.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Stores a new object. Fails with `AlreadyExists` when the name is taken.
    pub fn create(&self, mut obj: K) -> Result<K, ApiError> {
        let mut inner = self.lock();
        let key = key_of(&obj);
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(K::URL_PATH_SEGMENT, &key.1));
        }
        let rv = self.next_rv();
        let meta = obj.metadata_mut();
        meta.resource_version = Some(rv.to_string());
        meta.uid.get_or_insert_with(new_uid);
        meta.creation_timestamp.get_or_insert_with(now);
        inner.objects.insert(key, obj.clone());
        self.record(
            &mut inner,
            Change {
                rv,
                kind: ChangeType::Added,
                object: obj.clone(),
                previous: None,
            },
        );
        Ok(obj)
    }

    /// The object with this key.
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        self.lock()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The objects (in one namespace, or all) for which `pred` holds, sorted by namespace and
    /// name, and the version of this snapshot. Only those are cloned: a list that keeps one pod
    /// of a thousand (as a watch of one pod starts) must not copy the other 999.
    pub fn list(&self, namespace: Option<&str>, pred: impl Fn(&K) -> bool) -> (Vec<K>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((ns, _), o)| namespace.is_none_or(|want| want == ns) && pred(o))
            .map(|(_, o)| o.clone())
            .collect();
        (items, self.current_rv())
    }

    /// Changes an object in place. `f` may refuse the change; a change that leaves the object as
    /// it was is not recorded (no new version, no event), as the real API does for no-op updates.
    pub fn update<F>(&self, namespace: &str, name: &str, f: F) -> Result<K, ApiError>
    where
        F: FnOnce(&mut K) -> Result<(), ApiError>,
    {
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(old) = inner.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(K::URL_PATH_SEGMENT, name));
        };
        let mut new = old.clone();
        f(&mut new)?;
        {
            // Identity fields are the server's.
            let (om, nm) = (old.metadata(), new.metadata_mut());
            nm.name = om.name.clone();
            nm.namespace = om.namespace.clone();
            nm.uid = om.uid.clone();
            nm.creation_timestamp = om.creation_timestamp.clone();
            nm.resource_version = om.resource_version.clone();
            // Only the server moves the generation, by one on a spec change (the pod
            // strategy bumps it before this point); anything else a client sent is dropped.
            if nm.generation != om.generation.map(|g| g + 1) {
                nm.generation = om.generation;
            }
        }
        if same_json(&old, &new) {
            return Ok(old);
        }
        let rv = self.next_rv();
        new.metadata_mut().resource_version = Some(rv.to_string());
        inner.objects.insert(key, new.clone());
        self.record(
            &mut inner,
            Change {
                rv,
                kind: ChangeType::Modified,
                object: new.clone(),
                previous: Some(old),
            },
        );
        Ok(new)
    }

    /// Removes an object; the DELETED event carries a new version.
    pub fn delete(&self, namespace: &str, name: &str) -> Result<K, ApiError> {
        self.delete_if(namespace, name, |_| true)
    }

    /// Removes an object if `pred` holds for it.
    pub fn delete_if(
        &self,
        namespace: &str,
        name: &str,
        pred: impl FnOnce(&K) -> bool,
    ) -> Result<K, ApiError> {
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if !inner.objects.get(&key).is_some_and(pred) {
            return Err(ApiError::not_found(K::URL_PATH_SEGMENT, name));
        }
        let Some(mut obj) = inner.objects.remove(&key) else {
            return Err(ApiError::not_found(K::URL_PATH_SEGMENT, name));
        };
        let previous = obj.clone();
        let rv = self.next_rv();
        obj.metadata_mut().resource_version = Some(rv.to_string());
        self.record(
            &mut inner,
            Change {
                rv,
                kind: ChangeType::Deleted,
                object: obj.clone(),
                previous: Some(previous),
            },
        );
        Ok(obj)
    }

    /// Starts a watch. `from`: `None` starts with synthetic ADDED events for every current object
    /// (the API's "get state and start at most recent"); `Some(v)` replays the changes after `v`,
    /// or fails with `410 Expired` when history no longer holds them.
    pub fn watch(
        &self,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart<K>, ApiError> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let current = self.current_rv();
        let in_ns =
            |c: &K| namespace.is_none_or(|ns| c.metadata().namespace.as_deref() == Some(ns));
        let replay = match from {
            None => inner
                .objects
                .values()
                .filter(|o| in_ns(o))
                .map(|o| {
                    Arc::new(Change {
                        rv: o
                            .metadata()
                            .resource_version
                            .as_deref()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        kind: ChangeType::Added,
                        object: o.clone(),
                        previous: None,
                    })
                })
                .collect(),
            Some(v) if v < inner.floor => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {v} ({})",
                    inner.floor
                )));
            }
            Some(v) => inner
                .history
                .iter()
                .filter(|c| c.rv > v && in_ns(&c.object))
                .cloned()
                .collect(),
        };
        Ok(WatchStart {
            replay,
            rx,
            rv: current,
        })
    }

    /// Takes every change already queued for `rx` and the current version: with this store's
    /// lock held, every change of this kind up to that version has been queued, so a bookmark may
    /// name it once the returned changes are delivered.
    pub fn drain(
        &self,
        rx: &mut broadcast::Receiver<Arc<Change<K>>>,
    ) -> (Vec<Arc<Change<K>>>, u64) {
        let _inner = self.lock();
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.push(c);
        }
        (out, self.current_rv())
    }

    /// The oldest version a list's continue token may name (older ones are compacted).
    pub fn compacted(&self) -> u64 {
        let current = self.current_rv();
        let mut inner = self.lock();
        while inner.tick.0.elapsed() >= COMPACTION_INTERVAL {
            inner.compacted = inner.tick.1;
            inner.tick = (inner.tick.0 + COMPACTION_INTERVAL, current);
        }
        inner.compacted
    }
}

fn same_json<K: Serialize>(a: &K, b: &K) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A random RFC 4122 version-4 UID, from the kernel's random source.
pub(crate) fn new_uid() -> String {
    let mut b = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !filled {
        // Fall back to the clock and a counter: unique within the process, which is all a test
        // cluster needs.
        static N: AtomicU64 = AtomicU64::new(0);
        let t = jiff::Timestamp::now().as_nanosecond() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn versions_grow_and_history_is_bounded() {
        let s: Store<ConfigMap> = Store::new(Arc::new(AtomicU64::new(0)), 2);
        s.create(cm("a")).unwrap();
        s.create(cm("b")).unwrap();
        s.create(cm("c")).unwrap();
        assert_eq!(s.current_rv(), 3);
        assert!(
            s.watch(None, Some(0)).is_err(),
            "version 0 is out of the history"
        );
        // A list's continue token outlives the watch history: only compaction ends it.
        assert_eq!(s.compacted(), 0);
        let w = s.watch(None, Some(1)).unwrap();
        assert_eq!(w.replay.len(), 2);
        let err = s.watch(None, Some(0)).err().unwrap();
        assert_eq!(err.code, 410);
        assert_eq!(err.message, "too old resource version: 0 (1)");
    }

    #[test]
    fn no_op_update_keeps_the_version() {
        let s: Store<ConfigMap> = Store::new(Arc::new(AtomicU64::new(0)), 10);
        s.create(cm("a")).unwrap();
        let same = s.update("default", "a", |_| Ok(())).unwrap();
        assert_eq!(same.metadata.resource_version.as_deref(), Some("1"));
        let changed = s
            .update("default", "a", |c| {
                c.data = Some([("k".to_string(), "v".to_string())].into());
                Ok(())
            })
            .unwrap();
        assert_eq!(changed.metadata.resource_version.as_deref(), Some("2"));
        let gone = s.delete("default", "a").unwrap();
        assert_eq!(gone.metadata.resource_version.as_deref(), Some("3"));
        assert_eq!(s.delete("default", "a").unwrap_err().code, 404);
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
