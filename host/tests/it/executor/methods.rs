//! The stop methods that need nothing inside the sidecar (issue 13), end to end: image swap
//! (the kubelet stops the container from outside and runs the nop, which exits 0) and the
//! ephemeral quitter (a container in the sidecar's PID namespace and the pod's network that
//! calls a loopback-only endpoint). On the test server and, with `SIDEKILL_E2E=1`, on the
//! genuine kube-apiserver, whose pod-update rules decide which patches are legal; there the
//! Jobs run through the real Job controller.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sidekill::exec::{DEFAULT_NOP_IMAGE, DEFAULT_QUITTER_IMAGE};

use super::outcome::{complete, completed_job, finished, first_pod_of_job};
use super::*;
use crate::cluster;

/// A Job's pod (labelled as one) whose main exits 0 at once, with one sidecar `side`, declared
/// as one (`sidekill.dev/sidecars`).
fn job_pod(name: &str, sidecar: &str) -> String {
    super::job_pod(
        name,
        "sidekill.dev/sidecars: side",
        "Never",
        &format!("{{name: side, {sidecar}}}"),
    )
}

/// A `batch/v1` Job running the same pod.
fn job(name: &str, sidecar: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {{sidekill.dev/sidecars: side}}
    spec: {}
",
        job_pod_spec("Never", &format!("{{name: side, {sidecar}}}"))
    )
}

/// The sidecars: a distroless one (no shell: `kill` cannot run), a PID 1 with no signal
/// handler (the kernel ignores SIGTERM and even SIGKILL from inside its namespace), and the
/// Cloud SQL proxy's distroless v2.14 image with its quit endpoint on loopback only and no
/// client in the image (`shutdown` came in 2.20).
const DISTROLESS: &str = "image: gcr.io/distroless/static";
const NO_HANDLER: &str = "image: sidekill.test/main, args: ['--seconds', '3600']";

fn cloud_sql(port: u16) -> String {
    format!(
        "image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', args: ['--quitquitquit', '--admin-port', '{port}', 'proj:region:db']"
    )
}

fn swap_only(o: &mut Options) {
    o.nop_image = Some(DEFAULT_NOP_IMAGE.into());
    o.quitter_image = None;
}

fn quitter_only(o: &mut Options) {
    o.nop_image = None;
    o.quitter_image = Some(DEFAULT_QUITTER_IMAGE.into());
}

fn side_status(p: &Pod) -> ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == "side"))
        .cloned()
        .expect("side's status")
}

/// Stopped, exit 0 as predicted, the pod `Succeeded` as predicted, by `method`.
fn assert_stopped_by(r: &PodReport, method: &str) {
    eprintln!("{}", sidekill::cli::stop::render(r, &PLAIN));
    let s = verdict(r, "side");
    assert_eq!(s.method.as_deref(), Some(method), "{r:#?}");
    assert_eq!(s.verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(s.exit_code, Some(0), "{r:#?}");
    assert_eq!(s.exit_matches, Some(true), "{r:#?}");
    assert_eq!(r.end.as_deref(), Some("Succeeded"), "{r:#?}");
    assert_eq!(r.end_matches, Some(true), "{r:#?}");
}

/// Image swap stops what `pods/exec` cannot: a distroless sidecar and a PID 1 with no handler
/// (before, both ended "cannot stop" / "still running"). The swapped-out instance's end is in
/// `lastState` (the PID 1 without a handler: SIGKILLed from outside after the grace period),
/// the nop's exit 0 in `state`, and the pod succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_swap_stops_a_distroless_sidecar_and_a_pid_1_without_a_handler() {
    let c = Cluster::start("swap").await;
    let ns = c.namespace();
    for (name, sidecar) in [
        ("swap-distroless", DISTROLESS),
        ("swap-nohandler", NO_HANDLER),
    ] {
        c.apply_yaml(&job_pod(name, sidecar)).await.expect("apply");
    }
    let ex = executor(c.client().await, swap_only);
    for (name, last_exit) in [("swap-distroless", 0), ("swap-nohandler", 137)] {
        main_done(&c, name, &["side"]).await;
        let r = ex.stop_pod(ns, name).await.expect("stop");
        assert_stopped_by(&r, "image-swap");
        let s = verdict(&r, "side");
        assert_eq!(
            json(&s.steps[0].step)["action"]["kind"],
            "image-swap",
            "{r:#?}"
        );
        let p = c.pod(name).await.expect("pod");
        let st = side_status(&p);
        assert_eq!(st.restart_count, 1, "{st:?}");
        assert!(st.image.contains("sidekill-nop"), "{st:?}");
        let last = st.last_state.and_then(|l| l.terminated).expect("lastState");
        assert_eq!(last.exit_code, last_exit, "{name}: {last:?}");
        assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Succeeded"));
    }
    c.shutdown().await;
}

