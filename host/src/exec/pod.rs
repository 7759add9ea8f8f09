//! A pod's plan from start to end: the plan asked of the policy, each stop carried out in
//! order, and the pod's end observed against the prediction (phase, exit codes, its Job).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{json, Value};

use super::api::{forbidden_message, is_not_found};
use super::executor::Executor;
use super::run::{step_report, Stop};
use super::status::{ended, status_of};
use super::{ContainerReport, Error, JobReport, Outcome, Planner, PodReport, Result, Verdict};
use crate::answer::{PlanAnswer, Readiness, Subject};

/// The pod a plan is carried out on: every write of the plan names its UID, so that none
/// lands on a pod recreated under the name.
#[derive(Debug, Clone, Copy)]
pub(super) struct PodRef<'a> {
    /// The namespace.
    pub ns: &'a str,
    /// The name.
    pub name: &'a str,
    /// The UID the plan was made for.
    pub uid: &'a str,
}

/// The name of a Job's pod's Job: its controller owner reference of kind Job, else its
/// `batch.kubernetes.io/job-name` or `job-name` label.
pub(super) fn job_name(pod: &Pod) -> Option<String> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job" && o.api_version.starts_with("batch/"))
        .map(|o| o.name.clone());
    owner.or_else(|| {
        let labels = pod.metadata.labels.as_ref()?;
        ["batch.kubernetes.io/job-name", "job-name"]
            .iter()
            .find_map(|l| labels.get(*l).cloned())
    })
}

impl Executor {
    /// Asks the policy for the pod's plan (the first subject of the answer, read and checked
    /// as [`crate::answer`] reads it).
    pub(super) fn plan(&self, pod: &Pod) -> Result<Subject> {
        let mut object =
            serde_json::to_value(pod).map_err(|_| Error::Answer { field: "request" })?;
        super::redact::redact(&mut object);
        let request = json!({
            "object": object,
            "facts": {
                "podsProxy": self.options.pods_proxy,
                "stopMethods": self.stop_methods(pod.metadata.namespace.as_deref().unwrap_or("default")),
            },
        });
        let bytes = serde_json::to_vec(&request).map_err(|_| Error::Answer { field: "request" })?;
        let answer = self.planner.plan(&bytes).map_err(|source| Error::Policy {
            source: Box::new(source),
        })?;
        let answer = PlanAnswer::read(&answer).map_err(|source| Error::Policy {
            source: Box::new(source),
        })?;
        answer.subjects.into_iter().next().ok_or(Error::Answer {
            field: "subjects[0]",
        })
    }

    /// Stops the sidecars of one pod, as its plan says. Waits for a permit first (at most
    /// [`Options::concurrency`](super::Options::concurrency) pods at once per executor).
    ///
    /// # Errors
    /// A non-transient API error, or transient ones past the retries; a policy that cannot
    /// plan the pod. A pod that is gone is not an error ([`Outcome::Gone`]).
    pub async fn stop_pod(&self, namespace: &str, name: &str) -> Result<PodReport> {
        self.stop_pod_uid(namespace, name, None).await
    }

