//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! (merge-by-key for the core lists that have a patch merge key) and server-side apply
//! (approximated as a merge patch: no field ownership, no conflicts).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};
use serde_json::{Map, Value};

use crate::status::ApiError;

/// The patch types the server accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// The merge key of a list at this path (a field name chain), if it has one in the core API.
fn merge_key(path: &[&str]) -> Option<&'static str> {
    let last = *path.last()?;
    Some(match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "podIPs" | "hostIPs" => "ip",
        "tolerations" | "args" | "command" => return None,
        _ => return None,
    })
}

fn strategic(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        match (pv, merge_key(&refs)) {
            (Value::Array(items), Some(key)) => {
                let cur = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                if let Value::Array(list) = cur {
                    for item in items {
                        let id = item.get(key).cloned();
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        let pos = id
                            .as_ref()
                            .and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
                        match (pos, delete) {
                            (Some(i), true) => {
                                list.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => strategic(&mut list[i], item, path)?,
                            (None, false) => {
                                let mut fresh = Value::Object(Map::new());
                                strategic(&mut fresh, item, path)?;
                                list.push(fresh);
                            }
                        }
                    }
                }
            }
            (Value::Object(_), _) => {
                let cur = t.entry(k.clone()).or_insert(Value::Null);
                strategic(cur, pv, path)?;
            }
            _ => {
                t.insert(k.clone(), pv.clone());
            }
        }
        path.pop();
    }
    Ok(())
}

/// A JSON patch that does not apply, answered as the API server answers it
/// (k8s.io/apiserver pkg/endpoints/handlers/patch.go `applyJSPatch`:
/// `errors.NewGenericServerResponse(422, ...)`): 422 `Invalid`, the generic message, and the
/// patch library's error (worded as evanphx/json-patch words it) as the one cause.
fn json_patch_error(p: &json_patch::Patch, e: &json_patch::PatchError) -> ApiError {
    let op = match p.0.get(e.operation) {
        Some(json_patch::PatchOperation::Add(_)) => "add",
        Some(json_patch::PatchOperation::Remove(_)) => "remove",
        Some(json_patch::PatchOperation::Replace(_)) => "replace",
        Some(json_patch::PatchOperation::Move(_)) => "move",
        Some(json_patch::PatchOperation::Copy(_)) => "copy",
        Some(json_patch::PatchOperation::Test(_)) => "test",
        None => "",
    };
    let path = e.path.to_string();
    let cause = match e.kind {
        // evanphx/json-patch's test: a value that differs, or is missing under an existing
        // parent, fails the test.
        json_patch::PatchErrorKind::TestFailed | json_patch::PatchErrorKind::InvalidPointer
            if op == "test" =>
        {
            format!("testing value {path} failed: test failed")
        }
        json_patch::PatchErrorKind::InvalidPointer if op == "replace" => {
            format!("replace operation does not apply: doc is missing key: {path}: missing value")
        }
        json_patch::PatchErrorKind::InvalidPointer => {
            format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        ref other => format!("{op} operation failed at {path}: {other}"),
    };
    ApiError {
        code: 422,
        reason: "Invalid",
        message: "the server rejected our request due to an error in our request".into(),
        details: Some(Box::new(StatusDetails {
            causes: Some(vec![StatusCause {
                message: Some(cause),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        })),
    }
}

/// Applies `body` of type `ty` to `current`.
pub(crate) fn apply(ty: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let parse = |b: &[u8]| -> Result<Value, ApiError> {
        serde_json::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    let mut out = current.clone();
    match ty {
        PatchType::Merge => json_patch::merge(&mut out, &parse(body)?),
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| json_patch_error(&p, &e))?;
        }
        PatchType::Strategic => strategic(&mut out, &parse(body)?, &mut Vec::new())?,
        PatchType::Apply => {
            let p: Value = serde_yaml_ng::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            json_patch::merge(&mut out, &p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_annotations() {
        let cur = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}});
        let out = apply(
            PatchType::Merge,
            &cur,
            br#"{"metadata":{"annotations":{"a":null,"c":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"b": "2", "c": "3"}}})
        );
    }

    #[test]
    fn json_patch_adds_an_annotation_with_a_slash() {
        let cur = json!({"metadata": {"annotations": {}}});
        let body =
            br#"[{"op":"add","path":"/metadata/annotations/sidekill.io~1done","value":"true"}]"#;
        let out = apply(PatchType::Json, &cur, body).unwrap();
        assert_eq!(out["metadata"]["annotations"]["sidekill.io/done"], "true");
        let bad = br#"[{"op":"test","path":"/metadata/annotations/x","value":"1"}]"#;
        let e = apply(PatchType::Json, &cur, bad).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let cause = e.details.unwrap().causes.unwrap()[0]
            .message
            .clone()
            .unwrap();
        assert_eq!(
            cause,
            "testing value /metadata/annotations/x failed: test failed"
        );
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let cur = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = apply(
            PatchType::Strategic,
            &cur,
            br#"{"spec":{"containers":[{"name":"b","image":"z"},{"name":"a","$patch":"delete"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "b", "image": "z"}]}})
        );
    }

    #[test]
    fn unknown_content_type_is_415() {
        assert_eq!(
            PatchType::from_content_type("text/plain").unwrap_err().code,
            415
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
    }
}
