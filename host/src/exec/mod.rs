//! The executor: carries out one pod's stop plan against a cluster (feature `configmap`,
//! which brings kube, k8s-openapi and tokio).
//!
//! The executor decides nothing. It fetches the pod, sends it as JSON to the policy module
//! (through a [`Planner`]: a [`Policy`] or the live version of a [`PolicyStore`]) and carries
//! out `plan.stops[].steps[]` in plan order:
//!
//! - `send` with an `exec` action: the argv runs through `pods/exec` (WebSocket); stdout and
//!   stderr are kept up to [`Options::output_limit`] bytes each; the exit status is read from
//!   the `metav1.Status` on the error channel (`Success`, or `NonZeroExitCode` with an
//!   `ExitCode` cause).
//! - `send` with an `http` action: through `pods/proxy`, only with [`Options::pods_proxy`],
//!   under [`Options::http_timeout`].
//! - `send` with an `image-swap` action: a JSON patch of the container's image to the nop
//!   ([`Options::nop_image`]), guarded by a `test` of its name; the kubelet stops it from
//!   outside and runs the nop, and the nop's end is what is awaited (`methods.rs`).
//! - `send` with an `ephemeral` action: the quitter ([`Options::quitter_image`]) added as an
//!   ephemeral container targeting the sidecar, watched to its end (`methods.rs`).
//!
//! Before it plans, the executor asks RBAC (SelfSubjectAccessReviews, cached per namespace)
//! which of those two methods it may use and passes the answer as `facts.stopMethods`; it
//! sends the pod with env values and `last-applied-configuration` redacted (`redact.rs`). Before
//! each step it checks the step against the pod, trusting the module no further than the
//! sandbox (`guard.rs`): the pod's UID, the container, the signal, an argv that is the pod's own
//! kill-cmd or a command of the module's catalogue, a declared HTTP port, the swap's index.
//! - after a `send`, the container's termination is awaited by watching the pod (kube-runtime
//!   watcher, field-selected on the pod's name) up to the following `wait` step's seconds (or
//!   [`Options::settle`] after the last send). No fixed sleeps.
//! - `await`: watches until the named container terminates (at most [`Options::await_timeout`]).
//! - a wait (the grace after a send, a `wait` or an `await` step) longer than the hold of an
//!   executor built with [`Executor::suspending`] (the controller's) is not waited out: it is
//!   recorded on the pod (`sidekill.dev/wait-<container>`: the step, its deadline, the instance
//!   or container awaited) and the pod handed back ([`Outcome::Waiting`]); the next call resumes
//!   it from that record, and a recorded step removes it.
//!
//! - after the plan: the pod is watched (at most [`Options::outcome_timeout`]) until its phase
//!   is final, or until it is clear it never will be (a sidecar restarted by the kubelet, or left
//!   running). The report puts each container's actual exit code and the pod's end next to the
//!   plan's prediction (`plan.outcome`), and for a Job's pod the Job's conditions and counts,
//!   when sidekill may read the Job (`get` on `jobs`; without it the report says so).
//!
//! # Failure modes
//! - Transient API errors (HTTP 5xx and 429, connection errors) are retried with exponential
//!   backoff ([`Options::retries`] attempts, starting at [`Options::backoff`]).
//! - An exec that answers "container not found" or finds the container not running: that
//!   container's job is done. A pod that answers 404: the whole pod is done ([`Outcome::Gone`]).
//! - A sidecar that the kubelet restarts after its stop (`restartPolicy: OnFailure` and a
//!   non-zero exit) is [`Verdict::Restarted`], with its restart count; every step of it is then
//!   recorded as done, so neither this executor nor a controller stops the new instance again.
//! - An exec connection that drops mid-stream: the step counts as run (its result
//!   `dropped`), the container's state decides what comes next; it is never re-run.
//!
//! # No double action
//! Each completed step is recorded on the pod in the annotation
//! `sidekill.dev/done-<container>` (a JSON array of the step indices done), written with a
//! merge patch right after the step. A step already recorded is skipped, so a restarted
//! sidekill never runs a step twice. Before a send, the step is recorded as begun
//! (`sidekill.dev/wait-<container>`, `{"step": N, "started": true}`); an executor that finds a
//! send begun and not done (its predecessor was killed, cut off, or lost its claim in the
//! middle) does not send it again, since a kill command, an image swap or a quit request is
//! not idempotent: it looks at the container (ended: reported as stopped) and otherwise goes
//! on with the plan's next step (the grace wait, then the next signal), the step's result
//! being `unconfirmed`. Every write names the pod's UID (`metadata.uid` in a merge patch, a
//! `test` of it in a JSON patch), which the API server refuses to change (422): a pod deleted
//! and recreated under the same name is another pod, and never inherits a record, a wait or
//! a swap planned for the one before. Each step and its result also becomes a Kubernetes
//! Event on the pod (`reason` `SidecarStep`, `SidecarStopped` or `SidecarStillRunning`).

