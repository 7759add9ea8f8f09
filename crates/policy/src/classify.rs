//! Classification: what each container of a pod is, and the evidence that decided it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;

use crate::argo;
use crate::declare::{self, Declarations};
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::input::{Facts, Subject};
use crate::pod::{Container, ContainerList, Pod};

/// What a container is, as far as stopping it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Argo's `init` container: runs before everything else.
    ArgoInit,
    /// Argo's `wait` container: saves outputs and logs, then exits by itself.
    ArgoWait,
    /// Argo's `supervisor` container (initless layout): exits by itself.
    ArgoSupervisor,
    /// An Argo main container (`main`, or a `containerSet` container).
    ArgoMain,
    /// A sidecar declared in the Workflow template and run by the emissary, or, in a pod no
    /// Argo runs, declared by an annotation, an env switch or the host's facts
    /// ([`crate::declare`]).
    DeclaredSidecar,
    /// A sidecar added to the pod by an admission webhook or injector.
    InjectedSidecar,
    /// An init container with `restartPolicy: Always`: Kubernetes stops it itself.
    NativeSidecar,
    /// An ordinary init container: it has finished before the main work starts.
    Init,
    /// A workload container of a plain pod or Job: its exit is what the pod waits for.
    Workload,
}

impl Role {
    /// Argo's own containers, which sidekill never signals (`argoOwnRoles` in `policy_info`,
    /// ABI 1.5: the debugger page reads them from there).
    pub const ARGO_OWN: [Role; 3] = [Role::ArgoInit, Role::ArgoWait, Role::ArgoSupervisor];

    /// Whether the role is one of Argo's own containers ([`Role::ARGO_OWN`]).
    pub fn is_argo_own(self) -> bool {
        Role::ARGO_OWN.contains(&self)
    }
}

/// Which injector added a container, as shown by the injector's own marks on the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injector {
    /// Istio's sidecar injector.
    Istio,
    /// Linkerd's proxy injector.
    Linkerd,
    /// Kuma's injector.
    Kuma,
    /// Vault's agent injector.
    Vault,
    /// The Cloud SQL Auth Proxy (operator or hand-added).
    CloudSqlProxy,
    /// Not Argo's layout and no known injector's marks.
    Unknown,
}

/// Software a container is known to run, from its name and image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Software {
    /// Istio's `pilot-agent` and Envoy (`proxyv2` image).
    IstioProxy,
    /// `linkerd2-proxy`.
    LinkerdProxy,
    /// Linkerd's debug sidecar (tshark; Debian based).
    LinkerdDebug,
    /// Kuma's data plane, `kuma-dp`, and Envoy.
    KumaDp,
    /// Vault agent.
    VaultAgent,
    /// Cloud SQL Auth Proxy v2 (`cloud-sql-connectors/cloud-sql-proxy`).
    CloudSqlProxyV2,
    /// Cloud SQL Proxy v1 (`cloudsql-docker/gce-proxy`).
    CloudSqlProxyV1,
    /// Argo's `argoexec`.
    Argoexec,
}

impl Software {
    /// Recognises the software from a container's name and image.
    pub fn detect(c: &Container) -> Option<Software> {
        let image = c.image.as_str();
        let name = c.name.as_str();
        Some(if image.contains("argoexec") {
            Software::Argoexec
        } else if name == "istio-proxy" || image.contains("/proxyv2") {
            Software::IstioProxy
        } else if image.contains("linkerd/debug") || name == "linkerd-debug" {
            Software::LinkerdDebug
        } else if name == "linkerd-proxy"
            || image.contains("linkerd/proxy:")
            || image.ends_with("linkerd/proxy")
        {
            Software::LinkerdProxy
        } else if name == "kuma-sidecar"
            || image.contains("kuma-dp")
            || image.contains("kuma-sidecar")
        {
            Software::KumaDp
        } else if image.contains("cloud-sql-connectors/cloud-sql-proxy") {
            Software::CloudSqlProxyV2
        } else if image.contains("cloudsql-docker/gce-proxy") {
            Software::CloudSqlProxyV1
        } else if name == "vault-agent" || image.contains("hashicorp/vault") {
            Software::VaultAgent
        } else {
            return None;
        })
    }

