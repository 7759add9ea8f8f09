//! The self-test a policy version passes before it goes live: a few bundled canary
//! requests, each of which must answer without a trap, parse as a JSON envelope, and have
//! the expected top-level shape.
//!
//! The canaries check the *shape* of answers, not their content: what a plan says is the
//! policy's business, and a new version is free to say it differently. A canary fails when
//! a call errors (trap, deadline, memory limit, ...), when the answer is not an envelope,
//! when an object that must plan gets an error envelope (or the other way round), or
//! when a required field is missing or has the wrong JSON type.
//!
//! What canaries cannot catch: a module that recognises them. They are a fixed, public set of
//! requests, so a module can compare each request with them byte for byte, answer exactly as
//! the real module does, and turn hostile on any other pod (issue 17; the test
//! `a_canary_aware_module_passes_the_swap_and_its_steps_are_refused` builds one from the
//! embedded module's own answers, and the swap accepts it). Canaries keep out broken modules;
//! a hostile one is kept harmless by the executor's guard (`exec::guard`), which checks every
//! step against the pod itself.

use std::time::{Duration, Instant};

use serde_json::Value;
use sidekill_policy::Call;

use crate::answer::{MatrixAnswer, PlanAnswer};
use crate::error::AnswerError;
use crate::error::{Error, Result};
use crate::policy::{export_name, unwrap_envelope, Policy};

/// What a canary's answer must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `{"ok": {"subjects": [...]}}` with this many plan reports.
    Plans(usize),
    /// `{"ok": {"subjects": [...]}}` with this many classifications.
    Classifications(usize),
    /// `{"ok": {"columns": [...], "rows": [...]}}`, at least one row.
    Matrix,
    /// `{"ok": {"name": "...", "version": "..."}}`.
    Info,
    /// `{"error": {"code": "...", "message": "..."}}`: a bad request is refused, not trapped on.
    ErrorEnvelope,
}

/// One bundled canary request.
#[derive(Debug, Clone, Copy)]
pub struct Canary {
    /// A short stable name.
    pub name: &'static str,
    /// The call to make.
    pub call: Call,
    /// The request bytes (empty for `Matrix` and `Info`).
    pub request: &'static str,
    /// The expected shape.
    pub expect: Expect,
}

impl Canary {
    /// A `plan` canary: `request` must plan as one subject.
    const fn plan(name: &'static str, request: &'static str) -> Canary {
        Canary {
            name,
            call: Call::Plan,
            request,
            expect: Expect::Plans(1),
        }
    }
}

/// The canaries every version must pass.
pub const CANARIES: [Canary; 7] = [
    Canary {
        name: "info",
        call: Call::Info,
        request: "",
        expect: Expect::Info,
    },
    Canary {
        name: "matrix",
        call: Call::Matrix,
        request: "",
        expect: Expect::Matrix,
    },
    Canary::plan("istio-job", include_str!("../canaries/istio-job.json")),
    Canary::plan(
        "argo-workflow",
        include_str!("../canaries/argo-workflow.json"),
    ),
    Canary::plan(
        "native-sidecar-pod",
        include_str!("../canaries/native-sidecar-pod.json"),
    ),
    Canary {
        name: "classify-istio-job",
        call: Call::Classify,
        request: include_str!("../canaries/istio-job.json"),
        expect: Expect::Classifications(1),
    },
    Canary {
        name: "bad-request",
        call: Call::Plan,
        request: include_str!("../canaries/bad-request.json"),
        expect: Expect::ErrorEnvelope,
    },
];

/// The outcome of one canary.
#[derive(Debug)]
pub struct CanaryResult {
    /// The canary.
    pub canary: Canary,
    /// How long the call took.
    pub elapsed: Duration,
    /// `Ok` or why it failed ([`Error::Canary`]).
    pub outcome: Result<()>,
}

/// Runs every canary and returns every outcome (it does not stop at the first failure).
pub fn run_all(policy: &Policy) -> Vec<CanaryResult> {
    CANARIES
        .iter()
        .map(|canary| {
            let started = Instant::now();
            let outcome = run(policy, canary);
            CanaryResult {
                canary: *canary,
                elapsed: started.elapsed(),
                outcome,
            }
        })
        .collect()
}

/// Runs one canary.
///
/// # Errors
/// [`Error::Canary`] naming the canary and what was wrong; the call's own error is its source.
pub fn run(policy: &Policy, canary: &Canary) -> Result<()> {
    let fail = |reason: Option<String>, source: Option<Error>| Error::Canary {
        canary: canary.name,
        reason,
        source: source.map(Box::new),
    };
    let bytes = policy
        .call(canary.call, canary.request.as_bytes())
        .map_err(|e| fail(None, Some(e)))?;
    let answer = unwrap_envelope(export_name(canary.call), &bytes);
    match (canary.expect, answer) {
        (Expect::ErrorEnvelope, Err(Error::Answer(AnswerError::Policy { code, .. })))
            if !code.is_empty() =>
        {
            Ok(())
        }
        (Expect::ErrorEnvelope, Ok(_)) => Err(fail(
            Some(
                "a request without a pod spec was answered with `ok`, not an error envelope".into(),
            ),
            None,
        )),
        (_, Err(e)) => Err(fail(None, Some(e))),
        (expect, Ok(value)) => shape(expect, &value).map_err(|reason| fail(Some(reason), None)),
    }
}

