//! The node's pod lifecycle: init containers, native sidecars, phases, restarts, unknown images.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use sidekill_testcluster::{
    container_exit_code, container_running, container_state, pod_phase, Signal,
};

use crate::common::{client, cluster, exec, wait, wait_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sidecars_start_first_and_are_stopped_after_the_main_container() {
    let c = cluster().await;
    c.apply_yaml(
        "apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - {name: setup, image: sidekill.test/main, args: ['--seconds', '0.2']}
  - {name: proxy, image: sidekill.test/sidecar, restartPolicy: Always}
  - {name: stuck, image: sidekill.test/stubborn, restartPolicy: Always}
  containers:
  - {name: main, image: sidekill.test/main, args: ['--seconds', '1']}
",
    )
    .await
    .expect("apply");
    let p = wait(&c, "job", "main running", |p| container_running(p, "main")).await;
    assert_eq!(
        container_exit_code(&p, "setup"),
        Some(0),
        "the init container ran to completion first"
    );
    assert!(container_running(&p, "proxy") && container_running(&p, "stuck"));
    assert_eq!(pod_phase(&p), "Running");
    let p = wait(&c, "job", "succeeded", |p| pod_phase(p) == "Succeeded").await;
    assert_eq!(container_exit_code(&p, "main"), Some(0));
    assert_eq!(container_exit_code(&p, "proxy"), Some(0), "SIGTERM obeyed");
    assert_eq!(
        container_exit_code(&p, "stuck"),
        Some(137),
        "SIGKILL after the grace period"
    );
    let (ready, status, _) = {
        let st = p.status.clone().unwrap_or_default();
        let ready = st
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason);
        (ready, st.phase, ())
    };
    assert_eq!(ready, Some(Some("PodCompleted".into())));
    assert_eq!(status.as_deref(), Some("Succeeded"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_sidecar_keeps_the_pod_running_until_it_is_stopped() {
    let c = cluster().await;
    c.apply_yaml(
        "apiVersion: v1
kind: Pod
metadata: {name: argo}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: sidekill.test/main, args: ['--seconds', '0.2', '--exit', '0']}
  - {name: side, image: sidekill.test/sidecar}
",
    )
    .await
    .expect("apply");
    let p = wait(&c, "argo", "main done", |p| {
        container_exit_code(p, "main").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = c.pod("default", "argo").unwrap_or(p);
    assert_eq!(pod_phase(&p), "Running", "the sidecar still runs");
    wait_log(&c, "argo", "side", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let code = exec(&pods, "argo", "side", &["kill", "-TERM", "1"])
        .await
        .exit_code();
    assert!(
        matches!(code, Some(0) | Some(137)),
        "the exec may die with its container: {code:?}"
    );
    let p = wait(&c, "argo", "succeeded", |p| pod_phase(p) == "Succeeded").await;
    assert_eq!(container_exit_code(&p, "side"), Some(0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_main_fails_the_pod_with_its_exit_code() {
    let c = cluster().await;
    c.apply_yaml(
        "apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: sidekill.test/main, args: ['--seconds', '0.1', '--exit', '3']}
",
    )
    .await
    .expect("apply");
    let p = wait(&c, "bad", "failed", |p| pod_phase(p) == "Failed").await;
    let t = container_state(&p, "main")
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sidecar_killed_while_main_runs_is_restarted() {
    let c = cluster().await;
    c.apply_yaml(
        "apiVersion: v1
kind: Pod
metadata: {name: r}
spec:
  restartPolicy: Never
  initContainers:
  - {name: proxy, image: sidekill.test/sidecar, restartPolicy: Always}
  containers:
  - {name: main, image: sidekill.test/main, args: ['--seconds', '30']}
",
    )
    .await
    .expect("apply");
    wait(&c, "r", "running", |p| {
        container_running(p, "main") && container_running(p, "proxy")
    })
    .await;
    wait_log(&c, "r", "proxy", "sidecar: running").await;
    assert!(c.signal_container("default", "r", "proxy", Signal::KILL));
    let p = wait(&c, "r", "restarted", |p| {
        let st = p.status.clone().unwrap_or_default();
        st.init_container_statuses
            .unwrap_or_default()
            .iter()
            .any(|s| {
                s.name == "proxy"
                    && s.restart_count == 1
                    && s.state.as_ref().is_some_and(|s| s.running.is_some())
            })
    })
    .await;
    let last = p
        .status
        .and_then(|s| s.init_container_statuses)
        .and_then(|l| l.into_iter().find(|s| s.name == "proxy"))
        .and_then(|s| s.last_state)
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code);
    assert_eq!(last, Some(137));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_images_and_missing_commands_fail_like_a_node() {
    let c = cluster().await;
    c.apply_yaml(
        "apiVersion: v1
kind: Pod
metadata: {name: pull}
spec:
  containers:
  - {name: main, image: registry.example.com/nothing:1}
---
apiVersion: v1
kind: Pod
metadata: {name: nocmd}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: sidekill.test/shell, command: [no-such-program]}
",
    )
    .await
    .expect("apply");
    let p = wait(&c, "pull", "ErrImagePull", |p| {
        container_state(p, "main")
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref()
            == Some("ErrImagePull")
    })
    .await;
    assert_eq!(pod_phase(&p), "Pending");
    let p = wait(&c, "nocmd", "start error", |p| {
        container_exit_code(p, "main").is_some()
    })
    .await;
    let t = container_state(&p, "main")
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert!(t
        .message
        .unwrap_or_default()
        .contains("executable file not found in $PATH"));
    c.shutdown().await;
}
