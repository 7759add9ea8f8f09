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

/// An exec or ephemeral action's argv, space-separated as the expectations write it.
fn argv_text(action: &Value) -> String {
    let argv: Vec<&str> = action["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    argv.join(" ")
}

fn step_text(step: &Value) -> String {
    match step["step"].as_str() {
        Some("await") => format!("await {}", step["container"].as_str().unwrap()),
        Some("wait") => format!("wait {}", step["seconds"]),
        Some("send") => {
            let action = &step["action"];
            match action["kind"].as_str() {
                Some("exec") => format!("send {} exec {}", step["signal"], argv_text(action)),
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
                Some("ephemeral") => format!(
                    "send {} ephemeral @{} {} {}",
                    step["signal"],
                    action["targetContainerName"].as_str().unwrap(),
                    action["image"].as_str().unwrap(),
                    argv_text(action)
                ),
                other => panic!("unknown action {other:?}"),
            }
        }
        other => panic!("unknown step {other:?}"),
    }
}

/// `{container: value}` over `list` (a plan's stops, or an outcome's containers), for the
/// entries `value` answers: the per-container projections all key their entries this way.
fn per_container(list: &Value, value: impl Fn(&Value) -> Option<Value>) -> Value {
    Value::Object(
        list.as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some((e["container"].as_str().unwrap().to_string(), value(e)?)))
            .collect(),
    )
}