    /// [`Executor::stop_pod`] for the pod with `uid` only: a pod recreated under the name
    /// since (another UID) is not this plan's, and the report says [`Outcome::Gone`]. Every
    /// write of the plan names the UID it was planned for, so none lands on such a pod.
    ///
    /// # Errors
    /// As [`Executor::stop_pod`].
    pub async fn stop_pod_uid(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<PodReport> {
        let _permit = self.permits.acquire().await.ok();
        let mut report = PodReport {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            outcome: Outcome::Gone,
            readiness: Readiness::default(),
            policy: self.planner.version(),
            containers: Vec::new(),
            diagnostics: Vec::new(),
            prediction: None,
            phase: None,
            end: None,
            end_matches: None,
            job: None,
            resume_at_ms: None,
        };
        if !self.options.scope.is_empty() && !self.options.scope.iter().any(|n| n == namespace) {
            return Err(Error::OutOfScope {
                namespace: namespace.to_owned(),
                scope: self.options.scope.clone(),
            });
        }
        let Some(pod) = self.get(namespace, name).await? else {
            return Ok(report);
        };
        if uid.is_some_and(|u| pod.metadata.uid.as_deref() != Some(u)) {
            return Ok(report);
        }
        self.ask_permissions(namespace).await;
        let subject = self.plan(&pod)?;
        report.readiness = subject.readiness.clone();
        report.prediction = subject.plan.outcome.clone();
        report.diagnostics = subject.diagnostics.clone();
        for stop in &subject.plan.stops {
            let container = stop.container.clone();
            let predicted = report.prediction.as_ref().and_then(|o| o.of(&container));
            report.containers.push(ContainerReport {
                predicted_exit: predicted.map_or(Value::Null, |p| p.exit_code.clone()),
                predicted_result: predicted.and_then(|p| p.result.clone()),
                exit_matches: None,
                restart_count: None,
                method: stop.method.as_ref().and_then(|m| m.kind.clone()),
                planned: stop.verdict.clone().unwrap_or_default(),
                diagnostics: subject.diagnostics_of(&container).cloned().collect(),
                container,
                verdict: Verdict::NotRun,
                stopped_after_ms: None,
                exit_code: None,
                steps: Vec::new(),
            });
        }
        let ready = report.readiness.is_ready();
        let stops = &subject.plan.stops;
        if self.options.dry_run {
            report.outcome = Outcome::DryRun;
            for (c, stop) in report.containers.iter_mut().zip(stops) {
                for (index, step) in stop.steps.iter().enumerate() {
                    c.steps.push(step_report(index, step, "dry-run"));
                }
            }
            return Ok(report);
        }
        if !ready && !self.options.force {
            report.outcome = Outcome::NotReady;
            return Ok(report);
        }
        report.outcome = Outcome::Done;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let at = PodRef {
            ns: namespace,
            name,
            uid: &uid,
        };
        let commands = self.planner.commands();
        let mains = subject.mains();
        let mut owed = serde_json::Map::new();
        for (i, stop) in stops.iter().enumerate() {
            let container = &mut report.containers[i];
            match self
                .stop_container(at, stop, (&mains, &commands), container, &mut owed)
                .await
            {
                Ok(()) => {}
                Err(Stop::Gone) => {
                    report.outcome = Outcome::Gone;
                    return Ok(report);
                }
                Err(Stop::Suspend(until)) => {
                    report.outcome = Outcome::Waiting;
                    report.resume_at_ms = Some(until);
                    return Ok(report);
                }
                Err(Stop::Err(e)) => return Err(e),
            }
        }
        match self.close_ended_waits(at, &pod, stops, &mut report).await {
            Ok(()) => {}
            Err(Stop::Gone) => {
                report.outcome = Outcome::Gone;
                return Ok(report);
            }
            // close_ended_waits() writes no wait.
            Err(Stop::Suspend(_)) => {}
            Err(Stop::Err(e)) => return Err(e),
        }
        // One write for the records owed and the fence's release: the plan writes nothing
        // after it (observing the pod's end reads and records Events only).
        match self.write_last(at, owed).await {
            Ok(()) | Err(Stop::Suspend(_)) => {}
            Err(Stop::Gone) => {
                report.outcome = Outcome::Gone;
                return Ok(report);
            }
            Err(Stop::Err(e)) => return Err(e),
        }
        match self.observe(at, &mut report).await {
            Ok(()) => {}
            Err(Stop::Gone) => report.outcome = Outcome::Gone,
            // observe() writes no wait.
            Err(Stop::Suspend(_)) => {}
            Err(Stop::Err(e)) => return Err(e),
        }
        Ok(report)
    }

    /// After the plan: watches the pod until its end is known (a final phase; or a sidecar
    /// restarted, whose new instance has started, or left running: the pod never completes),
    /// at most [`Options::outcome_timeout`]; then fills in the report's phase, end, each
    /// container's exit code and restart count against the prediction, and the Job; and records
    /// the comparison as an Event (`PodOutcome`).
    pub(super) async fn observe(&self, at: PodRef<'_>, report: &mut PodReport) -> Result<(), Stop> {
        let PodRef { ns, name, .. } = at;
        let left_running = report.left_running();
        let restarted: Vec<(String, i32)> = report
            .containers
            .iter()
            .filter(|c| c.verdict == Verdict::Restarted)
            .map(|c| (c.container.clone(), c.restart_count.unwrap_or(0)))
            .collect();
        // A restarted sidecar is settled once its next instance is counted (the kubelet counts
        // a restart when it starts the new instance: kuberuntime_container.go startContainer).
        let settled = |p: &Pod| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
                || left_running
                || (!restarted.is_empty()
                    && restarted.iter().all(|(c, before)| {
                        status_of(p, c).is_some_and(|cs| cs.restart_count > *before)
                    }))
        };
        let (pod, _) = self
            .watch_until(ns, name, self.options.outcome_timeout, settled)
            .await?;
        let pod = match pod {
            Some(p) => p,
            None => self.get(ns, name).await?.ok_or(Stop::Gone)?,
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        let end = match phase.as_str() {
            "Succeeded" | "Failed" => phase.clone(),
            _ if left_running || !restarted.is_empty() => "NeverCompletes".into(),
            _ => "Running".into(),
        };
        report.end_matches = match (report.predicted_phase(), end.as_str()) {
            (None | Some("Unknown"), _) | (_, "Running") => None,
            (Some(p), e) => Some(p == e),
        };
        report.phase = Some(phase);
        report.end = Some(end);
        for c in &mut report.containers {
            if let Some(cs) = status_of(&pod, &c.container) {
                c.restart_count = Some(cs.restart_count);
            }
            if c.exit_code.is_none() {
                if let Some(e) = ended(&pod, &c.container, None) {
                    c.exit_code = Some(e.code);
                }
            }
            c.exit_matches = match (c.exit_code, c.predicted_exit.as_i64()) {
                (Some(actual), Some(predicted)) => Some(i64::from(actual) == predicted),
                _ => None,
            };
        }
        // The Job is read (polled until it has counted the pod) only when the PodOutcome Event
        // will show it: with Warnings-only Events, a pod that ended as predicted costs no read.
        let shown = self.options.events == super::Events::All || report.end_matches == Some(false);
        if let Some(job) = job_name(&pod).filter(|_| shown) {
            report.job = Some(self.job(ns, &job, report.end.as_deref()).await);
        }
        let mut parts = vec![format!(
            "pod {} (predicted {})",
            report.end.as_deref().unwrap_or("?"),
            report.predicted_phase().unwrap_or("nothing")
        )];
        for c in &report.containers {
            if let Some(code) = c.exit_code {
                parts.push(format!(
                    "{} exit {code} (predicted {}){}",
                    c.container,
                    match &c.predicted_exit {
                        Value::Null => "nothing".to_owned(),
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    },
                    if c.verdict == Verdict::Restarted {
                        format!(", restarted ({} restarts)", c.restart_count.unwrap_or(0))
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if let Some(job) = &report.job {
            parts.push(job.describe());
        }
        let kind = if report.end_matches == Some(false) {
            "Warning"
        } else {
            "Normal"
        };
        self.event(at, kind, "PodOutcome", &parts.join("; ")).await;
        Ok(())
    }

    /// The pod's Job as the report shows it, polled (at most [`Options::outcome_timeout`])
    /// until the Job controller has counted the pod's end: a terminal condition (`Complete`,
    /// `Failed`), or the pod among `failed` when it failed. A Job sidekill may not read, or
    /// that is not there, is reported as not visible: the report is best effort.
    pub(super) async fn job(&self, ns: &str, name: &str, end: Option<&str>) -> JobReport {
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let deadline = tokio::time::Instant::now() + self.options.outcome_timeout;
        let mut report = JobReport {
            name: name.to_owned(),
            ..JobReport::default()
        };
        loop {
            match self.retry("get job", || api.get(name)).await {
                Ok(job) => {
                    let status = job.status.unwrap_or_default();
                    report.visible = true;
                    report.note = None;
                    report.conditions = status
                        .conditions
                        .iter()
                        .flatten()
                        .filter(|c| c.status == "True")
                        .map(|c| match &c.reason {
                            Some(r) if !r.is_empty() => format!("{} ({r})", c.type_),
                            _ => c.type_.clone(),
                        })
                        .collect();
                    report.succeeded = status.succeeded.unwrap_or(0);
                    report.failed = status.failed.unwrap_or(0);
                    report.active = status.active.unwrap_or(0);
                    let terminal = report
                        .conditions
                        .iter()
                        .any(|c| c.starts_with("Complete") || c.starts_with("Failed"));
                    let counted = end == Some("Failed") && report.failed > 0;
                    if terminal || counted || !matches!(end, Some("Succeeded" | "Failed")) {
                        return report;
                    }
                }
                Err(e) => {
                    report.visible = false;
                    report.note = Some(match forbidden_message(&e) {
                        Some(m) => format!(
                            "{m}; {} grants it with the rule `{}`",
                            super::deploy_rule("jobs").0,
                            super::deploy_rule("jobs").1
                        ),
                        None if is_not_found(&e) => format!("job {ns}/{name} not found"),
                        None => e.to_string(),
                    });
                    return report;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
