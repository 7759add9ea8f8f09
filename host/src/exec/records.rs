//! The pod's record of what sidekill has done: `sidekill.dev/done-<container>` ([`done_key`]),
//! the list of the steps done, so that no step ever runs twice whoever carries the plan on
//! (another replica, a restarted controller, `sidekill stop` run again).
//!
//! Each entry names a step by its identity (`"<index>:<id>"`), not by its position alone:
//! replicas may plan the same pod with different policy versions (a hot swap reaches them
//! at different moments), and a version that adds a step in front would otherwise take the
//! record of the old step 0 for its own new step 0, skip it, and send the old step 0 again.
//! The identity ([`step_id`]) is what the step does (its kind, signal and action, the seconds
//! of a wait, the container of an await), not how the answer explains it (`expectedExit`,
//! `endpoint`), so a newer wording is still the same step. Entries no step of the current plan
//! has are kept as they are, for the replica whose plan they are. An older sidekill wrote bare
//! indices (`[0,1]`); they are read as positions.
//!
//! [`done_key`]: super::done_key

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::BTreeSet;

use super::api::{forbidden, is_invalid, is_not_found, is_other_pod};
use super::pod::PodRef;
use super::run::Stop;
use super::waits::Waiting;
use super::{Error, Executor};
use crate::answer::Step;

/// Says whether a plan may write the pod, and on what condition ([`Executor::fenced`]): the
/// controller's claim on the pod, taken by the plan's first write and held by every other.
pub trait Fence: Send + Sync {
    /// Whether `pod`, as just read, may be written by this plan, and on what condition; `Err`
    /// with why not (the claim is another holder's, or has run out).
    ///
    /// # Errors
    /// Why the pod may not be written.
    fn hold(&self, pod: &Pod) -> Result<Hold, String>;
    /// A write on `hold`'s condition, sent at `sent`, was applied.
    fn applied(&self, hold: &Hold, sent: std::time::Instant);
    /// Whether a write of this plan took the fence's annotations.
    fn taken(&self) -> bool;
}

/// The condition a [`Fence`] puts on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// These annotations (key, value) must still hold their values when the write is applied.
    Held(Vec<(String, String)>),
    /// The write takes these annotations, and is applied only to a version of the pod whose
    /// `sidekill.dev/` annotations (claims, records) are those the plan was made from (a JSON
    /// Patch `test` of the `resourceVersion` compared): a pod that another controller claimed
    /// or recorded on since is planned again, never written over, while its other changes
    /// (status, labels) cost a fresh read at most.
    Take(Vec<(String, String)>),
}

/// Attempts at a fenced write whose fence (the claim) changed between the read and the write:
/// the holder's own renewal can do that once.
const FENCED_ATTEMPTS: usize = 4;

/// Why a fence could not be taken: the pod's claims or records changed since its plan was made.
pub const CHANGED_SINCE_PLANNED: &str =
    "the pod's claims or records changed since its plan was made";

/// The pod's `sidekill.dev/` annotations: its claim and its records, what a plan's decisions
/// about which steps to run rest on.
fn sidekill_annotations(pod: &Pod) -> Vec<(String, String)> {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("sidekill.dev/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The JSON pointer of an annotation (RFC 6901: `~` and `/` escaped).
pub fn annotation_pointer(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// The fields of a step that say what it does.
const IDENTITY: [&str; 5] = ["step", "signal", "action", "seconds", "container"];

/// A step's identity: 8 hex digits of the SHA-256 of its identity fields (serde_json's maps
/// are ordered by key, so the text is canonical) and of how many identical steps come before
/// it in the container's plan (two SIGTERMs are two steps).
fn step_id(step: &Step, occurrence: usize) -> String {
    // A step serialises to the answer's own JSON (`answer` tests it on every vector).
    let step = serde_json::to_value(step).unwrap_or(Value::Null);
    let identity: serde_json::Map<String, Value> = IDENTITY
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), step.get(*k)?.clone())))
        .collect();
    let text = format!("{}#{occurrence}", Value::Object(identity));
    let hash = sha2::Sha256::digest(text.as_bytes());
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The identities of a container's steps, in plan order.
fn step_ids(steps: &[Step]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::with_capacity(steps.len());
    steps
        .iter()
        .map(|step| {
            let base = step_id(step, 0);
            let occurrence = seen.iter().filter(|s| **s == base).count();
            seen.push(base.clone());
            if occurrence == 0 {
                base
            } else {
                step_id(step, occurrence)
            }
        })
        .collect()
}

