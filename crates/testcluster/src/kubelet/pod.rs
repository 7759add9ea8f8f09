//! One pod's life on the node: init containers in order, native sidecars, the regular
//! containers, sidecars stopped when the regular ones are done, and deletion.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kinds::{is_sidecar, NODE_NAME};
use crate::store::now;

use super::container::{field_path, pull_failed, supervise, Job, Restart};
use super::status::{event, set_condition, set_container, update_status, waiting};
use super::{Inner, PodRuntime, POD_IP};

/// One supervised container.
struct Supervisor {
    name: String,
    stop_tx: watch::Sender<Option<Duration>>,
    started_rx: watch::Receiver<bool>,
    handle: Option<JoinHandle<i32>>,
    result: Option<i32>,
}

impl Supervisor {
    async fn join(&mut self) -> i32 {
        if let Some(r) = self.result {
            return r;
        }
        // Await the handle in place: a join cancelled by a `select!` must not lose the task.
        let r = match self.handle.as_mut() {
            Some(h) => h.await.unwrap_or(255),
            None => 255,
        };
        self.handle = None;
        self.result = Some(r);
        r
    }

    async fn stop(&mut self, grace: Duration) -> i32 {
        let _ = self.stop_tx.send(Some(grace));
        self.join().await
    }
}

