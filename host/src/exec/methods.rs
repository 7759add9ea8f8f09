//! The two stop methods that need nothing inside the sidecar (docs/ABI.md, ABI 1.3):
//!
//! - **image swap**: a JSON patch replaces `spec.containers[i].image` with sidekill's nop,
//!   guarded by a `test` of the container's name at that index (so a pod whose containers
//!   changed is never patched at the wrong index). The kubelet sees the container's spec
//!   changed, stops it from outside (SIGTERM, the grace period, SIGKILL) and starts the nop,
//!   which exits 0: kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go
//!   `computePodActions` ("Container ... definition changed, will be restarted"), as Tekton
//!   does in pkg/pod/entrypoint.go `StopSidecars`. The sidecar's own end goes to `lastState`.
//! - **the ephemeral quitter**: an ephemeral container (`pods/ephemeralcontainers`, a
//!   strategic-merge patch keyed by name, as `kubectl debug` sends) running the plan's argv
//!   in the quitter image with `targetContainerName`, so it shares the sidecar's PID
//!   namespace and the pod's network: it can call a loopback-only endpoint or signal the
//!   sidecar's process by name. Its name is derived from the container and the step, so a
//!   retried step finds its own container instead of adding a second one (ephemeral
//!   containers can never be removed).
//!
//! Both are refused (`refused`, nothing sent) when the action names another container than
//! the stop's or lacks a field: the executor carries out only what it can check.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::api::{forbidden, is_not_found, is_other_pod};
use super::pod::PodRef;
use super::run::Stop;
use super::status::{status_of, End};
use super::Executor;
use crate::answer::Quitter;

/// The longest a container name may be (a DNS label, RFC 1123).
const NAME_MAX: usize = 63;

/// What one method's call did, for the step's report.
pub(super) struct Sent {
    /// `ran`, `refused`, `failed`.
    pub result: &'static str,
    /// The quitter's exit code, for the ephemeral quitter.
    pub exit_code: Option<i32>,
    /// What happened, for a person.
    pub message: String,
}

impl Sent {
    fn refused(message: impl Into<String>) -> Sent {
        Sent {
            result: "refused",
            exit_code: None,
            message: message.into(),
        }
    }
}

