//! Ephemeral containers, as sidekill's executor adds its quitter: a strategic merge patch of
//! `pods/NAME/ephemeralcontainers` whose container runs the real sidekill-quitter in the
//! target's PID namespace, inside the pod (loopback endpoints answer it; `pods/proxy` does not
//! get in).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sidekill_testcluster::{container_exit_code, container_running, pod_phase};

use crate::common::{
    assert_sidekill_image, client, cluster, free_port, logged, raw_request, refused_patch,
    sleeping_pod, start_pod, status_of, terminated, wait, wait_log, wait_terminated,
};

/// Adds one ephemeral quitter running `argv` (after `/sidekill-quitter`) against `target`.
async fn add_quitter(pods: &Api<Pod>, pod: &str, name: &str, target: &str, argv: &[&str]) {
    let mut command = vec!["/sidekill-quitter"];
    command.extend_from_slice(argv);
    pods.patch_ephemeral_containers(
        pod,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"ephemeralContainers": [{
            "name": name,
            "image": "sidekill-quitter:0.1.0",
            "command": command,
            "targetContainerName": target,
        }]}})),
    )
    .await
    .unwrap_or_else(|e| panic!("add ephemeral container {name}: {e}"));
}

/// Waits until the ephemeral container has terminated; returns its exit code.
async fn quitter_exit(c: &sidekill_testcluster::TestCluster, pod: &str, name: &str) -> i32 {
    terminated(&wait_terminated(c, pod, name).await, name).exit_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_quitter_signals_the_target_by_name_in_its_pid_namespace() {
    let c = cluster().await;
    start_pod(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: main, image: sidekill.test/main, args: ['--seconds', '1000']}\n  - {name: stubborn, image: sidekill.test/stubborn}\n  - {name: proxy, image: sidekill.test/sidecar}\n",
        "p",
        &["main", "stubborn", "proxy"],
    )
    .await;
    wait_log(&c, "p", "stubborn", "stubborn: running").await;
    wait_log(&c, "p", "proxy", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);

    // `main` runs in a PID namespace of its own: from the proxy's, there is no such process.
    add_quitter(
        &pods,
        "p",
        "quit-1",
        "proxy",
        &["signal", "TERM", "--process", "main"],
    )
    .await;
    assert_eq!(quitter_exit(&c, "p", "quit-1").await, 1);
    assert!(logged(&c, "p", "quit-1", "no process named `main`"));

    // In the target's namespace the target is PID 1, and a handled SIGTERM reaches it.
    add_quitter(
        &pods,
        "p",
        "quit-2",
        "stubborn",
        &["signal", "TERM", "--process", "stubborn"],
    )
    .await;
    assert_eq!(quitter_exit(&c, "p", "quit-2").await, 0);
    let log = c.logs("default", "p", "quit-2").unwrap_or_default();
    assert!(
        log.contains("sent signal 15 to `stubborn` (pid 1)"),
        "{log}"
    );
    wait_log(&c, "p", "stubborn", "stubborn: got signal 15").await;

    // A sidecar that exits on SIGTERM ends its PID namespace, and the kernel SIGKILLs what is
    // left in it: the quitter too, unless it has exited first (as on a node).
    add_quitter(
        &pods,
        "p",
        "quit-3",
        "proxy",
        &["signal", "TERM", "--process", "sidecar"],
    )
    .await;
    let code = quitter_exit(&c, "p", "quit-3").await;
    assert!(code == 0 || code == 137, "quit-3 exited {code}");
    let p = wait(&c, "p", "proxy terminated", |p| {
        container_exit_code(p, "proxy").is_some()
    })
    .await;
    assert_eq!(
        container_exit_code(&p, "proxy"),
        Some(0),
        "its handler exits 0"
    );
    assert!(container_running(&p, "main") && container_running(&p, "stubborn"));

    let s = status_of(&p, "quit-2");
    assert_sidekill_image(&s, "sidekill-quitter");
    assert!(s
        .container_id
        .is_some_and(|id| id.starts_with("containerd://")));
    assert!(!s.ready);
    assert_eq!(s.restart_count, 0);
    assert_eq!(
        terminated(&p, "quit-2").reason.as_deref(),
        Some("Completed")
    );
    // Each ephemeral container ran once: the first still reports its failure.
    assert_eq!(status_of(&p, "quit-1").restart_count, 0);
    assert_eq!(terminated(&p, "quit-1").reason.as_deref(), Some("Error"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_quitter_reaches_loopback_only_endpoints_that_pods_proxy_cannot() {
    let c = cluster().await;
    let (admin, status, csql) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: sidekill.test/main, args: ['--seconds', '0']}}\n  - name: istio-proxy\n    image: docker.io/istio/proxyv2:1.22.0\n    env: [{{name: ISTIO_ADMIN_PORT, value: '{admin}'}}, {{name: ISTIO_STATUS_PORT, value: '{status}'}}]\n  - name: csql\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.11.0\n    args: ['--quitquitquit', '--admin-port', '{csql}', 'proj:region:db']\n"
    );
    let p = start_pod(&c, &yaml, "p", &["istio-proxy", "csql"]).await;
    assert_eq!(
        p.status.and_then(|s| s.pod_ip).as_deref(),
        Some("127.0.0.2"),
        "the pod IP is not 127.0.0.1"
    );
    wait_log(
        &c,
        "p",
        "istio-proxy",
        &format!("listening on 0.0.0.0:{status}"),
    )
    .await;
    wait_log(&c, "p", "csql", "ready for new connections").await;

    // From outside the pod: the API server's proxy dials the pod IP.
    let (code, body) = raw_request(
        c.base_url(),
        "POST",
        &format!("/api/v1/namespaces/default/pods/p:{status}/proxy/quitquitquit"),
        "text/plain",
        "",
    )
    .await;
    assert_eq!(
        code, 403,
        "pilot-agent refuses callers outside the pod: {body}"
    );
    assert!(body
        .to_string()
        .contains("Only requests from localhost are allowed"));
    let (code, body) = raw_request(
        c.base_url(),
        "POST",
        &format!("/api/v1/namespaces/default/pods/p:{csql}/proxy/quitquitquit"),
        "text/plain",
        "",
    )
    .await;
    assert_eq!(
        code, 503,
        "the admin port listens on 127.0.0.1 only: {body}"
    );
    assert_eq!(body["reason"], "ServiceUnavailable");
    let p = c.pod("default", "p").expect("pod");
    assert!(container_running(&p, "istio-proxy") && container_running(&p, "csql"));

    // From inside: an ephemeral quitter dials 127.0.0.1.
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    for (quitter, target, port) in [
        ("quit-istio", "istio-proxy", status),
        ("quit-csql", "csql", csql),
    ] {
        let to = format!("127.0.0.1:{port}");
        add_quitter(
            &pods,
            "p",
            quitter,
            target,
            &["http", "POST", &to, "/quitquitquit"],
        )
        .await;
        assert_eq!(quitter_exit(&c, "p", quitter).await, 0);
    }
    let p = wait(&c, "p", "Succeeded", |p| pod_phase(p) == "Succeeded").await;
    assert_eq!(container_exit_code(&p, "istio-proxy"), Some(0));
    assert_eq!(container_exit_code(&p, "csql"), Some(0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_container_updates_that_the_apiserver_refuses_are_422() {
    let c = cluster().await;
    sleeping_pod(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    add_quitter(&pods, "p", "q", "side", &["--help"]).await;
    assert_eq!(quitter_exit(&c, "p", "q").await, 0);

    let path = "/api/v1/namespaces/default/pods/p/ephemeralcontainers";
    let server = &c;
    let refused = |body: &'static str| async move {
        let st = refused_patch(server, path, "application/strategic-merge-patch+json", body).await;
        st["message"].as_str().unwrap_or_default().to_owned()
    };
    // Each patch and the part of the API server's refusal that names its rule.
    let cases = [
        (
            r#"{"spec":{"ephemeralContainers":[{"name":"q","$patch":"delete"}]}}"#,
            "existing ephemeral containers \"q\" may not be removed",
        ),
        (
            r#"{"spec":{"ephemeralContainers":[{"name":"q","args":["again"]}]}}"#,
            "existing ephemeral containers \"q\" may not be changed",
        ),
        (
            r#"{"spec":{"ephemeralContainers":[{"name":"side","image":"sidekill-quitter:0.1.0"}]}}"#,
            "spec.ephemeralContainers[1].name: Duplicate value: \"side\"",
        ),
        (
            r#"{"spec":{"ephemeralContainers":[{"name":"x","image":"sidekill-quitter:0.1.0","targetContainerName":"nope"}]}}"#,
            "spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\"",
        ),
        (
            r#"{"spec":{"ephemeralContainers":[{"name":"x","image":"sidekill-quitter:0.1.0","ports":[{"containerPort":80}]}]}}"#,
            "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
        ),
    ];
    for (body, rule) in cases {
        let msg = refused(body).await;
        assert!(msg.contains(rule), "{body}: {msg}");
    }
    // JSON patch works on the subresource too, and its `remove` is refused the same way.
    refused_patch(
        &c,
        path,
        "application/json-patch+json",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
    )
    .await;

    let p = c.pod("default", "p").expect("pod");
    let ecs = p
        .spec
        .and_then(|s| s.ephemeral_containers)
        .unwrap_or_default();
    assert_eq!(ecs.len(), 1, "only q was stored");
    assert_eq!(
        status_of(&c.pod("default", "p").expect("pod"), "q").restart_count,
        0
    );
    c.shutdown().await;
}