    /// Whether the software is a network proxy that other containers' traffic goes through.
    pub fn is_network_proxy(self) -> bool {
        matches!(
            self,
            Software::IstioProxy | Software::LinkerdProxy | Software::KumaDp
        )
    }
}

/// One reason behind a classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// A stable name for the rule that matched.
    pub rule: &'static str,
    /// What was seen.
    pub detail: String,
}

/// A classified container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Classified {
    /// The container's name.
    pub name: String,
    /// Which list it is in.
    pub list: ContainerList,
    /// What it is.
    pub role: Role,
    /// Who injected it, for injected and native sidecars that an injector added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injector: Option<Injector>,
    /// Known software it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software: Option<Software>,
    /// The image.
    pub image: String,
    /// Why.
    pub evidence: Vec<Evidence>,
}

/// What kind of pod this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodClass {
    /// Whether Argo Workflows created (or would create) the pod.
    pub argo: bool,
    /// Why the pod is or is not taken for an Argo pod.
    pub evidence: String,
    /// The containers whose end is the end of the pod's work.
    pub main_containers: Vec<String>,
    /// Declarations naming missing containers, and contradictions.
    #[serde(skip)]
    pub notes: Vec<Diagnostic>,
}

/// Classifies every container of a subject, regular containers first, in pod order.
pub fn classify(subject: &Subject, facts: &Facts) -> (PodClass, Vec<Classified>) {
    let pod = &subject.pod;
    let argo_evidence = argo::argo_pod_evidence(pod);
    let argo = argo_evidence.is_some();
    let mains: Vec<String> = if let (true, Some(names)) = (argo, &facts.main_containers) {
        names.clone()
    } else if let Some(names) = &subject.main_containers {
        names.clone()
    } else if argo {
        argo::main_names_from_template_env(pod).unwrap_or_else(|| ["main".to_string()].into())
    } else {
        Vec::new()
    };
    let regular = pod.containers.len();
    let mut declared = if argo {
        Declarations::default()
    } else {
        declare::declarations(pod, facts)
    };
    let mut classified: Vec<Classified> = pod
        .all_containers()
        .map(|(list, c)| classify_one(pod, list, c, argo, &mains, regular, &declared))
        .collect();
    if !argo && !classified.iter().any(|c| c.role == Role::Workload) {
        // Declarations that leave the pod no main container contradict the pod itself:
        // the pod's end would have nothing to wait for. Keep the declared ones as main.
        let names: Vec<String> = classified
            .iter()
            .filter(|c| c.role == Role::DeclaredSidecar)
            .map(|c| c.name.clone())
            .collect();
        if !names.is_empty() {
            declared.diagnostics.push(Diagnostic::new(
                Code::DeclarationConflict,
                Severity::Warning,
                None,
                format!("the declarations make every container of the pod a sidecar ({}), leaving nothing to wait for; they are kept as main containers", names.join(", ")),
                "declare only the helper containers as sidecars, or list the main container",
            ));
            for c in classified
                .iter_mut()
                .filter(|c| c.role == Role::DeclaredSidecar)
            {
                c.role = Role::Workload;
                c.evidence.push(ev(
                    "declaration-ignored",
                    "the declarations leave the pod no main container".into(),
                ));
            }
        }
    }
    let main_containers = if argo {
        mains
    } else {
        classified
            .iter()
            .filter(|c| c.role == Role::Workload)
            .map(|c| c.name.clone())
            .collect()
    };
    let class = PodClass {
        argo,
        evidence: argo_evidence.unwrap_or_else(|| {
            "no Argo label, annotation or argoexec container: a plain Kubernetes pod".into()
        }),
        main_containers,
        notes: declared.diagnostics,
    };
    (class, classified)
}

