//! Waits handed back ([`Executor::suspending`]) and sends recorded as begun: the record of a
//! container's step in progress (`sidekill.dev/wait-<container>`), how a wait holds the
//! permit at most the hold, and how a record whose container has ended meanwhile is closed.
//!
//! A record outlives the plan that wrote it: the policy leaves an ended sidecar out of
//! `plan.stops`, so the sidecar whose end the record awaited is no longer among the stops by
//! the time that end is seen. [`Executor::close_ended_waits`] closes such records.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::methods::swapped_end;
use super::pod::PodRef;
use super::records::Done;
use super::run::Stop;
use super::status::{ended, End};
use super::{ContainerReport, Executor, PodReport, StepReport, Verdict};
use crate::answer::ContainerStop;

/// The step of a container in progress, as recorded on the pod in
/// `sidekill.dev/wait-<container>`: a wait handed back to the controller (which step waits,
/// until when, and for what), or a send begun and not yet recorded as done (`started`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Waiting {
    /// The waiting step's index in the container's steps.
    pub step: usize,
    /// The step's identity (records.rs): what names it when another policy version's plan
    /// has it at another index. Absent from an older record: the index names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its deadline, Unix milliseconds.
    pub until: u64,
    /// The instance (`containerID`) whose end is awaited; none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For an `await` step: the container awaited (else the sidecar itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// After an image swap: the nop's end is what is awaited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swap: bool,
    /// A send begun (an exec, a patch, a request) whose end nobody recorded: the executor
    /// that began it stopped (killed, cut off, its claim lost). It is never sent again (a
    /// kill command, an image swap, a quit request are not idempotent): the next executor
    /// looks at the container, which, if still running, gets the plan's next step (the
    /// grace wait, then the next signal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
}

impl Waiting {
    /// Whether what the step waits for has happened on `pod`; for the sidecar's own end, how.
    pub(super) fn met(&self, pod: &Pod, container: &str) -> Option<End> {
        let instance = self.instance.as_deref();
        match (&self.target, self.swap) {
            (Some(target), _) => ended(pod, target, None),
            (None, true) => swapped_end(pod, container, instance),
            (None, false) => ended(pod, container, instance),
        }
    }
}

/// The suspended wait recorded for `container`, if any.
pub(super) fn waiting(pod: &Pod, container: &str) -> Option<Waiting> {
    let key = super::wait_key(container);
    let text = pod.metadata.annotations.as_ref()?.get(&key)?;
    serde_json::from_str(text).ok()
}

/// Milliseconds since the Unix epoch, now: the clock of the records written on pods (waits
/// handed back, claims).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Says whether other pods are waiting for one of the executor's slots.
pub type Contended = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a held wait asks whether it should make way.
const CONTENDED_POLL: Duration = Duration::from_millis(50);

/// How long a wait is held before it makes way for other pods.
const CONTENDED_GRACE: Duration = Duration::from_millis(200);

impl Executor {
    /// This executor, handing waits longer than `hold` back instead of waiting them out: the
    /// wait is recorded on the pod (`sidekill.dev/wait-<container>`, its step, deadline and
    /// what it awaits) and [`stop_pod`](Executor::stop_pod) returns [`Outcome::Waiting`](super::Outcome::Waiting) with
    /// the deadline. Called again for the pod, it resumes the wait from the record: at once
    /// when the awaited container has ended, else until the deadline. The controller uses it
    /// so that a pod's grace period (its owner's choice, up to [`Options::max_wait`](super::Options::max_wait)) never
    /// holds one of the few concurrency slots; `sidekill stop` waits in place.
    #[must_use]
    pub fn suspending(mut self, hold: Duration) -> Executor {
        self.hold = Some(hold);
        self
    }

    /// This executor, handing a wait back before its hold is over as soon as `contended`
    /// says other pods wait for a slot: the hold saves a round trip when a sidecar ends
    /// soon after its signal, never at the cost of a pod that has not had its turn. The
    /// controller says "contended" while its work queue has ready entries.
    #[must_use]
    pub fn yielding(mut self, contended: Contended) -> Executor {
        self.contended = Some(contended);
        self
    }