/// The ephemeral container's name for `container`'s step `index`: `sidekill-quit-<index>-<c>`,
/// shortened with a hash of the full name when it would not fit a DNS label.
pub(super) fn quitter_name(container: &str, index: usize) -> String {
    let name = format!("sidekill-quit-{index}-{container}");
    if name.len() <= NAME_MAX {
        return name;
    }
    let hash = Sha256::digest(name.as_bytes());
    let suffix: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = NAME_MAX - suffix.len() - 1;
    // Container names are ASCII (a DNS label), so any byte index is a char boundary.
    let head = name[..keep].trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// A swapped container's end: its current instance (the nop, not `instance`) has
/// terminated. The instance sidekill swapped out ended in `lastState`, its code in `old`.
pub(super) fn swapped_end(pod: &Pod, container: &str, instance: Option<&str>) -> Option<End> {
    let cs = status_of(pod, container)?;
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    Some(End {
        code: t.exit_code,
        // The kubelet started the nop because the spec changed, not because the sidecar
        // failed: the restart is the method, not a restart to report.
        restarted: false,
        restart_count: cs.restart_count,
    })
    .filter(|_| instance.is_none() || t.container_id.as_deref() != instance)
}

/// The exit code of the instance a swap stopped, when the kubelet has recorded it.
pub(super) fn swapped_out_exit(pod: &Pod, container: &str) -> Option<i32> {
    let last = status_of(pod, container)?.last_state.as_ref()?;
    last.terminated.as_ref().map(|t| t.exit_code)
}

impl Executor {
    /// Sends the image swap of `container` (at `index` of `spec.containers`) to `image`.
    pub(super) async fn image_swap(
        &self,
        at: PodRef<'_>,
        container: &str,
        index: usize,
        image: &str,
    ) -> Result<Sent, Stop> {
        let PodRef { ns, name, uid } = at;
        if self.options.nop_image.as_deref() != Some(image) {
            return Ok(Sent::refused(format!(
                "the plan swaps to image {image}, which is not the configured nop image ({})",
                self.options.nop_image.as_deref().unwrap_or("none")
            )));
        }
        // The UID is tested too: a pod recreated under the name is never swapped.
        let patch: json_patch::Patch = match serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": format!("/spec/containers/{index}/name"), "value": container},
            {"op": "replace", "path": format!("/spec/containers/{index}/image"), "value": image},
        ])) {
            Ok(p) => p,
            Err(e) => return Ok(Sent::refused(format!("an invalid JSON patch: {e}"))),
        };
        let api = self.pods(ns);
        let params = PatchParams::default();
        let patch = Patch::Json::<()>(patch);
        match self
            .retry("swap image", || api.patch(name, &params, &patch))
            .await
        {
            Ok(_) => Ok(Sent {
                result: "ran",
                exit_code: None,
                message: format!(
                    "image of container {container} set to {image}: the kubelet stops it and starts the nop"
                ),
            }),
            Err(e) if is_not_found(&e) || is_other_pod(&e) => Err(Stop::Gone),
            Err(e) => match forbidden(&e, "patch", "pods", ns, || {
                format!("swapping the image of container {container} of pod {ns}/{name}")
            }) {
                Some(err) => Err(Stop::Err(err)),
                // A failed `test` (the containers changed) or a refusal by admission: nothing
                // was changed, and the message says why.
                None => Ok(Sent {
                    result: "failed",
                    exit_code: None,
                    message: e.to_string(),
                }),
            },
        }
    }

    /// Adds `quitter` for `container` (step `index`), unless it is
    /// there already, and watches it to its end (at most [`super::Options::exec_timeout`]).
    pub(super) async fn ephemeral_quitter(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        index: usize,
        quitter: &Quitter,
    ) -> Result<Sent, Stop> {
        let Quitter {
            target_container_name: target,
            image,
            argv,
            run_as_user,
        } = quitter;
        if target != container {
            return Ok(Sent::refused(format!(
                "the plan's quitter targets container {target}, not {container}"
            )));
        }
        if self.options.quitter_image.as_deref() != Some(image.as_str()) {
            return Ok(Sent::refused(format!(
                "the plan runs image {image}, which is not the configured quitter image ({})",
                self.options.quitter_image.as_deref().unwrap_or("none")
            )));
        }
        let quitter = quitter_name(container, index);
        let Some(pod) = self.get(ns, name).await? else {
            return Err(Stop::Gone);
        };
        let present = pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|e| e.iter().any(|c| c.name == quitter));
        if !present {
            // The restricted Pod Security Standard's fields, so that a namespace enforcing
            // it admits the quitter when the sidecar's user is not root.
            let mut security = json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            });
            match run_as_user {
                Some(uid) => {
                    security["runAsUser"] = json!(uid);
                    security["runAsNonRoot"] = json!(*uid != 0);
                }
                None => security["runAsNonRoot"] = json!(true),
            }
            let patch = json!({"spec": {"ephemeralContainers": [{
                "name": quitter,
                "image": image,
                "command": argv,
                "targetContainerName": target,
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": security,
            }]}});
            let api = self.pods(ns);
            let params = PatchParams::default();
            let patch = Patch::Strategic(patch);
            let added = self
                .retry("add the ephemeral quitter", || {
                    api.patch_ephemeral_containers(name, &params, &patch)
                })
                .await;
            match added {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Err(Stop::Gone),
                Err(e) => {
                    return match forbidden(&e, "patch", "pods/ephemeralcontainers", ns, || {
                        format!("adding the ephemeral quitter for container {container} of pod {ns}/{name}")
                    }) {
                        Some(err) => Err(Stop::Err(err)),
                        None => Ok(Sent {
                            result: "failed",
                            exit_code: None,
                            message: e.to_string(),
                        }),
                    };
                }
            }
        }
        let started = Instant::now();
        let (pod, done) = self
            .watch_until(ns, name, self.options.exec_timeout, |p| {
                quitter_end(p, &quitter).is_some()
            })
            .await?;
        let end = pod
            .as_ref()
            .filter(|_| done)
            .and_then(|p| quitter_end(p, &quitter));
        Ok(match end {
            Some((code, message)) => Sent {
                result: "ran",
                exit_code: Some(code),
                message: format!(
                    "ephemeral container {quitter} exited {code} after {} ms{message}",
                    started.elapsed().as_millis()
                ),
            },
            None => Sent {
                result: "timeout",
                exit_code: None,
                message: format!(
                    "ephemeral container {quitter} did not end within {}",
                    human(self.options.exec_timeout)
                ),
            },
        })
    }
}

/// The quitter's exit code and termination message, once its status says it ended.
fn quitter_end(pod: &Pod, quitter: &str) -> Option<(i32, String)> {
    let status = pod
        .status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == quitter)?;
    let t = status.state.as_ref()?.terminated.as_ref()?;
    let message = t
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {}", m.chars().take(300).collect::<String>()))
        .unwrap_or_default();
    Some((t.exit_code, message))
}

fn human(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quitter_names_fit_a_dns_label_and_differ_per_step() {
        assert_eq!(
            quitter_name("istio-proxy", 0),
            "sidekill-quit-0-istio-proxy"
        );
        let long = "c".repeat(63);
        let a = quitter_name(&long, 0);
        let b = quitter_name(&long, 1);
        assert!(a.len() <= NAME_MAX && b.len() <= NAME_MAX, "{a} {b}");
        assert_ne!(a, b);
        assert!(!a.contains("--"), "{a}");
    }
}
