//! Stop commands for known sidecars, each with the source that documents it.
//!
//! A preset applies only when the sidecar has the feature it relies on switched on.
//! When the feature is off, the preset is not used and a diagnostic names the setting
//! that would switch it on.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;

use crate::classify::Software;
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::pod::{Container, Pod};

/// How a stop request reaches the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Run an argv in the container through `pods/exec`. `%d` stands for the signal.
    Exec {
        /// The argv template.
        argv: Vec<String>,
    },
    /// An HTTP request to a port of the pod through the `pods/proxy` subresource.
    Http {
        /// The HTTP method.
        method: &'static str,
        /// The pod's port.
        port: u16,
        /// The request path.
        path: &'static str,
    },
}

/// A preset stop command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// The preset's name.
    pub name: &'static str,
    /// Where the command is documented.
    pub source: &'static str,
    /// What it does.
    pub action: Action,
    /// Whether the command signals the container's PID 1 (so a SIGKILL through it is dropped).
    #[serde(skip)]
    pub signals_pid1: bool,
}

/// Names and sources of every preset, for `policy_info`'s preset hash.
pub const CATALOGUE: [(&str, &str); 5] = [
    ("istio-proxy", ISTIO_SOURCE),
    ("vault-agent", VAULT_SOURCE),
    ("cloud-sql-proxy", CLOUD_SQL_SOURCE),
    ("linkerd-proxy", LINKERD_SOURCE),
    ("kuma-sidecar", KUMA_SOURCE),
];

const ISTIO_SOURCE: &str = "istio/istio pilot/cmd/pilot-agent (`pilot-agent request POST quitquitquit` ends pilot-agent and Envoy); argo-workflows docs/sidecar-injection.md";
const VAULT_SOURCE: &str = "hashicorp/vault-k8s agent-inject annotations (`vault.hashicorp.com/agent-enable-quit` enables the agent API's POST /agent/v1/quit on the cache listener, port 8200 unless `vault.hashicorp.com/agent-cache-listener-port`)";
const CLOUD_SQL_SOURCE: &str = "GoogleCloudPlatform/cloud-sql-proxy v2 README (`--quitquitquit` enables POST /quitquitquit on the localhost-only admin server, `--admin-port`, default 9091)";
const LINKERD_SOURCE: &str = "linkerd/linkerd2 proxy config (`config.linkerd.io/proxy-admin-shutdown: enabled` turns on POST /shutdown on the admin server, port 4191 unless `config.linkerd.io/admin-port`)";
const KUMA_SOURCE: &str = "kumahq/kuma injector (the injected preStop hook runs `killall -USR2 kuma-dp`; the kuma-dp image has busybox on PATH and no /bin/sh); kuma-dp exits on SIGTERM";

/// Images of these tags carry a shell; the default tags of the same software do not.
const SHELL_TAGS: [&str; 4] = ["alpine", "bullseye", "bookworm", "buster"];

/// Whether the image is known to have no `/bin/sh`, with the reason.
pub fn known_without_shell(c: &Container, software: Option<Software>) -> Option<&'static str> {
    let tag = c.image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    match software {
        Some(Software::LinkerdProxy) => Some("linkerd2-proxy images are built from scratch with no shell"),
        Some(Software::KumaDp) => Some("the kuma-dp image is distroless: busybox lives in /busybox, /bin/sh does not exist"),
        Some(Software::Argoexec) => Some("argoexec images are distroless (gcr.io/distroless/static)"),
        Some(Software::IstioProxy) if tag.contains("distroless") => Some("the distroless proxyv2 image has no shell"),
        Some(Software::CloudSqlProxyV1 | Software::CloudSqlProxyV2)
            if !SHELL_TAGS.iter().any(|t| tag.contains(t)) =>
        {
            Some("the default Cloud SQL proxy images are distroless; only the -alpine, -bullseye and -bookworm variants have a shell")
        }
        _ if c.image.contains("gcr.io/distroless/") && !tag.contains("debug") => {
            Some("distroless images have no shell")
        }
        _ => None,
    }
}

/// Whether the software is known to shut down on SIGTERM even as PID 1 (it installs a handler).
pub fn handles_sigterm(software: Option<Software>) -> bool {
    matches!(
        software,
        Some(
            Software::IstioProxy
                | Software::LinkerdProxy
                | Software::KumaDp
                | Software::VaultAgent
                | Software::CloudSqlProxyV1
                | Software::CloudSqlProxyV2
        )
    )
}

