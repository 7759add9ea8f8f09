//! The kernel's rules for PID 1, with real processes and real signals: a PID 1 without a handler
//! ignores signals sent from inside its namespace (SIGKILL included) and SIGTERM from outside;
//! only an outside SIGKILL always stops it.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, WatchEvent, WatchParams};
use sidekill_testcluster::{
    container_exit_code, container_running, container_state, Signal, TestCluster,
};

use crate::common::{client, cluster, exec, free_port, logged, start_pod, wait, wait_log};

/// A new cluster running pod `p` (restartPolicy Never, a 1 s grace period) of `containers`
/// (YAML list items), once the ones named in `running` run: where every test here begins.
async fn cluster_running(containers: &str, running: &[&str]) -> TestCluster {
    let c = cluster().await;
    start_pod(&c, &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n{containers}"), "p", running).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_1_from_inside_is_ignored_and_an_outside_sigkill_is_not() {
    let c = cluster_running(
        "  - {name: sleeper, image: alpine, command: [sleep, '1000']}\n",
        &["sleeper"],
    )
    .await;
    let pid = c
        .container_pid("default", "p", "sleeper")
        .expect("pid 1 on the host");
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let r = exec(&pods, "p", "sleeper", &["kill", "-9", "1"]).await;
    assert_eq!(
        r.exit_code(),
        Some(0),
        "kill(2) succeeds: the kernel drops the signal silently"
    );
    let r = exec(&pods, "p", "sleeper", &["kill", "-TERM", "1"]).await;
    assert_eq!(r.exit_code(), Some(0));
    // An outside SIGTERM is dropped too: `sleep` has no handler.
    assert!(c.signal_container("default", "p", "sleeper", Signal::TERM));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = c.pod("default", "p").expect("pod");
    assert!(
        container_running(&p, "sleeper"),
        "PID 1 survived: {:?}",
        container_state(&p, "sleeper")
    );
    assert_eq!(
        c.container_pid("default", "p", "sleeper"),
        Some(pid),
        "the same process"
    );
    assert!(c.signal_container("default", "p", "sleeper", Signal::KILL));
    let p = wait(&c, "p", "terminated", |p| {
        container_exit_code(p, "sleeper").is_some()
    })
    .await;
    let t = container_state(&p, "sleeper")
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.signal),
        (137, Some("Error"), Some(9))
    );
    let p = wait(&c, "p", "failed", |p| {
        sidekill_testcluster::pod_phase(p) == "Failed"
    })
    .await;
    assert_eq!(sidekill_testcluster::pod_phase(&p), "Failed");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_obeyed_by_a_pid1_with_a_handler() {
    let c = cluster_running("  - {name: zero, image: sidekill.test/sidecar}\n  - {name: conventional, image: sidekill.test/sidecar, args: ['--exit-code', '143']}\n", &["zero", "conventional"]).await;
    wait_log(&c, "p", "zero", "sidecar: running").await;
    wait_log(&c, "p", "conventional", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    // `kill` may itself be killed when PID 1 exits at once and the kernel tears the namespace
    // down (as runc kills a container's exec'd processes): 137 then, still a successful stop.
    let code = exec(&pods, "p", "zero", &["kill", "1"]).await.exit_code();
    assert!(matches!(code, Some(0) | Some(137)), "{code:?}");
    assert!(c.signal_container("default", "p", "conventional", Signal::TERM));
    let p = wait(&c, "p", "both terminated", |p| {
        container_exit_code(p, "zero").is_some() && container_exit_code(p, "conventional").is_some()
    })
    .await;
    let zero = container_state(&p, "zero")
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(
        (zero.exit_code, zero.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(container_exit_code(&p, "conventional"), Some(143));
    assert!(logged(&c, "p", "zero", "got signal 15"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stubborn_sidecar_dies_only_of_the_sigkill_after_the_grace_period_on_delete() {
    let c = cluster_running(
        "  - {name: stubborn, image: sidekill.test/stubborn}\n",
        &["stubborn"],
    )
    .await;
    wait_log(&c, "p", "stubborn", "SIGTERM is ignored").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    assert_eq!(
        exec(&pods, "p", "stubborn", &["kill", "1"])
            .await
            .exit_code(),
        Some(0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(container_running(
        &c.pod("default", "p").expect("pod"),
        "stubborn"
    ));

    let rv = c
        .pod("default", "p")
        .and_then(|p| p.metadata.resource_version)
        .expect("rv");
    let mut events = pods
        .watch(
            &WatchParams::default().fields("metadata.name=p").timeout(15),
            &rv,
        )
        .await
        .expect("watch")
        .boxed();
    let started = std::time::Instant::now();
    pods.delete("p", &DeleteParams::default())
        .await
        .expect("delete");
    let mut last_exit = None;
    let mut saw_deletion_timestamp = false;
    loop {
        match events.try_next().await.expect("event") {
            Some(WatchEvent::Modified(p)) => {
                saw_deletion_timestamp |= p.metadata.deletion_timestamp.is_some();
                last_exit = container_exit_code(&p, "stubborn").or(last_exit);
            }
            Some(WatchEvent::Deleted(_)) => break,
            Some(_) => {}
            None => panic!("watch ended before DELETED"),
        }
    }
    assert!(
        saw_deletion_timestamp,
        "graceful deletion shows deletionTimestamp first"
    );
    assert_eq!(last_exit, Some(137), "SIGKILL after the grace period");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited the 1 s grace period"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapper_script_is_pid1_and_pidof_finds_it() {
    let c = cluster_running("  - {name: fwd, image: sidekill.test/wrapped}\n", &["fwd"]).await;
    wait_log(&c, "p", "fwd", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let r = exec(
        &pods,
        "p",
        "fwd",
        &["sh", "-c", "echo $(pidof entrypoint.sh) $(pidof sidecar)"],
    )
    .await;
    assert_eq!(
        r.stdout.trim(),
        "1 2",
        "entrypoint.sh is PID 1, the real program its child"
    );
    let r = exec(
        &pods,
        "p",
        "fwd",
        &["sh", "-c", "kill -15 $(pidof entrypoint.sh)"],
    )
    .await;
    assert!(matches!(r.exit_code(), Some(0) | Some(137)), "{r:?}");
    let p = wait(&c, "p", "terminated", |p| {
        container_exit_code(p, "fwd").is_some()
    })
    .await;
    assert_eq!(container_exit_code(&p, "fwd"), Some(0));
    assert!(logged(&c, "p", "fwd", "forwarding"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_agent_quitquitquit_stops_the_istio_stand_in() {
    let port = free_port();
    let c = cluster_running(&format!("  - name: istio-proxy\n    image: docker.io/istio/proxyv2:1.22.0\n    env: [{{name: ISTIO_ADMIN_PORT, value: '{port}'}}]\n"), &["istio-proxy"]).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    wait_log(&c, "p", "istio-proxy", "proxy running").await;
    let r = exec(
        &pods,
        "p",
        "istio-proxy",
        &["pilot-agent", "request", "POST", "quitquitquit"],
    )
    .await;
    assert_eq!(
        (r.exit_code(), r.stdout.as_str()),
        (Some(0), "OK\n"),
        "{r:?}"
    );
    let p = wait(&c, "p", "terminated", |p| {
        container_exit_code(p, "istio-proxy").is_some()
    })
    .await;
    assert_eq!(container_exit_code(&p, "istio-proxy"), Some(0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_outlives_the_cluster() {
    let c = cluster_running("  - {name: a, image: sidekill.test/stubborn}\n  - {name: b, image: alpine, command: [sh, -c, 'sleep 1000 & sleep 1000']}\n", &["a", "b"]).await;
    let pids: Vec<i32> = ["a", "b"]
        .iter()
        .filter_map(|n| c.container_pid("default", "p", n))
        .collect();
    assert_eq!(pids.len(), 2);
    c.shutdown().await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} outlived shutdown"
        );
    }
    // Dropping without shutdown kills too.
    let c = cluster_running("  - {name: a, image: sidekill.test/stubborn}\n", &["a"]).await;
    let pid = c.container_pid("default", "p", "a").expect("pid");
    drop(c);
    let mut gone = false;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "pid {pid} outlived drop");
}
