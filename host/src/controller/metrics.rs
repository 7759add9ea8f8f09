//! The controller's counters and its `/healthz`, `/readyz` and `/metrics` endpoints.
//!
//! `/metrics` is the OpenMetrics text format as the `prometheus-client` crate writes it
//! (Prometheus scrapes it; counters end in `_total`, the exposition in `# EOF`). The time from
//! a sidecar's first signal to its end is a histogram (`sidekill_stop_seconds`), so its
//! quantiles can be read, not only its mean.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::exec::PodReport;
use crate::http::Response;
use crate::store::PolicyStore;

use crate::exec::now_ms;

/// A gauge of a count.
pub type CountGauge = Gauge<u64, AtomicU64>;

/// A family of counters with one label.
type Labelled = Family<Vec<(&'static str, String)>, Counter>;

/// Counters the controller keeps; shared between its tasks and the HTTP endpoints.
#[derive(Debug)]
pub struct Metrics {
    /// Pod events seen from the watchers.
    pub events: Counter,
    /// Watch errors (each is retried with backoff).
    pub watch_errors: Counter,
    /// Pods whose plan is being carried out now (the work queue's entries in work).
    pub in_flight: CountGauge,
    /// Work queue entries ready for a worker.
    pub queue_ready: CountGauge,
    /// Work queue entries waiting for their time (a backoff, a claim held elsewhere, a
    /// wait handed back).
    pub queue_delayed: CountGauge,
    /// Pods the controller keeps anything about (queued, in work, or finished until they
    /// are deleted): what a pod deleted unseen would leak.
    pub tracked: CountGauge,
    /// Every watcher has listed once.
    pub synced: AtomicBool,
    /// Unix milliseconds of the event loop's last turn: liveness.
    pub heartbeat_ms: AtomicU64,
    /// Unix milliseconds since which a watcher has had only errors (0: every watcher is
    /// healthy): readiness.
    pub watch_failing_since_ms: AtomicU64,
    /// Unix milliseconds of the last error of a failing watcher.
    pub watch_last_error_ms: AtomicU64,
    /// How long a watcher may fail before the controller is not ready, in milliseconds
    /// ([`super::Options::watch_failure_grace`]).
    pub watch_failure_grace_ms: AtomicU64,
    /// The last watch error, for `/readyz`.
    pub watch_last_error: Mutex<String>,
    /// The client's API requests, by verb and resource.
    pub api_requests: Arc<crate::requests::Counts>,
    /// Seconds from a stopped sidecar's first signal to its end.
    stop_seconds: Histogram,
    /// The counters with a label, by family ([`FAMILIES`]).
    labelled: Vec<(&'static str, &'static str, Labelled)>,
    /// Everything above that `/metrics` shows.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::counting(Arc::default())
    }
}

