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
//! - **Acting.** A pod with work is claimed ([`claim`]), its plan carried out by the
//!   [`Executor`] (bounded concurrency, retries, the `sidekill.dev/done-*` record that
//!   keeps any step from running twice, Events), and the claim released. A pod claimed
//!   by another live controller is looked at again when that claim expires. A failure
//!   is retried with backoff, doubling from [`Options::retry_after`] up to 5 minutes.
//! - **Policy.** Plans come from a [`crate::PolicyStore`] (through the executor's
//!   [`crate::exec::Planner`]), so a hot-swapped policy applies to the next pod with no
//!   restart; a plan in flight finishes on the version it started with.
//! - **Health.** [`Metrics`] holds the counters; [`metrics::spawn_server`] serves
//!   `/healthz`, `/readyz` and `/metrics`.

pub mod claim;
pub mod metrics;

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
use tokio::sync::{broadcast, mpsc, Semaphore};

use crate::exec::{self, Executor, Outcome, PodReport};
use claim::{now_ms, Attempt};
pub use metrics::Metrics;

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
    /// Lifetime of a claim, renewed every third of it while a plan runs. Default 30 s.
    pub claim_ttl: Duration,
    /// First delay before a failed pod is tried again. Default 1 s.
    pub retry_after: Duration,
    /// How long a pod watcher may fail without a success before `/readyz` says not ready.
    /// Default 30 s: a watcher retries with backoff, and an API server restart takes seconds.
    pub watch_failure_grace: Duration,
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
        }
    }
}

/// What the controller remembers about pods, by UID.
#[derive(Debug, Default)]
struct Tracking {
    /// Plans being carried out.
    in_flight: HashSet<String>,
    /// Pods with nothing left to do (until they are deleted).
    finished: HashSet<String>,
    /// Pods with a look-again already scheduled.
    scheduled: HashSet<String>,
    /// Consecutive failures.
    failures: HashMap<String, u32>,
}

/// A pod to look at again: namespace, name and UID.
type Requeue = (String, String, String);

