//! Bad input: each gets an error envelope with a code from docs/ABI.md, never a trap, and
//! the same instance then answers a good request.

use sidekill_policy::Call;

use crate::{assert_still_usable, error_code, json, short, Policy};

/// Sends bytes through the whole protocol and returns the error code.
fn code_for(policy: &mut Policy, request: &[u8]) -> String {
    error_code(&policy.call(Call::Plan, request))
}

#[test]
fn invalid_utf8() {
    let mut policy = Policy::new();
    assert_eq!(
        code_for(&mut policy, b"{\"object\": \"\xff\xfe\"}"),
        "invalid_utf8"
    );
    assert_still_usable(&mut policy);
}

#[test]
fn truncated_json() {
    let mut policy = Policy::new();
    assert_eq!(
        code_for(&mut policy, br#"{"object": {"kind": "Pod", "spec": {"#),
        "invalid_json"
    );
    assert_still_usable(&mut policy);
}

#[test]
fn empty_request() {
    let mut policy = Policy::new();
    let ptr = policy.alloc(16);
    // A zero-length request inside a live buffer is JSON's problem, not the pointer's.
    let answer = policy.call_at(Call::Plan, ptr, 0).expect("no trap");
    assert_eq!(error_code(&answer), "invalid_json");
    assert_still_usable(&mut policy);
}

#[test]
fn request_over_8_mib_is_too_large() {
    let mut policy = Policy::new();
    let len = 50 << 20;
    let ptr = policy.alloc(len);
    assert_ne!(ptr, 0, "a 50 MiB buffer is within sidekill_alloc's 64 MiB");
    policy.write(ptr, &vec![b' '; len as usize]);
    let answer = policy.call_at(Call::Plan, ptr, len).expect("no trap");
    assert_eq!(error_code(&answer), "request_too_large");
    policy.free(ptr, len);
    assert_still_usable(&mut policy);
}

#[test]
fn alloc_refuses_zero_and_over_64_mib() {
    let mut policy = Policy::new();
    assert_eq!(policy.alloc(0), 0);
    assert_eq!(policy.alloc((64 << 20) + 1), 0);
    assert_eq!(policy.alloc(u32::MAX), 0);
    assert_still_usable(&mut policy);
}

#[test]
fn pointer_outside_memory() {
    let mut policy = Policy::new();
    let ptr = policy.alloc(64);
    policy.write(ptr, &[b' '; 64]);
    let size = u32::try_from(policy.memory_size()).expect("memory under 4 GiB");
    for (at, len) in [
        (size + 100, 10),
        (u32::MAX - 5, 100),
        (u32::MAX, 1),
        (0, 10),
        (ptr, 65),     // one byte past the buffer
        (ptr + 60, 8), // straddles its end
        (ptr - 1, 4),  // starts before it
        (ptr + 64, 1), // just past it
    ] {
        for call in [Call::Plan, Call::Classify] {
            let answer = policy.call_at(call, at, len).expect("no trap");
            assert_eq!(error_code(&answer), "bad_pointer", "[{at}, +{len})");
        }
    }
    policy.free(ptr, 64);
    assert_still_usable(&mut policy);
}

#[test]
fn call_before_any_alloc() {
    for call in [Call::Plan, Call::Classify] {
        let mut policy = Policy::new();
        for (at, len) in [(0, 0), (0, 10), (1024, 10), (1 << 20, 100)] {
            let answer = policy.call_at(call, at, len).expect("no trap");
            assert_eq!(error_code(&answer), "bad_pointer", "[{at}, +{len})");
        }
        assert_still_usable(&mut policy);
    }
}

#[test]
fn freed_and_reset_buffers_are_bad_pointers() {
    let mut policy = Policy::new();
    let ptr = policy.alloc(32);
    policy.free(ptr, 32);
    policy.free(ptr, 32); // a second free is ignored
    policy.free(12345, 1); // so is an unknown address
    let answer = policy.call_at(Call::Plan, ptr, 2).expect("no trap");
    assert_eq!(error_code(&answer), "bad_pointer");

    let ptr = policy.alloc(32);
    policy.reset();
    let answer = policy.call_at(Call::Plan, ptr, 2).expect("no trap");
    assert_eq!(error_code(&answer), "bad_pointer");
    assert_still_usable(&mut policy);
}

#[test]
fn deep_nesting_is_too_deep() {
    let mut policy = Policy::new();
    let deep = "[".repeat(100_000);
    assert_eq!(code_for(&mut policy, deep.as_bytes()), "too_deep");
    let wrapped = format!(r#"{{"object": {{"kind": "Pod", "spec": {deep}"#);
    assert_eq!(code_for(&mut policy, wrapped.as_bytes()), "too_deep");
    let objects = r#"{"a":"#.repeat(100_000);
    assert_eq!(code_for(&mut policy, objects.as_bytes()), "too_deep");
    assert_still_usable(&mut policy);
}

#[test]
fn huge_strings_do_not_trap() {
    let mut policy = Policy::new();
    let huge = "x".repeat(7 << 20);
    // As the kind: an error naming it.
    let request = format!(r#"{{"object": {{"kind": "{huge}"}}}}"#);
    assert_eq!(
        code_for(&mut policy, request.as_bytes()),
        "unsupported_kind"
    );
    // As an annotation of a pod the core plans: an answer.
    let request = format!(
        r#"{{"object": {{"kind": "Pod", "metadata": {{"name": "big", "annotations": {{"note": "{huge}"}}}},
            "spec": {{"containers": [{{"name": "main", "image": "busybox"}}]}}}}}}"#
    );
    let answer = policy.call(Call::Plan, request.as_bytes());
    assert!(
        json(&answer).get("ok").is_some(),
        "expected an answer, got {}",
        short(&answer)
    );
    assert_eq!(
        answer,
        sidekill_policy::call(Call::Plan, request.as_bytes())
    );
    assert_still_usable(&mut policy);
}

/// Every error envelope has the documented shape: a code from the table, a message, and
/// at most a path.
#[test]
fn error_envelopes_have_the_documented_shape() {
    const CODES: [&str; 10] = [
        "invalid_utf8",
        "invalid_json",
        "invalid_yaml",
        "missing_field",
        "invalid_field",
        "unsupported_kind",
        "too_deep",
        "request_too_large",
        "bad_pointer",
        "internal",
    ];
    let mut policy = Policy::new();
    for request in [
        &b"\xff"[..],
        b"{",
        b"[]",
        br#"{"facts": {}}"#,
        br#"{"object": {"kind": "Secret"}}"#,
        br#"{"object": {"kind": "Pod"}}"#,
        br#"{"object": {"kind": "Pod", "spec": {"containers": [{}]}}}"#,
        br#"{"object": {"kind": "Pod", "spec": {"containers": []}}, "facts": {"executor": "x"}}"#,
    ] {
        let envelope = json(&policy.call(Call::Plan, request));
        let error = envelope["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{envelope}"));
        let code = error["code"].as_str().expect("code is a string");
        assert!(CODES.contains(&code), "code {code} is not in docs/ABI.md");
        assert!(error["message"].is_string(), "{envelope}");
        assert!(
            error
                .keys()
                .all(|k| ["code", "message", "path"].contains(&k.as_str())),
            "{envelope}"
        );
    }
    assert_still_usable(&mut policy);
}