fn ev(rule: &'static str, detail: String) -> Evidence {
    Evidence { rule, detail }
}

fn classify_one(
    pod: &Pod,
    list: ContainerList,
    c: &Container,
    argo: bool,
    mains: &[String],
    regular_count: usize,
    declared: &Declarations,
) -> Classified {
    let software = Software::detect(c);
    let injected = injector_of(pod, c, software);
    let mut evidence = Vec::new();
    let (role, injector) = match list {
        ContainerList::InitContainers if c.restart_policy.as_deref() == Some("Always") => {
            evidence.push(ev(
                "native-sidecar",
                "init container with restartPolicy: Always; the kubelet stops it after the main containers exit".into(),
            ));
            match injected {
                Some((injector, e)) => {
                    evidence.push(e);
                    (Role::NativeSidecar, Some(injector))
                }
                None => (Role::NativeSidecar, None),
            }
        }
        ContainerList::InitContainers if argo && c.name == "init" && argo::runs_argoexec(c) => {
            evidence.push(ev(
                "argo-init",
                "Argo pod; init container `init` runs argoexec".into(),
            ));
            (Role::ArgoInit, None)
        }
        ContainerList::InitContainers => {
            evidence.push(ev("init-container", "init container without restartPolicy: Always; it ran to completion before the pod started".into()));
            if let Some((injector, e)) = injected {
                evidence.push(e);
                (Role::Init, Some(injector))
            } else {
                (Role::Init, None)
            }
        }
        ContainerList::Containers
            if argo && (c.name == "wait" || c.name == "supervisor") && argo::runs_argoexec(c) =>
        {
            evidence.push(ev(
                "argo-executor",
                format!("Argo pod; container `{}` runs argoexec", c.name),
            ));
            if c.name == "wait" {
                (Role::ArgoWait, None)
            } else {
                (Role::ArgoSupervisor, None)
            }
        }
        ContainerList::Containers if argo && mains.contains(&c.name) => {
            evidence.push(ev(
                "argo-main",
                format!("Argo pod; `{}` is a main container of the template", c.name),
            ));
            (Role::ArgoMain, None)
        }
        ContainerList::Containers if !argo => {
            plain_role(c, injected, regular_count, declared, &mut evidence)
        }
        ContainerList::Containers => match injected {
            Some((injector, e)) => {
                evidence.push(e);
                (Role::InjectedSidecar, Some(injector))
            }
            None if argo::runs_under_emissary(c) => {
                evidence.push(ev(
                    "argo-declared",
                    "Argo pod; the emissary runs it (`argoexec emissary --`)".into(),
                ));
                (Role::DeclaredSidecar, None)
            }
            None if c.mounts(argo::VAR_RUN_ARGO) || c.mounts(argo::ARGO_BIN) => {
                evidence.push(ev(
                    "argo-declared",
                    "Argo pod; it mounts Argo's executor volume".into(),
                ));
                (Role::DeclaredSidecar, None)
            }
            None => {
                evidence.push(ev(
                    "not-argo-layout",
                    "Argo pod, but neither run by the emissary nor mounting /var/run/argo or /argo-bin: something other than Argo added it".into(),
                ));
                (Role::InjectedSidecar, Some(Injector::Unknown))
            }
        },
    };
    Classified {
        name: c.name.clone(),
        list,
        role,
        injector,
        software,
        image: c.image.clone(),
        evidence,
    }
}

