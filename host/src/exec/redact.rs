//! Least data: what the executor sends the policy module of a live pod. The module needs the
//! pod's shape, not its secrets, and a module that never sees a value cannot leak it through
//! the commands it chooses. Before a pod is planned:
//!
//! - every literal `env[].value` is replaced by `""`, except the variables whose values the
//!   policy reads ([`sidekill_policy::pod::ENV_VALUES_READ`], compiled into this host: a
//!   module cannot widen the list);
//! - the annotation `kubectl.kubernetes.io/last-applied-configuration` (a copy of the whole
//!   object, env values included) is dropped, and so are `metadata.managedFields`.
//!
//! Names stay (the policy reads which variables are set), and `valueFrom` references stay:
//! they name a Secret's key, they do not hold it.

use serde_json::Value;
use sidekill_policy::pod::ENV_VALUES_READ;

/// The annotation that repeats the object as the user last applied it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Redacts a pod's JSON in place.
pub(super) fn redact(pod: &mut Value) {
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(LAST_APPLIED);
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for var in container
                .get_mut("env")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let read = var
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| ENV_VALUES_READ.contains(&n));
                if !read {
                    if let Some(value) = var.get_mut("value") {
                        *value = Value::String(String::new());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_go_and_what_the_policy_reads_stays() {
        let mut pod = json!({
            "metadata": {"name": "p", "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{\"env\":\"DB_PASSWORD=hunter2\"}", "keep": "me"}},
            "spec": {"containers": [{"name": "c", "env": [
                {"name": "DB_PASSWORD", "value": "hunter2"},
                {"name": "CSQL_PROXY_ADMIN_PORT", "value": "9091"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}],
                "initContainers": [{"name": "i", "env": [{"name": "API_KEY", "value": "k"}]}]}
        });
        redact(&mut pod);
        let text = pod.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("managedFields"), "{text}");
        assert_eq!(pod["metadata"]["annotations"]["keep"], "me");
        let env = &pod["spec"]["containers"][0]["env"];
        assert_eq!(env[0], json!({"name": "DB_PASSWORD", "value": ""}));
        assert_eq!(env[1]["value"], "9091");
        assert_eq!(env[2]["valueFrom"]["secretKeyRef"]["key"], "k");
        assert_eq!(pod["spec"]["initContainers"][0]["env"][0]["value"], "");
    }
}
