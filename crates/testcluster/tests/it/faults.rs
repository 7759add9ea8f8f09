//! Fault injection: API errors, dropped exec streams, a pod deleted while commands run.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

use crate::common::{client, cluster, exec, start_pod, wait_log};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: f}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: side, image: sidekill.test/sidecar}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_and_timed_api_failures() {
    let c = cluster().await;
    c.apply_yaml(POD).await.expect("apply");
    let k = client(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    c.faults().fail_requests(2);
    for _ in 0..2 {
        match pods.get("f").await {
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"))
            }
            other => panic!("expected an injected 500, got {other:?}"),
        }
    }
    pods.get("f").await.expect("third request succeeds");
    // The admin endpoint, as a test in another language would use it.
    let req = hyper::Request::post("/testcluster/v1/faults")
        .header("content-type", "application/json")
        .body(br#"{"failForSeconds": 0.5}"#.to_vec())
        .expect("request");
    k.request_text(req).await.expect("admin endpoint");
    assert!(pods.get("f").await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    pods.get("f").await.expect("the outage is over");
    assert_eq!(c.faults().injected(), 3);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_stream_dropped_mid_stream_has_no_status() {
    let c = cluster().await;
    start_pod(&c, POD, "f", &["side"]).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    c.faults().drop_next_exec_after(1);
    let ap = AttachParams::default()
        .container("side")
        .stdout(true)
        .stderr(false);
    let mut p = pods
        .exec("f", vec!["sh", "-c", "echo one; sleep 0.5; echo two"], &ap)
        .await
        .expect("exec");
    let mut out = p.stdout().expect("stdout");
    let status = p.take_status().expect("status");
    // Read in the background: kube-rs does not close the stdout pipe when the connection drops
    // (a reader must not wait for EOF alone), but `join` ends with the error.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64];
        let n = out.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let joined = tokio::time::timeout(Duration::from_secs(10), p.join())
        .await
        .expect("kube-rs notices the dropped connection");
    assert!(
        joined.is_err(),
        "the session ends in an error, not a status: {joined:?}"
    );
    assert!(
        status.await.is_none(),
        "no status arrives on a dropped stream"
    );
    let text = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the first frame arrived")
        .expect("reader task");
    assert_eq!(text, "one\n");
    // The next exec is unaffected.
    assert_eq!(
        exec(&pods, "f", "side", &["true"]).await.exit_code(),
        Some(0)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_an_exec_runs() {
    let c = cluster().await;
    start_pod(&c, POD, "f", &["side"]).await;
    wait_log(&c, "f", "side", "sidecar: running").await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    c.faults().delete_pod_on_exec("default", "f");
    let r = exec(&pods, "f", "side", &["sleep", "30"]).await;
    // The container's PID 1 obeys SIGTERM; its namespace dies and takes the exec'd sleep along.
    assert_eq!(r.exit_code(), Some(137), "{r:?}");
    c.wait_for_pod_gone("default", "f", Duration::from_secs(10))
        .await
        .expect("pod gone");
    c.shutdown().await;
}
