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
use crate::image;
use crate::method::Action;
use crate::pod::{Container, Pod};

/// An HTTP endpoint that stops a sidecar, and who may call it.
///
/// Every known quit endpoint accepts only callers inside the pod: it binds loopback or checks
/// the peer address. `pods/proxy` reaches the pod from the API server's address, so no
/// preset goes through it; the request runs inside the pod's network namespace, from a
/// program of the image or from the ephemeral quitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The HTTP method.
    pub method: &'static str,
    /// The address the request goes to, from inside the pod.
    pub host: &'static str,
    /// The port.
    pub port: u16,
    /// The request path.
    pub path: &'static str,
    /// Whether only a caller on the pod's loopback can reach it.
    pub loopback_only: bool,
    /// Why, with the source of the access rule.
    pub access: &'static str,
}

/// A preset stop command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// The preset's name.
    pub name: &'static str,
    /// Where the command is documented.
    pub source: &'static str,
    /// The command run inside the container, when its image has a program that can do it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The HTTP endpoint the preset calls, when it stops the sidecar through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Whether the command signals the container's PID 1 (so a SIGKILL through it is dropped).
    #[serde(skip)]
    pub signals_pid1: bool,
    /// Why the image has no program to call the endpoint, when `action` is absent.
    #[serde(skip)]
    pub no_client: Option<String>,
}

/// Names and sources of every preset, for `policy_info`'s preset hash.
pub const CATALOGUE: [(&str, &str); 5] = [
    ("istio-proxy", ISTIO_SOURCE),
    ("vault-agent", VAULT_SOURCE),
    ("cloud-sql-proxy", CLOUD_SQL_SOURCE),
    ("linkerd-proxy", LINKERD_SOURCE),
    ("kuma-sidecar", KUMA_SOURCE),
];

// Each source names the code that decides what the preset relies on (docs/sidecar-facts.md).
const ISTIO_SOURCE: &str = "istio/istio pilot/cmd/pilot-agent/app/request.go (`pilot-agent request POST quitquitquit` posts to Envoy's admin on localhost:15000, a 404 counts as success: pilot/pkg/request/command.go); Envoy's admin binds loopback (tools/packaging/common/envoy_bootstrap.json); pilot-agent then exits 0 (pkg/istio-agent/agent.go, pilot/cmd/pilot-agent/app/cmd.go); /usr/local/bin/pilot-agent is in the default and -distroless proxyv2 images (pilot/docker/Dockerfile.proxyv2)";
const VAULT_SOURCE: &str = "hashicorp/vault-k8s agent-inject/agent/config.go (makeCacheListener binds 127.0.0.1:<port>, 8200 unless vault.hashicorp.com/agent-cache-listener-port; agent-enable-quit turns on agent_api enable_quit) and hashicorp/vault command/agent.go (handleQuit: POST /agent/v1/quit, 404 when off); the Alpine image has busybox wget (Dockerfile, FROM alpine:3)";
const CLOUD_SQL_SOURCE: &str = "GoogleCloudPlatform/cloud-sql-proxy cmd/root.go (--quitquitquit or CSQL_PROXY_QUITQUITQUIT enables /quitquitquit on the admin server bound to localhost:<--admin-port, 9091>; the `shutdown` subcommand from v2.20.0 posts to it); Dockerfile (distroless static: no shell, no HTTP client), Dockerfile.alpine (busybox wget), Dockerfile.bookworm (no wget or curl)";
const LINKERD_SOURCE: &str = "linkerd/linkerd2-proxy linkerd/app/admin/src/server.rs (POST /shutdown: 403 unless the caller is loopback, 404 unless enabled; always enabled before proxy v2.236.0 = Linkerd 2.16, then LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED, from config.linkerd.io/proxy-admin-shutdown: enabled); linkerd/linkerd-await src/main.rs (`--shutdown` posts to localhost:<--port>/shutdown after its command), /usr/lib/linkerd/linkerd-await and /bin/sleep are in every proxy image (linkerd/linkerd2 Dockerfile-proxy)";
const KUMA_SOURCE: &str = "kumahq/kuma app/kuma-dp/cmd/run.go (SIGTERM drains Envoy for the drain time, 30 s by default, then kuma-dp exits 0); tools/releases/dockerfiles/base.Dockerfile (distroless :debug-nonroot: busybox at /busybox/busybox, no /bin/sh); `killall` signals kuma-dp by name, so it never hits another PID 1";

