//! Runs every shared vector in `tests/vectors/` through the native core and checks the
//! answer against the vector's hand-written expectation.
//!
//! The expectation is a compact projection of the answer, written by reasoning from the
//! object: per pod, the readiness, the executor, the role of each container, the stop
//! steps with their verdict, and the exact set of diagnostics (`severity:code@container`).
//! `commands`, `sigkill` and `argo` check the kill command of the containers they name.

#[path = "../examples/common/vectors.rs"]
mod vectors;

use serde_json::{json, Map, Value};

fn step_text(step: &Value) -> String {
    match step["step"].as_str() {
        Some("await") => format!("await {}", step["container"].as_str().unwrap()),
        Some("wait") => format!("wait {}", step["seconds"]),
        Some("send") => {
            let action = &step["action"];
            match action["kind"].as_str() {
                Some("exec") => {
                    let argv: Vec<&str> = action["argv"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap())
                        .collect();
                    format!("send {} exec {}", step["signal"], argv.join(" "))
                }
                Some("http") => format!(
                    "send {} http {} {} {}",
                    step["signal"],
                    action["method"].as_str().unwrap(),
                    action["port"],
                    action["path"].as_str().unwrap()
                ),
                Some("image-swap") => format!(
                    "send {} image-swap containers[{}] {}",
                    step["signal"],
                    action["containerIndex"],
                    action["image"].as_str().unwrap()
                ),
                Some("ephemeral") => {
                    let argv: Vec<&str> = action["argv"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap())
                        .collect();
                    format!(
                        "send {} ephemeral @{} {} {}",
                        step["signal"],
                        action["targetContainerName"].as_str().unwrap(),
                        action["image"].as_str().unwrap(),
                        argv.join(" ")
                    )
                }
                other => panic!("unknown action {other:?}"),
            }
        }
        other => panic!("unknown step {other:?}"),
    }
}

fn project(subject: &Value, expect: &Value) -> Value {
    let mut out = Map::new();
    if let Some(template) = subject["source"].get("template") {
        out.insert("template".into(), template.clone());
    }
    out.insert("ready".into(), subject["readiness"]["state"].clone());
    out.insert("executor".into(), subject["matrix"]["executor"].clone());
    let roles: Map<String, Value> = subject["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["role"].clone()))
        .collect();
    out.insert("roles".into(), Value::Object(roles));
    let stops: Vec<Value> = subject["plan"]["stops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({
                "container": s["container"],
                "verdict": s["verdict"],
                "steps": s["steps"].as_array().unwrap().iter().map(step_text).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.insert("stops".into(), Value::Array(stops));
    let mut diagnostics: Vec<String> = subject["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let base = format!(
                "{}:{}",
                d["severity"].as_str().unwrap(),
                d["code"].as_str().unwrap()
            );
            match d["container"].as_str() {
                Some(c) => format!("{base}@{c}"),
                None => base,
            }
        })
        .collect();
    diagnostics.sort();
    out.insert("diagnostics".into(), json!(diagnostics));
    // Outcomes (issue 12): only when the expectation has them. `phase` is the pod's predicted
    // phase, `argoStep` the Argo step's, `exits` each stop's SIGTERM expected exit code and
    // `results` each container's predicted result.
    let outcome = &subject["plan"]["outcome"];
    if expect.get("phase").is_some() {
        out.insert("phase".into(), outcome["pod"]["phase"].clone());
    }
    if expect.get("argoStep").is_some() {
        out.insert("argoStep".into(), outcome["argoStep"]["phase"].clone());
    }
    if expect.get("exits").is_some() {
        let exits: Map<String, Value> = subject["plan"]["stops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["container"].as_str().unwrap().to_string(),
                    s["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|st| st["signal"] == 15)
                        .map(|st| st["expectedExit"]["code"].clone())
                        .unwrap_or(Value::Null),
                )
            })
            .collect();
        out.insert("exits".into(), Value::Object(exits));
    }
    if expect.get("results").is_some() {
        let results: Map<String, Value> = outcome["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["container"].as_str().unwrap().to_string(),
                    c["result"].clone(),
                )
            })
            .collect();
        out.insert("results".into(), Value::Object(results));
    }
    // Stop methods (issue 13): only when the expectation has them. `methods` is each stop's
    // method kind, `endpoints` the endpoint its SIGTERM step calls, with its access rule.
    if expect.get("methods").is_some() {
        let methods: Map<String, Value> = subject["plan"]["stops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["container"].as_str().unwrap().to_string(),
                    s["method"]["kind"].clone(),
                )
            })
            .collect();
        out.insert("methods".into(), Value::Object(methods));
    }
    if expect.get("endpoints").is_some() {
        let endpoints: Map<String, Value> = subject["plan"]["stops"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| {
                let step = s["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|st| st["signal"] == 15)?;
                let e = step.get("endpoint")?;
                let access = if e["loopbackOnly"] == true {
                    "loopback-only"
                } else {
                    "any"
                };
                Some((
                    s["container"].as_str().unwrap().to_string(),
                    json!(format!(
                        "{} {}:{}{} {access}",
                        e["method"].as_str().unwrap(),
                        e["host"].as_str().unwrap(),
                        e["port"],
                        e["path"].as_str().unwrap()
                    )),
                ))
            })
            .collect();
        out.insert("endpoints".into(), Value::Object(endpoints));
    }
    if expect.get("owner").is_some() {
        out.insert("owner".into(), subject["pod"]["owner"]["kind"].clone());
    }
    // Kill commands: only for the containers the expectation names.
    for (key, field) in [
        ("commands", "sigterm"),
        ("sigkill", "sigkill"),
        ("argo", "argoSigterm"),
    ] {
        let Some(wanted) = expect.get(key).and_then(Value::as_object) else {
            continue;
        };
        let mut got = Map::new();
        for name in wanted.keys() {
            let command = subject["commands"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["container"] == name.as_str())
                .unwrap_or_else(|| panic!("no kill command for `{name}`"));
            let value = &command[field];
            let value = if value.is_object() {
                value.get("argv").cloned().unwrap_or_else(|| value.clone())
            } else {
                value.clone()
            };
            got.insert(name.clone(), value);
        }
        out.insert(key.into(), Value::Object(got));
    }
    Value::Object(out)
}

