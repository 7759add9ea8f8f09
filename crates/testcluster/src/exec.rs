//! `pods/exec` over WebSocket, with the `v5.channel.k8s.io` and `v4.channel.k8s.io`
//! subprotocols (the server prefers v5 and echoes exactly one of those offered).
//!
//! Each binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a
//! `metav1.Status` as JSON), 4 resize. At open the server sends one empty message on the lowest
//! channel the client reads (stdout, else stderr, else error), as the kubelet does. `[255, 0]`
//! (v5 only) closes stdin. When the command ends, the server sends the Status on channel 3 —
//! `Success`, or `Failure`/`NonZeroExitCode` with the exit code as the `ExitCode` cause — then a
//! close frame, and reads until the client's close (at most 1 s) before it drops the connection,
//! so the Status is never lost to a reset.
//!
//! Failure modes: before the upgrade, the real API's 4xx Status (pod not found, container not
//! valid, no stream asked for, no subprotocol in common). After it, a container with no running
//! process or a command that is not in the container gets a `Failure`/`InternalError` Status with
//! the wording containerd and the API server use. Output still held by a background process is
//! read for at most 2 s after the command exits. A client that goes away leaves the command
//! running to its end, as on a real node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::ctx::{full, Body, Ctx, Query};
use crate::kubelet::ExecFailure;
use crate::status::ApiError;

/// The subprotocols served, in the server's order of preference.
pub(crate) const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// How long output is still read after the command exited (a background process may hold it).
const DRAIN: Duration = Duration::from_secs(2);
/// How long the server waits for the client's close frame after its own (see [`close`]).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The container an exec, attach or log request means, with the API server's errors.
pub(crate) fn resolve_container(
    pod: &Pod,
    asked: Option<&str>,
    pod_name: &str,
) -> Result<String, ApiError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let names = |list: &[k8s_openapi::api::core::v1::Container]| -> Vec<String> {
        list.iter().map(|c| c.name.clone()).collect()
    };
    let mains = names(&spec.containers);
    let inits = names(spec.init_containers.as_deref().unwrap_or(&[]));
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if mains.iter().chain(inits.iter()).any(|n| n == c) {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if mains.len() == 1 => Ok(mains[0].clone()),
        None => {
            let mut m = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                mains.join(" ")
            );
            if !inits.is_empty() {
                m.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(m))
        }
    }
}

/// The exec request's parameters.
struct ExecRequest {
    namespace: String,
    pod: String,
    container: String,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    v5: bool,
}

/// Validates an exec request and upgrades it to a WebSocket session.
pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    namespace: String,
    pod_name: String,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query());
    let pod = ctx
        .pods
        .get(&namespace, &pod_name)
        .ok_or_else(|| ApiError::not_found("pods", &pod_name))?;
    let container = resolve_container(&pod, q.get("container"), &pod_name)?;
    let (stdin, stdout, stderr, tty) = (
        q.flag("stdin"),
        q.flag("stdout"),
        q.flag("stderr"),
        q.flag("tty"),
    );
    if !stdin && !stdout && !stderr {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    let command = q.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let is_ws = header(UPGRADE).eq_ignore_ascii_case("websocket")
        && header(CONNECTION).to_ascii_lowercase().contains("upgrade");
    if !is_ws {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let key = header(SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: none of the offered subprotocols [{}] is served; this server speaks {}",
            offered.join(", "),
            PROTOCOLS.join(", ")
        )));
    };
    let session = ExecRequest {
        namespace,
        pod: pod_name,
        container,
        command,
        stdin,
        stdout,
        stderr,
        tty,
        v5: *protocol == PROTOCOLS[0],
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                run(ctx, ws, session).await;
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok(r)
}

/// The Status the error channel carries, without `kind`/`apiVersion` as the kubelet writes it.
fn error_frame(status: &Status) -> Message {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
        o.entry("metadata").or_insert_with(|| serde_json::json!({}));
    }
    let mut b = vec![ERROR];
    b.extend(serde_json::to_vec(&v).unwrap_or_default());
    Message::Binary(b.into())
}

