//! What stopping a sidecar does to the pod's result: the exit code each stop is expected
//! to produce, the pod's restart policy and owner, and the predicted end of each
//! container, of the pod and of the Argo step.
//!
//! Stopping a sidecar is not the goal; the goal is that the pod completes with the result
//! of its main containers. The rules, each from its source:
//! - kubernetes `pkg/kubelet/kubelet_pods.go` (`getPhase`): with `restartPolicy: Never`, a
//!   regular container that exits non-zero makes the pod `Failed`; with `OnFailure` the
//!   kubelet restarts it and the pod stays `Running`; with `Always` every container is
//!   restarted; restartable init containers (native sidecars) are left out of the phase.
//! - kubernetes `pkg/controller/job/job_controller.go`: a `Failed` pod counts against the
//!   Job's `backoffLimit` (default 6, `pkg/apis/batch/v1/defaults.go`) and is replaced by a
//!   new pod, which runs the main work again.
//! - argo-workflows `workflow/controller/operator.go` (`inferFailedReason`): for a `Failed`
//!   pod, a sidecar's exit code 137 or 143 is ignored; any other non-zero code fails the step.
//! - containerd `sys/reaper/reaper_unix.go` and runc `libcontainer/utils/utils.go`
//!   (`ExitStatus`): a process killed by signal N is reported as exit code 128+N.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Serialize, Serializer};

use crate::classify::{Classified, Role, Software};
use crate::input::Subject;
use crate::plan::{CommandSource, SIGKILL};
use crate::pod::{Container, ContainerState, Pod};

/// A pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RestartPolicy {
    /// A container that exits is not restarted: a non-zero exit makes the pod `Failed`.
    Never,
    /// A container that exits non-zero is restarted.
    OnFailure,
    /// Every container that exits is restarted: the pod never completes.
    Always,
}

/// The restart policy that applies, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartPolicyUse {
    /// The policy; `null` when the object does not say and nothing defaults it.
    pub policy: Option<RestartPolicy>,
    /// Where it comes from.
    pub evidence: String,
}

/// What runs the pod and decides what its end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerKind {
    /// An Argo workflow step.
    ArgoWorkflow,
    /// A Kubernetes Job (or CronJob).
    Job,
    /// A pod whose containers restart forever (Deployment, ReplicaSet, StatefulSet, DaemonSet,
    /// or a pod with `restartPolicy: Always`).
    LongRunning,
    /// A pod of its own.
    Pod,
}

/// The pod's owner, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Which.
    pub kind: OwnerKind,
    /// Why.
    pub evidence: String,
}

/// An exit code: a number, or `"unknown"` when the policy cannot know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// This code.
    Code(i64),
    /// Not known: the policy says so rather than guess.
    Unknown,
}

impl Serialize for ExitCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExitCode::Code(code) => s.serialize_i64(*code),
            ExitCode::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// The exit code a stop step is expected to make the container end with, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedExit {
    /// The code.
    pub code: ExitCode,
    /// Why, with the source of the fact.
    pub why: String,
}

fn known(code: i64, why: impl Into<String>) -> ExpectedExit {
    ExpectedExit {
        code: ExitCode::Code(code),
        why: why.into(),
    }
}

fn unknown(why: impl Into<String>) -> ExpectedExit {
    ExpectedExit {
        code: ExitCode::Unknown,
        why: why.into(),
    }
}

/// The predicted end of a pod or an Argo step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Every counted container exits 0.
    Succeeded,
    /// A counted container exits non-zero and is not restarted.
    Failed,
    /// A container keeps running or is restarted: the pod never completes.
    NeverCompletes,
    /// An exit code the result depends on is not known.
    Unknown,
}

/// A predicted end, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// The end.
    pub phase: Phase,
    /// Why.
    pub why: String,
}