#[test]
fn every_vector_matches_its_expectation() {
    let all = vectors::load_all();
    assert!(
        all.len() >= 30,
        "at least 30 vectors expected, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for vector in &all {
        let answer: Value = serde_json::from_slice(&sidekill_policy::call(
            sidekill_policy::Call::Plan,
            &vector.request,
        ))
        .unwrap();
        let expect = &vector.json["expect"];
        let got = if expect.get("error").is_some() {
            let mut got = json!({"error": answer["error"]["code"]});
            if expect.get("path").is_some() {
                got["path"] = answer["error"]["path"].clone();
            }
            got
        } else if answer.get("ok").is_none() {
            json!({"unexpected": answer})
        } else {
            let subjects = answer["ok"]["subjects"].as_array().unwrap();
            let wanted = expect["subjects"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            json!({"subjects": subjects.iter().enumerate().map(|(i, s)| project(s, wanted.get(i).unwrap_or(&Value::Null))).collect::<Vec<_>>()})
        };
        if &got != expect {
            failures.push(format!(
                "{}:\n  expected {}\n  got      {}",
                vector.name,
                serde_json::to_string(expect).unwrap(),
                serde_json::to_string(&got).unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn every_real_world_fixture_has_a_vector_and_a_plan() {
    let all = vectors::load_all();
    let covered: Vec<String> = all
        .iter()
        .filter_map(|v| v.json["fixture"].as_str().map(String::from))
        .collect();
    let root = vectors::fixtures_dir();
    let mut missing = Vec::new();
    let mut count = 0;
    for dir in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                continue;
            }
            count += 1;
            let rel = format!("{}/{}", dir.file_name().unwrap().to_string_lossy(), name);
            let text = std::fs::read_to_string(&file).unwrap();
            for doc in sidekill_policy::yaml::documents(&text).unwrap() {
                let request = serde_json::to_vec(&json!({"object": doc})).unwrap();
                let answer: Value = serde_json::from_slice(&sidekill_policy::call(
                    sidekill_policy::Call::Plan,
                    &request,
                ))
                .unwrap();
                assert!(
                    answer["ok"]["subjects"]
                        .as_array()
                        .is_some_and(|s| !s.is_empty()),
                    "{rel}: no plan: {answer}"
                );
            }
            if !covered.contains(&rel) {
                missing.push(rel);
            }
        }
    }
    assert!(
        count >= 23,
        "expected the 23 real-world fixtures under {}, found {count}",
        root.display()
    );
    assert!(missing.is_empty(), "fixtures without a vector: {missing:?}");
}
