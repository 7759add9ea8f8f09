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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EphemeralContainer, Event, EventSource,
    ObjectReference, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustix::process::Signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::images::{Catalogue, Image};
use crate::kinds::{is_sidecar, NODE_NAME};
use crate::process::{self, Exit, LaunchSpec, Spawner, Tools};
use crate::status::ApiError;
use crate::store::{now, Key, Store};

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

/// The container of that name in the pod's spec (init or regular).
fn container_spec(pod: &Pod, name: &str, init: bool) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        spec.containers.as_slice()
    };
    list.iter().find(|c| c.name == name).cloned()
}

/// Returns once the stored spec gives container `c` another image (never if the pod's
/// runtime goes away).
async fn image_changed(spec_rx: &mut watch::Receiver<Arc<Pod>>, c: &Container, init: bool) {
    loop {
        if spec_rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let latest = spec_rx.borrow_and_update().clone();
        if container_spec(&latest, &c.name, init).is_some_and(|n| n.image != c.image) {
            return;
        }
    }
}

/// How a container's exit decides a restart, as the kubelet decides it (k8s.io/kubernetes
/// v1.37.2 pkg/kubelet/container/helpers.go ShouldContainerBeRestarted: `Never` never,
/// `OnFailure` unless the exit code is 0, `Always` always). While it backs off the container is
/// `Waiting` with reason `CrashLoopBackOff` and the message of
/// pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, its end kept in `lastState`, and
/// `restartCount` grows when the next instance starts. The kubelet's back-off starts at 10 s
/// and doubles up to MaxCrashLoopBackOff, 5 min (pkg/kubelet/kubelet.go); here it is
/// `restart_backoff` (1 s), doubling up to 8 times that, so tests see a restart in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    fn from_policy(p: Option<&str>) -> Restart {
        match p {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    fn again(self, code: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => code != 0,
            Restart::Never => false,
        }
    }
}

/// One supervised container.
struct Supervisor {
    name: String,
    stop_tx: watch::Sender<Option<Duration>>,
    started_rx: watch::Receiver<bool>,
    handle: Option<JoinHandle<i32>>,
    result: Option<i32>,
}

impl Supervisor {
    async fn join(&mut self) -> i32 {
        if let Some(r) = self.result {
            return r;
        }
        // Await the handle in place: a join cancelled by a `select!` must not lose the task.
        let r = match self.handle.as_mut() {
            Some(h) => h.await.unwrap_or(255),
            None => 255,
        };
        self.handle = None;
        self.result = Some(r);
        r
    }

    async fn stop(&mut self, grace: Duration) -> i32 {
        let _ = self.stop_tx.send(Some(grace));
        self.join().await
    }
}

async fn deletion(rx: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(g) = *rx.borrow_and_update() {
            return g;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
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

/// Updates the pod's status with `f` and recomputes phase and conditions.
fn update_status(inner: &Inner, rt: &PodRuntime, f: impl FnOnce(&mut Pod)) {
    let terminal = rt.terminal.load(Ordering::SeqCst);
    let _ = inner.pods.update(&rt.key.0, &rt.key.1, |p| {
        if p.metadata.uid.as_deref() != Some(rt.uid.as_str()) {
            // A newer pod of the same name: this runtime's updates are stale.
            return Err(ApiError::conflict("pods", &rt.key.1));
        }
        f(p);
        recompute(p, terminal);
        Ok(())
    });
}

fn set_container(
    inner: &Inner,
    rt: &PodRuntime,
    name: &str,
    init: bool,
    f: impl FnOnce(&mut ContainerStatus),
) {
    update_status(inner, rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        let list = if init {
            st.init_container_statuses.get_or_insert_with(Vec::new)
        } else {
            st.container_statuses.get_or_insert_with(Vec::new)
        };
        if let Some(cs) = list.iter_mut().find(|c| c.name == name) {
            f(cs);
        }
    });
}

fn event(
    inner: &Inner,
    rt: &PodRuntime,
    type_: &str,
    reason: &str,
    message: String,
    field_path: Option<String>,
) {
    let ts = now();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(event_name(&rt.key.1)),
            namespace: Some(rt.key.0.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(rt.key.1.clone()),
            namespace: Some(rt.key.0.clone()),
            uid: Some(rt.uid.clone()),
            field_path,
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(
                if reason == "Scheduled" {
                    "default-scheduler"
                } else {
                    "kubelet"
                }
                .into(),
            ),
            host: Some(NODE_NAME.into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(NODE_NAME.into()),
        first_timestamp: Some(ts.clone()),
        last_timestamp: Some(ts),
        count: Some(1),
        ..Default::default()
    };
    let _ = inner.events.create(ev);
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn set_condition(
    conds: &mut Vec<PodCondition>,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) {
    let status = if ok { "True" } else { "False" };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now());
            }
            c.status = status.into();
            c.reason = reason;
            c.message = message;
        }
        None => conds.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: Some(now()),
            ..Default::default()
        }),
    }
}

