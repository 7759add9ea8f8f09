//! Every shared vector (`tests/vectors/`), loaded as the core's own vector test and
//! `dump_vectors` load them, answered by the module byte for byte as by the native core.

use sidekill_policy::Call;

use crate::{short, Policy};

#[allow(dead_code)] // Shared with the core's examples; this test uses part of it.
#[path = "../../../policy/examples/common/vectors.rs"]
mod files;

#[test]
fn every_vector_matches_the_native_core() {
    let all = files::load_all();
    assert!(!all.is_empty(), "no vectors in tests/vectors");
    // One instance for every call, as a host keeps one.
    let mut policy = Policy::new();
    let mut differ = Vec::new();
    for vector in &all {
        for call in [Call::Plan, Call::Classify] {
            let native = sidekill_policy::call(call, &vector.request);
            let module = policy.call(call, &vector.request);
            if module != native {
                differ.push(format!(
                    "{} ({call:?}):\n  module: {}\n  native: {}",
                    vector.name,
                    short(&module),
                    short(&native)
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} vectors differ (was {} built from these sources? scripts/build-wasm):\n{}",
        differ.len(),
        all.len(),
        crate::module_path().display(),
        differ.join("\n")
    );
}

/// The allocator never coalesces (see src/heap.rs): memory must still reach a steady state
/// when one instance answers the same mix of requests again and again.
#[test]
fn memory_reaches_a_steady_state() {
    let all = files::load_all();
    let mut policy = Policy::new();
    let round = |policy: &mut Policy| {
        for vector in &all {
            policy.call(Call::Plan, &vector.request);
        }
    };
    for _ in 0..3 {
        round(&mut policy);
    }
    let settled = policy.memory_size();
    for _ in 0..20 {
        round(&mut policy);
    }
    assert_eq!(
        policy.memory_size(),
        settled,
        "memory grew while answering the same requests"
    );
}