impl Prediction {
    /// The end `phase`, because `why`.
    pub fn new(phase: Phase, why: impl Into<String>) -> Prediction {
        Prediction {
            phase,
            why: why.into(),
        }
    }
}

/// What one container's end does to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerResult {
    /// A main container (or Argo's own): its own result; the prediction assumes it succeeds.
    Main,
    /// It exits 0.
    Succeeds,
    /// It exits non-zero and is not restarted: the pod ends `Failed`.
    Fails,
    /// It exits non-zero and the kubelet restarts it: the pod never completes.
    Restarted,
    /// It is not stopped and keeps running: the pod never completes.
    KeepsRunning,
    /// A native sidecar: its exit code does not count.
    NotCounted,
    /// Its exit code is not known.
    Unknown,
}

/// The predicted end of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOutcome {
    /// The container.
    pub container: String,
    /// The exit code it is expected to end with.
    pub exit_code: ExitCode,
    /// What that does to the pod.
    pub result: ContainerResult,
    /// Why.
    pub why: String,
}

/// The predicted end of the pod once the plan has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The pod's phase.
    pub pod: Prediction,
    /// For an Argo pod, the step's result (`inferFailedReason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argo_step: Option<Prediction>,
    /// Each regular container and native sidecar.
    pub containers: Vec<ContainerOutcome>,
}

const LONG_RUNNING_KINDS: [&str; 4] = ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"];

/// The restart policy of a subject.
pub fn restart_policy(subject: &Subject, argo: bool) -> RestartPolicyUse {
    let kind = subject.source.kind.as_str();
    let (policy, evidence) = if LONG_RUNNING_KINDS.contains(&kind) {
        (
            Some(RestartPolicy::Always),
            format!("a {kind}'s pods run with restartPolicy: Always, the only value it accepts"),
        )
    } else if let Some(value) = &subject.pod.restart_policy {
        match value.as_str() {
            "Never" => (
                Some(RestartPolicy::Never),
                "spec.restartPolicy: Never".into(),
            ),
            "OnFailure" => (
                Some(RestartPolicy::OnFailure),
                "spec.restartPolicy: OnFailure".into(),
            ),
            "Always" => (
                Some(RestartPolicy::Always),
                "spec.restartPolicy: Always".into(),
            ),
            other => (
                None,
                format!("spec.restartPolicy `{other}` is none of Never, OnFailure, Always"),
            ),
        }
    } else if argo {
        // argo-workflows workflow/controller/workflowpod.go (createWorkflowPod) sets Never.
        (
            Some(RestartPolicy::Never),
            "not set in the object; Argo creates its pods with restartPolicy: Never".into(),
        )
    } else if kind == "Pod" {
        // kubernetes pkg/apis/core/v1/defaults.go (SetDefaults_Pod) defaults a pod's to Always.
        (
            Some(RestartPolicy::Always),
            "not set; the API server defaults a pod's restartPolicy to Always".into(),
        )
    } else {
        (
            None,
            format!("not set; a {kind}'s pod template must set Never or OnFailure"),
        )
    };
    RestartPolicyUse { policy, evidence }
}

/// What owns the pod.
pub fn owner(
    subject: &Subject,
    argo_evidence: Option<&str>,
    policy: Option<RestartPolicy>,
) -> Owner {
    let pod = &subject.pod;
    let kind = subject.source.kind.as_str();
    let (kind, evidence) = if let Some(e) = argo_evidence {
        (OwnerKind::ArgoWorkflow, e.into())
    } else if let Some(e) = job_evidence(pod, kind) {
        (OwnerKind::Job, e)
    } else if policy == Some(RestartPolicy::Always) {
        (
            OwnerKind::LongRunning,
            "restartPolicy: Always: the kubelet restarts every container that exits".into(),
        )
    } else {
        (
            OwnerKind::Pod,
            "no Job or Argo marks: a pod of its own".into(),
        )
    };
    Owner { kind, evidence }
}

