//! The HTTP side: routing, authentication, discovery, and the verbs on pods, configmaps and
//! events (get, list, watch, create, update, patch, delete), with Table output for kubectl.
//!
//! Failure modes: every error is a JSON `Status` with the real code and wording; a watch whose
//! `resourceVersion` is older than the history answers 200 with one ERROR event holding a 410
//! `Expired` Status and ends; a watch ends after `timeoutSeconds` (default 1800), when the client
//! goes away, when it falls more than 4096 changes behind, or when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroupList, APIResource, APIResourceList, APIVersions, DeleteOptions, ObjectMeta,
    ServerAddressByClientCIDR, Status, StatusDetails,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

use crate::faults::{FaultRequest, Faults};
use crate::kinds::Kind;
use crate::kubelet::Kubelet;
use crate::patch::{self, PatchType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{status_json, ApiError};
use crate::store::{Change, ChangeType, Store};

/// The body type of every response.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Everything a request handler needs.
pub(crate) struct Ctx {
    pub pods: Arc<Store<Pod>>,
    pub configmaps: Arc<Store<ConfigMap>>,
    pub events: Arc<Store<Event>>,
    pub kubelet: Kubelet,
    pub faults: Arc<Faults>,
    pub token: String,
    pub bookmark_interval: Duration,
    pub address: String,
    pub shutdown: watch::Receiver<bool>,
}

/// The largest request body accepted (objects and patches are small).
const MAX_BODY: usize = 8 << 20;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn json_response(code: u16, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &status_json(&e.to_status()))
}

/// Query parameters, in order, repeats kept (`command=` repeats for exec).
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string; empty pairs (`?&a=b`, as kube-rs sends) are skipped.
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

/// How the client asked to see objects (the `Accept` header's `as=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Object,
    Table,
    Metadata,
}

fn view_of(req: &Request<Incoming>) -> View {
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable media type wins, as in the real server's negotiation.
    for part in accept.split(',') {
        if part.contains("as=Table") {
            return View::Table;
        }
        if part.contains("as=PartialObjectMetadata") {
            return View::Metadata;
        }
        if part.trim().starts_with("application/json") || part.trim().starts_with("*/*") {
            return View::Object;
        }
    }
    View::Object
}

