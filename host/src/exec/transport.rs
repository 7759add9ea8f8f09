//! How a step reaches the container: an exec (`pods/exec`), or an HTTP request through
//! `pods/proxy` for presets that allow it.

use std::time::Duration;

use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::api::{forbidden, forbidden_error, forbidden_message, is_not_found};
use super::executor::Executor;
use super::run::Stop;
use super::status::{container_state, State};
use super::Result;

/// Reads at most `limit` bytes, draining (and dropping) the rest.
pub(super) async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The result of one exec.
pub(super) struct ExecOutcome {
    /// `ran`, `failed`, `dropped`, `container-gone`.
    pub(super) result: &'static str,
    pub(super) exit_code: Option<i32>,
    pub(super) message: Option<String>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl ExecOutcome {
    /// An exec that never ran its command: `result`, and why.
    fn unsent(result: &'static str, message: String) -> ExecOutcome {
        ExecOutcome {
            result,
            exit_code: None,
            message: Some(message),
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

impl Executor {
    /// Which verbs on `pods/exec` the identity lacks in `ns`, for an exec refused at the
    /// upgrade. A WebSocket exec is a GET, authorized as `get`, and kube-apiserver 1.35+ also
    /// checks `create`, refusing with no reason ("is forbidden: "), so the answer may not say
    /// which. Asked with SelfSubjectAccessReviews, which every authenticated identity may
    /// make; a review that fails, or reviews that allow both, leave both named.
    pub(super) async fn exec_verbs_refused(&self, ns: &str) -> &'static str {
        let mut refused = Vec::new();
        for verb in ["get", "create"] {
            if !self.allowed(ns, verb, "exec").await {
                refused.push(verb);
            }
        }
        match refused[..] {
            ["get"] => "get",
            ["create"] => "create",
            _ => "get and create",
        }
    }

    /// Runs one exec, retrying connection failures while the container still runs.
    pub(super) async fn exec(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        argv: &[String],
    ) -> Result<ExecOutcome, Stop> {
        let api = self.pods(ns);
        let ap = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut delay = self.options.backoff;
        let mut attempt = 1;
        let mut process = loop {
            match api.exec(name, argv.to_vec(), &ap).await {
                Ok(p) => break p,
                Err(e) => {
                    // A refused exec ran nothing and will be refused again: stop with the
                    // missing permission, before anything is recorded as done.
                    if let Some(status) = forbidden_message(&e) {
                        let verb = self.exec_verbs_refused(ns).await;
                        return Err(Stop::Err(forbidden_error(
                            verb,
                            "pods/exec",
                            ns,
                            format!("exec into container {container} of pod {ns}/{name}"),
                            // kube-apiserver's own `create` check gives no reason: it
                            // ends "is forbidden: ".
                            format!(
                                "{}; an exec over WebSocket needs both get and create on \
                                 pods/exec",
                                status.trim_end_matches([' ', ':'])
                            ),
                        )));
                    }
                    // Before the upgrade: what is the pod's state?
                    let pod = self.get(ns, name).await?;
                    let Some(pod) = pod else {
                        return Err(Stop::Gone);
                    };
                    if let State::Terminated(_) | State::Missing = container_state(&pod, container)
                    {
                        return Ok(ExecOutcome::unsent("container-gone", e.to_string()));
                    }
                    if attempt >= self.options.retries {
                        return Ok(ExecOutcome::unsent("failed", e.to_string()));
                    }
                    tracing::debug!(attempt, error = %e, "exec failed to start, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        };
        let limit = self.options.output_limit;
        let out = process
            .stdout()
            .map(|r| tokio::spawn(read_bounded(r, limit)));
        let err = process
            .stderr()
            .map(|r| tokio::spawn(read_bounded(r, limit)));
        let status = process.take_status();
        let joined = tokio::time::timeout(self.options.exec_timeout, process.join()).await;
        let status = match status {
            Some(s) => tokio::time::timeout(Duration::from_millis(500), s)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let collect = |h: Option<tokio::task::JoinHandle<String>>| async move {
            match h {
                Some(h) => {
                    let abort = h.abort_handle();
                    match tokio::time::timeout(Duration::from_millis(300), h).await {
                        Ok(Ok(s)) => s,
                        _ => {
                            abort.abort();
                            String::new()
                        }
                    }
                }
                None => String::new(),
            }
        };
        let stdout = collect(out).await;
        let stderr = collect(err).await;
        let mut outcome = ExecOutcome {
            result: "ran",
            exit_code: None,
            message: None,
            stdout,
            stderr,
        };
        match status {
            Some(st) if st.status.as_deref() == Some("Success") => outcome.exit_code = Some(0),
            Some(st) => {
                let code = st
                    .details
                    .as_ref()
                    .and_then(|d| d.causes.as_ref())
                    .into_iter()
                    .flatten()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message.as_deref())
                    .and_then(|m| m.parse::<i32>().ok());
                let message = st.message.clone().unwrap_or_default();
                outcome.exit_code = code;
                outcome.result = if code.is_some() {
                    "ran"
                } else if message.contains("container not found") || message.contains("not running")
                {
                    "container-gone"
                } else {
                    "failed"
                };
                outcome.message = Some(message);
            }
            None => {
                outcome.result = "dropped";
                outcome.message = Some(match joined {
                    Ok(Err(e)) => format!("the exec connection dropped: {e}"),
                    Err(_) => "the exec timed out".into(),
                    Ok(Ok(())) => "the exec ended without a status".into(),
                });
            }
        }
        Ok(outcome)
    }

    /// One `pods/proxy` request (`method` to `port` and `path` of the pod), when allowed.
    pub(super) async fn http(
        &self,
        ns: &str,
        name: &str,
        method: &str,
        port: u16,
        path: &str,
    ) -> Result<(&'static str, String), Stop> {
        if !self.options.pods_proxy {
            return Ok((
                "refused",
                "an http action needs pods/proxy, which is not allowed (--pods-proxy)".into(),
            ));
        }
        let path = path.trim_start_matches('/');
        let uri = format!("/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/{path}");
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Vec::new());
        let Ok(req) = req else {
            return Ok(("refused", "an invalid http action".into()));
        };
        match tokio::time::timeout(self.options.http_timeout, self.client.request_text(req)).await {
            Ok(Ok(body)) => Ok(("ran", body.chars().take(200).collect())),
            Ok(Err(e)) if is_not_found(&e) => {
                if self.get(ns, name).await?.is_none() {
                    return Err(Stop::Gone);
                }
                Ok(("failed", e.to_string()))
            }
            Ok(Err(e)) => {
                // RBAC's verb for the proxied method (the API server's own mapping).
                let verb = match method {
                    "GET" | "HEAD" => "get",
                    "POST" => "create",
                    "PUT" => "update",
                    "PATCH" => "patch",
                    "DELETE" => "delete",
                    _ => "proxy",
                };
                match forbidden(&e, verb, "pods/proxy", ns, || {
                    format!("{method} :{port}/{path} through pods/proxy of pod {ns}/{name}")
                }) {
                    Some(err) => Err(Stop::Err(err)),
                    None => Ok(("failed", e.to_string())),
                }
            }
            Err(_) => Ok(("failed", "timed out".into())),
        }
    }
}
