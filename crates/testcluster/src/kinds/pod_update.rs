//! What a pod update may change: annotations checked as `ValidateAnnotations`, the spec as
//! `ValidatePodUpdate`, and ephemeral containers as `ValidatePodEphemeralContainersUpdate`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::status::ApiError;

use super::name_of;

/// `ValidateAnnotations` (apimachinery/pkg/api/validation/objectmeta.go): every key is a
/// qualified name (an optional DNS-subdomain prefix of at most 253 characters and `/`, then a
/// name of 1 to 63 characters, alphanumeric at both ends, `-_.` inside), and all keys and
/// values together are at most 256 KiB (`TotalAnnotationSizeLimitB`). Worded as the API
/// server words it.
pub(super) fn validate_annotations(meta: &ObjectMeta) -> Vec<String> {
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

/// The `Pod "NAME" is invalid: ...` error of a field error list, worded as apimachinery's
/// `errors.NewInvalid` words it: one error as is, several in brackets joined by ", ".
pub(super) fn invalid_list(name: &str, errs: &[String]) -> ApiError {
    let text = match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    ApiError::invalid("Pod", name, text)
}

/// `updatePodGeneration` (pkg/registry/core/pod/strategy.go): a spec change bumps the
/// generation.
pub(super) fn bump_generation(old: &Pod, new: &mut Pod) {
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
pub(super) fn validate_pod_update(old: &Pod, new: &Pod) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
