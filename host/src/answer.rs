//! The `plan` and `matrix` answers, typed: what the host reads of the module's answers,
//! deserialised once and checked before anything acts on it or shows it.
//!
//! The module is code from outside (it can be hot-swapped), so its answer is read as data of
//! a known shape, and refused whole when it is not that shape: a step or an action of a kind
//! this host does not know, a send without a signal, a stop without a container. Refused is
//! safer than skipped: a plan whose third step is unknown is not a plan the host half-runs.
//! Where a field only explains (a reason, a diagnostic's wording) it is read as text, and
//! where a later ABI minor version added it (`method` and `expectedExit` in 1.2–1.3, the
//! outcome in 1.2) it may be absent. Fields this host does not know are ignored, as
//! `docs/ABI.md` asks of a loader; `sidekill plan --format json` prints the answer itself,
//! not this view, so they still show there.
//!
//! What the host checks beyond the shape (the pod's UID, the argv against the catalogue, the
//! main containers' end) is in `exec::guard`.
//!
//! ```
//! use sidekill::answer::{Action, PlanAnswer, Step};
//!
//! let answer = serde_json::json!({"subjects": [{"plan": {"stops": [{
//!     "container": "istio-proxy",
//!     "steps": [{"step": "send", "signal": 15, "signalName": "SIGTERM",
//!                "action": {"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]}}]}]}}]});
//! let answer = PlanAnswer::read(&answer)?;
//! let Step::Send { action: Action::Exec { argv }, .. } = &answer.subjects[0].plan.stops[0].steps[0]
//! else { unreachable!() };
//! assert_eq!(argv[2], "kill -15 1");
//!
//! let unknown = serde_json::json!({"subjects": [{"plan": {"stops": [{
//!     "container": "istio-proxy", "steps": [{"step": "teleport"}]}]}}]});
//! let err = PlanAnswer::read(&unknown).unwrap_err().to_string();
//! assert!(err.contains("subjects[0].plan.stops[0].steps[0]"), "{err}");
//! assert!(err.contains("unknown variant `teleport`"), "{err}");
//! # Ok::<(), sidekill::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AnswerError;
use crate::error::{Error, Result};

/// Reads `value` as a `T`, or refuses it with the path of the first field that is not of
/// its shape.
fn read<T: DeserializeOwned>(call: &'static str, value: &Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        Error::Answer(AnswerError::UnreadableAnswer {
            call,
            reason: format!("{}: {}", e.path(), e.inner()),
        })
    })
}

/// The `plan` call's answer: one subject per pod the object stands for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlanAnswer {
    /// One report per pod.
    pub subjects: Vec<Subject>,
}

impl PlanAnswer {
    /// Reads a `plan` answer (the value under `ok`).
    ///
    /// # Errors
    /// [`AnswerError::UnreadableAnswer`] naming the first field that is not of the answer's shape.
    pub fn read(value: &Value) -> Result<PlanAnswer> {
        read("sidekill_plan", value)
    }
}

/// Everything the policy says about one pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Subject {
    /// Where the pod comes from.
    #[serde(default)]
    pub source: Source,
    /// The pod.
    #[serde(default)]
    pub pod: PodSummary,
    /// Every container, classified.
    #[serde(default)]
    pub containers: Vec<Classified>,
    /// Whether the sidecars should be stopped now.
    #[serde(default)]
    pub readiness: Readiness,
    /// The support matrix row that applies.
    #[serde(default)]
    pub matrix: MatrixUse,
    /// The plan.
    pub plan: Plan,
    /// What will go wrong, and fixes.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

impl Subject {
    /// The containers this subject calls main: `pod.mainContainers`, and every container of
    /// the predicted outcome whose result is `main`; sorted, once each.
    pub fn mains(&self) -> Vec<String> {
        let predicted = self
            .plan
            .outcome
            .iter()
            .flat_map(|o| &o.containers)
            .filter(|c| c.result.as_deref() == Some("main"))
            .map(|c| c.container.clone());
        let mut all: Vec<String> = self
            .pod
            .main_containers
            .iter()
            .cloned()
            .chain(predicted)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The diagnostics about `container`.
    pub fn diagnostics_of<'a>(
        &'a self,
        container: &'a str,
    ) -> impl Iterator<Item = &'a Diagnostic> {
        self.diagnostics
            .iter()
            .filter(move |d| d.container.as_deref() == Some(container))
    }
}

/// Where a planned pod comes from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Source {
    /// The object's `kind`.
    pub kind: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// Its namespace, when set.
    pub namespace: Option<String>,
    /// For a Workflow, the template this pod runs.
    pub template: Option<String>,
    /// JSON path of the pod spec inside the request.
    pub path: Option<String>,
}

/// A summary of the pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    /// The pod's name (or `generateName`).
    pub name: Option<String>,
    /// Whether Argo runs the pod.
    pub argo: Option<bool>,
    /// Why it is or is not an Argo pod.
    pub evidence: Option<String>,
    /// The main containers.
    #[serde(default)]
    pub main_containers: Vec<String>,
}

