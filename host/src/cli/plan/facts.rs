//! The facts `plan` and `policy diff` pass to the policy: their flags, how they become the
//! request's `facts`, and the check the policy makes of them once, before any document.

use clap::Args;
use serde_json::{json, Map, Value};

use crate::error::AnswerError;
use crate::error::Error;
use crate::input::Document;

/// Facts the host knows and manifests do not say; passed to the policy as they are.
#[derive(Debug, Args)]
pub struct FactsArgs {
    /// Argo executor: emissary, docker, k8sapi, kubelet, pns or none
    #[arg(
        long,
        value_name = "NAME",
        long_help = "The Argo executor that runs the pods: emissary, docker, k8sapi, \
                     kubelet, pns, or none (no Argo). Detected from each pod when absent. \
                     The policy module checks the name."
    )]
    pub executor: Option<String>,

    /// Kubernetes version of the cluster, 1.20 or later, such as 1.31 or v1.31.2
    #[arg(
        long,
        value_name = "VERSION",
        value_parser = parse_cluster_version,
        long_help = "The cluster's Kubernetes version: 1.MINOR with MINOR 20 or more, with \
                     an optional `v`, patch and suffix (1.31, v1.31.2, 1.31+, v1.31.2-eks-1). \
                     Older versions are refused: they are long out of support, and a typo \
                     such as 1.3 for 1.30 would change the plan. Native sidecars \
                     (initContainers with restartPolicy Always) need 1.29 or later: given \
                     an older version, the plan reports each native sidecar as an error \
                     (it runs as an ordinary init container and blocks the pod). Without \
                     this fact the plan assumes 1.29 or later."
    )]
    pub cluster_version: Option<String>,

    /// sidekill may use the pods/proxy subresource (for HTTP stop endpoints)
    #[arg(long)]
    pub pods_proxy: bool,

    /// Name of a main container, overriding detection (repeatable)
    ///
    /// In a pod no Argo runs, every other container no injector marked becomes a sidecar.
    #[arg(long = "main-container", value_name = "NAME")]
    pub main_containers: Vec<String>,

    /// Name of a container to treat as a sidecar (repeatable)
    #[arg(long = "sidecar", value_name = "NAME")]
    pub sidecars: Vec<String>,

    /// Plan image swap to this nop image (needs patch on pods)
    #[arg(
        long,
        value_name = "IMAGE",
        long_help = "Allow image swap, with this nop image: a sidecar is stopped by patching \
                     its image to the nop, which the kubelet stops from outside and which \
                     exits 0. Needs patch on pods. Passed as facts.stopMethods.imageSwap. \
                     Default: not allowed."
    )]
    pub nop_image: Option<String>,

    /// Plan the ephemeral quitter with this image (opt-in)
    #[arg(
        long,
        value_name = "IMAGE",
        long_help = "Allow the ephemeral quitter, with this image: an ephemeral container \
                     that calls a loopback-only quit endpoint or signals the sidecar by \
                     name. Needs pods/ephemeralcontainers; the container stays in the pod \
                     spec and admission may refuse it. Passed as \
                     facts.stopMethods.ephemeral. Default: not allowed."
    )]
    pub quitter_image: Option<String>,

    /// Plan the pods as INJECTOR would inject them (repeatable)
    #[arg(
        long,
        value_name = "INJECTOR[:native]",
        long_help = "Plan the pods as this injector would inject them, as when their \
                     namespace is injected: istio, linkerd, kuma or vault, with :native for \
                     the proxy as a native sidecar (default :classic, a regular container). \
                     A pod that opts out or already has the injector's containers is left \
                     alone. Passed as facts.inject."
    )]
    pub inject: Vec<String>,
}

/// The oldest Kubernetes minor version `--cluster-version` accepts.
const OLDEST_MINOR: u32 = 20;

/// Checks `--cluster-version` (`1.31`, `v1.31.2`, `1.31+`, `v1.31.2-eks-1`) and passes it
/// on unchanged: the policy reads it.
fn parse_cluster_version(text: &str) -> std::result::Result<String, String> {
    let refuse = || {
        format!(
            "expected a Kubernetes version 1.{OLDEST_MINOR} or later, as MAJOR.MINOR or \
             vMAJOR.MINOR.PATCH (such as 1.31 or v1.31.2)"
        )
    };
    let bare = text.strip_prefix('v').unwrap_or(text);
    let mut parts = bare.splitn(3, '.');
    let major = parts.next().ok_or_else(refuse)?;
    let minor = parts.next().ok_or_else(refuse)?;
    let digits = minor.trim_end_matches('+');
    if major != "1" || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    match digits.parse::<u32>() {
        Ok(minor) if minor >= OLDEST_MINOR => Ok(text.to_string()),
        Ok(minor) => Err(format!(
            "Kubernetes 1.{minor} is older than 1.{OLDEST_MINOR}, the oldest version sidekill \
             plans for{}",
            if (2..10).contains(&minor) {
                format!(" (did you mean 1.{minor}0?)")
            } else {
                String::new()
            }
        )),
        Err(_) => Err(refuse()),
    }
}