/// The kubelet's `getPhase` and pod conditions, for the current container statuses.
pub(crate) fn recompute(p: &mut Pod, terminal: bool) {
    let spec = p.spec.clone().unwrap_or_default();
    let st = p.status.get_or_insert_with(Default::default);
    if matches!(st.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return;
    }
    let init_st = st.init_container_statuses.clone().unwrap_or_default();
    let main_st = st.container_statuses.clone().unwrap_or_default();
    let find = |list: &[ContainerStatus], n: &str| list.iter().find(|c| c.name == n).cloned();
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let mut unready = Vec::new();
    let mut uninitialized = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(cs) = find(&init_st, &c.name) else {
            if is_sidecar(c) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            uninitialized.push(c.name.clone());
            continue;
        };
        let state = cs.state.clone().unwrap_or_default();
        let last_failed = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code != 0);
        if is_sidecar(c) {
            if state.running.is_some() {
                if cs.started != Some(true) {
                    pending_sidecar += 1;
                    uninitialized.push(c.name.clone());
                }
                running += 1;
                if !cs.ready {
                    unready.push(c.name.clone());
                }
            } else if state.terminated.is_some()
                || cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
            {
                // Terminated sidecars do not count for the phase.
            } else {
                pending_sidecar += 1;
                waiting_n += 1;
                uninitialized.push(c.name.clone());
                unready.push(c.name.clone());
            }
            continue;
        }
        if state.running.is_some() {
            pending_init += 1;
            uninitialized.push(c.name.clone());
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
                uninitialized.push(c.name.clone());
            }
        } else if let Some(failed) = last_failed {
            if failed {
                failed_init += 1;
            }
            uninitialized.push(c.name.clone());
        } else {
            pending_init += 1;
            uninitialized.push(c.name.clone());
        }
    }
    for c in &spec.containers {
        let Some(cs) = find(&main_st, &c.name) else {
            unknown += 1;
            unready.push(c.name.clone());
            continue;
        };
        let state = cs.state.clone().unwrap_or_default();
        if !cs.ready {
            unready.push(c.name.clone());
        }
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting_n += 1;
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = if failed_init > 0 && policy == "Never" {
        "Failed"
    } else if pending_init > 0 || (pending_sidecar > 0 && !terminal) || waiting_n > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    // Until the pod task has stopped the sidecars, a finished pod still counts as running.
    let phase = if matches!(phase, "Succeeded" | "Failed") && !terminal {
        "Running"
    } else {
        phase
    };
    st.phase = Some(phase.into());
    let conds = st.conditions.get_or_insert_with(Vec::new);
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    let initialized = uninitialized.is_empty();
    set_condition(
        conds,
        "Initialized",
        initialized,
        (!initialized).then(|| "ContainersNotInitialized".into()),
        (!initialized).then(|| {
            format!(
                "containers with incomplete status: {}",
                list(&uninitialized)
            )
        }),
    );
    let done = matches!(phase, "Succeeded" | "Failed");
    let ready = unready.is_empty() && !done;
    let (reason, message) = if done {
        (Some("PodCompleted".to_string()), None)
    } else if ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    set_condition(
        conds,
        "ContainersReady",
        ready,
        reason.clone(),
        message.clone(),
    );
    set_condition(conds, "Ready", ready, reason, message);
    let order = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conds.sort_by_key(|c| {
        order
            .iter()
            .position(|o| *o == c.type_)
            .unwrap_or(order.len())
    });
}