/// Watches pods and carries out their plans. Build with [`Controller::new`], run with
/// [`Controller::run`].
pub struct Controller {
    client: kube::Client,
    executor: Executor,
    options: Options,
    metrics: Arc<Metrics>,
    tracking: Mutex<Tracking>,
    requeue: mpsc::UnboundedSender<Requeue>,
    requeued: Mutex<Option<mpsc::UnboundedReceiver<Requeue>>>,
    reports: broadcast::Sender<Arc<PodReport>>,
    /// Pods past this point hold (or are taking) a claim: as many as the executor runs at
    /// once, so queued pods hold no claim another replica could have served.
    permits: Arc<Semaphore>,
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
    /// [`crate::PolicyStore`] for hot swaps) and options.
    pub fn new(client: kube::Client, executor: Executor, options: Options) -> Arc<Controller> {
        let (requeue, requeued) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(executor.options().concurrency.max(1)));
        Arc::new(Controller {
            client,
            executor,
            options,
            metrics: Arc::new(Metrics::default()),
            tracking: Mutex::new(Tracking::default()),
            requeue,
            requeued: Mutex::new(Some(requeued)),
            reports: broadcast::channel(256).0,
            permits,
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
        let mut requeued = self
            .requeued
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .ok_or_else(|| exec::Error::Config {
                message: "the controller is already running".into(),
            })?;
        let api = self.api();
        let selectors: Vec<Option<String>> = if self.options.selectors.is_empty() {
            vec![None]
        } else {
            self.options.selectors.iter().cloned().map(Some).collect()
        };
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
                _ = heartbeat.tick() => {}
                Some((ns, name, uid)) = requeued.recv() => {
                    self.tracking().scheduled.remove(&uid);
                    let this = Arc::clone(&self);
                    tokio::spawn(async move { this.look_again(&ns, &name).await });
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
                    Some((_, Ok(Event::Apply(pod) | Event::InitApply(pod)))) => {
                        self.metrics.events.fetch_add(1, Ordering::Relaxed);
                        self.consider(pod);
                    }
                    Some((_, Ok(Event::Delete(pod)))) => {
                        self.metrics.events.fetch_add(1, Ordering::Relaxed);
                        self.forget(&pod);
                    }
                    Some((i, Ok(Event::InitDone))) => {
                        listed[i] = true;
                        if listed.iter().all(|l| *l) {
                            self.metrics.synced.store(true, Ordering::Relaxed);
                        }
                    }
                    Some((_, Ok(Event::Init))) => {}
                    Some((_, Err(e))) => {
                        self.metrics.watch_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "pod watch error; retrying with backoff");
                    }
                    None => break,
                    }
                }
            }
        }
        tracing::info!("controller stopping: waiting for the plans in flight");
        let deadline = tokio::time::Instant::now() + drain;
        while self.metrics.in_flight.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn forget(&self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            let mut t = self.tracking();
            t.finished.remove(uid);
            t.failures.remove(uid);
        }
    }

    async fn look_again(self: Arc<Self>, ns: &str, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(pod)) => self.consider(pod),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not read the pod again");
                self.schedule(ns, name, &format!("{ns}/{name}"), self.options.retry_after);
            }
        }
    }

    /// Looks at one version of a pod and starts its plan when it has work.
    fn consider(self: &Arc<Self>, pod: Pod) {
        let (Some(uid), Some(ns), Some(name)) = (
            pod.metadata.uid.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
        ) else {
            return;
        };
        {
            let t = self.tracking();
            if t.in_flight.contains(&uid) || t.finished.contains(&uid) {
                return;
            }
        }
        let assessment = match self.executor.assess(&pod) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.count(metrics::FAILURES, e.name());
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "the policy could not assess the pod");
                return;
            }
        };
        if !assessment.ready {
            return;
        }
        if assessment.pending.is_empty() {
            self.tracking().finished.insert(uid);
            return;
        }
        if !self.tracking().in_flight.insert(uid.clone()) {
            return;
        }
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            pod = %format!("{ns}/{name}"),
            sidecars = ?assessment.pending,
            readiness = %assessment.reason,
            "pod ready: stopping its sidecars"
        );
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.handle(&uid, &ns, &name).await;
            this.tracking().in_flight.remove(&uid);
            this.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Looks at the pod again after `after`, once per pod however often it is asked.
    fn schedule(&self, ns: &str, name: &str, uid: &str, after: Duration) {
        if !self.tracking().scheduled.insert(uid.to_owned()) {
            return;
        }
        let requeue = self.requeue.clone();
        let key = (ns.to_owned(), name.to_owned(), uid.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            // The receiver is gone only when the controller stopped.
            let _ = requeue.send(key);
        });
    }

    async fn handle(&self, uid: &str, ns: &str, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let identity = &self.options.identity;
        let ttl = self.options.claim_ttl;
        // The semaphore is never closed; without a permit, go on unbounded rather than stall.
        let _permit = self.permits.acquire().await.ok();
        // The pod may have changed while it queued: claim the version there is now.
        let pod = match api.get_opt(name).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                self.failed(ns, name, uid, "get", &e.to_string());
                return;
            }
        };
        match claim::acquire(&api, &pod, identity, ttl).await {
            Ok(Attempt::Won) => {}
            Ok(Attempt::Held { holder, remaining }) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), %holder, "claimed by another controller");
                self.schedule(ns, name, uid, remaining + Duration::from_millis(100));
                return;
            }
            Ok(Attempt::Stale) => {
                self.schedule(ns, name, uid, Duration::from_millis(50));
                return;
            }
            Ok(Attempt::Gone) => return,
            Err(e) => {
                self.failed(ns, name, uid, "claim", &e.to_string());
                return;
            }
        }
        let renew = async {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match claim::renew(&api, name, identity, ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not renew the claim")
                    }
                }
            }
        };
        let result = tokio::select! {
            r = self.executor.stop_pod(ns, name) => Some(r),
            () = renew => None,
        };
        if let Err(e) = claim::release(&api, name, identity).await {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not release the claim; it expires on its own");
        }
        match result {
            None => {
                tracing::warn!(pod = %format!("{ns}/{name}"), "lost the claim to another controller; stopped this plan");
                self.metrics.count(metrics::FAILURES, "claim-lost");
                // Whoever holds it now finishes the plan; if nobody does, look again.
                self.schedule(ns, name, uid, self.options.claim_ttl);
            }
            Some(Err(e)) => self.failed(ns, name, uid, e.name(), &e.to_string()),
            Some(Ok(report)) => {
                self.metrics.record(&report);
                self.tracking().failures.remove(uid);
                let stopped: Vec<&str> = report
                    .containers
                    .iter()
                    .filter(|c| c.verdict == exec::Verdict::Stopped)
                    .map(|c| c.container.as_str())
                    .collect();
                let restarted: Vec<&str> = report
                    .containers
                    .iter()
                    .filter(|c| c.verdict == exec::Verdict::Restarted)
                    .map(|c| c.container.as_str())
                    .collect();
                let end = report.end.as_deref().unwrap_or("-");
                let predicted = exec::predicted_phase(&report.prediction).unwrap_or("-");
                if report.left_running() {
                    tracing::warn!(pod = %format!("{ns}/{name}"), ?stopped, end, predicted, "plan done; a sidecar is still running (see the pod's events)");
                } else if !restarted.is_empty() || report.end_matches == Some(false) {
                    // Restarted sidecars are left alone (the record keeps them finished).
                    tracing::warn!(pod = %format!("{ns}/{name}"), ?stopped, ?restarted, end, predicted, job = ?report.job.as_ref().map(exec::JobReport::describe), "plan done; see the pod's PodOutcome event");
                } else {
                    tracing::info!(pod = %format!("{ns}/{name}"), outcome = ?report.outcome, ?stopped, end, predicted, job = ?report.job.as_ref().map(exec::JobReport::describe), "plan done");
                }
                if matches!(report.outcome, Outcome::Done | Outcome::Gone) {
                    self.tracking().finished.insert(uid.to_owned());
                }
                // Nobody listening is fine.
                let _ = self.reports.send(Arc::new(report));
            }
        }
    }

    fn failed(&self, ns: &str, name: &str, uid: &str, kind: &str, message: &str) {
        self.metrics.count(metrics::FAILURES, kind);
        let attempts = {
            let mut t = self.tracking();
            let n = t.failures.entry(uid.to_owned()).or_default();
            *n = n.saturating_add(1);
            *n
        };
        let delay = self
            .options
            .retry_after
            .saturating_mul(1 << attempts.min(9).saturating_sub(1))
            .min(Duration::from_secs(300));
        tracing::warn!(pod = %format!("{ns}/{name}"), attempts, error = %message, "plan failed; retrying in {delay:?}");
        self.schedule(ns, name, uid, delay);
    }
}
