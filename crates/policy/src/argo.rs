//! What Argo Workflows puts in a pod: its container names, mounts and executor paths,
//! and the pod Argo's emissary executor would create for a Workflow template.
//!
//! Layouts follow argo-workflows `workflow/controller/workflowpod.go` (emissary, v3.4+):
//! an init container `init`, a `wait` container, the main container(s) and declared
//! sidecars, all of which mount the `var-run-argo` volume at `/var/run/argo` and run
//! under `/var/run/argo/argoexec emissary --`. The initless layout (v4.1, beta) has a
//! `supervisor` container instead of `wait` and mounts argoexec at `/argo-bin`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::pod::{as_array, as_object, req_string, Container, Pod};

/// Where the emissary layout mounts the `var-run-argo` volume.
pub const VAR_RUN_ARGO: &str = "/var/run/argo";
/// Where the initless layout mounts the argoexec image volume.
pub const ARGO_BIN: &str = "/argo-bin";
/// argoexec in the emissary layout.
pub const VAR_RUN_ARGO_EXEC: &str = "/var/run/argo/argoexec";
/// argoexec in the initless layout.
pub const ARGO_BIN_EXEC: &str = "/argo-bin/bin/argoexec";
/// The annotation prefix that overrides a container's kill command.
pub const KILL_CMD_PREFIX: &str = "workflows.argoproj.io/kill-cmd-";
/// Label Argo puts on every workflow pod.
pub const WORKFLOW_LABEL: &str = "workflows.argoproj.io/workflow";
/// Annotation Argo puts on every workflow pod.
pub const NODE_NAME_ANNOTATION: &str = "workflows.argoproj.io/node-name";
/// The image Argo's own containers run, as the builder lays them out.
const ARGOEXEC_IMAGE: &str = "quay.io/argoproj/argoexec:latest";

/// Why a pod is taken for an Argo workflow pod, or `None` when it is not one.
pub fn argo_pod_evidence(pod: &Pod) -> Option<String> {
    if let Some(wf) = pod.labels.get(WORKFLOW_LABEL) {
        return Some(format!("label {WORKFLOW_LABEL}={wf}"));
    }
    if pod.annotations.contains_key(NODE_NAME_ANNOTATION) {
        return Some(format!("annotation {NODE_NAME_ANNOTATION}"));
    }
    pod.all_containers()
        .map(|(_, c)| c)
        .find(|c| (c.name == "wait" || c.name == "supervisor") && runs_argoexec(c))
        .map(|c| format!("container {} runs argoexec", c.name))
}

/// Whether the container's argv starts with an argoexec binary.
pub fn runs_argoexec(c: &Container) -> bool {
    c.argv()
        .next()
        .is_some_and(|first| first == "argoexec" || first.ends_with("/argoexec"))
        || c.image.contains("argoexec")
}

/// Whether the emissary runs this container (its argv starts with `argoexec emissary`).
pub fn runs_under_emissary(c: &Container) -> bool {
    let mut argv = c.argv();
    matches!(
        (argv.next(), argv.next()),
        (Some(VAR_RUN_ARGO_EXEC | ARGO_BIN_EXEC), Some("emissary"))
    )
}

/// Main container names recorded in the `ARGO_TEMPLATE` env var of Argo's own containers:
/// the `containerSet` names when the template has one.
pub fn main_names_from_template_env(pod: &Pod) -> Option<Vec<String>> {
    let template = pod
        .all_containers()
        .filter(|(_, c)| matches!(c.name.as_str(), "init" | "wait" | "supervisor"))
        .find_map(|(_, c)| c.env_value("ARGO_TEMPLATE"))?;
    let template: Value = serde_json::from_str(template).ok()?;
    let names: Vec<String> = template
        .get("containerSet")?
        .get("containers")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("name")?.as_str().map(ToString::to_string))
        .collect();
    (!names.is_empty()).then_some(names)
}

/// A pod Argo would run: (template name, JSON path of what it comes from), (metadata, spec),
/// mains.
pub(crate) type TemplatePod = ((String, String), (Value, Value), Vec<String>);