fn container_env(pod: &Pod, c: &Container, image: &Image) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = pod.metadata.name.clone().unwrap_or_default();
    env.push(("HOSTNAME".into(), name.clone()));
    env.push(("HOME".into(), "/root".into()));
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => name.clone(),
                Some("metadata.namespace") => pod.metadata.namespace.clone().unwrap_or_default(),
                Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                Some("spec.nodeName") => NODE_NAME.into(),
                Some("status.podIP") | Some("status.podIPs") => POD_IP.into(),
                Some("status.hostIP") | Some("status.hostIPs") => "127.0.0.1".into(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        env.retain(|(k, _)| *k != e.name);
        env.push((e.name.clone(), value));
    }
    env
}

fn argv_of(c: &Container, image: &Image) -> Vec<String> {
    let mut argv = c
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    argv.extend(c.args.iter().flatten().cloned());
    argv
}

fn field_path(c: &Container, init: bool) -> String {
    format!(
        "spec.{}{{{}}}",
        if init { "initContainers" } else { "containers" },
        c.name
    )
}

/// Starts a container's process from `image` (in `target_pid1`'s PID namespace for an
/// ephemeral container), as the runtime does: a `command[0]` the image lacks is containerd's
/// `StartError` (exit 128, [`start_error`]); a started process takes the container's slot and
/// gets the `Created` event. The regular and the ephemeral paths share it.
async fn start(
    inner: &Inner,
    rt: &PodRuntime,
    c: &Container,
    image: &Arc<Image>,
    env: Vec<(String, String)>,
    target_pid1: Option<i32>,
    fp: &str,
) -> Result<process::Launched, (Exit, Option<String>)> {
    let argv = argv_of(c, image);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = argv.first().cloned().unwrap_or_default();
    let launched = if image.resolve(&program, path).is_none() {
        Err(start_error(&program))
    } else {
        let log = rt.dir.join(format!("{}.log", c.name));
        process::launch(
            &inner.tools,
            &inner.spawner,
            LaunchSpec {
                argv: &argv,
                env: &env,
                root: image.root.as_deref(),
                workdir: c.working_dir.as_deref().unwrap_or("/"),
                log: &log,
                target_pid1,
            },
        )
        .await
        .map_err(|e| e.to_string())
    };
    match launched {
        Err(message) => {
            event(
                inner,
                rt,
                "Warning",
                "Failed",
                format!("Error: {message}"),
                Some(fp.to_owned()),
            );
            Err((
                Exit {
                    code: 128,
                    signal: None,
                },
                Some(message),
            ))
        }
        Ok(l) => {
            if let Some(pid1) = l.pid1 {
                lock(&rt.slots).insert(
                    c.name.clone(),
                    Slot {
                        pid1,
                        launcher: l.launcher,
                        image: Arc::clone(image),
                        env,
                    },
                );
            }
            event(
                inner,
                rt,
                "Normal",
                "Created",
                format!("Created container: {}", c.name),
                Some(fp.to_owned()),
            );
            Ok(l)
        }
    }
}

fn start_error(program: &str) -> String {
    let detail = if program.contains('/') {
        format!("exec: \"{program}\": stat {program}: no such file or directory")
    } else {
        format!("exec: \"{program}\": executable file not found in $PATH")
    };
    format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {detail}: unknown")
}