fn job_evidence(pod: &Pod, kind: &str) -> Option<String> {
    if kind == "Job" || kind == "CronJob" {
        return Some(format!("the pod template of a {kind}"));
    }
    for label in ["batch.kubernetes.io/job-name", "job-name"] {
        if let Some(job) = pod.labels.get(label) {
            return Some(format!("label {label}={job}"));
        }
    }
    pod.owner_kinds
        .iter()
        .any(|k| k == "Job")
        .then(|| "an owner reference of kind Job".into())
}

/// What PID 1 of known software exits with on SIGTERM, when its source says.
fn sigterm_exit(software: Option<Software>, c: &Container) -> Option<ExpectedExit> {
    let first = c.argv().next().unwrap_or("");
    match software? {
        // istio/istio pkg/cmd/cmd.go (WaitSignalFunc) cancels the agent's context on SIGTERM;
        // pilot/cmd/pilot-agent/app/cmd.go (newProxyCommand's RunE) then drains and returns
        // nil, so pilot-agent exits 0.
        Software::IstioProxy
            if c.command.is_empty() && c.args.first().map(String::as_str) == Some("proxy")
                || first.ends_with("pilot-agent") =>
        {
            Some(known(0, "pilot-agent drains and exits 0 on SIGTERM (istio/istio pkg/cmd/cmd.go WaitSignalFunc; pilot/cmd/pilot-agent/app/cmd.go RunE returns nil)"))
        }
        // linkerd/linkerd2-proxy linkerd2-proxy/src/main.rs (main): SIGTERM (linkerd/signal)
        // starts a graceful drain, after which main returns: exit 0.
        Software::LinkerdProxy => Some(known(0, "linkerd2-proxy drains and exits 0 on SIGTERM (linkerd/linkerd2-proxy linkerd2-proxy/src/main.rs main, linkerd/signal)")),
        // kumahq/kuma pkg/core/alias.go (SetupSignalHandler): the first SIGTERM drains Envoy
        // for the drain time (30 s by default), app/kuma-dp/cmd/run.go RunE then returns nil
        // and Envoy's stop by context is not an error (app/kuma-dp/pkg/dataplane/envoy/envoy.go Start).
        Software::KumaDp => Some(known(0, "kuma-dp drains Envoy and exits 0 on SIGTERM (kumahq/kuma pkg/core/alias.go SetupSignalHandler; app/kuma-dp/cmd/run.go RunE)")),
        // hashicorp/vault command/commands.go (MakeShutdownCh) closes ShutdownCh on SIGTERM;
        // command/agent.go (AgentCommand.Run) then returns 0. Only when PID 1 is vault itself:
        // the injector's `/bin/sh -ec '... && vault agent'` leaves a shell as PID 1.
        Software::VaultAgent if !is_shell(first) => Some(known(0, "vault agent exits 0 on SIGTERM (hashicorp/vault command/commands.go MakeShutdownCh; command/agent.go AgentCommand.Run returns 0)")),
        // GoogleCloudPlatform/cloud-sql-proxy cmd/root.go (runSignalWrapper) and cmd/errors.go:
        // SIGTERM ends with errSigTerm, code 143, or errSigTermZero, code 0, with
        // --exit-zero-on-sigterm (env CSQL_PROXY_EXIT_ZERO_ON_SIGTERM).
        Software::CloudSqlProxyV2 => Some(if exits_zero_on_sigterm(c) {
            known(0, "--exit-zero-on-sigterm is set: the Cloud SQL proxy exits 0 on SIGTERM (GoogleCloudPlatform/cloud-sql-proxy cmd/root.go runSignalWrapper, cmd/errors.go errSigTermZero)")
        } else {
            known(143, "the Cloud SQL proxy v2 exits 143 on SIGTERM unless run with --exit-zero-on-sigterm (GoogleCloudPlatform/cloud-sql-proxy cmd/root.go runSignalWrapper, cmd/errors.go errSigTerm)")
        }),
        _ => None,
    }
}

