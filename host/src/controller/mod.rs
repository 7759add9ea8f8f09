//! The controller: watches batch pods and stops their sidecars once the policy says the
//! pod is ready (every main container has terminated).
//!
//! - **Watching.** One kube-runtime watcher per label selector (by default Argo workflow
//!   pods, `workflows.argoproj.io/workflow`, and Job pods, `batch.kubernetes.io/job-name`),
//!   merged. The watcher re-lists after `410 Gone`, follows bookmarks and retries errors
//!   with backoff; readiness (`/readyz`) waits until every watcher has listed once.
//! - **Deciding.** Each pod event is put to the policy ([`Executor::assess`]): is the pod
//!   ready, and has it a sidecar still running with steps not yet recorded as done? Only
//!   then is an API call spent on it. The controller itself decides nothing about pods.
//! - **Queueing.** A pod with work goes into a bounded work queue keyed by its UID
//!   ([`queue`]): one entry per pod however many events it has, namespaces served in
//!   turn, and a delay queue for pods to look at later. [`Options`]'s executor
//!   concurrency is the number of workers; nothing else runs a plan.
//! - **Acting.** A worker starts from the pod's latest watched version (kept for up to
//!   [`Options::kept_versions`] queued pods; read with a GET beyond) and has the
//!   [`Executor`] carry out its plan (retries, the `sidekill.dev/done-*` record that keeps
//!   any step from running twice, Events) under a claim ([`claim::PlanClaim`]): the plan's
//!   first write takes it, on the version the plan was made from (a stale version is
//!   planned again, never written over), and its last write records the stop and releases
//!   it, so a stop costs its writes and its exec and nothing more. A plan cut short
//!   releases it on its own. A wait longer
//!   than [`Options::hold`] (a grace period of the pod owner's choosing, an `await`) is
//!   handed back ([`Executor::suspending`]): the worker moves on, and the pod comes back
//!   through the delay queue at the wait's deadline, or sooner when the watch sees what it
//!   awaits. A pod claimed by another live controller is looked at again when that claim
//!   expires. A failure is retried with a jittered backoff per pod, doubling from
//!   [`Options::retry_after`] up to 5 minutes, never sooner than the API server's
//!   `Retry-After`.
//! - **Fencing.** The holder renews its claim every third of its lifetime and stops acting
//!   (drops the plan mid-step) when no renewal has been confirmed within two thirds of it,
//!   judged on its own monotonic clock from when each confirmed renewal was sent: a holder
//!   cut off from the API server stops before its claim can expire, as client-go's leader
//!   election stops leading after its RenewDeadline (tools/leaderelection/leaderelection.go
//!   renew).
//! - **Policy.** Plans come from a [`crate::PolicyStore`] (through the executor's
//!   [`crate::exec::Planner`]), so a hot-swapped policy applies to the next pod with no
//!   restart; a plan in flight finishes on the version it started with.
//! - **Health.** [`Metrics`] holds the counters; [`metrics::spawn_server`] serves
//!   `/healthz`, `/readyz` and `/metrics`.
//!
//! # Why not `kube::runtime::Controller`
//!
//! kube-rs's `Controller` (reconcile, `error_policy`, a reflector store, `Config::concurrency`,
//! `graceful_shutdown_on`) was weighed against what this loop must do, and does not fit four
//! of them:
//!
//! - **Keyed by UID, not by name.** Its scheduler deduplicates by `ObjectRef` (namespace and
//!   name). A pod deleted and recreated under its name (a Job's retry, an Argo retry) is
//!   another pod whose plan must not inherit the old one's backoff, claim or finished mark;
//!   here the queue, the finished set and every write are keyed by UID.
//! - **Bounded.** Its scheduler and store grow with the watched pods: 10,000 ready pods cost a
//!   pending entry and a cached `Arc<Pod>` each. Here the queue has a capacity (counted when
//!   full), and only the pods in work are kept ([`exec::PodCache`]), which is how 10,000 ready
//!   pods stay at 72–77 MiB.
//! - **Fair between namespaces.** Its queue is one FIFO by due time; one namespace's burst of
//!   10,000 pods would delay every other tenant. Here ready pods are served namespace by
//!   namespace in turn ([`queue`]).
//! - **Several replicas at once.** It assumes one active controller (leader election around
//!   it); here replicas share the work, each pod claimed ([`claim`]) and every record fenced
//!   by the claim, so a replica's loss costs only its pods in flight.
//!
//! What it would give (requeue after a duration, backoff on error, a drain on shutdown) is
//! here as [`queue`]'s delay queue, `backoff`, and [`Controller::run`]'s drain. The watching
//! itself is kube's: `kube::runtime::watcher` with its default backoff.