/// A container's record, read against the steps of the plan in hand.
#[derive(Debug, Clone, Default)]
pub(super) struct Done {
    /// The annotation.
    pub key: String,
    /// Each current step's identity.
    ids: Vec<String>,
    /// The current steps recorded as done, by index.
    set: BTreeSet<usize>,
    /// Entries no current step has (another policy version's): written back unchanged.
    foreign: Vec<String>,
    /// Whether the pod has the annotation at all (an empty one marks a sidecar with no step
    /// that was reported).
    pub present: bool,
    /// Steps done whose record is not written yet ([`Done::owe`]).
    owed: BTreeSet<usize>,
    /// The `sidekill.dev/` annotations of the pod it was read from: a fence is taken only on
    /// a version that still has them.
    pub planned: Option<Vec<(String, String)>>,
}

impl Done {
    /// The record of `container` on `pod`, read against `steps`.
    pub(super) fn read(pod: &Pod, container: &str, steps: &[Step]) -> Done {
        let key = super::done_key(container);
        let ids = step_ids(steps);
        let text = pod.metadata.annotations.as_ref().and_then(|a| a.get(&key));
        let mut done = Done {
            present: text.is_some(),
            key,
            planned: Some(sidekill_annotations(pod)),
            ..Done::default()
        };
        let entries: Vec<Value> = text
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        for entry in entries {
            match entry {
                // An older sidekill's bare index.
                Value::Number(n) => {
                    if let Some(i) = n.as_u64().and_then(|i| usize::try_from(i).ok()) {
                        done.set.insert(i);
                    }
                }
                Value::String(s) => {
                    let id = s.split_once(':').map_or(s.as_str(), |(_, id)| id);
                    match ids.iter().position(|x| x == id) {
                        Some(i) => {
                            done.set.insert(i);
                        }
                        None => done.foreign.push(s),
                    }
                }
                _ => {}
            }
        }
        done.ids = ids;
        done
    }

    /// Whether step `index` of the current plan is done.
    pub(super) fn contains(&self, index: &usize) -> bool {
        self.set.contains(index)
    }

    /// Whether nothing at all is recorded: no step of this plan nor of another.
    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.foreign.is_empty()
    }

    /// Step `index`'s identity, for a record of a step in progress ([`Waiting::id`]).
    pub(super) fn id(&self, index: usize) -> Option<String> {
        self.ids.get(index).cloned()
    }

    /// The current step a record of a step in progress names: by its identity when it has
    /// one (`None` when no current step has it), else by its index (an older record).
    pub(super) fn resolve(&self, w: &Waiting) -> Option<usize> {
        match &w.id {
            Some(id) => self.ids.iter().position(|x| x == id),
            None => Some(w.step),
        }
    }

    /// Adds the entry of a step in progress that no plan in hand has (its container has
    /// ended, and the plan no longer stops it), as the record names it.
    pub(super) fn add_entry(&mut self, w: &Waiting) {
        self.foreign.push(match &w.id {
            Some(id) => format!("{}:{id}", w.step),
            None => w.step.to_string(),
        });
    }

    /// Marks a send done without writing it yet: the container's next write carries it, or
    /// the plan's last write ([`Executor::write_last`]). Until then the send's record as
    /// begun (`sidekill.dev/wait-<container>`, `started`) stands for it: an executor that
    /// stops in between leaves a send that is never sent again, as a written record would.
    pub(super) fn owe(&mut self, index: usize) {
        self.set.insert(index);
        self.owed.insert(index);
    }

    /// The owed record as annotations (the record, and the removal of the send's record as
    /// begun) into `annotations`, if a step is owed.
    pub(super) fn owed_into(&mut self, annotations: &mut serde_json::Map<String, Value>) {
        if !self.owed.is_empty() {
            self.record_into(annotations);
        }
    }

    /// The record as annotations: the steps done, and the removal of the container's record
    /// of a step in progress (a recorded step ends any wait handed back or send begun).
    fn record_into(&mut self, annotations: &mut serde_json::Map<String, Value>) {
        let value = self.insert(&[]);
        let container = self.key.trim_start_matches(super::DONE_ANNOTATION_PREFIX);
        annotations.insert(super::wait_key(container), Value::Null);
        annotations.insert(self.key.clone(), Value::String(value));
    }

    /// The owed records were written.
    pub(super) fn paid(&mut self) {
        self.owed.clear();
    }

    /// Marks steps done; the annotation's new value.
    pub(super) fn insert(&mut self, indices: &[usize]) -> String {
        self.set.extend(indices);
        let entries: Vec<String> = self
            .set
            .iter()
            .map(|i| match self.ids.get(*i) {
                Some(id) => format!("{i}:{id}"),
                None => i.to_string(),
            })
            .chain(self.foreign.iter().cloned())
            .collect();
        serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into())
    }
}

