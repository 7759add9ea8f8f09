//! What the node writes back: container statuses, the pod's phase and conditions by the
//! kubelet's rules (`getPhase`), and Events.

use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Event, EventSource, ObjectReference,
    Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::kinds::{is_sidecar, NODE_NAME};
use crate::status::ApiError;
use crate::store::now;

use super::{event_name, Inner, PodRuntime};

/// Updates the pod's status with `f` and recomputes phase and conditions.
pub(super) fn update_status(inner: &Inner, rt: &PodRuntime, f: impl FnOnce(&mut Pod)) {
    let terminal = rt.terminal.load(Ordering::SeqCst);
    let _ = inner.pods.update(&rt.key.0, &rt.key.1, |p| {
        if p.metadata.uid.as_deref() != Some(rt.uid.as_str()) {
            // A newer pod of the same name: this runtime's updates are stale.
            return Err(ApiError::conflict("pods", &rt.key.1));
        }
        f(p);
        recompute(p, terminal);
        Ok(())
    });
}

pub(super) fn set_container(
    inner: &Inner,
    rt: &PodRuntime,
    name: &str,
    init: bool,
    f: impl FnOnce(&mut ContainerStatus),
) {
    update_status(inner, rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        let list = if init {
            st.init_container_statuses.get_or_insert_with(Vec::new)
        } else {
            st.container_statuses.get_or_insert_with(Vec::new)
        };
        if let Some(cs) = list.iter_mut().find(|c| c.name == name) {
            f(cs);
        }
    });
}

pub(super) fn event(
    inner: &Inner,
    rt: &PodRuntime,
    type_: &str,
    reason: &str,
    message: String,
    field_path: Option<String>,
) {
    let ts = now();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(event_name(&rt.key.1)),
            namespace: Some(rt.key.0.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(rt.key.1.clone()),
            namespace: Some(rt.key.0.clone()),
            uid: Some(rt.uid.clone()),
            field_path,
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(
                if reason == "Scheduled" {
                    "default-scheduler"
                } else {
                    "kubelet"
                }
                .into(),
            ),
            host: Some(NODE_NAME.into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(NODE_NAME.into()),
        first_timestamp: Some(ts.clone()),
        last_timestamp: Some(ts),
        count: Some(1),
        ..Default::default()
    };
    let _ = inner.events.create(ev);
}

pub(super) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

pub(super) fn set_condition(
    conds: &mut Vec<PodCondition>,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) {
    let status = if ok { "True" } else { "False" };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now());
            }
            c.status = status.into();
            c.reason = reason;
            c.message = message;
        }
        None => conds.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: Some(now()),
            ..Default::default()
        }),
    }
}

/// The kubelet's `getPhase` and pod conditions, for the current container statuses.
fn recompute(p: &mut Pod, terminal: bool) {
    let spec = p.spec.clone().unwrap_or_default();
    let st = p.status.get_or_insert_with(Default::default);
    if matches!(st.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return;
    }
    let init_st = st.init_container_statuses.clone().unwrap_or_default();
    let main_st = st.container_statuses.clone().unwrap_or_default();
    let find = |list: &[ContainerStatus], n: &str| list.iter().find(|c| c.name == n).cloned();
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let mut unready = Vec::new();
    let mut uninitialized = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(cs) = find(&init_st, &c.name) else {
            if is_sidecar(c) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            uninitialized.push(c.name.clone());
            continue;
        };
        let state = cs.state.clone().unwrap_or_default();
        let last_failed = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code != 0);
        if is_sidecar(c) {
            if state.running.is_some() {
                if cs.started != Some(true) {
                    pending_sidecar += 1;
                    uninitialized.push(c.name.clone());
                }
                running += 1;
                if !cs.ready {
                    unready.push(c.name.clone());
                }
            } else if state.terminated.is_some()
                || cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
            {
                // Terminated sidecars do not count for the phase.
            } else {
                pending_sidecar += 1;
                waiting_n += 1;
                uninitialized.push(c.name.clone());
                unready.push(c.name.clone());
            }
            continue;
        }
        if state.running.is_some() {
            pending_init += 1;
            uninitialized.push(c.name.clone());
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
                uninitialized.push(c.name.clone());
            }
        } else if let Some(failed) = last_failed {
            if failed {
                failed_init += 1;
            }
            uninitialized.push(c.name.clone());
        } else {
            pending_init += 1;
            uninitialized.push(c.name.clone());
        }
    }
    for c in &spec.containers {
        let Some(cs) = find(&main_st, &c.name) else {
            unknown += 1;
            unready.push(c.name.clone());
            continue;
        };
        let state = cs.state.clone().unwrap_or_default();
        if !cs.ready {
            unready.push(c.name.clone());
        }
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting_n += 1;
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = if failed_init > 0 && policy == "Never" {
        "Failed"
    } else if pending_init > 0 || (pending_sidecar > 0 && !terminal) || waiting_n > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    // Until the pod task has stopped the sidecars, a finished pod still counts as running.
    let phase = if matches!(phase, "Succeeded" | "Failed") && !terminal {
        "Running"
    } else {
        phase
    };
    st.phase = Some(phase.into());
    let conds = st.conditions.get_or_insert_with(Vec::new);
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    let initialized = uninitialized.is_empty();
    set_condition(
        conds,
        "Initialized",
        initialized,
        (!initialized).then(|| "ContainersNotInitialized".into()),
        (!initialized).then(|| {
            format!(
                "containers with incomplete status: {}",
                list(&uninitialized)
            )
        }),
    );
    let done = matches!(phase, "Succeeded" | "Failed");
    let ready = unready.is_empty() && !done;
    let (reason, message) = if done {
        (Some("PodCompleted".to_string()), None)
    } else if ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    set_condition(
        conds,
        "ContainersReady",
        ready,
        reason.clone(),
        message.clone(),
    );
    set_condition(conds, "Ready", ready, reason, message);
    let order = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conds.sort_by_key(|c| {
        order
            .iter()
            .position(|o| *o == c.type_)
            .unwrap_or(order.len())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn phase_follows_the_kubelet_rules() {
        let running = json!({"running": {}});
        let done = |c: i32| json!({"terminated": {"exitCode": c}});
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never",
                     "initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always"}],
                     "containers": [{"name": "main", "image": "x"}]},
            "status": {"initContainerStatuses": [{"name": "proxy", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": running}],
                       "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": done(0)}]}
        }));
        recompute(&mut p, false);
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Running"),
            "sidecar still running"
        );
        p.status
            .as_mut()
            .unwrap()
            .init_container_statuses
            .as_mut()
            .unwrap()[0]
            .state = Some(serde_json::from_value(done(143)).unwrap());
        recompute(&mut p, true);
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded"),
            "sidecar exit codes do not count"
        );
        let ready = p
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn a_failed_main_fails_the_pod() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}, {"name": "side", "image": "x"}]},
            "status": {"containerStatuses": [
                {"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}},
                {"name": "side", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }));
        recompute(&mut p, false);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1]
            .state = Some(serde_json::from_value(json!({"terminated": {"exitCode": 0}})).unwrap());
        recompute(&mut p, true);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));
    }
}