/// A quit endpoint that answers only callers inside the pod, in an image with no client for
/// it: the ephemeral quitter makes the request from the pod's network. `pods/proxy` would be
/// refused (the test clusters apply the real access rules to their stand-ins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quitter_calls_a_loopback_only_endpoint_in_a_shell_less_image() {
    let c = Cluster::start("quit").await;
    let ns = c.namespace();
    c.apply_yaml(&job_pod("quit", &cloud_sql(free_port())))
        .await
        .expect("apply");
    main_done(&c, "quit", &["side"]).await;
    let r = executor(c.client().await, quitter_only)
        .stop_pod(ns, "quit")
        .await
        .expect("stop");
    assert_stopped_by(&r, "ephemeral");
    let step = &verdict(&r, "side").steps[0];
    assert_eq!(json(&step.step)["action"]["argv"][1], "http", "{r:#?}");
    let p = c.pod("quit").await.expect("pod");
    let quitter = p
        .status
        .as_ref()
        .and_then(|s| s.ephemeral_container_statuses.as_ref())
        .and_then(|l| l.first())
        .cloned()
        .expect("the quitter's status");
    assert_eq!(quitter.name, "sidekill-quit-0-side");
    let end = quitter
        .state
        .and_then(|s| s.terminated)
        .expect("quitter ended");
    assert_eq!(end.exit_code, 0, "{end:?}");
    c.shutdown().await;
}

/// Without `patch` on `pods/ephemeralcontainers`, the plan has no step for the sidecar and
/// says what is missing; nothing is added to the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ephemeral_permission_nothing_is_attempted_and_the_plan_says_why() {
    let c = Cluster::start("noquit").await;
    let ns = c.namespace().to_owned();
    c.apply_yaml(&job_pod("noquit", &cloud_sql(free_port())))
        .await
        .expect("apply");
    main_done(&c, "noquit", &["side"]).await;
    let client = match c.faults() {
        Some(faults) => {
            faults.deny("patch", "pods/ephemeralcontainers");
            c.client().await
        }
        // deploy/'s rules for pods, without the overlay's.
        None => {
            let kubeconfig = c
                .identity(
                    "no-ephemeral",
                    json!([
                        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
                        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
                        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
                    ]),
                )
                .await;
            cluster::client_for(&kubeconfig).await
        }
    };
    let r = executor(client, quitter_only)
        .stop_pod(&ns, "noquit")
        .await
        .expect("stop");
    eprintln!("{}", sidekill::cli::stop::render(&r, &PLAIN));
    let s = verdict(&r, "side");
    assert_eq!(s.method.as_deref(), Some("none"), "{r:#?}");
    assert!(s.steps.is_empty(), "{r:#?}");
    assert_eq!(s.verdict, Verdict::StillRunning, "{r:#?}");
    let d = s
        .diagnostics
        .iter()
        .find(|d| d.code.as_deref() == Some("quitter-not-allowed"))
        .unwrap_or_else(|| panic!("no quitter-not-allowed: {r:#?}"));
    assert!(
        d.fix
            .as_deref()
            .unwrap_or("")
            .contains("pods/ephemeralcontainers"),
        "{d:?}"
    );
    let p = c.pod("noquit").await.expect("pod");
    assert!(
        p.spec
            .and_then(|s| s.ephemeral_containers)
            .unwrap_or_default()
            .is_empty(),
        "nothing was added"
    );
    c.shutdown().await;
}

