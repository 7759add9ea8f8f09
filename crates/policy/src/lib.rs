//! The decision logic of sidekill: what each container of a batch pod is, how each
//! sidecar can be stopped, and the termination plan, with diagnostics that explain why
//! a sidecar will or will not stop.
//!
//! The crate does no IO and reads no clock. The same code runs natively in the host, in
//! the sandboxed WebAssembly module (`sidekill-policy-wasm`) that Go, Python, Java and
//! Node load, and in the browser debugger. Its answers are deterministic: the same
//! request gives the same bytes.
//!
//! ```
//! let request = br#"{"object": {
//!   "kind": "Pod", "metadata": {"name": "pi", "annotations": {
//!     "sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
//!   "spec": {"restartPolicy": "Never", "containers": [
//!     {"name": "pi", "image": "perl"},
//!     {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}}}"#;
//! let answer = sidekill_policy::call(sidekill_policy::Call::Plan, request);
//! let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
//! let stop = &answer["ok"]["subjects"][0]["plan"]["stops"][0];
//! assert_eq!(stop["container"], "istio-proxy");
//! assert_eq!(stop["steps"][0]["action"]["argv"][0], "pilot-agent");
//! // pilot-agent's quitquitquit exits 0, so the pod is predicted to succeed.
//! assert_eq!(stop["steps"][0]["expectedExit"]["code"], 0);
//! assert_eq!(answer["ok"]["subjects"][0]["plan"]["outcome"]["pod"]["phase"], "Succeeded");
//! ```
//!
//! # Concepts
//! - A **request** is a Kubernetes object (Pod, Job, CronJob, Deployment, ReplicaSet,
//!   StatefulSet, DaemonSet, Argo Workflow, or a `List` of them) with optional **facts**
//!   from the host: the Argo executor, the cluster version, whether `pods/proxy` may be used,
//!   the main containers or sidecars it declares, the stop methods it may use besides
//!   `pods/exec` (image swap, the ephemeral quitter; [`method`]), and the injectors whose
//!   injection to simulate ([`inject`]).
//! - Each sidecar's stop has a **method** chosen from what the pod allows, what the host
//!   may do and the expected exit code: a command inside the container, image swap to the
//!   nop image ([`nop`]), an ephemeral quitter, or none, with the evidence for the choice.
//! - Each object stands for one or more pods ([`input::subjects`]). Each pod gets a
//!   [`plan::Report`]: the classification of every container with its evidence, the kill
//!   command of every container, readiness, the support-matrix row, the plan and diagnostics.
//! - Each stop step states the exit code it is expected to produce ([`outcome`]), and the
//!   plan predicts each container's end, the pod's phase and, for Argo, the step's result
//!   under the pod's `restartPolicy`. A long-running pod (`restartPolicy: Always`) is never
//!   acted on.
//! - [`call`] is the JSON entry point shared by every host: JSON in, an envelope out,
//!   `{"ok": ...}` or `{"error": {"code", "message", "path"}}`. It never panics on input.
//!
//! # Features
//! - `yaml` (default): [`yaml::documents`] reads YAML, including multi-document files,
//!   into JSON values. The raw wasm module leaves it out to stay small; its callers send JSON.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod argo;
pub mod catalogue;
pub mod classify;
pub mod declare;
pub mod diagnostics;
pub mod error;
pub mod image;
pub mod inject;
pub mod input;
pub mod killcmd;
pub mod matrix;
pub mod method;
pub mod nop;
pub mod outcome;
pub mod plan;
pub mod pod;
pub mod presets;
#[cfg(feature = "yaml")]
pub mod yaml;

use alloc::string::String;
use alloc::vec::Vec;
use classify::Role;
use serde::Serialize;

pub use diagnostics::{Code, Diagnostic, Severity};
pub use error::{Error, Result};
pub use input::{Facts, Request};
pub use matrix::{matrix, Executor, Matrix};
pub use plan::{Classification, Report};

/// The calls a host can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Classify, resolve commands and plan every pod of the request.
    Plan,
    /// Only classify the containers of every pod of the request.
    Classify,
    /// The support matrix; the request is ignored.
    Matrix,
    /// The policy's identity; the request is ignored.
    Info,
}

/// The `plan` call's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanResponse {
    /// One report per pod the object stands for.
    pub subjects: Vec<Report>,
}

/// The `classify` call's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassifyResponse {
    /// One classification per pod the object stands for.
    pub subjects: Vec<Classification>,
}

