//! What differs between the kinds the server serves (Pod, ConfigMap, Event): defaults and
//! validation on create and update, the fields a field selector may name, and the columns of the
//! `meta.k8s.io/v1` Table that `kubectl get` asks for.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{json, Value};

use crate::status::ApiError;
use crate::store::ApiObject;

mod pod;
mod pod_update;

pub(crate) use pod_update::ephemeral_update;

/// The node every pod is bound to.
pub(crate) const NODE_NAME: &str = "sidekill-testcluster";

/// Per-kind behaviour.
pub(crate) trait Kind: ApiObject {
    /// Field paths a field selector may use.
    const FIELDS: &'static [&'static str];
    /// Short names for discovery.
    const SHORT_NAMES: &'static [&'static str];
    /// The columns of `kubectl get`'s table, as kube-apiserver's printers declare them.
    const COLUMNS: &'static [Column];

    /// Fills defaults and validates a new object (its namespace is already set).
    fn prepare_create(&mut self) -> Result<(), ApiError>;

    /// Validates an update of `old` to `new`, resetting what a client may not change.
    fn validate_update(old: &Self, new: &mut Self) -> Result<(), ApiError>;

    /// Table column definitions ([`Kind::COLUMNS`] as the Table API sends them).
    fn table_columns() -> Vec<Value> {
        Self::COLUMNS
            .iter()
            .map(|&(name, ty, priority, description)| column(name, ty, priority, description))
            .collect()
    }

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

/// A table column: name, type, priority (0 always shown, 1 with `-o wide`) and description.
pub(crate) type Column = (&'static str, &'static str, i32, &'static str);

/// The `Name` column of every kind, described as `ObjectMeta.name` is (kube-apiserver's
/// printers take it from `metav1.ObjectMeta{}.SwaggerDoc()`).
const NAME_COLUMN: Column = (
    "Name",
    "string",
    0,
    "Name must be unique within a namespace.",
);
/// The `Age` column of every kind, described as `ObjectMeta.creationTimestamp` is.
const AGE_COLUMN: Column = (
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn column(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": description, "priority": priority})
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`).
pub(crate) fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
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

    const COLUMNS: &'static [Column] = &[
        NAME_COLUMN,
        (
            "Data",
            "integer",
            0,
            "Data contains the configuration data.",
        ),
        AGE_COLUMN,
    ];

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

    const COLUMNS: &'static [Column] = &[
        ("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
        ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
        ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        ("Object", "string", 0, "The object that this event is about."),
        ("Message", "string", 0, "A human-readable description of the status of this operation."),
    ];

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
}