pub(super) async fn deletion(rx: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(g) = *rx.borrow_and_update() {
            return g;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn start_supervisor(
    inner: &Arc<Inner>,
    rt: &Arc<PodRuntime>,
    pod: &Arc<Pod>,
    c: &Container,
    init: bool,
    restart: Restart,
) -> Supervisor {
    let (stop_tx, stop_rx) = watch::channel(None);
    let (started_tx, started_rx) = watch::channel(false);
    let job = Job {
        inner: inner.clone(),
        rt: rt.clone(),
        pod: pod.clone(),
        c: c.clone(),
        init,
        restart,
    };
    let handle = tokio::spawn(supervise(job, stop_rx, started_tx));
    Supervisor {
        name: c.name.clone(),
        stop_tx,
        started_rx,
        handle: Some(handle),
        result: None,
    }
}

/// Stops regular containers together, then sidecars in reverse order, within `grace` in all.
async fn stop_all(regular: &mut [Supervisor], sidecars: &mut [Supervisor], grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for s in regular.iter() {
        let _ = s.stop_tx.send(Some(grace));
    }
    for s in regular.iter_mut() {
        s.join().await;
    }
    for s in sidecars.iter_mut().rev() {
        tracing::debug!(container = %s.name, "stopping sidecar");
        // Sidecars get what is left of the grace period, and at least 2 s as the kubelet gives.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let g = if grace.is_zero() {
            Duration::ZERO
        } else {
            left.max(Duration::from_secs(2))
        };
        s.stop(g).await;
    }
}

pub(super) async fn run_pod(inner: Arc<Inner>, rt: Arc<PodRuntime>, pod: Pod) {
    let mut del = rt.delete_tx.subscribe();
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = Restart::from_policy(spec.restart_policy.as_deref());
    let inits: Vec<Container> = spec.init_containers.clone().unwrap_or_default();
    let pod = Arc::new(pod);
    event(
        &inner,
        &rt,
        "Normal",
        "Scheduled",
        format!(
            "Successfully assigned {}/{} to {NODE_NAME}",
            rt.key.0, rt.key.1
        ),
        None,
    );
    let status_of = |c: &Container, reason: &str| ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(reason, None)),
        ..Default::default()
    };
    let main_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    update_status(&inner, &rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        st.start_time = Some(now());
        st.host_ip = Some("127.0.0.1".into());
        st.pod_ip = Some(POD_IP.into());
        st.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: "127.0.0.1".into(),
        }]);
        st.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: POD_IP.into(),
        }]);
        if !inits.is_empty() {
            st.init_container_statuses = Some(
                inits
                    .iter()
                    .map(|c| status_of(c, "PodInitializing"))
                    .collect(),
            );
        }
        st.container_statuses = Some(
            spec.containers
                .iter()
                .map(|c| status_of(c, main_reason))
                .collect(),
        );
        let conds = st.conditions.get_or_insert_with(Vec::new);
        set_condition(conds, "PodReadyToStartContainers", true, None, None);
    });

    // Resolve every image first: an unknown one leaves its container waiting for good.
    let mut images = HashMap::new();
    let mut missing = false;
    for (c, init) in inits
        .iter()
        .map(|c| (c, true))
        .chain(spec.containers.iter().map(|c| (c, false)))
    {
        let reference = c.image.clone().unwrap_or_default();
        match inner.images.find(&reference) {
            Some(i) => {
                images.insert(c.name.clone(), i);
            }
            None => {
                missing = true;
                let msg = pull_failed(&inner, &rt, &reference, field_path(c, init));
                set_container(&inner, &rt, &c.name, init, |cs| {
                    cs.state = Some(waiting("ErrImagePull", Some(msg)))
                });
            }
        }
    }
    if missing {
        deletion(&mut del).await;
        remove_object(&inner, &rt);
        return;
    }
    for (name, image) in &images {
        let init = inits.iter().any(|c| &c.name == name);
        let fp = format!(
            "spec.{}{{{name}}}",
            if init { "initContainers" } else { "containers" }
        );
        event(
            &inner,
            &rt,
            "Normal",
            "Pulled",
            format!(
                "Container image \"{}\" already present on machine",
                image.name
            ),
            Some(fp),
        );
    }

    let mut sidecars: Vec<Supervisor> = Vec::new();
    let mut regular: Vec<Supervisor> = Vec::new();
    let mut init_failed = false;
    for c in &inits {
        if !images.contains_key(&c.name) {
            continue;
        }
        if is_sidecar(c) {
            let s = start_supervisor(&inner, &rt, &pod, c, true, Restart::Always);
            let mut started = s.started_rx.clone();
            tokio::select! {
                _ = async { let _ = started.wait_for(|v| *v).await; } => {}
                g = deletion(&mut del) => {
                    sidecars.push(s);
                    return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
                }
            }
            sidecars.push(s);
        } else {
            let restart = if policy == Restart::Never {
                Restart::Never
            } else {
                Restart::OnFailure
            };
            let mut s = start_supervisor(&inner, &rt, &pod, c, true, restart);
            tokio::select! {
                code = s.join() => {
                    if code != 0 {
                        init_failed = true;
                        break;
                    }
                }
                g = deletion(&mut del) => {
                    regular.push(s);
                    return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
                }
            }
        }
    }
    if !init_failed {
        for c in &spec.containers {
            if !images.contains_key(&c.name) {
                continue;
            }
            regular.push(start_supervisor(&inner, &rt, &pod, c, false, policy));
        }
        let all_done = async {
            for s in regular.iter_mut() {
                s.join().await;
            }
        };
        tokio::select! {
            _ = all_done => {}
            g = deletion(&mut del) => {
                return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
            }
        }
    }
    // Every regular container is done for good: stop the sidecars, last first.
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .max(0)
            .unsigned_abs(),
    );
    let mut none: Vec<Supervisor> = Vec::new();
    let stopping = stop_all(&mut none, &mut sidecars, grace);
    tokio::select! {
        _ = stopping => {}
        g = deletion(&mut del) => {
            return finish_deleted(&inner, &rt, &mut regular, &mut sidecars, g).await;
        }
    }
    rt.terminal.store(true, Ordering::SeqCst);
    update_status(&inner, &rt, |_| {});
    let _ = deletion(&mut del).await;
    remove_object(&inner, &rt);
}

/// Removes the pod object, unless a newer pod of the same name has taken its place.
fn remove_object(inner: &Inner, rt: &PodRuntime) {
    let _ = inner.pods.delete_if(&rt.key.0, &rt.key.1, |p| {
        p.metadata.uid.as_deref() == Some(rt.uid.as_str())
    });
}

async fn finish_deleted(
    inner: &Arc<Inner>,
    rt: &Arc<PodRuntime>,
    regular: &mut [Supervisor],
    sidecars: &mut [Supervisor],
    grace: Duration,
) {
    tracing::debug!(pod = %rt.key.1, grace = ?grace, "stopping pod for deletion");
    stop_all(regular, sidecars, grace).await;
    rt.terminal.store(true, Ordering::SeqCst);
    remove_object(inner, rt);
}