mod api;
mod assess;
pub mod backoff;
mod cache;
mod events;
mod executor;
mod guard;
mod methods;
mod permissions;
mod pod;
mod records;
mod redact;
mod report;
mod run;
mod status;
mod transport;
mod waits;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use assess::Assessment;
pub use cache::{PodCache, Working};
pub use executor::Executor;
pub use guard::refusals;
pub use records::{annotation_pointer, Fence, Hold, CHANGED_SINCE_PLANNED};
pub use report::{ContainerReport, JobReport, Outcome, PodReport, StepReport, Verdict};
pub use waits::{now_ms, Contended};

use crate::{Policy, PolicyStore};

/// The nop image `scripts/build-image` builds, and deploy/ names: the default of
/// [`Options::nop_image`].
pub const DEFAULT_NOP_IMAGE: &str = concat!("sidekill-nop:", env!("CARGO_PKG_VERSION"));
/// The quitter image `scripts/build-image` builds (deploy/ephemeral names it).
pub const DEFAULT_QUITTER_IMAGE: &str = concat!("sidekill-quitter:", env!("CARGO_PKG_VERSION"));

/// The annotation prefix recording the steps done on a container.
pub const DONE_ANNOTATION_PREFIX: &str = "sidekill.dev/done-";

/// The annotation prefix recording a wait handed back to the controller
/// ([`Executor::suspending`]).
pub const WAIT_ANNOTATION_PREFIX: &str = "sidekill.dev/wait-";

/// The annotation recording a wait of `container` handed back to the controller:
/// `sidekill.dev/wait-<container>` (`{"step": N, "until": UNIX_MS, ...}`), shortened as
/// [`done_key`] is.
pub fn wait_key(container: &str) -> String {
    let done = done_key(container);
    format!(
        "{WAIT_ANNOTATION_PREFIX}{}",
        done.trim_start_matches(DONE_ANNOTATION_PREFIX)
    )
}

