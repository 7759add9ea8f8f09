//! The node agent: runs each pod's containers as real process trees and writes their status back
//! to the store, as the kubelet does.
//!
//! Order of a pod's life: regular init containers run one at a time to completion; native
//! sidecars (init containers with `restartPolicy: Always`) start in their place and keep running
//! (restarted when they exit); then every regular container starts. When every regular container
//! has finished for good, the sidecars are stopped in reverse order (SIGTERM, then SIGKILL after
//! the grace period), and the phase becomes Succeeded or Failed by the kubelet's own rules.
//!
//! Deleting a pod stops its regular containers together, then its sidecars in reverse order, each
//! with SIGTERM and, after the grace period, SIGKILL; then the object is removed (DELETED event).
//! A grace period of 0 removes the object at once and SIGKILLs in the background, as a forced
//! deletion does.
//!
//! Signals from the server come from outside the container's PID namespace, so the kernel's rule
//! for PID 1 applies as on a real node: SIGTERM reaches PID 1 only if it has a handler; SIGKILL
//! always does.
//!
//! Spec changes reach the node through [`Kubelet::updated`], as a pod update reaches the real
//! kubelet through its watch:
//! - **An image change** of a running container is a changed container hash
//!   (k8s.io/kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go `computePodActions`:
//!   "Container C definition changed, will be restarted", whatever the restart policy). The old
//!   instance is stopped from outside (`killContainer` in kuberuntime_container.go: SIGTERM,
//!   the pod's `terminationGracePeriodSeconds` but at least `minimumGracePeriodInSeconds`, 2 s,
//!   then SIGKILL); its end becomes `lastState.terminated`, `restartCount` grows, and the new
//!   image starts at once with the same command, args and env, under a new `containerID`.
//!   A container that is not running takes the new image at its next start. When `command[0]`
//!   is not in the new image the start fails as containerd's does: `terminated`, exit code 128,
//!   reason `StartError`, a message naming the file.
//! - **A new ephemeral container** is started once and never restarted, in the PID namespace
//!   of its `targetContainerName` (containerd's `NamespaceMode_TARGET`), with its own image's
//!   root; its status is in `status.ephemeralContainerStatuses`. Without a target it gets a PID
//!   namespace of its own. If the target is not running it stays `Waiting`
//!   (`CreateContainerError`). A pod that has finished or is being deleted starts none.

mod container;
mod ephemeral;
mod pod;
mod status;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use rustix::process::Signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::images::{Catalogue, Image};
use crate::kinds::NODE_NAME;
use crate::process::{self, Spawner, Tools};
use crate::status::ApiError;
use crate::store::{now, Key, Store};

use self::ephemeral::run_ephemeral;
use self::pod::run_pod;

/// What a running container offers to `exec`.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// Host PID of the container's PID 1.
    pub pid1: i32,
    /// Host PID of its `unshare` launcher.
    pub launcher: i32,
    /// The image it runs.
    pub image: Arc<Image>,
    /// Its environment.
    pub env: Vec<(String, String)>,
}

/// Per-pod runtime state.
struct PodRuntime {
    key: Key,
    uid: String,
    dir: PathBuf,
    slots: Mutex<HashMap<String, Slot>>,
    /// `Some(grace)` once deletion was asked for.
    delete_tx: watch::Sender<Option<Duration>>,
    /// Set when no container will run again: the phase may turn terminal.
    terminal: AtomicBool,
    /// Set when the pod task has returned.
    finished: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The pod as last stored: image swaps reach the supervisors through it.
    spec_tx: watch::Sender<Arc<Pod>>,
    /// Ephemeral containers already started (each runs once, never again).
    ephemerals: Mutex<HashSet<String>>,
}

struct Inner {
    tools: Tools,
    spawner: Spawner,
    images: Catalogue,
    state_dir: PathBuf,
    pods: Arc<Store<Pod>>,
    events: Arc<Store<Event>>,
    runtimes: Mutex<HashMap<Key, Arc<PodRuntime>>>,
    backoff: Duration,
}

/// The node agent.
#[derive(Clone)]
pub(crate) struct Kubelet {
    inner: Arc<Inner>,
}

