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
    [init, sidecar]
        .into_iter()
        .find(|name| pod.container(name).is_some())
        .map(String::from)
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

/// Each injector's output as JSON text, `${NAME}` filled in by [`inject_one`]: the init
/// container, the sidecar, what only the classic or the native sidecar has, and the pod's new
/// labels, annotations and volumes. Text rather than `json!` keeps the wasm module small.
///
/// Istio: pkg/kube/inject/testdata/inject/hello.yaml.injected (classic) and job.yaml.injected
/// (native). Linkerd: cli/cmd/testdata/inject_emojivoto_deployment.golden.yml (native) and
/// ….golden.classic-52016cb.yml (classic). Kuma: pkg/plugins/runtime/k8s/webhooks/injector/
/// testdata/inject.01.golden.yaml (native) and ….legacy-f5aa65e.yaml (classic). Vault:
/// hashicorp/vault-k8s agent-inject/agent container_sidecar.go, container_init_sidecar.go.
const ISTIO: &str = r#"{
"init": {"name": "istio-init", "image": "${IMAGE}", "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"],
  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}, "privileged": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0}},
"sidecar": {"name": "istio-proxy", "image": "${IMAGE}", "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
  "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"}, {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"}, {"name": "ISTIO_META_APP_CONTAINERS", "value": "${APPS}"}, {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"}],
  "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
  "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4},
  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false, "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337},
  "volumeMounts": [{"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"}, {"mountPath": "/var/lib/istio/data", "name": "istio-data"}, {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"}, {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"}, {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}]},
