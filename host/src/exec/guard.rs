//! The executor's checks of a plan before it acts on it. The module is code from outside (it
//! can be hot-swapped), so the host trusts its answer no further than invariants that need
//! no policy knowledge. A step is refused when:
//!
//! - the pod's UID is not the one the plan was made for (the pod was recreated under the
//!   same name);
//! - its container is not in the pod's spec;
//! - its signal is not a signal number (1 to 64);
//! - an `exec` or `ephemeral` argv is neither the pod's own
//!   `workflows.argoproj.io/kill-cmd-<container>` annotation rendered with the step's signal
//!   nor a command of the module's signed catalogue ([`sidekill_policy::catalogue`], whose
//!   matcher runs natively here: the module supplies templates, never the matching);
//! - an `http` step's port is not declared by a container of the pod;
//! - an `image-swap` names another container's index;
//! - the action's kind is unknown.
//!
//! Namespaces outside the executor's scope are refused before the pod is planned
//! ([`super::Options::scope`]).

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use sidekill_policy::{argo, catalogue, killcmd};

/// Why a step is refused, for the step's report and an Event.
pub(super) type Refusal = String;

/// Checks one step of `container`'s stop against the pod as it is now.
pub(super) fn check_step(
    pod: &Pod,
    planned_uid: &str,
    container: &str,
    step: &Value,
    commands: &[Vec<String>],
) -> Result<(), Refusal> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if uid != planned_uid {
        return Err(format!(
            "the pod was recreated (UID {uid}, the plan was made for {planned_uid})"
        ));
    }
    let spec = pod.spec.as_ref();
    let in_spec = spec.is_some_and(|s| {
        s.containers.iter().any(|c| c.name == container)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    });
    if !in_spec {
        return Err(format!("the pod has no container {container}"));
    }
    match step.get("step").and_then(Value::as_str) {
        Some("send") => {}
        Some("wait") => return Ok(()),
        Some("await") => {
            let target = step.get("container").and_then(Value::as_str).unwrap_or("");
            let known = spec.is_some_and(|s| s.containers.iter().any(|c| c.name == target));
            return if known {
                Ok(())
            } else {
                Err(format!(
                    "an await of {target:?}, which is not a container of the pod"
                ))
            };
        }
        other => return Err(format!("a step of unknown kind {other:?}")),
    }
    let signal = step
        .get("signal")
        .and_then(Value::as_u64)
        .and_then(|s| u8::try_from(s).ok())
        .filter(|s| (1..=64).contains(s))
        .ok_or_else(|| {
            format!(
                "a send without a signal number (1 to 64): {}",
                step.get("signal").unwrap_or(&Value::Null)
            )
        })?;
    let action = step.get("action").unwrap_or(&Value::Null);
    match action.get("kind").and_then(Value::as_str) {
        Some("exec") => {
            let argv = strings(action.get("argv"));
            if annotation_argv(pod, container, signal).as_ref() == Some(&argv)
                || in_catalogue(commands, &argv, signal)
            {
                Ok(())
            } else {
                Err(format!(
                    "the argv {argv:?} is neither the pod's kill-cmd annotation for {container} nor a command of the policy's catalogue"
                ))
            }
        }
        Some("ephemeral") => {
            let argv = strings(action.get("argv"));
            if in_catalogue(commands, &argv, signal) {
                Ok(())
            } else {
                Err(format!(
                    "the quitter's argv {argv:?} is not a command of the policy's catalogue"
                ))
            }
        }
        Some("http") => {
            let port = action.get("port").and_then(Value::as_u64);
            let declared = spec.is_some_and(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .flat_map(|c| c.ports.iter().flatten())
                    .any(|p| u64::try_from(p.container_port).ok() == port)
            });
            if declared {
                Ok(())
            } else {
                Err(format!(
                    "an HTTP request to port {}, which no container of the pod declares",
                    port.map_or_else(|| "?".to_owned(), |p| p.to_string())
                ))
            }
        }
        Some("image-swap") => {
            let index = action
                .get("containerIndex")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok());
            let named = index
                .and_then(|i| spec.and_then(|s| s.containers.get(i)))
                .map(|c| c.name.as_str());
            if named == Some(container) {
                Ok(())
            } else {
                Err(format!(
                    "an image swap of container index {index:?}, which is {named:?}, not {container}"
                ))
            }
        }
        other => Err(format!("an action of unknown kind {other:?}")),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("\u{fffd}").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pod's own kill-cmd annotation for `container`, rendered with `signal`, when valid.