/// One container to supervise, and where it belongs.
struct Job {
    inner: Arc<Inner>,
    rt: Arc<PodRuntime>,
    pod: Arc<Pod>,
    c: Container,
    init: bool,
    restart: Restart,
}

/// Runs one container, restarting it as `restart` says, until it is done or told to stop.
async fn supervise(
    job: Job,
    mut stop_rx: watch::Receiver<Option<Duration>>,
    started_tx: watch::Sender<bool>,
) -> i32 {
    let Job {
        inner,
        rt,
        pod,
        mut c,
        init,
        restart,
    } = job;
    let mut backoff = inner.backoff;
    let fp = field_path(&c, init);
    let mut last_code = 0;
    let mut spec_rx = rt.spec_tx.subscribe();
    loop {
        if stop_rx.borrow().is_some() {
            return last_code;
        }
        // Each start uses the container as the spec has it now (an image swapped while it was
        // not running), and the image that names; an image the node cannot pull waits for
        // another change or the end, as ErrImagePull/ImagePullBackOff does.
        let image = loop {
            let latest = spec_rx.borrow_and_update().clone();
            if let Some(now_c) = container_spec(&latest, &c.name, init) {
                c = now_c;
            }
            let reference = c.image.clone().unwrap_or_default();
            if let Some(i) = inner.images.find(&reference) {
                break i;
            }
            let msg = pull_error(&inner, &reference);
            event(
                &inner,
                &rt,
                "Warning",
                "Failed",
                msg.clone(),
                Some(fp.clone()),
            );
            set_container(&inner, &rt, &c.name, init, |cs| {
                cs.image = reference.clone();
                cs.state = Some(waiting("ErrImagePull", Some(msg)));
            });
            tokio::select! {
                _ = deletion(&mut stop_rx) => return last_code,
                r = spec_rx.changed() => if r.is_err() { std::future::pending::<()>().await },
            }
        };
        let env = container_env(&pod, &c, &image);
        let container_id = format!("containerd://{}", hex_id());
        let started_at = now();
        let launched = start(&inner, &rt, &c, &image, env, None, &fp).await;
        let mut changed = false;
        let (exit, message) = match launched {
            Err(failed) => failed,
            Ok(mut l) => {
                set_container(&inner, &rt, &c.name, init, |cs| {
                    cs.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(started_at.clone()),
                        }),
                        ..Default::default()
                    });
                    cs.container_id = Some(container_id.clone());
                    cs.image = c.image.clone().unwrap_or_default();
                    cs.image_id = image_id(&image.name);
                    cs.started = Some(true);
                    cs.ready = true;
                });
                event(
                    &inner,
                    &rt,
                    "Normal",
                    "Started",
                    format!("Started container {}", c.name),
                    Some(fp.clone()),
                );
                let _ = started_tx.send(true);
                let stop = tokio::select! {
                    e = l.wait(false) => Ended::Exited(e),
                    g = deletion(&mut stop_rx) => Ended::Stopped(g),
                    () = image_changed(&mut spec_rx, &c, init) => Ended::Changed,
                };
                let exit = match stop {
                    Ended::Exited(e) => e,
                    Ended::Stopped(grace) => {
                        event(
                            &inner,
                            &rt,
                            "Normal",
                            "Killing",
                            format!("Stopping container {}", c.name),
                            Some(fp.clone()),
                        );
                        kill(&mut l, grace).await
                    }
                    Ended::Changed => {
                        changed = true;
                        event(
                            &inner,
                            &rt,
                            "Normal",
                            "Killing",
                            format!("Container {} definition changed, will be restarted", c.name),
                            Some(fp.clone()),
                        );
                        // killContainer's grace: the pod's deletion grace if it is being
                        // deleted, else its terminationGracePeriodSeconds; at least 2 s.
                        let latest = spec_rx.borrow().clone();
                        let secs = latest
                            .metadata
                            .deletion_grace_period_seconds
                            .or_else(|| {
                                latest
                                    .spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                            })
                            .unwrap_or(30);
                        let grace = Duration::from_secs(secs.max(0).unsigned_abs()).max(MIN_GRACE);
                        kill(&mut l, grace).await
                    }
                };
                lock(&rt.slots).remove(&c.name);
                (exit, None)
            }
        };
        last_code = exit.code;
        let terminated = ContainerStateTerminated {
            container_id: Some(container_id.clone()),
            exit_code: exit.code,
            finished_at: Some(now()),
            message: message.clone(),
            reason: Some(
                if message.is_some() {
                    "StartError"
                } else if exit.code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .into(),
            ),
            signal: exit.signal,
            started_at: Some(started_at),
        };
        let stopping = stop_rx.borrow().is_some();
        if changed && !stopping {
            // Started again at once with the new image, whatever the restart policy.
            set_container(&inner, &rt, &c.name, init, |cs| {
                cs.ready = false;
                cs.started = Some(false);
                cs.last_state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
                cs.state = Some(waiting("ContainerCreating", None));
                cs.restart_count += 1;
            });
            continue;
        }
        let again = !stopping && restart.again(exit.code);
        let pod_name = format!("{}_{}({})", rt.key.1, rt.key.0, rt.uid);
        set_container(&inner, &rt, &c.name, init, |cs| {
            cs.ready = false;
            cs.started = Some(false);
            cs.image = c.image.clone().unwrap_or_default();
            if again {
                cs.last_state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
                cs.state = Some(waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting failed container={} pod={pod_name}",
                        backoff.as_secs(),
                        c.name
                    )),
                ));
            } else {
                cs.state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
            }
        });
        if !again {
            return exit.code;
        }
        event(
            &inner,
            &rt,
            "Warning",
            "BackOff",
            format!(
                "Back-off restarting failed container {} in pod {}",
                c.name, pod_name
            ),
            Some(fp.clone()),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = deletion(&mut stop_rx) => return exit.code,
        }
        backoff = (backoff * 2).min(inner.backoff * 8);
        set_container(&inner, &rt, &c.name, init, |cs| cs.restart_count += 1);
    }
}