/// Reads a request body. Bodies are JSON (or YAML); a protobuf or CBOR body is answered
/// `415 Unsupported Media Type`, on which client-go (kubectl) falls back to JSON.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if ct.starts_with("application/vnd.kubernetes.protobuf") || ct.starts_with("application/cbor") {
        return Err(ApiError::unsupported_body(&ct));
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("unable to read the request body: {e}")))
}

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
        ["version"] => return Ok(json_response(200, &version())),
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
        ["api", "v1"] => Ok(json_response(200, &resource_list())),
        ["apis"] => Ok(json_response(200, &APIGroupList { groups: vec![] })),
        ["openapi", "v3"] => Ok(json_response(
            200,
            &json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=sidekill-testcluster"}}}),
        )),
        ["openapi", "v3", "api", "v1"] => Ok(json_response(200, &openapi_v3_core())),
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
        ["namespaces", ns] if method == Method::GET => Ok(json_response(200, &namespace(ns))),
        ["namespaces", ns, plural] => collection(&ctx, req, method, Some(ns), plural).await,
        ["namespaces", ns, plural, name] => item(&ctx, req, method, ns, plural, name).await,
        ["namespaces", ns, "pods", name, "status"] => {
            let ns = ns.to_string();
            let name = name.to_string();
            match method {
                Method::GET => get_one(&ctx.pods, &req, &ns, &name),
                Method::PATCH | Method::PUT => {
                    pod_status_write(&ctx, req, method, &ns, &name).await
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        ["namespaces", ns, "pods", name, "ephemeralcontainers"] => match method {
            Method::GET => get_one(&ctx.pods, &req, ns, name),
            Method::PATCH | Method::PUT => {
                let pod = pod_ephemeral_write(&ctx, req, method, ns, name).await?;
                Ok(json_response(200, &pod))
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

/// A minimal OpenAPI v3 document for `api/v1`: no schemas, only each kind's PATCH operation
/// declaring the `fieldValidation` query parameter. That is what kubectl looks for to decide
/// that the server validates fields itself, so `kubectl create` and `kubectl apply` work without
/// `--validate=false` (the server accepts the parameter and does not check unknown fields).
fn openapi_v3_core() -> Value {
    let mut paths = serde_json::Map::new();
    for (plural, kind) in [
        ("pods", "Pod"),
        ("configmaps", "ConfigMap"),
        ("events", "Event"),
    ] {
        paths.insert(
            format!("/api/v1/namespaces/{{namespace}}/{plural}/{{name}}"),
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
                "x-kubernetes-action": "patch",
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (sidekill-testcluster)", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": {}}
    })
}

fn version() -> k8s_openapi::apimachinery::pkg::version::Info {
    k8s_openapi::apimachinery::pkg::version::Info {
        build_date: "2026-01-01T00:00:00Z".into(),
        compiler: "gc".into(),
        git_commit: "sidekill-testcluster".into(),
        git_tree_state: "clean".into(),
        git_version: "v1.37.0-sidekill-testcluster".into(),
        go_version: "go1.25.0".into(),
        major: "1".into(),
        minor: "37".into(),
        platform: "linux/amd64".into(),
        ..Default::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resource_list() -> APIResourceList {
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = verbs(&[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ]);
    let res =
        |name: &str, kind: &str, singular: &str, short: &[&str], verbs: Vec<String>| APIResource {
            name: name.into(),
            kind: kind.into(),
            singular_name: singular.into(),
            namespaced: true,
            short_names: (!short.is_empty()).then(|| short.iter().map(|s| s.to_string()).collect()),
            categories: (name == "pods").then(|| vec!["all".to_string()]),
            verbs,
            ..Default::default()
        };
    APIResourceList {
        group_version: "v1".into(),
        resources: vec![
            res(
                "configmaps",
                "ConfigMap",
                "configmap",
                <ConfigMap as Kind>::SHORT_NAMES,
                all.clone(),
            ),
            res(
                "events",
                "Event",
                "event",
                <Event as Kind>::SHORT_NAMES,
                all.clone(),
            ),
            res(
                "namespaces",
                "Namespace",
                "namespace",
                &["ns"],
                verbs(&["get"]),
            ),
            res("pods", "Pod", "pod", <Pod as Kind>::SHORT_NAMES, all),
            res(
                "pods/ephemeralcontainers",
                "Pod",
                "",
                &[],
                verbs(&["get", "patch", "update"]),
            ),
            res(
                "pods/exec",
                "PodExecOptions",
                "",
                &[],
                verbs(&["create", "get"]),
            ),
            res("pods/log", "Pod", "", &[], verbs(&["get"])),
            res(
                "pods/proxy",
                "PodProxyOptions",
                "",
                &[],
                verbs(&["create", "delete", "get", "patch", "update"]),
            ),
            res(
                "pods/status",
                "Pod",
                "",
                &[],
                verbs(&["get", "patch", "update"]),
            ),
        ],
    }
}

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
    let view = view_of(&req);
    let watching = q.flag("watch");
    match (plural, method) {
        ("pods", Method::GET) if watching => watch(ctx, &ctx.pods, ns, &q, view),
        ("pods", Method::GET) => list(&ctx.pods, ns, &q, view),
        ("configmaps", Method::GET) if watching => watch(ctx, &ctx.configmaps, ns, &q, view),
        ("configmaps", Method::GET) => list(&ctx.configmaps, ns, &q, view),
        ("events", Method::GET) if watching => watch(ctx, &ctx.events, ns, &q, view),
        ("events", Method::GET) => list(&ctx.events, ns, &q, view),
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
        ("pods", Method::GET) => get_one(&ctx.pods, &req, ns, name),
        ("configmaps", Method::GET) => get_one(&ctx.configmaps, &req, ns, name),
        ("events", Method::GET) => get_one(&ctx.events, &req, ns, name),
        ("pods", m @ (Method::PUT | Method::PATCH)) => {
            let (code, pod) = write(&ctx.pods, req, m, ns, name).await?;
            if code == 201 {
                // Server-side apply created it.
                ctx.kubelet.admit(&pod);
            } else {
                // The node sees the change as the kubelet's watch would (an image swap).
                ctx.kubelet.updated(&pod);
            }
            Ok(json_response(code, &pod))
        }
        ("configmaps", m @ (Method::PUT | Method::PATCH)) => {
            let (code, obj) = write(&ctx.configmaps, req, m, ns, name).await?;
            Ok(json_response(code, &obj))
        }
        ("events", m @ (Method::PUT | Method::PATCH)) => {
            let (code, obj) = write(&ctx.events, req, m, ns, name).await?;
            Ok(json_response(code, &obj))
        }
        ("pods", Method::DELETE) => {
            let grace = delete_grace(req).await?;
            Ok(json_response(200, &ctx.kubelet.delete(ns, name, grace)?))
        }
        ("configmaps", Method::DELETE) => delete_plain(&ctx.configmaps, ns, name),
        ("events", Method::DELETE) => delete_plain(&ctx.events, ns, name),
        ("pods" | "configmaps" | "events", _) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}

/// `gracePeriodSeconds` from the query or a `DeleteOptions` body.
async fn delete_grace(req: Request<Incoming>) -> Result<Option<i64>, ApiError> {
    let q = Query::parse(req.uri().query());
    if let Some(g) = q.get("gracePeriodSeconds") {
        return g
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")));
    }
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let opts: DeleteOptions = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
    Ok(opts.grace_period_seconds)
}

fn delete_plain<K: Kind>(
    store: &Store<K>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let gone = store.delete(ns, name)?;
    let status = Status {
        status: Some("Success".into()),
        details: Some(StatusDetails {
            name: Some(name.into()),
            kind: Some(K::URL_PATH_SEGMENT.into()),
            uid: gone.metadata().uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(json_response(200, &status_json(&status)))
}

fn decode<K: Kind>(body: &[u8]) -> Result<K, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?;
    if let Some(kind) = v.get("kind").and_then(Value::as_str) {
        if kind != K::KIND {
            return Err(ApiError::bad_request(format!(
                "the body of the request was of kind {kind}, which does not match {}",
                K::KIND
            )));
        }
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("error decoding {}: {e}", K::KIND)))
}

pub(crate) fn create<K: Kind>(
    store: &Store<K>,
    ns: &str,
    body: &[u8],
    q: &Query,
) -> Result<K, ApiError> {
    let mut obj: K = decode(body)?;
    match obj.metadata().namespace.as_deref() {
        Some(n) if !n.is_empty() && n != ns => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {}
    }
    {
        let m = obj.metadata_mut();
        m.namespace = Some(ns.to_owned());
        m.resource_version = None;
        m.uid = None;
        m.creation_timestamp = None;
        m.deletion_timestamp = None;
    }
    obj.prepare_create()?;
    if q.get("dryRun").is_some() {
        return Ok(obj);
    }
    store.create(obj)
}

/// An update (PUT) or patch of one object: the HTTP code (201 when apply created it) and the
/// object stored.
async fn write<K: Kind>(
    store: &Store<K>,
    req: Request<Incoming>,
    method: Method,
    ns: &str,
    name: &str,
) -> Result<(u16, K), ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = read_body(req).await?;
    let updated = if method == Method::PUT {
        let incoming: K = decode(&body)?;
        if incoming.metadata().name.as_deref() != Some(name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let want_rv = incoming.metadata().resource_version.clone();
        store.update(ns, name, |cur| {
            if want_rv.as_deref().is_some_and(|v| !v.is_empty())
                && want_rv != cur.metadata().resource_version
            {
                return Err(ApiError::conflict(K::URL_PATH_SEGMENT, name));
            }
            let mut new = incoming;
            K::validate_update(cur, &mut new)?;
            *cur = new;
            Ok(())
        })?
    } else {
        let ty = PatchType::from_content_type(&ct)?;
        match store.get(ns, name) {
            None if ty == PatchType::Apply => {
                let q = Query::default();
                let v = patch::apply(ty, &json!({"metadata": {"name": name}}), &body)?;
                let bytes = serde_json::to_vec(&v).map_err(ApiError::internal)?;
                let created = create(store, ns, &bytes, &q)?;
                return Ok((201, created));
            }
            None => return Err(ApiError::not_found(K::URL_PATH_SEGMENT, name)),
            Some(_) => {}
        }
        store.update(ns, name, |cur| {
            let v = serde_json::to_value(&*cur).map_err(ApiError::internal)?;
            let patched = patch::apply(ty, &v, &body)?;
            // A patch that sets metadata.resourceVersion is a precondition, as in the real
            // API server: it applies only to that version (optimistic concurrency).
            if let Some(want) = patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                if !want.is_empty() && Some(want) != cur.metadata().resource_version.as_deref() {
                    return Err(ApiError::conflict(K::URL_PATH_SEGMENT, name));
                }
            }
            // A patch that sets another metadata.uid is refused: the UID is immutable
            // (staging/src/k8s.io/apiserver/pkg/registry/rest/update.go BeforeUpdate fills in
            // only an empty UID, then validateCommonFields runs ValidateObjectMetaUpdate's
            // ValidateImmutableField on it: 422). So a patch naming the UID it was meant for
            // never lands on a pod recreated under the same name.
            if let Some(want) = patched.pointer("/metadata/uid").and_then(Value::as_str) {
                let have = cur.metadata().uid.as_deref().unwrap_or_default();
                if !want.is_empty() && want != have {
                    return Err(ApiError::invalid(
                        K::KIND,
                        name,
                        format!("metadata.uid: Invalid value: \"{want}\": field is immutable"),
                    ));
                }
            }
            let mut new: K = serde_json::from_value(patched).map_err(|e| {
                ApiError::invalid(
                    K::KIND,
                    name,
                    format!("patched object is not a valid {}: {e}", K::KIND),
                )
            })?;
            K::validate_update(cur, &mut new)?;
            *cur = new;
            Ok(())
        })?
    };
    Ok((200, updated))
}

/// `PUT` or `PATCH` of `pods/NAME/ephemeralcontainers`: the body (a Pod, or a patch of one,
/// strategic merge by default as kubectl sends it) counts only for
/// `spec.ephemeralContainers`; see `kinds::ephemeral_update` for the validation. A
/// `metadata.resourceVersion` in the result is a precondition (409 when stale). With `dryRun`
/// nothing is stored. The node starts each new ephemeral container.
async fn pod_ephemeral_write(
    ctx: &Ctx,
    req: Request<Incoming>,
    method: Method,
    ns: &str,
    name: &str,
) -> Result<Pod, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let q = Query::parse(req.uri().query());
    let body = read_body(req).await?;
    let next = |cur: &Pod| -> Result<Pod, ApiError> {
        let incoming: Pod = if method == Method::PUT {
            let p: Pod = decode(&body)?;
            if p.metadata.name.as_deref() != Some(name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            p
        } else {
            let v = serde_json::to_value(cur).map_err(ApiError::internal)?;
            let patched = patch::apply(PatchType::from_content_type(&ct)?, &v, &body)?;
            serde_json::from_value(patched).map_err(|e| {
                ApiError::invalid(
                    "Pod",
                    name,
                    format!("patched object is not a valid Pod: {e}"),
                )
            })?
        };
        if let Some(want) = incoming.metadata.resource_version.as_deref() {
            if !want.is_empty() && Some(want) != cur.metadata.resource_version.as_deref() {
                return Err(ApiError::conflict("pods", name));
            }
        }
        crate::kinds::ephemeral_update(cur, &incoming)
    };
    if q.get("dryRun").is_some() {
        let cur = ctx
            .pods
            .get(ns, name)
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        return next(&cur);
    }
    let updated = ctx.pods.update(ns, name, |cur| {
        *cur = next(cur)?;
        Ok(())
    })?;
    ctx.kubelet.updated(&updated);
    Ok(updated)
}

async fn pod_status_write(
    ctx: &Ctx,
    req: Request<Incoming>,
    method: Method,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = read_body(req).await?;
    let updated = ctx.pods.update(ns, name, |cur| {
        let new: Pod = if method == Method::PUT {
            decode(&body)?
        } else {
            let v = serde_json::to_value(&*cur).map_err(ApiError::internal)?;
            let patched = patch::apply(PatchType::from_content_type(&ct)?, &v, &body)?;
            serde_json::from_value(patched).map_err(|e| ApiError::invalid("Pod", name, e))?
        };
        cur.status = new.status;
        Ok(())
    })?;
    Ok(json_response(200, &updated))
}

fn get_one<K: Kind>(
    store: &Store<K>,
    req: &Request<Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let obj = store
        .get(ns, name)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, name))?;
    let q = Query::parse(req.uri().query());
    let now = jiff::Timestamp::now();
    Ok(match view_of(req) {
        View::Object => json_response(200, &obj),
        View::Metadata => json_response(200, &partial_metadata(&obj)),
        View::Table => json_response(200, &table::<K>(&[obj], obj_rv_str(store), &q, now)),
    })
}

fn obj_rv_str<K: Kind>(store: &Store<K>) -> String {
    store.current_rv().to_string()
}

fn partial_metadata<K: Kind>(obj: &K) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.metadata()})
}

fn table<K: Kind>(objs: &[K], rv: String, q: &Query, now: jiff::Timestamp) -> Value {
    let include = q.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => serde_json::to_value(o).unwrap_or(Value::Null),
                _ => partial_metadata(o),
            };
            json!({"cells": o.table_cells(now), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": K::table_columns(),
        "rows": rows,
    })
}

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn parse<K: Kind>(q: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), K::FIELDS)?,
        })
    }

    fn matches<K: Kind>(&self, o: &K) -> bool {
        if !self.labels.matches(o.metadata().labels.as_ref()) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        // The name and namespace (what a watch of one object selects on) come from the
        // metadata; other fields from the object as JSON, made once and only if needed.
        // Serializing every object to compare a name made each list, and each change a
        // field-selected watch sees, cost a whole-object serialization per object.
        let m = o.metadata();
        let mut json: Option<Option<Value>> = None;
        self.fields.matches_by(|path| match path {
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            _ => json
                .get_or_insert_with(|| serde_json::to_value(o).ok())
                .as_ref()
                .map(|v| crate::selector::json_field(v, path))
                .unwrap_or_default(),
        })
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn list<K: Kind>(
    store: &Store<K>,
    ns: Option<&str>,
    q: &Query,
    view: View,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::parse::<K>(q)?;
    let (items, current) = store.list(ns, |o| filter.matches(o));
    // resourceVersion semantics for lists: unset/"0" = current state; N = not older than N
    // (current state, or 504 when N is in the future); Exact = only the current version.
    let asked = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    if let Some(v) = asked {
        let n: u64 = v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
        if n > current {
            return Err(ApiError::too_large_resource_version(n, current));
        }
        if q.get("resourceVersionMatch") == Some("Exact") && n != current {
            return Err(ApiError::expired(format!(
                "too old resource version: {n} ({current})"
            )));
        }
    }
    let mut rv = current;
    let mut after: Option<(String, String)> = None;
    if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
        let decoded =
            unhex(token).ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let (trv, key) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let trv: u64 = trv
            .parse()
            .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
        if trv < store.floor() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
            ));
        }
        rv = trv;
        let (a, b) = key.split_once('/').unwrap_or(("", key));
        after = Some((a.to_owned(), b.to_owned()));
    }
    let mut selected: Vec<K> = items
        .into_iter()
        .filter(|o| {
            after.as_ref().is_none_or(|(a, b)| {
                let m = o.metadata();
                (
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                ) > (a.as_str(), b.as_str())
            })
        })
        .collect();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if selected.len() > limit {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        if let Some(last) = selected.last() {
            let m = last.metadata();
            let key = format!(
                "{rv}:{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            );
            meta["continue"] = json!(hex(&key));
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let now = jiff::Timestamp::now();
    Ok(match view {
        View::Table => {
            let mut t = table::<K>(&selected, rv.to_string(), q, now);
            t["metadata"] = meta;
            json_response(200, &t)
        }
        View::Metadata => json_response(
            200,
            &json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": selected.iter().map(partial_metadata).collect::<Vec<_>>(),
            }),
        ),
        View::Object => json_response(
            200,
            &json!({
                "kind": format!("{}List", K::KIND),
                "apiVersion": K::API_VERSION,
                "metadata": meta,
                "items": selected,
            }),
        ),
    })
}