pub mod claim;
pub mod metrics;
pub mod queue;
mod worker;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::exec::now_ms;
use crate::exec::{self, Executor, PodReport};
pub use metrics::Metrics;
use queue::{Key, Queue};

/// The label selectors watched by default.
pub const DEFAULT_SELECTORS: [&str; 2] = [
    "workflows.argoproj.io/workflow",
    "batch.kubernetes.io/job-name",
];

/// How the controller runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Label selectors, one watcher each; an empty list watches every pod.
    /// Default [`DEFAULT_SELECTORS`].
    pub selectors: Vec<String>,
    /// Only this namespace; `None` watches every namespace. Default `None`.
    pub namespace: Option<String>,
    /// This controller's name in claims. Default `sidekill-<hostname>-<pid>`.
    pub identity: String,
    /// Lifetime of a claim, renewed every third of it while a plan runs; the holder stops
    /// acting when no renewal is confirmed within two thirds of it. Default 30 s.
    pub claim_ttl: Duration,
    /// First delay before a failed pod is tried again (doubling, jittered, at most 5 min).
    /// Default 1 s.
    pub retry_after: Duration,
    /// How long a pod watcher may fail without a success before `/readyz` says not ready.
    /// Default 30 s: a watcher retries with backoff, and an API server restart takes seconds.
    pub watch_failure_grace: Duration,
    /// The longest a wait (a grace period, an `await`) holds a worker; a longer one is
    /// handed back and resumed from the pod's record. Default 2 s: a sidecar that honours
    /// its signal ends well within it, and one that does not frees its worker soon.
    pub hold: Duration,
    /// The most pods queued at once (ready, delayed and in work). Default 100,000: about
    /// 20 MB of entries. A pod that finds the queue full is counted
    /// (`sidekill_queue_full_total`) and comes back with its next watch event.
    pub queue_capacity: usize,
    /// The most queued pods whose latest watched version is kept, so that a worker taking
    /// one needs no GET (its claim's `resourceVersion` precondition catches a stale one).
    /// Queued pods beyond it keep only their entry and are read when a worker takes them.
    /// Default 1,024: a burst of a thousand ready pods costs no read, and a backlog of
    /// 10,000 keeps its memory bounded (a pod is some 10–50 KiB in memory).
    pub kept_versions: usize,
    /// Where the client's requests are counted ([`crate::requests`]), for `/metrics`; the
    /// client must be built with its layer ([`crate::cli::stop::client_counted`]). Default:
    /// counts nobody adds to.
    pub api_requests: Arc<crate::requests::Counts>,
}

impl Default for Options {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Options {
            selectors: DEFAULT_SELECTORS.iter().map(|s| (*s).to_owned()).collect(),
            namespace: None,
            identity: format!("sidekill-{host}-{}", std::process::id()),
            claim_ttl: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
            watch_failure_grace: Duration::from_secs(30),
            hold: Duration::from_secs(2),
            queue_capacity: 100_000,
            kept_versions: 1024,
            api_requests: Arc::default(),
        }
    }
}

/// What the controller remembers about pods, by UID: the work queue, and the pods with
/// nothing left to do (until they are deleted, or a re-list no longer shows them).
#[derive(Debug)]
struct Tracking {
    queue: Queue,
    /// Finished pods, with the watcher that last saw them.
    finished: HashMap<String, usize>,
    /// Per watcher, while it re-lists: the UIDs listed so far.
    relisting: Vec<Option<HashSet<String>>>,
    /// Claims of other controllers on queued pods: the claim's text and when this
    /// controller first saw it (its expiry is judged from then, on this clock).
    observed: HashMap<String, (String, Instant)>,
    /// The latest watched version of queued pods, by UID, at most
    /// [`Options::kept_versions`]: what a worker starts from instead of a GET.
    latest: HashMap<String, Arc<Pod>>,
}

