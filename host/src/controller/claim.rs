//! Per-pod claims, so that several controllers (replicas, or an old and a new one during a
//! rollout) never carry out the same pod's plan at once.
//!
//! A claim is the annotation `sidekill.dev/claim` = `{"holder": ID, "until": UNIX_MS}`,
//! taken by the plan's first write ([`PlanClaim`]), in the same JSON Patch as what that write
//! records, with a `test` of the pod's `metadata.resourceVersion`: the API server applies it
//! only to the version the plan was made from (422 otherwise), so of two controllers racing
//! for one pod exactly one wins. The holder renews the claim while its plan runs (a JSON Patch
//! that `test`s the claim's text: other writers' changes to the pod never make it fail), and
//! the plan's last write removes it with the record of the stop. A controller that dies leaves a claim that
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

/// What a pod's claim, as read, leaves to this controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No live claim of another holder: a plan may take it ([`PlanClaim`]); `expired` is the
    /// text of another holder's claim that has run out, which the take may overwrite.
    Free {
        /// Another holder's expired claim.
        expired: Option<String>,
    },
    /// Another holder's claim is live for this long.
    Held {
        /// The holder.
        holder: String,
        /// Time left on its claim.
        remaining: Duration,
    },
}

/// The standing of `holder` on `pod`: another holder's claim is live as long as `live` says
/// (`None`: it has expired; the controller judges it on its own clock from when it first saw
/// the claim).
pub fn standing(
    pod: &Pod,
    holder: &str,
    live: impl FnOnce(&Claim) -> Option<Duration>,
) -> Standing {
    match Claim::of(pod) {
        Some(claim) if claim.holder != holder => match live(&claim) {
            Some(remaining) => Standing::Held {
                holder: claim.holder,
                remaining,
            },
            None => Standing::Free {
                expired: Some(claim.text),
            },
        },
        _ => Standing::Free { expired: None },
    }
}

/// What a conditional write of the claim found.
enum Written {
    /// Applied: the pod as written.
    Won(Box<Pod>),
    /// The claim is not the one read any more (422).
    Stale,
    Gone,
}

/// One plan's claim on its pod: the executor's fence ([`crate::exec::Executor::fenced`]).
///
/// The plan's first write takes the claim, in the same JSON Patch as what it records (the send
/// it begins, mostly), applied only to the version of the pod the plan was made from (a
/// `test` of `metadata.resourceVersion`): of two controllers racing for one pod exactly one
/// wins, and a plan made before another controller's claim or record is made again, never
/// written over it. Every later write holds the claim: it is written only while the claim is
/// this holder's, has not run out by its `until` (written by this holder, so judged on its
/// own clock), and is the very text tested. A plan with nothing to write takes no claim.
#[derive(Debug)]
pub struct PlanClaim {
    holder: String,
    ttl: Duration,
    /// Another holder's claim that this controller judged expired: the take may overwrite
    /// that text, and only that one.
    expired: Option<String>,
    /// When the write that took the claim was sent.
    taken: tokio::sync::watch::Sender<Option<std::time::Instant>>,
}

impl PlanClaim {
    /// `holder`'s claim for `ttl` on a pod whose claim, as the plan read it, is none, its own,
    /// or `expired` (another holder's, run out on this controller's clock).
    pub fn new(holder: &str, ttl: Duration, expired: Option<String>) -> PlanClaim {
        PlanClaim {
            holder: holder.to_owned(),
            ttl,
            expired,
            taken: tokio::sync::watch::channel(None).0,
        }
    }

