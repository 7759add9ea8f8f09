//! The Kubernetes API requests a client sends, counted by verb and resource: what a controller
//! costs the API server (issue #16's "requests per stopped pod"), served on `/metrics` as
//! `sidekill_api_requests_total{request="get pods"}`.
//!
//! The count is a [`tower`] layer on the client's service stack, so every request is counted
//! once, whichever code sends it (watchers, the executor, claims, Events), retries included.
//! The verb is the Kubernetes one (the API server's RequestInfo: a GET of a collection is
//! `list`, with `watch=true` it is `watch`; an exec's WebSocket upgrade is a `get` of
//! `pods/exec`), so the figures read as RBAC and audit logs do.
//!
//! ```
//! let counts = sidekill::requests::Counts::default();
//! let request = http::Request::get("/api/v1/namespaces/ns/pods?watch=true").body(()).unwrap();
//! counts.count(request.method(), request.uri());
//! assert_eq!(counts.snapshot(), vec![("watch pods".to_owned(), 1)]);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request, Uri};

/// Requests counted so far, by `"<verb> <resource>"`.
#[derive(Debug, Default)]
pub struct Counts {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    /// Counts one request.
    pub fn count(&self, method: &Method, uri: &Uri) {
        let key = describe(method, uri);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(key).or_default() += 1;
    }

    /// Every count, sorted by request.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The layer that counts a client's requests here.
    pub fn layer(self: &Arc<Self>) -> CountLayer {
        CountLayer {
            counts: Arc::clone(self),
        }
    }
}

/// `"<verb> <resource>[/<subresource>]"` for a request to the Kubernetes API; paths outside
/// it (`/version`, discovery) are `"<verb> <path>"`.
fn describe(method: &Method, uri: &Uri) -> String {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => &[][..],
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        [] => (uri.path().to_owned(), true),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => method.as_str(),
    };
    format!("{} {resource}", verb.to_ascii_lowercase())
}

/// The [`tower::Layer`] of [`Counts::layer`].
#[derive(Debug, Clone)]
pub struct CountLayer {
    counts: Arc<Counts>,
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> CountService<S> {
        CountService {
            inner,
            counts: Arc::clone(&self.counts),
        }
    }
}

/// The service of [`CountLayer`].
#[derive(Debug, Clone)]
pub struct CountService<S> {
    inner: S,
    counts: Arc<Counts>,
}

impl<S, B> tower::Service<Request<B>> for CountService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.counts.count(request.method(), request.uri());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, uri: &str) -> String {
        describe(&method, &uri.parse().expect("uri"))
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        for (method, uri, named) in [
            (Method::GET, "/api/v1/pods?labelSelector=a", "list pods"),
            (
                Method::GET,
                "/api/v1/namespaces/n/pods?watch=true&resourceVersion=5",
                "watch pods",
            ),
            (Method::GET, "/api/v1/namespaces/n/pods/p", "get pods"),
            (Method::PATCH, "/api/v1/namespaces/n/pods/p", "patch pods"),
            (
                Method::GET,
                "/api/v1/namespaces/n/pods/p/exec?command=kill",
                "get pods/exec",
            ),
            (Method::POST, "/api/v1/namespaces/n/events", "create events"),
            (
                Method::GET,
                "/apis/batch/v1/namespaces/n/jobs/j",
                "get jobs",
            ),
            (
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "create selfsubjectaccessreviews",
            ),
            (Method::GET, "/api/v1/namespaces/n", "get namespaces"),
            (Method::GET, "/version", "get /version"),
        ] {
            assert_eq!(of(method, uri), named, "{uri}");
        }
    }
}
