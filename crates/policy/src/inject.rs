//! Injection: whether an injector will add containers to a pod, and the pod it would make.
//!
//! A manifest is written before injection: its pod has no proxy yet, so a plan of it says
//! "nothing to stop" although the pod that runs will have one. Two things follow from that.
//! - [`marks`] reads a pod's own opt-in and opt-out marks (Istio's `sidecar.istio.io/inject`
//!   label, Linkerd's `linkerd.io/inject` annotation, Kuma's `kuma.io/sidecar-injection`,
//!   Vault's `vault.hashicorp.com/agent-inject`): a pod that opts in and has none of the
//!   injector's containers will be injected, and the plan says so (`will-be-injected`).
//! - [`simulate`] injects a pod the way an injector would (the request fact `facts.inject`,
//!   `sidekill plan --inject`), so the plan is of the pod that runs. The injected containers
//!   follow the injectors' own output: Istio's `pkg/kube/inject/testdata/inject/*.injected`,
//!   Linkerd's `cli/cmd/testdata/inject_*.golden.yml`, Kuma's injector testdata, and
//!   hashicorp/vault-k8s `agent-inject/agent` (`ContainerSidecar`, `ContainerInitSidecar`,
//!   `Patch`), trimmed to what the policy and a reader need: names, images, command and
//!   args, the environment that changes a stop, the user, lifecycle hooks, `restartPolicy`,
//!   and the annotations that mark the pod as injected.
//!
//! Failure modes: a pod that opts out, or already has a container the injector adds, is left
//! as it is and the plan says why (`injection-simulated`); Vault injects only pods annotated
//! `vault.hashicorp.com/agent-inject: "true"` and has no native-sidecar layout.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::classify::Injector;
use crate::pod::Pod;

/// The versions the simulated injectors are taken from.
pub const ISTIO_IMAGE: &str = "docker.io/istio/proxyv2:1.24.0";
/// Linkerd's proxy image (edge-24.11.8, after Linkerd 2.16's switchable `/shutdown`).
pub const LINKERD_IMAGE: &str = "cr.l5d.io/linkerd/proxy:edge-24.11.8";
/// Kuma's data plane image.
pub const KUMA_DP_IMAGE: &str = "docker.io/kumahq/kuma-dp:2.9.2";
/// Kuma's init image.
pub const KUMA_INIT_IMAGE: &str = "docker.io/kumahq/kuma-init:2.9.2";
/// vault-k8s' `DefaultVaultImage` (agent-inject/agent/agent.go at fbc5b1f).
pub const VAULT_IMAGE: &str = "hashicorp/vault:2.0.4";

/// One injection to simulate: `facts.inject.<injector>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Which injector.
    pub injector: Injector,
    /// Whether its proxy goes in as a native sidecar (an init container with
    /// `restartPolicy: Always`) rather than a regular container. A pod's own annotation
    /// (`sidecar.istio.io/nativeSidecar`, `config.alpha.linkerd.io/proxy-enable-native-sidecar`)
    /// overrides it, as it does for the injector.
    pub native: bool,
}

/// The injectors `facts.inject` and `--inject` accept, by name, in the order they are applied.
pub const INJECTORS: [(&str, Injector); 4] = [
    ("istio", Injector::Istio),
    ("linkerd", Injector::Linkerd),
    ("kuma", Injector::Kuma),
    ("vault", Injector::Vault),
];

/// The containers an injector adds: (init container, sidecar).
pub fn container_names(injector: Injector) -> (&'static str, &'static str) {
    match injector {
        Injector::Istio => ("istio-init", "istio-proxy"),
        Injector::Linkerd => ("linkerd-init", "linkerd-proxy"),
        Injector::Kuma => ("kuma-init", "kuma-sidecar"),
        Injector::Vault => ("vault-agent-init", "vault-agent"),
        Injector::CloudSqlProxy | Injector::Unknown => ("", ""),
    }
}

