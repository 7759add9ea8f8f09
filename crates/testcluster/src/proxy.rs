//! `pods/proxy`: forwards an HTTP request to the pod's IP and port, as the API server's proxy
//! does (k8s.io/kubernetes pkg/registry/core/pod/strategy.go `ResourceLocation` dials
//! `status.podIP`).
//!
//! Containers share the machine's network namespace: the pod's IP is `127.0.0.2` (see the
//! crate docs), never `127.0.0.1`, so a server in the pod that accepts only callers on
//! `127.0.0.1` (the stand-in pilot-agent's `/quitquitquit`) refuses a proxied request, and one
//! that listens on `127.0.0.1` only (cloud-sql-proxy's admin port) is not reached at all. The path is `pods/NAME[:PORT]/proxy/REST`
//! (`[scheme:]name[:port]`); without a port, the first declared containerPort is used, else 80.
//!
//! Failure modes: an unknown pod is 404; a port nothing listens on, or a connection that fails,
//! is `503 ServiceUnavailable` worded as the API server's proxy words it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::ctx::{full, Body, Ctx};
use crate::status::ApiError;

/// Forwards one request.
pub(crate) async fn handle(
    ctx: &Ctx,
    req: Request<Incoming>,
    ns: &str,
    name_port: &str,
    tail: &str,
) -> Result<Response<Body>, ApiError> {
    let parts: Vec<&str> = name_port.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name] => (*name, None),
        [name, port] => (*name, Some(*port)),
        [_scheme, name, port] => (*name, Some(*port)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid pod proxy name {name_port:?}"
            )))
        }
    };
    let pod = ctx
        .pods
        .get(ns, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let spec = pod.spec.clone().unwrap_or_default();
    let ports = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten());
    let port: u16 = match port.filter(|p| !p.is_empty()) {
        Some(p) => match p.parse() {
            Ok(n) => n,
            Err(_) => ports
                .clone()
                .find(|cp| cp.name.as_deref() == Some(p))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| {
                    ApiError::service_unavailable(format!("no such port {p:?} on pod {name}"))
                })?,
        },
        None => spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .next()
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .unwrap_or(80),
    };
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("address not allowed: pod {name} has no IP yet"))
        })?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::service_unavailable(format!(
            "error trying to reach service: dial tcp {ip}:{port}: {e}"
        ))
    };
    let stream = tokio::net::TcpStream::connect((ip.as_str(), port))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                unreachable(&"connect: connection refused")
            } else {
                unreachable(&e)
            }
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("/{tail}{query}");
    let mut builder = Request::builder().method(req.method().clone()).uri(&uri);
    for (k, v) in req.headers() {
        if k == hyper::header::AUTHORIZATION
            || k == hyper::header::HOST
            || k == hyper::header::CONNECTION
        {
            continue;
        }
        builder = builder.header(k, v);
    }
    builder = builder.header(hyper::header::HOST, format!("{ip}:{port}"));
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to read the request body: {e}")))?
        .to_bytes();
    let out = builder
        .body(Full::new(body))
        .map_err(|e| ApiError::bad_request(format!("invalid proxied request: {e}")))?;
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| unreachable(&e))?;
    let (parts, body) = resp.into_parts();
    let bytes: Bytes = body
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok(Response::from_parts(parts, full(bytes)))
}
