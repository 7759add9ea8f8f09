//! Ephemeral containers: each runs once, in the PID namespace of its `targetContainerName`,
//! and reports in `status.ephemeralContainerStatuses` (see the parent module's docs).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, EphemeralContainer};

use crate::process::{self};

use super::container::{container_env, kill, pull_failed, start, started_event, Run};
use super::pod::deletion;
use super::status::{event, update_status, waiting};
use super::{lock, Inner, PodRuntime};

fn set_ephemeral(inner: &Inner, rt: &PodRuntime, name: &str, f: impl FnOnce(&mut ContainerStatus)) {
    update_status(inner, rt, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        let list = st.ephemeral_container_statuses.get_or_insert_with(Vec::new);
        let i = match list.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                list.push(ContainerStatus {
                    name: name.to_owned(),
                    ready: false,
                    restart_count: 0,
                    ..Default::default()
                });
                list.len() - 1
            }
        };
        if let Some(cs) = list.get_mut(i) {
            f(cs);
        }
    });
}

/// Runs one ephemeral container once (see the module docs).
pub(super) async fn run_ephemeral(inner: Arc<Inner>, rt: Arc<PodRuntime>, ec: EphemeralContainer) {
    let pod = rt.spec_tx.borrow().clone();
    let fp = format!("spec.ephemeralContainers{{{}}}", ec.name);
    let c = Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        command: ec.command.clone(),
        args: ec.args.clone(),
        env: ec.env.clone(),
        working_dir: ec.working_dir.clone(),
        ..Default::default()
    };
    let reference = ec.image.clone().unwrap_or_default();
    let waiting_for = |reason: &str, msg: Option<String>| {
        set_ephemeral(&inner, &rt, &ec.name, |cs| {
            cs.image = reference.clone();
            cs.state = Some(waiting(reason, msg));
        })
    };
    waiting_for("ContainerCreating", None);
    let Some(image) = inner.images.find(&reference) else {
        let msg = pull_failed(&inner, &rt, &reference, fp);
        waiting_for("ErrImagePull", Some(msg));
        return;
    };
    event(
        &inner,
        &rt,
        "Normal",
        "Pulled",
        format!("Container image \"{reference}\" already present on machine"),
        Some(fp.clone()),
    );
    let target_pid1 = match ec.target_container_name.as_deref() {
        None | Some("") => None,
        Some(target) => match lock(&rt.slots).get(target) {
            Some(slot) if process::alive(slot.pid1) => Some(slot.pid1),
            _ => {
                let msg = format!(
                    "failed to create containerd container: the target container {target:?} is not running, so it has no PID namespace to join"
                );
                event(
                    &inner,
                    &rt,
                    "Warning",
                    "Failed",
                    format!("Error: {msg}"),
                    Some(fp),
                );
                waiting_for("CreateContainerError", Some(msg));
                return;
            }
        },
    };
    let env = container_env(&pod, &c, &image);
    let run = Run::new();
    let launched = start(&inner, &rt, &c, &image, env, target_pid1, &fp).await;
    let (exit, message) = match launched {
        Err(failed) => failed,
        Ok(mut l) => {
            set_ephemeral(&inner, &rt, &c.name, |cs| run.running(cs, &image));
            started_event(&inner, &rt, &c.name, &fp);
            let mut del = rt.delete_tx.subscribe();
            let exit = tokio::select! {
                e = l.wait(false) => e,
                g = deletion(&mut del) => kill(&mut l, g).await,
            };
            lock(&rt.slots).remove(&c.name);
            (exit, None)
        }
    };
    let terminated = run.terminated(exit, message);
    set_ephemeral(&inner, &rt, &c.name, |cs| {
        cs.started = Some(false);
        cs.state = Some(ContainerState {
            terminated: Some(terminated),
            ..Default::default()
        });
    });
}