/// The annotation recording the steps done on `container`: `sidekill.dev/done-<container>`.
/// An annotation key's name part is at most 63 characters (a qualified name:
/// apimachinery/pkg/util/validation IsQualifiedName), and a container name may have 63 of
/// its own, so a name longer than 58 is shortened to its first 46 characters and a hash of
/// the whole: the key stays valid, and the API server never refuses the record after the
/// step has run (which would make the plan run it again).
pub fn done_key(container: &str) -> String {
    const NAME_MAX: usize = 63;
    let prefix_name = DONE_ANNOTATION_PREFIX.trim_start_matches("sidekill.dev/");
    if prefix_name.len() + container.len() <= NAME_MAX {
        return format!("{DONE_ANNOTATION_PREFIX}{container}");
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(container.as_bytes());
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    // Container names are ASCII DNS labels: any byte index is a char boundary.
    let head = container[..46.min(container.len())].trim_end_matches(['-', '.', '_']);
    format!("{DONE_ANNOTATION_PREFIX}{head}-{hex}")
}

/// The executor's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes API call failed (after retries for transient errors). The message is what
    /// was being done; kube's error is the source ([`crate::error::Report`] shows both).
    #[error("{what}")]
    Kube {
        /// What was being done.
        what: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// The policy module failed to plan the pod.
    #[error("the policy could not plan the pod")]
    Policy {
        /// The host's error (boxed: it is large, and this path is rare).
        #[source]
        source: Box<crate::Error>,
    },
    /// The policy's answer lacks a field the executor needs.
    #[error("the policy's answer has no {field}")]
    Answer {
        /// The missing field.
        field: &'static str,
    },
    /// The pod's namespace is outside the executor's scope ([`Options::scope`]).
    #[error("namespace {namespace} is outside sidekill's scope ({})", .scope.join(", "))]
    OutOfScope {
        /// The pod's namespace.
        namespace: String,
        /// The namespaces sidekill may act in.
        scope: Vec<String>,
    },
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {message}")]
    Config {
        /// What went wrong.
        message: String,
    },
    /// The pod may no longer be written by this executor ([`Executor::fenced`]): its claim
    /// is another controller's. The plan stops; whoever holds the pod carries it on.
    #[error("{what}: not written, the pod is no longer this controller's ({why})")]
    Fenced {
        /// What was being recorded.
        what: String,
        /// Why the fence refused.
        why: String,
    },
    /// The API server answered 403: the identity sidekill runs as lacks an RBAC permission.
    /// Never retried: a missing permission does not come back by waiting. The message names
    /// the rule of `deploy/` that grants it ([`deploy_rule`]).
    #[error(
        "forbidden: sidekill's identity may not {verb} {resource} in namespace {namespace} \
         ({what}); the API server said: {message}. {} grants it in ClusterRole sidekill with \
         the rule `{}`: apply deploy/ (kubectl apply -k deploy/) or bind the identity to a \
         role with that rule",
        deploy_rule(.resource).0,
        deploy_rule(.resource).1
    )]
    Forbidden {
        /// The RBAC verb refused (`get`, `list`, `watch`, `patch`, `create`). For an exec,
        /// whose WebSocket needs both `get` and `create` on `pods/exec`, the one a
        /// SelfSubjectAccessReview finds missing, or `get and create`.
        verb: &'static str,
        /// The resource, with its subresource (`pods`, `pods/exec`, `events`, `pods/proxy`).
        resource: &'static str,
        /// The namespace of the call.
        namespace: String,
        /// What was being done.
        what: String,
        /// The API server's message (it names the user refused), or the HTTP status when
        /// the answer carried no `Status`.
        message: String,
    },
}

/// The executor's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short stable name, for log fields and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Policy { .. } => "policy",
            Error::Answer { .. } => "answer",
            Error::Config { .. } => "config",
            Error::OutOfScope { .. } => "out-of-scope",
            Error::Forbidden { .. } => "forbidden",
            Error::Fenced { .. } => "fenced",
        }
    }
}

/// The rule of `deploy/` that grants `resource` (with its subresource: `pods`, `pods/exec`,
/// `events`, `pods/proxy`) to sidekill: the file, and the rule as YAML (flow style), so that a
/// 403 can say exactly what to apply. Checked against the files by this module's tests.
pub fn deploy_rule(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "pods/exec" => (
            "deploy/base/rbac.yaml",
            r#"{apiGroups: [""], resources: [pods/exec], verbs: [get, create]}"#,
        ),
        "events" => (
            "deploy/base/rbac.yaml",
            r#"{apiGroups: [""], resources: [events], verbs: [create]}"#,
        ),
        "jobs" => (
            "deploy/base/rbac.yaml",
            r#"{apiGroups: [batch], resources: [jobs], verbs: [get]}"#,
        ),
        "pods/proxy" => (
            "deploy/pods-proxy/kustomization.yaml",
            r#"{apiGroups: [""], resources: [pods/proxy], verbs: [get, create]}"#,
        ),
        "pods/ephemeralcontainers" => (
            "deploy/ephemeral/kustomization.yaml",
            r#"{apiGroups: [""], resources: [pods/ephemeralcontainers], verbs: [patch]}"#,
        ),
        _ => (
            "deploy/base/rbac.yaml",
            r#"{apiGroups: [""], resources: [pods], verbs: [get, list, watch, patch]}"#,
        ),
    }
}