fn annotation_argv(pod: &Pod, container: &str, signal: u8) -> Option<Vec<String>> {
    let key = format!("{}{container}", argo::KILL_CMD_PREFIX);
    let value = pod.metadata.annotations.as_ref()?.get(&key)?;
    let template = killcmd::parse(value).ok()?;
    Some(killcmd::render(&template, signal))
}

fn in_catalogue(commands: &[Vec<String>], argv: &[String], signal: u8) -> bool {
    commands.iter().any(|t| {
        let template: Vec<&str> = t.iter().map(String::as_str).collect();
        catalogue::matches(&template, argv, signal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u1", "annotations": {
                "workflows.argoproj.io/kill-cmd-side": "[\"/bin/kill\",\"-%d\",\"7\"]"}},
            "spec": {"containers": [
                {"name": "main", "image": "m"},
                {"name": "side", "image": "s", "ports": [{"containerPort": 15020}]}]}
        }))
        .expect("pod")
    }

    fn catalogue() -> Vec<Vec<String>> {
        catalogue::COMMANDS
            .iter()
            .map(|t| t.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    fn send(action: Value) -> Value {
        json!({"step": "send", "signal": 15, "signalName": "SIGTERM", "action": action})
    }

    #[test]
    fn catalogue_and_annotation_argvs_pass_others_are_refused() {
        let p = pod();
        let c = catalogue();
        let ok = |step: &Value| check_step(&p, "u1", "side", step, &c);
        assert_eq!(
            ok(&send(
                json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]})
            )),
            Ok(())
        );
        assert_eq!(
            ok(&send(
                json!({"kind": "exec", "argv": ["/bin/kill", "-15", "7"]})
            )),
            Ok(())
        );
        let evil = ok(&send(
            json!({"kind": "exec", "argv": ["/bin/sh", "-c", "cat /var/run/secrets/*"]}),
        ));
        assert!(evil.is_err_and(|e| e.contains("catalogue")));
        // The annotation of another container does not vouch for this one.
        let other = check_step(
            &p,
            "u1",
            "main",
            &send(json!({"kind": "exec", "argv": ["/bin/kill", "-15", "7"]})),
            &c,
        );
        assert!(other.is_err());
        // An old module without a catalogue: only annotations run.
        let none = check_step(
            &p,
            "u1",
            "side",
            &send(json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]})),
            &[],
        );
        assert!(none.is_err());
    }

    #[test]
    fn the_pod_and_the_action_must_be_the_planned_ones() {
        let p = pod();
        let c = catalogue();
        let step = send(json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]}));
        assert!(check_step(&p, "u0", "side", &step, &c).is_err_and(|e| e.contains("recreated")));
        assert!(check_step(&p, "u1", "ghost", &step, &c).is_err_and(|e| e.contains("no container")));
        let http = |port: u64| {
            send(json!({"kind": "http", "method": "POST", "port": port, "path": "/quitquitquit"}))
        };
        assert_eq!(check_step(&p, "u1", "side", &http(15020), &c), Ok(()));
        assert!(check_step(&p, "u1", "side", &http(22), &c).is_err_and(|e| e.contains("declares")));
        let swap =
            |i: u64| send(json!({"kind": "image-swap", "containerIndex": i, "image": "nop"}));
        assert_eq!(check_step(&p, "u1", "side", &swap(1), &c), Ok(()));
        assert!(check_step(&p, "u1", "side", &swap(0), &c).is_err());
        assert!(check_step(&p, "u1", "side", &send(json!({"kind": "teleport"})), &c).is_err());
        let mut no_signal = step.clone();
        no_signal["signal"] = json!(0);
        assert!(check_step(&p, "u1", "side", &no_signal, &c).is_err());
        assert!(check_step(&p, "u1", "side", &json!({"step": "reboot"}), &c).is_err());
    }
}
