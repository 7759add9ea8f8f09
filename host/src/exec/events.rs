//! The Events the executor records on a pod (`SidecarStep`, `SidecarStopped`, `PodOutcome`, ...).

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::api::*;
use super::executor::Executor;

/// RFC 3339 UTC with seconds, for event timestamps.
pub(super) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// An Event's name, `<pod>.sidekill.<nanos in hex>`, at most 253 characters (a DNS subdomain,
/// as every object name): a pod's name may have 253 of its own, so it is shortened, without
/// leaving a `-` or `.` at the end of its part.
pub(super) fn event_name(pod: &str, nanos: u128) -> String {
    let suffix = format!(".sidekill.{nanos:x}");
    let keep = 253usize.saturating_sub(suffix.len()).min(pod.len());
    // Pod names are ASCII (a DNS subdomain): any byte index is a char boundary.
    let head = pod.get(..keep).unwrap_or(pod).trim_end_matches(['-', '.']);
    format!("{head}{suffix}")
}

impl Executor {
    /// Creates an Event on the pod; failures are logged, never fatal.
    pub(super) async fn event(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        kind: &str,
        reason: &str,
        msg: &str,
    ) {
        let now = now_rfc3339();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name(name, nanos), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": uid},
            "reason": reason,
            "message": msg,
            "type": kind,
            "source": {"component": "sidekill"},
            "reportingComponent": "sidekill",
            "reportingInstance": "sidekill",
            "action": "Stop",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        let Ok(ev) = serde_json::from_value::<Event>(ev) else {
            return;
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams::default();
        if let Err(e) = self.retry("create event", || api.create(&pp, &ev)).await {
            // Still not fatal, but a missing permission is named as such.
            let error = forbidden(&e, "create", "events", ns, || {
                format!("recording event {reason} on pod {ns}/{name}")
            })
            .map_or_else(|| e.to_string(), |f| f.to_string());
            tracing::warn!(pod = %format!("{ns}/{name}"), %error, "could not record an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_a_dns_subdomain() {
        assert_eq!(event_name("p", 255), "p.sidekill.ff");
        let long = "a".repeat(240) + "-" + &"b".repeat(12);
        let name = event_name(&long, u128::MAX);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(!name.contains("-.") && !name.contains(".."), "{name}");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
