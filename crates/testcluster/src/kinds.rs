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
        spec.node_name = Some(NODE_NAME.into());
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
        // Pod specs are immutable except for container images and a few scheduling fields.
        let strip = |p: &Pod| -> Value {
            let mut v = serde_json::to_value(&p.spec).unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                if let Some(items) = v.get_mut(list).and_then(Value::as_array_mut) {
                    for c in items {
                        if let Some(o) = c.as_object_mut() {
                            o.remove("image");
                        }
                    }
                }
            }
            if let Some(o) = v.as_object_mut() {
                o.remove("activeDeadlineSeconds");
                o.remove("tolerations");
                o.remove("terminationGracePeriodSeconds");
            }
            v
        };
        if new.spec.is_none() {
            new.spec = old.spec.clone();
        }
        if strip(old) != strip(new) {
            return Err(ApiError::invalid(
                "Pod",
                &name_of(&old.metadata),
                "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
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
    use super::*;

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