/// A stop's SIGTERM step, where the exit expectation and the endpoint are.
fn sigterm_step(stop: &Value) -> Option<&Value> {
    stop["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["signal"] == 15)
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
    let stops = &subject["plan"]["stops"];
    if expect.get("exits").is_some() {
        let exits = per_container(stops, |s| {
            Some(sigterm_step(s).map_or(Value::Null, |st| st["expectedExit"]["code"].clone()))
        });
        out.insert("exits".into(), exits);
    }
    if expect.get("results").is_some() {
        let results = per_container(&outcome["containers"], |c| Some(c["result"].clone()));
        out.insert("results".into(), results);
    }
    // Stop methods (issue 13): only when the expectation has them. `methods` is each stop's
    // method kind, `endpoints` the endpoint its SIGTERM step calls, with its access rule.
    if expect.get("methods").is_some() {
        let methods = per_container(stops, |s| Some(s["method"]["kind"].clone()));
        out.insert("methods".into(), methods);
    }
    if expect.get("endpoints").is_some() {
        let endpoints = per_container(stops, |s| {
            let e = sigterm_step(s)?.get("endpoint")?;
            let access = if e["loopbackOnly"] == true {
                "loopback-only"
            } else {
                "any"
            };
            Some(json!(format!(
                "{} {}:{}{} {access}",
                e["method"].as_str().unwrap(),
                e["host"].as_str().unwrap(),
                e["port"],
                e["path"].as_str().unwrap()
            )))
        });
        out.insert("endpoints".into(), endpoints);
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
    for (rel, file) in vectors::fixture_files() {
        count += 1;
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
    assert!(
        count >= 23,
        "expected the 23 real-world fixtures under {}, found {count}",
        root.display()
    );
    assert!(missing.is_empty(), "fixtures without a vector: {missing:?}");
}

/// The pod template (or pod) of a fixture document, as `{metadata, spec}`, and the path to it.
fn pod_of(doc: &Value) -> (Value, Vec<&'static str>) {
    match doc["kind"].as_str() {
        Some("Pod") => (doc.clone(), vec![]),
        Some("CronJob") => (
            doc["spec"]["jobTemplate"]["spec"]["template"].clone(),
            vec!["spec", "jobTemplate", "spec", "template"],
        ),
        _ => (doc["spec"]["template"].clone(), vec!["spec", "template"]),
    }
}

/// What the policy needs to be faithful about, per injected container: where it is, how it
/// runs, and as whom.
fn shape(pod: &Value, name: &str) -> Value {
    for list in ["initContainers", "containers"] {
        let containers = pod["spec"][list].as_array().cloned().unwrap_or_default();
        if let Some(i) = containers.iter().position(|c| c["name"] == name) {
            let c = &containers[i];
            let place = if i == 0 {
                "first"
            } else if i + 1 == containers.len() {
                "last"
            } else {
                "middle"
            };
            let lifecycle: Vec<&String> = c["lifecycle"]
                .as_object()
                .map(|l| l.keys().collect())
                .unwrap_or_default();
            let shutdown = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED")
                .map(|e| e["value"].clone());
            return json!({
                "list": list,
                "place": place,
                "restartPolicy": c["restartPolicy"],
                "command": c["command"],
                // The init containers' iptables arguments differ between releases; the
                // sidecar's program matters.
                "firstArg": if list == "containers" || c["restartPolicy"] == "Always" { c["args"][0].clone() } else { Value::Null },
                "runAsUser": c["securityContext"]["runAsUser"],
                "runAsNonRoot": c["securityContext"]["runAsNonRoot"],
                "lifecycle": lifecycle,
                "shutdownEnabled": shutdown,
            });
        }
    }
    Value::Null
}

/// Issue 19: the simulated injection adds what the injectors' own golden outputs show. Each
/// fixture is un-injected here (its injected containers and marks removed), injected again by
/// the policy, and the injected containers and the plans' roles compared.
#[test]
fn simulated_injection_matches_the_injectors_own_output() {
    let cases = [
        (
            "istio/hello.yaml.injected",
            "istio",
            false,
            ["istio-init", "istio-proxy"],
        ),
        (
            "istio/job.yaml.injected",
            "istio",
            true,
            ["istio-init", "istio-proxy"],
        ),
        (
            "linkerd/inject_emojivoto_deployment.golden.yml",
            "linkerd",
            true,
            ["linkerd-init", "linkerd-proxy"],
        ),
        (
            "linkerd/inject_emojivoto_deployment.golden.classic-52016cb.yml",
            "linkerd",
            false,
            ["linkerd-init", "linkerd-proxy"],
        ),
        (
            "kuma/inject.01.golden.yaml",
            "kuma",
            true,
            ["kuma-init", "kuma-sidecar"],
        ),
        (
            "kuma/inject.01.golden.legacy-f5aa65e.yaml",
            "kuma",
            false,
            ["kuma-init", "kuma-sidecar"],
        ),
    ];
    let root = vectors::fixtures_dir();
    let mut failures = Vec::new();
    for (fixture, injector, native, names) in cases {
        let text = std::fs::read_to_string(root.join(fixture)).unwrap();
        let doc = sidekill_policy::yaml::documents(&text).unwrap().remove(0);
        let (injected, at) = pod_of(&doc);
        // Un-inject: drop the injector's containers, volumes and annotations.
        let mut bare = doc.clone();
        let mut pod = &mut bare;
        for key in &at {
            pod = &mut pod[*key];
        }
        for list in ["initContainers", "containers"] {
            if let Some(cs) = pod["spec"][list].as_array_mut() {
                cs.retain(|c| !names.contains(&c["name"].as_str().unwrap_or("")));
            }
        }
        for key in ["annotations", "labels"] {
            if let Some(m) = pod["metadata"][key].as_object_mut() {
                m.retain(|k, _| !k.contains(injector) && !k.starts_with("kubectl.kubernetes.io"));
            }
        }
        let request = json!({"object": bare, "facts": {"inject": {injector: {"native": native}}}});
        let answer: Value = serde_json::from_slice(&sidekill_policy::call(
            sidekill_policy::Call::Plan,
            &serde_json::to_vec(&request).unwrap(),
        ))
        .unwrap();
        let subject = &answer["ok"]["subjects"][0];
        let simulated = &subject["injection"]["pod"];
        for name in names {
            let (want, got) = (shape(&injected, name), shape(simulated, name));
            if want != got {
                failures.push(format!(
                    "{fixture} `{name}`:\n  upstream  {want}\n  simulated {got}"
                ));
            }
        }
        let roles = |s: &Value| -> Value {
            s["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["role"].clone()))
                .collect::<Map<String, Value>>()
                .into()
        };
        let upstream: Value = serde_json::from_slice(&sidekill_policy::call(
            sidekill_policy::Call::Plan,
            &serde_json::to_vec(&json!({"object": doc})).unwrap(),
        ))
        .unwrap();
        let upstream_roles = roles(&upstream["ok"]["subjects"][0]);
        if upstream_roles != roles(subject) {
            failures.push(format!(
                "{fixture}: roles upstream {upstream_roles}, simulated {}",
                roles(subject)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