/// A classified container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Classified {
    /// The container's name.
    pub name: Option<String>,
    /// Which list it is in.
    pub list: Option<String>,
    /// What it is.
    pub role: Option<String>,
    /// Who injected it.
    pub injector: Option<String>,
    /// Known software it runs.
    pub software: Option<String>,
    /// The image.
    pub image: Option<String>,
    /// Why.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// One reason behind a classification.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Evidence {
    /// The rule that matched.
    pub rule: Option<String>,
    /// What was seen.
    pub detail: Option<String>,
}

/// Readiness for sidecar termination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready`, `waiting`, ...: only `ready` lets the executor act.
    pub state: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

impl Readiness {
    /// Whether the sidecars should be stopped now.
    pub fn is_ready(&self) -> bool {
        self.state.as_deref() == Some("ready")
    }
}

/// The matrix row that applies to this pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MatrixUse {
    /// The executor.
    pub executor: Option<String>,
    /// Its row.
    #[serde(default)]
    pub row: MatrixRow,
    /// The columns this pod has containers in.
    #[serde(default)]
    pub applies: Vec<String>,
}

/// The `matrix` call's answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MatrixAnswer {
    /// The columns, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// One row per executor.
    #[serde(default)]
    pub rows: Vec<MatrixRow>,
}

impl MatrixAnswer {
    /// Reads a `matrix` answer (the value under `ok`).
    ///
    /// # Errors
    /// [`AnswerError::UnreadableAnswer`] naming the first field that is not of the answer's shape.
    pub fn read(value: &Value) -> Result<MatrixAnswer> {
        read("sidekill_matrix", value)
    }
}

/// One row of the matrix: an executor and a cell per column.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MatrixRow {
    /// The executor.
    pub executor: Option<String>,
    /// Argo versions that have it.
    pub versions: Option<String>,
    /// The cells, by column.
    #[serde(flatten)]
    pub cells: BTreeMap<String, MatrixCell>,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MatrixCell {
    /// How it can be stopped (`Any`, `KubectlExec`, ...).
    pub method: Option<String>,
    /// By which path.
    pub path: Option<String>,
}

/// The termination plan of one pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The grace period between SIGTERM and SIGKILL.
    pub grace_period_seconds: Option<i64>,
    /// The containers to stop, in order.
    pub stops: Vec<ContainerStop>,
    /// Containers left alone.
    #[serde(default)]
    pub skipped: Vec<Skip>,
    /// The predicted end (ABI 1.2).
    pub outcome: Option<Outcome>,
}

/// The stop of one container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContainerStop {
    /// The container.
    pub container: String,
    /// Its place in the order.
    pub group: Option<String>,
    /// Where the command comes from.
    pub source: Option<String>,
    /// The stop method (ABI 1.3).
    pub method: Option<MethodUse>,
    /// `stops`, `may-stop` or `cannot-stop`.
    pub verdict: Option<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The method a stop uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MethodUse {
    /// `exec`, `image-swap`, `ephemeral` or `none`.
    pub kind: Option<String>,
}

/// One step of a container's stop. A kind this host does not know refuses the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Wait until another container has terminated.
    Await {
        /// The container to wait for.
        container: String,
    },
    /// Send a stop request.
    Send {
        /// The signal number (the guard refuses one outside 1 to 64).
        signal: i64,
        /// The signal's name.
        #[serde(rename = "signalName")]
        signal_name: String,
        /// The request.
        action: Action,
        /// The exit code this step is expected to end the container with (ABI 1.2): shown.
        #[serde(
            rename = "expectedExit",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        expected_exit: Option<Value>,
        /// The endpoint the request calls, with who may reach it (ABI 1.3): shown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<Value>,
    },
    /// Watch the pod until the container terminates, for at most `seconds`.
    Wait {
        /// The grace period.
        seconds: i64,
    },
}

impl Step {
    /// Whether this is a `wait`.
    pub fn is_wait(&self) -> bool {
        matches!(self, Step::Wait { .. })
    }
}

/// How a stop request reaches the sidecar. A kind this host does not know refuses the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// An argv run in the container through `pods/exec`.
    Exec {
        /// The argv, rendered with the step's signal.
        argv: Vec<String>,
    },
    /// A request through `pods/proxy` (produced by ABI 1.2 modules only).
    Http {
        /// The HTTP method.
        method: String,
        /// The container port.
        port: u16,
        /// The path.
        path: String,
    },
    /// `spec.containers[containerIndex].image` patched to the nop image.
    #[serde(rename_all = "camelCase")]
    ImageSwap {
        /// The container's index in `spec.containers`.
        container_index: usize,
        /// The nop image.
        image: String,
    },
    /// An ephemeral container running the quitter.
    Ephemeral(Quitter),
}