/// Images of these tags carry a shell; the default tags of the same software do not.
const SHELL_TAGS: [&str; 4] = ["alpine", "bullseye", "bookworm", "buster"];

/// Whether the image is known to have no `/bin/sh`, with the reason.
pub fn known_without_shell(c: &Container, software: Option<Software>) -> Option<&'static str> {
    let tag = image::tag(&c.image);
    match software {
        Some(Software::LinkerdProxy) => Some("linkerd2-proxy images are distroless or Wolfi images with no shell"),
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

/// Whether PID 1 of the container is the known software itself, with its SIGTERM handler:
/// not when the container runs it under a shell (vault-k8s' `/bin/sh -ec '... && vault agent'`),
/// where PID 1 is the shell, which ignores SIGTERM.
pub fn pid1_handles_sigterm(c: &Container, software: Option<Software>) -> bool {
    let first = c.argv().next().unwrap_or("");
    handles_sigterm(software)
        && !matches!(
            first.rsplit('/').next(),
            Some("sh" | "bash" | "ash" | "dash")
        )
}

/// The name the known software's process has in `/proc/<pid>/comm`, for a signal by name.
pub fn process_name(software: Option<Software>) -> Option<&'static str> {
    match software? {
        Software::IstioProxy => Some("pilot-agent"),
        Software::LinkerdProxy => Some("linkerd2-proxy"),
        Software::KumaDp => Some("kuma-dp"),
        Software::VaultAgent => Some("vault"),
        Software::CloudSqlProxyV2 => Some("cloud-sql-proxy"),
        Software::CloudSqlProxyV1 => Some("cloud_sql_proxy"),
        _ => None,
    }
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
            // pilot-agent is the HTTP client in both the default and the -distroless image.
            Ok(Some(Preset {
                name: "istio-proxy",
                source: ISTIO_SOURCE,
                action: Some(Action::Exec {
                    argv: strings(&["pilot-agent", "request", "POST", "quitquitquit"]),
                }),
                endpoint: Some(loopback(15000, "/quitquitquit", "Envoy's admin listens on localhost only (istio/istio tools/packaging/common/envoy_bootstrap.json); pilot-agent's own /quitquitquit on 15020 answers 403 to callers that are not loopback (pilot/cmd/pilot-agent/status/server.go handleQuit)")),
                signals_pid1: false,
                no_client: None,
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
            let endpoint = loopback(port, "/agent/v1/quit", "the injected agent's listener binds 127.0.0.1 (hashicorp/vault-k8s agent-inject/agent/config.go makeCacheListener)");
            // The UBI variant is built on ubi-minimal; whether it has wget or curl is not known.
            let ubi = c.image.contains("ubi");
            Ok(Some(Preset {
                name: "vault-agent",
                source: VAULT_SOURCE,
                action: (!ubi).then(|| Action::Exec {
                    argv: wget_post(&endpoint),
                }),
                endpoint: Some(endpoint),
                signals_pid1: false,
                no_client: ubi.then(|| "the UBI image of Vault is not known to have wget or curl (hashicorp/vault Dockerfile, ubi target)".into()),
            }))
        }
        Some(Software::CloudSqlProxyV2) => {
            let enabled = c
                .argv()
                .any(|a| a == "--quitquitquit" || a == "--quitquitquit=true")
                || c.env_value("CSQL_PROXY_QUITQUITQUIT") == Some("true");
            if !enabled {
                return Err(needs_feature(
                    name,
                    "the Cloud SQL proxy's quit endpoint is off",
                    "the container argument --quitquitquit (or env CSQL_PROXY_QUITQUITQUIT=true)",
                ));
            }
            let port_flag = flag_value(c, "--admin-port").or(c.env_value("CSQL_PROXY_ADMIN_PORT"));
            let port = port_flag.and_then(|p| p.parse().ok()).unwrap_or(9091);
            let endpoint = loopback(port, "/quitquitquit", "the admin server binds localhost:<--admin-port> (GoogleCloudPlatform/cloud-sql-proxy cmd/root.go startHTTPServer)");
            let tag = image::tag(&c.image);
            let (action, no_client) = if image::version(tag).is_some_and(|v| v >= (2, 20, 0)) {
                // `shutdown` posts to 127.0.0.1:<--admin-port>/quitquitquit (cmd/root.go, #2514).
                let mut argv = strings(&["/cloud-sql-proxy", "shutdown"]);
                if port != 9091 {
                    argv.extend([String::from("--admin-port"), port.to_string()]);
                }
                (Some(Action::Exec { argv }), None)
            } else if tag.contains("alpine") {
                (
                    Some(Action::Exec {
                        argv: wget_post(&endpoint),
                    }),
                    None,
                )
            } else {
                let variant = if tag.contains("bookworm") || tag.contains("bullseye") {
                    "the -bookworm and -bullseye images install no wget or curl (Dockerfile.bookworm)"
                } else {
                    "the default image is distroless (gcr.io/distroless/static:nonroot): no shell, no wget, no curl"
                };
                let version = if image::version(tag).is_some() {
                    "the image is older than v2.20.0, which added the `shutdown` subcommand"
                } else {
                    "the image tag does not give the version, so the `shutdown` subcommand (v2.20.0+) cannot be assumed"
                };
                (None, Some(format!("{version}, and {variant}")))
            };
            Ok(Some(Preset {
                name: "cloud-sql-proxy",
                source: CLOUD_SQL_SOURCE,
                action,
                endpoint: Some(endpoint),
                signals_pid1: false,
                no_client,
            }))
        }
        Some(Software::LinkerdProxy) => {
            if let Err(why) = linkerd_shutdown_enabled(pod, c) {
                return Err(needs_feature(
                    name,
                    &why,
                    "config.linkerd.io/proxy-admin-shutdown: enabled",
                ));
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
            let endpoint = loopback(port, "/shutdown", "linkerd2-proxy answers 403 to a caller that is not loopback (linkerd/linkerd2-proxy linkerd/app/admin/src/server.rs client_is_localhost)");
            // linkerd-await skips its readiness wait and the shutdown when either is set
            // (linkerd/linkerd-await src/main.rs); the exec inherits the container's env.
            let await_disabled = ["LINKERD_AWAIT_DISABLED", "LINKERD_DISABLED"]
                .into_iter()
                .find(|k| c.env.iter().any(|(name, _)| name == k));
            let action = match await_disabled {
                Some(_) => None,
                None => Some(Action::Exec {
                    argv: [
                        "/usr/lib/linkerd/linkerd-await".into(),
                        "--port".into(),
                        port.to_string(),
                        "--shutdown".into(),
                        "--".into(),
                        "/bin/sleep".into(),
                        "0".into(),
                    ]
                    .into(),
                }),
            };
            Ok(Some(Preset {
                name: "linkerd-proxy",
                source: LINKERD_SOURCE,
                action,
                endpoint: Some(endpoint),
                signals_pid1: false,
                no_client: await_disabled.map(|k| format!("the container sets {k}, so linkerd-await skips the shutdown request, and the image has no other HTTP client")),
            }))
        }
        Some(Software::KumaDp) => Ok(Some(Preset {
            name: "kuma-sidecar",
            source: KUMA_SOURCE,
            action: Some(Action::Exec {
                argv: strings(&["/busybox/busybox", "killall", "-%d", "kuma-dp"]),
            }),
            endpoint: None,
            // kuma-dp is the container's PID 1 unless the pod shares one PID namespace, where
            // PID 1 is pause and killall's target is kuma-dp itself.
            signals_pid1: !pod.share_process_namespace,
            no_client: None,
        })),
        _ => Ok(None),
    }
}

/// Whether a kill command makes the same request as the preset, whatever wrote it: the
/// preset's own argv (the program by path or by name), `pilot-agent request [--debug-port=N]
/// POST quitquitquit` for Istio, or `curl`/`wget` posting to the preset's loopback endpoint
/// (for Istio also pilot-agent's own `:15020/quitquitquit`) in an image that has a shell and
/// its tools. A command is judged by what it does, not by where it came from (issue 19).
pub fn same_request(
    argv: &[String],
    preset: &Preset,
    c: &Container,
    software: Option<Software>,
) -> bool {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let normal = |argv: &[String]| -> Vec<String> {
        argv.iter()
            .enumerate()
            .map(|(i, a)| if i == 0 { base(a) } else { a.clone() })
            .collect()
    };
    if let Some(Action::Exec { argv: own }) = &preset.action {
        if normal(argv) == normal(own) {
            return true;
        }
    }
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    if preset.name == "istio-proxy" {
        let rest: Vec<&str> = words
            .iter()
            .skip(1)
            .copied()
            .filter(|w| !w.starts_with("--debug-port"))
            .collect();
        if words.first().is_some_and(|p| base(p) == "pilot-agent")
            && rest == ["request", "POST", "quitquitquit"]
        {
            return true;
        }
    }
    let Some(endpoint) = &preset.endpoint else {
        return false;
    };
    if known_without_shell(c, software).is_some() {
        return false;
    }
    let program = words.first().map(|p| base(p)).unwrap_or_default();
    let posts = match program.as_str() {
        "curl" => {
            words
                .windows(2)
                .any(|w| matches!(w[0], "-X" | "--request") && w[1].eq_ignore_ascii_case("POST"))
                || words.iter().any(|w| {
                    w.starts_with("-XPOST")
                        || matches!(*w, "-d" | "--data" | "--data-raw" | "--json")
                })
        }
        "wget" => words
            .iter()
            .any(|w| w.starts_with("--post-data") || w.starts_with("--method=POST")),
        _ => false,
    };
    if !posts {
        return false;
    }
    let ports: &[u16] = if preset.name == "istio-proxy" {
        &[15000, 15020]
    } else {
        core::slice::from_ref(&endpoint.port)
    };
    words.iter().skip(1).any(|w| {
        let url = w.strip_prefix("http://").unwrap_or(w);
        ["localhost", "127.0.0.1"].iter().any(|host| {
            ports.iter().any(|port| {
                url.strip_prefix(host)
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|r| r.strip_prefix(port.to_string().as_str()))
                    == Some(endpoint.path)
            })
        })
    })
}

/// Whether linkerd-proxy's `/shutdown` is on, or why it is off.
///
/// linkerd/linkerd2-proxy 49336fd7c (release/v2.236.0, shipped in Linkerd 2.16 and
/// edge-24.6.2) made the endpoint switchable and off by default; before, it was always on.
/// From that release the injector always renders LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED
/// (linkerd/linkerd2 charts/partials/templates/_proxy.tpl), so a proxy without the variable
/// and with a tag that does not give the version is taken to be an older one.
fn linkerd_shutdown_enabled(pod: &Pod, c: &Container) -> Result<(), String> {
    let annotation = pod
        .annotations
        .get("config.linkerd.io/proxy-admin-shutdown")
        .map(String::as_str);
    let env = c.env_value("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED");
    let from_2_16 = linkerd_from_2_16(image::tag(&c.image));
    match (from_2_16, env) {
        (Some(false), _) => Ok(()),
        (_, Some("true")) => Ok(()),
        (_, Some(value)) => Err(format!("linkerd-proxy's /shutdown endpoint is off: LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED is `{value}` (from Linkerd 2.16 the endpoint is off by default)")),
        (Some(true), None) if annotation == Some("enabled") => Ok(()),
        (Some(true), None) => Err("linkerd-proxy's /shutdown endpoint is off: from Linkerd 2.16 it is off by default and the pod does not set config.linkerd.io/proxy-admin-shutdown: enabled".into()),
        (None, None) => Ok(()),
    }
}

/// Whether a proxy image tag is Linkerd 2.16 or later (`Some(true)`), earlier (`Some(false)`),
/// or does not say (`None`). Stable and enterprise tags carry the Linkerd version; edge tags
/// are dated releases, and edge-24.6.2 is the first with the switch.
fn linkerd_from_2_16(tag: &str) -> Option<bool> {
    for prefix in ["stable-", "enterprise-", "version-"] {
        if let Some(rest) = tag.strip_prefix(prefix) {
            let (major, minor, _) = image::version(rest)?;
            return Some((major, minor) >= (2, 16));
        }
    }
    let rest = tag.strip_prefix("edge-")?;
    Some(image::version(rest)? >= (24, 6, 2))
}

fn loopback(port: u16, path: &'static str, access: &'static str) -> Endpoint {
    Endpoint {
        method: "POST",
        host: "127.0.0.1",
        port,
        path,
        loopback_only: true,
        access,
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

/// A busybox `wget` POST with an empty body.
fn wget_post(endpoint: &Endpoint) -> Vec<String> {
    strings(&["wget", "-q", "-O-", "--post-data="])
        .into_iter()
        .chain([format!(
            "http://{}:{}{}",
            endpoint.host, endpoint.port, endpoint.path
        )])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: the same command gets the same verdict whatever its source.
    #[test]
    fn recognises_the_preset_request_written_by_hand() {
        let c = Container {
            name: "istio-proxy".into(),
            image: "docker.io/istio/proxyv2:1.24.0".into(),
            args: strings(&["proxy", "sidecar"]),
            ..Container::default()
        };
        let pod = Pod::default();
        let software = Some(Software::IstioProxy);
        let preset = preset_for(&pod, &c, software).unwrap().unwrap();
        for argv in [
            &["pilot-agent", "request", "POST", "quitquitquit"][..],
            &[
                "/usr/local/bin/pilot-agent",
                "request",
                "--debug-port=15020",
                "POST",
                "quitquitquit",
            ],
            &["curl", "-X", "POST", "localhost:15020/quitquitquit"],
            &[
                "curl",
                "-fsS",
                "-XPOST",
                "http://127.0.0.1:15000/quitquitquit",
            ],
        ] {
            assert!(
                same_request(&strings(argv), &preset, &c, software),
                "{argv:?}"
            );
        }
        for argv in [
            &["curl", "localhost:15020/quitquitquit"][..],
            &["curl", "-X", "POST", "localhost:15021/quitquitquit"],
            &["sh", "-c", "kill -%d 1"],
        ] {
            assert!(
                !same_request(&strings(argv), &preset, &c, software),
                "{argv:?}"
            );
        }
        let distroless = Container {
            image: "docker.io/istio/proxyv2:1.24.0-distroless".into(),
            ..c.clone()
        };
        let curl = strings(&["curl", "-X", "POST", "localhost:15020/quitquitquit"]);
        assert!(!same_request(&curl, &preset, &distroless, software));
    }

    #[test]
    fn linkerd_versions_from_tags() {
        assert_eq!(linkerd_from_2_16("stable-2.14.10"), Some(false));
        assert_eq!(linkerd_from_2_16("enterprise-2.16.0"), Some(true));
        assert_eq!(linkerd_from_2_16("edge-24.6.1"), Some(false));
        assert_eq!(linkerd_from_2_16("edge-24.6.2"), Some(true));
        assert_eq!(linkerd_from_2_16("test-inject-proxy-version"), None);
    }
}