/// The role of a regular container of a pod no Argo runs: declared main, injected,
/// declared sidecar, left out of a main list, or the workload.
fn plain_role(
    c: &Container,
    injected: Option<(Injector, Evidence)>,
    regular_count: usize,
    declared: &Declarations,
    evidence: &mut Vec<Evidence>,
) -> (Role, Option<Injector>) {
    if let Some(e) = declared.mains.as_ref().and_then(|m| m.get(&c.name)) {
        evidence.push(e.clone());
        return (Role::Workload, None);
    }
    let declarations = declared.sidecars.get(&c.name);
    match injected {
        Some((injector, e)) if regular_count == 1 => {
            evidence.push(e);
            evidence.push(ev(
                "only-container",
                "the pod's only container: a proxy on its own (such as a gateway) is the workload, not a sidecar".into(),
            ));
            (Role::Workload, Some(injector))
        }
        Some((injector, e)) => {
            evidence.push(e);
            evidence.extend(declarations.into_iter().flatten().cloned());
            (Role::InjectedSidecar, Some(injector))
        }
        None if declarations.is_some() => {
            evidence.extend(declarations.into_iter().flatten().cloned());
            (Role::DeclaredSidecar, None)
        }
        None if declared.mains.is_some() => {
            evidence.push(ev(
                "not-a-main-container",
                format!(
                    "{} lists the main containers, and not this one",
                    declared.mains_source
                ),
            ));
            (Role::DeclaredSidecar, None)
        }
        None => {
            evidence.push(ev(
                "workload",
                "a container of a plain Kubernetes pod with no injector's marks".into(),
            ));
            (Role::Workload, None)
        }
    }
}

/// The injector that added `c`, from the injector's own marks on the pod.
fn injector_of(
    pod: &Pod,
    c: &Container,
    software: Option<Software>,
) -> Option<(Injector, Evidence)> {
    let name = c.name.as_str();
    if let Some(status) = pod.annotations.get("sidecar.istio.io/status") {
        if istio_status_lists(status, name) {
            return Some((
                Injector::Istio,
                ev(
                    "istio-status",
                    format!("annotation sidecar.istio.io/status lists `{name}`"),
                ),
            ));
        }
    }
    if let Some(version) = pod.annotations.get("linkerd.io/proxy-version") {
        if name.starts_with("linkerd-") {
            return Some((
                Injector::Linkerd,
                ev(
                    "linkerd-proxy-version",
                    format!("annotation linkerd.io/proxy-version={version} and container `{name}`"),
                ),
            ));
        }
    }
    if pod
        .annotations
        .get("kuma.io/sidecar-injected")
        .map(String::as_str)
        == Some("true")
        && name.starts_with("kuma-")
    {
        return Some((
            Injector::Kuma,
            ev(
                "kuma-sidecar-injected",
                format!("annotation kuma.io/sidecar-injected=true and container `{name}`"),
            ),
        ));
    }
    if let Some(status) = pod
        .annotations
        .get("vault.hashicorp.com/agent-inject-status")
    {
        if name.starts_with("vault-agent") {
            return Some((
                Injector::Vault,
                ev("vault-agent-inject-status", format!("annotation vault.hashicorp.com/agent-inject-status={status} and container `{name}`")),
            ));
        }
    }
    match software {
        Some(Software::CloudSqlProxyV1 | Software::CloudSqlProxyV2) => Some((
            Injector::CloudSqlProxy,
            ev(
                "cloud-sql-proxy-image",
                format!("image {} is the Cloud SQL Auth Proxy", c.image),
            ),
        )),
        Some(Software::IstioProxy) if name == "istio-proxy" => Some((
            Injector::Istio,
            ev(
                "istio-proxy-image",
                format!(
                    "container `istio-proxy` runs {}, with no sidecar.istio.io/status annotation",
                    c.image
                ),
            ),
        )),
        _ => None,
    }
}

fn istio_status_lists(status: &str, name: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(status) else {
        return false;
    };
    ["containers", "initContainers"].iter().any(|key| {
        value
            .get(key)
            .and_then(|v| v.as_array())
            .is_some_and(|list| list.iter().any(|n| n.as_str() == Some(name)))
    })
}