/// Why an exec could not start.
#[derive(Debug)]
pub(crate) enum ExecFailure {
    /// The container has no running process.
    NotRunning,
    /// argv\[0\] does not resolve inside the container.
    NotFound { program: String },
    /// Spawning nsenter failed.
    Spawn(std::io::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event name as the kubelet makes them: the pod's name and the time in hex nanoseconds.
fn event_name(pod: &str) -> String {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    let n = if now > prev {
        now
    } else {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    };
    format!("{pod}.{n:x}")
}

fn hex_id() -> String {
    let a = crate::store::new_uid().replace('-', "");
    let b = crate::store::new_uid().replace('-', "");
    format!("{a}{b}")
}

/// The pod IP every pod reports: containers share the machine's network namespace, and a
/// caller counts as inside the pod when it connects to 127.0.0.1 (see the crate docs).
pub(crate) const POD_IP: &str = "127.0.0.2";

/// The kubelet's `minimumGracePeriodInSeconds` (pkg/kubelet/kuberuntime/kuberuntime_container.go
/// `killContainer`): a container it stops always gets at least this long after SIGTERM.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// An `imageID` as the kubelet reports it, a repository digest: the image's full name and a
/// sha256 of that name (the stand-ins have no manifest to hash).
fn image_id(name: &str) -> String {
    use sha2::Digest;
    let first = name.split('/').next().unwrap_or("");
    let full = if !name.contains('/') {
        format!("docker.io/library/{name}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        name.to_owned()
    } else {
        format!("docker.io/{name}")
    };
    let digest = sha2::Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{full}@sha256:{hex}")
}

impl Kubelet {
    /// A node agent over `pods`, writing events to `events`.
    pub fn new(
        tools: Tools,
        spawner: Spawner,
        images: Catalogue,
        state_dir: PathBuf,
        pods: Arc<Store<Pod>>,
        events: Arc<Store<Event>>,
        backoff: Duration,
    ) -> Self {
        Kubelet {
            inner: Arc::new(Inner {
                tools,
                spawner,
                images,
                state_dir,
                pods,
                events,
                runtimes: Mutex::new(HashMap::new()),
                backoff,
            }),
        }
    }

    /// Starts running a newly created pod, when it is bound to this node: a kubelet runs only
    /// the pods whose spec.nodeName is its own (pkg/kubelet/config/apiserver.go
    /// NewSourceApiserver watches pods with the field selector spec.nodeName=<node>). A pod
    /// bound elsewhere stays as created, its status written by whoever writes it (a test,
    /// through the status subresource), and none of its containers runs.
    pub fn admit(&self, pod: &Pod) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node.is_some_and(|n| n != NODE_NAME) {
            return;
        }
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = self
            .inner
            .state_dir
            .join("pods")
            .join(format!("{}_{}_{}", key.0, key.1, uid));
        let _ = std::fs::create_dir_all(&dir);
        let (delete_tx, _) = watch::channel(None);
        let (spec_tx, _) = watch::channel(Arc::new(pod.clone()));
        let rt = Arc::new(PodRuntime {
            key: key.clone(),
            uid,
            dir,
            slots: Mutex::new(HashMap::new()),
            delete_tx,
            terminal: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            task: Mutex::new(None),
            spec_tx,
            ephemerals: Mutex::new(HashSet::new()),
        });
        lock(&self.inner.runtimes).insert(key, rt.clone());
        let inner = self.inner.clone();
        let pod = pod.clone();
        let rt2 = rt.clone();
        let handle = tokio::spawn(async move {
            run_pod(inner.clone(), rt2.clone(), pod).await;
            rt2.finished.store(true, Ordering::SeqCst);
            let mut map = lock(&inner.runtimes);
            if map.get(&rt2.key).is_some_and(|cur| Arc::ptr_eq(cur, &rt2)) {
                map.remove(&rt2.key);
            }
        });
        *lock(&rt.task) = Some(handle);
    }

    /// Deletes a pod gracefully (see the module docs). Returns the object as the API answers a
    /// DELETE: with `deletionTimestamp` set while the pod terminates.
    pub fn delete(&self, namespace: &str, name: &str, grace: Option<i64>) -> Result<Pod, ApiError> {
        let pod = self
            .inner
            .pods
            .get(namespace, name)
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        let default_grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = grace.unwrap_or(default_grace).max(0);
        let rt = lock(&self.inner.runtimes)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        match rt {
            Some(rt) if grace > 0 && !rt.finished.load(Ordering::SeqCst) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return Ok(pod);
                }
                let updated = self.inner.pods.update(namespace, name, |p| {
                    p.metadata.deletion_timestamp = Some(now());
                    p.metadata.deletion_grace_period_seconds = Some(grace);
                    Ok(())
                })?;
                let _ = rt
                    .delete_tx
                    .send(Some(Duration::from_secs(grace.unsigned_abs())));
                Ok(updated)
            }
            Some(rt) => {
                // Forced (grace 0), or the pod task is done: the object goes at once.
                let _ = rt.delete_tx.send(Some(Duration::ZERO));
                self.inner.pods.delete(namespace, name)
            }
            None => self.inner.pods.delete(namespace, name),
        }
    }

