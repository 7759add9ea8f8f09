//! The termination plan: which containers to stop, in what order, with which command,
//! how long to wait, and what will fail and why.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;

use crate::argo;
use crate::classify::{classify, Classified, Injector, Role, Software};
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::inject::{self, Injection, Mark};
use crate::input::{Facts, Source, Subject};
use crate::killcmd::{self, Problem};
use crate::matrix::{matrix, Executor, Row};
use crate::method::{self, Action, Method, MethodKind};
use crate::nop::{self, SwapExit};
use crate::outcome::{
    self, ExitCode, ExpectedExit, Outcome, Owner, OwnerKind, RestartPolicy, RestartPolicyUse,
    StopExit,
};
use crate::pod::{Container, ContainerList, ContainerState, Pod};
use crate::presets::{self, Endpoint, Preset};

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;
/// SIGTERM's number on Linux.
pub const SIGTERM: u8 = 15;
/// SIGKILL's number on Linux.
pub const SIGKILL: u8 = 9;
/// Native sidecars are on by default from this Kubernetes version.
pub const NATIVE_SIDECARS_SINCE: (u32, u32) = (1, 29);

/// Where a kill command comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandSource {
    /// The `workflows.argoproj.io/kill-cmd-<container>` annotation.
    Annotation,
    /// A preset for known software.
    Preset,
    /// argoexec, mounted by Argo into the container.
    Argoexec,
    /// `/bin/sh -c 'kill -%d 1'`.
    Default,
    /// The nop image swapped in for the container's own ([`crate::nop`]).
    ImageSwap,
    /// sidekill's quitter, in an ephemeral container.
    Quitter,
}

/// How one container would be signalled, whether or not sidekill stops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KillCommand {
    /// The container.
    pub container: String,
    /// Where the command comes from.
    pub source: CommandSource,
    /// The preset's name and source, when a preset is used, or when the kill-cmd annotation's
    /// command makes the same request as the preset (then `source` stays `annotation`, and the
    /// command is judged as the preset is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The request for SIGTERM.
    pub sigterm: Action,
    /// The request for SIGKILL, absent when the grace period is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigkill: Option<Action>,
    /// What Argo itself would run for SIGTERM; `null` when Argo runs nothing (bad annotation).
    pub argo_sigterm: Option<Vec<String>>,
}

/// Whether the pod's main work is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyState {
    /// Every main container has terminated, or one has failed: stop the sidecars now.
    Ready,
    /// A main container is still running or waiting.
    NotReady,
    /// The object carries no container status (a manifest or template).
    Unknown,
}

/// Readiness for sidecar termination, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The state.
    pub state: ReadyState,
    /// Why.
    pub reason: String,
}

/// How sure the plan is that a container will stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The command reaches something known to shut the sidecar down.
    Stops,
    /// It stops if its PID 1 handles SIGTERM; the plan cannot know.
    MayStop,
    /// The command cannot work; see the diagnostics.
    CannotStop,
}

/// Where in the order a container is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Other sidecars, stopped first.
    Sidecar,
    /// Network proxies, stopped last: the others may need the network to shut down.
    Proxy,
}

/// One step of a container's stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Wait until another container has terminated (Argo's `wait`, before a proxy).
    Await {
        /// The container to wait for.
        container: String,
    },
    /// Send a stop request.
    Send {
        /// The signal number the request carries.
        signal: u8,
        /// The signal's name.
        #[serde(rename = "signalName")]
        signal_name: &'static str,
        /// The request.
        action: Action,
        /// The exit code the container is expected to end with if this step stops it.
        #[serde(rename = "expectedExit")]
        expected_exit: ExpectedExit,
        /// The HTTP endpoint the request calls, when it is one, with who may reach it.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<Endpoint>,
    },
    /// Watch the pod until the container terminates, for at most `seconds`.
    Wait {
        /// The grace period.
        seconds: i64,
    },
}

/// The stop of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStop {
    /// The container.
    pub container: String,
    /// Its place in the order.
    pub group: Group,
    /// Where the command comes from.
    pub source: CommandSource,
    /// The stop method, and why it was chosen.
    pub method: Method,
    /// How sure the plan is.
    pub verdict: Verdict,
    /// The steps, in order; empty when no method can stop the container.
    pub steps: Vec<Step>,
}

/// A container the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// The container.
    pub container: String,
    /// Why it is not stopped.
    pub reason: &'static str,
}

/// The termination plan of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The grace period between SIGTERM and SIGKILL.
    pub grace_period_seconds: i64,
    /// The containers to stop, in order.
    pub stops: Vec<ContainerStop>,
    /// Containers left alone.
    pub skipped: Vec<Skip>,
    /// The predicted end of each container, of the pod and of the Argo step.
    pub outcome: Outcome,
}

/// The matrix row that applies to this pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixUse {
    /// The executor.
    pub executor: Executor,
    /// Its row.
    pub row: Row,
    /// The columns this pod has containers in.
    pub applies: Vec<&'static str>,
}

/// A summary of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    /// The pod's name (or `generateName`).
    pub name: String,
    /// The namespace, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether Argo runs the pod.
    pub argo: bool,
    /// Why it is or is not an Argo pod.
    pub evidence: String,
    /// The main containers.
    pub main_containers: Vec<String>,
    /// The restart policy that applies, and where it comes from.
    pub restart_policy: RestartPolicyUse,
    /// What runs the pod: an Argo workflow, a Job, a long-running controller, or nothing.
    pub owner: Owner,
}

/// Classification of one pod: the `classify` call's answer per pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// Where the pod comes from.
    pub source: Source,
    /// The pod.
    pub pod: PodSummary,
    /// Every container, classified.
    pub containers: Vec<Classified>,
}

/// Everything the policy decides about one pod: the `plan` call's answer per pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Where the pod comes from.
    pub source: Source,
    /// The pod.
    pub pod: PodSummary,
    /// Every container, classified.
    pub containers: Vec<Classified>,
    /// How each regular container would be signalled.
    pub commands: Vec<KillCommand>,
    /// Whether the sidecars should be stopped now.
    pub readiness: Readiness,
    /// The support matrix row that applies.
    pub matrix: MatrixUse,
    /// The plan.
    pub plan: Plan,
    /// What will go wrong, and fixes.
    pub diagnostics: Vec<Diagnostic>,
    /// The simulated injections (`facts.inject`, ABI 1.4) and the injected pod planned here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection: Option<Injection>,
}

/// Classifies one pod.
pub fn classify_subject(subject: &Subject, facts: &Facts) -> Classification {
    classify_with_notes(subject, facts).0
}

/// Classifies one pod, with the declarations' diagnostics.
fn classify_with_notes(subject: &Subject, facts: &Facts) -> (Classification, Vec<Diagnostic>) {
    let (class, containers) = classify(subject, facts);
    let restart_policy = outcome::restart_policy(subject, class.argo);
    let owner = outcome::owner(
        subject,
        class.argo.then_some(class.evidence.as_str()),
        restart_policy.policy,
    );
    let classification = Classification {
        source: subject.source.clone(),
        pod: PodSummary {
            name: subject.pod.name.clone(),
            namespace: subject.pod.namespace.clone(),
            argo: class.argo,
            evidence: class.evidence,
            main_containers: class.main_containers,
            restart_policy,
            owner,
        },
        containers,
    };
    (classification, class.notes)
}

