//! `pods/exec` over WebSocket: kube-rs (which offers v5 and v4) and a raw client per protocol.

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{client, cluster, exec, wait};

const SHELL_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: sh}
spec:
  restartPolicy: Never
  containers:
  - {name: shell, image: alpine:3.20, command: [sleep, '1000']}
  - {name: quick, image: sidekill.test/main, args: ['--seconds', '0']}
  - {name: nosh, image: gcr.io/distroless/static:nonroot}
";

async fn ready(c: &sidekill_testcluster::TestCluster) {
    c.apply_yaml(SHELL_POD).await.expect("apply");
    wait(c, "sh", "shell and nosh running, quick done", |p| {
        sidekill_testcluster::container_running(p, "shell")
            && sidekill_testcluster::container_running(p, "nosh")
            && sidekill_testcluster::container_exit_code(p, "quick").is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_exec_gets_stdout_stderr_and_exit_codes() {
    let c = cluster().await;
    ready(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let r = exec(
        &pods,
        "sh",
        "shell",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    )
    .await;
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert_eq!(r.exit_code(), Some(3));
    let st = r.status.expect("status");
    assert_eq!(st.status.as_deref(), Some("Failure"));
    assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
    let ok = exec(&pods, "sh", "shell", &["true"]).await;
    assert_eq!(ok.exit_code(), Some(0));
    assert_eq!(ok.status.and_then(|s| s.status).as_deref(), Some("Success"));
    // The command runs inside the container's PID namespace: PID 1 is the container's command.
    let ps = exec(
        &pods,
        "sh",
        "shell",
        &["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"],
    )
    .await;
    assert_eq!(ps.stdout.trim(), "sleep 1000");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_exec_stdin_is_closed_by_the_v5_close_signal() {
    let c = cluster().await;
    ready(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let ap = AttachParams::default()
        .container("shell")
        .stdin(true)
        .stdout(true)
        .stderr(false);
    let mut p = pods.exec("sh", vec!["cat"], &ap).await.expect("exec");
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = p.stdout().expect("stdout");
    let status = p.take_status().expect("status");
    stdin.write_all(b"hello\n").await.expect("write");
    // Shutting the writer down is what makes kube-rs send the v5 close signal `[255, 0]`.
    stdin.shutdown().await.expect("close stdin");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "hello\n");
    assert_eq!(
        status.await.and_then(|s| s.status).as_deref(),
        Some("Success")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_into_a_terminated_container_or_a_shell_less_image_fails_like_containerd() {
    let c = cluster().await;
    ready(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let done = exec(&pods, "sh", "quick", &["true"]).await;
    let st = done.status.expect("status");
    assert_eq!(st.reason.as_deref(), Some("InternalError"));
    assert_eq!(
        st.message.as_deref(),
        Some("Internal error occurred: unable to upgrade connection: container not found (\"quick\")")
    );
    let nosh = exec(&pods, "sh", "nosh", &["/bin/sh", "-c", "kill 1"]).await;
    let st = nosh.status.expect("status");
    assert_eq!(st.reason.as_deref(), Some("InternalError"));
    let m = st.message.unwrap_or_default();
    assert!(
        m.contains("exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown"),
        "{m}"
    );
    let nokill = exec(&pods, "sh", "nosh", &["kill", "1"]).await;
    let m = nokill.status.and_then(|s| s.message).unwrap_or_default();
    assert!(
        m.contains("exec: \"kill\": executable file not found in $PATH"),
        "{m}"
    );
    c.shutdown().await;
}

/// A raw WebSocket exec offering `protocols`; returns the chosen protocol and the frames.
async fn raw_exec(
    base: &str,
    query: &str,
    protocols: &str,
    stdin: Option<&[u8]>,
) -> (String, Vec<Vec<u8>>) {
    let url = format!(
        "{}/api/v1/namespaces/default/pods/sh/exec?{query}",
        base.replace("http://", "ws://")
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
    let host = base.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(host).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgrade");
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Some(data) = stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into()))
            .await
            .expect("send stdin");
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .expect("close stdin");
    }
    let mut frames = Vec::new();
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Binary(b)) => frames.push(b.to_vec()),
            Ok(Message::Close(f)) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1000), "normal close");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("websocket error {e}"),
        }
    }
    (chosen, frames)
}

fn channel(frames: &[Vec<u8>], ch: u8) -> String {
    frames
        .iter()
        .filter(|f| f.first() == Some(&ch))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_websocket_v4_and_v5_frames() {
    let c = cluster().await;
    ready(&c).await;
    // kube-rs style query: starts with `?&`, repeated command=.
    let q = "&command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%205&container=shell&stdout=true&stderr=true";
    let (proto, frames) = raw_exec(c.base_url(), q, "v4.channel.k8s.io", None).await;
    assert_eq!(proto, "v4.channel.k8s.io");
    assert_eq!(
        frames.first().map(Vec::as_slice),
        Some(&[1u8][..]),
        "empty frame on stdout at open"
    );
    assert_eq!(channel(&frames, 1), "out\n");
    assert_eq!(channel(&frames, 2), "err\n");
    let status: serde_json::Value =
        serde_json::from_str(&channel(&frames, 3)).expect("status json");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "5");

    // Offered both (kube-rs): the server prefers v5. Offered v5 alone (kubectl 1.37): v5.
    let q2 = "command=cat&container=shell&stdin=true&stdout=true";
    let (proto, frames) = raw_exec(
        c.base_url(),
        q2,
        "v4.channel.k8s.io, v5.channel.k8s.io",
        Some(b"piped\n"),
    )
    .await;
    assert_eq!(proto, "v5.channel.k8s.io");
    assert_eq!(channel(&frames, 1), "piped\n");
    let status: serde_json::Value =
        serde_json::from_str(&channel(&frames, 3)).expect("status json");
    assert_eq!(
        status,
        serde_json::json!({"metadata": {}, "status": "Success"})
    );
    let (proto, _) = raw_exec(
        c.base_url(),
        "command=true&container=shell&stdout=true",
        "v5.channel.k8s.io",
        None,
    )
    .await;
    assert_eq!(proto, "v5.channel.k8s.io");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_errors_before_the_upgrade_are_status_objects() {
    let c = cluster().await;
    ready(&c).await;
    let attempt = |path: String| {
        let base = c.base_url().to_owned();
        async move {
            let url = format!("{}{path}", base.replace("http://", "ws://"));
            let mut req = url.into_client_request().expect("request");
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "v5.channel.k8s.io".parse().expect("header"),
            );
            let tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
                .await
                .expect("connect");
            match tokio_tungstenite::client_async(req, tcp).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let body: serde_json::Value =
                        serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                            .expect("status body");
                    (
                        resp.status().as_u16(),
                        body["message"].as_str().unwrap_or_default().to_owned(),
                    )
                }
                other => panic!("expected an HTTP error, got {:?}", other.map(|_| ())),
            }
        }
    };
    assert_eq!(
        attempt("/api/v1/namespaces/default/pods/nope/exec?command=true&stdout=true".into()).await,
        (404, "pods \"nope\" not found".into())
    );
    assert_eq!(
        attempt(
            "/api/v1/namespaces/default/pods/sh/exec?command=true&stdout=true&container=y".into()
        )
        .await,
        (400, "container y is not valid for pod sh".into())
    );
    let (code, msg) =
        attempt("/api/v1/namespaces/default/pods/sh/exec?command=true&stdout=true".into()).await;
    assert_eq!(code, 400);
    assert!(
        msg.starts_with(
            "a container name must be specified for pod sh, choose one of: [shell quick nosh]"
        ),
        "{msg}"
    );
    c.shutdown().await;
}

/// A failed exec (the command is not in the image) ends with its Status every time, never a
/// reset connection: the server reads the client's close before it drops the socket, as the
/// API server does (seen as a `dropped` SIGKILL step of the executor, never on the real one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exec_always_delivers_its_status_before_closing() {
    let c = cluster().await;
    ready(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    for attempt in 0..20 {
        let ap = AttachParams::default()
            .container("nosh")
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut p = pods
            .exec("sh", vec!["/bin/sh", "-c", "kill -9 1"], &ap)
            .await
            .expect("exec upgrade");
        // As sidekill's executor does: output read while the stream runs, API calls between
        // execs (pooled connections).
        let out = p.stdout().map(|mut r| {
            tokio::spawn(async move {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s).await;
                s
            })
        });
        let status = p.take_status().expect("status");
        let joined = p.join().await;
        let st = status.await;
        if let Some(out) = out {
            out.abort();
        }
        pods.get("sh").await.expect("get");
        assert!(
            st.as_ref().and_then(|s| s.reason.as_deref()) == Some("InternalError"),
            "attempt {attempt}: status {st:?}, join {joined:?}"
        );
    }
    c.shutdown().await;
}
