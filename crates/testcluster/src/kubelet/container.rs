//! One container's life on the node: its argv and environment, starting it (or failing to, as
//! containerd words it), supervising it through restarts by `restartPolicy` with back-off, an
//! image change of its spec, and stopping it from outside (SIGTERM, grace, SIGKILL).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rustix::process::Signal;
use tokio::sync::watch;

use crate::error::Result;
use crate::images::Image;
use crate::kinds::NODE_NAME;
use crate::process::{self, Exit, LaunchSpec};
use crate::store::now;

use super::pod::deletion;
use super::status::{event, set_container, waiting};
use super::{hex_id, image_id, lock, Inner, PodRuntime, Slot, MIN_GRACE, POD_IP};

/// The container of that name in the pod's spec (init or regular).
fn container_spec(pod: &Pod, name: &str, init: bool) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        spec.containers.as_slice()
    };
    list.iter().find(|c| c.name == name).cloned()
}

/// Returns once the stored spec gives container `c` another image (never if the pod's
/// runtime goes away).
async fn image_changed(spec_rx: &mut watch::Receiver<Arc<Pod>>, c: &Container, init: bool) {
    loop {
        if spec_rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let latest = spec_rx.borrow_and_update().clone();
        if container_spec(&latest, &c.name, init).is_some_and(|n| n.image != c.image) {
            return;
        }
    }
}

/// How a container's exit decides a restart, as the kubelet decides it (k8s.io/kubernetes
/// v1.37.2 pkg/kubelet/container/helpers.go ShouldContainerBeRestarted: `Never` never,
/// `OnFailure` unless the exit code is 0, `Always` always). While it backs off the container is
/// `Waiting` with reason `CrashLoopBackOff` and the message of
/// pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, its end kept in `lastState`, and
/// `restartCount` grows when the next instance starts. The kubelet's back-off starts at 10 s
/// and doubles up to MaxCrashLoopBackOff, 5 min (pkg/kubelet/kubelet.go); here it is
/// `restart_backoff` (1 s), doubling up to 8 times that, so tests see a restart in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    pub(super) fn from_policy(p: Option<&str>) -> Restart {
        match p {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    pub(super) fn again(self, code: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => code != 0,
            Restart::Never => false,
        }
    }
}

pub(super) fn container_env(pod: &Pod, c: &Container, image: &Image) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = pod.metadata.name.clone().unwrap_or_default();
    env.push(("HOSTNAME".into(), name.clone()));
    env.push(("HOME".into(), "/root".into()));
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => name.clone(),
                Some("metadata.namespace") => pod.metadata.namespace.clone().unwrap_or_default(),
                Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                Some("spec.nodeName") => NODE_NAME.into(),
                Some("status.podIP") | Some("status.podIPs") => POD_IP.into(),
                Some("status.hostIP") | Some("status.hostIPs") => "127.0.0.1".into(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        env.retain(|(k, _)| *k != e.name);
        env.push((e.name.clone(), value));
    }
    env
}

fn argv_of(c: &Container, image: &Image) -> Vec<String> {
    let mut argv = c
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    argv.extend(c.args.iter().flatten().cloned());
    argv
}

pub(super) fn field_path(c: &Container, init: bool) -> String {
    format!(
        "spec.{}{{{}}}",
        if init { "initContainers" } else { "containers" },
        c.name
    )
}

/// Starts a container's process from `image` (in `target_pid1`'s PID namespace for an
/// ephemeral container), as the runtime does: a `command[0]` the image lacks is containerd's
/// `StartError` (exit 128, [`start_error`]); a started process takes the container's slot and
/// gets the `Created` event. The regular and the ephemeral paths share it.
pub(super) async fn start(
    inner: &Inner,
    rt: &PodRuntime,
    c: &Container,
    image: &Arc<Image>,
    env: Vec<(String, String)>,
    target_pid1: Option<i32>,
    fp: &str,
) -> Result<process::Launched, (Exit, Option<String>)> {
    let argv = argv_of(c, image);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = argv.first().cloned().unwrap_or_default();
    let launched = if image.resolve(&program, path).is_none() {
        Err(start_error(&program))
    } else {
        let log = rt.dir.join(format!("{}.log", c.name));
        process::launch(
            &inner.tools,
            &inner.spawner,
            LaunchSpec {
                argv: &argv,
                env: &env,
                root: image.root.as_deref(),
                workdir: c.working_dir.as_deref().unwrap_or("/"),
                log: &log,
                target_pid1,
            },
        )
        .await
        .map_err(|e| e.to_string())
    };
    match launched {
        Err(message) => {
            event(
                inner,
                rt,
                "Warning",
                "Failed",
                format!("Error: {message}"),
                Some(fp.to_owned()),
            );
            Err((
                Exit {
                    code: 128,
                    signal: None,
                },
                Some(message),
            ))
        }
        Ok(l) => {
            if let Some(pid1) = l.pid1 {
                lock(&rt.slots).insert(
                    c.name.clone(),
                    Slot {
                        pid1,
                        launcher: l.launcher,
                        image: Arc::clone(image),
                        env,
                    },
                );
            }
            event(
                inner,
                rt,
                "Normal",
                "Created",
                format!("Created container: {}", c.name),
                Some(fp.to_owned()),
            );
            Ok(l)
        }
    }
}