fn exits_zero_on_sigterm(c: &Container) -> bool {
    c.argv()
        .any(|a| a == "--exit-zero-on-sigterm" || a == "--exit-zero-on-sigterm=true")
        || c.env_value("CSQL_PROXY_EXIT_ZERO_ON_SIGTERM") == Some("true")
}

fn is_shell(program: &str) -> bool {
    matches!(
        program.rsplit('/').next(),
        Some("sh" | "bash" | "ash" | "dash")
    )
}

/// What one stop step is expected to make the container exit with.
///
/// `preset` is the preset's name when the command is a preset; `targets_pid1` whether the
/// command signals the container's PID 1.
pub fn expected_exit(
    c: &Container,
    classified: &Classified,
    source: CommandSource,
    preset: Option<&str>,
    signal: u8,
    targets_pid1: bool,
) -> ExpectedExit {
    let software = classified.software;
    if let Some(name) = preset {
        return match name {
            // istio/istio pilot/cmd/pilot-agent/status/server.go (handleQuit) cancels the
            // agent's context, so pilot-agent exits 0 (pilot/cmd/pilot-agent/app/cmd.go RunE).
            "istio-proxy" => known(0, "quitquitquit ends pilot-agent with exit 0 (istio/istio pilot/cmd/pilot-agent/status/server.go handleQuit; pilot/cmd/pilot-agent/app/cmd.go RunE returns nil)"),
            // hashicorp/vault command/agent.go (AgentCommand.handleQuit) closes ShutdownCh;
            // AgentCommand.Run's run group then ends and Run returns 0.
            "vault-agent" => known(0, "the quit endpoint ends vault agent with exit 0 (hashicorp/vault command/agent.go AgentCommand.handleQuit, AgentCommand.Run)"),
            // GoogleCloudPlatform/cloud-sql-proxy cmd/root.go (quitquitquit) sends
            // errQuitQuitQuit, code 0 (cmd/errors.go): "This error guarantees a clean exit".
            "cloud-sql-proxy" => known(0, "/quitquitquit ends the Cloud SQL proxy with exit 0 (GoogleCloudPlatform/cloud-sql-proxy cmd/root.go quitquitquit, cmd/errors.go errQuitQuitQuit)"),
            // linkerd/linkerd2-proxy linkerd/app/admin/src/server.rs (shutdown) signals main,
            // which drains and returns (linkerd2-proxy/src/main.rs): exit 0.
            "linkerd-proxy" => known(0, "/shutdown ends linkerd2-proxy with exit 0 (linkerd/linkerd2-proxy linkerd/app/admin/src/server.rs shutdown; linkerd2-proxy/src/main.rs main)"),
            _ if signal == SIGKILL && targets_pid1 => dropped(),
            _ => sigterm_exit(software, c).unwrap_or_else(|| unknown("the preset's program is not known to exit with a given code")),
        };
    }
    if source == CommandSource::ImageSwap {
        // The container's last state is the nop's; the sidecar's own code goes to lastState.
        return known(0, "the kubelet stops the container from outside and starts the nop image in its place, which exits 0 (tektoncd/pipeline pkg/pod/entrypoint.go StopSidecars; kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions restarts a container whose image changed)");
    }
    if signal == SIGKILL && (targets_pid1 || source == CommandSource::Argoexec) {
        return dropped();
    }
    if source == CommandSource::Quitter {
        // The quitter signals the sidecar's process by name; outside PID 1's own namespace
        // (shareProcessNamespace) SIGKILL is delivered and the runtime reports 128+9.
        if signal == SIGKILL {
            return known(137, "SIGKILL kills the process, which the runtime reports as 128+9 (runc libcontainer/utils/utils.go ExitStatus)");
        }
        return sigterm_exit(software, c).unwrap_or_else(|| {
            unknown("the quitter sends SIGTERM to the sidecar's process: what it exits with depends on its handler, which is not known")
        });
    }
    let emissary = source == CommandSource::Argoexec && classified.role == Role::DeclaredSidecar;
    if emissary {
        // argo-workflows cmd/argoexec/commands/emissary.go: the emissary (PID 1) forwards the
        // signal to its child and exits with the child's code; a child killed by the signal
        // is reported as 137 (exitCodeFromErr).
        return match sigterm_exit(software, c) {
            Some(e) => ExpectedExit {
                code: e.code,
                why: format!("the emissary forwards SIGTERM and exits with its child's code: {}", e.why),
            },
            None => unknown("the emissary forwards SIGTERM: a program with no SIGTERM handler dies and the emissary reports 137 (argo-workflows cmd/argoexec/commands/emissary.go exitCodeFromErr), one with a handler exits with a code of its own"),
        };
    }
    if targets_pid1 {
        return sigterm_exit(software, c).unwrap_or_else(|| {
            unknown("PID 1 ignores SIGTERM unless its program installs a handler, and a program with one exits with a code of its own")
        });
    }
    unknown(
        "the command is the annotation's own: what it makes the container exit with is not known",
    )
}