/// The injector's display name.
pub fn display(injector: Injector) -> &'static str {
    match injector {
        Injector::Istio => "Istio",
        Injector::Linkerd => "Linkerd",
        Injector::Kuma => "Kuma",
        Injector::Vault => "Vault's agent injector",
        Injector::CloudSqlProxy => "the Cloud SQL proxy operator",
        Injector::Unknown => "an unknown injector",
    }
}

/// The name `--inject` and `facts.inject` use.
pub fn fact_name(injector: Injector) -> &'static str {
    INJECTORS
        .iter()
        .find(|(_, i)| *i == injector)
        .map_or("", |(name, _)| name)
}

/// What a pod's own labels and annotations say about one injector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The pod opts in: the mark, as `key=value`.
    In(String),
    /// The pod opts out: the mark.
    Out(String),
}

fn lookup<'p>(
    pod: &'p Pod,
    key: &str,
    labels: bool,
    annotations: bool,
) -> Option<(&'static str, &'p str)> {
    if labels {
        if let Some(v) = pod.labels.get(key) {
            return Some(("label", v));
        }
    }
    if annotations {
        if let Some(v) = pod.annotations.get(key) {
            return Some(("annotation", v));
        }
    }
    None
}

/// The pod's opt-in or opt-out mark for `injector`, when it has one.
pub fn mark(pod: &Pod, injector: Injector) -> Option<Mark> {
    let (key, labels, annotations, yes, no): (&str, bool, bool, &[&str], &[&str]) = match injector {
        // istio/istio pkg/kube/inject/webhook.go injectRequired: the label (or the deprecated
        // annotation) "true" or "false"; a revision label also selects the revision's webhook.
        Injector::Istio => ("sidecar.istio.io/inject", true, true, &["true"], &["false"]),
        // linkerd/linkerd2 controller/proxy-injector: the annotation only.
        Injector::Linkerd => (
            "linkerd.io/inject",
            false,
            true,
            &["enabled", "ingress"],
            &["disabled"],
        ),
        // kumahq/kuma: the label (the annotation is deprecated but read).
        Injector::Kuma => (
            "kuma.io/sidecar-injection",
            true,
            true,
            &["enabled", "true"],
            &["disabled", "false"],
        ),
        // hashicorp/vault-k8s agent-inject/handler.go: the annotation only, always per pod.
        Injector::Vault => (
            "vault.hashicorp.com/agent-inject",
            false,
            true,
            &["true"],
            &["false"],
        ),
        Injector::CloudSqlProxy | Injector::Unknown => return None,
    };
    if let Some((kind, value)) = lookup(pod, key, labels, annotations) {
        let text = format!("{kind} {key}={value}");
        if yes.contains(&value) {
            return Some(Mark::In(text));
        }
        if no.contains(&value) {
            return Some(Mark::Out(text));
        }
    }
    if injector == Injector::Istio {
        if let Some(rev) = pod.labels.get("istio.io/rev").filter(|r| !r.is_empty()) {
            return Some(Mark::In(format!("label istio.io/rev={rev}")));
        }
    }
    None
}

/// The container of `injector` the pod already has, when it has one.
pub fn already_has(pod: &Pod, injector: Injector) -> Option<String> {
    let (init, sidecar) = container_names(injector);
    pod.all_containers()
        .map(|(_, c)| c)
        .find(|c| c.name == init || c.name == sidecar)
        .map(|c| c.name.clone())
}

/// One simulated injection, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    /// The injector (`istio`, `linkerd`, `kuma`, `vault`).
    pub injector: Injector,
    /// Whether its proxy went in as a native sidecar.
    pub native: bool,
    /// The containers it added, in the order it added them; empty when it left the pod alone.
    pub added: Vec<String>,
    /// What it did, or why it left the pod alone.
    pub reason: String,
}