    /// Watches until `cond` holds or the wait's deadline passes, holding the permit at most
    /// the hold: past it, the wait is recorded on the pod and [`Stop::Suspend`] returned. A
    /// deadline read from the pod is trusted no further than the caps allow.
    pub(super) async fn wait_for(
        &self,
        at: PodRef<'_>,
        (container, done): (&str, &mut Done),
        w: &Waiting,
        cond: impl Fn(&Pod) -> bool,
    ) -> Result<(Option<Pod>, bool), Stop> {
        let PodRef { ns, name, .. } = at;
        let cap = self
            .options
            .await_timeout
            .max(self.options.max_wait + self.options.settle);
        let remaining = Duration::from_millis(w.until.saturating_sub(now_ms())).min(cap);
        match self.hold {
            Some(hold) if remaining > hold => {
                let contended = async {
                    match &self.contended {
                        Some(contended) => {
                            // Most sidecars end within milliseconds of their signal: a wait
                            // handed back at once would cost its pod a record, a release, a
                            // claim and a plan more, for a slot freed a moment later anyway.
                            tokio::time::sleep(CONTENDED_GRACE).await;
                            while !contended() {
                                tokio::time::sleep(CONTENDED_POLL).await;
                            }
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    watched = self.watch_until(ns, name, hold, &cond) => {
                        let (pod, matched) = watched?;
                        if matched {
                            return Ok((pod, true));
                        }
                    }
                    () = contended => {}
                }
                // The plan's last write: it releases the fence (the claim) too.
                self.write_waiting(at, (container, done), Some(w), true)
                    .await?;
                Err(Stop::Suspend(w.until))
            }
            _ => self.watch_until(ns, name, remaining, cond).await,
        }
    }

    /// Writes (or with `None` removes) the container's suspended wait, with the records
    /// `done` owes; `release`: the plan's last write, which removes the fence's annotations.
    pub(super) async fn write_waiting(
        &self,
        at: PodRef<'_>,
        (container, done): (&str, &mut Done),
        w: Option<&Waiting>,
        release: bool,
    ) -> Result<(), Stop> {
        let mut annotations = serde_json::Map::new();
        done.owed_into(&mut annotations);
        let value = w.and_then(|w| serde_json::to_string(w).ok());
        annotations.insert(super::wait_key(container), value.into());
        self.write_record(at, done, annotations, ("recording a wait", release))
            .await
    }

    /// Closes the records of containers the plan no longer stops (an ended sidecar is left
    /// out of `plan.stops`) whose wait was handed back or whose send was begun. A container
    /// that ended is reported as stopped (or restarted), with its end, and its step recorded,
    /// which removes the record: the end its wait awaited has come. A record of a container
    /// still running is only removed: the plan no longer stops it (its policy changed).
    pub(super) async fn close_ended_waits(
        &self,
        at: PodRef<'_>,
        pod: &Pod,
        stops: &[ContainerStop],
        report: &mut PodReport,
    ) -> Result<(), Stop> {
        let planned: BTreeSet<&str> = stops.iter().map(|s| s.container.as_str()).collect();
        let containers = pod.spec.iter().flat_map(|s| &s.containers);
        for container in containers.map(|c| c.name.as_str()) {
            let Some(w) = waiting(pod, container).filter(|_| !planned.contains(container)) else {
                continue;
            };
            let Some(end) = w.met(pod, container) else {
                let mut nothing_owed = Done::read(pod, container, &[]);
                self.write_waiting(at, (container, &mut nothing_owed), None, false)
                    .await?;
                continue;
            };
            // Its step is recorded as the record named it (no plan in hand has it), which
            // also removes the record.
            let mut done = Done::read(pod, container, &[]);
            done.add_entry(&w);
            self.record_all(at, &mut done, &[]).await?;
            let kind = if w.started { "send" } else { "wait" };
            // No step of the plan in hand: the record names only its kind.
            let mut step = StepReport::from_record(w.step, "terminated");
            step.message = Some(format!(
                "resumed from the pod's record: the container ended during this {kind}"
            ));
            let mut c = ContainerReport {
                container: container.to_owned(),
                // A step of it was sent or awaited: the plan that wrote the record stopped it.
                planned: "stops".into(),
                method: None,
                verdict: Verdict::NotRun,
                stopped_after_ms: None,
                exit_code: None,
                predicted_exit: report
                    .prediction
                    .as_ref()
                    .and_then(|o| o.of(container))
                    .map_or(Value::Null, |p| p.exit_code.clone()),
                predicted_result: None,
                exit_matches: None,
                restart_count: None,
                steps: vec![step],
                diagnostics: Vec::new(),
            };
            self.finish(at, &mut c, None, end, &mut done, 0).await?;
            report.containers.push(c);
        }
        Ok(())
    }
}
