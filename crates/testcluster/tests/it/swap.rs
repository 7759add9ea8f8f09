//! Image swap, as sidekill's executor sends it: a JSON patch with a `test` of the container's
//! name and a `replace` of its image with the nop image (the real sidekill-quitter binary).
//! The node restarts the changed container from outside, as the kubelet does; the API server
//! refuses what `ValidatePodUpdate` refuses.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use sidekill_testcluster::{container_running, pod_phase};

use crate::common::{
    assert_sidekill_image, client, cluster, last_terminated, refused_patch, sleeping_pod,
    start_pod, status_of, terminated, wait, wait_log,
};

/// The executor's patch: test that index `i` is container `name`, then replace its image.
fn swap_patch(i: usize, name: &str, image: &str) -> json_patch::Patch {
    serde_json::from_value(json!([
        {"op": "test", "path": format!("/spec/containers/{i}/name"), "value": name},
        {"op": "replace", "path": format!("/spec/containers/{i}/image"), "value": image},
    ]))
    .expect("a JSON patch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_pid1_without_a_handler_is_sigkilled_after_grace_then_the_nop_exits_0() {
    let c = cluster().await;
    // `sleep` as PID 1 has no SIGTERM handler: the kernel drops the kubelet's SIGTERM.
    c.apply_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: swap}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: main, image: sidekill.test/main, args: ['--seconds', '0']}\n  - {name: sidecar, image: alpine, command: [sleep, '1000']}\n",
    )
    .await
    .expect("apply");
    let before = wait(&c, "swap", "main done, sidecar running", |p| {
        sidekill_testcluster::container_exit_code(p, "main") == Some(0)
            && container_running(p, "sidecar")
    })
    .await;
    assert_eq!(
        pod_phase(&before),
        "Running",
        "the sidecar keeps the pod running"
    );
    let old_id = status_of(&before, "sidecar").container_id;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let patched = pods
        .patch(
            "swap",
            &PatchParams::default(),
            &Patch::<()>::Json(swap_patch(1, "sidecar", "sidekill-nop:0.1.0")),
        )
        .await
        .expect("the swap is a valid pod update");
    let spec = patched.spec.clone().expect("spec");
    assert_eq!(
        spec.containers[1].image.as_deref(),
        Some("sidekill-nop:0.1.0")
    );
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );

    let p = wait(&c, "swap", "Succeeded", |p| pod_phase(p) == "Succeeded").await;
    let s = status_of(&p, "sidecar");
    let last = last_terminated(&p, "sidecar");
    assert_eq!(
        (last.exit_code, last.signal, last.reason.as_deref()),
        (137, Some(9), Some("Error")),
        "SIGTERM was dropped, so the grace ran out and SIGKILL ended it"
    );
    assert_eq!(last.container_id, old_id);
    let now = terminated(&p, "sidecar");
    assert_eq!(
        (now.exit_code, now.reason.as_deref()),
        (0, Some("Completed")),
        "`sleep` resolves to the nop in the nop image"
    );
    assert_ne!(now.container_id, old_id, "a new container");
    assert_eq!(s.restart_count, 1);
    assert_sidekill_image(&s, "sidekill-nop");
    let events: Api<Event> = Api::default_namespaced(client(&c).await);
    let killing: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Killing"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        killing
            .iter()
            .any(|m| m == "Container sidecar definition changed, will be restarted"),
        "{killing:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_whose_command_is_not_in_the_nop_image_fails_with_start_error_128() {
    let c = cluster().await;
    start_pod(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: swap}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: side, image: sidekill.test/sidecar, command: [sidecar]}\n",
        "swap",
        &["side"],
    )
    .await;
    wait_log(&c, "swap", "side", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    pods.patch(
        "swap",
        &PatchParams::default(),
        &Patch::<()>::Json(swap_patch(
            0,
            "side",
            "docker.io/library/sidekill-nop:0.1.0",
        )),
    )
    .await
    .expect("swap");
    let p = wait(&c, "swap", "Failed", |p| pod_phase(p) == "Failed").await;
    let last = last_terminated(&p, "side");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (0, Some("Completed")),
        "the sidecar's handler obeyed SIGTERM"
    );
    let t = terminated(&p, "side");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    let msg = t.message.unwrap_or_default();
    assert!(
        msg.contains("exec: \"sidecar\": executable file not found in $PATH"),
        "{msg}"
    );
    assert_eq!(status_of(&p, "side").restart_count, 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_updates_that_the_apiserver_refuses_are_422() {
    let c = cluster().await;
    let before = sleeping_pod(&c).await;
    let path = "/api/v1/namespaces/default/pods/p";
    let jp = "application/json-patch+json";

    // A failed `test`: the apiserver's generic 422 with the patch library's error as cause.
    let st = refused_patch(
        &c,
        path,
        jp,
        r#"[{"op":"test","path":"/spec/containers/0/name","value":"other"},{"op":"replace","path":"/spec/containers/0/image","value":"sidekill-nop:0.1.0"}]"#,
    )
    .await;
    assert_eq!(st["reason"], "Invalid", "{st}");
    assert_eq!(
        st["message"],
        "the server rejected our request due to an error in our request"
    );
    assert_eq!(
        st["details"]["causes"][0]["message"],
        "testing value /spec/containers/0/name failed: test failed"
    );

    // A field other than the image.
    let st = refused_patch(
        &c,
        path,
        jp,
        r#"[{"op":"replace","path":"/spec/containers/0/command","value":["sleep","1"]}]"#,
    )
    .await;
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{msg}"
    );
    assert!(msg.contains("spec.containers[0].command"), "{msg}");

    // An empty image, and a grace period changed other than from negative to 1.
    let st = refused_patch(
        &c,
        path,
        jp,
        r#"[{"op":"replace","path":"/spec/containers/0/image","value":""}]"#,
    )
    .await;
    assert_eq!(
        st["message"],
        "Pod \"p\" is invalid: spec.containers[0].image: Required value"
    );
    refused_patch(
        &c,
        path,
        "application/merge-patch+json",
        r#"{"spec":{"terminationGracePeriodSeconds":5}}"#,
    )
    .await;

    // Ephemeral containers change only through their subresource.
    refused_patch(
        &c,
        path,
        "application/strategic-merge-patch+json",
        r#"{"spec":{"ephemeralContainers":[{"name":"q","image":"sidekill-quitter:0.1.0"}]}}"#,
    )
    .await;

    let after = c.pod("default", "p").expect("pod");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "nothing refused was stored"
    );
    assert!(
        container_running(&after, "side"),
        "nor did the node act on it"
    );
    c.shutdown().await;
}