/// A sidecar whose `command[0]` is not in the nop image: the policy refuses the swap, and it
/// is right to. The same swap made by hand fails to start (128, `StartError`) and fails the
/// pod, as containerd and the kubelet do (tektoncd/pipeline#4889).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_the_nop_could_not_start_is_refused_and_would_have_failed_the_pod() {
    let c = Cluster::start("refuse").await;
    let ns = c.namespace().to_owned();
    let sidecar = "image: gcr.io/distroless/static, command: [/usr/local/bin/sidecar]";
    c.apply_yaml(&job_pod("refuse", sidecar))
        .await
        .expect("apply");
    main_done(&c, "refuse", &["side"]).await;
    let r = executor(c.client().await, swap_only)
        .stop_pod(&ns, "refuse")
        .await
        .expect("stop");
    eprintln!("{}", sidekill::cli::stop::render(&r, &PLAIN));
    let s = verdict(&r, "side");
    assert!(s.steps.is_empty(), "{r:#?}");
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.code.as_deref() == Some("image-swap-refused")),
        "{r:#?}"
    );
    assert_eq!(s.verdict, Verdict::StillRunning, "{r:#?}");
    // Reality: the swap sidekill refused.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/containers/1/name", "value": "side"},
        {"op": "replace", "path": "/spec/containers/1/image", "value": DEFAULT_NOP_IMAGE}
    ]))
    .expect("patch");
    Api::<Pod>::namespaced(c.admin().await, &ns)
        .patch("refuse", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect("the swap itself is a legal pod update");
    let p = c
        .wait_for_pod("refuse", Duration::from_secs(30), |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await
        .expect("the pod fails");
    let end = side_status(&p)
        .state
        .and_then(|s| s.terminated)
        .expect("side ended");
    assert_eq!(
        (end.exit_code, end.reason.as_deref()),
        (128, Some("StartError")),
        "{end:?}"
    );
    c.shutdown().await;
}

/// The acceptance's Jobs, on the genuine apiserver with the real Job controller: each method
/// takes a real `batch/v1` Job to `Complete` with one pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_method_completes_a_real_job_with_one_pod() {
    let Some(c) = Cluster::start_real_only("methjob", cluster::NO_JOBS).await else {
        return;
    };
    let ns = c.namespace().to_owned();
    let quit = cloud_sql(free_port());
    // (Job, sidecar, the executor's methods, the method expected)
    type Case<'a> = (&'a str, &'a str, fn(&mut Options), &'a str);
    let jobs: [Case; 3] = [
        ("job-distroless", DISTROLESS, swap_only, "image-swap"),
        ("job-nohandler", NO_HANDLER, swap_only, "image-swap"),
        ("job-quitter", &quit, quitter_only, "ephemeral"),
    ];
    for (name, sidecar, _, _) in &jobs {
        c.create_job(&job(name, sidecar))
            .await
            .unwrap_or_else(|e| panic!("create job {name}: {e}"));
    }
    for (name, _, options, method) in &jobs {
        let pod = first_pod_of_job(&c, name).await;
        let pod_name = pod.metadata.name.clone().expect("pod name");
        main_done(&c, &pod_name, &["side"]).await;
        let r = executor(c.client().await, *options)
            .stop_pod(&ns, &pod_name)
            .await
            .expect("stop");
        assert_stopped_by(&r, method);
        let job = completed_job(&c, name).await;
        let status = job.status.clone().unwrap_or_default();
        assert_eq!(status.succeeded, Some(1), "{name}: {status:?}");
        assert_eq!(status.failed.unwrap_or(0), 0, "{name}: {status:?}");
        assert_eq!(
            c.pods_of_job(name).await.len(),
            1,
            "{name}: one pod, no retry"
        );
        // For BENCHMARKS.md: main exit -> the sidecar's end (for a swap, the nop's) -> Job
        // Complete, as the API server's timestamps (1 s resolution) say.
        let p = c.pod(&pod_name).await.expect("pod");
        if let (Some(main), Some(side), Some(done)) =
            (finished(&p, "main"), finished(&p, "side"), complete(&job))
        {
            let done: std::time::SystemTime = done.0.into();
            eprintln!(
                "FIGURE {method} ({name}): main exited -> sidecar ended {:?} -> Job Complete {:?}; sidekill's stop took {} ms",
                side.duration_since(main).unwrap_or_default(),
                done.duration_since(side).unwrap_or_default(),
                verdict(&r, "side").stopped_after_ms.unwrap_or(0)
            );
        }
    }
    c.shutdown().await;
}
