//! Writes: create, delete, and the one path of every update (`PUT`) and patch (`PATCH`), of an
//! object and of its subresources (`pods/NAME/status`, `pods/NAME/ephemeralcontainers`).
//!
//! An update or patch is [`update`]: the body is decoded (`PUT`) or applied to the stored object
//! (`PATCH`: merge, JSON, strategic or apply); a `metadata.resourceVersion` in the result is a
//! precondition, `409 Conflict` when it is not the stored one; then the [`Part`] written decides
//! what of the result is kept and validates it. The object and its status are checked alike, as
//! in the real API server, where both are the generic registry's `Store.Update`
//! (k8s.io/apiserver pkg/registry/generic/registry/store.go: `newResourceVersion !=
//! existingResourceVersion` is `NewConflict`; `pods/status` is the same Store with the status
//! strategy, k8s.io/kubernetes pkg/registry/core/pod/storage/storage.go `StatusREST.Update`).
//! An empty or missing `resourceVersion` is an unconditional update (pods, configmaps and events
//! allow those). With `dryRun` nothing is stored and the would-be object is answered.
//!
//! Failure modes: an unknown object is 404 (but a server-side apply creates it, 201); a body
//! that is not the kind, or whose name is not the URL's, is 400; a patch that makes an invalid
//! object, or a change the part does not allow, is 422.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status, StatusDetails};
use serde_json::{json, Value};

use crate::ctx::{json_response, read_body, Body, Query};
use crate::kinds::Kind;
use crate::patch::{self, PatchType};
use crate::status::{status_json, ApiError};
use crate::store::Store;

/// `gracePeriodSeconds` from the query or a `DeleteOptions` body.
pub(super) async fn delete_grace(req: Request<Incoming>) -> Result<Option<i64>, ApiError> {
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

pub(super) fn delete_plain<K: Kind>(
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

/// What part of an object an update or patch writes.
pub(super) struct Part<K> {
    /// The object to store, from the stored one and what the request made of it (decoded or
    /// patched; its resourceVersion already checked).
    keep: fn(&K, K) -> Result<K, ApiError>,
    /// Whether a server-side apply of a missing object creates it (only the object itself; a
    /// subresource of a missing object is 404).
    create_on_apply: bool,
}

impl<K: Kind> Part<K> {
    /// The object itself: everything the kind's update validation lets a client change.
    pub(super) fn object() -> Part<K> {
        Part {
            keep: |cur, mut new| {
                K::validate_update(cur, &mut new)?;
                Ok(new)
            },
            create_on_apply: true,
        }
    }
}

impl Part<Pod> {
    /// `pods/NAME/status`: only `status` changes, the rest stays as stored (as the status
    /// strategy's `PrepareForUpdate` keeps the spec).
    pub(super) fn pod_status() -> Part<Pod> {
        Part {
            keep: |cur, new| {
                let mut kept = cur.clone();
                kept.status = new.status;
                Ok(kept)
            },
            create_on_apply: false,
        }
    }

    /// `pods/NAME/ephemeralcontainers`: only `spec.ephemeralContainers` counts, validated as
    /// `kinds::ephemeral_update` says.
    pub(super) fn pod_ephemeral_containers() -> Part<Pod> {
        Part {
            keep: |cur, new| crate::kinds::ephemeral_update(cur, &new),
            create_on_apply: false,
        }
    }
}

/// What an update or patch did.
pub(super) struct Written<K> {
    /// 200, or 201 when a server-side apply created the object.
    pub code: u16,
    /// The object as stored (or, with `dryRun`, as it would be).
    pub object: K,
    /// False with `dryRun`: nothing changed.
    pub stored: bool,
}

/// The request made into an object of kind `K`: the body decoded (`PUT`, its name checked
/// against the URL's) or applied to `cur` (`PATCH`).
fn incoming<K: Kind>(
    cur: &K,
    patch_type: Option<PatchType>,
    body: &[u8],
    name: &str,
) -> Result<K, ApiError> {
    let Some(ty) = patch_type else {
        let new: K = decode(body)?;
        if new.metadata().name.as_deref() != Some(name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        return Ok(new);
    };
    let v = serde_json::to_value(cur).map_err(ApiError::internal)?;
    let patched = patch::apply(ty, &v, body)?;
    serde_json::from_value(patched).map_err(|e| {
        ApiError::invalid(
            K::KIND,
            name,
            format!("patched object is not a valid {}: {e}", K::KIND),
        )
    })
}

/// An update (`PUT`) or patch (`PATCH`) of `part` of one object.
pub(super) async fn update<K: Kind>(
    store: &Store<K>,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    part: Part<K>,
) -> Result<Written<K>, ApiError> {
    let patch_type = match *req.method() {
        Method::PUT => None,
        Method::PATCH => {
            let ct = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            Some(PatchType::from_content_type(ct)?)
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let q = Query::parse(req.uri().query());
    let body: Bytes = read_body(req).await?;
    let Some(current) = store.get(ns, name) else {
        if part.create_on_apply && patch_type == Some(PatchType::Apply) {
            let v = patch::apply(
                PatchType::Apply,
                &json!({"metadata": {"name": name}}),
                &body,
            )?;
            let bytes = serde_json::to_vec(&v).map_err(ApiError::internal)?;
            let object = create(store, ns, &bytes, &q)?;
            let stored = q.get("dryRun").is_none();
            return Ok(Written {
                code: 201,
                object,
                stored,
            });
        }
        return Err(ApiError::not_found(K::URL_PATH_SEGMENT, name));
    };
    let next = |cur: &K| -> Result<K, ApiError> {
        let new = incoming(cur, patch_type, &body, name)?;
        let want = new.metadata().resource_version.as_deref();
        if want.is_some_and(|v| !v.is_empty()) && want != cur.metadata().resource_version.as_deref()
        {
            return Err(ApiError::conflict(K::URL_PATH_SEGMENT, name));
        }
        // The UID is immutable: kube-apiserver fills in only an empty one
        // (staging/src/k8s.io/apiserver/pkg/registry/rest/update.go `BeforeUpdate`), then
        // `ValidateObjectMetaUpdate` refuses another (422). So a write naming the UID it was
        // meant for never lands on an object recreated under the same name.
        let uid = new.metadata().uid.as_deref().unwrap_or_default();
        if !uid.is_empty() && Some(uid) != cur.metadata().uid.as_deref() {
            return Err(ApiError::invalid(
                K::KIND,
                name,
                format!("metadata.uid: Invalid value: \"{uid}\": field is immutable"),
            ));
        }
        (part.keep)(cur, new)
    };
    if q.get("dryRun").is_some() {
        let object = next(&current)?;
        return Ok(Written {
            code: 200,
            object,
            stored: false,
        });
    }
    let object = store.update(ns, name, |cur| {
        *cur = next(cur)?;
        Ok(())
    })?;
    Ok(Written {
        code: 200,
        object,
        stored: true,
    })
}