fn start_error(program: &str) -> String {
    let detail = if program.contains('/') {
        format!("exec: \"{program}\": stat {program}: no such file or directory")
    } else {
        format!("exec: \"{program}\": executable file not found in $PATH")
    };
    format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {detail}: unknown")
}

/// One container to supervise, and where it belongs.
pub(super) struct Job {
    pub(super) inner: Arc<Inner>,
    pub(super) rt: Arc<PodRuntime>,
    pub(super) pod: Arc<Pod>,
    pub(super) c: Container,
    pub(super) init: bool,
    pub(super) restart: Restart,
}

/// Runs one container, restarting it as `restart` says, until it is done or told to stop.
pub(super) async fn supervise(
    job: Job,
    mut stop_rx: watch::Receiver<Option<Duration>>,
    started_tx: watch::Sender<bool>,
) -> i32 {
    let Job {
        inner,
        rt,
        pod,
        mut c,
        init,
        restart,
    } = job;
    let mut backoff = inner.backoff;
    let fp = field_path(&c, init);
    let mut last_code = 0;
    let mut spec_rx = rt.spec_tx.subscribe();
    loop {
        if stop_rx.borrow().is_some() {
            return last_code;
        }
        // Each start uses the container as the spec has it now (an image swapped while it was
        // not running), and the image that names; an image the node cannot pull waits for
        // another change or the end, as ErrImagePull/ImagePullBackOff does.
        let image = loop {
            let latest = spec_rx.borrow_and_update().clone();
            if let Some(now_c) = container_spec(&latest, &c.name, init) {
                c = now_c;
            }
            let reference = c.image.clone().unwrap_or_default();
            if let Some(i) = inner.images.find(&reference) {
                break i;
            }
            let msg = pull_failed(&inner, &rt, &reference, fp.clone());
            set_container(&inner, &rt, &c.name, init, |cs| {
                cs.image = reference.clone();
                cs.state = Some(waiting("ErrImagePull", Some(msg)));
            });
            tokio::select! {
                _ = deletion(&mut stop_rx) => return last_code,
                r = spec_rx.changed() => if r.is_err() { std::future::pending::<()>().await },
            }
        };
        let env = container_env(&pod, &c, &image);
        let run = Run::new();
        let launched = start(&inner, &rt, &c, &image, env, None, &fp).await;
        let mut changed = false;
        let (exit, message) = match launched {
            Err(failed) => failed,
            Ok(mut l) => {
                set_container(&inner, &rt, &c.name, init, |cs| {
                    run.running(cs, &image);
                    cs.image = c.image.clone().unwrap_or_default();
                    cs.ready = true;
                });
                started_event(&inner, &rt, &c.name, &fp);
                let _ = started_tx.send(true);
                let stop = tokio::select! {
                    e = l.wait(false) => Ended::Exited(e),
                    g = deletion(&mut stop_rx) => Ended::Stopped(g),
                    () = image_changed(&mut spec_rx, &c, init) => Ended::Changed,
                };
                let exit = match stop {
                    Ended::Exited(e) => e,
                    Ended::Stopped(grace) => {
                        event(
                            &inner,
                            &rt,
                            "Normal",
                            "Killing",
                            format!("Stopping container {}", c.name),
                            Some(fp.clone()),
                        );
                        kill(&mut l, grace).await
                    }
                    Ended::Changed => {
                        changed = true;
                        event(
                            &inner,
                            &rt,
                            "Normal",
                            "Killing",
                            format!("Container {} definition changed, will be restarted", c.name),
                            Some(fp.clone()),
                        );
                        // killContainer's grace: the pod's deletion grace if it is being
                        // deleted, else its terminationGracePeriodSeconds; at least 2 s.
                        let latest = spec_rx.borrow().clone();
                        let secs = latest
                            .metadata
                            .deletion_grace_period_seconds
                            .or_else(|| {
                                latest
                                    .spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                            })
                            .unwrap_or(30);
                        let grace = Duration::from_secs(secs.max(0).unsigned_abs()).max(MIN_GRACE);
                        kill(&mut l, grace).await
                    }
                };
                lock(&rt.slots).remove(&c.name);
                (exit, None)
            }
        };
        last_code = exit.code;
        let terminated = run.terminated(exit, message);
        let stopping = stop_rx.borrow().is_some();
        if changed && !stopping {
            // Started again at once with the new image, whatever the restart policy.
            set_container(&inner, &rt, &c.name, init, |cs| {
                cs.ready = false;
                cs.started = Some(false);
                cs.last_state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
                cs.state = Some(waiting("ContainerCreating", None));
                cs.restart_count += 1;
            });
            continue;
        }
        let again = !stopping && restart.again(exit.code);
        let pod_name = format!("{}_{}({})", rt.key.1, rt.key.0, rt.uid);
        set_container(&inner, &rt, &c.name, init, |cs| {
            cs.ready = false;
            cs.started = Some(false);
            cs.image = c.image.clone().unwrap_or_default();
            if again {
                cs.last_state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
                cs.state = Some(waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting failed container={} pod={pod_name}",
                        backoff.as_secs(),
                        c.name
                    )),
                ));
            } else {
                cs.state = Some(ContainerState {
                    terminated: Some(terminated.clone()),
                    ..Default::default()
                });
            }
        });
        if !again {
            return exit.code;
        }
        event(
            &inner,
            &rt,
            "Warning",
            "BackOff",
            format!(
                "Back-off restarting failed container {} in pod {}",
                c.name, pod_name
            ),
            Some(fp.clone()),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = deletion(&mut stop_rx) => return exit.code,
        }
        backoff = (backoff * 2).min(inner.backoff * 8);
        set_container(&inner, &rt, &c.name, init, |cs| cs.restart_count += 1);
    }
}

