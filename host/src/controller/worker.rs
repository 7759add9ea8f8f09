//! The workers: each takes a ready pod from the queue (its latest watched version, or a GET),
//! has the executor carry out its plan under a claim that the plan's first write takes and
//! this worker renews, and settles the pod's entry (finished, dropped, looked at again later,
//! or backed off after a failure).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::time::Instant;

use super::claim;
use super::metrics;
use super::queue::Key;
use super::Controller;
use crate::error::Report;
use crate::exec::now_ms;
use crate::exec::{self, backoff, Outcome, PodReport};

/// What a worker did with a pod, and so what becomes of its entry.
pub(super) enum Next {
    /// Nothing more to do for now (gone, not ready, or a policy error logged).
    Drop,
    /// Nothing more to do until the pod is deleted.
    Finished,
    /// Look again after this long (a claim held elsewhere, a wait handed back).
    After(Duration),
    /// Failed: back off. The kind (a metric label), the message, and how long the API
    /// server asked to wait.
    Failed(&'static str, String, Option<Duration>),
}

impl Controller {
    /// One worker: takes ready pods from the queue, one at a time.
    pub(super) async fn work(self: Arc<Self>) {
        loop {
            let next = {
                let mut t = self.tracking();
                let key = t.queue.pop(Instant::now());
                if key.is_some() {
                    self.gauges(&t);
                }
                (key, t.queue.next_due())
            };
            let key = match next {
                (Some(key), _) => key,
                (None, due) => {
                    // Woken by a new entry, or when the next delayed one is due.
                    let until = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                    tokio::select! {
                        () = self.work.notified() => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                    continue;
                }
            };
            let next = self.process(&key).await;
            self.settle(key, next);
        }
    }

    /// What becomes of a pod's entry after its worker is done.
    fn settle(&self, key: Key, next: Next) {
        let pod = format!("{}/{}", key.namespace, key.name);
        let mut t = self.tracking();
        let done = t.queue.done(&key.uid);
        if !matches!(next, Next::After(_)) {
            t.observed.remove(&key.uid);
        }
        let again = match next {
            Next::Drop if done.dirty => Some((None, 0)),
            Next::Drop => None,
            Next::Finished => {
                t.finished.insert(key.uid.clone(), key.origin);
                None
            }
            // It changed meanwhile (what a wait awaits may have happened): look now.
            Next::After(_) if done.dirty => Some((None, 0)),
            Next::After(d) => Some((Some(Instant::now() + d), 0)),
            Next::Failed(kind, message, asked) => {
                self.metrics.count(metrics::FAILURES, kind);
                let attempts = done.failures.saturating_add(1);
                let delay = backoff::delay(
                    self.options.retry_after,
                    attempts,
                    Duration::from_secs(300),
                    asked,
                );
                self.metrics.count(metrics::RETRIES, kind);
                tracing::warn!(%pod, attempts, error = %message, "plan failed; retrying in {delay:?}");
                Some((Some(Instant::now() + delay), attempts))
            }
        };
        if let Some((at, failures)) = again {
            if !t.queue.add_with(key, at, failures) {
                self.metrics.count(metrics::QUEUE_FULL, "full");
            }
            self.work.notify_one();
        }
        self.gauges(&t);
    }

    /// Takes the pod's latest version, and when it still has work and no other controller's
    /// live claim, carries out its plan under a claim of its own.
    async fn process(&self, key: &Key) -> Next {
        let (ns, name, uid) = (&key.namespace, &key.name, &key.uid);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // From here on the executor reads and awaits the pod from the watchers' versions.
        let _working = self.cache.working(ns, name);
        let kept = self.tracking().latest.remove(uid);
        let pod = match kept {
            Some(p) => {
                self.cache.seen(&p);
                Arc::unwrap_or_clone(p)
            }
            None => match api.get_opt(name).await {
                Ok(Some(p)) => {
                    self.cache.seen(&p);
                    p
                }
                Ok(None) => return Next::Drop,
                Err(e) => {
                    let asked = backoff::retry_after(&e);
                    return Next::Failed("get", e.to_string(), asked);
                }
            },
        };
        // A pod recreated under the same name is another pod, with events of its own.
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Next::Drop;
        }
        let assessment = match self.executor.assess(&pod) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.count(metrics::FAILURES, e.name());
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %Report::of(&e), "the policy could not assess the pod");
                return Next::Drop;
            }
        };
        if !assessment.ready {
            return Next::Drop;
        }
        if assessment.pending.is_empty() {
            return Next::Finished;
        }
        if let Some(d) = assessment.waits_for() {
            return Next::After(d);
        }
        let identity = &self.options.identity;
        let live = |c: &claim::Claim| self.claim_live(uid, c);
        let expired = match claim::standing(&pod, identity, live) {
            claim::Standing::Free { expired } => expired,
            claim::Standing::Held { holder, remaining } => {
                tracing::debug!(pod = %format!("{ns}/{name}"), %holder, "claimed by another controller");
                return Next::After(remaining + Duration::from_millis(100));
            }
        };
        tracing::info!(
            pod = %format!("{ns}/{name}"),
            sidecars = ?assessment.pending,
            readiness = %assessment.reason,
            "pod ready: stopping its sidecars"
        );
        // The plan's first write takes the claim; its last releases it.
        let plan = Arc::new(claim::PlanClaim::new(
            identity,
            self.options.claim_ttl,
            expired,
        ));
        let executor = self.executor.clone().fenced(Arc::clone(&plan) as _);
        let result = tokio::select! {
            r = executor.stop_pod_uid(ns, name, Some(uid)) => Some(r),
            () = self.hold_claim(&api, (ns, name, uid), &plan) => None,
        };
        if exec::Fence::taken(&*plan) {
            // A plan cut short leaves its claim: released here (nothing to do when the plan's
            // last write released it: the cache holds that write).
            let latest = self.cache.get(ns, name).map(|p| Pod::clone(&p));
            if let Err(e) = claim::release(&api, latest, (name, uid), identity).await {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not release the claim; it expires on its own");
            }
        }
        match result {
            None => {
                tracing::warn!(pod = %format!("{ns}/{name}"), "the claim was lost or could not be renewed in time; stopped this plan");
                self.metrics.count(metrics::FAILURES, "claim-lost");
                // Whoever holds it now finishes the plan; if nobody does, look again.
                Next::After(self.options.claim_ttl)
            }
            // Not taken: another controller claimed the pod, or it changed, since it was
            // read. Read it again soon (a live claim of another's is then waited out).
            Some(Err(exec::Error::Fenced { .. })) if !exec::Fence::taken(&*plan) => {
                Next::After(Duration::from_millis(50))
            }
            Some(Err(e @ exec::Error::Fenced { .. })) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %Report::of(&e), "stopped this plan");
                self.metrics.count(metrics::FAILURES, "claim-lost");
                Next::After(self.options.claim_ttl)
            }
            Some(Err(e)) => {
                let asked = match &e {
                    exec::Error::Kube { source, .. } => backoff::retry_after(source),
                    _ => None,
                };
                Next::Failed(e.name(), Report::of(&e).to_string(), asked)
            }
            Some(Ok(report)) => self.reported(report),
        }
    }

    /// For how long another controller's claim is live, judged on this controller's clock:
    /// its lifetime from when this exact claim was first seen here (client-go
    /// tools/leaderelection/leaderelection.go isLeaseValid, `observedTime + LeaseDuration`).
    /// A claim without a lifetime (an older sidekill's) is judged by its `until`.
    fn claim_live(&self, uid: &str, c: &claim::Claim) -> Option<Duration> {
        let Some(ttl) = c.ttl_ms else {
            return c.remaining(now_ms());
        };
        let now = Instant::now();
        let mut t = self.tracking();
        let seen = t
            .observed
            .entry(uid.to_owned())
            .or_insert_with(|| (c.text.clone(), now));
        if seen.0 != c.text {
            *seen = (c.text.clone(), now);
        }
        (seen.1 + Duration::from_millis(ttl)).checked_duration_since(now)
    }

    /// Renews the plan's claim, once a write of the plan has taken it, every third of its
    /// lifetime, and returns when it is lost or when no renewal has been confirmed in time. The deadline is
    /// judged on this process's monotonic clock from the moment the last confirmed write
    /// was sent (so it is never later than the API server's idea of the claim's end, however
    /// slow the answer), minus a third of the lifetime as a margin for the clocks of the
    /// other controllers, which judge expiry by the `until` written in the claim; as
    /// client-go's leader election stops leading when it cannot renew within RenewDeadline
    /// (tools/leaderelection/leaderelection.go renew, RenewDeadline < LeaseDuration).
    async fn hold_claim(
        &self,
        api: &Api<Pod>,
        (ns, name, uid): (&str, &str, &str),
        plan: &claim::PlanClaim,
    ) {
        let ttl = self.options.claim_ttl;
        let identity = &self.options.identity;
        let acquired = Instant::from_std(plan.taken_at().await);
        let mut deadline = acquired + ttl * 2 / 3;
        let mut next = acquired + ttl / 3;
        loop {
            tokio::time::sleep_until(next.min(deadline)).await;
            if Instant::now() >= deadline {
                tracing::warn!(pod = %name, "no claim renewal confirmed in time: stopping");
                return;
            }
            let sent = Instant::now();
            let seen = |p: &Pod| self.cache.seen(p);
            // The cache holds every version this controller wrote: a read only on a race.
            let latest = self.cache.get(ns, name).map(|p| Pod::clone(&p));
            let renewal = tokio::time::timeout_at(
                deadline,
                claim::renew(api, latest, (name, uid), (identity, ttl), &seen),
            );
            match renewal.await {
                Ok(Ok(claim::Renewal::Renewed)) => {
                    deadline = sent + ttl * 2 / 3;
                    next = sent + ttl / 3;
                }
                Ok(Ok(claim::Renewal::Lost)) => return,
                // The plan wrote its last record and released the claim with it: what is
                // left (observing the pod's end) writes nothing, so it is not cut short.
                Ok(Ok(claim::Renewal::Released)) => std::future::pending::<()>().await,
                // Not renewed: soon again, within the deadline.
                Ok(Ok(claim::Renewal::Raced)) => next = Instant::now() + ttl / 10,
                Ok(Err(e)) => {
                    self.metrics.count(metrics::RETRIES, "claim-renewal");
                    tracing::warn!(pod = %name, error = %e, "could not renew the claim; retrying");
                    next = Instant::now() + ttl / 10;
                }
                // The deadline passed while the renewal was in flight.
                Err(_) => {}
            }
        }
    }

    /// Logs and counts a plan's report; what becomes of the pod.
    fn reported(&self, report: PodReport) -> Next {
        let (ns, name) = (&report.namespace, &report.name);
        self.metrics.record(&report);
        if report.outcome == Outcome::Waiting {
            let d = report.resume_at_ms.map_or(Duration::ZERO, |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
            tracing::info!(pod = %format!("{ns}/{name}"), "a wait handed back: resuming in {d:?} or when the watch sees its end");
            return Next::After(d);
        }
        let stopped = report.containers_with(&exec::Verdict::Stopped);
        let restarted = report.containers_with(&exec::Verdict::Restarted);
        let end = report.end.as_deref().unwrap_or("-");
        let predicted = report.predicted_phase().unwrap_or("-");
        if report.left_running() {
            tracing::warn!(pod = %format!("{ns}/{name}"), ?stopped, end, predicted, "plan done; a sidecar is still running (see the pod's events)");
        } else if !restarted.is_empty() || report.end_matches == Some(false) {
            // Restarted sidecars are left alone (the record keeps them finished).
            tracing::warn!(pod = %format!("{ns}/{name}"), ?stopped, ?restarted, end, predicted, job = ?report.job.as_ref().map(exec::JobReport::describe), "plan done; see the pod's PodOutcome event");
        } else {
            tracing::info!(pod = %format!("{ns}/{name}"), outcome = ?report.outcome, ?stopped, end, predicted, job = ?report.job.as_ref().map(exec::JobReport::describe), "plan done");
        }
        let next = if matches!(report.outcome, Outcome::Done | Outcome::Gone) {
            Next::Finished
        } else {
            Next::Drop
        };
        // Nobody listening is fine.
        let _ = self.reports.send(Arc::new(report));
        next
    }
}