"classic": {},
"native": {"restartPolicy": "Always", "lifecycle": {"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}},
  "startupProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600}},
"labels": {"security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "${NAME}", "service.istio.io/canonical-revision": "latest"},
"annotations": {"sidecar.istio.io/status": "${STATUS}", "kubectl.kubernetes.io/default-container": "${APP}", "prometheus.io/path": "/stats/prometheus", "prometheus.io/port": "15020", "prometheus.io/scrape": "true"},
"volumes": [{"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}, {"name": "istio-data", "emptyDir": {}},
  {"name": "istio-podinfo", "downwardAPI": {"items": [{"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"}, {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"}]}},
  {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
  {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}]
}"#;

const LINKERD: &str = r#"{
"init": {"name": "linkerd-init", "image": "${IMAGE}", "command": ["/usr/lib/linkerd/linkerd2-proxy-init"],
  "args": ["--firewall-bin-path", "iptables-nft", "--firewall-save-bin-path", "iptables-nft-save", "--ipv6=false", "--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102", "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"],
  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}, "privileged": false, "readOnlyRootFilesystem": true, "runAsGroup": 65534, "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
  "volumeMounts": [{"mountPath": "/run", "name": "linkerd-proxy-init-xtables-lock"}]},
"sidecar": {"name": "linkerd-proxy", "image": "${IMAGE}",
  "env": [{"name": "_pod_containerName", "value": "linkerd-proxy"}, {"name": "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", "value": "${SHUTDOWN}"},
    {"name": "LINKERD2_PROXY_LOG", "value": "warn,linkerd=info,hickory=error,[{headers}]=off,[{request}]=off"}, {"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": "[::]:${PORT}"},
    {"name": "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS", "value": "127.0.0.1:4140,[::1]:4140"}, {"name": "LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "value": "[::]:4143"}],
  "ports": [{"containerPort": 4143, "name": "linkerd-proxy"}, {"containerPort": ${PORT}, "name": "linkerd-admin"}],
  "readinessProbe": {"httpGet": {"path": "/ready", "port": ${PORT}}, "initialDelaySeconds": 2, "timeoutSeconds": 1},
  "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "runAsUser": 2102, "seccompProfile": {"type": "RuntimeDefault"}},
  "volumeMounts": [{"mountPath": "/var/run/linkerd/identity/end-entity", "name": "linkerd-identity-end-entity"}, {"mountPath": "/var/run/secrets/tokens", "name": "linkerd-identity-token"}]},
"classic": {"lifecycle": {"postStart": {"exec": {"command": ["/usr/lib/linkerd/linkerd-await", "--timeout=2m", "--port=${PORT}"]}}}},
"native": {"restartPolicy": "Always", "startupProbe": {"httpGet": {"path": "/ready", "port": ${PORT}}, "periodSeconds": 1, "failureThreshold": 120}},
"labels": {"linkerd.io/control-plane-ns": "linkerd"},
"annotations": {"linkerd.io/created-by": "linkerd/proxy-injector ${VERSION}", "linkerd.io/inject": "enabled", "linkerd.io/proxy-version": "${VERSION}"},
"volumes": [{"name": "linkerd-proxy-init-xtables-lock", "emptyDir": {}}, {"name": "linkerd-identity-end-entity", "emptyDir": {"medium": "Memory"}},
  {"name": "linkerd-identity-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "identity.l5d.io", "expirationSeconds": 86400, "path": "linkerd-identity-token"}}]}}]
}"#;

const KUMA: &str = r#"{
"init": {"name": "kuma-init", "image": "${INIT_IMAGE}", "command": ["/usr/bin/kumactl", "install", "transparent-proxy"], "args": ["--config=/tmp/transparent-proxy/base/config.yaml"],
  "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}, "runAsGroup": 0, "runAsUser": 0}, "volumeMounts": [{"mountPath": "/tmp", "name": "kuma-init-tmp"}]},
"sidecar": {"name": "kuma-sidecar", "image": "${IMAGE}", "args": ["run", "--log-level=info", "--concurrency=2"],
  "env": [{"name": "KUMA_CONTROL_PLANE_URL", "value": "https://kuma-control-plane.kuma-system:5678"}, {"name": "KUMA_DATAPLANE_DRAIN_TIME", "value": "30s"}, {"name": "KUMA_DATAPLANE_MESH", "value": "default"}],
  "readinessProbe": {"httpGet": {"path": "/ready", "port": 9901}, "initialDelaySeconds": 1, "periodSeconds": 5},
  "securityContext": {"runAsGroup": 5678, "runAsUser": 5678}, "volumeMounts": [{"mountPath": "/tmp", "name": "kuma-sidecar-tmp"}]},
"classic": {},
"native": {"restartPolicy": "Always", "lifecycle": {"preStop": {"exec": {"command": ["killall", "-USR2", "kuma-dp"]}}}},
"labels": {"kuma.io/mesh": "default"},
"annotations": {"kuma.io/envoy-admin-port": "9901", "kuma.io/sidecar-injected": "true"},
"volumes": [{"name": "kuma-init-tmp", "emptyDir": {"sizeLimit": "10M"}}, {"name": "kuma-sidecar-tmp", "emptyDir": {"sizeLimit": "10M"}}]
}"#;

const VAULT: &str = r#"{
"init": {"name": "vault-agent-init", "image": "${IMAGE}", "command": ["/bin/sh", "-ec"], "args": ["echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"],
  "env": [{"name": "VAULT_LOG_LEVEL", "value": "info"}, {"name": "VAULT_LOG_FORMAT", "value": "standard"}],
  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsGroup": 1000, "runAsNonRoot": true, "runAsUser": 100},
  "volumeMounts": [{"mountPath": "/home/vault", "name": "home-init"}, {"mountPath": "/vault/secrets", "name": "vault-secrets"}]},
"sidecar": {"name": "vault-agent", "image": "${IMAGE}", "command": ["/bin/sh", "-ec"], "args": ["echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"],
  "env": [{"name": "VAULT_LOG_LEVEL", "value": "info"}, {"name": "VAULT_LOG_FORMAT", "value": "standard"}],
  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsGroup": 1000, "runAsNonRoot": true, "runAsUser": 100},
  "volumeMounts": [{"mountPath": "/home/vault", "name": "home-sidecar"}, {"mountPath": "/vault/secrets", "name": "vault-secrets"}]},
"classic": {},
"native": {},
"labels": {},
"annotations": {"vault.hashicorp.com/agent-inject-status": "injected"},
"volumes": [{"name": "home-init", "emptyDir": {"medium": "Memory"}}, {"name": "home-sidecar", "emptyDir": {"medium": "Memory"}}, {"name": "vault-secrets", "emptyDir": {"medium": "Memory"}}]
}"#;

/// The JSON text with each `${NAME}` replaced by its value, JSON-escaped (the values go
/// inside strings, or are digits).
fn template(text: &str, vars: &[(&str, &str)]) -> Value {
    let mut text = String::from(text);
    for (name, value) in vars {
        let escaped = Value::String((*value).into()).to_string();
        let inner = &escaped[1..escaped.len() - 1];
        text = text.replace(&format!("${{{name}}}"), inner);
    }
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn take(v: &mut Value, key: &str) -> Value {
    obj(v).remove(key).unwrap_or(Value::Null)
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
    let annotations_before = metadata.get("annotations").cloned().unwrap_or(Value::Null);
    let has = |key: &str, value: &str| annotation(&annotations_before, key) == Some(value);
    let spec = obj(spec);
    let app: Vec<String> = list(spec, "containers")
        .iter()
        .filter_map(|c| c.get("name")?.as_str().map(String::from))
        .collect();
    let first_app = app.first().cloned().unwrap_or_default();
    let mut parts = match injector {
        Injector::Istio => {
            let status = json!({
                "initContainers": if native { json!(["istio-init", "istio-proxy"]) } else { json!(["istio-init"]) },
                "containers": if native { Value::Null } else { json!(["istio-proxy"]) },
                "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
                "imagePullSecrets": null,
                "revision": "default",
            })
            .to_string();
            let name = if pod_name.is_empty() {
                first_app.clone()
            } else {
                pod_name
            };
            template(
                ISTIO,
                &[
                    ("IMAGE", ISTIO_IMAGE),
                    ("APPS", &app.join(",")),
                    ("APP", &first_app),
                    ("NAME", &name),
                    ("STATUS", &status),
                ],
            )
        }
        Injector::Linkerd => {
            let port = annotation(&annotations_before, "config.linkerd.io/admin-port")
                .filter(|p| p.parse::<u16>().is_ok())
                .unwrap_or("4191");
            let shutdown = if has("config.linkerd.io/proxy-admin-shutdown", "enabled") {
                "true"
            } else {
                "false"
            };
            let version = LINKERD_IMAGE.rsplit(':').next().unwrap_or("");
            template(
                LINKERD,
                &[
                    ("IMAGE", LINKERD_IMAGE),
                    ("PORT", port),
                    ("SHUTDOWN", shutdown),
                    ("VERSION", version),
                ],
            )
        }
        Injector::Kuma => template(
            KUMA,
            &[("IMAGE", KUMA_DP_IMAGE), ("INIT_IMAGE", KUMA_INIT_IMAGE)],
        ),
        Injector::Vault => template(VAULT, &[("IMAGE", VAULT_IMAGE)]),
        Injector::CloudSqlProxy | Injector::Unknown => return Vec::new(),
    };
    let mut init = take(&mut parts, "init");
    let mut sidecar = take(&mut parts, "sidecar");
    let extra = take(&mut parts, if native { "native" } else { "classic" });
    if let Value::Object(extra) = extra {
        obj(&mut sidecar).extend(extra);
    }
    let (init_name, sidecar_name) = container_names(injector);
    let mut added = Vec::new();
    if injector == Injector::Vault {
        // vault-k8s Patch: the init container unless agent-pre-populate: "false", appended
        // (first with agent-init-first: "true"); the sidecar unless agent-pre-populate-only.
        if !has("vault.hashicorp.com/agent-pre-populate", "false") {
            let at = if has("vault.hashicorp.com/agent-init-first", "true") {
                0
            } else {
                list(spec, "initContainers").len()
            };
            list(spec, "initContainers").insert(at, core::mem::take(&mut init));
            added.push(init_name.to_string());
        }
        if !has("vault.hashicorp.com/agent-pre-populate-only", "true") {
            list(spec, "containers").push(sidecar);
            added.push(sidecar_name.to_string());
        }
    } else {
        // Native: the init container, then the proxy, before the pod's own init containers.
        // Classic: the init container first; Istio's proxy last of the containers, Linkerd's
        // and Kuma's first.
        if native {
            list(spec, "initContainers").splice(0..0, [init, sidecar]);
        } else {
            list(spec, "initContainers").insert(0, init);
            let at = if injector == Injector::Istio {
                list(spec, "containers").len()
            } else {
                0
            };
            list(spec, "containers").insert(at, sidecar);
        }
        added = [init_name.to_string(), sidecar_name.to_string()].into();
    }
    if let Value::Array(volumes) = take(&mut parts, "volumes") {
        list(spec, "volumes").extend(volumes);
    }
    let meta = obj(metadata);
    for key in ["labels", "annotations"] {
        if let Value::Object(values) = take(&mut parts, key) {
            let entry = meta.entry(key).or_insert_with(|| Value::Object(Map::new()));
            obj(entry).extend(values);
        }
    }
    added
}
