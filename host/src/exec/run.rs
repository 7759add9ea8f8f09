//! The executor proper: one pod at a time per permit, steps in plan order.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, AttachParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

use super::guard;
use super::methods::{swapped_end, swapped_out_exit};
use super::records::Done;
use super::waits::{now_ms, waiting, Waiting};
use super::{
    ContainerReport, Error, JobReport, Options, Outcome, Planner, PodReport, Result, StepReport,
    Verdict,
};

/// Carries out pods' plans. Cheap to clone; clones share the concurrency bound.
#[derive(Clone)]
pub struct Executor {
    pub(super) client: kube::Client,
    planner: Arc<dyn Planner>,
    pub(super) options: Options,
    permits: Arc<Semaphore>,
    /// What RBAC allows per namespace, for `facts.stopMethods`.
    pub(super) permissions: Arc<super::permissions::Cache>,
    /// The longest a wait holds the pod's permit; `None`: waits are waited in place.
    pub(super) hold: Option<Duration>,
    /// Whether other pods wait for a slot: a wait held then is handed back at once.
    pub(super) contended: Option<super::waits::Contended>,
    /// Whether the pod may still be written by this executor ([`Executor::fenced`]).
    pub(super) fence: Option<super::records::Fence>,
}

/// What a container's state is, as far as the executor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    Terminated(i32),
    /// Waiting, or no status yet.
    Other,
    /// No such container in the pod's status.
    Missing,
}

pub(super) fn container_state(pod: &Pod, name: &str) -> State {
    let Some(st) = pod.status.as_ref() else {
        return State::Missing;
    };
    let found = st
        .container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name);
    match found.and_then(|c| c.state.as_ref()) {
        None if found.is_none() => State::Missing,
        None => State::Other,
        Some(s) => {
            if let Some(t) = &s.terminated {
                State::Terminated(t.exit_code)
            } else if s.running.is_some() {
                State::Running
            } else {
                State::Other
            }
        }
    }
}

pub(super) fn status_of<'p>(pod: &'p Pod, name: &str) -> Option<&'p ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
}

/// The running instance of a container (its `containerID`), to tell its end from a later
/// instance's.
pub(super) fn running_instance(pod: &Pod, name: &str) -> Option<String> {
    let cs = status_of(pod, name)?;
    cs.state.as_ref()?.running.as_ref()?;
    cs.container_id.clone()
}

/// How a container's instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct End {
    /// Its exit code.
    pub code: i32,
    /// The kubelet restarts it, or has: the container's current state is another instance (or
    /// the back-off before it), and the ended instance is its `lastState`.
    pub restarted: bool,
    /// The container's restart count now.
    pub restart_count: i32,
}

/// Whether `instance` of the container has ended (any instance, when `None`). The kubelet keeps
/// an instance's end in `state.terminated` when it is not restarted, and in
/// `lastState.terminated` once it restarts the container (CrashLoopBackOff while it backs off,
/// then the new instance running): pkg/kubelet/kubelet_pods.go convertToAPIContainerStatuses.
pub(super) fn ended(pod: &Pod, name: &str, instance: Option<&str>) -> Option<End> {
    let cs = status_of(pod, name)?;
    if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
        let ours = match (instance, t.container_id.as_deref()) {
            (Some(i), Some(id)) => i == id,
            _ => true,
        };
        return Some(End {
            code: t.exit_code,
            restarted: !ours,
            restart_count: cs.restart_count,
        });
    }
    let instance = instance?;
    let last = cs.last_state.as_ref()?.terminated.as_ref()?;
    (last.container_id.as_deref() == Some(instance)).then_some(End {
        code: last.exit_code,
        restarted: true,
        restart_count: cs.restart_count,
    })
}

/// The container's restart count and the exit code of its last ended instance, when the
/// kubelet has restarted it at least once.
pub(super) fn restarted_before(pod: &Pod, name: &str) -> Option<(i32, i32)> {
    let cs = status_of(pod, name)?;
    let last = cs.last_state.as_ref()?.terminated.as_ref()?;
    Some((cs.restart_count, last.exit_code))
}

/// The plan's predicted pod phase (`plan.outcome.pod.phase`), if the answer has one.
pub fn predicted_phase(prediction: &Value) -> Option<&str> {
    prediction.pointer("/pod/phase").and_then(Value::as_str)
}

/// The name of a Job's pod's Job: its controller owner reference of kind Job, else its
/// `batch.kubernetes.io/job-name` or `job-name` label.
fn job_name(pod: &Pod) -> Option<String> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job" && o.api_version.starts_with("batch/"))
        .map(|o| o.name.clone());
    owner.or_else(|| {
        let labels = pod.metadata.labels.as_ref()?;
        ["batch.kubernetes.io/job-name", "job-name"]
            .iter()
            .find_map(|l| labels.get(*l).cloned())
    })
}

fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A write whose `resourceVersion` precondition no longer holds (409 Conflict).
pub(super) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
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
fn forbidden_message(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 403 => Some(s.message.clone()),
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) if *code == http::StatusCode::FORBIDDEN => Some(code.to_string()),
        _ => None,
    }
}