/// How a running container's wait ended.
enum Ended {
    /// It exited by itself.
    Exited(Exit),
    /// The pod task stopped it, with this grace period.
    Stopped(Duration),
    /// Its image changed in the spec.
    Changed,
}

/// Stops a container from outside as the runtime does: SIGTERM to its PID 1 (dropped by the
/// kernel when PID 1 has no handler), `grace`, then SIGKILL; zero grace is SIGKILL at once.
async fn kill(l: &mut process::Launched, grace: Duration) -> Exit {
    let target = l.pid1.unwrap_or(l.launcher);
    if grace.is_zero() {
        process::signal(target, Signal::KILL);
        return l.wait(true).await;
    }
    process::signal(target, Signal::TERM);
    match tokio::time::timeout(grace, l.wait(false)).await {
        Ok(e) => e,
        Err(_) => {
            process::signal(target, Signal::KILL);
            l.wait(true).await
        }
    }
}

/// The `ErrImagePull` message for an image the node cannot run.
fn pull_error(inner: &Inner, reference: &str) -> String {
    match inner.images.unavailable(reference) {
        Some(why) => format!("Failed to pull image \"{reference}\": {why}"),
        None => format!(
            "Failed to pull image \"{reference}\": the test cluster has no stand-in for it (see tests/images/README.md)"
        ),
    }
}

fn set_ephemeral(inner: &Inner, rt: &PodRuntime, name: &str, f: impl FnOnce(&mut ContainerStatus)) {
    update_status(inner, rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        let list = st.ephemeral_container_statuses.get_or_insert_with(Vec::new);
        let i = match list.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                list.push(ContainerStatus {
                    name: name.to_owned(),
                    ready: false,
                    restart_count: 0,
                    ..Default::default()
                });
                list.len() - 1
            }
        };
        if let Some(cs) = list.get_mut(i) {
            f(cs);
        }
    });
}