impl Executor {
    /// This executor, writing its records only while `fence` allows: each record (a step
    /// done, a wait handed back, a send begun) reads the pod, asks `fence`, and is a JSON
    /// Patch whose `test` operations require the claim the fence saw, so that nothing is
    /// recorded once the pod is another's, even by a holder that slept past its claim's end
    /// (a paused process is not stopped by the claim's own deadline). The API server applies
    /// the tests to the pod as it stands (k8s.io/apiserver `patcher` with evanphx/json-patch),
    /// so other writers' changes to the pod (its status, labels) cost no retry, where a
    /// `resourceVersion` precondition would conflict with each of them. A failed test reads
    /// again. The controller fences with its claim (`sidekill.dev/claim`); `sidekill stop` has
    /// no claim and no fence.
    ///
    /// The plan's last write ([`Executor::write_last`], after every container's steps and
    /// before the pod's end is observed) removes the fence's annotations with the records
    /// still owed: the claim is released in the patch that records the stop, not in one of
    /// its own.
    #[must_use]
    pub fn fenced(mut self, fence: std::sync::Arc<dyn Fence>) -> Executor {
        self.fence = Some(fence);
        self
    }

    /// Records a step as done in the container's annotation.
    pub(super) async fn record(
        &self,
        at: PodRef<'_>,
        done: &mut Done,
        index: usize,
    ) -> Result<(), Stop> {
        self.record_all(at, done, &[index]).await
    }

    /// Records steps as done in the container's annotation, in one patch.
    pub(super) async fn record_all(
        &self,
        at: PodRef<'_>,
        done: &mut Done,
        indices: &[usize],
    ) -> Result<(), Stop> {
        let index = indices.first().copied().unwrap_or(0);
        done.set.extend(indices);
        let mut annotations = serde_json::Map::new();
        done.record_into(&mut annotations);
        let doing = format!("recording step {index}");
        self.write_record(at, done, annotations, (&doing, false))
            .await
    }

    /// Writes `annotations`, which carry what `done` owes, on the version `done` was read
    /// from when the write takes the fence; `release`: the plan's last write.
    pub(super) async fn write_record(
        &self,
        at: PodRef<'_>,
        done: &mut Done,
        annotations: serde_json::Map<String, Value>,
        (doing, release): (&str, bool),
    ) -> Result<(), Stop> {
        let planned = done.planned.as_deref();
        self.write_annotations(at, Value::Object(annotations), (doing, planned), release)
            .await?;
        done.paid();
        Ok(())
    }

    /// The plan's last write: the records still owed (`owed`, from [`Done::owed_into`]) and,
    /// under a fence, the removal of the fence's annotations (the controller's claim), in one
    /// patch. Nothing is written for a plan with no fence and nothing owed.
    pub(super) async fn write_last(
        &self,
        at: PodRef<'_>,
        owed: serde_json::Map<String, Value>,
    ) -> Result<(), Stop> {
        // Nothing to record, and no fence taken to release.
        if owed.is_empty() && !self.fence.as_ref().is_some_and(|f| f.taken()) {
            return Ok(());
        }
        let doing = ("recording the plan's end", None);
        self.write_annotations(at, Value::Object(owed), doing, true)
            .await
    }

