//! The command catalogue is complete: every argv of every plan, over every vector and every
//! real-world fixture, with and without the stop methods that need nothing inside the
//! container, is a catalogue command (or the pod's own kill-cmd annotation). A host refuses
//! any other argv, so a preset added without its catalogue entry fails here, not in a cluster.

#[path = "../examples/common/vectors.rs"]
mod vectors;

use serde_json::{json, Value};
use sidekill_policy::catalogue::{matches, COMMANDS};

/// The fact variants each object is planned with.
fn fact_variants() -> [Value; 5] {
    [
        json!({}),
        json!({"inject": {"istio": {"native": false}, "vault": {"native": false}}}),
        json!({"inject": {"linkerd": {"native": true}, "kuma": {"native": false}}}),
        json!({"stopMethods": {
            "imageSwap": {"allowed": true, "image": "sidekill-nop:0.1.0"},
            "ephemeral": {"allowed": true, "image": "sidekill-quitter:0.1.0"}}}),
        json!({"stopMethods": {
            "ephemeral": {"allowed": true, "image": "sidekill-quitter:0.1.0"}}}),
    ]
}

/// Checks every step of an answer; returns how many argvs were checked.
fn check(answer: &Value, what: &str, failures: &mut Vec<String>) -> usize {
    let mut checked = 0;
    for subject in answer["ok"]["subjects"].as_array().into_iter().flatten() {
        for stop in subject["plan"]["stops"].as_array().into_iter().flatten() {
            if stop["source"] == "annotation" {
                continue;
            }
            for step in stop["steps"].as_array().into_iter().flatten() {
                let action = &step["action"];
                if !matches!(action["kind"].as_str(), Some("exec" | "ephemeral")) {
                    continue;
                }
                let argv: Vec<String> = action["argv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect();
                let signal = step["signal"]
                    .as_u64()
                    .and_then(|s| u8::try_from(s).ok())
                    .unwrap_or(0);
                checked += 1;
                if !COMMANDS.iter().any(|t| matches(t, &argv, signal)) {
                    failures.push(format!(
                        "{what}: container {} signal {signal}: {argv:?}",
                        stop["container"]
                    ));
                }
            }
        }
    }
    checked
}

fn plan(object: &Value, facts: &Value) -> Value {
    let request = serde_json::to_vec(&json!({"object": object, "facts": facts})).unwrap();
    serde_json::from_slice(&sidekill_policy::call(
        sidekill_policy::Call::Plan,
        &request,
    ))
    .unwrap()
}

#[test]
fn every_planned_argv_is_in_the_catalogue() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for vector in vectors::load_all() {
        // Some vectors are malformed on purpose: nothing to plan.
        let Ok(request) = serde_json::from_slice::<Value>(&vector.request) else {
            continue;
        };
        for facts in fact_variants() {
            let mut merged = request["facts"].clone();
            if !merged.is_object() {
                merged = json!({});
            }
            for (k, v) in facts.as_object().unwrap() {
                merged[k] = v.clone();
            }
            checked += check(
                &plan(&request["object"], &merged),
                &vector.name,
                &mut failures,
            );
        }
    }
    for (_, file) in vectors::fixture_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in sidekill_policy::yaml::documents(&text).unwrap() {
            for facts in fact_variants() {
                checked += check(
                    &plan(&doc, &facts),
                    &file.display().to_string(),
                    &mut failures,
                );
            }
        }
    }
    // The vectors exercise every preset and method: far more argvs than this.
    assert!(checked >= 100, "only {checked} argvs checked");
    assert!(
        failures.is_empty(),
        "{} argvs are not in the catalogue:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