/// [`Error::Forbidden`] for `verb` on `resource` in `namespace`.
fn forbidden_error(
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
fn watch_forbidden(e: &watcher::Error, namespace: &str, name: &str) -> Option<Error> {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 3339 UTC with seconds, for event timestamps.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// An Event's name, `<pod>.sidekill.<nanos in hex>`, at most 253 characters (a DNS subdomain,
/// as every object name): a pod's name may have 253 of its own, so it is shortened, without
/// leaving a `-` or `.` at the end of its part.
fn event_name(pod: &str, nanos: u128) -> String {
    let suffix = format!(".sidekill.{nanos:x}");
    let keep = 253usize.saturating_sub(suffix.len()).min(pod.len());
    // Pod names are ASCII (a DNS subdomain): any byte index is a char boundary.
    let head = pod.get(..keep).unwrap_or(pod).trim_end_matches(['-', '.']);
    format!("{head}{suffix}")
}

/// Reads at most `limit` bytes, draining (and dropping) the rest.
async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The result of one exec.
struct ExecOutcome {
    /// `ran`, `failed`, `dropped`, `container-gone`.
    result: &'static str,
    exit_code: Option<i32>,
    message: Option<String>,
    stdout: String,
    stderr: String,
}

/// Why a pod's plan stopped early.
pub(super) enum Stop {
    Gone,
    Err(Error),
    /// A wait longer than [`Executor::suspending`]'s hold was written on the pod
    /// (`sidekill.dev/wait-<container>`) and handed back: resume at this Unix millisecond, or
    /// when the watch sees the awaited container end.
    Suspend(u64),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Err(e)
    }
}

impl Executor {
    /// An executor with a client, where plans come from, and options.
    pub fn new(client: kube::Client, planner: Arc<dyn Planner>, options: Options) -> Executor {
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Executor {
            client,
            planner,
            options,
            permits,
            permissions: Arc::default(),
            hold: None,
            contended: None,
            fence: None,
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// A plan's wait of `secs` seconds, at most [`Options::max_wait`]: the plan's number
    /// comes from the pod (its grace period) through the module, and neither may hold a
    /// concurrency slot for longer than the operator allows (nor overflow a deadline).
    fn capped(&self, secs: u64) -> Duration {
        Duration::from_secs(secs).min(self.options.max_wait)
    }

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

    /// The pod now, or `None` when it is gone.
    pub(super) async fn get(&self, ns: &str, name: &str) -> Result<Option<Pod>> {
        let api = self.pods(ns);
        match self.retry("get pod", || api.get(name)).await {
            Ok(p) => Ok(Some(p)),
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

    /// Asks the policy for the pod's plan (the first subject of the answer).
    pub(super) fn plan(&self, pod: &Pod) -> Result<Value> {
        let mut object =
            serde_json::to_value(pod).map_err(|_| Error::Answer { field: "request" })?;
        super::redact::redact(&mut object);
        let request = json!({
            "object": object,
            "facts": {
                "podsProxy": self.options.pods_proxy,
                "stopMethods": self.stop_methods(pod.metadata.namespace.as_deref().unwrap_or("default")),
            },
        });
        let bytes = serde_json::to_vec(&request).map_err(|_| Error::Answer { field: "request" })?;
        let answer = self.planner.plan(&bytes).map_err(|source| Error::Policy {
            source: Box::new(source),
        })?;
        answer.pointer("/subjects/0").cloned().ok_or(Error::Answer {
            field: "subjects[0]",
        })
    }

    /// Stops the sidecars of one pod, as its plan says. Waits for a permit first (at most
    /// [`Options::concurrency`] pods at once per executor).
    ///
    /// # Errors
    /// A non-transient API error, or transient ones past the retries; a policy that cannot
    /// plan the pod. A pod that is gone is not an error ([`Outcome::Gone`]).
    pub async fn stop_pod(&self, namespace: &str, name: &str) -> Result<PodReport> {
        self.stop_pod_uid(namespace, name, None).await
    }

    /// [`Executor::stop_pod`] for the pod with `uid` only: a pod recreated under the name
    /// since (another UID) is not this plan's, and the report says [`Outcome::Gone`]. Every
    /// write of the plan names the UID it was planned for, so none lands on such a pod.
    ///
    /// # Errors
    /// As [`Executor::stop_pod`].
    pub async fn stop_pod_uid(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<PodReport> {
        let _permit = self.permits.acquire().await.ok();
        let mut report = PodReport {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            outcome: Outcome::Gone,
            readiness: Value::Null,
            policy: self.planner.version(),
            containers: Vec::new(),
            diagnostics: Vec::new(),
            prediction: Value::Null,
            phase: None,
            end: None,
            end_matches: None,
            job: None,
            resume_at_ms: None,
        };
        if !self.options.scope.is_empty() && !self.options.scope.iter().any(|n| n == namespace) {
            return Err(Error::OutOfScope {
                namespace: namespace.to_owned(),
                scope: self.options.scope.clone(),
            });
        }
        let Some(pod) = self.get(namespace, name).await? else {
            return Ok(report);
        };
        if uid.is_some_and(|u| pod.metadata.uid.as_deref() != Some(u)) {
            return Ok(report);
        }
        self.ask_permissions(namespace).await;
        let subject = self.plan(&pod)?;
        report.readiness = subject.get("readiness").cloned().unwrap_or(Value::Null);
        report.prediction = subject
            .pointer("/plan/outcome")
            .cloned()
            .unwrap_or(Value::Null);
        report.diagnostics = subject
            .get("diagnostics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let stops = subject
            .pointer("/plan/stops")
            .and_then(Value::as_array)
            .cloned()
            .ok_or(Error::Answer {
                field: "plan.stops",
            })?;
        for stop in &stops {
            let container = stop
                .get("container")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let predicted = report
                .prediction
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("container").and_then(Value::as_str) == Some(&container));
            report.containers.push(ContainerReport {
                predicted_exit: predicted
                    .and_then(|p| p.get("exitCode"))
                    .cloned()
                    .unwrap_or(Value::Null),
                predicted_result: predicted
                    .and_then(|p| p.get("result"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                exit_matches: None,
                restart_count: None,
                method: stop
                    .pointer("/method/kind")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                planned: stop
                    .get("verdict")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                diagnostics: report
                    .diagnostics
                    .iter()
                    .filter(|d| d.get("container").and_then(Value::as_str) == Some(&container))
                    .cloned()
                    .collect(),
                container,
                verdict: Verdict::NotRun,
                stopped_after_ms: None,
                exit_code: None,
                steps: Vec::new(),
            });
        }
        let ready = report.readiness.get("state").and_then(Value::as_str) == Some("ready");
        if self.options.dry_run {
            report.outcome = Outcome::DryRun;
            for (c, stop) in report.containers.iter_mut().zip(&stops) {
                for (index, step) in steps_of(stop).iter().enumerate() {
                    c.steps.push(step_report(index, step, "dry-run"));
                }
            }
            return Ok(report);
        }
        if !ready && !self.options.force {
            report.outcome = Outcome::NotReady;
            return Ok(report);
        }
        report.outcome = Outcome::Done;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let commands = self.planner.commands();
        let mains = guard::mains(&subject);
        for (i, stop) in stops.iter().enumerate() {
            match self
                .stop_container(
                    namespace,
                    name,
                    &uid,
                    stop,
                    (&mains, &commands),
                    &mut report.containers[i],
                )
                .await
            {
                Ok(()) => {}
                Err(Stop::Gone) => {
                    report.outcome = Outcome::Gone;
                    return Ok(report);
                }
                Err(Stop::Suspend(until)) => {
                    report.outcome = Outcome::Waiting;
                    report.resume_at_ms = Some(until);
                    return Ok(report);
                }
                Err(Stop::Err(e)) => return Err(e),
            }
        }
        match self
            .close_ended_waits(namespace, name, &uid, &pod, &stops, &mut report)
            .await
        {
            Ok(()) => {}
            Err(Stop::Gone) => {
                report.outcome = Outcome::Gone;
                return Ok(report);
            }
            // close_ended_waits() writes no wait.
            Err(Stop::Suspend(_)) => {}
            Err(Stop::Err(e)) => return Err(e),
        }
        match self.observe(namespace, name, &uid, &mut report).await {
            Ok(()) => {}
            Err(Stop::Gone) => report.outcome = Outcome::Gone,
            // observe() writes no wait.
            Err(Stop::Suspend(_)) => {}
            Err(Stop::Err(e)) => return Err(e),
        }
        Ok(report)
    }

    /// After the plan: watches the pod until its end is known (a final phase; or a sidecar
    /// restarted, whose new instance has started, or left running: the pod never completes),
    /// at most [`Options::outcome_timeout`]; then fills in the report's phase, end, each
    /// container's exit code and restart count against the prediction, and the Job; and records
    /// the comparison as an Event (`PodOutcome`).
    async fn observe(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        report: &mut PodReport,
    ) -> Result<(), Stop> {
        let left_running = report.left_running();
        let restarted: Vec<(String, i32)> = report
            .containers
            .iter()
            .filter(|c| c.verdict == Verdict::Restarted)
            .map(|c| (c.container.clone(), c.restart_count.unwrap_or(0)))
            .collect();
        // A restarted sidecar is settled once its next instance is counted (the kubelet counts
        // a restart when it starts the new instance: kuberuntime_container.go startContainer).
        let settled = |p: &Pod| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
                || left_running
                || (!restarted.is_empty()
                    && restarted.iter().all(|(c, before)| {
                        status_of(p, c).is_some_and(|cs| cs.restart_count > *before)
                    }))
        };
        let (pod, _) = self
            .watch_until(ns, name, self.options.outcome_timeout, settled)
            .await?;
        let pod = match pod {
            Some(p) => p,
            None => self.get(ns, name).await?.ok_or(Stop::Gone)?,
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        let end = match phase.as_str() {
            "Succeeded" | "Failed" => phase.clone(),
            _ if left_running || !restarted.is_empty() => "NeverCompletes".into(),
            _ => "Running".into(),
        };
        report.end_matches = match (predicted_phase(&report.prediction), end.as_str()) {
            (None | Some("Unknown"), _) | (_, "Running") => None,
            (Some(p), e) => Some(p == e),
        };
        report.phase = Some(phase);
        report.end = Some(end);
        for c in &mut report.containers {
            if let Some(cs) = status_of(&pod, &c.container) {
                c.restart_count = Some(cs.restart_count);
            }
            if c.exit_code.is_none() {
                if let Some(e) = ended(&pod, &c.container, None) {
                    c.exit_code = Some(e.code);
                }
            }
            c.exit_matches = match (c.exit_code, c.predicted_exit.as_i64()) {
                (Some(actual), Some(predicted)) => Some(i64::from(actual) == predicted),
                _ => None,
            };
        }
        if let Some(job) = job_name(&pod) {
            report.job = Some(self.job(ns, &job, report.end.as_deref()).await);
        }
        let mut parts = vec![format!(
            "pod {} (predicted {})",
            report.end.as_deref().unwrap_or("?"),
            predicted_phase(&report.prediction).unwrap_or("nothing")
        )];
        for c in &report.containers {
            if let Some(code) = c.exit_code {
                parts.push(format!(
                    "{} exit {code} (predicted {}){}",
                    c.container,
                    match &c.predicted_exit {
                        Value::Null => "nothing".to_owned(),
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    },
                    if c.verdict == Verdict::Restarted {
                        format!(", restarted ({} restarts)", c.restart_count.unwrap_or(0))
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if let Some(job) = &report.job {
            parts.push(job.describe());
        }
        let kind = if report.end_matches == Some(false) {
            "Warning"
        } else {
            "Normal"
        };
        self.event(ns, name, uid, kind, "PodOutcome", &parts.join("; "))
            .await;
        Ok(())
    }

    /// The pod's Job as the report shows it, polled (at most [`Options::outcome_timeout`])
    /// until the Job controller has counted the pod's end: a terminal condition (`Complete`,
    /// `Failed`), or the pod among `failed` when it failed. A Job sidekill may not read, or
    /// that is not there, is reported as not visible: the report is best effort.
    async fn job(&self, ns: &str, name: &str, end: Option<&str>) -> JobReport {
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let deadline = tokio::time::Instant::now() + self.options.outcome_timeout;
        let mut report = JobReport {
            name: name.to_owned(),
            ..JobReport::default()
        };
        loop {
            match self.retry("get job", || api.get(name)).await {
                Ok(job) => {
                    let status = job.status.unwrap_or_default();
                    report.visible = true;
                    report.note = None;
                    report.conditions = status
                        .conditions
                        .iter()
                        .flatten()
                        .filter(|c| c.status == "True")
                        .map(|c| match &c.reason {
                            Some(r) if !r.is_empty() => format!("{} ({r})", c.type_),
                            _ => c.type_.clone(),
                        })
                        .collect();
                    report.succeeded = status.succeeded.unwrap_or(0);
                    report.failed = status.failed.unwrap_or(0);
                    report.active = status.active.unwrap_or(0);
                    let terminal = report
                        .conditions
                        .iter()
                        .any(|c| c.starts_with("Complete") || c.starts_with("Failed"));
                    let counted = end == Some("Failed") && report.failed > 0;
                    if terminal || counted || !matches!(end, Some("Succeeded" | "Failed")) {
                        return report;
                    }
                }
                Err(e) => {
                    report.visible = false;
                    report.note = Some(match forbidden_message(&e) {
                        Some(m) => format!(
                            "{m}; {} grants it with the rule `{}`",
                            super::deploy_rule("jobs").0,
                            super::deploy_rule("jobs").1
                        ),
                        None if is_not_found(&e) => format!("job {ns}/{name} not found"),
                        None => e.to_string(),
                    });
                    return report;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop_container(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        stop: &Value,
        (mains, commands): (&[String], &[Vec<String>]),
        report: &mut ContainerReport,
    ) -> Result<(), Stop> {
        let container = report.container.clone();
        let steps = steps_of(stop);
        let Some(pod) = self.get(ns, name).await? else {
            return Err(Stop::Gone);
        };
        let mut done = Done::read(&pod, &container, &steps);
        // A wait handed back earlier, or a send begun, named by its step's identity (a stale
        // one, whose step is recorded or not in this plan, is ignored).
        let mut resumed = waiting(&pod, &container)
            .and_then(|mut w| {
                w.step = done.resolve(&w)?;
                Some(w)
            })
            .filter(|w| !done.contains(&w.step));
        if let Some(end) = resumed.as_ref().and_then(|w| w.met(&pod, &container)) {
            // The sidecar ended during its suspended wait: the wait is recorded (which removes
            // it) and the stop reported now.
            let step = resumed.as_ref().map_or(0, |w| w.step);
            for (index, s) in steps.iter().enumerate() {
                let result = if done.contains(&index) {
                    "skipped-recorded"
                } else if index == step {
                    "terminated"
                } else {
                    "skipped-terminated"
                };
                report.steps.push(step_report(index, s, result));
            }
            self.record(ns, name, uid, &mut done, step).await?;
            self.finish(ns, name, uid, report, None, end, &mut done, steps.len())
                .await?;
            return Ok(());
        }
        if let State::Terminated(code) = container_state(&pod, &container) {
            report.exit_code = Some(code);
            report.verdict = if done.is_empty() {
                Verdict::AlreadyTerminated
            } else {
                Verdict::Stopped
            };
            for (index, step) in steps.iter().enumerate() {
                report
                    .steps
                    .push(step_report(index, step, "skipped-terminated"));
            }
            return Ok(());
        }
        // Restarted by the kubelet after an earlier stop of sidekill's (a step is recorded):
        // the instance sidekill stopped has ended, and the new one is left alone.
        if !done.is_empty() {
            if let Some((restarts, code)) = restarted_before(&pod, &container) {
                report.exit_code = Some(code);
                report.restart_count = Some(restarts);
                report.verdict = Verdict::Restarted;
                for (index, step) in steps.iter().enumerate() {
                    report
                        .steps
                        .push(step_report(index, step, "skipped-restarted"));
                }
                return Ok(());
            }
        }
        if let Err(why) = guard::check_stop(&pod, mains, &container) {
            // Not recorded: the pod's status changes, and the same plan is fine once the
            // main containers have ended (guard.rs).
            for (index, step) in steps.iter().enumerate() {
                let mut sr = step_report(index, step, "refused");
                sr.message = Some(why.clone());
                report.steps.push(sr);
            }
            self.event(
                ns,
                name,
                uid,
                "Warning",
                "SidecarStepRefused",
                &format!("container {container}: every step refused: {why}"),
            )
            .await;
            return Ok(());
        }
        // The instance this plan stops: its end, not a later instance's, is what is awaited
        // (a resumed wait names the one it was waiting for).
        let instance = resumed
            .as_ref()
            .and_then(|w| w.instance.clone())
            .or_else(|| running_instance(&pod, &container));
        let instance = instance.as_deref();
        let mut first_send: Option<Instant> = None;
        let mut index = 0;
        while index < steps.len() {
            let step = &steps[index];
            let kind = step.get("step").and_then(Value::as_str).unwrap_or_default();
            if done.contains(&index) {
                report
                    .steps
                    .push(step_report(index, step, "skipped-recorded"));
                index += 1;
                continue;
            }
            let started = Instant::now();
            let mut sr = step_report(index, step, "ran");
            if resumed.take_if(|w| w.step == index && w.started).is_some() {
                // Begun by an executor that stopped before recording its end: not sent
                // again. The container still runs (its end was checked above), so the plan
                // goes on with the next step: the grace wait, then the next signal.
                sr.result = "unconfirmed".into();
                sr.message = Some(
                    "begun by an executor that stopped before recording its end: not sent again"
                        .into(),
                );
                self.record(ns, name, uid, &mut done, index).await?;
                report.steps.push(sr);
                index += 1;
                continue;
            }
            if let Some(w) = resumed.take_if(|w| w.step == index) {
                // A wait handed back earlier: resumed from the record, to its deadline.
                let (_, matched) = self
                    .wait_for(ns, name, uid, &container, &w, |p| {
                        w.met(p, &container).is_some()
                    })
                    .await?;
                sr.millis = millis(started.elapsed());
                if matched && w.target.is_none() {
                    sr.result = "terminated".into();
                    report.steps.push(sr);
                    let Some(pod) = self.get(ns, name).await? else {
                        return Err(Stop::Gone);
                    };
                    if let Some(end) = w.met(&pod, &container) {
                        // Recording the step also removes the wait.
                        self.record(ns, name, uid, &mut done, index).await?;
                        self.finish(
                            ns,
                            name,
                            uid,
                            report,
                            first_send,
                            end,
                            &mut done,
                            steps.len(),
                        )
                        .await?;
                        return Ok(());
                    }
                    index += 1;
                    continue;
                }
                sr.result = if matched { "terminated" } else { "timeout" }.into();
                self.record(ns, name, uid, &mut done, index).await?;
                report.steps.push(sr);
                index += 1;
                continue;
            }
            if let Err(why) = guard::check_step(&pod, uid, &container, step, commands) {
                // Recorded like a step run: the same plan would be refused again.
                sr.result = "refused".into();
                self.record(ns, name, uid, &mut done, index).await?;
                self.event(
                    ns,
                    name,
                    uid,
                    "Warning",
                    "SidecarStepRefused",
                    &format!("container {container}: step {index} refused: {why}"),
                )
                .await;
                sr.message = Some(why);
                report.steps.push(sr);
                index += 1;
                continue;
            }
            match kind {
                "await" => {
                    let target = step
                        .get("container")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let w = Waiting {
                        step: index,
                        id: done.id(index),
                        until: now_ms().saturating_add(millis(self.options.await_timeout)),
                        instance: None,
                        target: Some(target.to_owned()),
                        swap: false,
                        started: false,
                    };
                    let (_, matched) = self
                        .wait_for(ns, name, uid, &container, &w, |p| {
                            w.met(p, &container).is_some()
                        })
                        .await?;
                    sr.result = if matched { "terminated" } else { "timeout" }.into();
                }
                "send" => {
                    first_send.get_or_insert(started);
                    // Recorded as begun first: an executor that stops in the middle leaves
                    // the next one a record not to send it again.
                    let begun = Waiting {
                        step: index,
                        id: done.id(index),
                        until: 0,
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: false,
                        started: true,
                    };
                    self.write_waiting(ns, name, uid, &container, Some(&begun))
                        .await?;
                    let action = step.get("action").cloned().unwrap_or(Value::Null);
                    let signal = step
                        .get("signalName")
                        .and_then(Value::as_str)
                        .unwrap_or("signal")
                        .to_owned();
                    let sent: Result<(), Stop> = async {
                        match action.get("kind").and_then(Value::as_str) {
                            Some("exec") => {
                                let argv: Vec<String> = action
                                    .get("argv")
                                    .and_then(Value::as_array)
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(|s| s.as_str().map(str::to_owned))
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                let out = self.exec(ns, name, &container, &argv).await?;
                                sr.result = out.result.into();
                                sr.exit_code = out.exit_code;
                                sr.message = out.message;
                                sr.stdout = out.stdout;
                                sr.stderr = out.stderr;
                            }
                            Some("http") => {
                                let (result, message) = self.http(ns, name, &action).await?;
                                sr.result = result.into();
                                sr.message = Some(message);
                            }
                            Some("image-swap") => {
                                let sent =
                                    self.image_swap(ns, name, uid, &container, &action).await?;
                                sr.result = sent.result.into();
                                sr.message = Some(sent.message);
                            }
                            Some("ephemeral") => {
                                let sent = self
                                    .ephemeral_quitter(ns, name, &container, index, &action)
                                    .await?;
                                sr.result = sent.result.into();
                                sr.exit_code = sent.exit_code;
                                sr.message = Some(sent.message);
                            }
                            _ => {
                                sr.result = "refused".into();
                                sr.message = Some("an action of unknown kind".into());
                            }
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(e) = sent {
                        // Refused before anything was sent (a missing permission): the record
                        // of it as begun goes, so that a later attempt sends it.
                        if matches!(e, Stop::Err(_)) {
                            let _ = self.write_waiting(ns, name, uid, &container, None).await;
                        }
                        return Err(e);
                    }
                    self.record(ns, name, uid, &mut done, index).await?;
                    self.event(
                        ns,
                        name,
                        uid,
                        "Normal",
                        "SidecarStep",
                        &format!(
                            "container {container}: step {index} send {signal} ({}): {}{}",
                            crate::render::action(&action),
                            sr.result,
                            sr.exit_code
                                .map(|c| format!(", exit {c}"))
                                .unwrap_or_default()
                        ),
                    )
                    .await;
                    // Watch for termination up to the next wait step's deadline (which is
                    // then consumed), or the settle time after the last send.
                    let next_wait = steps
                        .get(index + 1)
                        .filter(|s| s.get("step").and_then(Value::as_str) == Some("wait"));
                    let deadline = next_wait
                        .and_then(|s| s.get("seconds").and_then(Value::as_u64))
                        .map_or(self.options.settle, |secs| self.capped(secs));
                    let swapped = action.get("kind").and_then(Value::as_str) == Some("image-swap");
                    // A wait longer than the hold is handed back (as the following wait step).
                    let w = next_wait.map(|_| Waiting {
                        step: index + 1,
                        id: done.id(index + 1),
                        until: now_ms().saturating_add(millis(
                            deadline.saturating_sub(started.elapsed())
                                + if swapped {
                                    self.options.settle
                                } else {
                                    Duration::ZERO
                                },
                        )),
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: swapped && sr.result == "ran",
                        started: false,
                    });
                    let ended = if let Some(w) = &w {
                        let (pod, done) = self
                            .wait_for(ns, name, uid, &container, w, |p| {
                                w.met(p, &container).is_some()
                            })
                            .await?;
                        if let Some(old) = pod
                            .as_ref()
                            .filter(|_| done && w.swap)
                            .and_then(|p| swapped_out_exit(p, &container))
                        {
                            let note = format!("; the swapped-out sidecar exited {old}");
                            sr.message.get_or_insert_with(String::new).push_str(&note);
                        }
                        pod.filter(|_| done).and_then(|p| w.met(&p, &container))
                    } else if swapped && sr.result == "ran" {
                        // The kubelet kills the sidecar at the end of the grace period (the
                        // wait step's seconds) and then starts the nop: allow it the settle
                        // time on top.
                        let (pod, done) = self
                            .watch_until(ns, name, deadline + self.options.settle, |p| {
                                swapped_end(p, &container, instance).is_some()
                            })
                            .await?;
                        let pod = pod.filter(|_| done);
                        if let Some(old) =
                            pod.as_ref().and_then(|p| swapped_out_exit(p, &container))
                        {
                            let note = format!("; the swapped-out sidecar exited {old}");
                            sr.message.get_or_insert_with(String::new).push_str(&note);
                        }
                        pod.and_then(|p| swapped_end(&p, &container, instance))
                    } else {
                        self.watch_terminated(ns, name, &container, instance, deadline)
                            .await?
                    };
                    sr.millis = millis(started.elapsed());
                    if let Some(end) = ended {
                        sr.terminated_after_ms = Some(millis(started.elapsed()));
                        report.steps.push(sr);
                        self.finish(
                            ns,
                            name,
                            uid,
                            report,
                            first_send,
                            end,
                            &mut done,
                            steps.len(),
                        )
                        .await?;
                        return Ok(());
                    }
                    report.steps.push(sr);
                    if let Some(w) = next_wait {
                        index += 1;
                        let mut wr = step_report(index, w, "timeout");
                        wr.millis = millis(deadline);
                        self.record(ns, name, uid, &mut done, index).await?;
                        report.steps.push(wr);
                    }
                    index += 1;
                    continue;
                }
                "wait" => {
                    let secs = step.get("seconds").and_then(Value::as_u64).unwrap_or(0);
                    let w = Waiting {
                        step: index,
                        id: done.id(index),
                        until: now_ms().saturating_add(millis(self.capped(secs))),
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: false,
                        started: false,
                    };
                    let (pod, matched) = self
                        .wait_for(ns, name, uid, &container, &w, |p| {
                            w.met(p, &container).is_some()
                        })
                        .await?;
                    match pod.filter(|_| matched).and_then(|p| w.met(&p, &container)) {
                        Some(end) => {
                            sr.result = "terminated".into();
                            sr.millis = millis(started.elapsed());
                            report.steps.push(sr);
                            self.finish(
                                ns,
                                name,
                                uid,
                                report,
                                first_send,
                                end,
                                &mut done,
                                steps.len(),
                            )
                            .await?;
                            return Ok(());
                        }
                        None => sr.result = "timeout".into(),
                    }
                }
                _ => sr.result = "refused".into(),
            }
            sr.millis = millis(started.elapsed());
            self.record(ns, name, uid, &mut done, index).await?;
            report.steps.push(sr);
            index += 1;
        }
        // Every step ran: one last look.
        let Some(pod) = self.get(ns, name).await? else {
            return Err(Stop::Gone);
        };
        if let Some(end) = ended(&pod, &container, instance) {
            self.finish(
                ns,
                name,
                uid,
                report,
                first_send,
                end,
                &mut done,
                steps.len(),
            )
            .await?;
            return Ok(());
        }
        report.verdict = Verdict::StillRunning;
        if steps.is_empty() {
            if done.present {
                // Reported before: no second Event.
                return Ok(());
            }
            // Nothing to run (the plan cannot stop it): an empty record says it was reported,
            // so a controller does not come back to it.
            self.record_all(ns, name, uid, &mut done, &[]).await?;
        }
        let fixes: Vec<String> = report
            .diagnostics
            .iter()
            .filter(|d| d.get("severity").and_then(Value::as_str) != Some("info"))
            .filter_map(|d| d.get("fix").and_then(Value::as_str).map(str::to_owned))
            .collect();
        self.event(
            ns,
            name,
            uid,
            "Warning",
            "SidecarStillRunning",
            &format!(
                "container {container} is still running after every step{}",
                if fixes.is_empty() {
                    String::new()
                } else {
                    format!("; fix: {}", fixes.join("; "))
                }
            ),
        )
        .await;
        Ok(())
    }

    /// The container's instance ended after sidekill's steps: stopped, or restarted by the
    /// kubelet. A restarted container gets every step recorded as done, so that the record
    /// keeps it finished: no later plan stops the new instance (which would loop, stop after
    /// restart, for as long as the pod lives).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        report: &mut ContainerReport,
        first_send: Option<Instant>,
        end: End,
        done: &mut Done,
        steps: usize,
    ) -> Result<(), Stop> {
        report.exit_code = Some(end.code);
        report.stopped_after_ms = first_send.map(|t| millis(t.elapsed()));
        let after = report
            .stopped_after_ms
            .map(|m| format!(" {m} ms after the first signal"))
            .unwrap_or_default();
        if end.restarted {
            report.verdict = Verdict::Restarted;
            report.restart_count = Some(end.restart_count);
            let missing: Vec<usize> = (0..steps).filter(|i| !done.contains(i)).collect();
            if !missing.is_empty() {
                self.record_all(ns, name, uid, done, &missing).await?;
            }
            let fixes: Vec<String> = report
                .diagnostics
                .iter()
                .filter(|d| d.get("code").and_then(Value::as_str) == Some("sidecar-restarted"))
                .filter_map(|d| d.get("fix").and_then(Value::as_str).map(str::to_owned))
                .collect();
            self.event(
                ns,
                name,
                uid,
                "Warning",
                "SidecarRestarted",
                &format!(
                    "container {} exited {}{after} and the kubelet restarted it (restart count {}); sidekill leaves the new instance alone{}",
                    report.container,
                    end.code,
                    end.restart_count,
                    if fixes.is_empty() {
                        String::new()
                    } else {
                        format!("; fix: {}", fixes.join("; "))
                    }
                ),
            )
            .await;
            return Ok(());
        }
        report.verdict = Verdict::Stopped;
        self.event(
            ns,
            name,
            uid,
            "Normal",
            "SidecarStopped",
            &format!(
                "container {} terminated with exit code {}{after}",
                report.container, end.code
            ),
        )
        .await;
        Ok(())
    }

    /// Creates an Event on the pod; failures are logged, never fatal.
    async fn event(&self, ns: &str, name: &str, uid: &str, kind: &str, reason: &str, msg: &str) {
        let now = now_rfc3339();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name(name, nanos), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": uid},
            "reason": reason,
            "message": msg,
            "type": kind,
            "source": {"component": "sidekill"},
            "reportingComponent": "sidekill",
            "reportingInstance": "sidekill",
            "action": "Stop",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        let Ok(ev) = serde_json::from_value::<Event>(ev) else {
            return;
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams::default();
        if let Err(e) = self.retry("create event", || api.create(&pp, &ev)).await {
            // Still not fatal, but a missing permission is named as such.
            let error = forbidden(&e, "create", "events", ns, || {
                format!("recording event {reason} on pod {ns}/{name}")
            })
            .map_or_else(|| e.to_string(), |f| f.to_string());
            tracing::warn!(pod = %format!("{ns}/{name}"), %error, "could not record an event");
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

    /// Watches the pod until `done(pod)` holds (the pod, `true`) or `timeout` passes (the last
    /// version seen, if any, and `false`). A pod that goes away is [`Stop::Gone`].
    pub(super) async fn watch_until(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Pod) -> bool,
    ) -> Result<(Option<Pod>, bool), Stop> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(self.pods(ns), cfg);
        let mut stream = std::pin::pin!(stream);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen_in_init = false;
        let mut errors = 0u32;
        let mut last = None;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            let Ok(Some(ev)) = next else {
                return Ok((last, false));
            };
            match ev {
                Ok(watcher::Event::Init) => seen_in_init = false,
                Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => {
                    seen_in_init = true;
                    errors = 0;
                    if done(&p) {
                        return Ok((Some(p), true));
                    }
                    last = Some(p);
                }
                Ok(watcher::Event::InitDone) if !seen_in_init => return Err(Stop::Gone),
                Ok(watcher::Event::InitDone) => {}
                Ok(watcher::Event::Delete(_)) => return Err(Stop::Gone),
                Err(e) => {
                    // A refused list or watch stays refused: waiting out the deadline (an
                    // hour for an `await`) would only hide the missing permission.
                    if let Some(err) = watch_forbidden(&e, ns, name) {
                        return Err(Stop::Err(err));
                    }
                    // The watcher recovers on the next poll; back off a little.
                    errors += 1;
                    tracing::debug!(error = %e, "watch error");
                    let pause = (self.options.backoff * errors).min(Duration::from_secs(5));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Which verbs on `pods/exec` the identity lacks in `ns`, for an exec refused at the
    /// upgrade. A WebSocket exec is a GET, authorized as `get`, and kube-apiserver 1.35+ also
    /// checks `create`, refusing with no reason ("is forbidden: "), so the answer may not say
    /// which. Asked with SelfSubjectAccessReviews, which every authenticated identity may
    /// make; a review that fails, or reviews that allow both, leave both named.
    async fn exec_verbs_refused(&self, ns: &str) -> &'static str {
        let mut refused = Vec::new();
        for verb in ["get", "create"] {
            if !self.allowed(ns, verb, "exec").await {
                refused.push(verb);
            }
        }
        match refused[..] {
            ["get"] => "get",
            ["create"] => "create",
            _ => "get and create",
        }
    }

    /// Runs one exec, retrying connection failures while the container still runs.
    async fn exec(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        argv: &[String],
    ) -> Result<ExecOutcome, Stop> {
        let api = self.pods(ns);
        let ap = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut delay = self.options.backoff;
        let mut attempt = 1;
        let mut process = loop {
            match api.exec(name, argv.to_vec(), &ap).await {
                Ok(p) => break p,
                Err(e) => {
                    // A refused exec ran nothing and will be refused again: stop with the
                    // missing permission, before anything is recorded as done.
                    if let Some(status) = forbidden_message(&e) {
                        let verb = self.exec_verbs_refused(ns).await;
                        return Err(Stop::Err(forbidden_error(
                            verb,
                            "pods/exec",
                            ns,
                            format!("exec into container {container} of pod {ns}/{name}"),
                            // kube-apiserver's own `create` check gives no reason: it
                            // ends "is forbidden: ".
                            format!(
                                "{}; an exec over WebSocket needs both get and create on \
                                 pods/exec",
                                status.trim_end_matches([' ', ':'])
                            ),
                        )));
                    }
                    // Before the upgrade: what is the pod's state?
                    let pod = self.get(ns, name).await?;
                    let Some(pod) = pod else {
                        return Err(Stop::Gone);
                    };
                    if let State::Terminated(_) | State::Missing = container_state(&pod, container)
                    {
                        return Ok(ExecOutcome {
                            result: "container-gone",
                            exit_code: None,
                            message: Some(e.to_string()),
                            stdout: String::new(),
                            stderr: String::new(),
                        });
                    }
                    if attempt >= self.options.retries {
                        return Ok(ExecOutcome {
                            result: "failed",
                            exit_code: None,
                            message: Some(e.to_string()),
                            stdout: String::new(),
                            stderr: String::new(),
                        });
                    }
                    tracing::debug!(attempt, error = %e, "exec failed to start, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        };
        let limit = self.options.output_limit;
        let out = process
            .stdout()
            .map(|r| tokio::spawn(read_bounded(r, limit)));
        let err = process
            .stderr()
            .map(|r| tokio::spawn(read_bounded(r, limit)));
        let status = process.take_status();
        let joined = tokio::time::timeout(self.options.exec_timeout, process.join()).await;
        let status = match status {
            Some(s) => tokio::time::timeout(Duration::from_millis(500), s)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let collect = |h: Option<tokio::task::JoinHandle<String>>| async move {
            match h {
                Some(h) => {
                    let abort = h.abort_handle();
                    match tokio::time::timeout(Duration::from_millis(300), h).await {
                        Ok(Ok(s)) => s,
                        _ => {
                            abort.abort();
                            String::new()
                        }
                    }
                }
                None => String::new(),
            }
        };
        let stdout = collect(out).await;
        let stderr = collect(err).await;
        let mut outcome = ExecOutcome {
            result: "ran",
            exit_code: None,
            message: None,
            stdout,
            stderr,
        };
        match status {
            Some(st) if st.status.as_deref() == Some("Success") => outcome.exit_code = Some(0),
            Some(st) => {
                let code = st
                    .details
                    .as_ref()
                    .and_then(|d| d.causes.as_ref())
                    .into_iter()
                    .flatten()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message.as_deref())
                    .and_then(|m| m.parse::<i32>().ok());
                let message = st.message.clone().unwrap_or_default();
                outcome.exit_code = code;
                outcome.result = if code.is_some() {
                    "ran"
                } else if message.contains("container not found") || message.contains("not running")
                {
                    "container-gone"
                } else {
                    "failed"
                };
                outcome.message = Some(message);
            }
            None => {
                outcome.result = "dropped";
                outcome.message = Some(match joined {
                    Ok(Err(e)) => format!("the exec connection dropped: {e}"),
                    Err(_) => "the exec timed out".into(),
                    Ok(Ok(())) => "the exec ended without a status".into(),
                });
            }
        }
        Ok(outcome)
    }

    /// One `pods/proxy` request, when allowed.
    async fn http(
        &self,
        ns: &str,
        name: &str,
        action: &Value,
    ) -> Result<(&'static str, String), Stop> {
        if !self.options.pods_proxy {
            return Ok((
                "refused",
                "an http action needs pods/proxy, which is not allowed (--pods-proxy)".into(),
            ));
        }
        let method = action
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET");
        let port = action.get("port").and_then(Value::as_u64).unwrap_or(80);
        let path = action.get("path").and_then(Value::as_str).unwrap_or("/");
        let path = path.trim_start_matches('/');
        let uri = format!("/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/{path}");
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Vec::new());
        let Ok(req) = req else {
            return Ok(("refused", "an invalid http action".into()));
        };
        match tokio::time::timeout(self.options.http_timeout, self.client.request_text(req)).await {
            Ok(Ok(body)) => Ok(("ran", body.chars().take(200).collect())),
            Ok(Err(e)) if is_not_found(&e) => {
                if self.get(ns, name).await?.is_none() {
                    return Err(Stop::Gone);
                }
                Ok(("failed", e.to_string()))
            }
            Ok(Err(e)) => {
                // RBAC's verb for the proxied method (the API server's own mapping).
                let verb = match method {
                    "GET" | "HEAD" => "get",
                    "POST" => "create",
                    "PUT" => "update",
                    "PATCH" => "patch",
                    "DELETE" => "delete",
                    _ => "proxy",
                };
                match forbidden(&e, verb, "pods/proxy", ns, || {
                    format!("{method} :{port}/{path} through pods/proxy of pod {ns}/{name}")
                }) {
                    Some(err) => Err(Stop::Err(err)),
                    None => Ok(("failed", e.to_string())),
                }
            }
            Err(_) => Ok(("failed", "timed out".into())),
        }
    }
}

pub(super) fn steps_of(stop: &Value) -> Vec<Value> {
    stop.get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub(super) fn step_report(index: usize, step: &Value, result: &str) -> StepReport {
    StepReport {
        index,
        step: step.clone(),
        result: result.to_owned(),
        exit_code: None,
        message: None,
        stdout: String::new(),
        stderr: String::new(),
        terminated_after_ms: None,
        millis: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_a_dns_subdomain() {
        assert_eq!(event_name("p", 255), "p.sidekill.ff");
        let long = "a".repeat(240) + "-" + &"b".repeat(12);
        let name = event_name(&long, u128::MAX);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(!name.contains("-.") && !name.contains(".."), "{name}");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