/// How a running container's wait ended.
enum Ended {
    /// It exited by itself.
    Exited(Exit),
    /// The pod task stopped it, with this grace period.
    Stopped(Duration),
    /// Its image changed in the spec.
    Changed,
}

/// One start of a container (regular, init or ephemeral): its runtime ID and start time,
/// which its `running` and then its `terminated` state carry.
pub(super) struct Run {
    container_id: String,
    started_at: Time,
}

impl Run {
    /// A start now, with a fresh containerd ID.
    pub(super) fn new() -> Run {
        Run {
            container_id: format!("containerd://{}", hex_id()),
            started_at: now(),
        }
    }

    /// Marks `cs` running this start of `image` (the caller adds what only its list reports).
    pub(super) fn running(&self, cs: &mut ContainerStatus, image: &Image) {
        cs.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(self.started_at.clone()),
            }),
            ..Default::default()
        });
        cs.container_id = Some(self.container_id.clone());
        cs.image_id = image_id(&image.name);
        cs.started = Some(true);
    }

    /// How this start ended: `exit`, or a start that failed with `message` (reason
    /// `StartError`); else reason `Completed` for exit code 0 and `Error` for any other.
    pub(super) fn terminated(
        &self,
        exit: Exit,
        message: Option<String>,
    ) -> ContainerStateTerminated {
        let reason = if message.is_some() {
            "StartError"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        ContainerStateTerminated {
            container_id: Some(self.container_id.clone()),
            exit_code: exit.code,
            finished_at: Some(now()),
            message,
            reason: Some(reason.into()),
            signal: exit.signal,
            started_at: Some(self.started_at.clone()),
        }
    }
}

/// The kubelet's `Started` event for container `name`.
pub(super) fn started_event(inner: &Inner, rt: &PodRuntime, name: &str, fp: &str) {
    event(
        inner,
        rt,
        "Normal",
        "Started",
        format!("Started container {name}"),
        Some(fp.to_owned()),
    );
}

/// Stops a container from outside as the runtime does: SIGTERM to its PID 1 (dropped by the
/// kernel when PID 1 has no handler), `grace`, then SIGKILL; zero grace is SIGKILL at once.
pub(super) async fn kill(l: &mut process::Launched, grace: Duration) -> Exit {
    let target = l.pid1.unwrap_or(l.launcher);
    if grace.is_zero() {
        process::signal(target, Signal::KILL);
        return l.wait(true).await;
    }
    process::signal(target, Signal::TERM);
    match tokio::time::timeout(grace, l.wait(false)).await {
        Ok(e) => e,
        Err(_) => {
            process::signal(target, Signal::KILL);
            l.wait(true).await
        }
    }
}

/// The `ErrImagePull` message for an image the node cannot run.
/// The image cannot be pulled: a `Failed` Event on the pod for the container at `field_path`,
/// and the message for its status.
pub(super) fn pull_failed(
    inner: &Inner,
    rt: &PodRuntime,
    reference: &str,
    field_path: String,
) -> String {
    let msg = pull_error(inner, reference);
    event(
        inner,
        rt,
        "Warning",
        "Failed",
        msg.clone(),
        Some(field_path),
    );
    msg
}

fn pull_error(inner: &Inner, reference: &str) -> String {
    match inner.images.unavailable(reference) {
        Some(why) => format!("Failed to pull image \"{reference}\": {why}"),
        None => format!(
            "Failed to pull image \"{reference}\": the test cluster has no stand-in for it (see tests/images/README.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_read_like_containerd() {
        assert!(start_error("/bin/sh")
            .contains("exec: \"/bin/sh\": stat /bin/sh: no such file or directory"));
        assert!(start_error("sh").contains("executable file not found in $PATH"));
    }
}