/// The ephemeral quitter container of an `ephemeral` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quitter {
    /// The sidecar, as the ephemeral container's `targetContainerName`.
    pub target_container_name: String,
    /// The quitter image.
    pub image: String,
    /// The ephemeral container's `command`.
    pub argv: Vec<String>,
    /// The user to run as, when the pod spec gives the sidecar's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// A container the plan leaves alone, and why.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Skip {
    /// The container.
    pub container: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// The predicted end of the pod and of each container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The pod's predicted phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Prediction>,
    /// For an Argo pod, the step's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_step: Option<Prediction>,
    /// Each regular container and native sidecar.
    #[serde(default)]
    pub containers: Vec<ContainerOutcome>,
}

impl Outcome {
    /// The predicted pod phase, when there is one.
    pub fn phase(&self) -> Option<&str> {
        self.pod.as_ref()?.phase.as_deref()
    }

    /// The predicted end of `container`, when the outcome has one.
    pub fn of(&self, container: &str) -> Option<&ContainerOutcome> {
        self.containers.iter().find(|c| c.container == container)
    }
}

/// A predicted end, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// `Succeeded`, `Failed`, `NeverCompletes` or `Unknown`.
    pub phase: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The predicted end of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOutcome {
    /// The container.
    pub container: String,
    /// The exit code it is expected to end with: a number, or `"unknown"`.
    #[serde(default)]
    pub exit_code: Value,
    /// What that does to the pod (`main`, `succeeds`, `fails`, ...).
    pub result: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One diagnostic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Its stable code.
    pub code: Option<String>,
    /// `error`, `warning` or `info`.
    pub severity: Option<String>,
    /// The container it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong and why.
    pub message: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Diagnostic {
    /// Whether it is more than information.
    pub fn matters(&self) -> bool {
        self.severity.as_deref() != Some("info")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject(steps: Value) -> Value {
        json!({"subjects": [{"plan": {"stops": [{"container": "side", "steps": steps}]}}]})
    }

    #[test]
    fn unknown_kinds_and_missing_fields_refuse_the_answer_with_their_path() {
        let refused = |steps: Value| PlanAnswer::read(&subject(steps)).unwrap_err().to_string();
        let e = refused(json!([{"step": "wait", "seconds": 1}, {"step": "reboot"}]));
        assert!(
            e.contains("steps[1]") && e.contains("unknown variant `reboot`"),
            "{e}"
        );
        let e = refused(
            json!([{"step": "send", "signal": 15, "signalName": "SIGTERM",
            "action": {"kind": "teleport"}}]),
        );
        assert!(e.contains("steps[0]") && e.contains("teleport"), "{e}");
        let e = refused(json!([{"step": "send", "signalName": "SIGTERM",
            "action": {"kind": "exec", "argv": []}}]));
        assert!(e.contains("signal"), "{e}");
        let e = PlanAnswer::read(&json!({"subjects": [{"plan": {}}]})).unwrap_err();
        assert!(e.to_string().contains("stops"), "{e}");
        assert_eq!(e.name(), "unreadable_answer");
    }

    #[test]
    fn mains_come_from_the_pod_summary_and_the_predicted_outcome() {
        let subject: Subject = serde_json::from_value(json!({"pod": {"mainContainers": ["a"]},
            "plan": {"stops": [], "outcome": {"containers": [
                {"container": "b", "result": "main"},
                {"container": "c", "result": "succeeds"}]}}}))
        .expect("subject");
        assert_eq!(subject.mains(), ["a", "b"]);
        assert!(Subject::default().mains().is_empty());
    }

    /// Every vector's answer (`tests/vectors`, from the native core, which answers as the
    /// module does) reads, and its steps serialise back to the answer's own JSON: a step
    /// record's identity hashes that JSON (`exec::records`).
    #[test]
    fn every_vector_reads_and_its_steps_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");
        let mut steps = 0;
        for entry in std::fs::read_dir(dir).expect("tests/vectors") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("vector");
            let vector: Value = serde_json::from_str(&text).expect("JSON");
            let Some(object) = vector.get("object") else {
                continue;
            };
            let mut request = json!({"object": object});
            if let Some(facts) = vector.get("facts") {
                request["facts"] = facts.clone();
            }
            let bytes = serde_json::to_vec(&request).expect("request");
            let answer = sidekill_policy::call(sidekill_policy::Call::Plan, &bytes);
            let Ok(raw) = crate::policy::unwrap_envelope("native", &answer) else {
                continue;
            };
            let typed = PlanAnswer::read(&raw).expect("a typed answer");
            for (i, subject) in typed.subjects.iter().enumerate() {
                for (j, stop) in subject.plan.stops.iter().enumerate() {
                    for (k, step) in stop.steps.iter().enumerate() {
                        let original = &raw["subjects"][i]["plan"]["stops"][j]["steps"][k];
                        assert_eq!(&serde_json::to_value(step).expect("json"), original);
                        steps += 1;
                    }
                }
            }
        }
        assert!(steps > 20, "only {steps} steps read");
    }
}
