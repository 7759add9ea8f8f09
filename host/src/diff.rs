//! JSON diffs at the level of JSON paths, for `sidekill policy diff`.
//!
//! Objects are compared key by key, arrays index by index (an inserted element shows as
//! changes to every later index, then one addition: simple and predictable). Paths are
//! written `$.subjects[0].plan.stops[1].verdict`, with keys that are not identifiers
//! quoted: `$.metadata.annotations["sidecar.istio.io/status"]`.

use serde_json::Value;

/// One difference between two JSON values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where, as a JSON path.
    pub path: String,
    /// The old value; `None` when the new value added the path.
    pub old: Option<Value>,
    /// The new value; `None` when the new value removed the path.
    pub new: Option<Value>,
}

impl Change {
    /// `changed`, `added` or `removed`.
    pub fn op(&self) -> &'static str {
        match (&self.old, &self.new) {
            (Some(_), Some(_)) => "changed",
            (None, _) => "added",
            (_, None) => "removed",
        }
    }
}

/// Every difference between `old` and `new`, in document order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(old, new, &mut String::from("$"), &mut out);
    out
}

fn walk(old: &Value, new: &Value, path: &mut String, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let len = path.len();
                push_key(path, key);
                match b.get(key) {
                    Some(vb) => walk(va, vb, path, out),
                    None => out.push(Change {
                        path: path.clone(),
                        old: Some(va.clone()),
                        new: None,
                    }),
                }
                path.truncate(len);
            }
            for (key, vb) in b {
                if !a.contains_key(key) {
                    let len = path.len();
                    push_key(path, key);
                    out.push(Change {
                        path: path.clone(),
                        old: None,
                        new: Some(vb.clone()),
                    });
                    path.truncate(len);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (a.get(i), b.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, path, out),
                    (va, vb) => out.push(Change {
                        path: path.clone(),
                        old: va.cloned(),
                        new: vb.cloned(),
                    }),
                }
                path.truncate(len);
            }
        }
        (a, b) if a != b => out.push(Change {
            path: path.clone(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
        _ => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_string()).to_string());
        path.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"a": [1, {"b": null}], "c": "d"});
        assert!(diff(&v, &v).is_empty());
    }

    #[test]
    fn changes_additions_and_removals_by_path() {
        let old = json!({"subjects": [{"plan": {"stops": [{"verdict": "may-stop"}]}}], "gone": 1,
                         "annotations": {"sidecar.istio.io/status": "x"}});
        let new = json!({"subjects": [{"plan": {"stops": [{"verdict": "stops"}, {"verdict": "stops"}]}}],
                         "annotations": {"sidecar.istio.io/status": "y"}, "added": true});
        let changes = diff(&old, &new);
        let shown: Vec<(String, &str)> = changes.iter().map(|c| (c.path.clone(), c.op())).collect();
        assert_eq!(
            shown,
            vec![
                (
                    r#"$.annotations["sidecar.istio.io/status"]"#.to_string(),
                    "changed"
                ),
                ("$.gone".to_string(), "removed"),
                ("$.subjects[0].plan.stops[0].verdict".to_string(), "changed"),
                ("$.subjects[0].plan.stops[1]".to_string(), "added"),
                ("$.added".to_string(), "added"),
            ]
        );
    }

    #[test]
    fn type_changes_are_one_change() {
        let changes = diff(&json!({"a": [1]}), &json!({"a": {"0": 1}}));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "$.a");
    }
}
