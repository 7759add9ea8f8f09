//! What every request handler shares: the server's state ([`Ctx`]), the response body type and
//! its builders, the query string, and the request body reader. `api`, `exec` and `proxy` all
//! take it from here, so none of them imports another.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use tokio::sync::watch;

use crate::faults::Faults;
use crate::kubelet::Kubelet;
use crate::status::{status_json, ApiError};
use crate::store::Store;

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
#[derive(Debug, Default, Clone)]
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

/// Reads a request body. Bodies are JSON (or YAML); a protobuf or CBOR body is answered
/// `415 Unsupported Media Type`, on which client-go (kubectl) falls back to JSON.
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
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
}
