//! Fault injection: make the API fail, drop exec streams, delete a pod in the middle of a plan.
//!
//! Faults are set through [`Faults`] (the library) or `POST /testcluster/v1/faults` (the admin
//! endpoint, same token as the API). They apply to resource requests (`/api/v1/...` other than
//! discovery), so clients keep their discovery and fail where a real outage would hit them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

/// A fault to inject, as the admin endpoint takes it (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRequest {
    /// Answer the next N API requests with `500 InternalError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_requests: Option<u32>,
    /// Answer every API request with `500 InternalError` for this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_for_seconds: Option<f64>,
    /// Drop the next exec WebSocket after this many output frames (0: right after the
    /// connection opens), without a status and without a close frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_exec_after_frames: Option<u32>,
    /// Delete this pod (`namespace/name`, with its grace period) when the next exec into it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_pod_on_exec: Option<String>,
    /// End every open watch now, as an API server restart does; clients must re-watch
    /// (and re-list when their version is too old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_watches: Option<bool>,
    /// Refuse these permissions from now on, each `VERB RESOURCE[/SUBRESOURCE]` (`patch
    /// pods/ephemeralcontainers`): the request gets RBAC's 403, and a SelfSubjectAccessReview
    /// for it answers not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    fail_requests: u32,
    fail_until: Option<Instant>,
    drop_exec_after: Option<u32>,
    delete_on_exec: Vec<(String, String)>,
    denied: Vec<(String, String)>,
    injected: u64,
}

/// The faults of one cluster. Every method is cheap and thread-safe.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    /// Bumped by [`Faults::close_watches`]; a watch that started under another value ends.
    watch_generation: AtomicU64,
    watches_closed: Notify,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next `n` API requests with `500 InternalError`.
    pub fn fail_requests(&self, n: u32) {
        self.lock().fail_requests = n;
    }

    /// Answers every API request with `500 InternalError` for `d`.
    pub fn fail_for(&self, d: Duration) {
        self.lock().fail_until = Some(Instant::now() + d);
    }

    /// Drops the next exec WebSocket after `frames` output frames.
    pub fn drop_next_exec_after(&self, frames: u32) {
        self.lock().drop_exec_after = Some(frames);
    }

    /// Deletes `namespace/name` when the next exec into it starts.
    pub fn delete_pod_on_exec(&self, namespace: &str, name: &str) {
        self.lock()
            .delete_on_exec
            .push((namespace.to_owned(), name.to_owned()));
    }

    /// Ends every open watch now.
    pub fn close_watches(&self) {
        self.watch_generation.fetch_add(1, Ordering::SeqCst);
        self.watches_closed.notify_waiters();
    }

    /// The current watch generation: a watch remembers it and ends when it changes.
    pub(crate) fn watch_generation(&self) -> u64 {
        self.watch_generation.load(Ordering::SeqCst)
    }

    /// Resolves at the next [`Faults::close_watches`] (check the generation as well: a
    /// call between two polls is not remembered).
    pub(crate) fn watches_closed(&self) -> tokio::sync::futures::Notified<'_> {
        self.watches_closed.notified()
    }

    /// Refuses `verb` on `resource` (`pods`, `pods/ephemeralcontainers`) from now on, as an
    /// RBAC role without that rule would: the test server otherwise allows everything to its
    /// one token (an API server without RBAC).
    pub fn deny(&self, verb: &str, resource: &str) {
        self.lock()
            .denied
            .push((verb.to_owned(), resource.to_owned()));
    }

    /// Whether `verb` on `resource` is refused.
    pub(crate) fn denied(&self, verb: &str, resource: &str) -> bool {
        self.lock()
            .denied
            .iter()
            .any(|(v, r)| v == verb && r == resource)
    }

    /// Clears every pending fault.
    pub fn clear(&self) {
        let injected = self.lock().injected;
        *self.lock() = State {
            injected,
            ..State::default()
        };
    }

    /// How many requests were failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Applies a request from the admin endpoint.
    pub fn apply(&self, r: &FaultRequest) {
        if let Some(n) = r.fail_requests {
            self.fail_requests(n);
        }
        if let Some(s) = r.fail_for_seconds {
            self.fail_for(Duration::from_secs_f64(s.max(0.0)));
        }
        if let Some(n) = r.drop_exec_after_frames {
            self.drop_next_exec_after(n);
        }
        if let Some(p) = &r.delete_pod_on_exec {
            let (ns, name) = p.split_once('/').unwrap_or(("default", p.as_str()));
            self.delete_pod_on_exec(ns, name);
        }
        for rule in r.deny.iter().flatten() {
            if let Some((verb, resource)) = rule.split_once(' ') {
                self.deny(verb, resource.trim());
            }
        }
        if r.close_watches == Some(true) {
            self.close_watches();
        }
    }

    /// Whether this request is to fail (and counts it).
    pub(crate) fn should_fail(&self) -> bool {
        let mut s = self.lock();
        let fail = if s.fail_requests > 0 {
            s.fail_requests -= 1;
            true
        } else {
            s.fail_until.is_some_and(|t| Instant::now() < t)
        };
        if fail {
            s.injected += 1;
        }
        fail
    }

    /// Takes the pending exec drop, if any.
    pub(crate) fn take_exec_drop(&self) -> Option<u32> {
        self.lock().drop_exec_after.take()
    }

    /// Takes the pending delete-on-exec for this pod, if any.
    pub(crate) fn take_delete_on_exec(&self, namespace: &str, name: &str) -> bool {
        let mut s = self.lock();
        let before = s.delete_on_exec.len();
        s.delete_on_exec
            .retain(|(ns, n)| !(ns == namespace && n == name));
        s.delete_on_exec.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_failures_run_out() {
        let f = Faults::default();
        f.apply(&FaultRequest {
            fail_requests: Some(2),
            fail_for_seconds: None,
            drop_exec_after_frames: None,
            delete_pod_on_exec: Some("ns/p".into()),
            close_watches: None,
            deny: Some(vec!["patch pods/ephemeralcontainers".into()]),
        });
        assert!(f.denied("patch", "pods/ephemeralcontainers"));
        assert!(!f.denied("patch", "pods"));
        assert!(f.should_fail());
        assert!(f.should_fail());
        assert!(!f.should_fail());
        assert_eq!(f.injected(), 2);
        assert!(f.take_delete_on_exec("ns", "p"));
        assert!(!f.take_delete_on_exec("ns", "p"));
    }

    #[test]
    fn admin_json_is_camel_case() {
        let r: FaultRequest =
            serde_json::from_str(r#"{"failForSeconds": 1.5, "dropExecAfterFrames": 0}"#).unwrap();
        assert_eq!(r.drop_exec_after_frames, Some(0));
        assert!(serde_json::from_str::<FaultRequest>(r#"{"nope": 1}"#).is_err());
    }
}