    /// When the write that took the claim was sent, once it is taken.
    pub async fn taken_at(&self) -> std::time::Instant {
        let mut rx = self.taken.subscribe();
        loop {
            if let Some(at) = *rx.borrow_and_update() {
                return at;
            }
            if rx.changed().await.is_err() {
                // Never dropped while the plan runs; if it were, nothing would be taken.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A claim's text, for a write sent now.
fn text(holder: &str, ttl: Duration) -> String {
    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let until = now_ms().saturating_add(ttl);
    json!({"holder": holder, "until": until, "ttl": ttl}).to_string()
}

impl crate::exec::Fence for PlanClaim {
    fn hold(&self, pod: &Pod) -> Result<crate::exec::Hold, String> {
        use crate::exec::Hold;
        let claim = Claim::of(pod);
        if !self.taken() {
            return match claim {
                Some(c) if c.holder != self.holder && Some(&c.text) != self.expired.as_ref() => {
                    Err(format!("claimed by {}", c.holder))
                }
                _ => Ok(Hold::Take(vec![(
                    CLAIM_ANNOTATION.to_owned(),
                    text(&self.holder, self.ttl),
                )])),
            };
        }
        match claim {
            Some(c) if c.holder != self.holder => Err(format!("claimed by {}", c.holder)),
            Some(c) if c.remaining(now_ms()).is_none() => Err("its claim ran out".into()),
            Some(c) => Ok(Hold::Held(vec![(CLAIM_ANNOTATION.to_owned(), c.text)])),
            None => Err("no claim on the pod".into()),
        }
    }

    fn applied(&self, hold: &crate::exec::Hold, sent: std::time::Instant) {
        if matches!(hold, crate::exec::Hold::Take(_)) {
            self.taken.send_replace(Some(sent));
        }
    }

    fn taken(&self) -> bool {
        self.taken.borrow().is_some()
    }
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Written: the claim is ours for `ttl` from when the write was sent.
    Renewed,
    /// The claim is no longer ours (another holder, no claim, the pod gone, or another pod
    /// under the name now).
    Lost,
    /// Still ours at the last read, but the claim changed between each read and its write:
    /// not renewed (try again soon).
    Raced,
    /// No claim on the pod at all. Only a holder removes its claim (another controller
    /// overwrites an expired one), and within the renewal deadline nobody else can have
    /// taken it: the plan's last write released it ([`crate::exec::Executor::fenced`]), and
    /// there is nothing left to renew.
    Released,
}

/// Extends our claim on the pod by `ttl`: a JSON Patch that `test`s the claim's text, so other
/// writers' changes to the pod (its status, its labels) never make a renewal fail; only a
/// claim that changed (422) costs a fresh read. `latest` is the newest version the caller has
/// (its cache holds every version it wrote), read from the API server when `None`. `seen`
/// gets the version written.
///
/// # Errors
/// An API error other than 404, 409 and 422.
pub async fn renew(
    api: &Api<Pod>,
    latest: Option<Pod>,
    (name, uid): (&str, &str),
    (holder, ttl): (&str, Duration),
    seen: &(dyn Fn(&Pod) + Sync),
) -> Result<Renewal, kube::Error> {
    let renewed = || Some(text(holder, ttl));
    Ok(
        match change_own(api, latest, (name, uid), holder, renewed).await? {
            Changed::Written(written) => {
                seen(&written);
                Renewal::Renewed
            }
            Changed::NoClaim => Renewal::Released,
            Changed::Another | Changed::Gone => Renewal::Lost,
            Changed::Raced => Renewal::Raced,
        },
    )
}

/// Removes our claim from the pod, if it is still ours, as [`renew`] replaces it. A pod that
/// is gone is left alone; one whose claim keeps changing past a few attempts keeps it until it
/// expires.
///
/// # Errors
/// An API error other than 404, 409 and 422.
pub async fn release(
    api: &Api<Pod>,
    latest: Option<Pod>,
    (name, uid): (&str, &str),
    holder: &str,
) -> Result<(), kube::Error> {
    change_own(api, latest, (name, uid), holder, || None)
        .await
        .map(|_| ())
}

/// What a change of our own claim found.
enum Changed {
    /// Written: the pod as written.
    Written(Box<Pod>),
    /// The pod has no claim.
    NoClaim,
    /// The claim is another holder's.
    Another,
    /// The pod is gone, or another pod has its name.
    Gone,
    /// The claim changed between each read and its write.
    Raced,
}

/// Replaces our claim with `new()` (or removes it, when `None`), starting from `latest` (read
/// from the API server when `None`, and after a race).
async fn change_own(
    api: &Api<Pod>,
    mut latest: Option<Pod>,
    (name, uid): (&str, &str),
    holder: &str,
    new: impl Fn() -> Option<String>,
) -> Result<Changed, kube::Error> {
    for _ in 0..RACES {
        let pod = match latest.take() {
            Some(pod) => Some(pod),
            None => read(api, name).await?,
        };
        let Some(pod) = pod.filter(|p| is(p, uid)) else {
            return Ok(Changed::Gone);
        };
        let claim = match Claim::of(&pod) {
            None => return Ok(Changed::NoClaim),
            Some(c) if c.holder != holder => return Ok(Changed::Another),
            Some(c) => c,
        };
        match patch(api, (name, uid), &claim.text, new().as_deref()).await? {
            Written::Won(written) => return Ok(Changed::Written(written)),
            Written::Gone => return Ok(Changed::Gone),
            Written::Stale => {}
        }
    }
    Ok(Changed::Raced)
}

/// Replaces (or with `None` removes) the claim whose text is `old`, on the pod with `uid`: a
/// JSON Patch whose `test`s the API server applies to the pod as it stands.
async fn patch(
    api: &Api<Pod>,
    (name, uid): (&str, &str),
    old: &str,
    new: Option<&str>,
) -> Result<Written, kube::Error> {
    let pointer = crate::exec::annotation_pointer(CLAIM_ANNOTATION);
    let change = match new {
        Some(value) => json!({"op": "add", "path": pointer, "value": value}),
        None => json!({"op": "remove", "path": pointer}),
    };
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "test", "path": pointer, "value": old},
        change,
    ]);
    // Built above from strings: it reads back; if it did not, the claim would expire.
    let Ok(ops) = serde_json::from_value::<json_patch::Patch>(ops) else {
        return Ok(Written::Gone);
    };
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
    {
        Ok(written) => Ok(Written::Won(Box::new(written))),
        Err(e) if code(&e) == Some(404) || other_pod(&e) => Ok(Written::Gone),
        // The claim (or the UID) is not what was read: read again.
        Err(e) if matches!(code(&e), Some(409 | 422)) => Ok(Written::Stale),
        Err(e) => Err(e),
    }
}

/// Whether `pod` is the pod with `uid` (not another created under its name since).
fn is(pod: &Pod, uid: &str) -> bool {
    pod.metadata.uid.as_deref() == Some(uid)
}

/// Attempts at a claim write whose claim keeps changing between the read and the write.
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