/// The policy's identity, as `policy_info` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The policy's name.
    pub name: &'static str,
    /// The policy's version (the crate version).
    pub version: &'static str,
    /// The calls and behaviours this policy supports.
    pub features: Vec<&'static str>,
    /// FNV-1a 64 of the built-in presets' names and sources, in hex: changes when a preset does.
    pub presets_hash: String,
    /// Every path at which the nop image must hold the nop binary ([`nop::NOP_PATHS`]): the
    /// image builder reads it from here, so image swap's exit prediction holds.
    pub nop_paths: &'static [&'static str],
    /// The `PATH` the nop image must set ([`nop::NOP_PATH_ENV`]).
    pub nop_path_env: &'static str,
    /// Where the quitter image holds the quitter binary, its ENTRYPOINT ([`method::QUITTER_PATH`]).
    pub quitter_path: &'static str,
    /// Every argv a plan may contain besides a pod's own kill-cmd annotation, as templates
    /// ([`catalogue::COMMANDS`], ABI 1.4): a host runs no other.
    pub commands: &'static [&'static [&'static str]],
    /// The roles of Argo's own containers, which sidekill never signals ([`Role::ARGO_OWN`],
    /// ABI 1.5): a kill-cmd editor offers every other container.
    pub argo_own_roles: [Role; 3],
    /// The annotation prefix of a pod's own kill command ([`argo::KILL_CMD_PREFIX`], ABI 1.5):
    /// the key is the prefix followed by the container's name.
    pub kill_cmd_prefix: &'static str,
}

/// Plans every pod of a request.
///
/// # Errors
/// A missing or mistyped field the policy needs, named by its JSON path.
pub fn plan(request: &Request) -> Result<PlanResponse> {
    let subjects = input::subjects(&request.object, &request.facts)?;
    Ok(PlanResponse {
        subjects: subjects
            .iter()
            .map(|s| plan::plan_subject(s, &request.facts))
            .collect(),
    })
}

/// Classifies every pod of a request.
///
/// # Errors
/// As [`plan`].
pub fn classify(request: &Request) -> Result<ClassifyResponse> {
    let subjects = input::subjects(&request.object, &request.facts)?;
    Ok(ClassifyResponse {
        subjects: subjects
            .iter()
            .map(|s| plan::classify_subject(s, &request.facts))
            .collect(),
    })
}

/// The policy's identity.
pub fn info() -> Info {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, source) in presets::CATALOGUE {
        for byte in name.bytes().chain([0]).chain(source.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Info {
        name: "sidekill-policy",
        version: env!("CARGO_PKG_VERSION"),
        features: alloc::vec![
            "plan",
            "classify",
            "matrix",
            "presets",
            "argo-workflows",
            "native-sidecars",
            "pods-proxy",
            "image-swap",
            "ephemeral-quitter",
            "inject-simulation"
        ],
        presets_hash: alloc::format!("{hash:016x}"),
        nop_paths: &nop::NOP_PATHS,
        nop_path_env: nop::NOP_PATH_ENV,
        quitter_path: method::QUITTER_PATH,
        commands: catalogue::COMMANDS,
        argo_own_roles: Role::ARGO_OWN,
        kill_cmd_prefix: argo::KILL_CMD_PREFIX,
    }
}

#[derive(Serialize)]
struct ErrorBody<'e> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'e str>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Envelope<'a, T: Serialize> {
    Ok(&'a T),
    Error(ErrorBody<'a>),
}

fn ok<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string.
    serde_json::to_vec(&Envelope::Ok(value))
        .unwrap_or_else(|_| error_envelope("internal", "serialization failed", None))
}

/// An error envelope, `{"error": {"code", "message", "path"}}`.
pub fn error_envelope(code: &'static str, message: &str, path: Option<&str>) -> Vec<u8> {
    let body = ErrorBody {
        code,
        message: message.into(),
        path,
    };
    serde_json::to_vec(&Envelope::<()>::Error(body)).unwrap_or_default()
}

/// The JSON entry point every host uses: a request in, an envelope out.
///
/// `Plan` and `Classify` take the request envelope `{"object": ..., "facts": ...}`;
/// `Matrix` and `Info` ignore their input.
pub fn call(which: Call, input: &[u8]) -> Vec<u8> {
    match which {
        Call::Matrix => ok(&matrix()),
        Call::Info => ok(&info()),
        Call::Plan | Call::Classify => {
            let answer = Request::from_json(input).and_then(|request| match which {
                Call::Plan => plan(&request).map(|r| ok(&r)),
                _ => classify(&request).map(|r| ok(&r)),
            });
            answer.unwrap_or_else(|e| error_envelope(e.code(), &alloc::format!("{e}"), e.path()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    /// The kill-cmd editor's facts travel in `policy_info` (ABI 1.5, issue 15): the page keeps
    /// no copy of which roles are Argo's own or of the annotation's prefix.
    #[test]
    fn info_answers_the_kill_cmd_editor_facts() {
        let answer: Value = serde_json::from_slice(&super::call(super::Call::Info, b"")).unwrap();
        let info = &answer["ok"];
        assert_eq!(
            info["argoOwnRoles"],
            json!(["argo-init", "argo-wait", "argo-supervisor"])
        );
        assert_eq!(info["killCmdPrefix"], "workflows.argoproj.io/kill-cmd-");
    }
}
