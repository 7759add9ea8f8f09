//! The controller's counters and its `/healthz`, `/readyz` and `/metrics` endpoints
//! (Prometheus text format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exec::PodReport;
use crate::http::Response;
use crate::store::PolicyStore;

use super::claim::now_ms;

/// Counters the controller keeps; shared between its tasks and the HTTP endpoints.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Pod events seen from the watchers.
    pub events: AtomicU64,
    /// Watch errors (each is retried with backoff).
    pub watch_errors: AtomicU64,
    /// Pods whose plan is being carried out now (the work queue's entries in work).
    pub in_flight: AtomicU64,
    /// Work queue entries ready for a worker.
    pub queue_ready: AtomicU64,
    /// Work queue entries waiting for their time (a backoff, a claim held elsewhere, a
    /// wait handed back).
    pub queue_delayed: AtomicU64,
    /// Pods the controller keeps anything about (queued, in work, or finished until they
    /// are deleted): what a pod deleted unseen would leak.
    pub tracked: AtomicU64,
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
    labelled: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Metrics whose `sidekill_api_requests_total` reads `api_requests`.
    pub fn counting(api_requests: Arc<crate::requests::Counts>) -> Metrics {
        Metrics {
            api_requests,
            ..Metrics::default()
        }
    }

    /// Adds one to a labelled counter.
    pub fn count(&self, family: &'static str, label: &str) {
        self.add(family, label, 1);
    }

    /// Adds `n` to a labelled counter.
    pub fn add(&self, family: &'static str, label: &str, n: u64) {
        if let Ok(mut map) = self.labelled.lock() {
            *map.entry((family, label.to_owned())).or_default() += n;
        }
    }

    /// A labelled counter's value (0 when never counted).
    pub fn get(&self, family: &'static str, label: &str) -> u64 {
        self.labelled
            .lock()
            .ok()
            .and_then(|m| m.get(&(family, label.to_owned())).copied())
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
                self.add(STOP_MS_SUM, "", ms);
                self.count(STOP_MS_COUNT, "");
            }
        }
    }

    /// The text of `/metrics`.
    pub fn render(&self, store: &PolicyStore) -> String {
        let mut s = String::new();
        let gauge = |s: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let counter = |s: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let live = store.live();
        let _ = writeln!(
            s,
            "# HELP sidekill_policy_info The live policy module.\n# TYPE sidekill_policy_info gauge\n\
             sidekill_policy_info{{name=\"{}\",version=\"{}\",sha256=\"{}\",origin=\"{}\"}} 1",
            escape(&live.policy.info().name),
            escape(&live.policy.info().version),
            live.policy.sha256(),
            escape(&live.origin)
        );
        let stats = store.stats();
        counter(
            &mut s,
            "sidekill_policy_switches_total",
            "Policy versions that went live (rollbacks included).",
            stats.switches,
        );
        counter(
            &mut s,
            "sidekill_policy_refusals_total",
            "Policy candidates refused; the live version kept serving.",
            stats.refusals,
        );
        counter(
            &mut s,
            "sidekill_pod_events_total",
            "Pod events seen from the watchers.",
            self.events.load(Ordering::Relaxed),
        );
        counter(
            &mut s,
            "sidekill_watch_errors_total",
            "Watch errors (each retried with backoff).",
            self.watch_errors.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "sidekill_pods_in_flight",
            "Pods whose plan is being carried out.",
            self.in_flight.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP sidekill_queue_depth Work queue entries, by state.\n\
             # TYPE sidekill_queue_depth gauge\n\
             sidekill_queue_depth{{state=\"ready\"}} {}\n\
             sidekill_queue_depth{{state=\"delayed\"}} {}\n\
             sidekill_queue_depth{{state=\"running\"}} {}",
            self.queue_ready.load(Ordering::Relaxed),
            self.queue_delayed.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "sidekill_tracked_pods",
            "Pods the controller keeps state for (queued or finished, until deleted).",
            self.tracked.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP sidekill_api_requests_total Kubernetes API requests sent, by verb and resource.\n\
             # TYPE sidekill_api_requests_total counter"
        );
        for (request, n) in self.api_requests.snapshot() {
            let _ = writeln!(
                s,
                "sidekill_api_requests_total{{request=\"{}\"}} {n}",
                escape(&request)
            );
        }
        let map = self.labelled.lock().map(|m| m.clone()).unwrap_or_default();
        for (family, label, help) in FAMILIES {
            let _ = writeln!(s, "# HELP {family} {help}\n# TYPE {family} counter");
            for ((f, value), n) in &map {
                if *f == family {
                    let _ = writeln!(s, "{family}{{{label}=\"{}\"}} {n}", escape(value));
                }
            }
        }
        for (name, help) in [
            (
                STOP_MS_SUM,
                "Sum over stopped sidecars of milliseconds from the first signal to termination.",
            ),
            (
                STOP_MS_COUNT,
                "Stopped sidecars counted in sidekill_stop_milliseconds_sum.",
            ),
        ] {
            counter(&mut s, name, help, self.get(name, ""));
        }
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
                "text/plain; version=0.0.4; charset=utf-8",
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
const STOP_MS_SUM: &str = "sidekill_stop_milliseconds_sum";
const STOP_MS_COUNT: &str = "sidekill_stop_milliseconds_count";

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

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