/// Plans one pod.
pub fn plan_subject(subject: &Subject, facts: &Facts) -> Report {
    let (
        Classification {
            source,
            pod: summary,
            containers,
        },
        declaration_notes,
    ) = classify_with_notes(subject, facts);
    let mut diagnostics = Vec::new();
    let pod = &subject.pod;
    let grace = pod
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let policy = summary.restart_policy.policy;
    let long_running = policy == Some(RestartPolicy::Always);

    let annotations = kill_cmd_annotations(pod, &containers, facts, &mut diagnostics);
    diagnostics.extend(declaration_notes);
    injection_notes(subject, facts, &mut diagnostics);
    let mut commands = Vec::new();
    let mut command_notes = BTreeMap::new();
    let mut quit_presets = BTreeMap::new();
    for classified in containers
        .iter()
        .filter(|c| c.list == ContainerList::Containers)
    {
        let Some(c) = pod.container(&classified.name) else {
            continue;
        };
        let (command, notes, quit) =
            resolve_command(pod, c, classified, annotations.get(c.name.as_str()), grace);
        command_notes.insert(c.name.clone(), notes);
        if let Some(quit) = quit {
            quit_presets.insert(c.name.clone(), quit);
        }
        commands.push(command);
    }

    let readiness = readiness(pod, &summary.main_containers, summary.argo, policy);
    if long_running {
        diagnostics.push(Diagnostic::new(
            Code::LongRunning,
            Severity::Info,
            None,
            format!("a long-running pod ({}): its containers are restarted whenever they exit, so it never completes and nothing is stopped", summary.restart_policy.evidence),
            "nothing to do: sidekill only stops sidecars of batch pods (Jobs, Argo steps, pods with restartPolicy Never or OnFailure)",
        ));
    } else if readiness.state == ReadyState::NotReady {
        diagnostics.push(Diagnostic::new(
            Code::NotReady,
            Severity::Info,
            None,
            format!("not ready for sidecar termination: {}", readiness.reason),
            "nothing to do: sidekill acts once the main containers finish",
        ));
    }

    let wait_pending = summary.argo
        && containers.iter().any(|c| c.role == Role::ArgoWait)
        && !matches!(
            pod.states.get("wait"),
            Some(ContainerState::Terminated { .. })
        );
    let mut stops = Vec::new();
    let mut skipped = Vec::new();
    for classified in &containers {
        let name = classified.name.as_str();
        let reason = if long_running {
            Some("long-running pod (restartPolicy Always): nothing is stopped")
        } else {
            skip_reason(classified, pod)
        };
        if let Some(reason) = reason {
            skipped.push(Skip {
                container: name.into(),
                reason,
            });
            continue;
        }
        let (Some(c), Some(command)) = (
            pod.container(name),
            commands.iter().find(|k| k.container == name),
        ) else {
            continue;
        };
        let mut notes = command_notes.remove(name).unwrap_or_default();
        let stop = stop_container(
            &StopInput {
                pod,
                c,
                classified,
                command,
                quit: quit_presets.get(name),
                facts,
                grace,
                wait_pending,
            },
            &mut notes,
        );
        exit_notes(
            c,
            classified,
            &stop,
            &summary.owner,
            policy,
            native_ok(facts),
            &mut notes,
        );
        diagnostics.extend(notes);
        stops.push(stop);
    }
    merge_pid1_notes(&mut diagnostics);
    // Proxies go after the other sidecars; each group keeps pod order.
    let (mut stops, proxies): (Vec<_>, Vec<_>) =
        stops.into_iter().partition(|s| s.group == Group::Sidecar);
    stops.extend(proxies);

    for classified in &containers {
        match classified.role {
            Role::NativeSidecar => native_notes(classified, facts, &mut diagnostics),
            Role::Workload if classified.injector.is_some() => diagnostics.push(Diagnostic::new(
                Code::ProxyIsWorkload,
                Severity::Info,
                Some(&classified.name),
                format!("`{}` is the pod's only container, so it is the workload (a gateway), not a sidecar", classified.name),
                "nothing to do",
            )),
            _ => {}
        }
    }
    if grace == 0 && !stops.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::NoGracePeriod,
            Severity::Info,
            None,
            "terminationGracePeriodSeconds is 0: SIGTERM is sent with no wait and no SIGKILL step"
                .into(),
            "set a grace period if the sidecars need time to drain",
        ));
    }

    let executor = facts.executor.unwrap_or(if summary.argo {
        Executor::Emissary
    } else {
        Executor::None
    });
    if executor == Executor::Docker && containers.iter().any(|c| c.role == Role::InjectedSidecar) {
        diagnostics.push(Diagnostic::new(
            Code::Unsupported,
            Severity::Warning,
            None,
            "Argo's docker executor cannot stop injected sidecars; only sidekill's exec plan stops them".into(),
            "upgrade to Argo v3.4+ (emissary) or run sidekill's controller",
        ));
    }
    let mut applies = Vec::new();
    for (column, role) in [
        ("declared", Role::DeclaredSidecar),
        ("injected", Role::InjectedSidecar),
        ("native", Role::NativeSidecar),
    ] {
        if containers.iter().any(|c| c.role == role) {
            applies.push(column);
        }
    }
    let row = matrix()
        .row(executor)
        .cloned()
        .unwrap_or_else(|| matrix().rows.remove(0));
    let stop_exits: Vec<StopExit<'_>> = stops
        .iter()
        .filter_map(|s| {
            let exit = s.steps.iter().find_map(|step| match step {
                Step::Send {
                    signal: SIGTERM,
                    expected_exit,
                    ..
                } => Some(expected_exit),
                _ => None,
            })?;
            Some(StopExit {
                container: &s.container,
                can_stop: s.verdict != Verdict::CannotStop,
                exit,
            })
        })
        .collect();
    let outcome = outcome::predict(pod, &containers, &stop_exits, policy, summary.argo);

    Report {
        source,
        pod: summary,
        containers,
        commands,
        readiness,
        matrix: MatrixUse {
            executor,
            row,
            applies,
        },
        plan: Plan {
            grace_period_seconds: grace,
            stops,
            skipped,
            outcome,
        },
        diagnostics,
        injection: subject.injection.clone(),
    }
}

/// What injection changes: the injectors the pod opts into and has not met yet, and the
/// simulated injections.
#[inline(never)] // see stop_container
fn injection_notes(subject: &Subject, facts: &Facts, diagnostics: &mut Vec<Diagnostic>) {
    let pod = &subject.pod;
    for injected in subject.injection.iter().flat_map(|i| &i.injected) {
        diagnostics.push(Diagnostic::new(
            Code::InjectionSimulated,
            Severity::Info,
            None,
            injected.reason.clone(),
            "nothing to do: the plan is of the injected pod",
        ));
    }
    // A pod with a status was created: injection, if any, has happened.
    if pod.has_status {
        return;
    }
    for (name, injector) in inject::INJECTORS {
        if facts.inject.iter().any(|s| s.injector == injector) {
            continue;
        }
        let Some(Mark::In(mark)) = inject::mark(pod, injector) else {
            continue;
        };
        if inject::already_has(pod, injector).is_some() {
            continue;
        }
        let (init, sidecar) = inject::container_names(injector);
        diagnostics.push(Diagnostic::new(
            Code::WillBeInjected,
            Severity::Warning,
            None,
            format!("will be injected by {}: the pod opts in ({mark}), so the pod that runs will have `{init}` and `{sidecar}`, which this plan of the manifest does not show", inject::display(injector)),
            format!("simulate with --inject {name} (facts.inject.{name}) to plan the injected pod"),
        ));
    }
}