fn dropped() -> ExpectedExit {
    unknown("the kernel drops SIGKILL sent to PID 1 from inside its namespace: this step ends nothing, the container exits only from the SIGTERM step")
}

/// What an exit code does to the pod under its restart policy.
fn result_of(code: ExitCode, policy: Option<RestartPolicy>) -> (ContainerResult, &'static str) {
    match (code, policy) {
        (ExitCode::Code(0), _) => (ContainerResult::Succeeds, "exits 0"),
        (ExitCode::Unknown, _) => (ContainerResult::Unknown, "its exit code is not known"),
        (_, Some(RestartPolicy::Never)) => (
            ContainerResult::Fails,
            "exits non-zero under restartPolicy Never: the pod ends Failed",
        ),
        (_, Some(RestartPolicy::OnFailure | RestartPolicy::Always)) => (
            ContainerResult::Restarted,
            "exits non-zero and the kubelet restarts it",
        ),
        (_, None) => (
            ContainerResult::Unknown,
            "exits non-zero; without a restart policy what follows is not known",
        ),
    }
}

/// One container's stop as the outcome needs it: its verdict allows it to stop, and the
/// exit code its SIGTERM step is expected to give.
pub struct StopExit<'a> {
    /// The container.
    pub container: &'a str,
    /// Whether the plan can stop it at all.
    pub can_stop: bool,
    /// The SIGTERM step's expected exit.
    pub exit: &'a ExpectedExit,
}