    /// Takes a stored change of a pod's spec (an update of the pod, or of its ephemeral
    /// containers): a running container whose image changed is restarted with the new one, and
    /// each new ephemeral container is started (see the module docs). A pod this node does not
    /// run, or an older pod of the same name, is ignored.
    pub fn updated(&self, pod: &Pod) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let Some(rt) = lock(&self.inner.runtimes).get(&key).cloned() else {
            return;
        };
        if pod.metadata.uid.as_deref() != Some(rt.uid.as_str()) {
            return;
        }
        rt.spec_tx.send_replace(Arc::new(pod.clone()));
        for ec in pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default()
        {
            if !lock(&rt.ephemerals).insert(ec.name.clone()) {
                continue;
            }
            // The kubelet starts no container in a pod that has finished or is being deleted.
            if rt.terminal.load(Ordering::SeqCst)
                || rt.finished.load(Ordering::SeqCst)
                || rt.delete_tx.borrow().is_some()
            {
                continue;
            }
            tokio::spawn(run_ephemeral(self.inner.clone(), rt.clone(), ec));
        }
    }

    /// The running process of a container, for exec.
    pub fn slot(&self, namespace: &str, pod: &str, container: &str) -> Option<Slot> {
        let rt = lock(&self.inner.runtimes)
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()?;
        let slot = lock(&rt.slots).get(container).cloned()?;
        process::alive(slot.pid1).then_some(slot)
    }

    /// Sends `sig` to a container's PID 1 from outside its namespace (what `kill` on the node does).
    pub fn signal_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        sig: Signal,
    ) -> bool {
        match self.slot(namespace, pod, container) {
            Some(s) => {
                process::signal(s.pid1, sig);
                true
            }
            None => false,
        }
    }

    /// Starts `argv` in a running container with piped streams (`kubectl exec`).
    pub async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
        stdin: bool,
    ) -> Result<tokio::process::Child, ExecFailure> {
        let slot = self
            .slot(namespace, pod, container)
            .ok_or(ExecFailure::NotRunning)?;
        let program = argv.first().cloned().unwrap_or_default();
        let path = slot
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        if slot.image.resolve(&program, path).is_none() {
            return Err(ExecFailure::NotFound { program });
        }
        process::exec(
            &self.inner.tools,
            &self.inner.spawner,
            process::ExecSpec {
                pid1: slot.pid1,
                argv,
                env: &slot.env,
                chroot: slot.image.root.is_some(),
                stdin,
            },
        )
        .await
        .map_err(ExecFailure::Spawn)
    }

    /// The log of a container (its stdout and stderr), without the launcher's own lines.
    pub fn logs(&self, namespace: &str, pod: &Pod, container: &str) -> Option<String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let path = self
            .inner
            .state_dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"))
            .join(format!("{container}.log"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(
            text.lines()
                .filter(|l| !process::is_launcher_noise(l))
                .map(|l| format!("{l}\n"))
                .collect(),
        )
    }

    /// The images this node can run.
    pub fn images(&self) -> &Catalogue {
        &self.inner.images
    }

    /// Stops every pod with SIGKILL and waits (up to `limit`) for their tasks to record it.
    pub async fn shutdown(&self, limit: Duration) {
        let rts: Vec<Arc<PodRuntime>> = lock(&self.inner.runtimes).values().cloned().collect();
        for rt in &rts {
            let _ = rt.delete_tx.send(Some(Duration::ZERO));
        }
        // Pods already terminating wait out their own grace period: SIGKILL them now.
        self.signal_all(Signal::KILL);
        let handles: Vec<JoinHandle<()>> =
            rts.iter().filter_map(|rt| lock(&rt.task).take()).collect();
        let _ = tokio::time::timeout(limit, async {
            for h in handles {
                let _ = h.await;
            }
        })
        .await;
        self.kill_all_now();
    }

    fn signal_all(&self, sig: Signal) {
        let rts: Vec<Arc<PodRuntime>> = lock(&self.inner.runtimes).values().cloned().collect();
        for rt in rts {
            for slot in lock(&rt.slots).values() {
                process::signal(slot.pid1, sig);
            }
        }
    }

    /// SIGKILLs every known container process at once, without waiting (for `Drop`).
    pub fn kill_all_now(&self) {
        let rts: Vec<Arc<PodRuntime>> = lock(&self.inner.runtimes).values().cloned().collect();
        for rt in rts {
            for slot in lock(&rt.slots).values() {
                process::signal(slot.pid1, Signal::KILL);
                process::signal(slot.launcher, Signal::KILL);
            }
            if let Some(h) = lock(&rt.task).take() {
                h.abort();
            }
        }
    }
}