/// Runs one ephemeral container once (see the module docs).
async fn run_ephemeral(inner: Arc<Inner>, rt: Arc<PodRuntime>, ec: EphemeralContainer) {
    let pod = rt.spec_tx.borrow().clone();
    let fp = format!("spec.ephemeralContainers{{{}}}", ec.name);
    let c = Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        command: ec.command.clone(),
        args: ec.args.clone(),
        env: ec.env.clone(),
        working_dir: ec.working_dir.clone(),
        ..Default::default()
    };
    let reference = ec.image.clone().unwrap_or_default();
    let waiting_for = |reason: &str, msg: Option<String>| {
        set_ephemeral(&inner, &rt, &ec.name, |cs| {
            cs.image = reference.clone();
            cs.state = Some(waiting(reason, msg));
        })
    };
    waiting_for("ContainerCreating", None);
    let Some(image) = inner.images.find(&reference) else {
        let msg = pull_error(&inner, &reference);
        event(&inner, &rt, "Warning", "Failed", msg.clone(), Some(fp));
        waiting_for("ErrImagePull", Some(msg));
        return;
    };
    event(
        &inner,
        &rt,
        "Normal",
        "Pulled",
        format!("Container image \"{reference}\" already present on machine"),
        Some(fp.clone()),
    );
    let target_pid1 = match ec.target_container_name.as_deref() {
        None | Some("") => None,
        Some(target) => match lock(&rt.slots).get(target) {
            Some(slot) if process::alive(slot.pid1) => Some(slot.pid1),
            _ => {
                let msg = format!(
                    "failed to create containerd container: the target container {target:?} is not running, so it has no PID namespace to join"
                );
                event(
                    &inner,
                    &rt,
                    "Warning",
                    "Failed",
                    format!("Error: {msg}"),
                    Some(fp),
                );
                waiting_for("CreateContainerError", Some(msg));
                return;
            }
        },
    };
    let env = container_env(&pod, &c, &image);
    let container_id = format!("containerd://{}", hex_id());
    let started_at = now();
    let launched = start(&inner, &rt, &c, &image, env, target_pid1, &fp).await;
    let (exit, message) = match launched {
        Err(failed) => failed,
        Ok(mut l) => {
            set_ephemeral(&inner, &rt, &c.name, |cs| {
                cs.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(started_at.clone()),
                    }),
                    ..Default::default()
                });
                cs.container_id = Some(container_id.clone());
                cs.image_id = image_id(&image.name);
                cs.started = Some(true);
            });
            event(
                &inner,
                &rt,
                "Normal",
                "Started",
                format!("Started container {}", c.name),
                Some(fp.clone()),
            );
            let mut del = rt.delete_tx.subscribe();
            let exit = tokio::select! {
                e = l.wait(false) => e,
                g = deletion(&mut del) => kill(&mut l, g).await,
            };
            lock(&rt.slots).remove(&c.name);
            (exit, None)
        }
    };
    let terminated = ContainerStateTerminated {
        container_id: Some(container_id),
        exit_code: exit.code,
        finished_at: Some(now()),
        reason: Some(
            if message.is_some() {
                "StartError"
            } else if exit.code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into(),
        ),
        message,
        signal: exit.signal,
        started_at: Some(started_at),
    };
    set_ephemeral(&inner, &rt, &c.name, |cs| {
        cs.started = Some(false);
        cs.state = Some(ContainerState {
            terminated: Some(terminated),
            ..Default::default()
        });
    });
}

fn start_supervisor(
    inner: &Arc<Inner>,
    rt: &Arc<PodRuntime>,
    pod: &Arc<Pod>,
    c: &Container,
    init: bool,
    restart: Restart,
) -> Supervisor {
    let (stop_tx, stop_rx) = watch::channel(None);
    let (started_tx, started_rx) = watch::channel(false);
    let job = Job {
        inner: inner.clone(),
        rt: rt.clone(),
        pod: pod.clone(),
        c: c.clone(),
        init,
        restart,
    };
    let handle = tokio::spawn(supervise(job, stop_rx, started_tx));
    Supervisor {
        name: c.name.clone(),
        stop_tx,
        started_rx,
        handle: Some(handle),
        result: None,
    }
}