/// The simulated injections of one pod and the pod they make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Injection {
    /// One entry per injector of `facts.inject`.
    pub injected: Vec<Injected>,
    /// The injected pod, `{"metadata", "spec"}`: what the plan is of.
    pub pod: Value,
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

fn list<'v>(spec: &'v mut Map<String, Value>, key: &str) -> &'v mut Vec<Value> {
    let entry = spec.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    match entry {
        Value::Array(a) => a,
        _ => unreachable!("made an array above"),
    }
}

fn annotation<'m>(meta: &'m Value, key: &str) -> Option<&'m str> {
    meta.get("annotations")?.get(key)?.as_str()
}

/// Injects `pod` (parsed) whose JSON is `metadata` and `spec`, with each simulation in turn.
/// Returns the report of each; the JSON is changed in place.
pub fn simulate(
    pod: &Pod,
    metadata: &mut Value,
    spec: &mut Value,
    simulations: &[Simulation],
) -> Vec<Injected> {
    let mut out = Vec::new();
    for sim in simulations {
        let injector = sim.injector;
        let name = display(injector);
        let left_alone = |reason: String| Injected {
            injector,
            native: false,
            added: Vec::new(),
            reason,
        };
        if let Some(Mark::Out(mark)) = mark(pod, injector) {
            out.push(left_alone(format!(
                "the pod opts out ({mark}), so {name} leaves it alone"
            )));
            continue;
        }
        if let Some(existing) = already_has(pod, injector) {
            out.push(left_alone(format!(
                "the pod already has `{existing}`, so {name} leaves it as it is"
            )));
            continue;
        }
        if injector == Injector::Vault && !matches!(mark(pod, injector), Some(Mark::In(_))) {
            out.push(left_alone("Vault's agent injector injects only pods annotated vault.hashicorp.com/agent-inject: \"true\" (hashicorp/vault-k8s agent-inject/handler.go), and this one is not".into()));
            continue;
        }
        let (native, why) = native_layout(metadata, injector, sim.native);
        let added = inject_one(metadata, spec, injector, native);
        let layout = if native {
            "native: the proxy is an init container with restartPolicy: Always"
        } else {
            "classic: the sidecar is a regular container"
        };
        out.push(Injected {
            injector,
            native,
            reason: format!(
                "simulated {name} injection ({layout}{why}): added {}",
                added.join(", ")
            ),
            added,
        });
    }
    out
}

/// The layout to use: the pod's own annotation wins over the fact, as it does for the injector.
fn native_layout(metadata: &Value, injector: Injector, asked: bool) -> (bool, String) {
    let key = match injector {
        Injector::Istio => "sidecar.istio.io/nativeSidecar",
        Injector::Linkerd => "config.alpha.linkerd.io/proxy-enable-native-sidecar",
        Injector::Vault => {
            return (
                false,
                if asked {
                    "; vault-k8s has no native-sidecar layout (agent-inject/agent/agent.go Patch)"
                        .into()
                } else {
                    String::new()
                },
            )
        }
        _ => return (asked, String::new()),
    };
    match annotation(metadata, key) {
        Some("true") => (true, format!("; the pod's annotation {key}=true")),
        Some("false") => (false, format!("; the pod's annotation {key}=false")),
        _ => (asked, String::new()),
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| json!(s)).collect())
}

