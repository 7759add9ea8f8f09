//! Whether a pod has work left, without touching the cluster: what the controller asks of
//! every pod event before it spends an API call on it.

use k8s_openapi::api::core::v1::Pod;

use super::records::Done;
use super::status::{container_state, restarted_before, State};
use super::waits::{now_ms, waiting};
use super::{Executor, Result};

/// What the policy and the pod's own record say about a pod right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The plan's readiness is `ready`: every main container has terminated.
    pub ready: bool,
    /// The plan's readiness reason, for logs.
    pub reason: String,
    /// Sidecars of the plan that are still running (or not yet started) and have steps
    /// not yet recorded as done on the pod. Empty: nothing left to do.
    pub pending: Vec<String>,
    /// A wait handed back earlier ([`Executor::suspending`]) is still running: what it
    /// awaits has not happened, and its deadline (Unix milliseconds) is this.
    pub resume_at_ms: Option<u64>,
}

impl Assessment {
    /// The executor has something to do for this pod now.
    pub fn actionable(&self) -> bool {
        self.ready && !self.pending.is_empty()
    }

    /// How long until its suspended wait ends, when it has one that has not.
    pub fn waits_for(&self) -> Option<std::time::Duration> {
        let until = self.resume_at_ms?;
        let now = now_ms();
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }
}

impl Executor {
    /// Asks the policy for the pod's plan and compares it with the pod's status and its
    /// `sidekill.dev/done-*` record. A sidecar whose every step is recorded is not pending,
    /// even if it still runs: running its steps again is what the record forbids. Nor is one
    /// the kubelet restarted after a step of sidekill's: stopping it again would loop.
    ///
    /// # Errors
    /// A policy that cannot plan the pod, or an answer the host cannot read.
    pub fn assess(&self, pod: &Pod) -> Result<Assessment> {
        let subject = self.plan(pod)?;
        let ready = subject.readiness.is_ready();
        let reason = subject.readiness.reason.clone().unwrap_or_default();
        let stops = &subject.plan.stops;
        let mut resume_at_ms: Option<u64> = None;
        let pending = stops
            .iter()
            .filter_map(|stop| {
                let container = stop.container.as_str();
                let steps = &stop.steps;
                let done = Done::read(pod, container, steps);
                if let Some(w) = waiting(pod, container)
                    .filter(|w| done.resolve(w).is_some_and(|i| !done.contains(&i)))
                {
                    // A wait handed back: pending, now if what it awaits has happened (the
                    // sidecar's end is then reported), else at its deadline.
                    if w.met(pod, container).is_none() {
                        resume_at_ms = Some(resume_at_ms.map_or(w.until, |t| t.min(w.until)));
                    }
                    return Some(container.to_owned());
                }
                if matches!(container_state(pod, container), State::Terminated(_)) {
                    return None;
                }
                let steps = steps.len();
                // A sidecar the plan has no step for (`cannot-stop`) is still reported once,
                // with its fix: pending until its record exists (an empty one).
                if steps == 0 {
                    return (!done.present).then(|| container.to_owned());
                }
                // Restarted by the kubelet after sidekill's stop: the new instance is left
                // alone, whatever the record says (an older sidekill recorded only the steps
                // it ran).
                if !done.is_empty() && restarted_before(pod, container).is_some() {
                    return None;
                }
                (0..steps)
                    .any(|i| !done.contains(&i))
                    .then(|| container.to_owned())
            })
            .collect::<Vec<String>>();
        // A record left by a plan that no longer stops its container (an ended sidecar is
        // left out of the stops): pending now, so that the executor closes it
        // (`close_ended_waits`).
        let planned: Vec<&str> = stops.iter().map(|s| s.container.as_str()).collect();
        let mut pending = pending;
        pending.extend(
            pod.spec
                .iter()
                .flat_map(|s| &s.containers)
                .map(|c| c.name.as_str())
                .filter(|c| !planned.contains(c))
                .filter(|c| waiting(pod, c).is_some())
                .map(str::to_owned),
        );
        Ok(Assessment {
            ready,
            reason,
            pending,
            resume_at_ms,
        })
    }
}
