//! A container's state as the executor reads it from the pod's status: running, ended (which
//! instance, with what code), restarted by the kubelet.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a container's state is, as far as the executor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    Terminated(i32),
    /// Waiting, or no status yet.
    Other,
    /// No such container in the pod's status.
    Missing,
}

pub(super) fn container_state(pod: &Pod, name: &str) -> State {
    let Some(st) = pod.status.as_ref() else {
        return State::Missing;
    };
    let found = st
        .container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name);
    match found.and_then(|c| c.state.as_ref()) {
        None if found.is_none() => State::Missing,
        None => State::Other,
        Some(s) => {
            if let Some(t) = &s.terminated {
                State::Terminated(t.exit_code)
            } else if s.running.is_some() {
                State::Running
            } else {
                State::Other
            }
        }
    }
}

pub(super) fn status_of<'p>(pod: &'p Pod, name: &str) -> Option<&'p ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

/// The running instance of a container (its `containerID`), to tell its end from a later
/// instance's.
pub(super) fn running_instance(pod: &Pod, name: &str) -> Option<String> {
    let cs = status_of(pod, name)?;
    cs.state.as_ref()?.running.as_ref()?;
    cs.container_id.clone()
}

/// How a container's instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct End {
    /// Its exit code.
    pub code: i32,
    /// The kubelet restarts it, or has: the container's current state is another instance (or
    /// the back-off before it), and the ended instance is its `lastState`.
    pub restarted: bool,
    /// The container's restart count now.
    pub restart_count: i32,
}

/// Whether `instance` of the container has ended (any instance, when `None`). The kubelet keeps
/// an instance's end in `state.terminated` when it is not restarted, and in
/// `lastState.terminated` once it restarts the container (CrashLoopBackOff while it backs off,
/// then the new instance running): pkg/kubelet/kubelet_pods.go convertToAPIContainerStatuses.
pub(super) fn ended(pod: &Pod, name: &str, instance: Option<&str>) -> Option<End> {
    let cs = status_of(pod, name)?;
    if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
        let ours = match (instance, t.container_id.as_deref()) {
            (Some(i), Some(id)) => i == id,
            _ => true,
        };
        return Some(End {
            code: t.exit_code,
            restarted: !ours,
            restart_count: cs.restart_count,
        });
    }
    let instance = instance?;
    let last = cs.last_state.as_ref()?.terminated.as_ref()?;
    (last.container_id.as_deref() == Some(instance)).then_some(End {
        code: last.exit_code,
        restarted: true,
        restart_count: cs.restart_count,
    })
}

/// The container's restart count and the exit code of its last ended instance, when the
/// kubelet has restarted it at least once.
pub(super) fn restarted_before(pod: &Pod, name: &str) -> Option<(i32, i32)> {
    let cs = status_of(pod, name)?;
    let last = cs.last_state.as_ref()?.terminated.as_ref()?;
    Some((cs.restart_count, last.exit_code))
}
