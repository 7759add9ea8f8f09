//! What differs between the kinds the server serves (Pod, ConfigMap, Event): defaults and
//! validation on create and update, the fields a field selector may name, and the columns of the
//! `meta.k8s.io/v1` Table that `kubectl get` asks for.

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{json, Value};

use crate::status::ApiError;
use crate::store::ApiObject;

/// The node every pod is bound to.
pub(crate) const NODE_NAME: &str = "sidekill-testcluster";

/// Per-kind behaviour.
pub(crate) trait Kind: ApiObject {
    /// Field paths a field selector may use.
    const FIELDS: &'static [&'static str];
    /// Short names for discovery.
    const SHORT_NAMES: &'static [&'static str];

    /// Fills defaults and validates a new object (its namespace is already set).
    fn prepare_create(&mut self) -> Result<(), ApiError>;

    /// Validates an update of `old` to `new`, resetting what a client may not change.
    fn validate_update(old: &Self, new: &mut Self) -> Result<(), ApiError>;

    /// Table column definitions.
    fn table_columns() -> Vec<Value>;

    /// Table cells of one object.
    fn table_cells(&self, now: jiff::Timestamp) -> Vec<Value>;
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Fills `metadata.name` from `generateName` and checks the name is a DNS subdomain.
fn name_and_generate(kind: &str, meta: &mut ObjectMeta) -> Result<(), ApiError> {
    if meta.name.as_deref().unwrap_or("").is_empty() {
        match meta.generate_name.as_deref() {
            Some(prefix) if !prefix.is_empty() => {
                const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                let uid = crate::store::new_uid();
                let suffix: String = uid
                    .bytes()
                    .filter(u8::is_ascii_hexdigit)
                    .take(5)
                    .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
                    .collect();
                meta.name = Some(format!("{prefix}{suffix}"));
            }
            _ => {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ))
            }
        }
    }
    let name = name_of(meta);
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(ApiError::invalid(
            kind,
            &name,
            format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    Ok(())
}

/// `kubectl`'s short human durations: `45s`, `3m12s`, `5h`, `2d3h`.
pub(crate) fn human_age(since: Option<&Time>, now: jiff::Timestamp) -> String {
    let Some(t) = since else {
        return "<unknown>".into();
    };
    let s = (now.as_second() - t.0.as_second()).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else {
        format!("{d}d")
    }
}

fn column(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": description, "priority": priority})
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`).
pub(crate) fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

impl Kind for Pod {
    const FIELDS: &'static [&'static str] = &[
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    const SHORT_NAMES: &'static [&'static str] = &["po"];

    fn prepare_create(&mut self) -> Result<(), ApiError> {
        name_and_generate("Pod", &mut self.metadata)?;
        // Pods carry a generation (1.33+, for status.observedGeneration); events and
        // configmaps have none on a real API server.
        self.metadata.generation = Some(1);
        let name = name_of(&self.metadata);
        let errs = validate_annotations(&self.metadata);
        if !errs.is_empty() {
            return Err(invalid_list(&name, &errs));
        }
        let Some(spec) = self.spec.as_mut() else {
            return Err(ApiError::invalid(
                "Pod",
                &name,
                "spec.containers: Required value",
            ));
        };
        if spec.containers.is_empty() {
            return Err(ApiError::invalid(
                "Pod",
                &name,
                "spec.containers: Required value",
            ));
        }
        // ValidatePodCreate: ephemeral containers are added to a running pod through its
        // ephemeralcontainers subresource, never at creation.
        if spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            return Err(ApiError::invalid(
                "Pod",
                &name,
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let inits = spec
            .init_containers
            .iter_mut()
            .flatten()
            .map(|c| (c, "spec.initContainers"));
        for (c, path) in inits.chain(spec.containers.iter_mut().map(|c| (c, "spec.containers"))) {
            if c.name.is_empty() {
                return Err(ApiError::invalid(
                    "Pod",
                    &name,
                    format!("{path}[0].name: Required value"),
                ));
            }
            if !seen.insert(c.name.clone()) {
                return Err(ApiError::invalid(
                    "Pod",
                    &name,
                    format!("{path}[0].name: Duplicate value: \"{}\"", c.name),
                ));
            }
            if c.image.as_deref().unwrap_or("").is_empty() {
                return Err(ApiError::invalid(
                    "Pod",
                    &name,
                    format!("{path}[0].image: Required value"),
                ));
            }
            c.termination_message_path
                .get_or_insert_with(|| "/dev/termination-log".into());
            c.termination_message_policy
                .get_or_insert_with(|| "File".into());
            let latest = c
                .image
                .as_deref()
                .map(|i| !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest"))
                .unwrap_or(false);
            c.image_pull_policy
                .get_or_insert_with(|| if latest { "Always" } else { "IfNotPresent" }.into());
        }
        spec.restart_policy.get_or_insert_with(|| "Always".into());
        spec.termination_grace_period_seconds.get_or_insert(30);
        spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
        spec.scheduler_name
            .get_or_insert_with(|| "default-scheduler".into());
        spec.service_account_name
            .get_or_insert_with(|| "default".into());
        // The one node, unless the pod is bound already: a pod created with spec.nodeName
        // bypasses the scheduler (kube-scheduler only picks pods with no nodeName), and
        // only that node's kubelet runs it.
        spec.node_name.get_or_insert_with(|| NODE_NAME.into());
        self.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some("BestEffort".into()),
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(crate::store::now()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Ok(())
    }

    fn validate_update(old: &Self, new: &mut Self) -> Result<(), ApiError> {
        // Status goes through the status subresource; the main resource keeps the old one.
        new.status = old.status.clone();
        new.metadata.deletion_timestamp = old.metadata.deletion_timestamp.clone();
        new.metadata.deletion_grace_period_seconds = old.metadata.deletion_grace_period_seconds;
        if new.spec.is_none() {
            new.spec = old.spec.clone();
        }
        new.metadata.generation = old.metadata.generation;
        let mut errs = validate_annotations(&new.metadata);
        errs.extend(validate_pod_update(old, new));
        if !errs.is_empty() {
            return Err(invalid_list(&name_of(&old.metadata), &errs));
        }
        bump_generation(old, new);
        Ok(())
    }

    fn table_columns() -> Vec<Value> {
        vec![
            column("Name", "string", 0, "Name must be unique within a namespace."),
            column("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "string", 0, "The aggregate status of the containers in this pod."),
            column("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            column("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
            column("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            column("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
            column("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
            column("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ]
    }

    fn table_cells(&self, now: jiff::Timestamp) -> Vec<Value> {
        let (ready, status, restarts) = pod_summary(self);
        let st = self.status.clone().unwrap_or_default();
        vec![
            json!(name_of(&self.metadata)),
            json!(ready),
            json!(status),
            json!(restarts),
            json!(human_age(self.metadata.creation_timestamp.as_ref(), now)),
            json!(st.pod_ip.unwrap_or_else(|| "<none>".into())),
            json!(self
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".into())),
            json!("<none>"),
            json!("<none>"),
        ]
    }
}

/// The `Pod "NAME" is invalid: ...` error of a field error list, worded as apimachinery's
/// `errors.NewInvalid` words it: one error as is, several in brackets joined by ", ".
/// `ValidateAnnotations` (apimachinery/pkg/api/validation/objectmeta.go): every key is a
/// qualified name (an optional DNS-subdomain prefix of at most 253 characters and `/`, then a
/// name of 1 to 63 characters, alphanumeric at both ends, `-_.` inside), and all keys and
/// values together are at most 256 KiB (`TotalAnnotationSizeLimitB`). Worded as the API
/// server words it.
pub(crate) fn validate_annotations(meta: &ObjectMeta) -> Vec<String> {
    const TOTAL_MAX: usize = 256 * 1024;
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        total += key.len() + value.len();
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        let name_ok = |n: &str| {
            let b = n.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        };
        if name.len() > 63 {
            errs.push(format!(
                "metadata.annotations: Invalid value: \"{key}\": name part must be no more than 63 characters"
            ));
        } else if !name_ok(name) {
            errs.push(format!(
                "metadata.annotations: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            ));
        }
        if prefix.is_some_and(|p| p.is_empty() || p.len() > 253) {
            errs.push(format!(
                "metadata.annotations: Invalid value: \"{key}\": prefix part must be a DNS subdomain of at most 253 characters"
            ));
        }
    }
    if total > TOTAL_MAX {
        errs.push(format!(
            "metadata.annotations: Too long: must have at most {TOTAL_MAX} bytes"
        ));
    }
    errs
}

fn invalid_list(name: &str, errs: &[String]) -> ApiError {
    let text = match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    ApiError::invalid("Pod", name, text)
}

/// `updatePodGeneration` (pkg/registry/core/pod/strategy.go): a spec change bumps the
/// generation.
fn bump_generation(old: &Pod, new: &mut Pod) {
    if old.spec != new.spec {
        new.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
    }
}

/// The fields `ValidatePodUpdate` names as the ones an update may change
/// (`updatablePodSpecFieldsStringArray`).
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate` (k8s.io/kubernetes pkg/apis/core/validation/validation.go): every
/// container keeps an image; then the new spec, with the fields an update may change put back
/// to their old values ("munged"), must equal the old spec. What may change: each
/// `containers[i].image` and `initContainers[i].image`; `activeDeadlineSeconds` set, or
/// lowered (never raised or removed); `tolerations`, by additions only;
/// `terminationGracePeriodSeconds` from a negative value to 1. Ephemeral containers change
/// only through the `ephemeralcontainers` subresource, so here they are part of the spec that
/// must not change.
pub(crate) fn validate_pod_update(old: &Pod, new: &Pod) -> Vec<String> {
    let mut errs = Vec::new();
    let (Some(os), Some(ns)) = (old.spec.as_ref(), new.spec.as_ref()) else {
        return errs;
    };
    for (list, items) in [
        ("containers", ns.containers.as_slice()),
        (
            "initContainers",
            ns.init_containers.as_deref().unwrap_or_default(),
        ),
    ] {
        for (i, c) in items.iter().enumerate() {
            if c.image.as_deref().unwrap_or("").trim().is_empty() {
                errs.push(format!("spec.{list}[{i}].image: Required value"));
            }
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if os == ns {
        return errs;
    }
    let mut munged = ns.clone();
    for (m, o) in munged.containers.iter_mut().zip(os.containers.iter()) {
        m.image = o.image.clone();
    }
    if let (Some(m), Some(o)) = (munged.init_containers.as_mut(), os.init_containers.as_ref()) {
        for (m, o) in m.iter_mut().zip(o.iter()) {
            m.image = o.image.clone();
        }
    }
    match (ns.active_deadline_seconds, os.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(format!("spec.activeDeadlineSeconds: Invalid value: {n}: must be between 0 and {}, inclusive", i32::MAX));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(format!(
                "spec.activeDeadlineSeconds: Invalid value: {n}: must be less than or equal to previous value"
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push("spec.activeDeadlineSeconds: Invalid value: \"null\": must not update activeDeadlineSeconds to nil value".into());
        }
        _ => {}
    }
    munged.active_deadline_seconds = os.active_deadline_seconds;
    let new_tolerations = ns.tolerations.as_deref().unwrap_or_default();
    for t in os.tolerations.iter().flatten() {
        // validateOnlyAddedTolerations: each old toleration stays (its tolerationSeconds may
        // change only for a NoExecute one).
        let kept = new_tolerations.iter().any(|n| {
            let mut a = t.clone();
            let mut b = n.clone();
            if a.effect.as_deref() == Some("NoExecute") {
                a.toleration_seconds = None;
                b.toleration_seconds = None;
            }
            a == b
        });
        if !kept {
            errs.push("spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".into());
            break;
        }
    }
    munged.tolerations = os.tolerations.clone();
    if os.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    if &munged != os {
        let differing = spec_diff(os, &munged);
        errs.push(format!(
            "spec: Forbidden: pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n  changed: {}",
            differing.join(", ")
        ));
    }
    errs
}

/// The JSON paths under `spec` where two specs differ (a short stand-in for the `cmp.Diff`
/// that the real message carries).
fn spec_diff(
    old: &k8s_openapi::api::core::v1::PodSpec,
    new: &k8s_openapi::api::core::v1::PodSpec,
) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{path}.{k}"),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, format!("{path}[{i}]"), out);
                }
            }
            (p, q) if p != q => out.push(path),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        &serde_json::to_value(old).unwrap_or(Value::Null),
        &serde_json::to_value(new).unwrap_or(Value::Null),
        "spec".into(),
        &mut out,
    );
    out
}

/// The fields an ephemeral container may set (`allowedEphemeralContainerFields` in
/// pkg/apis/core/validation/validation.go); any other that is set (not its zero value) is
/// `Forbidden: cannot be set for an Ephemeral Container`.
const EPHEMERAL_ALLOWED: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "envFrom",
    "env",
    "volumeMounts",
    "volumeDevices",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
    // A field of EphemeralContainer itself, not of EphemeralContainerCommon.
    "targetContainerName",
];