fn inject_one(
    metadata: &mut Value,
    spec: &mut Value,
    injector: Injector,
    native: bool,
) -> Vec<String> {
    let pod_name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let existing_annotations = metadata.get("annotations").cloned().unwrap_or(Value::Null);
    let spec = obj(spec);
    let app: Vec<String> = list(spec, "containers")
        .iter()
        .filter_map(|c| c.get("name")?.as_str().map(String::from))
        .collect();
    let meta = obj(metadata);
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let (init_name, sidecar_name) = container_names(injector);
    let mut added = Vec::new();
    match injector {
        Injector::Istio => {
            // pkg/kube/inject/testdata/inject/hello.yaml.injected (classic) and
            // job.yaml.injected (native): istio-init first, the proxy last of the containers or,
            // native, right after istio-init.
            let init = json!({
                "name": "istio-init",
                "image": ISTIO_IMAGE,
                "args": strings(&["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"]),
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}, "privileged": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0},
            });
            let mut proxy = json!({
                "name": "istio-proxy",
                "image": ISTIO_IMAGE,
                "args": strings(&["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"]),
                "env": [
                    {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                    {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
                    {"name": "ISTIO_META_APP_CONTAINERS", "value": app.join(",")},
                    {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
                ],
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false, "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337},
                "volumeMounts": [
                    {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
                    {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
                    {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
                    {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
                    {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"},
                ],
            });
            let inits = list(spec, "initContainers");
            if native {
                let p = obj(&mut proxy);
                p.insert("restartPolicy".into(), json!("Always"));
                p.insert("lifecycle".into(), json!({"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}}));
                p.insert("startupProbe".into(), json!({"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600}));
                inits.splice(0..0, [init, proxy]);
            } else {
                inits.insert(0, init);
                list(spec, "containers").push(proxy);
            }
            let status = json!({
                "initContainers": if native { json!(["istio-init", "istio-proxy"]) } else { json!(["istio-init"]) },
                "containers": if native { Value::Null } else { json!(["istio-proxy"]) },
                "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
                "imagePullSecrets": null,
                "revision": "default",
            });
            annotations.insert("sidecar.istio.io/status".into(), json!(status.to_string()));
            annotations.insert(
                "kubectl.kubernetes.io/default-container".into(),
                json!(app.first().cloned().unwrap_or_default()),
            );
            annotations.insert("prometheus.io/path".into(), json!("/stats/prometheus"));
            annotations.insert("prometheus.io/port".into(), json!("15020"));
            annotations.insert("prometheus.io/scrape".into(), json!("true"));
            labels.insert("security.istio.io/tlsMode".into(), json!("istio"));
            labels.insert(
                "service.istio.io/canonical-name".into(),
                json!(if pod_name.is_empty() {
                    app.first().cloned().unwrap_or_default()
                } else {
                    pod_name
                }),
            );
            labels.insert(
                "service.istio.io/canonical-revision".into(),
                json!("latest"),
            );
            for (name, volume) in [
                ("istio-envoy", json!({"emptyDir": {"medium": "Memory"}})),
                ("istio-data", json!({"emptyDir": {}})),
                (
                    "istio-podinfo",
                    json!({"downwardAPI": {"items": [{"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"}, {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"}]}}),
                ),
                (
                    "istio-token",
                    json!({"projected": {"sources": [{"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}),
                ),
                (
                    "istiod-ca-cert",
                    json!({"configMap": {"name": "istio-ca-root-cert"}}),
                ),
            ] {
                let mut v = volume;
                obj(&mut v).insert("name".into(), json!(name));
                list(spec, "volumes").push(v);
            }
        }
        Injector::Linkerd => {
            // cli/cmd/testdata/inject_emojivoto_deployment.golden.yml (native) and
            // ….golden.classic-52016cb.yml (classic): linkerd-init, then the proxy first.
            let shutdown = annotation(
                &existing_annotations,
                "config.linkerd.io/proxy-admin-shutdown",
            ) == Some("enabled");
            let admin_port = annotation(&existing_annotations, "config.linkerd.io/admin-port")
                .unwrap_or("4191")
                .to_string();
            let init = json!({
                "name": "linkerd-init",
                "image": LINKERD_IMAGE,
                "command": ["/usr/lib/linkerd/linkerd2-proxy-init"],
                "args": strings(&["--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102", "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"]),
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}, "privileged": false, "readOnlyRootFilesystem": true, "runAsGroup": 65534, "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                "volumeMounts": [{"mountPath": "/run", "name": "linkerd-proxy-init-xtables-lock"}],
            });
            let mut proxy = json!({
                "name": "linkerd-proxy",
                "image": LINKERD_IMAGE,
                "env": [
                    {"name": "_pod_containerName", "value": "linkerd-proxy"},
                    {"name": "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", "value": if shutdown { "true" } else { "false" }},
                    {"name": "LINKERD2_PROXY_LOG", "value": "warn,linkerd=info,hickory=error,[{headers}]=off,[{request}]=off"},
                    {"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": format!("[::]:{admin_port}")},
                    {"name": "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS", "value": "127.0.0.1:4140,[::1]:4140"},
                    {"name": "LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "value": "[::]:4143"},
                ],
                "ports": [{"containerPort": 4143, "name": "linkerd-proxy"}, {"containerPort": admin_port.parse::<u16>().unwrap_or(4191), "name": "linkerd-admin"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 4191}, "initialDelaySeconds": 2, "timeoutSeconds": 1},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "runAsUser": 2102, "seccompProfile": {"type": "RuntimeDefault"}},
                "volumeMounts": [
                    {"mountPath": "/var/run/linkerd/identity/end-entity", "name": "linkerd-identity-end-entity"},
                    {"mountPath": "/var/run/secrets/tokens", "name": "linkerd-identity-token"},
                ],
            });
            let p = obj(&mut proxy);
            if native {
                p.insert("restartPolicy".into(), json!("Always"));
                p.insert("startupProbe".into(), json!({"httpGet": {"path": "/ready", "port": 4191}, "periodSeconds": 1, "failureThreshold": 120}));
                list(spec, "initContainers").splice(0..0, [init, proxy]);
            } else {
                p.insert("lifecycle".into(), json!({"postStart": {"exec": {"command": ["/usr/lib/linkerd/linkerd-await", "--timeout=2m", format!("--port={admin_port}")]}}}));
                list(spec, "initContainers").insert(0, init);
                list(spec, "containers").insert(0, proxy);
            }
            annotations.insert(
                "linkerd.io/created-by".into(),
                json!("linkerd/proxy-injector edge-24.11.8"),
            );
            annotations.insert("linkerd.io/inject".into(), json!("enabled"));
            annotations.insert("linkerd.io/proxy-version".into(), json!("edge-24.11.8"));
            labels.insert("linkerd.io/control-plane-ns".into(), json!("linkerd"));
            for (name, volume) in [
                ("linkerd-proxy-init-xtables-lock", json!({"emptyDir": {}})),
                (
                    "linkerd-identity-end-entity",
                    json!({"emptyDir": {"medium": "Memory"}}),
                ),
                (
                    "linkerd-identity-token",
                    json!({"projected": {"sources": [{"serviceAccountToken": {"audience": "identity.l5d.io", "expirationSeconds": 86400, "path": "linkerd-identity-token"}}]}}),
                ),
            ] {
                let mut v = volume;
                obj(&mut v).insert("name".into(), json!(name));
                list(spec, "volumes").push(v);
            }
        }
        Injector::Kuma => {
            // pkg/plugins/runtime/k8s/webhooks/injector/testdata/inject.01.golden.yaml (native)
            // and ….legacy-f5aa65e.yaml (classic): kuma-init, then kuma-sidecar first.
            let init = json!({
                "name": "kuma-init",
                "image": KUMA_INIT_IMAGE,
                "command": ["/usr/bin/kumactl", "install", "transparent-proxy"],
                "args": ["--config=/tmp/transparent-proxy/base/config.yaml"],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}, "runAsGroup": 0, "runAsUser": 0},
                "volumeMounts": [{"mountPath": "/tmp", "name": "kuma-init-tmp"}],
            });
            let mut sidecar = json!({
                "name": "kuma-sidecar",
                "image": KUMA_DP_IMAGE,
                "args": ["run", "--log-level=info", "--concurrency=2"],
                "env": [
                    {"name": "KUMA_CONTROL_PLANE_URL", "value": "https://kuma-control-plane.kuma-system:5678"},
                    {"name": "KUMA_DATAPLANE_DRAIN_TIME", "value": "30s"},
                    {"name": "KUMA_DATAPLANE_MESH", "value": "default"},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 9901}, "initialDelaySeconds": 1, "periodSeconds": 5},
                "securityContext": {"runAsGroup": 5678, "runAsUser": 5678},
                "volumeMounts": [{"mountPath": "/tmp", "name": "kuma-sidecar-tmp"}],
            });
            if native {
                let s = obj(&mut sidecar);
                s.insert("restartPolicy".into(), json!("Always"));
                s.insert(
                    "lifecycle".into(),
                    json!({"preStop": {"exec": {"command": ["killall", "-USR2", "kuma-dp"]}}}),
                );
                list(spec, "initContainers").splice(0..0, [init, sidecar]);
            } else {
                list(spec, "initContainers").insert(0, init);
                list(spec, "containers").insert(0, sidecar);
            }
            annotations.insert("kuma.io/envoy-admin-port".into(), json!("9901"));
            annotations.insert("kuma.io/sidecar-injected".into(), json!("true"));
            labels.insert("kuma.io/mesh".into(), json!("default"));
            for name in ["kuma-init-tmp", "kuma-sidecar-tmp"] {
                list(spec, "volumes").push(json!({"name": name, "emptyDir": {"sizeLimit": "10M"}}));
            }
        }
        Injector::Vault => {
            // hashicorp/vault-k8s agent-inject/agent: ContainerInitSidecar (unless
            // agent-pre-populate: "false"), appended to the init containers (first with
            // agent-init-first: "true"); ContainerSidecar (unless agent-pre-populate-only),
            // appended to the containers; both run `/bin/sh -ec` as uid 100.
            let pre_populate = annotation(
                &existing_annotations,
                "vault.hashicorp.com/agent-pre-populate",
            ) != Some("false");
            let only = annotation(
                &existing_annotations,
                "vault.hashicorp.com/agent-pre-populate-only",
            ) == Some("true");
            let first = annotation(
                &existing_annotations,
                "vault.hashicorp.com/agent-init-first",
            ) == Some("true");
            let container = |name: &str, arg: &str| {
                json!({
                    "name": name,
                    "image": VAULT_IMAGE,
                    "command": ["/bin/sh", "-ec"],
                    "args": [arg],
                    "env": [{"name": "VAULT_LOG_LEVEL", "value": "info"}, {"name": "VAULT_LOG_FORMAT", "value": "standard"}],
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsGroup": 1000, "runAsNonRoot": true, "runAsUser": 100},
                    "volumeMounts": [{"mountPath": "/home/vault", "name": "home-sidecar"}, {"mountPath": "/vault/secrets", "name": "vault-secrets"}],
                })
            };
            if pre_populate {
                let init = container(init_name, "echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json");
                let inits = list(spec, "initContainers");
                if first {
                    inits.insert(0, init);
                } else {
                    inits.push(init);
                }
                added.push(init_name.to_string());
            }
            if !only {
                list(spec, "containers").push(container(sidecar_name, "echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"));
                added.push(sidecar_name.to_string());
            }
            annotations.insert(
                "vault.hashicorp.com/agent-inject-status".into(),
                json!("injected"),
            );
            for name in ["home-init", "home-sidecar", "vault-secrets"] {
                list(spec, "volumes").push(json!({"name": name, "emptyDir": {"medium": "Memory"}}));
            }
        }
        Injector::CloudSqlProxy | Injector::Unknown => {}
    }
    if added.is_empty() && injector != Injector::Vault {
        added = [init_name.to_string(), sidecar_name.to_string()].into();
    }
    for (key, values) in [("labels", labels), ("annotations", annotations)] {
        let entry = meta.entry(key).or_insert_with(|| Value::Object(Map::new()));
        obj(entry).extend(values);
    }
    added
}