fn shape(expect: Expect, ok: &Value) -> std::result::Result<(), String> {
    match expect {
        // Read as the executor reads a plan: a step or action it does not know fails the
        // canary, so a version goes live only if the host can act on its plans.
        Expect::Plans(n) => subjects(ok, n, PLAN_FIELDS)
            .and_then(|list| {
                PlanAnswer::read(ok).map_err(|e| e.to_string())?;
                Ok(list)
            })
            .and_then(|list| {
                list.iter().enumerate().try_for_each(|(i, subject)| {
                    let plan = &subject["plan"];
                    field(
                        plan,
                        "stops",
                        Value::is_array,
                        &format!("subjects[{i}].plan"),
                    )?;
                    field(
                        plan,
                        "skipped",
                        Value::is_array,
                        &format!("subjects[{i}].plan"),
                    )?;
                    field(
                        plan,
                        "gracePeriodSeconds",
                        Value::is_number,
                        &format!("subjects[{i}].plan"),
                    )
                })
            }),
        Expect::Classifications(n) => subjects(ok, n, CLASSIFY_FIELDS).map(|_| ()),
        Expect::Matrix => {
            field(ok, "columns", Value::is_array, "")?;
            field(ok, "rows", Value::is_array, "")?;
            let matrix = MatrixAnswer::read(ok).map_err(|e| e.to_string())?;
            if matrix.rows.is_empty() {
                return Err("`rows` is empty".into());
            }
            Ok(())
        }
        Expect::Info => {
            field(ok, "name", Value::is_string, "")?;
            field(ok, "version", Value::is_string, "")
        }
        Expect::ErrorEnvelope => Ok(()),
    }
}

/// A required field and the check of its JSON type.
type FieldCheck = (&'static str, fn(&Value) -> bool);

const PLAN_FIELDS: &[FieldCheck] = &[
    ("source", Value::is_object),
    ("pod", Value::is_object),
    ("containers", Value::is_array),
    ("commands", Value::is_array),
    ("readiness", Value::is_object),
    ("matrix", Value::is_object),
    ("plan", Value::is_object),
    ("diagnostics", Value::is_array),
];

const CLASSIFY_FIELDS: &[FieldCheck] = &[
    ("source", Value::is_object),
    ("pod", Value::is_object),
    ("containers", Value::is_array),
];

fn subjects<'v>(
    ok: &'v Value,
    count: usize,
    fields: &[FieldCheck],
) -> std::result::Result<&'v Vec<Value>, String> {
    let list = ok
        .get("subjects")
        .and_then(Value::as_array)
        .ok_or("`subjects` is missing or not an array")?;
    if list.len() != count {
        return Err(format!("expected {count} subject(s), found {}", list.len()));
    }
    for (i, subject) in list.iter().enumerate() {
        for (key, check) in fields {
            field(subject, key, *check, &format!("subjects[{i}]"))?;
        }
    }
    Ok(list)
}

fn field(
    value: &Value,
    key: &str,
    check: fn(&Value) -> bool,
    at: &str,
) -> std::result::Result<(), String> {
    let path = if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    };
    match value.get(key) {
        None => Err(format!("`{path}` is missing")),
        Some(v) if !check(v) => Err(format!("`{path}` has the wrong JSON type")),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_requests_are_json() {
        for canary in CANARIES {
            if !canary.request.is_empty() {
                serde_json::from_str::<Value>(canary.request)
                    .unwrap_or_else(|e| panic!("{}: {e}", canary.name));
            }
        }
    }

    #[test]
    fn the_native_core_passes_the_shape_checks() {
        for canary in CANARIES {
            let bytes = sidekill_policy::call(canary.call, canary.request.as_bytes());
            let answer = unwrap_envelope("native", &bytes);
            match (canary.expect, answer) {
                (Expect::ErrorEnvelope, Err(Error::Answer(AnswerError::Policy { .. }))) => {}
                (expect, Ok(v)) => {
                    shape(expect, &v).unwrap_or_else(|e| panic!("{}: {e}", canary.name))
                }
                (_, Err(e)) => panic!("{}: {e}", canary.name),
            }
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let ok = serde_json::json!({"subjects": [{"source": {}, "pod": {}, "containers": []}]});
        let err = shape(Expect::Plans(1), &ok).unwrap_err();
        assert_eq!(err, "`subjects[0].commands` is missing");
        let err = shape(Expect::Plans(2), &ok).unwrap_err();
        assert_eq!(err, "expected 2 subject(s), found 1");
        // Every field there, and a step this host does not know.
        let ok = serde_json::json!({"subjects": [{"source": {}, "pod": {}, "containers": [],
            "commands": [], "readiness": {}, "matrix": {}, "diagnostics": [], "plan": {
            "stops": [{"container": "c", "steps": [{"step": "reboot"}]}], "skipped": [],
            "gracePeriodSeconds": 30}}]});
        let err = shape(Expect::Plans(1), &ok).unwrap_err();
        assert!(err.contains("steps[0]") && err.contains("reboot"), "{err}");
    }
}
