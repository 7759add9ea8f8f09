//! The Kubernetes plumbing of the executor: reads and retries, the watch of one pod, and the
//! API errors it tells apart (gone, conflict, another pod under the name, forbidden).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::broadcast;

use super::backoff::Doubling;
use super::cache::{Change, PodCache};
use super::executor::Executor;
use super::run::Stop;
use super::status::{ended, End};
use super::{Error, Result};

pub(super) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A write the API server found invalid (422): for a JSON Patch, a `test` that failed or a
/// path that is not there.
pub(super) fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}

/// The write named the UID of the pod it was meant for, and the pod under that name now is
/// another (recreated): the API server refuses a `metadata.uid` change with 422 (and a failed
/// JSON patch `test` of it with 422 too). For the plan, its pod is gone.
pub(super) fn is_other_pod(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("uid"))
}

/// The API server's message when it refused the call with 403, else `None`. An exec refused
/// with a body that is not a `Status` (a proxy on the way) comes back from kube as a failed
/// protocol switch with the HTTP status only, so both shapes count.
pub(super) fn forbidden_message(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 403 => Some(s.message.clone()),
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) if *code == http::StatusCode::FORBIDDEN => Some(code.to_string()),
        _ => None,
    }
}

/// [`Error::Forbidden`] for `verb` on `resource` in `namespace`.
pub(super) fn forbidden_error(
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
    what: String,
    message: String,
) -> Error {
    Error::Forbidden {
        verb,
        resource,
        namespace: namespace.to_owned(),
        what,
        message,
    }
}

/// [`Error::Forbidden`] when the API server refused the call with 403, else `None`.
pub(super) fn forbidden(
    e: &kube::Error,
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
    what: impl FnOnce() -> String,
) -> Option<Error> {
    forbidden_message(e).map(|m| forbidden_error(verb, resource, namespace, what(), m))
}

/// The watcher's error as [`Error::Forbidden`] when it is a 403 (of the list or of the watch).
pub(super) fn watch_forbidden(e: &watcher::Error, namespace: &str, name: &str) -> Option<Error> {
    let what = || format!("watching pod {namespace}/{name}");
    match e {
        watcher::Error::InitialListFailed(e) => forbidden(e, "list", "pods", namespace, what),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            forbidden(e, "watch", "pods", namespace, what)
        }
        watcher::Error::WatchError(s) if s.code == 403 => forbidden(
            &kube::Error::Api(s.clone()),
            "watch",
            "pods",
            namespace,
            what,
        ),
        _ => None,
    }
}

impl Executor {
    pub(super) fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Retries `f` on transient errors with exponential backoff.
    pub(super) async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if is_transient(&e) && attempt < self.options.retries => {
                    let delay = super::backoff::delay(
                        self.options.backoff,
                        attempt,
                        Duration::from_secs(5),
                        super::backoff::retry_after(&e),
                    );
                    tracing::debug!(%what, attempt, error = %e, ?delay, "transient error, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// This executor, reading and awaiting the pods in work from `cache` (fed by the
    /// controller's watchers) instead of a GET and a watch of its own: what stopping a pod
    /// costs the API server is then its writes and its exec.
    #[must_use]
    pub fn reading_through(mut self, cache: Arc<PodCache>) -> Executor {
        self.cache = Some(cache);
        self
    }

    /// The pod now (as the cache last saw it, for a pod in work), or `None` when it is gone.
    pub(super) async fn get(&self, ns: &str, name: &str) -> Result<Option<Pod>> {
        if let Some(pod) = self.cache.as_ref().and_then(|c| c.get(ns, name)) {
            return Ok(Some(Pod::clone(&pod)));
        }
        self.get_fresh(ns, name).await
    }

    /// The pod now, read from the API server.
    pub(super) async fn get_fresh(&self, ns: &str, name: &str) -> Result<Option<Pod>> {
        let api = self.pods(ns);
        match self.retry("get pod", || api.get(name)).await {
            Ok(p) => {
                if let Some(cache) = &self.cache {
                    cache.seen(&p);
                }
                Ok(Some(p))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => {
                let what = || format!("getting pod {ns}/{name}");
                Err(
                    forbidden(&source, "get", "pods", ns, what).unwrap_or(Error::Kube {
                        what: what(),
                        source,
                    }),
                )
            }
        }
    }

    /// Watches the pod until `instance` of `container` ends (any instance when `None`), or
    /// `timeout` passes (`None`). A pod that goes away is [`Stop::Gone`].
    pub(super) async fn watch_terminated(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        instance: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<End>, Stop> {
        let (pod, matched) = self
            .watch_until(ns, name, timeout, |p| {
                ended(p, container, instance).is_some()
            })
            .await?;
        Ok(pod
            .filter(|_| matched)
            .and_then(|p| ended(&p, container, instance)))
    }

    /// [`Executor::watch_until`] on the cache's changes: no request but a read when the
    /// changes were missed.
    async fn await_cached(
        &self,
        cache: &PodCache,
        ns: &str,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Pod) -> bool,
    ) -> Result<(Option<Pod>, bool), Stop> {
        // Subscribed before the read: no change falls between the two.
        let mut changes = cache.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = self.get(ns, name).await?.ok_or(Stop::Gone)?;
        loop {
            if done(&last) {
                return Ok((Some(last), true));
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => return Ok((Some(last), false)),
                Ok(Ok(Change::Applied(pod))) => {
                    if pod.metadata.namespace.as_deref() == Some(ns)
                        && pod.metadata.name.as_deref() == Some(name)
                    {
                        last = Pod::clone(&pod);
                    }
                }
                Ok(Ok(Change::Deleted((n, m)))) if n == ns && m == name => {
                    return Err(Stop::Gone);
                }
                Ok(Ok(Change::Deleted(_))) => {}
                // Missed changes: read the pod itself.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    last = self.get_fresh(ns, name).await?.ok_or(Stop::Gone)?;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Ok((Some(last), false)),
            }
        }
    }

    /// Watches the pod until `done(pod)` holds (the pod, `true`) or `timeout` passes (the last
    /// version seen, if any, and `false`). A pod that goes away is [`Stop::Gone`].
    pub(super) async fn watch_until(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Pod) -> bool,
    ) -> Result<(Option<Pod>, bool), Stop> {
        if let Some(cache) = self.cache.as_ref().filter(|c| c.in_work(ns, name)) {
            return self.await_cached(cache, ns, name, timeout, done).await;
        }
        // kube's watch of one object: `None` when it is gone (deleted, or absent from a
        // re-list); errors come back after a doubling pause, and the stream recovers.
        let stream = watcher::watch_object(self.pods(ns), name)
            .backoff(Doubling::new(self.options.backoff, Duration::from_secs(5)));
        let mut stream = std::pin::pin!(stream);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            match next {
                Err(_) | Ok(None) => return Ok((last, false)),
                Ok(Some(Ok(None))) => return Err(Stop::Gone),
                Ok(Some(Ok(Some(p)))) => {
                    if done(&p) {
                        return Ok((Some(p), true));
                    }
                    last = Some(p);
                }
                Ok(Some(Err(e))) => {
                    // A refused list or watch stays refused: waiting out the deadline (an
                    // hour for an `await`) would only hide the missing permission.
                    if let Some(err) = watch_forbidden(&e, ns, name) {
                        return Err(Stop::Err(err));
                    }
                    tracing::debug!(error = %e, "watch error");
                }
            }
        }
    }
}
