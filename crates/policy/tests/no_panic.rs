//! No input makes the core panic: arbitrary bytes, arbitrary JSON shapes in every field,
//! deep nesting and huge strings all give an answer envelope.

use proptest::prelude::*;
use serde_json::{json, Value};
use sidekill_policy::{call, Call};

fn envelope(bytes: &[u8]) -> Value {
    let answer = call(Call::Plan, bytes);
    let value: Value = serde_json::from_slice(&answer).expect("the answer is always JSON");
    assert!(
        value.get("ok").is_some() ^ value.get("error").is_some(),
        "{value}"
    );
    value
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("%d")),
        Just(json!("Always")),
        Just(json!("/var/run/argo")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("containers".to_string()),
                    Just("initContainers".to_string()),
                    Just("annotations".to_string()),
                    Just("status".to_string()),
                    Just("state".to_string()),
                    Just("restartPolicy".to_string()),
                    Just("volumeMounts".to_string()),
                    Just("mountPath".to_string()),
                    Just("command".to_string()),
                    ".{0,6}".prop_map(String::from),
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        envelope(&bytes);
    }

    #[test]
    fn arbitrary_pod_shapes_never_panic(
        kind in prop_oneof![Just("Pod"), Just("Job"), Just("CronJob"), Just("Workflow"), Just("List")],
        metadata in any_json(),
        spec in any_json(),
        status in any_json(),
        annotation in ".{0,40}",
    ) {
        let mut object = json!({"kind": kind, "metadata": metadata, "spec": spec, "status": status});
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.insert("annotations".into(), json!({"workflows.argoproj.io/kill-cmd-a": annotation}));
        }
        envelope(json!({"object": object}).to_string().as_bytes());
    }

    #[test]
    fn arbitrary_kill_commands_never_panic(value in ".{0,64}") {
        let object = json!({"kind": "Pod", "metadata": {"annotations": {
            "workflows.argoproj.io/kill-cmd-a": value,
            "sidecar.istio.io/status": "{\"containers\":[\"a\"]}"}},
            "spec": {"containers": [{"name": "m"}, {"name": "a", "image": "x"}]},
            "status": {"containerStatuses": [{"name": "m", "state": {"terminated": {"exitCode": 0}}}]}});
        let answer = envelope(json!({"object": object}).to_string().as_bytes());
        prop_assert!(answer.get("ok").is_some());
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let answer = envelope(text.as_bytes());
    assert_eq!(answer["error"]["code"], "too_deep");
    let yaml = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    assert!(sidekill_policy::yaml::documents(&yaml).is_err());
}

#[test]
fn huge_strings_are_planned() {
    let big = "x".repeat(8 << 20);
    let object = json!({"kind": "Pod", "metadata": {"name": big, "annotations": {"workflows.argoproj.io/kill-cmd-a": big}},
        "spec": {"containers": [{"name": "a", "image": big}]}});
    let answer = envelope(json!({"object": object}).to_string().as_bytes());
    assert_eq!(
        answer["ok"]["subjects"][0]["diagnostics"][0]["code"],
        "kill-cmd-too-long"
    );
}