fn event_json<K: Kind>(ty: &str, obj: &K, view: View, q: &Query) -> Value {
    let object = match view {
        View::Object => serde_json::to_value(obj).unwrap_or(Value::Null),
        View::Metadata => partial_metadata(obj),
        View::Table => table::<K>(
            std::slice::from_ref(obj),
            obj.metadata().resource_version.clone().unwrap_or_default(),
            q,
            jiff::Timestamp::now(),
        ),
    };
    json!({"type": ty, "object": object})
}

fn bookmark_json<K: Kind>(rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": K::KIND, "apiVersion": K::API_VERSION, "metadata": meta}})
}

/// What a filtered watch shows of one change.
fn filtered<K: Kind>(c: &Change<K>, f: &Filter) -> Option<&'static str> {
    let now_in = f.matches(&c.object);
    let was_in = c.previous.as_ref().is_some_and(|p| f.matches(p));
    match c.kind {
        ChangeType::Added => now_in.then_some("ADDED"),
        ChangeType::Deleted => (was_in || now_in).then_some("DELETED"),
        ChangeType::Modified => match (was_in, now_in) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn watch<K: Kind>(
    ctx: &Arc<Ctx>,
    store: &Arc<Store<K>>,
    ns: Option<&str>,
    q: &Query,
    view: View,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::parse::<K>(q)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let initial = q.flag("sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from = match q.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        // A streaming list starts with the current state whatever version it names.
        Some(_) if initial => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        ),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let start = store.watch(ns, from);
    let store = store.clone();
    let q2 = Query(q.0.clone());
    let mut shutdown = ctx.shutdown.clone();
    let interval = ctx.bookmark_interval;
    let faults = ctx.faults.clone();
    let generation = faults.watch_generation();
    tokio::spawn(async move {
        let mut start = match start {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(line(
                        &json!({"type": "ERROR", "object": status_json(&e.to_status())}),
                    ))
                    .await;
                return;
            }
        };
        let mut last_rv = from
            .unwrap_or(0)
            .max(if from.is_none() { start.rv } else { 0 });
        for c in &start.replay {
            if let Some(ty) = filtered(c, &filter) {
                if tx
                    .send(line(&event_json(ty, &c.object, view, &q2)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            last_rv = last_rv.max(c.rv);
        }
        if initial && bookmarks {
            let _ = tx
                .send(line(&bookmark_json::<K>(start.rv.max(last_rv), true)))
                .await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            if faults.watch_generation() != generation {
                return;
            }
            tokio::select! {
                _ = faults.watches_closed() => return,
                r = start.rx.recv() => match r {
                    Ok(c) => {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(ty) = filtered(&c, &filter) {
                            if tx.send(line(&event_json(ty, &c.object, view, &q2))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Too slow a watcher is closed, as the watch cache does; it re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    // Everything broadcast up to the current version is in our queue by now;
                    // deliver it, then the bookmark may name the current version.
                    let (pending, rv) = store.drain(&mut start.rx);
                    for c in pending {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(ty) = filtered(&c, &filter) {
                            if tx.send(line(&event_json(ty, &c.object, view, &q2))).await.is_err() {
                                return;
                            }
                        }
                    }
                    last_rv = last_rv.max(rv);
                    if tx.send(line(&bookmark_json::<K>(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_skips_the_empty_pair_kube_rs_sends() {
        let q = Query::parse(Some(
            "&command=sh&command=-c&command=echo%20hi&container=c&stdout=true",
        ));
        assert_eq!(q.all("command"), vec!["sh", "-c", "echo hi"]);
        assert_eq!(q.get("container"), Some("c"));
        assert!(q.flag("stdout"));
        assert!(!q.flag("stdin"));
    }

    #[test]
    fn continue_tokens_round_trip() {
        assert_eq!(unhex(&hex("12:default/p")).as_deref(), Some("12:default/p"));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn discovery_lists_the_subresources() {
        let l = resource_list();
        let names: Vec<&str> = l.resources.iter().map(|r| r.name.as_str()).collect();
        for want in [
            "pods",
            "pods/exec",
            "pods/proxy",
            "pods/ephemeralcontainers",
            "events",
            "configmaps",
        ] {
            assert!(names.contains(&want), "{want}");
        }
    }
}