#[inline(never)] // see stop_container
fn skip_reason(c: &Classified, pod: &Pod) -> Option<&'static str> {
    let reason = match c.role {
        Role::ArgoInit | Role::ArgoWait | Role::ArgoSupervisor => {
            "Argo's own container: it exits by itself"
        }
        Role::ArgoMain | Role::Workload => "main container: its exit is what the pod waits for",
        Role::NativeSidecar => {
            "native sidecar: the kubelet stops it after the main containers exit"
        }
        Role::Init => "init container: it finished before the pod started",
        Role::DeclaredSidecar | Role::InjectedSidecar => {
            if let Some(ContainerState::Terminated { .. }) = pod.states.get(&c.name) {
                "already terminated"
            } else {
                return None;
            }
        }
    };
    Some(reason)
}

/// Parses every kill-cmd annotation, reporting bad ones, keyed by container name.
#[inline(never)] // see stop_container
fn kill_cmd_annotations<'p>(
    pod: &'p Pod,
    containers: &[Classified],
    facts: &Facts,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<&'p str, Result<Vec<String>, Problem>> {
    let mut parsed = BTreeMap::new();
    for (key, value) in &pod.annotations {
        let Some(suffix) = key.strip_prefix(argo::KILL_CMD_PREFIX) else {
            continue;
        };
        if !killcmd::is_dns1123_label(suffix) {
            diagnostics.push(Diagnostic::new(
                Code::KillCmdInvalidSuffix,
                Severity::Error,
                None,
                format!("annotation {key}: `{suffix}` is not a valid container name (a DNS-1123 label: lower-case letters, digits and '-', at most 63)"),
                "name the container exactly as in the pod spec",
            ));
            continue;
        }
        let Some(classified) = containers.iter().find(|c| c.name == suffix) else {
            // A container an injector adds (issue 19): Argo's documented Istio recipe sets
            // kill-cmd-istio-proxy on a pod that is not injected yet. Not an error.
            let injector = inject::INJECTORS
                .iter()
                .find(|(_, i)| inject::container_names(*i).1 == suffix);
            if let Some((name, injector)) = injector {
                let opted_in = matches!(inject::mark(pod, *injector), Some(Mark::In(_)));
                if opted_in {
                    // `will-be-injected` says what to do; this annotation is for that container.
                    continue;
                }
                let simulated = facts.inject.iter().any(|s| s.injector == *injector);
                let why = if simulated {
                    format!(
                        "the simulated {} injection left the pod alone (see injection-simulated)",
                        inject::display(*injector)
                    )
                } else {
                    format!("{} adds it when it injects the pod, which the pod does not ask for itself; its namespace may", inject::display(*injector))
                };
                diagnostics.push(Diagnostic::new(
                    Code::KillCmdUnknownContainer,
                    Severity::Warning,
                    Some(suffix),
                    format!("annotation {key} is for container `{suffix}`, which the pod does not have: {why}"),
                    format!("if the namespace is injected, simulate with --inject {name} (facts.inject.{name}); if it is not, the annotation does nothing and can go"),
                ));
                continue;
            }
            diagnostics.push(Diagnostic::new(
                Code::KillCmdUnknownContainer,
                Severity::Error,
                Some(suffix),
                format!(
                    "annotation {key} is for container `{suffix}`, which the pod does not have"
                ),
                format!(
                    "rename the annotation to one of: {}",
                    containers
                        .iter()
                        .filter(|c| c.list == ContainerList::Containers && !c.role.is_argo_own())
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        };
        let result = killcmd::parse(value);
        match &result {
            // argo-workflows workflow/signal/signal.go (killCommand): the unmarshal fails, so
            // Argo execs nothing and the sidecar keeps running.
            Err(problem) => diagnostics.push(Diagnostic::new(
                problem.code,
                Severity::Error,
                Some(suffix),
                format!("annotation {key}: {}. Argo's unmarshal of the value fails, so it runs nothing for this container and the pod hangs; sidekill falls back to the next command", problem.detail),
                "write a JSON array of non-empty strings with at most one %d per argument, such as [\"sh\",\"-c\",\"kill -%d 1\"]",
            )),
            // The same function runs fmt.Sprintf on the argument and execs the result: the
            // command runs with `%!d(MISSING)` in it; sidekill runs what Argo runs.
            Ok(template) => diagnostics.extend(killcmd::verb_problems(template).into_iter().map(|problem| {
                Diagnostic::new(
                    problem.code,
                    Severity::Warning,
                    Some(suffix),
                    format!("annotation {key}: {} (argo-workflows workflow/signal/signal.go killCommand, SignalContainer before v3.6); sidekill runs the same", problem.detail),
                    "use one plain %d per argument, such as [\"sh\",\"-c\",\"kill -%d 1\"]",
                )
            })),
        }
        if classified.list == ContainerList::InitContainers {
            diagnostics.push(Diagnostic::new(
                Code::KillCmdNotApplicable,
                Severity::Info,
                Some(suffix),
                format!("annotation {key} is for an init container; only regular containers are signalled"),
                "remove the annotation",
            ));
        }
        parsed.insert(suffix, result);
    }
    parsed
}

/// The command chain: annotation, preset, argoexec, default. Returns the command, the notes
/// that matter if the container is stopped, and the preset whose endpoint only the quitter
/// can call (its image has no client for it).
#[inline(never)] // see stop_container
fn resolve_command(
    pod: &Pod,
    c: &Container,
    classified: &Classified,
    annotation: Option<&Result<Vec<String>, Problem>>,
    grace: i64,
) -> (KillCommand, Vec<Diagnostic>, Option<Preset>) {
    let software = classified.software;
    let mut notes = Vec::new();
    let preset_result = presets::preset_for(pod, c, software);
    // An annotation making the same request as the preset is judged as the preset: same
    // expected exit, same verdict (issue 19).
    let recognized = match (annotation, &preset_result) {
        (Some(Ok(template)), Ok(Some(p))) if presets::same_request(template, p, c, software) => {
            Some(p.clone())
        }
        _ => None,
    };
    // When the annotation's command is expected to exit non-zero and a preset's to exit 0,
    // the preset wins: the pod's result matters more than the command's origin. A command
    // whose code is unknown is the user's choice and stays.
    let annotation = match annotation {
        Some(Ok(template)) if recognized.is_none() => {
            let argv = killcmd::render(template, SIGTERM);
            let exit = outcome::expected_exit(
                c,
                classified,
                CommandSource::Annotation,
                None,
                SIGTERM,
                targets_pid1(&argv),
            );
            let preset_exits_zero = matches!(exit.code, ExitCode::Code(code) if code != 0)
                && matches!(&preset_result, Ok(Some(p)) if p.action.is_some());
            if preset_exits_zero {
                notes.push(Diagnostic::new(
                    Code::ExitZeroPreferred,
                    Severity::Info,
                    Some(&c.name),
                    format!("the kill-cmd annotation's command is expected to exit {} ({}); the preset's endpoint exits 0, so the preset is used", match exit.code { ExitCode::Code(code) => code, ExitCode::Unknown => 0 }, exit.why),
                    "nothing to do, or remove the annotation",
                ));
                None
            } else {
                annotation
            }
        }
        other => other,
    };
    let fallback = argo_fallback(c);
    let argo_sigterm = match annotation {
        Some(Ok(template)) => Some(killcmd::render(template, SIGTERM)),
        Some(Err(_)) => None,
        None => Some(killcmd::render(&fallback.1, SIGTERM)),
    };
    let mut quit = None;
    let (source, preset, action) = match annotation {
        Some(Ok(template)) => (
            CommandSource::Annotation,
            recognized,
            Action::Exec {
                argv: template.clone(),
            },
        ),
        _ => match preset_result {
            Ok(Some(preset)) => match preset.action.clone() {
                Some(action) => (CommandSource::Preset, Some(preset), action),
                None => {
                    quit = Some(preset);
                    (fallback.0, None, Action::Exec { argv: fallback.1 })
                }
            },
            Ok(None) => (fallback.0, None, Action::Exec { argv: fallback.1 }),
            Err(note) => {
                notes.push(note);
                (fallback.0, None, Action::Exec { argv: fallback.1 })
            }
        },
    };
    let render = |signal| match &action {
        Action::Exec { argv } => Action::Exec {
            argv: killcmd::render(argv, signal),
        },
        other => other.clone(),
    };
    let command = KillCommand {
        container: c.name.clone(),
        source,
        preset,
        sigterm: render(SIGTERM),
        sigkill: (grace > 0).then(|| render(SIGKILL)),
        argo_sigterm,
    };
    if let (Action::Exec { argv }, true) = (&action, grace > 0) {
        if !killcmd::has_signal(argv) {
            // Judged by what the command does: only one that sends a signal has a place for %d.
            let (severity, message, fix) = if killcmd::sends_signal(argv) {
                (
                    Severity::Warning,
                    format!("`{}` sends a signal but has no %d, so the SIGKILL step sends the same signal as SIGTERM", argv.join(" ")),
                    "add %d where the signal belongs, such as [\"sh\",\"-c\",\"kill -%d 1\"]",
                )
            } else {
                (
                    Severity::Info,
                    format!("`{}` takes no signal: it makes a request, so the SIGKILL step repeats the same request", argv.join(" ")),
                    "nothing to do: a request that takes no signal has no place for %d",
                )
            };
            notes.push(Diagnostic::new(
                Code::KillCmdNoSignal,
                severity,
                Some(&c.name),
                message,
                fix,
            ));
        }
    }
    (command, notes, quit)
}

/// Argo's own fallback when no annotation applies: argoexec when mounted (`/argo-bin` wins),
/// else the shell default.
fn argo_fallback(c: &Container) -> (CommandSource, Vec<String>) {
    let argv: &[&str] = if c.mounts(argo::ARGO_BIN) {
        &[argo::ARGO_BIN_EXEC, "kill", "%d", "1"]
    } else if c.mounts(argo::VAR_RUN_ARGO) {
        &[argo::VAR_RUN_ARGO_EXEC, "kill", "%d", "1"]
    } else {
        return (
            CommandSource::Default,
            ["/bin/sh", "-c", "kill -%d 1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    };
    (
        CommandSource::Argoexec,
        argv.iter().map(|s| s.to_string()).collect(),
    )
}

#[inline(never)] // see stop_container
fn readiness(pod: &Pod, mains: &[String], argo: bool, policy: Option<RestartPolicy>) -> Readiness {
    if policy == Some(RestartPolicy::Always) {
        return Readiness {
            state: ReadyState::NotReady,
            reason: "a long-running pod (restartPolicy Always): its main containers are restarted, so it is never ready and nothing is stopped".into(),
        };
    }
    if !pod.has_status {
        return Readiness {
            state: ReadyState::Unknown,
            reason: "the object has no container status; the plan shows what happens once the main containers exit".into(),
        };
    }
    if mains.is_empty() {
        return Readiness {
            state: ReadyState::NotReady,
            reason: "the pod has no main container to wait for".into(),
        };
    }
    for name in mains {
        if let Some(ContainerState::Terminated { exit_code }) = pod.states.get(name) {
            if *exit_code == 0 {
                continue;
            }
            // A failed main is the end only when it will not be restarted: under OnFailure the
            // kubelet runs it again, and stopping its proxy now would break the retry.
            if policy == Some(RestartPolicy::Never) || pod.phase.as_deref() == Some("Failed") {
                return Readiness {
                    state: ReadyState::Ready,
                    reason: format!("main container `{name}` failed with exit code {exit_code} and will not be restarted"),
                };
            }
            return Readiness {
                state: ReadyState::NotReady,
                reason: format!("main container `{name}` failed with exit code {exit_code}, and the kubelet restarts it (restartPolicy OnFailure)"),
            };
        }
    }
    if let Some(running) = mains
        .iter()
        .find(|n| !matches!(pod.states.get(*n), Some(ContainerState::Terminated { .. })))
    {
        return Readiness {
            state: ReadyState::NotReady,
            reason: format!("main container `{running}` has not terminated"),
        };
    }
    let what = if argo {
        "main container"
    } else {
        "workload container"
    };
    Readiness {
        state: ReadyState::Ready,
        reason: format!("every {what} has terminated ({})", mains.join(", ")),
    }
}

/// Whether a rendered argv signals PID 1 of the container's own namespace.
fn targets_pid1(argv: &[String]) -> bool {
    argv.last()
        .is_some_and(|last| last == "1" || last.ends_with(" 1"))
}

fn is_shell(program: &str) -> bool {
    matches!(
        program.rsplit('/').next(),
        Some("sh" | "bash" | "ash" | "dash")
    )
}

/// What [`stop_container`] decides from.
struct StopInput<'a> {
    pod: &'a Pod,
    c: &'a Container,
    classified: &'a Classified,
    /// The command inside the container.
    command: &'a KillCommand,
    /// The preset whose endpoint only the quitter can call.
    quit: Option<&'a Preset>,
    facts: &'a Facts,
    grace: i64,
    wait_pending: bool,
}

/// The method picked for one container.
enum Pick<'a> {
    /// The resolved command, through `pods/exec`.
    Exec(String),
    /// Image swap to this nop image, at this index of `spec.containers`.
    Swap {
        image: &'a str,
        index: usize,
        why: String,
    },
    /// The quitter calls the preset's loopback endpoint.
    QuitHttp {
        image: &'a str,
        preset: &'a Preset,
        endpoint: &'a Endpoint,
    },
    /// The quitter signals the sidecar's process by name.
    QuitSignal { image: &'a str, process: String },
    /// Nothing the host may do stops it.
    Refuse,
}

/// Plans the stop of one container, choosing its method.
///
/// The order, first that applies: the kill-cmd annotation or a preset that runs inside the
/// container (the user's choice, and commands known to stop the sidecar); another command
/// inside the container known to end it with exit 0; image swap when allowed and the nop is
/// predicted to exit 0 (it needs nothing inside the container and leaves nothing behind);
/// the ephemeral quitter calling a preset's loopback endpoint, then signalling the sidecar's
/// process by name; the command inside the container whatever its exit; nothing. A command
/// that cannot work (a shell the image lacks, `kill 1` when PID 1 is the pod's pause) is
/// never planned.
///
/// Never inlined: LLVM would inline this single-use function into [`plan_subject`], and the
/// sum is too big for one JVM method when chicory compiles the module to Java bytecode (it
/// then interprets the plan's hottest function; BENCHMARKS.md "Policy module across runtimes").
#[inline(never)]
fn stop_container(input: &StopInput<'_>, notes: &mut Vec<Diagnostic>) -> ContainerStop {
    let StopInput {
        pod,
        c,
        classified,
        command,
        quit,
        facts,
        grace,
        wait_pending,
    } = *input;
    let name = Some(c.name.as_str());
    let software = classified.software;
    let group = if software.is_some_and(Software::is_network_proxy) {
        Group::Proxy
    } else {
        Group::Sidecar
    };
    let mut steps = Vec::new();
    if group == Group::Proxy && wait_pending {
        steps.push(Step::Await {
            container: "wait".into(),
        });
        notes.push(Diagnostic::new(
            Code::ProxyAfterWait,
            Severity::Info,
            name,
            format!("`{}` is stopped only after Argo's `wait` has terminated: `wait` uploads outputs and logs through the proxy (argo-workflows#1282)", c.name),
            "nothing to do",
        ));
    }
    let preset = command.preset.as_ref();
    let pid1_of = |action: &Action| match action {
        Action::Exec { argv } => targets_pid1(argv) || preset.is_some_and(|p| p.signals_pid1),
        Action::ImageSwap { .. } | Action::Ephemeral { .. } => false,
    };
    let expected = |signal, action: &Action| {
        outcome::expected_exit(
            c,
            classified,
            command.source,
            preset.map(|p| p.name),
            signal,
            pid1_of(action),
        )
    };
    let argv: &[String] = match &command.sigterm {
        Action::Exec { argv } => argv,
        Action::ImageSwap { .. } | Action::Ephemeral { .. } => &[],
    };
    let pid1 = pid1_of(&command.sigterm);
    let exec_exit = expected(SIGTERM, &command.sigterm);
    let exec_verdict = match command.source {
        CommandSource::Preset | CommandSource::Annotation if preset.is_some() => Verdict::Stops,
        CommandSource::Argoexec if classified.role == Role::DeclaredSidecar => Verdict::Stops,
        CommandSource::Default | CommandSource::Argoexec
            if presets::pid1_handles_sigterm(c, software) =>
        {
            Verdict::Stops
        }
        _ => Verdict::MayStop,
    };

    // Why the command inside the container cannot work, or is not the best choice.
    let missing_shell = presets::known_without_shell(c, software)
        .and_then(|why| argv.first().filter(|p| is_shell(p)).map(|p| (p, why)));
    let hits_pause = pid1 && pod.share_process_namespace;
    let exec_usable = missing_shell.is_none() && !hits_pause;
    let exec_problem = if let Some((program, why)) = missing_shell {
        format!("`{program}` does not exist in image {} ({why})", c.image)
    } else if hits_pause {
        "shareProcessNamespace is true, so PID 1 is the pod's pause process: `kill 1` would tear down the whole pod".into()
    } else {
        match exec_exit.code {
            ExitCode::Code(code) => format!(
                "the command inside the container is expected to end it with exit {code} ({})",
                exec_exit.why
            ),
            ExitCode::Unknown => format!(
                "the exit code of the command inside the container is not known ({})",
                exec_exit.why
            ),
        }
    };

    let swap = facts
        .stop_methods
        .image_swap
        .as_deref()
        .map(|image| (image, nop::swap_exit(c)));
    let index = pod.containers.iter().position(|x| x.name == c.name);
    let quitter = facts.stop_methods.ephemeral.as_deref();
    let quit_endpoint = quit.and_then(|p| p.endpoint.as_ref().map(|e| (p, e)));
    let process = signal_target(pod, c, software);

    let pick = if exec_usable
        && matches!(
            command.source,
            CommandSource::Annotation | CommandSource::Preset
        ) {
        Pick::Exec(match (command.source, preset) {
            (CommandSource::Annotation, Some(p)) => format!(
                "the kill-cmd annotation's command: the user's choice, the same request as the {} preset",
                p.name
            ),
            (CommandSource::Annotation, None) => {
                "the kill-cmd annotation's command: the user's choice".into()
            }
            (_, Some(p)) => format!(
                "the {} preset runs inside the container with a program its image has",
                p.name
            ),
            (_, None) => "the command inside the container".into(),
        })
    } else if exec_usable && exec_exit.code == ExitCode::Code(0) && exec_verdict == Verdict::Stops {
        Pick::Exec(format!(
            "the command inside the container stops it with exit 0 ({})",
            exec_exit.why
        ))
    } else if let (Some((image, SwapExit::Zero(why))), Some(index)) = (&swap, index) {
        Pick::Swap {
            image,
            index,
            why: format!("{exec_problem}; image swap needs nothing inside the container: {why}"),
        }
    } else if let (Some(image), Some((preset, endpoint))) = (quitter, quit_endpoint) {
        Pick::QuitHttp {
            image,
            preset,
            endpoint,
        }
    } else if let (Some(image), Some(process)) = (quitter, process.clone()) {
        Pick::QuitSignal { image, process }
    } else if exec_usable {
        Pick::Exec(format!(
            "{exec_problem}; no other method is allowed and predicted to end in exit 0"
        ))
    } else {
        Pick::Refuse
    };

    // A command inside the container that stops the sidecar, or image swap, settles it: the
    // methods it made unnecessary are not worth a warning.
    let settled = matches!(pick, Pick::Swap { .. })
        || matches!(pick, Pick::Exec(_)) && exec_verdict == Verdict::Stops;
    // Image swap was allowed, but would not end in exit 0: say why it is not used.
    if let (Some((_, SwapExit::Fails(why) | SwapExit::Unknown(why))), false) = (&swap, settled) {
        notes.push(Diagnostic::new(
            Code::ImageSwapRefused,
            Severity::Warning,
            name,
            format!("image swap is not used for `{}`: {why}", c.name),
            "run the sidecar without `command`, or with a `command[0]` among the nop image's paths (sidekill_policy_info nopPaths)",
        ));
    }
    // An endpoint only the quitter can call, and the quitter is not allowed.
    if let (Some((preset, endpoint)), None, false) = (quit_endpoint, quitter, settled) {
        notes.push(Diagnostic::new(
            Code::QuitterNotAllowed,
            Severity::Warning,
            name,
            format!(
                "the {} preset's endpoint {} {}:{}{} accepts only callers inside the pod, and {}: only sidekill's ephemeral quitter can call it, which the host may not use",
                preset.name,
                endpoint.method,
                endpoint.host,
                endpoint.port,
                endpoint.path,
                preset.no_client.as_deref().unwrap_or("the image has no program to call it")
            ),
            "opt in to the ephemeral quitter and grant pods/ephemeralcontainers (deploy/ overlay), or allow image swap (patch on pods and a nop image)",
        ));
    }

    let (method, source, verdict) = match pick {
        Pick::Exec(evidence) => {
            let endpoint = preset.and_then(|p| p.endpoint.clone());
            steps.push(Step::Send {
                signal: SIGTERM,
                signal_name: "SIGTERM",
                action: command.sigterm.clone(),
                expected_exit: exec_exit,
                endpoint: endpoint.clone(),
            });
            if let Some(sigkill) = &command.sigkill {
                steps.push(Step::Wait { seconds: grace });
                steps.push(Step::Send {
                    signal: SIGKILL,
                    signal_name: "SIGKILL",
                    action: sigkill.clone(),
                    expected_exit: expected(SIGKILL, sigkill),
                    endpoint: endpoint.clone(),
                });
            }
            exec_notes(input, pid1, exec_verdict, notes);
            if let (Some(endpoint), true) = (&endpoint, facts.pods_proxy) {
                loopback_note(c, endpoint, notes);
            }
            (
                Method {
                    kind: MethodKind::Exec,
                    evidence,
                },
                command.source,
                exec_verdict,
            )
        }
        Pick::Swap { image, index, why } => {
            steps.push(Step::Send {
                signal: SIGTERM,
                signal_name: "SIGTERM",
                action: Action::ImageSwap {
                    container_index: index,
                    image: image.into(),
                },
                expected_exit: outcome::expected_exit(
                    c,
                    classified,
                    CommandSource::ImageSwap,
                    None,
                    SIGTERM,
                    false,
                ),
                endpoint: None,
            });
            if grace > 0 {
                steps.push(Step::Wait { seconds: grace });
            }
            notes.push(Diagnostic::new(
                Code::ImageSwap,
                Severity::Info,
                name,
                format!("`{}` is stopped by patching spec.containers[{index}].image to the nop image {image}: the kubelet runs the preStop hook, stops the container from outside (SIGTERM, the grace period, then SIGKILL, which works on a PID 1 without handlers, without a shell and for any user), then starts the nop, which exits 0. Needs patch on pods", c.name),
                "nothing to do: the container's status shows the nop's exit, the sidecar's own goes to lastState",
            ));
            (
                Method {
                    kind: MethodKind::ImageSwap,
                    evidence: why,
                },
                CommandSource::ImageSwap,
                Verdict::Stops,
            )
        }
        Pick::QuitHttp {
            image,
            preset,
            endpoint,
        } => {
            steps.push(Step::Send {
                signal: SIGTERM,
                signal_name: "SIGTERM",
                action: Action::Ephemeral {
                    target_container_name: c.name.clone(),
                    image: image.into(),
                    argv: method::quitter_http(endpoint),
                    run_as_user: None,
                },
                expected_exit: outcome::expected_exit(
                    c,
                    classified,
                    CommandSource::Quitter,
                    Some(preset.name),
                    SIGTERM,
                    false,
                ),
                endpoint: Some(endpoint.clone()),
            });
            if grace > 0 {
                steps.push(Step::Wait { seconds: grace });
            }
            ephemeral_note(c, image, None, notes);
            later_hooks_notes(c, native_ok(facts), notes);
            if facts.pods_proxy {
                loopback_note(c, endpoint, notes);
            }
            let evidence = format!(
                "the {} preset's endpoint {} {}:{}{} accepts only callers inside the pod, and {}; the ephemeral quitter shares the pod's network and makes the request",
                preset.name,
                endpoint.method,
                endpoint.host,
                endpoint.port,
                endpoint.path,
                preset.no_client.as_deref().unwrap_or("the image has no program to call it")
            );
            (
                Method {
                    kind: MethodKind::Ephemeral,
                    evidence,
                },
                CommandSource::Quitter,
                Verdict::Stops,
            )
        }
        Pick::QuitSignal { image, process } => {
            let shared = pod.share_process_namespace;
            let run_as_user = c.run_as_user.or(pod.pod_run_as_user);
            let send = |signal, signal_name| Step::Send {
                signal,
                signal_name,
                action: Action::Ephemeral {
                    target_container_name: c.name.clone(),
                    image: image.into(),
                    argv: method::quitter_signal(signal, &process),
                    run_as_user,
                },
                expected_exit: outcome::expected_exit(
                    c,
                    classified,
                    CommandSource::Quitter,
                    None,
                    signal,
                    !shared,
                ),
                endpoint: None,
            };
            steps.push(send(SIGTERM, "SIGTERM"));
            if grace > 0 {
                steps.push(Step::Wait { seconds: grace });
                // Outside PID 1's own namespace SIGKILL is delivered; inside it is dropped.
                if shared {
                    steps.push(send(SIGKILL, "SIGKILL"));
                }
            }
            ephemeral_note(c, image, Some(&process), notes);
            later_hooks_notes(c, native_ok(facts), notes);
            let verdict = if shared || presets::handles_sigterm(software) {
                Verdict::Stops
            } else {
                Verdict::MayStop
            };
            (
                Method {
                    kind: MethodKind::Ephemeral,
                    evidence: format!("{exec_problem}; the ephemeral quitter signals the process `{process}` by name"),
                },
                CommandSource::Quitter,
                verdict,
            )
        }
        Pick::Refuse => {
            let missing = missing_methods(
                swap.as_ref(),
                quitter,
                quit_endpoint.is_some(),
                process.is_some(),
            );
            let (code, message) = match missing_shell {
                Some((program, why)) => (
                    Code::NoShell,
                    format!("`{program}` does not exist in image {} ({why}): an exec would exit 127 and signal nothing, so nothing is planned", c.image),
                ),
                None => (
                    Code::SharedProcessNamespace,
                    "shareProcessNamespace is true, so PID 1 is the pod's pause process, not this sidecar: `kill 1` would make pause exit and tear down the whole pod, so nothing is planned".into(),
                ),
            };
            let native = if native_ok(facts) {
                " (Kubernetes 1.29+)"
            } else {
                ""
            };
            let fix = match (software == Some(Software::LinkerdProxy), native.is_empty()) {
                (true, false) => format!("{missing}; or set config.linkerd.io/proxy-admin-shutdown: enabled, or use linkerd's native sidecar mode{native}"),
                (true, true) => format!("{missing}; or set config.linkerd.io/proxy-admin-shutdown: enabled"),
                (false, false) => format!("{missing}; or set workflows.argoproj.io/kill-cmd-{} to a program the image has that signals the sidecar's own process, or run it as a native sidecar{native}", c.name),
                (false, true) => format!("{missing}; or set workflows.argoproj.io/kill-cmd-{} to a program the image has that signals the sidecar's own process", c.name),
            };
            notes.push(Diagnostic::new(code, Severity::Error, name, message, fix));
            if classified.injector == Some(Injector::Unknown) {
                unknown_sidecar_note(c, notes);
            }
            (
                Method {
                    kind: MethodKind::None,
                    evidence: format!("{exec_problem}, and {missing}"),
                },
                command.source,
                Verdict::CannotStop,
            )
        }
    };
    ContainerStop {
        container: c.name.clone(),
        group,
        source,
        method,
        verdict,
        steps,
    }
}

/// The process the quitter can signal by name: the known software's, or the program the
/// container's `command` runs. A shell is not a target (it may be anywhere in the pod), nor a
/// name another container of the pod also runs when the pod shares one PID namespace.
fn signal_target(pod: &Pod, c: &Container, software: Option<Software>) -> Option<String> {
    let name = presets::process_name(software)
        .map(String::from)
        .or_else(|| {
            c.command
                .first()
                .and_then(|p| p.rsplit('/').next())
                .filter(|p| !p.is_empty() && !is_shell(p))
                .map(String::from)
        })?;
    let shared_with_another = pod.share_process_namespace
        && pod.containers.iter().any(|other| {
            other.name != c.name
                && other
                    .command
                    .first()
                    .and_then(|p| p.rsplit('/').next())
                    .is_some_and(|p| p == name)
        });
    (!shared_with_another).then_some(name)
}

/// What the host would need to stop a container nothing it may do can stop.
fn missing_methods(
    swap: Option<&(&str, SwapExit)>,
    quitter: Option<&str>,
    endpoint: bool,
    process: bool,
) -> String {
    let swap = match swap {
        None => {
            "image swap is not allowed (facts.stopMethods.imageSwap: patch on pods and a nop image)"
                .into()
        }
        Some((_, SwapExit::Fails(why) | SwapExit::Unknown(why))) => {
            format!("image swap would not end in exit 0 ({why})")
        }
        Some((_, SwapExit::Zero(_))) => "image swap is allowed".into(),
    };
    let quitter = match quitter {
        None => "the ephemeral quitter is not allowed (facts.stopMethods.ephemeral: opt in, pods/ephemeralcontainers and a quitter image)",
        Some(_) if !endpoint && !process => "the quitter has no endpoint to call and no process it can signal by name",
        Some(_) => "the quitter is allowed",
    };
    format!("{swap}; {quitter}")
}

/// The diagnostics of a command run inside the container.
fn exec_notes(input: &StopInput<'_>, pid1: bool, verdict: Verdict, notes: &mut Vec<Diagnostic>) {
    let StopInput {
        pod,
        c,
        classified,
        command,
        facts,
        ..
    } = *input;
    let native = native_ok(facts);
    let name = Some(c.name.as_str());
    let software = classified.software;
    // An exec runs as the container's user, which is PID 1's own: `kill 1` is allowed. Only
    // a signal to another container's process (one PID namespace for the pod) may meet a
    // different user, and only explicit users show it (issue 19).
    if let (Action::Exec { argv }, false, true) =
        (&command.sigterm, pid1, pod.share_process_namespace)
    {
        let me = c.run_as_user.or(pod.pod_run_as_user);
        let other = pod
            .containers
            .iter()
            .filter(|o| o.name != c.name)
            .find_map(|o| o.run_as_user.filter(|u| Some(*u) != me).map(|u| (o, u)));
        if let (true, Some((other, uid)), false) =
            (killcmd::sends_signal(argv), other, me == Some(0))
        {
            notes.push(Diagnostic::new(
                Code::NonRoot,
                Severity::Warning,
                name,
                format!("the pod shares one PID namespace and the command signals a process by name; `{}` runs as uid {uid}, the exec in `{}` as {}: `kill` is refused (EPERM) for a process of another user without CAP_KILL", other.name, c.name, me.map_or("the image's user".to_string(), |u| format!("uid {u}"))),
                "signal only the container's own process, run both as the same user, or use a preset or HTTP endpoint that needs no signal",
            ));
        }
    }
    if pid1
        && !presets::pid1_handles_sigterm(c, software)
        && classified.role == Role::InjectedSidecar
    {
        notes.push(Diagnostic::new(
            Code::SigtermNeedsHandler,
            Severity::Warning,
            name,
            "PID 1 of a container ignores SIGTERM unless its program installs a handler (a shell script or `sleep` does not), so SIGTERM may do nothing".into(),
            "allow image swap (the kubelet stops the container from outside), run the process under an init such as tini or dumb-init, or signal the real process with [\"sh\",\"-c\",\"kill -%d $(pidof <process>)\"]",
        ));
    }
    if pid1 && command.sigkill.is_some() {
        let severity = if verdict == Verdict::Stops {
            Severity::Info
        } else {
            Severity::Warning
        };
        notes.push(Diagnostic::new(
            Code::Pid1IgnoresSigkill,
            severity,
            name,
            "the SIGKILL step cannot stop PID 1: the kernel drops signals sent from inside a PID namespace to its init unless it has a handler, and SIGKILL cannot have one. If SIGTERM did not stop it, the container keeps running until the pod is deleted".into(),
            if native {
                "make SIGTERM work (a handler, tini, or a preset endpoint), allow image swap, or use a native sidecar: the kubelet kills from outside"
            } else {
                "make SIGTERM work (a handler, tini, or a preset endpoint), or allow image swap: the kubelet kills from outside"
            },
        ));
    }
    later_hooks_notes(c, native, notes);
    if classified.injector == Some(Injector::Unknown) {
        unknown_sidecar_note(c, notes);
    }
}

/// One `pid1-ignores-sigkill` per pod, naming its containers (its `container` when there is
/// one): a warning when SIGTERM is not known to stop one of them, else an info (issue 19).
fn merge_pid1_notes(diagnostics: &mut Vec<Diagnostic>) {
    let (pid1, rest): (Vec<_>, Vec<_>) = core::mem::take(diagnostics)
        .into_iter()
        .partition(|d| d.code == Code::Pid1IgnoresSigkill);
    *diagnostics = rest;
    let Some(first) = pid1.first() else {
        return;
    };
    let names: Vec<&str> = pid1.iter().filter_map(|d| d.container.as_deref()).collect();
    let may: Vec<&str> = pid1
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .filter_map(|d| d.container.as_deref())
        .collect();
    let severity = if may.is_empty() {
        Severity::Info
    } else {
        Severity::Warning
    };
    let which = if may.is_empty() {
        format!(
            "SIGTERM is expected to stop {}, so this only matters if it does not",
            names.join(", ")
        )
    } else {
        format!(
            "SIGTERM is not known to stop {}, and then nothing will",
            may.join(", ")
        )
    };
    // About one container, it names it (hosts show a container's diagnostics with it).
    let container = match names.as_slice() {
        [only] => Some(*only),
        _ => None,
    };
    diagnostics.push(Diagnostic::new(
        Code::Pid1IgnoresSigkill,
        severity,
        container,
        format!("the SIGKILL steps of {} signal PID 1, and the kernel drops signals sent from inside a PID namespace to its init unless it has a handler, which SIGKILL cannot have: {which}", names.join(", ")),
        first.fix.clone(),
    ));
}

/// preStop and stopSignal are the kubelet's: a stop that bypasses it does not use them.
fn later_hooks_notes(c: &Container, native: bool, notes: &mut Vec<Diagnostic>) {
    let name = Some(c.name.as_str());
    if c.has_pre_stop {
        notes.push(Diagnostic::new(
            Code::PreStopNotRun,
            Severity::Warning,
            name,
            "the container has a preStop hook, but a stop from inside the pod does not run it (only the kubelet does, when it stops a container, as with image swap)".into(),
            format!("put the hook's command in workflows.argoproj.io/kill-cmd-{}, or allow image swap{}", c.name, if native { ", or use a native sidecar" } else { "" }),
        ));
    }
    if let Some(signal) = &c.stop_signal {
        notes.push(Diagnostic::new(
            Code::StopSignalNotUsed,
            Severity::Warning,
            name,
            format!(
                "lifecycle.stopSignal is {signal}, but the plan sends SIGTERM and SIGKILL from inside the pod"
            ),
            format!(
                "put a command sending {signal} in workflows.argoproj.io/kill-cmd-{}, or allow image swap",
                c.name
            ),
        ));
    }
}

fn unknown_sidecar_note(c: &Container, notes: &mut Vec<Diagnostic>) {
    notes.push(Diagnostic::new(
        Code::UnknownSidecar,
        Severity::Info,
        Some(c.name.as_str()),
        "no known injector marked this container; the default kill command is a guess".into(),
        format!(
            "if it needs another stop command, set workflows.argoproj.io/kill-cmd-{}",
            c.name
        ),
    ));
}

/// The ephemeral quitter's costs and limits.
fn ephemeral_note(c: &Container, image: &str, signal: Option<&str>, notes: &mut Vec<Diagnostic>) {
    let signal_rule = match signal {
        Some(process) => format!(" It signals `{process}` from inside the sidecar's PID namespace, so the PID 1 rule holds: where the sidecar is PID 1 there, only a signal it handles works and SIGKILL is dropped; it needs the sidecar's uid or CAP_KILL."),
        None => String::new(),
    };
    notes.push(Diagnostic::new(
        Code::EphemeralQuitter,
        Severity::Info,
        Some(c.name.as_str()),
        format!("`{}` is stopped by an ephemeral container running sidekill's quitter ({image}) with targetContainerName `{}`, which shares the pod's network and the sidecar's PID namespace. It needs pods/ephemeralcontainers; it stays in the pod spec for good (ephemeral containers can only be added); admission policies (Pod Security, policy engines) may refuse it.{signal_rule}", c.name, c.name),
        "if admission refuses it, allow image swap instead",
    ));
}

/// An HTTP endpoint `pods/proxy` cannot reach, when the host may use `pods/proxy`.
fn loopback_note(c: &Container, endpoint: &Endpoint, notes: &mut Vec<Diagnostic>) {
    if !endpoint.loopback_only {
        return;
    }
    notes.push(Diagnostic::new(
        Code::LoopbackOnly,
        Severity::Info,
        Some(c.name.as_str()),
        format!("pods/proxy is allowed, but {} {}:{}{} accepts only callers inside the pod ({}), so the request is made from inside the pod's network namespace", endpoint.method, endpoint.host, endpoint.port, endpoint.path, endpoint.access),
        "nothing to do",
    ));
}

/// Whether the cluster has native sidecars, or is not known not to: advice to use them is
/// circular on an older one (issue 19).
fn native_ok(facts: &Facts) -> bool {
    facts
        .cluster_version
        .is_none_or(|version| version >= NATIVE_SIDECARS_SINCE)
}

/// What to do with a native sidecar on a cluster without them: the injector's classic layout,
/// or, for the pod's own, a regular container declared a sidecar.
fn native_fallback(classified: &Classified) -> String {
    let name = &classified.name;
    let classic = match classified.injector {
        None => return format!("upgrade the cluster, or move `{name}` from initContainers to containers (without restartPolicy: Always) and declare it a sidecar with the annotation sidekill.dev/sidecars: {name}, so sidekill stops it once the main containers exit"),
        Some(Injector::Istio) => "have Istio inject a classic sidecar (the pod annotation sidecar.istio.io/nativeSidecar: \"false\", or ENABLE_NATIVE_SIDECARS=false on istiod)",
        Some(Injector::Linkerd) => "have Linkerd inject a classic sidecar (the annotation config.alpha.linkerd.io/proxy-enable-native-sidecar: \"false\", or proxy.nativeSidecar=false)",
        Some(Injector::Kuma) => "have Kuma inject a classic sidecar (the control plane's experimental.sidecarContainers: false)",
        Some(_) => "have its injector add it as a regular container",
    };
    format!("upgrade the cluster, or {classic}: sidekill then stops `{name}` once the main containers exit")
}

#[inline(never)] // see stop_container
fn native_notes(classified: &Classified, facts: &Facts, diagnostics: &mut Vec<Diagnostic>) {
    let name = Some(classified.name.as_str());
    match facts.cluster_version {
        Some(version) if version < NATIVE_SIDECARS_SINCE => diagnostics.push(Diagnostic::new(
            Code::NativeSidecarUnsupported,
            Severity::Error,
            name,
            format!("native sidecars need Kubernetes 1.29+ (SidecarContainers is beta and on by default from 1.29); on {}.{} `{}` runs as an ordinary init container and blocks the pod", version.0, version.1, classified.name),
            native_fallback(classified),
        )),
        _ => diagnostics.push(Diagnostic::new(
            Code::NativeSidecar,
            Severity::Info,
            name,
            format!("`{}` is a native sidecar: the kubelet stops it after the main containers exit, no kill needed", classified.name),
            "nothing to do",
        )),
    }
}

/// The diagnostics of a stop whose expected exit code breaks the pod's result.
#[inline(never)] // see stop_container
fn exit_notes(
    c: &Container,
    classified: &Classified,
    stop: &ContainerStop,
    owner: &Owner,
    policy: Option<RestartPolicy>,
    native: bool,
    notes: &mut Vec<Diagnostic>,
) {
    let Some(ExpectedExit {
        code: ExitCode::Code(code),
        why,
    }) = stop.steps.iter().find_map(|s| match s {
        Step::Send {
            signal: SIGTERM,
            expected_exit,
            ..
        } => Some(expected_exit),
        _ => None,
    })
    else {
        return;
    };
    if *code == 0 || stop.verdict == Verdict::CannotStop {
        return;
    }
    let name = Some(c.name.as_str());
    let fix = exit_zero_fix(c, classified.software, native);
    match (owner.kind, policy) {
        // argo-workflows workflow/controller/operator.go (inferFailedReason) ignores a
        // sidecar's 137 and 143; any other code fails the step.
        (OwnerKind::ArgoWorkflow, _) if *code == 137 || *code == 143 => {}
        (OwnerKind::ArgoWorkflow, _) => notes.push(Diagnostic::new(
            Code::ArgoStepFailsOnExit,
            Severity::Error,
            name,
            format!("`{}` is expected to exit {code} ({why}); Argo ignores only a sidecar's 137 and 143, so the step fails", c.name),
            fix,
        )),
        (_, Some(RestartPolicy::OnFailure)) => notes.push(Diagnostic::new(
            Code::SidecarRestarted,
            Severity::Error,
            name,
            format!("`{}` is expected to exit {code} ({why}); under restartPolicy OnFailure the kubelet restarts it, so the pod never completes", c.name),
            fix,
        )),
        (kind, Some(RestartPolicy::Never)) => {
            let then = if kind == OwnerKind::Job {
                "the pod ends Failed: the Job counts a failure and, until its backoffLimit (default 6), creates a new pod that runs the main work again"
            } else {
                "the pod ends Failed"
            };
            notes.push(Diagnostic::new(
                Code::PodFailsOnExit,
                Severity::Error,
                name,
                format!("`{}` is expected to exit {code} ({why}); under restartPolicy Never {then}", c.name),
                fix,
            ));
        }
        _ => {}
    }
}

/// How to make a sidecar's stop end in exit 0, for the software it runs.
fn exit_zero_fix(c: &Container, software: Option<Software>, native: bool) -> String {
    let general = if native {
        "run it as a native sidecar (an init container with restartPolicy: Always, Kubernetes 1.29+), whose exit code does not count, or use a stop method that ends in exit 0, such as swapping the container's image for one that exits 0"
    } else {
        "use a stop method that ends in exit 0, such as swapping the container's image for one that exits 0"
    };
    match software {
        Some(Software::CloudSqlProxyV2) => format!("add --exit-zero-on-sigterm to `{}`'s arguments, or --quitquitquit so the preset endpoint, which exits 0, is used; or {general}", c.name),
        Some(Software::VaultAgent) => format!("set vault.hashicorp.com/agent-enable-quit: \"true\" so the preset quit endpoint, which exits 0, is used; or {general}"),
        Some(Software::LinkerdProxy) => format!("set config.linkerd.io/proxy-admin-shutdown: enabled so the preset /shutdown endpoint, which exits 0, is used; or {general}"),
        _ => format!("use a preset endpoint that exits 0 where the sidecar has one, or {general}"),
    }
}