/// The pods Argo's emissary executor creates for a Workflow: one per template that runs a
/// pod, and the artifact garbage collection pods.
///
/// - `container`, `script` and `containerSet` templates: `init`, `wait`, the main
///   container(s) under the emissary, and the declared sidecars.
/// - `resource` and `data` templates: `init` and one `main` container running argoexec
///   itself (argo-workflows workflow/controller/operator.go `executeResource`, `executeData`;
///   workflowpod.go adds no `wait` for them unless logs are archived). Injectors inject these
///   pods too (argo-workflows#7273).
/// - With `spec.artifactGC.strategy` (or an output artifact's) `OnWorkflowCompletion` or
///   `OnWorkflowDeletion`: one pod per strategy with a `main` container running
///   `argoexec artifact delete`, labelled with the workflow and
///   `workflows.argoproj.io/component: artifact-gc`, with `spec.artifactGC.podMetadata` (not
///   `spec.podMetadata`): workflow/controller/artifact_gc.go `createArtifactGCPod`
///   (argo-workflows#13576).
///
/// Templates that run no pod of their own (steps, dag, suspend, http, plugin) are left out.
pub(crate) fn workflow_pods(spec: &Value, workflow: &str, path: &str) -> Result<Vec<TemplatePod>> {
    let spec_path = format!("{path}.spec");
    let spec_map = as_object(spec, &spec_path)?;
    let templates_path = format!("{spec_path}.templates");
    let templates = spec_map.get("templates").ok_or(Error::Missing {
        path: templates_path.clone(),
        expected: "a list of templates",
    })?;
    let pod_metadata = spec_map.get("podMetadata");
    let mut pods = Vec::new();
    for (i, template) in as_array(templates, &templates_path)?.iter().enumerate() {
        let t_path = format!("{templates_path}[{i}]");
        let t = as_object(template, &t_path)?;
        let name = req_string(t, "name", &t_path)?;
        let mut mains = Vec::new();
        let mut containers = alloc::vec![argo_container("wait", &["argoexec", "wait"])];
        let runs_argoexec = ["resource", "data"]
            .into_iter()
            .find(|k| t.get(*k).is_some_and(|v| !v.is_null()));
        if let Some(kind) = runs_argoexec {
            let action = t
                .get("resource")
                .and_then(|r| r.get("action"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let argv: Vec<&str> = if kind == "resource" {
                alloc::vec!["argoexec", "resource", action]
            } else {
                alloc::vec!["argoexec", "data"]
            };
            containers = alloc::vec![argo_container("main", &argv)];
            mains.push("main".to_string());
        } else if let Some(main) = t
            .get("container")
            .or(t.get("script"))
            .filter(|v| !v.is_null())
        {
            let kind = if t.contains_key("container") {
                "container"
            } else {
                "script"
            };
            containers.push(emissary_wrapped(
                main,
                Some("main"),
                &format!("{t_path}.{kind}"),
            )?);
            mains.push("main".to_string());
        } else if let Some(set) = t.get("containerSet").filter(|v| !v.is_null()) {
            let set_path = format!("{t_path}.containerSet");
            let list_path = format!("{set_path}.containers");
            let list = as_object(set, &set_path)?
                .get("containers")
                .ok_or(Error::Missing {
                    path: list_path.clone(),
                    expected: "a list of containers",
                })?;
            for (j, c) in as_array(list, &list_path)?.iter().enumerate() {
                let c_path = format!("{list_path}[{j}]");
                mains.push(req_string(as_object(c, &c_path)?, "name", &c_path)?);
                containers.push(emissary_wrapped(c, None, &c_path)?);
            }
        } else {
            continue;
        }
        if let Some(sidecars) = t.get("sidecars").filter(|v| !v.is_null()) {
            let sc_path = format!("{t_path}.sidecars");
            for (j, c) in as_array(sidecars, &sc_path)?.iter().enumerate() {
                containers.push(emissary_wrapped(c, None, &format!("{sc_path}[{j}]"))?);
            }
        }
        let mut metadata = Map::new();
        let mut labels = Map::new();
        let mut annotations = Map::new();
        for meta in [pod_metadata, t.get("metadata")].into_iter().flatten() {
            if let Some(Value::Object(l)) = meta.get("labels") {
                labels.extend(l.clone());
            }
            if let Some(Value::Object(a)) = meta.get("annotations") {
                annotations.extend(a.clone());
            }
        }
        labels.insert(WORKFLOW_LABEL.into(), json!(workflow));
        annotations.insert(
            NODE_NAME_ANNOTATION.into(),
            json!(format!("{workflow}.{name}")),
        );
        metadata.insert("name".into(), json!(format!("{workflow}{name}")));
        metadata.insert("labels".into(), Value::Object(labels));
        metadata.insert("annotations".into(), Value::Object(annotations));
        let mut pod_spec = Map::new();
        pod_spec.insert(
            "initContainers".into(),
            json!([argo_container("init", &["argoexec", "init"])]),
        );
        pod_spec.insert("containers".into(), Value::Array(containers));
        for key in ["securityContext", "terminationGracePeriodSeconds"] {
            if let Some(v) = spec_map.get(key) {
                pod_spec.insert(key.into(), v.clone());
            }
        }
        pods.push((
            (name, t_path),
            (Value::Object(metadata), Value::Object(pod_spec)),
            mains,
        ));
    }
    pods.extend(artifact_gc_pods(spec_map, workflow, &spec_path));
    Ok(pods)
}

/// The artifact garbage collection pods, one per strategy the Workflow uses.
fn artifact_gc_pods(
    spec: &Map<String, Value>,
    workflow: &str,
    spec_path: &str,
) -> Vec<TemplatePod> {
    const STRATEGIES: [(&str, &str); 2] = [
        ("OnWorkflowCompletion", "wfcomp"),
        ("OnWorkflowDeletion", "wfdel"),
    ];
    let gc = spec.get("artifactGC");
    let workflow_strategy = gc.and_then(|g| g.get("strategy")).and_then(Value::as_str);
    let mut artifact_strategies = Vec::new();
    for t in spec
        .get("templates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for a in t
            .get("outputs")
            .and_then(|o| o.get("artifacts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match a
                .get("artifactGC")
                .and_then(|g| g.get("strategy"))
                .and_then(Value::as_str)
            {
                Some(s) => artifact_strategies.push(s),
                // An artifact without its own strategy takes the Workflow's.
                None => artifact_strategies.extend(workflow_strategy),
            }
        }
    }
    let mut pods = Vec::new();
    for (strategy, short) in STRATEGIES {
        if workflow_strategy != Some(strategy) && !artifact_strategies.contains(&strategy) {
            continue;
        }
        let meta = gc.and_then(|g| g.get("podMetadata"));
        let mut labels = Map::new();
        let mut annotations = Map::new();
        if let Some(Value::Object(l)) = meta.and_then(|m| m.get("labels")) {
            labels.extend(l.clone());
        }
        if let Some(Value::Object(a)) = meta.and_then(|m| m.get("annotations")) {
            annotations.extend(a.clone());
        }
        labels.insert(WORKFLOW_LABEL.into(), json!(workflow));
        labels.insert(
            "workflows.argoproj.io/component".into(),
            json!("artifact-gc"),
        );
        annotations.insert(
            "workflows.argoproj.io/artifact-gc-strategy".into(),
            json!(strategy),
        );
        let metadata = json!({
            "name": format!("{workflow}-artgc-{short}"),
            "labels": labels,
            "annotations": annotations,
        });
        let spec = json!({
            "restartPolicy": "Never",
            "containers": [argo_container("main", &["argoexec", "artifact", "delete"])],
        });
        pods.push((
            (
                format!("artifact GC ({strategy})"),
                format!("{spec_path}.artifactGC"),
            ),
            (metadata, spec),
            alloc::vec!["main".to_string()],
        ));
    }
    pods
}

fn argo_container(name: &str, argv: &[&str]) -> Value {
    json!({
        "name": name,
        "image": ARGOEXEC_IMAGE,
        "command": argv,
        "volumeMounts": [{"name": "var-run-argo", "mountPath": VAR_RUN_ARGO}],
    })
}

/// A user container as the emissary runs it: `argoexec emissary -- <command>` with
/// `/var/run/argo` mounted.
fn emissary_wrapped(c: &Value, name: Option<&str>, path: &str) -> Result<Value> {
    let mut c = as_object(c, path)?.clone();
    if let Some(name) = name {
        c.insert("name".into(), json!(name));
    }
    let mut command = alloc::vec![json!(VAR_RUN_ARGO_EXEC), json!("emissary"), json!("--")];
    match c.get("command") {
        Some(Value::Array(original)) => command.extend(original.iter().cloned()),
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(Error::Invalid {
                path: format!("{path}.command"),
                expected: "a list of strings",
                found: "another JSON value".into(),
            })
        }
    }
    c.insert("command".into(), Value::Array(command));
    let mut mounts = match c.remove("volumeMounts") {
        Some(Value::Array(m)) => m,
        _ => Vec::new(),
    };
    mounts.push(json!({"name": "var-run-argo", "mountPath": VAR_RUN_ARGO}));
    c.insert("volumeMounts".into(), Value::Array(mounts));
    c.remove("source");
    Ok(Value::Object(c))
}