impl Metrics {
    /// Metrics whose `sidekill_api_requests_total` reads `api_requests`.
    pub fn counting(api_requests: Arc<crate::requests::Counts>) -> Metrics {
        let mut registry = Registry::default();
        let events = Counter::default();
        registry.register(
            "sidekill_pod_events",
            "Pod events seen from the watchers.",
            events.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "sidekill_watch_errors",
            "Watch errors (each retried with backoff).",
            watch_errors.clone(),
        );
        // One family of the queue's states; `running` is also shown on its own. A gauge's
        // clones share its value: the controller sets the ones it keeps.
        let depth = Family::<Vec<(&'static str, &'static str)>, CountGauge>::default();
        let state = |s: &'static str| depth.get_or_create_owned(&vec![("state", s)]);
        let (queue_ready, queue_delayed, in_flight) =
            (state("ready"), state("delayed"), state("running"));
        registry.register(
            "sidekill_queue_depth",
            "Work queue entries, by state.",
            depth,
        );
        registry.register(
            "sidekill_pods_in_flight",
            "Pods whose plan is being carried out.",
            in_flight.clone(),
        );
        let tracked = CountGauge::default();
        registry.register(
            "sidekill_tracked_pods",
            "Pods the controller keeps state for (queued or finished, until deleted).",
            tracked.clone(),
        );
        let mut labelled = Vec::new();
        for (family, label, help) in FAMILIES {
            let counters = Labelled::default();
            let name = family.strip_suffix("_total").unwrap_or(family);
            registry.register(name, help, counters.clone());
            labelled.push((family, label, counters));
        }
        // From 10 ms to about 82 s: a sidecar that honours SIGTERM ends in milliseconds, one
        // that needs its grace period in seconds to minutes.
        let stop_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "sidekill_stop_seconds",
            "Seconds from a stopped sidecar's first signal to its termination.",
            stop_seconds.clone(),
        );
        Metrics {
            events,
            watch_errors,
            in_flight,
            queue_ready,
            queue_delayed,
            tracked,
            synced: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            watch_failing_since_ms: AtomicU64::new(0),
            watch_last_error_ms: AtomicU64::new(0),
            watch_failure_grace_ms: AtomicU64::new(0),
            watch_last_error: Mutex::new(String::new()),
            api_requests,
            stop_seconds,
            labelled,
            registry,
        }
    }

    fn family(&self, family: &str) -> Option<(&'static str, &Labelled)> {
        self.labelled
            .iter()
            .find(|(f, _, _)| *f == family)
            .map(|(_, label, counters)| (*label, counters))
    }

    /// Adds one to a labelled counter.
    pub fn count(&self, family: &'static str, label: &str) {
        self.add(family, label, 1);
    }

    /// Adds `n` to a labelled counter.
    pub fn add(&self, family: &'static str, label: &str, n: u64) {
        if let Some((key, counters)) = self.family(family) {
            counters
                .get_or_create(&vec![(key, label.to_owned())])
                .inc_by(n);
        }
    }

    /// A labelled counter's value (0 when never counted).
    pub fn get(&self, family: &'static str, label: &str) -> u64 {
        // `get`, not `get_or_create`: reading a counter adds no series to `/metrics`.
        self.family(family)
            .and_then(|(key, counters)| Some(counters.get(&vec![(key, label.to_owned())])?.get()))
            .unwrap_or(0)
    }

    /// Counts what one carried-out plan did.
    pub fn record(&self, report: &PodReport) {
        self.count(PLANS, report.outcome.name());
        if let Some(end) = &report.end {
            self.count(POD_ENDS, end);
            let matched = match report.end_matches {
                Some(true) => "match",
                Some(false) => "mismatch",
                None => "unknown",
            };
            self.count(PREDICTIONS, matched);
        }
        for c in &report.containers {
            self.count(CONTAINERS, c.verdict.name());
            for s in &c.steps {
                self.count(STEPS, &s.result);
            }
            if let Some(ms) = c.stopped_after_ms {
                #[allow(clippy::cast_precision_loss)] // milliseconds under 2^53
                self.stop_seconds.observe(ms as f64 / 1000.0);
            }
        }
    }

    /// The text of `/metrics`.
    pub fn render(&self, store: &PolicyStore) -> String {
        // What the policy store and the client's layer count is read at each scrape.
        let mut scrape = Registry::default();
        let live = store.live();
        scrape.register(
            "sidekill_policy",
            "The live policy module.",
            Info::new(vec![
                ("name", live.policy.info().name.clone()),
                ("version", live.policy.info().version.clone()),
                ("sha256", live.policy.sha256().to_string()),
                ("origin", live.origin.clone()),
            ]),
        );
        let stats = store.stats();
        for (name, help, value) in [
            (
                "sidekill_policy_switches",
                "Policy versions that went live (rollbacks included).",
                stats.switches,
            ),
            (
                "sidekill_policy_refusals",
                "Policy candidates refused; the live version kept serving.",
                stats.refusals,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            scrape.register(name, help, counter);
        }
        let requests = Family::<Vec<(&'static str, String)>, Counter>::default();
        for (request, n) in self.api_requests.snapshot() {
            requests
                .get_or_create(&vec![("request", request)])
                .inc_by(n);
        }
        scrape.register(
            "sidekill_api_requests",
            "Kubernetes API requests sent, by verb and resource.",
            requests,
        );
        let mut s = String::new();
        // Writing to a String does not fail.
        let _ = encode_registry(&mut s, &scrape)
            .and_then(|()| encode_registry(&mut s, &self.registry))
            .and_then(|()| encode_eof(&mut s));
        s
    }

    /// Answers the controller's HTTP endpoints. Liveness fails when the event loop has not
    /// turned for `stall`; readiness needs every watcher to have listed once and none to
    /// have failed without a success for longer than the watch failure grace.
    pub fn endpoint(&self, store: &PolicyStore, path: &str, stall: Duration) -> Response {
        match path {
            "healthz" | "livez" => {
                let idle = now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed));
                if u128::from(idle) > stall.as_millis() {
                    Response::text(
                        "503 Service Unavailable",
                        format!("event loop stalled for {idle} ms\n"),
                    )
                } else {
                    Response::text("200 OK", "ok\n")
                }
            }
            "readyz" => {
                let now = now_ms();
                let since = self.watch_failing_since_ms.load(Ordering::Relaxed);
                let failing = now.saturating_sub(since);
                let grace = self.watch_failure_grace_ms.load(Ordering::Relaxed);
                // Still failing: its errors keep coming. A watcher that recovered on a quiet
                // selector yields no event, so errors that stopped for twice the grace (the
                // watcher's backoff stays below it) count as recovered.
                let erring = now.saturating_sub(self.watch_last_error_ms.load(Ordering::Relaxed))
                    <= grace.saturating_mul(2);
                if !self.synced.load(Ordering::Relaxed) {
                    Response::text(
                        "503 Service Unavailable",
                        "the pod watchers have not listed yet\n",
                    )
                } else if since != 0 && failing >= grace && erring {
                    // A watch that keeps failing (an outage, a permission taken away) means
                    // no pod event reaches this controller: not ready, with the reason.
                    let error = self
                        .watch_last_error
                        .lock()
                        .map(|e| e.clone())
                        .unwrap_or_default();
                    Response::text(
                        "503 Service Unavailable",
                        format!(
                            "the pod watch has failed for {} s: {}\n",
                            failing / 1000,
                            crate::escape::text(&error)
                        ),
                    )
                } else {
                    Response::text("200 OK", "ok\n")
                }
            }
            "metrics" => Response::ok(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.render(store),
            ),
            _ => Response::text("404 Not Found", "healthz, readyz or metrics\n"),
        }
    }
}

