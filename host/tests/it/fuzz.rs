//! Fuzz targets on proptest (stable Rust: CI has no nightly for cargo-fuzz), run through
//! wasmtime with the embedded module. Each is bounded by `PROPTEST_CASES` (default 64 here,
//! a few seconds each in a debug build); `PROPTEST_CASES=5000` runs them longer. Issue 17.
//!
//! - `abi_entry_points_never_trap_on_arbitrary_bytes`: arbitrary bytes into
//!   `sidekill_plan` and `sidekill_classify`: every answer is a JSON envelope (`ok` or a
//!   documented error), never a trap or a host error.
//! - `native_and_wasm_agree_byte_for_byte`: requests seeded from `tests/vectors`, mutated
//!   (a value replaced, a key removed, bytes cut): the native core and the module in
//!   wasmtime must answer byte-identical envelopes.
//!
//! The executor's guard has its own target next to it (`exec::guard::tests::
//! check_step_never_panics_and_passes_only_known_steps`, 256 cases unless `PROPTEST_CASES`):
//! arbitrary JSON as a step and as an answer's subject, against a pod. `scripts/test` runs all
//! three in its `cargo test` step, bounded by `PROPTEST_CASES`. Executions measured for issue
//! 17 (debug build, 2 cores under load): ABI 1,000 cases in 7.3 s, differential 1,000 in
//! 10.9 s (four calls each), guard 10,000 in 36.8 s.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;
use sidekill::{embedded, Policy};
use sidekill_policy::Call;

use crate::common::{repo_root, runtime};

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| runtime().load(embedded::BYTES).expect("embedded loads"))
}

/// The request envelopes of `tests/vectors`: `{"object", "facts"}` of each case.
fn seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = repo_root().join("tests/vectors");
        let mut seeds: Vec<Value> = std::fs::read_dir(&dir)
            .expect("tests/vectors")
            .filter_map(|e| {
                let path = e.ok()?.path();
                let case: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                let mut request = serde_json::Map::new();
                for key in ["object", "facts"] {
                    if let Some(v) = case.get(key) {
                        request.insert(key.into(), v.clone());
                    }
                }
                Some(Value::Object(request))
            })
            .collect();
        seeds.sort_by_key(Value::to_string);
        assert!(seeds.len() > 50, "{} vectors", seeds.len());
        seeds
    })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every string and object-member position in `value`, in order.
fn mutate(value: &mut Value, pick: usize, replacement: &str, remove: bool) -> bool {
    let mut n = 0usize;
    fn walk(v: &mut Value, n: &mut usize, pick: usize, repl: &str, remove: bool) -> bool {
        match v {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    *n += 1;
                    if *n == pick && remove {
                        map.remove(&key);
                        return true;
                    }
                    if let Some(child) = map.get_mut(&key) {
                        if walk(child, n, pick, repl, remove) {
                            return true;
                        }
                    }
                }
                false
            }
            Value::Array(items) => items.iter_mut().any(|c| walk(c, n, pick, repl, remove)),
            Value::String(s) => {
                *n += 1;
                if *n == pick {
                    *s = repl.to_string();
                    return true;
                }
                false
            }
            _ => false,
        }
    }
    walk(value, &mut n, pick, replacement, remove)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn abi_entry_points_never_trap_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        classify in any::<bool>(),
    ) {
        let call = if classify { Call::Classify } else { Call::Plan };
        let answer = policy().call(call, &bytes);
        let answer = answer.map_err(|e| TestCaseError::fail(e.report().to_string()))?;
        match sidekill::policy::unwrap_envelope("fuzz", &answer) {
            Ok(_) | Err(sidekill::Error::Policy { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(e.report().to_string())),
        }
    }

    #[test]
    fn native_and_wasm_agree_byte_for_byte(
        seed in 0usize..1000,
        pick in 0usize..400,
        replacement in "(\\PC{0,12}|istio-proxy|linkerd-proxy|main|wait|[0-9]{1,5})",
        remove in any::<bool>(),
        cut in prop::option::weighted(0.1, 0usize..4000),
    ) {
        let seeds = seeds();
        let mut request = seeds[seed % seeds.len()].clone();
        mutate(&mut request, pick, &replacement, remove);
        let mut bytes = serde_json::to_vec(&request).expect("json");
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        for call in [Call::Plan, Call::Classify] {
            let native = sidekill_policy::call(call, &bytes);
            let wasm = policy().call(call, &bytes).map_err(|e| TestCaseError::fail(e.report().to_string()))?;
            prop_assert!(
                native == wasm,
                "{call:?} differs on {}:\nnative {}\nwasm   {}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&native),
                String::from_utf8_lossy(&wasm)
            );
        }
    }
}
