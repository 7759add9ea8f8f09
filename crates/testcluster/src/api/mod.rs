//! The HTTP side: routing, authentication, discovery, and the verbs on pods, configmaps and
//! events (get, list, watch, create, update, patch, delete), with Table output for kubectl.
//!
//! Failure modes: every error is a JSON `Status` with the real code and wording; a watch whose
//! `resourceVersion` is older than the history answers 200 with one ERROR event holding a 410
//! `Expired` Status and ends; a watch ends after `timeoutSeconds` (default 1800), when the client
//! goes away, when it falls more than 4096 changes behind, or when the server shuts down.

mod discovery;
mod read;
mod watch;
mod write;

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroupList, APIVersions, ServerAddressByClientCIDR,
};
use serde_json::{json, Value};

use crate::ctx::{error_response, full, json_response, read_body, Body, Ctx, Query};
use crate::faults::{FaultRequest, Faults};
use crate::status::ApiError;

pub(crate) use write::create;
use write::Part;

/// Serves one request.
pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = match route(ctx, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

/// Whether the request may proceed. Plain HTTP is served as the API server's old insecure port
/// was: client-go (kubectl) sends no credentials over plain HTTP, so a request without an
/// `Authorization` header is let in; a request that does send one must carry the kubeconfig's
/// token, else it is 401 as on a real server.
fn authorized(ctx: &Ctx, req: &Request<Incoming>) -> bool {
    match req.headers().get(hyper::header::AUTHORIZATION) {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == ctx.token),
    }
}

async fn route(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz"] | ["readyz"] | ["livez"] => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(r);
        }
        ["version"] => return Ok(json_response(200, &discovery::version())),
        _ => {}
    }
    if !authorized(&ctx, &req) {
        return Err(ApiError::unauthorized());
    }
    let method = req.method().clone();
    match segs.as_slice() {
        ["api"] => Ok(json_response(
            200,
            &APIVersions {
                versions: vec!["v1".into()],
                server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                    client_cidr: "0.0.0.0/0".into(),
                    server_address: ctx.address.clone(),
                }],
            },
        )),
        ["api", "v1"] => Ok(json_response(200, &discovery::resource_list())),
        ["apis"] => Ok(json_response(200, &APIGroupList { groups: vec![] })),
        ["openapi", "v3"] => Ok(json_response(
            200,
            &json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=sidekill-testcluster"}}}),
        )),
        ["openapi", "v3", "api", "v1"] => Ok(json_response(200, &discovery::openapi_v3_core())),
        ["testcluster", "v1", "faults"] => admin_faults(&ctx.faults, req).await,
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]
            if method == Method::POST =>
        {
            access_review(&ctx, req).await
        }
        ["api", "v1", rest @ ..] => {
            if ctx.faults.should_fail() {
                return Err(ApiError::internal("injected fault (sidekill-testcluster)"));
            }
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            api_v1(ctx, req, method, rest).await
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `SelfSubjectAccessReview`: the test server has no RBAC, so every permission is allowed
/// but those refused with [`crate::Faults::deny`]. Answered with `201` and the review, its
/// `status` filled in, as kube-apiserver answers (pkg/registry/authorization
/// selfsubjectaccessreview).
async fn access_review(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body = read_body(req).await?;
    let mut review: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid SelfSubjectAccessReview: {e}")))?;
    let attributes = &review["spec"]["resourceAttributes"];
    let field = |k: &str| attributes[k].as_str().unwrap_or_default().to_owned();
    let resource = match field("subresource").as_str() {
        "" => field("resource"),
        sub => format!("{}/{sub}", field("resource")),
    };
    let allowed = !ctx.faults.denied(&field("verb"), &resource);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "the test server authorizes every request of its token"})
    } else {
        json!({"allowed": false, "reason": format!("refused by the test server's deny fault: {} {resource}", field("verb"))})
    };
    Ok(json_response(201, &review))
}

/// A permission refused by [`crate::Faults::deny`], for the writes sidekill's stop methods
/// make.
fn denied_write(ctx: &Ctx, method: &Method, r: &[&str]) -> Result<(), ApiError> {
    let (verb, resource, ns, name) = match (method, r) {
        (&Method::PATCH, ["namespaces", ns, "pods", name]) => ("patch", "pods", *ns, *name),
        (&Method::PATCH, ["namespaces", ns, "pods", name, "ephemeralcontainers"]) => {
            ("patch", "pods/ephemeralcontainers", *ns, *name)
        }
        (&Method::PUT, ["namespaces", ns, "pods", name, "ephemeralcontainers"]) => {
            ("update", "pods/ephemeralcontainers", *ns, *name)
        }
        _ => return Ok(()),
    };
    if ctx.faults.denied(verb, resource) {
        return Err(ApiError::forbidden(verb, resource, ns, name));
    }
    Ok(())
}