/// Plans carried out, by outcome.
pub const PLANS: &str = "sidekill_plans_total";
/// Containers handled, by verdict.
pub const CONTAINERS: &str = "sidekill_containers_total";
/// Steps, by result.
pub const STEPS: &str = "sidekill_steps_total";
/// Failures, by kind.
pub const FAILURES: &str = "sidekill_failures_total";
/// Pods whose plan ran, by how they ended (`Succeeded`, `Failed`, `NeverCompletes`,
/// `Running` when not ended within the executor's `outcome_timeout`).
pub const POD_ENDS: &str = "sidekill_pods_by_phase_total";
/// Pods whose plan ran, by whether their end was the predicted one.
pub const PREDICTIONS: &str = "sidekill_pod_predictions_total";
/// Pods looked at again after a failure, by kind (claim renewals retried included).
pub const RETRIES: &str = "sidekill_retries_total";
/// Pods not queued because the work queue was full.
pub const QUEUE_FULL: &str = "sidekill_queue_full_total";
const FAMILIES: [(&str, &str, &str); 8] = [
    (
        RETRIES,
        "kind",
        "Pods looked at again after a failure (jittered backoff), and claim renewals retried.",
    ),
    (
        QUEUE_FULL,
        "reason",
        "Pods not queued because the work queue was full (each comes back with its next event).",
    ),
    (PLANS, "outcome", "Pod plans carried out, by outcome."),
    (
        POD_ENDS,
        "phase",
        "Pods whose plan ran, by final phase (NeverCompletes: a sidecar restarted or left running).",
    ),
    (
        PREDICTIONS,
        "result",
        "Pods whose plan ran, by whether the final phase was the predicted one.",
    ),
    (CONTAINERS, "verdict", "Sidecars handled, by verdict."),
    (STEPS, "result", "Plan steps, by result."),
    (
        FAILURES,
        "kind",
        "Pods that failed (API or policy errors), by kind; each is retried.",
    ),
];

/// Serves the endpoints on `listener` on a thread of its own.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_server(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<PolicyStore>,
    stall: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sidekill-health".into())
        .spawn(move || {
            crate::http::serve(
                listener,
                Arc::new(move |path: &str| metrics.endpoint(&store, path, stall)),
            );
        })
        .map(drop)
}