/// Whether a JSON value is its type's zero value (what the allow-list check lets through).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Fills an ephemeral container's defaults as the API server's decoding does
/// (`SetDefaults_EphemeralContainer` applies `SetDefaults_Container`).
fn default_ephemeral(ec: &mut k8s_openapi::api::core::v1::EphemeralContainer) {
    ec.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    ec.termination_message_policy
        .get_or_insert_with(|| "File".into());
    let latest = ec
        .image
        .as_deref()
        .map(|i| !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest"))
        .unwrap_or(false);
    ec.image_pull_policy
        .get_or_insert_with(|| if latest { "Always" } else { "IfNotPresent" }.into());
}

/// The `ephemeralcontainers` subresource's update (pkg/registry/core/pod/strategy.go
/// `ephemeralContainersStrategy`): only `spec.ephemeralContainers` of `incoming` is taken
/// (`dropNonEphemeralContainerUpdates`), defaulted, then validated as
/// `ValidatePodEphemeralContainersUpdate` does: each ephemeral container as
/// `validateEphemeralContainers` checks it (a name and an image; a name unique across every
/// container of the pod; a target that is a regular or init container; only the allowed
/// fields; no volume subPath; volume mounts naming pod volumes), and existing ones neither
/// changed nor removed. Returns the pod to store.
pub(crate) fn ephemeral_update(old: &Pod, incoming: &Pod) -> Result<Pod, ApiError> {
    let name = name_of(&old.metadata);
    let mut new = old.clone();
    let mut ecs = incoming
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default();
    ecs.iter_mut().for_each(default_ephemeral);
    let spec = new.spec.get_or_insert_with(Default::default);
    spec.ephemeral_containers = (!ecs.is_empty()).then_some(ecs.clone());
    let mut errs = Vec::new();
    let others: Vec<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let mut all: std::collections::BTreeSet<&str> = others.iter().copied().collect();
    for (i, ec) in ecs.iter().enumerate() {
        let at = format!("spec.ephemeralContainers[{i}]");
        if ec.name.is_empty() {
            errs.push(format!("{at}.name: Required value"));
        } else if !is_dns_label(&ec.name) {
            errs.push(format!("{at}.name: Invalid value: \"{}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')", ec.name));
        }
        if ec.image.as_deref().unwrap_or("").trim().is_empty() {
            errs.push(format!("{at}.image: Required value"));
        }
        if !ec.name.is_empty() && !all.insert(ec.name.as_str()) {
            errs.push(format!("{at}.name: Duplicate value: \"{}\"", ec.name));
        }
        if let Some(t) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            if !others.contains(&t) {
                errs.push(format!("{at}.targetContainerName: Not found: \"{t}\""));
            }
        }
        if let Value::Object(fields) = serde_json::to_value(ec).unwrap_or(Value::Null) {
            for (k, v) in &fields {
                if !EPHEMERAL_ALLOWED.contains(&k.as_str()) && !is_zero(v) {
                    errs.push(format!(
                        "{at}.{k}: Forbidden: cannot be set for an Ephemeral Container"
                    ));
                }
            }
        }
        for (j, vm) in ec.volume_mounts.iter().flatten().enumerate() {
            if !volumes.contains(&vm.name.as_str()) {
                errs.push(format!(
                    "{at}.volumeMounts[{j}].name: Not found: \"{}\"",
                    vm.name
                ));
            }
            if vm.sub_path.as_deref().is_some_and(|p| !p.is_empty()) {
                errs.push(format!(
                    "{at}.volumeMounts[{j}].subPath: Forbidden: cannot be set for an Ephemeral Container"
                ));
            }
            if vm.sub_path_expr.as_deref().is_some_and(|p| !p.is_empty()) {
                errs.push(format!(
                    "{at}.volumeMounts[{j}].subPathExpr: Forbidden: cannot be set for an Ephemeral Container"
                ));
            }
        }
    }
    for o in old
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
    {
        match ecs.iter().find(|n| n.name == o.name) {
            None => errs.push(format!(
                "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"{}\" may not be removed\n",
                o.name
            )),
            Some(n) if n != o => errs.push(format!(
                "spec.ephemeralContainers[{}]: Forbidden: existing ephemeral containers \"{}\" may not be changed\n",
                o.name, o.name
            )),
            Some(_) => {}
        }
    }
    if !errs.is_empty() {
        return Err(invalid_list(&name, &errs));
    }
    bump_generation(old, &mut new);
    Ok(new)
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `READY`, `STATUS` and `RESTARTS` as `kubectl get pods` prints them (after kubectl's printer).
pub(crate) fn pod_summary(pod: &Pod) -> (String, String, String) {
    let spec = pod.spec.clone().unwrap_or_default();
    let st = pod.status.clone().unwrap_or_default();
    let mut reason = st
        .reason
        .clone()
        .or(st.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let sidecars: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .map(|c| c.name.clone())
        .collect();
    let total = spec.containers.len() + sidecars.len();
    let mut ready = 0;
    let mut restarts = 0;
    let mut initializing = false;
    let inits = st.init_container_statuses.clone().unwrap_or_default();
    let n_init = spec.init_containers.as_ref().map_or(0, Vec::len);
    for (i, c) in inits.iter().enumerate() {
        restarts += c.restart_count;
        let state = c.state.clone().unwrap_or_default();
        let sidecar = sidecars.contains(&c.name);
        if sidecar && state.running.is_some() && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = match (&t.reason, t.signal) {
                (Some(r), _) if !r.is_empty() => format!("Init:{r}"),
                (_, Some(s)) if s != 0 => format!("Init:Signal:{s}"),
                _ => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        restarts = inits.iter().map(|c| c.restart_count).sum();
        let mut has_running = false;
        for c in st.container_statuses.iter().flatten().rev() {
            restarts += c.restart_count;
            let state = c.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match (&t.reason, t.signal) {
                    (Some(r), _) if !r.is_empty() => r.clone(),
                    (_, Some(s)) if s != 0 => format!("Signal:{s}"),
                    _ => format!("ExitCode:{}", t.exit_code),
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    (format!("{ready}/{total}"), reason, restarts.to_string())
}

impl Kind for ConfigMap {
    const FIELDS: &'static [&'static str] = &["metadata.name", "metadata.namespace"];
    const SHORT_NAMES: &'static [&'static str] = &["cm"];

    fn prepare_create(&mut self) -> Result<(), ApiError> {
        name_and_generate("ConfigMap", &mut self.metadata)
    }

    fn validate_update(old: &Self, new: &mut Self) -> Result<(), ApiError> {
        if old.immutable == Some(true)
            && (old.data != new.data || old.binary_data != new.binary_data)
        {
            return Err(ApiError::invalid(
                "ConfigMap",
                &name_of(&old.metadata),
                "data: Forbidden: field is immutable when `immutable` is set",
            ));
        }
        Ok(())
    }

    fn table_columns() -> Vec<Value> {
        vec![
            column("Name", "string", 0, "Name must be unique within a namespace."),
            column("Data", "integer", 0, "Data contains the configuration data."),
            column("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        ]
    }

    fn table_cells(&self, now: jiff::Timestamp) -> Vec<Value> {
        let n = self.data.as_ref().map_or(0, |d| d.len())
            + self.binary_data.as_ref().map_or(0, |d| d.len());
        vec![
            json!(name_of(&self.metadata)),
            json!(n),
            json!(human_age(self.metadata.creation_timestamp.as_ref(), now)),
        ]
    }
}

impl Kind for Event {
    const FIELDS: &'static [&'static str] = &[
        "metadata.name",
        "metadata.namespace",
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    const SHORT_NAMES: &'static [&'static str] = &["ev"];

    fn prepare_create(&mut self) -> Result<(), ApiError> {
        name_and_generate("Event", &mut self.metadata)
    }

    fn validate_update(_old: &Self, _new: &mut Self) -> Result<(), ApiError> {
        Ok(())
    }

    fn table_columns() -> Vec<Value> {
        vec![
            column("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
            column("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
            column("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            column("Object", "string", 0, "The object that this event is about."),
            column("Message", "string", 0, "A human-readable description of the status of this operation."),
        ]
    }

    fn table_cells(&self, now: jiff::Timestamp) -> Vec<Value> {
        let seen = self
            .last_timestamp
            .clone()
            .or_else(|| self.event_time.as_ref().map(|t| Time(t.0)))
            .or_else(|| self.metadata.creation_timestamp.clone());
        let obj = format!(
            "{}/{}",
            self.involved_object
                .kind
                .clone()
                .unwrap_or_default()
                .to_lowercase(),
            self.involved_object.name.clone().unwrap_or_default()
        );
        vec![
            json!(human_age(seen.as_ref(), now)),
            json!(self.type_.clone().unwrap_or_default()),
            json!(self.reason.clone().unwrap_or_default()),
            json!(obj),
            json!(self.message.clone().unwrap_or_default()),
        ]
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn annotation_keys_are_checked_as_the_api_server_checks_them() {
        let meta = |key: &str| ObjectMeta {
            annotations: Some([(key.to_owned(), "[0]".to_owned())].into()),
            ..ObjectMeta::default()
        };
        assert!(validate_annotations(&meta("sidekill.dev/done-istio-proxy")).is_empty());
        let long = format!("sidekill.dev/done-{}", "c".repeat(63));
        let errs = validate_annotations(&meta(&long));
        assert!(errs[0].contains("no more than 63 characters"), "{errs:?}");
        assert!(!validate_annotations(&meta("sidekill.dev/-x")).is_empty());
    }

    use super::*;

    fn spec_pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn pod_updates_may_change_only_what_validate_pod_update_munges() {
        let old = spec_pod(json!({
            "containers": [{"name": "a", "image": "x"}],
            "activeDeadlineSeconds": 100,
            "terminationGracePeriodSeconds": -1,
            "tolerations": [{"key": "k", "operator": "Exists"}]
        }));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = serde_json::to_value(&old).unwrap();
            f(&mut v);
            validate_pod_update(&old, &serde_json::from_value(v).unwrap())
        };
        assert!(with(&|v| v["spec"]["containers"][0]["image"] = json!("y")).is_empty());
        assert!(with(&|v| v["spec"]["activeDeadlineSeconds"] = json!(50)).is_empty());
        assert!(with(&|v| v["spec"]["terminationGracePeriodSeconds"] = json!(1)).is_empty());
        assert!(with(&|v| {
            v["spec"]["tolerations"]
                .as_array_mut()
                .unwrap()
                .push(json!({"key": "j", "operator": "Exists"}))
        })
        .is_empty());
        let refused = [
            with(&|v| v["spec"]["activeDeadlineSeconds"] = json!(200)),
            with(&|v| v["spec"]["activeDeadlineSeconds"] = Value::Null),
            with(&|v| v["spec"]["terminationGracePeriodSeconds"] = json!(5)),
            with(&|v| v["spec"]["tolerations"] = json!([])),
            with(&|v| v["spec"]["containers"][0]["args"] = json!(["x"])),
            with(&|v| v["spec"]["containers"][0]["image"] = json!("")),
        ];
        for (i, errs) in refused.iter().enumerate() {
            assert_eq!(errs.len(), 1, "case {i}: {errs:?}");
        }
        assert!(
            refused[4][0].contains("spec.containers[0].args"),
            "{:?}",
            refused[4]
        );
    }

    #[test]
    fn ages_print_like_kubectl() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| Time(jiff::Timestamp::from_second(1_000_000 - s).unwrap());
        assert_eq!(human_age(Some(&at(5)), now), "5s");
        assert_eq!(human_age(Some(&at(190)), now), "3m10s");
        assert_eq!(human_age(Some(&at(3600 * 5)), now), "5h");
        assert_eq!(human_age(Some(&at(86400 * 2 + 3600)), now), "2d1h");
    }

    #[test]
    fn pod_defaults_and_validation() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"generateName": "job-", "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "x:1"}]}
        }))
        .unwrap();
        p.prepare_create().unwrap();
        assert!(p.metadata.name.as_deref().unwrap().starts_with("job-"));
        assert_eq!(p.metadata.generation, Some(1));
        // As on kube-apiserver: events (and configmaps) carry no generation.
        let mut e: Event = serde_json::from_value(json!({"metadata": {"name": "e"}})).unwrap();
        e.prepare_create().unwrap();
        assert_eq!(e.metadata.generation, None);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        let mut dup: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}]}
        }))
        .unwrap();
        assert_eq!(dup.prepare_create().unwrap_err().code, 422);
    }
}