/// Watches pods and carries out their plans. Build with [`Controller::new`], run with
/// [`Controller::run`].
pub struct Controller {
    client: kube::Client,
    executor: Executor,
    options: Options,
    metrics: Arc<Metrics>,
    tracking: Mutex<Tracking>,
    /// Wakes a worker when an entry becomes ready.
    work: Notify,
    reports: broadcast::Sender<Arc<PodReport>>,
    running: Mutex<bool>,
    /// The pods in work, fed by the watchers, read by the executor.
    cache: Arc<exec::PodCache>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller with a client, an executor (whose planner should be a
    /// [`crate::PolicyStore`] for hot swaps) and options. The executor's concurrency is the
    /// number of workers; its waits longer than [`Options::hold`] are handed back.
    pub fn new(client: kube::Client, executor: Executor, options: Options) -> Arc<Controller> {
        let metrics = Arc::new(Metrics::counting(Arc::clone(&options.api_requests)));
        let cache = Arc::new(exec::PodCache::default());
        let queue = Arc::clone(&metrics);
        let executor = executor
            .suspending(options.hold)
            .yielding(Arc::new(move || queue.queue_ready.get() > 0))
            .reading_through(Arc::clone(&cache));
        Arc::new(Controller {
            client,
            executor,
            cache,
            metrics,
            tracking: Mutex::new(Tracking {
                queue: Queue::new(options.queue_capacity.max(1)),
                finished: HashMap::new(),
                relisting: Vec::new(),
                observed: HashMap::new(),
                latest: HashMap::new(),
            }),
            options,
            work: Notify::new(),
            reports: broadcast::channel(256).0,
            running: Mutex::new(false),
        })
    }

    /// The counters, shared with the HTTP endpoints.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Every plan carried out from now on, as the executor reported it. A receiver that
    /// falls more than 256 reports behind loses the oldest.
    pub fn reports(&self) -> broadcast::Receiver<Arc<PodReport>> {
        self.reports.subscribe()
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn api(&self) -> Api<Pod> {
        match &self.options.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    fn tracking(&self) -> std::sync::MutexGuard<'_, Tracking> {
        // A panic while holding the lock cannot leave the sets inconsistent in a way that
        // matters (at worst a pod is looked at again), so a poisoned lock is used as is.
        self.tracking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes the queue's and the tracking's sizes.
    fn gauges(&self, t: &Tracking) {
        let (ready, delayed, running) = t.queue.depth();
        let m = &self.metrics;
        m.queue_ready.set(ready as u64);
        m.queue_delayed.set(delayed as u64);
        m.in_flight.set(running as u64);
        m.tracked
            .set((t.queue.len() + t.finished.len() + t.observed.len()) as u64);
    }

    /// Watches pods and carries out plans until `shutdown` completes; then waits, at most
    /// `drain`, for the plans in flight to finish. Plans cut off by the drain deadline
    /// leave their claims to expire and their record on the pod, so another controller
    /// carries on from the first step not yet done.
    ///
    /// # Errors
    /// [`exec::Error::Config`] when the controller is run twice.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> exec::Result<()> {
        {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *running {
                return Err(exec::Error::Config {
                    message: "the controller is already running".into(),
                });
            }
            *running = true;
        }
        let api = self.api();
        let selectors: Vec<Option<String>> = if self.options.selectors.is_empty() {
            vec![None]
        } else {
            self.options.selectors.iter().cloned().map(Some).collect()
        };
        self.tracking().relisting = vec![None; selectors.len()];
        let workers: Vec<_> = (0..self.executor.options().concurrency.max(1))
            .map(|_| tokio::spawn(Arc::clone(&self).work()))
            .collect();
        let watchers = selectors.iter().enumerate().map(|(i, selector)| {
            let mut config = watcher::Config::default();
            if let Some(s) = selector {
                config = config.labels(s);
            }
            watcher::watcher(api.clone(), config)
                .default_backoff()
                .map(move |event| (i, event))
                .boxed()
        });
        let mut events = stream::select_all(watchers);
        let mut listed = vec![false; selectors.len()];
        // Per watcher: since when it has had only errors, and its last error. A watcher that
        // recovers on an idle selector yields no event, so "healthy again" is also an error
        // that stops coming (see Metrics::endpoint).
        let mut failing: Vec<Option<(u64, u64)>> = vec![None; selectors.len()];
        self.metrics.watch_failure_grace_ms.store(
            u64::try_from(self.options.watch_failure_grace.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let health = |failing: &[Option<(u64, u64)>]| {
            let since = failing.iter().flatten().map(|f| f.0).min().unwrap_or(0);
            let last = failing.iter().flatten().map(|f| f.1).max().unwrap_or(0);
            (since, last)
        };
        let store = |metrics: &Metrics, (since, last): (u64, u64)| {
            metrics
                .watch_failing_since_ms
                .store(since, Ordering::Relaxed);
            metrics.watch_last_error_ms.store(last, Ordering::Relaxed);
        };
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(
            identity = %self.options.identity,
            selectors = ?self.options.selectors,
            namespace = ?self.options.namespace,
            "controller started"
        );
        loop {
            self.metrics.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
            tokio::select! {
                () = &mut shutdown => break,
                _ = heartbeat.tick() => {
                    let t = self.tracking();
                    self.gauges(&t);
                }
                next = events.next() => {
                    match &next {
                        Some((i, Ok(_))) if failing[*i].is_some() => {
                            failing[*i] = None;
                            store(&self.metrics, health(&failing));
                        }
                        Some((i, Err(e))) => {
                            let now = now_ms();
                            let first = failing[*i].map_or(now, |f| f.0);
                            failing[*i] = Some((first, now));
                            store(&self.metrics, health(&failing));
                            if let Ok(mut last) = self.metrics.watch_last_error.lock() {
                                *last = e.to_string();
                            }
                        }
                        _ => {}
                    }
                    match next {
                    Some((i, Ok(Event::Apply(pod)))) => {
                        self.metrics.events.inc();
                        self.cache.seen(&pod);
                        self.consider(&pod, i);
                    }
                    Some((i, Ok(Event::InitApply(pod)))) => {
                        self.metrics.events.inc();
                        if let Some(uid) = &pod.metadata.uid {
                            if let Some(Some(seen)) = self.tracking().relisting.get_mut(i) {
                                seen.insert(uid.clone());
                            }
                        }
                        self.cache.seen(&pod);
                        self.consider(&pod, i);
                    }
                    Some((_, Ok(Event::Delete(pod)))) => {
                        self.metrics.events.inc();
                        self.cache.deleted(&pod);
                        self.forget(&pod);
                    }
                    Some((i, Ok(Event::Init))) => {
                        if let Some(r) = self.tracking().relisting.get_mut(i) {
                            *r = Some(HashSet::new());
                        }
                    }
                    Some((i, Ok(Event::InitDone))) => {
                        self.relisted(i);
                        listed[i] = true;
                        if listed.iter().all(|l| *l) {
                            self.metrics.synced.store(true, Ordering::Relaxed);
                        }
                    }
                    Some((_, Err(e))) => {
                        self.metrics.watch_errors.inc();
                        tracing::warn!(error = %e, "pod watch error; retrying with backoff");
                    }
                    None => break,
                    }
                }
            }
        }
        tracing::info!("controller stopping: waiting for the plans in flight");
        let deadline = Instant::now() + drain;
        while self.tracking().queue.depth().2 > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for w in workers {
            w.abort();
        }
        Ok(())
    }

    /// A watcher listed again (after a `410 Gone`, or at start): pods it last saw that the
    /// list no longer has were deleted (or relabelled) while it was not watching, and no
    /// Delete event will ever come for them.
    fn relisted(&self, origin: usize) {
        let mut t = self.tracking();
        let Some(seen) = t.relisting.get_mut(origin).and_then(Option::take) else {
            return;
        };
        t.finished
            .retain(|uid, o| *o != origin || seen.contains(uid));
        t.queue.retain_listed(origin, &seen);
        t.observed.retain(|uid, _| seen.contains(uid));
        t.latest.retain(|uid, _| seen.contains(uid));
        self.gauges(&t);
    }

    fn forget(&self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            let mut t = self.tracking();
            t.finished.remove(uid);
            t.observed.remove(uid);
            t.latest.remove(uid);
            t.queue.forget(uid);
            self.gauges(&t);
        }
    }

    /// Looks at one version of a pod (from watcher `origin`) and queues it when it has work.
    fn consider(&self, pod: &Pod, origin: usize) {
        let (Some(uid), Some(ns), Some(name)) = (
            pod.metadata.uid.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
        ) else {
            return;
        };
        let key = Key {
            namespace: ns,
            name,
            uid,
            origin,
        };
        {
            let mut t = self.tracking();
            if let Some(o) = t.finished.get_mut(&key.uid) {
                *o = origin;
                return;
            }
            if t.queue.running(&key.uid) {
                // Marks it to be looked at again when its worker is done.
                t.queue.add(key);
                return;
            }
        }
        let assessment = match self.executor.assess(pod) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.count(metrics::FAILURES, e.name());
                tracing::warn!(pod = %format!("{}/{}", key.namespace, key.name), error = %crate::error::Report::of(&e), "the policy could not assess the pod");
                return;
            }
        };
        if !assessment.ready {
            return;
        }
        let mut t = self.tracking();
        if assessment.pending.is_empty() {
            t.finished.insert(key.uid, origin);
            return;
        }
        let at = assessment.waits_for().map(|d| Instant::now() + d);
        let pod_name = format!("{}/{}", key.namespace, key.name);
        let uid = key.uid.clone();
        if t.queue.add_with(key, at, 0) {
            if t.latest.contains_key(&uid) || t.latest.len() < self.options.kept_versions {
                t.latest.insert(uid, Arc::new(pod.clone()));
            }
            if at.is_none() {
                self.work.notify_one();
            }
        } else {
            self.metrics.count(metrics::QUEUE_FULL, "full");
            tracing::warn!(pod = %pod_name, capacity = t.queue.capacity(), "the work queue is full; the pod comes back with its next event");
        }
        self.gauges(&t);
    }
}
