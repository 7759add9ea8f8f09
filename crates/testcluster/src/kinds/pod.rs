//! The Pod kind: defaults and validation on create, what an update may change, the Table
//! columns and the `READY`/`STATUS`/`RESTARTS` summary kubectl prints.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::{json, Value};

use crate::status::ApiError;

use super::pod_update::{bump_generation, invalid_list, validate_annotations, validate_pod_update};
use super::{
    human_age, is_sidecar, name_and_generate, name_of, Column, Kind, AGE_COLUMN, NAME_COLUMN,
    NODE_NAME,
};

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

    const COLUMNS: &'static [Column] = &[
        NAME_COLUMN,
        ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        ("Status", "string", 0, "The aggregate status of the containers in this pod."),
        ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE_COLUMN,
        ("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        ("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
        ("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
        ("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ];

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
fn pod_summary(pod: &Pod) -> (String, String, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Event;
    use serde_json::json;

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
