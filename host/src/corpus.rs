//! The hostile-module corpus (issue 17): modules that are broken or hostile on purpose,
//! each with the outcome the host must give it, run by `sidekill policy test --corpus DIR`.
//!
//! `DIR/corpus.json` is the manifest:
//!
//! ```json
//! {"request": {"object": {...a pod with its status...}, "facts": {}},
//!  "modules": [{"file": "loop_plan.wasm", "outcome": "call-fails", "error": "deadline"}]}
//! ```
//!
//! Each module goes through the path every module takes: the file is read (at most 16 MiB),
//! loaded (the load checks of a hot swap, without the canaries), and asked to plan
//! `request`; a plan is then checked by the executor's guard against the request's pod as
//! the executor would read it ([`crate::exec::refusals`]). The outcome is one of:
//!
//! | outcome | what happened | `error` |
//! | --- | --- | --- |
//! | `refused-at-load` | the file or the load checks refused it | the error's name (`imports`, `abi_version`, ...) |
//! | `call-fails` | the plan call or its answer failed | the error's name (`deadline`, `trap`, `bad_answer`, ...) |
//! | `not-a-plan` | it answered a JSON envelope that holds no plan the host can read ([`crate::answer`]) | - |
//! | `steps-refused` | it planned, and the guard refuses a stop or a step | - |
//! | `benign` | it planned, and the guard lets every step run | - |
//!
//! A manifest entry's `error` may be left out to accept any. A module file that cannot be
//! read is `refused-at-load` with the error `io`; a manifest that cannot be read or parsed is
//! the command's error.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use sidekill_policy::Call;

use crate::error::{Error, Result};
use crate::policy::{export_name, unwrap_envelope};
use crate::Runtime;

/// The manifest's name inside a corpus folder.
pub const MANIFEST: &str = "corpus.json";

/// What a module did, or must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `refused-at-load`, `call-fails`, `not-a-plan`, `steps-refused` or `benign`.
    pub outcome: String,
    /// The error's name, for `refused-at-load` and `call-fails`.
    pub error: Option<String>,
}

impl Outcome {
    fn new(outcome: &str, error: Option<&str>) -> Self {
        Outcome {
            outcome: outcome.to_owned(),
            error: error.map(str::to_owned),
        }
    }

    /// `call-fails (deadline)`, `benign`.
    pub fn label(&self) -> String {
        match &self.error {
            Some(e) => format!("{} ({e})", self.outcome),
            None => self.outcome.clone(),
        }
    }

    /// As JSON: `{"outcome", "error"?}`.
    pub fn json(&self) -> Value {
        let mut v = json!({"outcome": self.outcome});
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

/// One module of the corpus, run.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file, as the manifest names it.
    pub file: String,
    /// What the manifest says must happen.
    pub expected: Outcome,
    /// What happened.
    pub actual: Outcome,
    /// The error's message or the guard's first refusal.
    pub detail: String,
}

impl Case {
    /// Whether the module did what the manifest says: the same outcome, and the same error
    /// when the manifest names one.
    pub fn matches(&self) -> bool {
        self.expected.outcome == self.actual.outcome
            && (self.expected.error.is_none() || self.expected.error == self.actual.error)
    }
}

/// Runs every module of the corpus in `dir` (module docs), in the manifest's order.
///
/// # Errors
/// [`Error::Io`] when the manifest cannot be read; [`Error::Manifest`] when it is not JSON
/// or not the manifest's shape (it names the field).
pub fn run(runtime: &Runtime, dir: &Path) -> Result<Vec<Case>> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |what: &str| Error::Manifest {
        path: path.clone(),
        message: what.to_owned(),
    };
    let manifest: Value =
        serde_json::from_slice(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let request = manifest.get("request").ok_or_else(|| bad("no `request`"))?;
    let pod: Pod = request
        .get("object")
        .cloned()
        .ok_or_else(|| bad("no `request.object`"))
        .and_then(|o| {
            serde_json::from_value(o).map_err(|e| bad(&format!("`request.object` is no pod: {e}")))
        })?;
    let request = serde_json::to_vec(request).map_err(|e| bad(&e.to_string()))?;
    let modules = manifest
        .get("modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `modules` list"))?;
    let mut cases = Vec::with_capacity(modules.len());
    for (i, m) in modules.iter().enumerate() {
        let field = |name: &str| m.get(name).and_then(Value::as_str);
        let file = field("file").ok_or_else(|| bad(&format!("modules[{i}] has no `file`")))?;
        let outcome =
            field("outcome").ok_or_else(|| bad(&format!("modules[{i}] has no `outcome`")))?;
        let expected = Outcome::new(outcome, field("error"));
        let (actual, detail) = one(runtime, &dir.join(file), &request, &pod);
        cases.push(Case {
            file: file.to_owned(),
            expected,
            actual,
            detail,
        });
    }
    Ok(cases)
}

/// One module through read, load, plan and the guard.
fn one(runtime: &Runtime, path: &Path, request: &[u8], pod: &Pod) -> (Outcome, String) {
    let failed = |outcome: &str, e: &Error| {
        (
            Outcome::new(outcome, Some(e.name())),
            e.report().to_string(),
        )
    };
    // `embedded` (no folder) is the module built into this binary: the benign control.
    let bytes = if path.file_name().is_some_and(|n| n == "embedded") && !path.exists() {
        Ok(crate::embedded::BYTES.to_vec())
    } else {
        crate::limits::read_module(path)
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return failed("refused-at-load", &e),
    };
    let policy = match runtime.load(&bytes) {
        Ok(p) => p,
        Err(e) => return failed("refused-at-load", &e),
    };
    let answer = policy
        .call(Call::Plan, request)
        .and_then(|bytes| unwrap_envelope(export_name(Call::Plan), &bytes));
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return failed("call-fails", &e),
    };
    let subject = match crate::answer::PlanAnswer::read(&answer) {
        Ok(answer) => answer.subjects.into_iter().next(),
        Err(e) => return (Outcome::new("not-a-plan", None), e.to_string()),
    };
    let Some(subject) = subject else {
        return (
            Outcome::new("not-a-plan", None),
            "the answer holds no subjects[0]".to_owned(),
        );
    };
    let refusals = crate::exec::refusals(pod, &subject, &policy.info().commands);
    match refusals.first() {
        Some(first) => (Outcome::new("steps-refused", None), first.clone()),
        None => (
            Outcome::new("benign", None),
            "the guard lets every step run".to_owned(),
        ),
    }
}