    /// Patches the pod's annotations (a null removes one). The pod's UID is a precondition
    /// (the API server refuses to change it: 422), so a pod recreated under the name never
    /// gets this pod's record; with a fence, so are the annotations the fence holds, which
    /// `release` removes in the same patch, or, when this write takes the fence, the claims
    /// and records `planned` the plan was made from.
    pub(super) async fn write_annotations(
        &self,
        at: PodRef<'_>,
        annotations: Value,
        (doing, planned): (&str, Option<&[(String, String)]>),
        release: bool,
    ) -> Result<(), Stop> {
        let PodRef { ns, name, uid } = at;
        let what = || format!("{doing} on pod {ns}/{name}");
        let api = self.pods(ns);
        let pp = PatchParams::default();
        let mut attempts = 0;
        loop {
            let patch = match &self.fence {
                None => None,
                Some(fence) => {
                    // The cached version first; after a failed test, the API server's.
                    let pod = if attempts == 0 {
                        self.get(ns, name).await?
                    } else {
                        self.get_fresh(ns, name).await?
                    };
                    // A cached version may predate the claim's last write: only the API
                    // server's own version refuses.
                    let fresh = attempts > 0 || self.cache.is_none();
                    let fenced = |why: String| Stop::Err(Error::Fenced { what: what(), why });
                    let held = match &pod {
                        None => Err(Stop::Gone),
                        Some(p) if p.metadata.uid.as_deref() != Some(uid) => Err(Stop::Gone),
                        Some(p) => fence.hold(p).map_err(fenced),
                    };
                    let held = match held {
                        Ok(held) => held,
                        Err(stop) if fresh => return Err(stop),
                        Err(_) => {
                            attempts += 1;
                            continue;
                        }
                    };
                    // Taken only on a version with the claims and records the plan was made
                    // from (tested by its resourceVersion below): another controller's claim
                    // or record since is planned again, never written over.
                    let version = pod
                        .as_ref()
                        .and_then(|p| p.metadata.resource_version.clone());
                    let taking = matches!(held, Hold::Take(_));
                    if taking
                        && (planned.is_none()
                            || pod.as_ref().map(sidekill_annotations).as_deref() != planned)
                    {
                        return Err(fenced(CHANGED_SINCE_PLANNED.into()));
                    }
                    let present = pod
                        .as_ref()
                        .and_then(|p| p.metadata.annotations.as_ref())
                        .map(|a| a.keys().cloned().collect::<BTreeSet<String>>())
                        .unwrap_or_default();
                    let mut ops =
                        vec![json!({"op": "test", "path": "/metadata/uid", "value": uid})];
                    match &held {
                        Hold::Held(held) => {
                            for (key, value) in held {
                                let path = annotation_pointer(key);
                                ops.push(json!({"op": "test", "path": path, "value": value}));
                                if release {
                                    ops.push(json!({"op": "remove", "path": path}));
                                }
                            }
                        }
                        Hold::Take(taken) => {
                            let path = "/metadata/resourceVersion";
                            ops.push(json!({"op": "test", "path": path, "value": version}));
                            // A pod with no annotation at all (the first write of a plan
                            // may be its first): JSON Patch adds a member only to an object.
                            if pod
                                .as_ref()
                                .is_some_and(|p| p.metadata.annotations.is_none())
                            {
                                let path = "/metadata/annotations";
                                ops.push(json!({"op": "add", "path": path, "value": {}}));
                            }
                            // Taken and released by one write: nothing to add.
                            for (key, value) in taken.iter().filter(|_| !release) {
                                let path = annotation_pointer(key);
                                ops.push(json!({"op": "add", "path": path, "value": value}));
                            }
                        }
                    }
                    for (key, value) in annotations.as_object().into_iter().flatten() {
                        let path = annotation_pointer(key);
                        if !value.is_null() {
                            ops.push(json!({"op": "add", "path": path, "value": value}));
                        } else if present.contains(key) {
                            ops.push(json!({"op": "remove", "path": path}));
                        }
                    }
                    let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                        .map_err(|e| {
                            Stop::Err(Error::Config {
                                message: format!("{}: a JSON patch: {e}", what()),
                            })
                        })?;
                    Some((Patch::Json(ops), held))
                }
            };
            let (patch, held) = match patch {
                Some((patch, held)) => (patch, Some(held)),
                None => (
                    Patch::Merge(json!({"metadata": {"uid": uid, "annotations": annotations}})),
                    None,
                ),
            };
            let sent = std::time::Instant::now();
            match self.retry("record", || api.patch(name, &pp, &patch)).await {
                Ok(pod) => {
                    if let (Some(fence), Some(held)) = (&self.fence, &held) {
                        fence.applied(held, sent);
                    }
                    // The executor never reads a version older than its own write.
                    if let Some(cache) = &self.cache {
                        cache.seen(&pod);
                    }
                    return Ok(());
                }
                Err(e) if is_not_found(&e) || is_other_pod(&e) => return Err(Stop::Gone),
                // The claim, a record being removed, or (when taking) the version changed
                // since the fence was asked: ask again, on the API server's version.
                Err(e) if is_invalid(&e) && self.fence.is_some() && attempts < FENCED_ATTEMPTS => {
                    attempts += 1;
                }
                // A pod that changes faster than it can be claimed: planned again soon.
                Err(e) if is_invalid(&e) && matches!(held, Some(Hold::Take(_))) => {
                    return Err(Stop::Err(Error::Fenced {
                        what: what(),
                        why: CHANGED_SINCE_PLANNED.into(),
                    }));
                }
                Err(source) => {
                    return Err(Stop::Err(
                        forbidden(&source, "patch", "pods", ns, what).unwrap_or(Error::Kube {
                            what: what(),
                            source,
                        }),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(record: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "annotations": {"sidekill.dev/done-proxy": record}
        }}))
        .expect("pod")
    }

    fn step(value: Value) -> Step {
        serde_json::from_value(value).expect("a step")
    }

    fn term() -> Step {
        step(
            json!({"step": "send", "signal": 15, "signalName": "SIGTERM",
               "action": {"kind": "exec", "argv": ["sh", "-c", "kill -15 1"]},
               "expectedExit": {"code": 143, "why": "one wording"}}),
        )
    }

    fn wait(seconds: i64) -> Step {
        Step::Wait { seconds }
    }

    /// Records written by earlier versions name steps by these identities: the hash of the
    /// identity fields as JSON text, whatever type the host reads the step into.
    #[test]
    fn identities_are_those_earlier_versions_recorded() {
        assert_eq!(step_id(&term(), 0), "18c8f7ea");
        assert_eq!(step_id(&wait(30), 0), "16d77c7d");
    }

    #[test]
    fn a_step_put_in_front_does_not_take_the_record_of_the_old_first_step() {
        let old = [term(), wait(30)];
        let mut done = Done::read(&pod("[]"), "proxy", &old);
        let value = done.insert(&[0]);
        let quit = step(json!({"step": "send", "signal": 0, "signalName": "quit",
            "action": {"kind": "exec", "argv": ["pilot-agent", "request", "POST", "quitquitquit"]}}));
        let new = [quit, term(), wait(30)];
        let read = Done::read(&pod(&value), "proxy", &new);
        assert!(!read.contains(&0), "the new first step was never run");
        assert!(read.contains(&1), "SIGTERM was sent: {value}");
    }

    #[test]
    fn a_new_wording_is_the_same_step() {
        let mut done = Done::read(&pod("[]"), "proxy", &[term()]);
        let value = done.insert(&[0]);
        let mut reworded = term();
        if let Step::Send { expected_exit, .. } = &mut reworded {
            *expected_exit = Some(json!({"code": 143, "why": "another wording"}));
        }
        assert!(Done::read(&pod(&value), "proxy", &[reworded]).contains(&0));
    }

    #[test]
    fn two_identical_steps_are_two_entries() {
        let steps = [term(), wait(5), term()];
        let mut done = Done::read(&pod("[]"), "proxy", &steps);
        let value = done.insert(&[0]);
        let read = Done::read(&pod(&value), "proxy", &steps);
        assert!(read.contains(&0) && !read.contains(&2), "{value}");
    }

    #[test]
    fn entries_of_another_plan_are_kept_and_bare_indices_read_as_positions() {
        let mut done = Done::read(&pod(r#"[0, "3:0badc0de"]"#), "proxy", &[term()]);
        assert!(done.contains(&0) && !done.is_empty());
        let value = done.insert(&[]);
        assert!(value.contains("0badc0de"), "{value}");
    }
}
