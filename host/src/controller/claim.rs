//! Per-pod claims, so that several controllers (replicas, or an old and a new one during a
//! rollout) never carry out the same pod's plan at once.
//!
//! A claim is the annotation `sidekill.dev/claim` = `{"holder": ID, "until": UNIX_MS}`,
//! written with a merge patch that carries the pod's `metadata.resourceVersion`: the API
//! server applies it only to that version of the pod (409 Conflict otherwise), so of two
//! controllers racing for one pod exactly one wins. The holder renews the claim while
//! its plan runs and removes it when done. A controller that dies leaves a claim that
//! expires; another controller then takes the pod over and, thanks to the
//! `sidekill.dev/done-*` record, carries on from the first step not yet done.
//!
//! Clocks: no controller trusts another's clock. A controller that finds another's claim
//! judges its expiry on its own monotonic clock, as client-go's leader election does
//! (tools/leaderelection/leaderelection.go isLeaseValid: `observedTime + LeaseDuration`
//! after now, `observedTime` stamped when this client saw the record change): the claim is
//! live until its `ttl` (milliseconds) has passed since this controller first saw that
//! exact claim value, and every renewal is a new value. `until` (the holder's wall clock) is
//! kept for people reading the pod, and for claims written without a `ttl`. The holder, on
//! its side, stops acting when it cannot renew in time (see the controller's fencing).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

/// The annotation holding a pod's claim.
pub const CLAIM_ANNOTATION: &str = "sidekill.dev/claim";

/// A claim as read from a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who holds it.
    pub holder: String,
    /// When it expires, in milliseconds since the Unix epoch, on the holder's clock.
    pub until_ms: u64,
    /// Its lifetime from when it was written, in milliseconds (absent from older claims).
    pub ttl_ms: Option<u64>,
    /// The annotation's text: a renewal changes it.
    pub text: String,
}

use crate::exec::now_ms;

impl Claim {
    /// The pod's claim, if it has a readable one. An unreadable value counts as no claim:
    /// it cannot name a live holder.
    pub fn of(pod: &Pod) -> Option<Claim> {
        let text = pod.metadata.annotations.as_ref()?.get(CLAIM_ANNOTATION)?;
        let v: Value = serde_json::from_str(text).ok()?;
        Some(Claim {
            holder: v.get("holder")?.as_str()?.to_owned(),
            until_ms: v.get("until")?.as_u64()?,
            ttl_ms: v.get("ttl").and_then(Value::as_u64),
            text: text.clone(),
        })
    }

    /// How long until it expires; `None` when it has.
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        (self.until_ms > now_ms).then(|| Duration::from_millis(self.until_ms - now_ms))
    }
}

/// What an attempt to claim a pod found.
#[derive(Debug)]
pub enum Attempt {
    /// The claim is ours for the requested time.
    Won,
    /// Another holder's claim is live for this long.
    Held {
        /// The holder.
        holder: String,
        /// Time left on its claim.
        remaining: Duration,
    },
    /// The pod changed since it was read (409): read it again and retry.
    Stale,
    /// The pod is gone.
    Gone,
}

/// Claims `pod` for `holder` for `ttl`, unless another holder's claim is live: `live` says
/// for how long more, `None` when it has expired (the controller judges it on its own
/// clock from when it first saw the claim). `pod` may be the watch's version: a stale one
/// costs a 409 ([`Attempt::Stale`]), never a claim on a version not read. `seen` gets the
/// version the API server answered, so the caller's cache is never older than its claim.
///
/// # Errors
/// An API error other than 404 and 409.
pub async fn acquire(
    api: &Api<Pod>,
    pod: &Pod,
    (holder, ttl): (&str, Duration),
    live: impl FnOnce(&Claim) -> Option<Duration>,
    seen: &(dyn Fn(&Pod) + Sync),
) -> Result<Attempt, kube::Error> {
    if let Some(claim) = Claim::of(pod) {
        if claim.holder != holder {
            if let Some(remaining) = live(&claim) {
                return Ok(Attempt::Held {
                    holder: claim.holder,
                    remaining,
                });
            }
        }
    }
    write(api, pod, (holder, ttl), seen).await
}

/// The executor's fence for `holder` ([`crate::exec::Executor::fenced`]): a pod may be
/// written while its claim is `holder`'s and has not run out by `until` (written by this
/// holder, so judged on its own clock), and only as long as the claim is that very text.
pub fn fence(holder: String) -> crate::exec::Fence {
    std::sync::Arc::new(move |pod: &Pod| match Claim::of(pod) {
        Some(c) if c.holder != holder => Err(format!("claimed by {}", c.holder)),
        Some(c) if c.remaining(now_ms()).is_none() => Err("its claim ran out".into()),
        Some(c) => Ok(vec![(CLAIM_ANNOTATION.to_owned(), c.text)]),
        None => Err("no claim on the pod".into()),
    })
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Written: the claim is ours for `ttl` from when the write was sent.
    Renewed,
    /// The claim is no longer ours (another holder, no claim, the pod gone, or another pod
    /// under the name now).
    Lost,
    /// Still ours at the last read, but every write lost a race with another writer: not
    /// renewed (try again soon).
    Raced,
    /// No claim on the pod at all. Only a holder removes its claim (another controller
    /// overwrites an expired one), and within the renewal deadline nobody else can have
    /// taken it: the plan's last write released it ([`crate::exec::Executor::fenced`]), and
    /// there is nothing left to renew.
    Released,
}

