//! The Events the executor records on a pod (`SidecarStep`, `SidecarStopped`, `PodOutcome`, ...).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

use super::api::forbidden;
use super::executor::Executor;
use super::pod::PodRef;

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
    /// Creates an Event on the pod, unless [`Options::events`](super::Options::events)
    /// leaves out its kind; failures are logged, never fatal.
    pub(super) async fn event(&self, at: PodRef<'_>, kind: &str, reason: &str, msg: &str) {
        if kind != "Warning" && self.options.events == super::Events::Warnings {
            return;
        }
        let PodRef { ns, name, uid } = at;
        let now = k8s_openapi::jiff::Timestamp::now();
        let nanos = u128::try_from(now.as_nanosecond()).unwrap_or(0);
        // A core/v1 Event, not events.k8s.io: kubectl describe shows these, and the RBAC of
        // deploy/ and the test servers grant `create` on core events
        // (kube::runtime::events::Recorder writes events.k8s.io/v1 only).
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(event_name(name, nanos)),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                uid: Some(uid.to_owned()),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(msg.to_owned()),
            type_: Some(kind.to_owned()),
            source: Some(EventSource {
                component: Some("sidekill".into()),
                host: None,
            }),
            reporting_component: Some("sidekill".into()),
            reporting_instance: Some("sidekill".into()),
            action: Some("Stop".into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Event::default()
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
}