/// Predicts the pod's end once the plan has run.
pub fn predict(
    pod: &Pod,
    containers: &[Classified],
    stops: &[StopExit<'_>],
    policy: Option<RestartPolicy>,
    argo: bool,
) -> Outcome {
    let mut out = Vec::new();
    for c in containers {
        let status = match pod.states.get(&c.name) {
            Some(ContainerState::Terminated { exit_code }) => Some(ExitCode::Code(*exit_code)),
            _ => None,
        };
        let (exit_code, result, why) = match c.role {
            Role::ArgoInit | Role::Init => continue,
            Role::NativeSidecar => (
                ExitCode::Unknown,
                ContainerResult::NotCounted,
                "native sidecar: the kubelet stops it and its exit code does not count toward the pod's phase".into(),
            ),
            Role::ArgoWait | Role::ArgoSupervisor | Role::ArgoMain | Role::Workload => match status {
                Some(code) => {
                    let (result, why) = result_of(code, policy);
                    (code, result, format!("already terminated: {why}"))
                }
                None => (
                    ExitCode::Unknown,
                    ContainerResult::Main,
                    "a main container: its own result; the prediction assumes it succeeds".into(),
                ),
            },
            Role::DeclaredSidecar | Role::InjectedSidecar => {
                if let Some(code) = status {
                    let (result, why) = result_of(code, policy);
                    (code, result, format!("already terminated: {why}"))
                } else if let Some(stop) = stops.iter().find(|s| s.container == c.name) {
                    if stop.can_stop {
                        let (result, why) = result_of(stop.exit.code, policy);
                        (stop.exit.code, result, format!("{why}: {}", stop.exit.why))
                    } else {
                        (
                            ExitCode::Unknown,
                            ContainerResult::KeepsRunning,
                            "the plan cannot stop it (see the diagnostics), so it keeps running".into(),
                        )
                    }
                } else {
                    (
                        ExitCode::Unknown,
                        ContainerResult::KeepsRunning,
                        "not stopped: it keeps running".into(),
                    )
                }
            }
        };
        out.push(ContainerOutcome {
            container: c.name.clone(),
            exit_code,
            result,
            why,
        });
    }
    let names = |result: ContainerResult| -> Option<String> {
        let list: Vec<&str> = out
            .iter()
            .filter(|c| c.result == result)
            .map(|c| c.container.as_str())
            .collect();
        (!list.is_empty()).then(|| list.join(", "))
    };
    let pod_prediction = if policy == Some(RestartPolicy::Always) {
        Prediction::new(Phase::NeverCompletes, "restartPolicy Always: a long-running pod, the kubelet restarts every container that exits")
    } else if let Some(n) = names(ContainerResult::KeepsRunning) {
        Prediction::new(Phase::NeverCompletes, format!("{n} keeps running"))
    } else if let Some(n) = names(ContainerResult::Restarted) {
        Prediction::new(
            Phase::NeverCompletes,
            format!("the kubelet restarts {n} (restartPolicy OnFailure)"),
        )
    } else if let Some(n) = names(ContainerResult::Fails) {
        Prediction::new(
            Phase::Failed,
            format!("{n} exits non-zero under restartPolicy Never"),
        )
    } else if let Some(n) = names(ContainerResult::Unknown) {
        Prediction::new(Phase::Unknown, format!("the exit code of {n} is not known"))
    } else {
        Prediction::new(
            Phase::Succeeded,
            "every counted container exits 0, if the main containers succeed",
        )
    };
    let argo_step = argo.then(|| argo_step(&pod_prediction, containers, &out));
    Outcome {
        pod: pod_prediction,
        argo_step,
        containers: out,
    }
}

/// The step's result as argo-workflows `workflow/controller/operator.go` (`inferFailedReason`)
/// decides it: a `Succeeded` pod is a succeeded step; for a `Failed` pod, a main, `wait` or
/// `init` failure fails it, a sidecar's 137 or 143 is ignored and any other code fails it.
fn argo_step(pod: &Prediction, containers: &[Classified], out: &[ContainerOutcome]) -> Prediction {
    if pod.phase != Phase::Failed {
        return pod.clone();
    }
    let sidecar = |name: &str| {
        containers.iter().any(|c| {
            c.name == name && matches!(c.role, Role::DeclaredSidecar | Role::InjectedSidecar)
        })
    };
    let failing: Vec<&ContainerOutcome> = out
        .iter()
        .filter(|c| c.result == ContainerResult::Fails)
        .collect();
    if let Some(c) = failing
        .iter()
        .find(|c| !sidecar(&c.container) || !matches!(c.exit_code, ExitCode::Code(137 | 143)))
    {
        return Prediction {
            phase: Phase::Failed,
            why: format!(
                "Argo fails the step on `{}`'s exit code (inferFailedReason ignores only a sidecar's 137 and 143)",
                c.container
            ),
        };
    }
    Prediction::new(Phase::Succeeded, "the pod ends Failed, but Argo ignores a sidecar's 137 and 143 (inferFailedReason): the step succeeds if main and wait do")
}