/// A close frame with status 1000, as the API server closes a finished stream (a close frame
/// without a code reads as 1005, an error, to gorilla/websocket clients such as kubectl).
fn normal_close() -> Message {
    Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Ends the stream as the API server does: the close frame, then what the client still sends
/// is read, up to its own close frame (at most [`CLOSE_WAIT`]), before the socket is dropped.
/// A socket dropped with unread input is reset by the kernel, and a client that meets the reset
/// first loses the Status sent just before it (kube-rs then reports a dropped connection).
async fn close(sink: &mut SplitSink<Ws, Message>, source: &mut SplitStream<Ws>) {
    let _ = sink.send(normal_close()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = source.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// The Status for a command's exit code.
pub(crate) fn exit_status(code: i32) -> Status {
    if code == 0 {
        return Status {
            status: Some("Success".into()),
            ..Default::default()
        };
    }
    Status {
        status: Some("Failure".into()),
        reason: Some("NonZeroExitCode".into()),
        message: Some(format!(
            "command terminated with non-zero exit code: command terminated with exit code {code}"
        )),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn failure(e: ApiError) -> Status {
    let mut s = e.to_status();
    s.metadata = Default::default();
    s
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn run(ctx: Arc<Ctx>, ws: Ws, r: ExecRequest) {
    let (mut sink, mut source) = ws.split();
    let first = if r.stdout {
        STDOUT
    } else if r.stderr {
        STDERR
    } else {
        ERROR
    };
    if sink
        .send(Message::Binary(vec![first].into()))
        .await
        .is_err()
    {
        return;
    }
    let drop_after = ctx.faults.take_exec_drop();
    if drop_after == Some(0) {
        tracing::info!(pod = %r.pod, "fault: dropping the exec connection at open");
        return;
    }
    let child = ctx
        .kubelet
        .exec(&r.namespace, &r.pod, &r.container, &r.command, r.stdin)
        .await;
    if ctx.faults.take_delete_on_exec(&r.namespace, &r.pod) {
        // Delete once the command runs inside the container, so the deletion meets a running
        // exec (deleting earlier would make nsenter's fork fail in a dying namespace).
        let nsenter = child
            .as_ref()
            .ok()
            .and_then(|c| c.id())
            .and_then(|p| i32::try_from(p).ok());
        let (ctx2, ns, pod) = (ctx.clone(), r.namespace.clone(), r.pod.clone());
        tokio::spawn(async move {
            for _ in 0..400 {
                if nsenter.is_none_or(|p| !crate::process::children_of(p).is_empty()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tracing::info!(pod = %pod, "fault: deleting the pod while an exec runs");
            let _ = ctx2.kubelet.delete(&ns, &pod, None);
        });
    }
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let status = match e {
                ExecFailure::NotRunning => failure(ApiError::internal(format!(
                    "unable to upgrade connection: container not found (\"{}\")",
                    r.container
                ))),
                ExecFailure::NotFound { program } => {
                    let detail = if program.contains('/') {
                        format!("exec: \"{program}\": stat {program}: no such file or directory")
                    } else {
                        format!("exec: \"{program}\": executable file not found in $PATH")
                    };
                    let id: String = crate::store::new_uid().replace('-', "").repeat(2);
                    failure(ApiError::internal(format!(
                        "Internal error occurred: error executing command in container: failed to exec in container: failed to start exec \"{id}\": OCI runtime exec failed: exec failed: unable to start container process: {detail}: unknown"
                    )))
                }
                ExecFailure::Spawn(e) => failure(ApiError::internal(format!(
                    "error executing command in container: {e}"
                ))),
            };
            let _ = sink.send(error_frame(&status)).await;
            close(&mut sink, &mut source).await;
            return;
        }
    };

    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    let stderr_channel = if r.tty { STDOUT } else { STDERR };
    type Pipe = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
    let pipes: [(Option<Pipe>, u8, bool); 2] = [
        (
            child.stdout.take().map(|p| Box::new(p) as Pipe),
            STDOUT,
            r.stdout,
        ),
        // With a TTY, stderr shares the terminal: it arrives on the stdout channel.
        (
            child.stderr.take().map(|p| Box::new(p) as Pipe),
            stderr_channel,
            r.stderr || r.tty,
        ),
    ];
    for (pipe, ch, wanted) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if wanted
                            && tx
                                .send((ch, Bytes::copy_from_slice(&buf[..n])))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(out_tx);

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Bytes>>(16);
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            while let Some(Some(data)) = stdin_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    return;
                }
            }
            // None or a closed channel: stdin ends here (the pipe closes on drop).
        });
    }
    let mut stdin_tx = Some(stdin_tx);

    let wait = child.wait();
    tokio::pin!(wait);
    let mut exit: Option<i32> = None;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut frames = 0u32;
    let mut client_open = true;
    let mut outputs_open = true;
    loop {
        if exit.is_some() && !outputs_open {
            break;
        }
        let deadline = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            status = &mut wait, if exit.is_none() => {
                let code = match status {
                    Ok(s) => s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)),
                    Err(_) => 255,
                };
                exit = Some(code);
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN);
            }
            out = out_rx.recv(), if outputs_open => match out {
                Some((ch, data)) => {
                    let mut b = Vec::with_capacity(data.len() + 1);
                    b.push(ch);
                    b.extend_from_slice(&data);
                    if sink.send(Message::Binary(b.into())).await.is_err() {
                        client_open = false;
                        break;
                    }
                    frames += 1;
                    if drop_after == Some(frames) {
                        tracing::info!(pod = %r.pod, frames, "fault: dropping the exec connection mid-stream");
                        return;
                    }
                }
                None => outputs_open = false,
            },
            msg = source.next(), if client_open => match msg {
                Some(Ok(Message::Binary(b))) => match b.first() {
                    Some(0) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(Some(Bytes::copy_from_slice(&b[1..]))).await;
                        }
                    }
                    Some(&CLOSE) if r.v5 && b.get(1) == Some(&0) => {
                        if let Some(tx) = stdin_tx.take() {
                            let _ = tx.send(None).await;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    client_open = false;
                    stdin_tx = None;
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => break,
        }
        if !client_open && exit.is_none() {
            // The client is gone: the command runs on; its exit is reaped by the runtime.
            return;
        }
    }
    if !client_open {
        return;
    }
    let code = exit.unwrap_or(255);
    let _ = sink.send(error_frame(&exit_status(code))).await;
    close(&mut sink, &mut source).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_status_reads_like_the_kubelet() {
        let v = serde_json::to_value(exit_status(3)).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(
            v["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            serde_json::to_value(exit_status(0)).unwrap()["status"],
            "Success"
        );
    }

    #[test]
    fn container_errors_read_like_the_api_server() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}
        }))
        .unwrap();
        assert_eq!(
            resolve_container(&pod, Some("y"), "p").unwrap_err().message,
            "container y is not valid for pod p"
        );
        assert_eq!(
            resolve_container(&pod, None, "p").unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(resolve_container(&pod, Some("init"), "p").unwrap(), "init");
    }
}