async fn api_v1(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    method: Method,
    rest: Vec<String>,
) -> Result<Response<Body>, ApiError> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    denied_write(&ctx, &method, &r)?;
    match r.as_slice() {
        [plural] => collection(&ctx, req, method, None, plural).await,
        ["namespaces", ns] if method == Method::GET => {
            Ok(json_response(200, &discovery::namespace(ns)))
        }
        ["namespaces", ns, plural] => collection(&ctx, req, method, Some(ns), plural).await,
        ["namespaces", ns, plural, name] => item(&ctx, req, method, ns, plural, name).await,
        ["namespaces", ns, "pods", name, "status"] => match method {
            Method::GET => read::get_one(&ctx.pods, &req, ns, name),
            Method::PATCH | Method::PUT => {
                let w = write::update(&ctx.pods, req, ns, name, Part::pod_status()).await?;
                Ok(json_response(w.code, &w.object))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        ["namespaces", ns, "pods", name, "ephemeralcontainers"] => match method {
            Method::GET => read::get_one(&ctx.pods, &req, ns, name),
            Method::PATCH | Method::PUT => {
                let part = Part::pod_ephemeral_containers();
                let w = write::update(&ctx.pods, req, ns, name, part).await?;
                if w.stored {
                    // The node starts each new ephemeral container.
                    ctx.kubelet.updated(&w.object);
                }
                Ok(json_response(w.code, &w.object))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        ["namespaces", ns, "pods", name, "exec"] => {
            if method != Method::GET && method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            crate::exec::handle(ctx.clone(), req, ns.to_string(), name.to_string()).await
        }
        ["namespaces", ns, "pods", name, "log"] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            pod_log(&ctx, &req, ns, name)
        }
        ["namespaces", ns, "pods", name, "proxy", tail @ ..] => {
            let tail = tail.join("/");
            crate::proxy::handle(&ctx, req, ns, name, &tail).await
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `/testcluster/v1/faults`: POST applies a [`FaultRequest`], DELETE clears every fault, GET
/// counts the faults injected so far.
async fn admin_faults(faults: &Faults, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::POST => {
            let body = read_body(req).await?;
            let r: FaultRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault request: {e}")))?;
            faults.apply(&r);
            Ok(json_response(
                200,
                &json!({"applied": r, "injectedSoFar": faults.injected()}),
            ))
        }
        Method::DELETE => {
            faults.clear();
            Ok(json_response(200, &json!({"cleared": true})))
        }
        Method::GET => Ok(json_response(
            200,
            &json!({"injectedSoFar": faults.injected()}),
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn collection(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    method: Method,
    ns: Option<&str>,
    plural: &str,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query());
    let view = read::view_of(&req);
    let watching = q.flag("watch");
    match (plural, method) {
        ("pods", Method::GET) if watching => watch::watch(ctx, &ctx.pods, ns, &q, view),
        ("pods", Method::GET) => read::list(&ctx.pods, ns, &q, view),
        ("configmaps", Method::GET) if watching => watch::watch(ctx, &ctx.configmaps, ns, &q, view),
        ("configmaps", Method::GET) => read::list(&ctx.configmaps, ns, &q, view),
        ("events", Method::GET) if watching => watch::watch(ctx, &ctx.events, ns, &q, view),
        ("events", Method::GET) => read::list(&ctx.events, ns, &q, view),
        ("pods", Method::POST) => {
            let ns = ns.ok_or_else(ApiError::method_not_allowed)?;
            let body = read_body(req).await?;
            let pod = create(&ctx.pods, ns, &body, &q)?;
            if q.get("dryRun").is_none() {
                ctx.kubelet.admit(&pod);
            }
            Ok(json_response(201, &pod))
        }
        ("configmaps", Method::POST) => {
            let ns = ns.ok_or_else(ApiError::method_not_allowed)?;
            let body = read_body(req).await?;
            Ok(json_response(201, &create(&ctx.configmaps, ns, &body, &q)?))
        }
        ("events", Method::POST) => {
            let ns = ns.ok_or_else(ApiError::method_not_allowed)?;
            let body = read_body(req).await?;
            Ok(json_response(201, &create(&ctx.events, ns, &body, &q)?))
        }
        ("pods" | "configmaps" | "events", _) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}

async fn item(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    method: Method,
    ns: &str,
    plural: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    match (plural, method) {
        ("pods", Method::GET) => read::get_one(&ctx.pods, &req, ns, name),
        ("configmaps", Method::GET) => read::get_one(&ctx.configmaps, &req, ns, name),
        ("events", Method::GET) => read::get_one(&ctx.events, &req, ns, name),
        ("pods", Method::PUT | Method::PATCH) => {
            let w = write::update(&ctx.pods, req, ns, name, Part::object()).await?;
            if w.stored && w.code == 201 {
                // Server-side apply created it.
                ctx.kubelet.admit(&w.object);
            } else if w.stored {
                // The node sees the change as the kubelet's watch would (an image swap).
                ctx.kubelet.updated(&w.object);
            }
            Ok(json_response(w.code, &w.object))
        }
        ("configmaps", Method::PUT | Method::PATCH) => {
            let w = write::update(&ctx.configmaps, req, ns, name, Part::object()).await?;
            Ok(json_response(w.code, &w.object))
        }
        ("events", Method::PUT | Method::PATCH) => {
            let w = write::update(&ctx.events, req, ns, name, Part::object()).await?;
            Ok(json_response(w.code, &w.object))
        }
        ("pods", Method::DELETE) => {
            let grace = write::delete_grace(req).await?;
            Ok(json_response(200, &ctx.kubelet.delete(ns, name, grace)?))
        }
        ("configmaps", Method::DELETE) => write::delete_plain(&ctx.configmaps, ns, name),
        ("events", Method::DELETE) => write::delete_plain(&ctx.events, ns, name),
        ("pods" | "configmaps" | "events", _) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}

fn pod_log(
    ctx: &Ctx,
    req: &Request<Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let pod = ctx
        .pods
        .get(ns, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let q = Query::parse(req.uri().query());
    let container = crate::exec::resolve_container(&pod, q.get("container"), name)?;
    let text = ctx.kubelet.logs(ns, &pod, &container).unwrap_or_default();
    let text = match q.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect()
        }
        None => text,
    };
    let mut r = Response::new(full(text));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}