/// The preset for a container, or a diagnostic explaining why its preset does not apply.
pub fn preset_for(
    pod: &Pod,
    c: &Container,
    software: Option<Software>,
) -> Result<Option<Preset>, Diagnostic> {
    let name = Some(c.name.as_str());
    match software {
        Some(Software::IstioProxy) => {
            let first = c.argv().next().unwrap_or("");
            let runs_agent = c.command.is_empty()
                && c.args.first().map(String::as_str) == Some("proxy")
                || first.ends_with("pilot-agent");
            if !runs_agent {
                return Err(Diagnostic::new(
                    Code::PresetCommandOverridden,
                    Severity::Warning,
                    name,
                    format!("istio-proxy runs `{}` instead of pilot-agent (proxy.istio.io/overrides?), so `pilot-agent request POST quitquitquit` has nothing to talk to", c.argv().collect::<Vec<_>>().join(" ")),
                    "set workflows.argoproj.io/kill-cmd-istio-proxy to a command that stops what the container runs",
                ));
            }
            Ok(Some(Preset {
                name: "istio-proxy",
                source: ISTIO_SOURCE,
                action: Action::Exec {
                    argv: strings(&["pilot-agent", "request", "POST", "quitquitquit"]),
                },
                signals_pid1: false,
            }))
        }
        Some(Software::VaultAgent) => {
            if pod
                .annotations
                .get("vault.hashicorp.com/agent-enable-quit")
                .map(String::as_str)
                != Some("true")
            {
                return Err(needs_feature(
                    name,
                    "vault-agent's quit endpoint is off",
                    "vault.hashicorp.com/agent-enable-quit: \"true\"",
                ));
            }
            let port = pod
                .annotations
                .get("vault.hashicorp.com/agent-cache-listener-port")
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(8200);
            // The listener binds 127.0.0.1, out of reach of pods/proxy; the agent image has busybox wget.
            Ok(Some(Preset {
                name: "vault-agent",
                source: VAULT_SOURCE,
                action: Action::Exec {
                    argv: wget_post(port, "/agent/v1/quit"),
                },
                signals_pid1: false,
            }))
        }
        Some(Software::CloudSqlProxyV2) => {
            if !c.argv().any(|a| a == "--quitquitquit") {
                return Err(needs_feature(
                    name,
                    "the Cloud SQL proxy's quit endpoint is off",
                    "the container argument --quitquitquit",
                ));
            }
            if known_without_shell(c, software).is_some() {
                // The admin server binds localhost, out of reach of pods/proxy too.
                return Err(needs_feature(
                    name,
                    "the quit endpoint listens on localhost only and this distroless image has no HTTP client to call it",
                    "an -alpine, -bullseye or -bookworm image of the proxy",
                ));
            }
            let port = flag_value(c, "--admin-port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(9091);
            Ok(Some(Preset {
                name: "cloud-sql-proxy",
                source: CLOUD_SQL_SOURCE,
                action: Action::Exec {
                    argv: wget_post(port, "/quitquitquit"),
                },
                signals_pid1: false,
            }))
        }
        Some(Software::LinkerdProxy) => {
            let enabled = pod
                .annotations
                .get("config.linkerd.io/proxy-admin-shutdown")
                .map(String::as_str)
                == Some("enabled")
                || c.env_value("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED") == Some("true");
            if !enabled {
                return Err(needs_feature(name, "linkerd-proxy's /shutdown endpoint is off (LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED is not true)", "config.linkerd.io/proxy-admin-shutdown: enabled"));
            }
            let port = pod
                .annotations
                .get("config.linkerd.io/admin-port")
                .and_then(|p| p.parse().ok())
                .or_else(|| {
                    c.env_value("LINKERD2_PROXY_ADMIN_LISTEN_ADDR")
                        .and_then(|a| a.rsplit_once(':'))
                        .and_then(|(_, p)| p.parse().ok())
                })
                .unwrap_or(4191);
            Ok(Some(Preset {
                name: "linkerd-proxy",
                source: LINKERD_SOURCE,
                action: Action::Http {
                    method: "POST",
                    port,
                    path: "/shutdown",
                },
                signals_pid1: false,
            }))
        }
        Some(Software::KumaDp) => Ok(Some(Preset {
            name: "kuma-sidecar",
            source: KUMA_SOURCE,
            action: Action::Exec {
                argv: strings(&["killall", "-%d", "kuma-dp"]),
            },
            // kuma-dp is the container's PID 1.
            signals_pid1: true,
        })),
        _ => Ok(None),
    }
}

fn needs_feature(container: Option<&str>, what: &str, setting: &str) -> Diagnostic {
    Diagnostic::new(
        Code::PresetNeedsFeature,
        Severity::Warning,
        container,
        format!("{what}, so its preset stop command cannot be used"),
        format!("set {setting}"),
    )
}

fn wget_post(port: u16, path: &str) -> Vec<String> {
    strings(&["wget", "-q", "-O-", "--post-data="])
        .into_iter()
        .chain([format!("http://127.0.0.1:{port}{path}")])
        .collect()
}

fn flag_value<'c>(c: &'c Container, flag: &str) -> Option<&'c str> {
    let mut argv = c.argv();
    while let Some(arg) = argv.next() {
        if arg == flag {
            return argv.next();
        }
        if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return Some(value);
        }
    }
    None
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