/// Where plans come from: the policy module, never the executor.
pub trait Planner: Send + Sync {
    /// The module's `plan` answer (the `ok` part) for a request.
    ///
    /// # Errors
    /// As [`Policy::plan`].
    fn plan(&self, request: &[u8]) -> crate::Result<Value>;
    /// The version of the policy answering, for reports and metrics.
    fn version(&self) -> String;
    /// The policy's command catalogue ([`crate::PolicyInfo::commands`]).
    fn commands(&self) -> Vec<Vec<String>>;
}

impl Planner for Policy {
    fn plan(&self, request: &[u8]) -> crate::Result<Value> {
        Policy::plan(self, request)
    }
    fn commands(&self) -> Vec<Vec<String>> {
        self.info().commands.clone()
    }
    fn version(&self) -> String {
        format!(
            "{} {} {}",
            self.info().name,
            self.info().version,
            self.sha256()
        )
    }
}

impl Planner for PolicyStore {
    fn plan(&self, request: &[u8]) -> crate::Result<Value> {
        self.current().plan(request)
    }
    fn commands(&self) -> Vec<Vec<String>> {
        self.current().info().commands.clone()
    }
    fn version(&self) -> String {
        Planner::version(&*self.current())
    }
}

impl<T: Planner + ?Sized> Planner for Arc<T> {
    fn plan(&self, request: &[u8]) -> crate::Result<Value> {
        (**self).plan(request)
    }
    fn commands(&self) -> Vec<Vec<String>> {
        (**self).commands()
    }
    fn version(&self) -> String {
        (**self).version()
    }
}

/// How the executor runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Print what would run and run nothing (no exec, no patch, no event). Default false.
    pub dry_run: bool,
    /// The namespaces the executor may act in; empty: any. A plan for a pod elsewhere is
    /// refused before the pod is read. The controller sets it to its `--namespace`.
    pub scope: Vec<String>,
    /// Carry out the plan even when its readiness is not `ready`. Default false. The guard
    /// still refuses every stop while a container the plan calls main runs (`guard.rs`).
    pub force: bool,
    /// Whether `pods/proxy` may be used (passed to the policy as the `podsProxy` fact, and
    /// required for `http` actions). Default false.
    pub pods_proxy: bool,
    /// sidekill's nop image, for image swap (see `permissions`): with it, and `patch` on pods
    /// in the pod's namespace, the policy may plan a swap. Default `sidekill-nop:<version>`,
    /// the image `scripts/build-image` builds.
    pub nop_image: Option<String>,
    /// sidekill's quitter image, for the ephemeral quitter: with it, and `patch` on
    /// `pods/ephemeralcontainers`, the policy may plan one. Default none: an opt-in (the
    /// ephemeral container stays in the pod spec for good).
    pub quitter_image: Option<String>,
    /// Bytes of stdout and of stderr kept per exec. Default 64 KiB.
    pub output_limit: usize,
    /// Deadline of one exec. Default 30 s.
    pub exec_timeout: Duration,
    /// Deadline of one `pods/proxy` request. Default 10 s.
    pub http_timeout: Duration,
    /// How long to watch for termination after the last send of a container. Default 5 s.
    pub settle: Duration,
    /// The longest an `await` step watches. Default 1 h.
    pub await_timeout: Duration,
    /// The longest a `wait` step (or the watch after a send) lasts, whatever the plan says:
    /// a pod's `terminationGracePeriodSeconds` is the pod owner's to choose. Default 10 min.
    pub max_wait: Duration,
    /// Attempts for a call that fails transiently. Default 6.
    pub retries: u32,
    /// First backoff between attempts (doubling, at most 5 s). Default 200 ms.
    pub backoff: Duration,
    /// Pods handled at once by one executor. Default 8.
    pub concurrency: usize,
    /// After the plan, how long to watch for the pod's final phase and its Job's condition,
    /// for the report. The watch ends early once the end is known: a final phase, or a sidecar
    /// restarted or left running (the pod never completes). Default 10 s.
    pub outcome_timeout: Duration,
    /// Which Events are recorded on the pod. Default [`Events::All`]; the controller's
    /// default is [`Events::Warnings`].
    pub events: Events,
}