/// The `facts` object of a request, with only the facts given.
pub(crate) fn facts(args: &FactsArgs) -> Value {
    let mut facts = Map::new();
    if let Some(executor) = &args.executor {
        facts.insert("executor".into(), json!(executor));
    }
    if let Some(version) = &args.cluster_version {
        facts.insert("clusterVersion".into(), json!(version));
    }
    if args.pods_proxy {
        facts.insert("podsProxy".into(), json!(true));
    }
    if !args.main_containers.is_empty() {
        facts.insert("mainContainers".into(), json!(args.main_containers));
    }
    if !args.sidecars.is_empty() {
        facts.insert("sidecars".into(), json!(args.sidecars));
    }
    let mut methods = Map::new();
    if let Some(image) = &args.nop_image {
        methods.insert("imageSwap".into(), json!({"allowed": true, "image": image}));
    }
    if let Some(image) = &args.quitter_image {
        methods.insert("ephemeral".into(), json!({"allowed": true, "image": image}));
    }
    if !methods.is_empty() {
        facts.insert("stopMethods".into(), Value::Object(methods));
    }
    let mut inject = Map::new();
    for spec in &args.inject {
        // The policy checks the injector's name; a layout other than native or classic is
        // passed on as is, for the policy to refuse.
        let (name, layout) = spec.split_once(':').unwrap_or((spec, "classic"));
        let native = match layout {
            "native" => json!(true),
            "classic" => json!(false),
            other => json!(other),
        };
        inject.insert(name.into(), json!({"native": native}));
    }
    if !inject.is_empty() {
        facts.insert("inject".into(), Value::Object(inject));
    }
    Value::Object(facts)
}

/// The flag a `facts` field of the request comes from.
fn flag_of(path: &str) -> Option<&'static str> {
    let field = path.strip_prefix("facts.")?;
    let flag = match field.split(['.', '[']).next()? {
        "executor" => "--executor",
        "clusterVersion" => "--cluster-version",
        "podsProxy" => "--pods-proxy",
        "mainContainers" => "--main-container",
        "sidecars" => "--sidecar",
        "stopMethods" if field.starts_with("stopMethods.imageSwap") => "--nop-image",
        "stopMethods" if field.starts_with("stopMethods.ephemeral") => "--quitter-image",
        _ => return None,
    };
    Some(flag)
}

/// Checks the facts once, before any document is planned: the policy judges them (it
/// alone knows, say, the executors), and a fact it refuses is reported once, by its flag,
/// rather than once per document by its field in the request (`facts.executor`).
///
/// # Errors
/// A message naming the flag, when the policy refuses a fact.
pub(crate) fn check_facts(
    policy: &crate::Policy,
    facts: &Value,
) -> std::result::Result<(), String> {
    if facts.as_object().is_none_or(Map::is_empty) {
        return Ok(());
    }
    let probe = json!({"object": {"kind": "List", "items": []}, "facts": facts});
    match policy.plan(probe.to_string().as_bytes()) {
        Err(Error::Answer(AnswerError::Policy {
            message,
            path: Some(path),
            ..
        })) => match flag_of(&path) {
            Some(flag) => {
                // "invalid field `facts.executor`: expected ..." -> "invalid --executor: expected ..."
                let quoted = format!("`{path}`");
                let text = message
                    .replace(
                        &format!("invalid field {quoted}"),
                        &format!("invalid {flag}"),
                    )
                    .replace(
                        &format!("missing field {quoted}"),
                        &format!("{flag} is missing"),
                    )
                    .replace(&quoted, flag);
                Err(text)
            }
            None => Ok(()),
        },
        // Another answer to the empty probe says nothing about the facts: the documents'
        // own answers will.
        _ => Ok(()),
    }
}

/// The request envelope for one document.
pub(crate) fn request(doc: &Document, facts: &Value) -> Vec<u8> {
    let mut request = Map::new();
    request.insert("object".into(), doc.object.clone());
    if facts.as_object().is_some_and(|f| !f.is_empty()) {
        request.insert("facts".into(), facts.clone());
    }
    Value::Object(request).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_fields_map_to_their_flags() {
        assert_eq!(flag_of("facts.executor"), Some("--executor"));
        assert_eq!(
            flag_of("facts.stopMethods.imageSwap.image"),
            Some("--nop-image")
        );
        assert_eq!(flag_of("facts.sidecars[0]"), Some("--sidecar"));
        assert_eq!(flag_of("object.kind"), None);
    }
}