/// Stops regular containers together, then sidecars in reverse order, within `grace` in all.
async fn stop_all(regular: &mut [Supervisor], sidecars: &mut [Supervisor], grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for s in regular.iter() {
        let _ = s.stop_tx.send(Some(grace));
    }
    for s in regular.iter_mut() {
        s.join().await;
    }
    for s in sidecars.iter_mut().rev() {
        tracing::debug!(container = %s.name, "stopping sidecar");
        // Sidecars get what is left of the grace period, and at least 2 s as the kubelet gives.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let g = if grace.is_zero() {
            Duration::ZERO
        } else {
            left.max(Duration::from_secs(2))
        };
        s.stop(g).await;
    }
}

async fn run_pod(inner: Arc<Inner>, rt: Arc<PodRuntime>, pod: Pod) {
    let mut del = rt.delete_tx.subscribe();
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = Restart::from_policy(spec.restart_policy.as_deref());
    let inits: Vec<Container> = spec.init_containers.clone().unwrap_or_default();
    let pod = Arc::new(pod);
    event(
        &inner,
        &rt,
        "Normal",
        "Scheduled",
        format!(
            "Successfully assigned {}/{} to {NODE_NAME}",
            rt.key.0, rt.key.1
        ),
        None,
    );
    let status_of = |c: &Container, reason: &str| ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(reason, None)),
        ..Default::default()
    };
    let main_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    update_status(&inner, &rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        st.start_time = Some(now());
        st.host_ip = Some("127.0.0.1".into());
        st.pod_ip = Some(POD_IP.into());
        st.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: "127.0.0.1".into(),
        }]);
        st.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: POD_IP.into(),
        }]);
        if !inits.is_empty() {
            st.init_container_statuses = Some(
                inits
                    .iter()
                    .map(|c| status_of(c, "PodInitializing"))
                    .collect(),
            );
        }
        st.container_statuses = Some(
            spec.containers
                .iter()
                .map(|c| status_of(c, main_reason))
                .collect(),
        );
        let conds = st.conditions.get_or_insert_with(Vec::new);
        set_condition(conds, "PodReadyToStartContainers", true, None, None);
    });

    // Resolve every image first: an unknown one leaves its container waiting for good.
    let mut images = HashMap::new();
    let mut missing = false;
    for (c, init) in inits
        .iter()
        .map(|c| (c, true))
        .chain(spec.containers.iter().map(|c| (c, false)))
    {
        let reference = c.image.clone().unwrap_or_default();
        match inner.images.find(&reference) {
            Some(i) => {
                images.insert(c.name.clone(), i);
            }
            None => {
                missing = true;
                let msg = pull_error(&inner, &reference);
                event(
                    &inner,
                    &rt,
                    "Warning",
                    "Failed",
                    msg.clone(),
                    Some(field_path(c, init)),
                );
                set_container(&inner, &rt, &c.name, init, |cs| {
                    cs.state = Some(waiting("ErrImagePull", Some(msg)))
                });
            }
        }
    }
    if missing {
        deletion(&mut del).await;
        remove_object(&inner, &rt);
        return;
    }
    for (name, image) in &images {
        let init = inits.iter().any(|c| &c.name == name);
        let fp = format!(
            "spec.{}{{{name}}}",
            if init { "initContainers" } else { "containers" }
        );
        event(
            &inner,
            &rt,
            "Normal",
            "Pulled",
            format!(
                "Container image \"{}\" already present on machine",
                image.name
            ),
            Some(fp),
        );
    }

    let mut sidecars: Vec<Supervisor> = Vec::new();
    let mut regular: Vec<Supervisor> = Vec::new();
    let mut init_failed = false;
    for c in &inits {
        if !images.contains_key(&c.name) {
            continue;
        }
        if is_sidecar(c) {
            let s = start_supervisor(&inner, &rt, &pod, c, true, Restart::Always);
            let mut started = s.started_rx.clone();
            tokio::select! {
                _ = async { let _ = started.wait_for(|v| *v).await; } => {}
                g = deletion(&mut del) => {
                    sidecars.push(s);
                    return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
                }
            }
            sidecars.push(s);
        } else {
            let restart = if policy == Restart::Never {
                Restart::Never
            } else {
                Restart::OnFailure
            };
            let mut s = start_supervisor(&inner, &rt, &pod, c, true, restart);
            tokio::select! {
                code = s.join() => {
                    if code != 0 {
                        init_failed = true;
                        break;
                    }
                }
                g = deletion(&mut del) => {
                    regular.push(s);
                    return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
                }
            }
        }
    }
    if !init_failed {
        for c in &spec.containers {
            if !images.contains_key(&c.name) {
                continue;
            }
            regular.push(start_supervisor(&inner, &rt, &pod, c, false, policy));
        }
        let all_done = async {
            for s in regular.iter_mut() {
                s.join().await;
            }
        };
        tokio::select! {
            _ = all_done => {}
            g = deletion(&mut del) => {
                return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
            }
        }
    }
    // Every regular container is done for good: stop the sidecars, last first.
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .max(0)
            .unsigned_abs(),
    );
    let mut none: Vec<Supervisor> = Vec::new();
    let stopping = stop_all(&mut none, &mut sidecars, grace);
    tokio::select! {
        _ = stopping => {}
        g = deletion(&mut del) => {
            return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
        }
    }
    rt.terminal.store(true, Ordering::SeqCst);
    update_status(&inner, &rt, |_| {});
    let _ = deletion(&mut del).await;
    remove_object(&inner, &rt);
}