/// Which Events the executor records on a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Events {
    /// Every Event: each step sent, each sidecar stopped, the pod's outcome.
    #[default]
    All,
    /// Warnings only: a step refused, a sidecar restarted or left running, an outcome
    /// other than the prediction. A stop that goes as planned then costs the API server no
    /// Event (three per pod otherwise); its record stays on the pod
    /// (`sidekill.dev/done-*`), and `/metrics` and the log count it.
    Warnings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            scope: Vec::new(),
            force: false,
            pods_proxy: false,
            nop_image: Some(DEFAULT_NOP_IMAGE.to_owned()),
            quitter_image: None,
            output_limit: 64 << 10,
            exec_timeout: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            settle: Duration::from_secs(5),
            await_timeout: Duration::from_secs(3600),
            max_wait: Duration::from_secs(600),
            retries: 6,
            backoff: Duration::from_millis(200),
            concurrency: 8,
            outcome_timeout: Duration::from_secs(10),
            events: Events::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RBAC rule (an object with `resources` and `verbs`) in a parsed manifest,
    /// including those inside a kustomization's patch text.
    fn rules_in(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) if m.contains_key("resources") && m.contains_key("verbs") => {
                out.push(v.clone());
            }
            Value::Object(m) => m.values().for_each(|v| rules_in(v, out)),
            Value::Array(a) => a.iter().for_each(|v| rules_in(v, out)),
            Value::String(s) if s.contains("resources") => {
                for doc in sidekill_policy::yaml::documents(s).unwrap_or_default() {
                    rules_in(&doc, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn done_keys_are_valid_annotation_keys_for_every_container_name() {
        assert_eq!(done_key("istio-proxy"), "sidekill.dev/done-istio-proxy");
        for len in [58, 59, 63] {
            let name = "c".repeat(len - 1) + "x";
            let key = done_key(&name);
            let (_, part) = key.split_once('/').expect("prefix");
            assert!(part.len() <= 63, "{key}");
            assert!(
                part.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && part.as_bytes()[0].is_ascii_alphanumeric()
                    && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric(),
                "{key}"
            );
        }
        // Two long names that share their first 46 characters still get two records.
        let a = "a".repeat(50) + "-one";
        let b = "a".repeat(50) + "-two";
        assert_ne!(done_key(&a), done_key(&b));
    }

    /// A 403 names the rule of `deploy/` to apply: that rule must be in the file, or the
    /// message would send people looking for a rule that is not there.
    #[test]
    fn forbidden_names_rules_that_are_in_deploy() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent");
        for resource in [
            "pods",
            "pods/exec",
            "events",
            "pods/proxy",
            "pods/ephemeralcontainers",
            "jobs",
        ] {
            let (file, rule) = deploy_rule(resource);
            let text = std::fs::read_to_string(root.join(file)).expect("deploy file");
            let mut rules = Vec::new();
            for doc in sidekill_policy::yaml::documents(&text).expect("YAML") {
                rules_in(&doc, &mut rules);
            }
            let named = sidekill_policy::yaml::documents(rule).expect("the rule is YAML");
            assert!(
                rules.contains(&named[0]),
                "{file} has no rule {rule} (for {resource}): {rules:?}"
            );
            assert!(rule.contains(&format!("[{resource}]")), "{rule}");
        }
    }
}
