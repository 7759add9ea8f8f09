//! Sidecars and main containers declared on a pod that no Argo runs: sidekill's own
//! annotations, the annotations of peer controllers, a kill-cmd annotation, OpenKruise's
//! env switch, and the host's facts (`--main-container`, `--sidecar`).
//!
//! Without a declaration, a container of a plain pod or Job is a sidecar only when an
//! injector marked it; every other container is a main one, so a Job carrying its own log
//! shipper or proxy could never complete. Each declaration is shown as evidence, and a
//! declaration that names a missing container, or contradicts another, is a diagnostic.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::argo;
use crate::classify::Evidence;
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::input::Facts;
use crate::pod::Pod;

/// sidekill's pod annotation naming the sidecars, comma-separated.
pub const SIDECARS_ANNOTATION: &str = "sidekill.dev/sidecars";
/// sidekill's pod annotation naming the main containers, comma-separated: every other
/// regular container no injector marked is a sidecar.
pub const MAIN_CONTAINERS_ANNOTATION: &str = "sidekill.dev/main-containers";
/// Peer controllers' annotations naming the sidecars, comma-separated: nrmitchi/k8s-controller-sidecars,
/// lemonade-hq/k8s-controller-sidecars and the `pod.kubernetes.io/sidecars` convention.
const PEER_SIDECAR_ANNOTATIONS: [&str; 3] = [
    "nrmitchi.com/sidecars",
    "lemonade.com/sidecars",
    "pod.kubernetes.io/sidecars",
];
/// riskified/k8s-controller-sidecars names the *main* containers (despite its name).
const PEER_MAIN_ANNOTATION: &str = "riskified.com/main_sidecars";
/// OpenKruise's SidecarTerminator stops a container carrying this env set to `true`.
pub const KRUISE_ENV: &str = "KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT";

/// What the pod's declarations say.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    /// Regular containers declared sidecars, with the evidence of every source naming them.
    pub sidecars: BTreeMap<String, Vec<Evidence>>,
    /// Regular containers declared main, with the evidence; `None` when no source lists them.
    pub mains: Option<BTreeMap<String, Evidence>>,
    /// The source of the main list, for the evidence of the containers it leaves out.
    pub mains_source: String,
    /// Declarations naming missing containers, and contradictions.
    pub diagnostics: Vec<Diagnostic>,
}

fn ev(rule: &'static str, detail: String) -> Evidence {
    Evidence { rule, detail }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// Reads every declaration of a pod that no Argo runs.
pub fn declarations(pod: &Pod, facts: &Facts) -> Declarations {
    let mut out = Declarations::default();
    let regular = |name: &str| pod.containers.iter().any(|c| c.name == name);
    let missing = |out: &mut Declarations, name: &str, source: &str| {
        // An init container named here is not an error: it is already native or finished.
        if pod.init_containers.iter().any(|c| c.name == name) {
            return;
        }
        out.diagnostics.push(Diagnostic::new(
            Code::DeclaredContainerMissing,
            Severity::Warning,
            Some(name),
            format!("{source} names container `{name}`, which the pod does not have"),
            format!(
                "name one of: {}",
                pod.containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };

    // Main containers: the host's facts win over annotations.
    let main_sources: Vec<(String, Vec<String>)> = match &facts.main_containers {
        Some(names) => alloc::vec![(
            "the host's facts (--main-container)".to_string(),
            names.clone()
        )],
        None => [MAIN_CONTAINERS_ANNOTATION, PEER_MAIN_ANNOTATION]
            .iter()
            .filter_map(|key| {
                pod.annotations.get(*key).map(|v| {
                    (
                        format!("annotation {key}"),
                        split(v).map(ToString::to_string).collect(),
                    )
                })
            })
            .collect(),
    };
    if !main_sources.is_empty() {
        let mut mains = BTreeMap::new();
        for (source, names) in &main_sources {
            for name in names {
                if regular(name) {
                    mains.insert(
                        name.clone(),
                        ev(
                            "declared-main",
                            format!("{source} lists it as a main container"),
                        ),
                    );
                } else {
                    missing(&mut out, name, source);
                }
            }
        }
        out.mains_source = main_sources
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        if !mains.is_empty() {
            out.mains = Some(mains);
        }
    }

    // Sidecars.
    let declare = |out: &mut Declarations, name: &str, rule: &'static str, detail: String| {
        if regular(name) {
            out.sidecars
                .entry(name.to_string())
                .or_default()
                .push(ev(rule, detail));
        } else {
            missing(out, name, &detail);
        }
    };
    if let Some(names) = &facts.sidecars {
        for name in names {
            declare(
                &mut out,
                name,
                "declared-by-facts",
                "the host's facts (--sidecar)".into(),
            );
        }
    }
    for key in [SIDECARS_ANNOTATION]
        .iter()
        .chain(PEER_SIDECAR_ANNOTATIONS.iter())
    {
        if let Some(value) = pod.annotations.get(*key) {
            for name in split(value) {
                declare(
                    &mut out,
                    name,
                    "declared-by-annotation",
                    format!("annotation {key}"),
                );
            }
        }
    }
    for key in pod.annotations.keys() {
        // A missing container is already reported by the kill-cmd check.
        if let Some(name) = key
            .strip_prefix(argo::KILL_CMD_PREFIX)
            .filter(|n| regular(n))
        {
            declare(
                &mut out,
                name,
                "declared-by-kill-cmd",
                format!("annotation {key}"),
            );
        }
    }
    for c in &pod.containers {
        if c.env_value(KRUISE_ENV) == Some("true") {
            let detail = format!("env {KRUISE_ENV}=true (OpenKruise SidecarTerminator)");
            declare(&mut out, &c.name, "declared-by-kruise-env", detail);
        }
    }

    // A container both main and sidecar: main wins, so the pod's own work is never stopped.
    if let Some(mains) = &out.mains {
        let both: Vec<String> = out
            .sidecars
            .keys()
            .filter(|n| mains.contains_key(*n))
            .cloned()
            .collect();
        for name in both {
            let said = out
                .sidecars
                .remove(&name)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.detail)
                .collect::<Vec<_>>()
                .join(", ");
            out.diagnostics.push(Diagnostic::new(
                Code::DeclarationConflict,
                Severity::Warning,
                Some(&name),
                format!("{said} declares `{name}` a sidecar, but {} lists it as a main container; it is kept as a main container", out.mains_source),
                "remove the container from one of the two lists",
            ));
        }
    }
    out
}