/// Removes the pod object, unless a newer pod of the same name has taken its place.
fn remove_object(inner: &Inner, rt: &PodRuntime) {
    let _ = inner.pods.delete_if(&rt.key.0, &rt.key.1, |p| {
        p.metadata.uid.as_deref() == Some(rt.uid.as_str())
    });
}

async fn finish_deleted(
    inner: &Arc<Inner>,
    rt: &Arc<PodRuntime>,
    regular: &mut [Supervisor],
    sidecars: &mut [Supervisor],
    grace: Duration,
) {
    tracing::debug!(pod = %rt.key.1, grace = ?grace, "stopping pod for deletion");
    stop_all(regular, sidecars, grace).await;
    rt.terminal.store(true, Ordering::SeqCst);
    remove_object(inner, rt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn phase_follows_the_kubelet_rules() {
        let running = json!({"running": {}});
        let done = |c: i32| json!({"terminated": {"exitCode": c}});
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never",
                     "initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always"}],
                     "containers": [{"name": "main", "image": "x"}]},
            "status": {"initContainerStatuses": [{"name": "proxy", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": running}],
                       "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": done(0)}]}
        }));
        recompute(&mut p, false);
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Running"),
            "sidecar still running"
        );
        p.status
            .as_mut()
            .unwrap()
            .init_container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(serde_json::from_value(done(143)).unwrap());
        recompute(&mut p, true);
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded"),
            "sidecar exit codes do not count"
        );
        let ready = p
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn a_failed_main_fails_the_pod() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}, {"name": "side", "image": "x"}]},
            "status": {"containerStatuses": [
                {"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}},
                {"name": "side", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }));
        recompute(&mut p, false);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1]
            .state = Some(serde_json::from_value(json!({"terminated": {"exitCode": 0}})).unwrap());
        recompute(&mut p, true);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn start_errors_read_like_containerd() {
        assert!(start_error("/bin/sh")
            .contains("exec: \"/bin/sh\": stat /bin/sh: no such file or directory"));
        assert!(start_error("sh").contains("executable file not found in $PATH"));
    }
}