/// Extends our claim on the pod (read fresh) by `ttl`. A write that loses a race
/// with another change to the pod (409) is retried on a fresh read: a busy pod does not
/// lose its claim, only another holder takes it. `seen` gets the version written.
///
/// # Errors
/// An API error other than 404 and 409.
pub async fn renew(
    api: &Api<Pod>,
    (name, uid): (&str, &str),
    (holder, ttl): (&str, Duration),
    seen: &(dyn Fn(&Pod) + Sync),
) -> Result<Renewal, kube::Error> {
    for _ in 0..RACES {
        let Some(pod) = read(api, name).await?.filter(|p| is(p, uid)) else {
            return Ok(Renewal::Lost);
        };
        match Claim::of(&pod) {
            None => return Ok(Renewal::Released),
            Some(c) if c.holder != holder => return Ok(Renewal::Lost),
            Some(_) => {}
        }
        match write(api, &pod, (holder, ttl), seen).await? {
            Attempt::Won => return Ok(Renewal::Renewed),
            Attempt::Gone => return Ok(Renewal::Lost),
            Attempt::Stale | Attempt::Held { .. } => {}
        }
    }
    Ok(Renewal::Raced)
}

/// Removes our claim from the pod, if it is still ours. `latest` is the newest version the
/// caller has (its cache holds every version it wrote): the removal is a JSON Patch that
/// `test`s the claim's text, so other writers' changes to the pod (its status) cost no
/// retry, and only a claim that changed (422) costs a fresh read. A pod that is gone is left
/// alone; one whose claim keeps changing past a few attempts keeps it until it expires.
///
/// # Errors
/// An API error other than 404, 409 and 422.
pub async fn release(
    api: &Api<Pod>,
    latest: Option<Pod>,
    (name, uid): (&str, &str),
    holder: &str,
) -> Result<(), kube::Error> {
    let mut latest = latest;
    for _ in 0..RACES {
        let pod = match latest.take() {
            Some(pod) => Some(pod),
            None => read(api, name).await?,
        };
        let Some(pod) = pod.filter(|p| is(p, uid)) else {
            return Ok(());
        };
        let Some(claim) = Claim::of(&pod).filter(|c| c.holder == holder) else {
            return Ok(());
        };
        let pointer = crate::exec::annotation_pointer(CLAIM_ANNOTATION);
        let patch = json!([
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": pointer, "value": claim.text},
            {"op": "remove", "path": pointer},
        ]);
        let patch: json_patch::Patch = match serde_json::from_value(patch) {
            Ok(p) => p,
            // Built above from strings: cannot fail; leave the claim to expire if it did.
            Err(_) => return Ok(()),
        };
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if code(&e) == Some(404) || other_pod(&e) => return Ok(()),
            // The claim (or the UID) is not what was read: read again.
            Err(e) if matches!(code(&e), Some(409 | 422)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `pod` is the pod with `uid` (not another created under its name since).
fn is(pod: &Pod, uid: &str) -> bool {
    pod.metadata.uid.as_deref() == Some(uid)
}

/// Attempts at a conditional write that keeps losing races with other writers.
const RACES: usize = 5;

async fn read(api: &Api<Pod>, name: &str) -> Result<Option<Pod>, kube::Error> {
    match api.get(name).await {
        Ok(p) => Ok(Some(p)),
        Err(e) if code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The API server refused the UID precondition: the name is another pod's now.
fn other_pod(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("metadata.uid"))
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Writes the claim, conditional on the pod's resourceVersion; `seen` gets the version
/// written.
async fn write(
    api: &Api<Pod>,
    pod: &Pod,
    (holder, ttl): (&str, Duration),
    seen: &(dyn Fn(&Pod) + Sync),
) -> Result<Attempt, kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let until = now_ms().saturating_add(ttl);
    let value = json!({"holder": holder, "until": until, "ttl": ttl}).to_string();
    // Both preconditions: the version read (409 when stale) and the pod's UID (422 when
    // the name is another pod's now).
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "uid": pod.metadata.uid,
        "annotations": {CLAIM_ANNOTATION: value},
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => {
            seen(&written);
            Ok(Attempt::Won)
        }
        Err(e) if code(&e) == Some(409) => Ok(Attempt::Stale),
        Err(e) if code(&e) == Some(404) || other_pod(&e) => Ok(Attempt::Gone),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(annotation: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p",
            "annotations": {CLAIM_ANNOTATION: annotation}}}))
        .expect("pod")
    }

    #[test]
    fn a_claim_is_read_and_expires() {
        let c = Claim::of(&pod_with(r#"{"holder":"a","until":5000}"#)).expect("claim");
        assert_eq!(c.holder, "a");
        assert_eq!(c.remaining(4000), Some(Duration::from_secs(1)));
        assert_eq!(c.remaining(5000), None);
    }

    #[test]
    fn an_unreadable_claim_is_no_claim() {
        assert_eq!(Claim::of(&pod_with("garbage")), None);
        assert_eq!(Claim::of(&pod_with(r#"{"holder":"a"}"#)), None);
    }
}
