//! What the executor reports: per pod ([`PodReport`], its [`Outcome`] and [`JobReport`]), per
//! container ([`ContainerReport`], its [`Verdict`]) and per step ([`StepReport`]), as `sidekill
//! stop` prints them (table or JSON) and the controller counts them.

use serde_json::Value;

use crate::answer::{Diagnostic, Readiness, Step};

#[cfg(doc)]
use super::Executor;

/// What happened to a whole pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The plan was carried out (see each container's verdict).
    Done,
    /// The plan's readiness was not `ready` and `force` was off: nothing ran.
    NotReady,
    /// Dry run: nothing ran.
    DryRun,
    /// The pod went away (404) before or while its plan ran.
    Gone,
    /// A wait longer than the hold was handed back ([`Executor::suspending`]): call again at
    /// [`PodReport::resume_at_ms`], or once the awaited container has ended.
    Waiting,
}

/// The final verdict for one container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It terminated after sidekill's steps.
    Stopped,
    /// It had terminated before sidekill acted.
    AlreadyTerminated,
    /// Every step ran and it is still running.
    StillRunning,
    /// It terminated after sidekill's steps and the kubelet restarted it (a non-zero exit
    /// under `restartPolicy: OnFailure`); [`ContainerReport::restart_count`] is the evidence.
    /// Never stopped again: the new instance is left alone.
    Restarted,
    /// Nothing was run (dry run, not ready, or the pod went away first).
    NotRun,
}

/// One step as carried out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Index of the step in the container's `steps`.
    pub index: usize,
    /// The step as the plan gave it; none for a step known only from the pod's record (a
    /// plan that no longer has it).
    pub step: Option<Step>,
    /// `ran`, `skipped-recorded`, `skipped-terminated`, `dry-run`, `failed`, `dropped`,
    /// `refused`, `terminated`, `timeout`.
    pub result: String,
    /// The exit code of an exec, when its status said one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The status message of an exec, or the HTTP status line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard output (bounded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Standard error (bounded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Milliseconds from the step's start to the container's termination, when seen
    /// during the step's watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated_after_ms: Option<u64>,
    /// How long the step took, in milliseconds.
    pub millis: u64,
}

impl StepReport {
    /// The report of step `index` known only from the pod's record.
    pub(super) fn from_record(index: usize, result: &str) -> StepReport {
        StepReport {
            index,
            step: None,
            result: result.to_owned(),
            exit_code: None,
            message: None,
            stdout: String::new(),
            stderr: String::new(),
            terminated_after_ms: None,
            millis: 0,
        }
    }
}

/// One container of the plan, as carried out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReport {
    /// The container.
    pub container: String,
    /// The plan's verdict (`stops`, `may-stop`, `cannot-stop`).
    pub planned: String,
    /// The plan's stop method (`exec`, `image-swap`, `ephemeral`, `none`; `method.kind`,
    /// ABI 1.3), when the answer has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// What happened.
    pub verdict: Verdict,
    /// Milliseconds from the first send to the container's termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_after_ms: Option<u64>,
    /// Exit code of the terminated container (of the instance sidekill stopped, when the
    /// kubelet restarted it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The exit code the plan predicted (`plan.outcome.containers[].exitCode`: a number or
    /// `"unknown"`; null when the answer has no outcome).
    pub predicted_exit: Value,
    /// The plan's predicted result for the container (`succeeds`, `fails`, `restarted`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_result: Option<String>,
    /// Whether the actual exit code is the predicted one; `None` when either is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_matches: Option<bool>,
    /// The container's restart count when the report was made (the evidence of
    /// [`Verdict::Restarted`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// The steps.
    pub steps: Vec<StepReport>,
    /// The plan's diagnostics for this container (when it is still running).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// One pod, as carried out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What happened to the pod as a whole.
    pub outcome: Outcome,
    /// The plan's readiness (`state` and `reason`).
    pub readiness: Readiness,
    /// The policy version that planned it.
    pub policy: String,
    /// One entry per stop of the plan, in plan order.
    pub containers: Vec<ContainerReport>,
    /// Every diagnostic of the plan.
    pub diagnostics: Vec<Diagnostic>,
    /// The plan's prediction (`plan.outcome`: `pod`, `containers`, `argoStep`); null when the
    /// answer has none (a policy older than ABI 1.2).
    pub prediction: Option<crate::answer::Outcome>,
    /// The pod's phase when the report was made (after the plan, see
    /// [`Options::outcome_timeout`](super::Options::outcome_timeout)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// How the pod ended, in the prediction's terms: `Succeeded`, `Failed`, `NeverCompletes`
    /// (a sidecar was restarted or left running), or `Running` (not ended within
    /// [`Options::outcome_timeout`](super::Options::outcome_timeout)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Whether [`PodReport::end`] is the predicted phase; `None` when the prediction is
    /// `Unknown` or the pod had not ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_matches: Option<bool>,
    /// The pod's Job, for a Job's pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobReport>,
    /// For [`Outcome::Waiting`]: when the wait handed back ends, Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_at_ms: Option<u64>,
}

/// A Job's pod's Job, as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// The Job's name (from the pod's owner reference, else its `job-name` label).
    pub name: String,
    /// Whether sidekill could read the Job.
    pub visible: bool,
    /// The Job's conditions whose status is `True` (`Complete`, `Failed`, `SuccessCriteriaMet`,
    /// `FailureTarget`, ...), each as `Type` or `Type (Reason)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    /// `status.succeeded`.
    pub succeeded: i32,
    /// `status.failed`.
    pub failed: i32,
    /// `status.active`.
    pub active: i32,
    /// Why the Job is not visible (404, 403 and what grants it), when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl JobReport {
    /// One line: `Job etl: Complete, succeeded 1, failed 0, active 0`.
    pub fn describe(&self) -> String {
        if !self.visible {
            return format!(
                "Job {}: not visible ({})",
                self.name,
                self.note.as_deref().unwrap_or("?")
            );
        }
        format!(
            "Job {}: {}, succeeded {}, failed {}, active {}",
            self.name,
            if self.conditions.is_empty() {
                "no condition yet".to_owned()
            } else {
                self.conditions.join(", ")
            },
            self.succeeded,
            self.failed,
            self.active
        )
    }
}

impl Outcome {
    /// The outcome's name, as in JSON output and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::NotReady => "not-ready",
            Outcome::DryRun => "dry-run",
            Outcome::Gone => "gone",
            Outcome::Waiting => "waiting",
        }
    }
}

impl Verdict {
    /// The verdict's name, as in JSON output and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Stopped => "stopped",
            Verdict::AlreadyTerminated => "already-terminated",
            Verdict::StillRunning => "still-running",
            Verdict::Restarted => "restarted",
            Verdict::NotRun => "not-run",
        }
    }
}

impl PodReport {
    /// The plan's predicted pod phase (`plan.outcome.pod.phase`), when the answer has one.
    pub fn predicted_phase(&self) -> Option<&str> {
        self.prediction.as_ref()?.phase()
    }

    /// The containers whose verdict is `verdict`.
    pub fn containers_with(&self, verdict: &Verdict) -> Vec<&str> {
        self.containers
            .iter()
            .filter(|c| c.verdict == *verdict)
            .map(|c| c.container.as_str())
            .collect()
    }

    /// Whether some container is left running (a verdict `still-running`).
    pub fn left_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.verdict == Verdict::StillRunning)
    }
}
