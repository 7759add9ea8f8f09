//! Diagnostics: what will go wrong (or differently) when a plan runs, and how to fix it.

use alloc::string::String;
use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The sidecar will not stop this way, or a setting is ignored entirely.
    Error,
    /// The sidecar may not stop, or stops later than it could.
    Warning,
    /// Worth knowing; nothing is wrong.
    Info,
}

/// A stable diagnostic code. The JSON form (kebab-case) is part of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The kill-cmd annotation is not JSON.
    KillCmdNotJson,
    /// The kill-cmd annotation is JSON but not an array.
    KillCmdNotArray,
    /// The kill-cmd annotation is an empty array.
    KillCmdEmpty,
    /// An element of the kill-cmd array is not a string.
    KillCmdNotString,
    /// An element of the kill-cmd array is an empty string.
    KillCmdEmptyArgument,
    /// The kill-cmd annotation is longer than 4 KiB.
    KillCmdTooLong,
    /// One argument has a second `%d`.
    KillCmdSecondSignalVerb,
    /// One argument has `%d` and another `%` verb.
    KillCmdOtherVerb,
    /// The kill-cmd annotation names a container the pod does not have.
    KillCmdUnknownContainer,
    /// The kill-cmd annotation's suffix is not a valid container name.
    KillCmdInvalidSuffix,
    /// The kill command has no `%d`, so SIGTERM and SIGKILL send the same thing.
    KillCmdNoSignal,
    /// The kill-cmd annotation is for a container sidekill does not stop.
    KillCmdNotApplicable,
    /// The image is known to have no `/bin/sh`, so the default command fails.
    NoShell,
    /// The container runs as non-root, so `kill 1` may be refused.
    NonRoot,
    /// `shareProcessNamespace: true`: PID 1 is the pause process, not the sidecar.
    SharedProcessNamespace,
    /// PID 1 ignores SIGKILL sent from inside its own PID namespace.
    Pid1IgnoresSigkill,
    /// PID 1 has no SIGTERM handler unless the program installs one.
    SigtermNeedsHandler,
    /// A preStop hook is set but is not run when a sidecar is stopped by exec.
    PreStopNotRun,
    /// `lifecycle.stopSignal` is set but is not used when a sidecar is stopped by exec.
    StopSignalNotUsed,
    /// A preset needs a feature of the sidecar that is not enabled.
    PresetNeedsFeature,
    /// A preset's HTTP step needs `pods/proxy`, which the host may not use. Not emitted from
    /// ABI 1.3: every known quit endpoint refuses callers outside the pod, so no step goes
    /// through `pods/proxy` (see [`Code::LoopbackOnly`]).
    PodsProxyNotAllowed,
    /// The preset does not apply because the container's command was overridden.
    PresetCommandOverridden,
    /// A native sidecar: Kubernetes stops it, no kill is needed.
    NativeSidecar,
    /// Native sidecars need Kubernetes 1.29 or later.
    NativeSidecarUnsupported,
    /// The pod's only container is a proxy: nothing to stop.
    ProxyIsWorkload,
    /// A proxy waits for Argo's `wait` container before it is stopped.
    ProxyAfterWait,
    /// `terminationGracePeriodSeconds: 0`: no wait and no SIGKILL step.
    NoGracePeriod,
    /// The pod's main containers have not finished: sidecars are not stopped yet.
    NotReady,
    /// A sidecar under an executor or layout that cannot stop it.
    Unsupported,
    /// A sidecar no known injector added; the default command is a guess.
    UnknownSidecar,
    /// A sidecar or main-container declaration names a container the pod does not have.
    DeclaredContainerMissing,
    /// A declaration contradicts another source (another declaration, or the pod itself).
    DeclarationConflict,
    /// `restartPolicy: Never`: the sidecar's expected non-zero exit makes the pod `Failed`
    /// (for a Job: a counted failure and a new pod that runs the main work again).
    PodFailsOnExit,
    /// `restartPolicy: OnFailure`: the kubelet restarts a sidecar that exits non-zero, so the
    /// pod never completes.
    SidecarRestarted,
    /// Argo fails the step on a sidecar's exit code other than 0, 137 and 143.
    ArgoStepFailsOnExit,
    /// `restartPolicy: Always`: a long-running pod; nothing is stopped.
    LongRunning,
    /// A command expected to exit 0 was chosen over one expected to exit non-zero.
    ExitZeroPreferred,
    /// The quit endpoint accepts only callers inside the pod: `pods/proxy` cannot reach it,
    /// so the request runs from inside the pod's network namespace.
    LoopbackOnly,
    /// The container is stopped by swapping its image for the nop.
    ImageSwap,
    /// Image swap is allowed but would not end in exit 0, so it is not used.
    ImageSwapRefused,
    /// The container is stopped by an ephemeral quitter container.
    EphemeralQuitter,
    /// Only the ephemeral quitter could reach the sidecar's quit endpoint, and the host may
    /// not use it.
    QuitterNotAllowed,
    /// The pod opts into an injector and has none of its containers yet: the pod that runs
    /// will have a sidecar this plan does not show (ABI 1.4).
    WillBeInjected,
    /// `facts.inject` asked for an injection: what the injector added, or why it left the pod
    /// alone (ABI 1.4).
    InjectionSimulated,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// How serious.
    pub severity: Severity,
    /// The container it is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong and why.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Diagnostic {
    /// A diagnostic about one container.
    pub fn new(
        code: Code,
        severity: Severity,
        container: Option<&str>,
        message: String,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity,
            container: container.map(String::from),
            message,
            fix: fix.into(),
        }
    }
}
