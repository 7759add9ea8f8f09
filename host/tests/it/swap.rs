//! The policy store: validated swaps under concurrent load, calls in flight, rollback,
//! the sha256 pin, and the file source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidekill::source::file::{FileSource, FileWatcher};
use sidekill::{embedded, Policy, PolicyStore, Sha256, Swap};

use crate::common::{embedded_variant, runtime, under_load, wat, ISTIO_POD};

fn store() -> PolicyStore {
    PolicyStore::new(runtime().clone(), None, embedded::BYTES, embedded::ORIGIN).expect("store")
}

/// The embedded module's store with the sha256 pin `pin`.
fn pinned(pin: Sha256) -> sidekill::Result<PolicyStore> {
    PolicyStore::new(runtime().clone(), Some(pin), embedded::BYTES, "embedded")
}

#[test]
fn a_thousand_swaps_under_load_lose_no_call() {
    let store = store();
    let variant = embedded_variant("b");
    let shas = [embedded::sha256(), Sha256::of(&variant)];
    // Warm the variant once (compilation), so the loop measures swaps.
    store.validate(&variant).expect("the variant validates");

    let calls = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let on_variant = AtomicU64::new(0);
    let plan = |policy: &Policy| {
        match policy.plan(ISTIO_POD) {
            Ok(plan) if plan["subjects"][0]["plan"]["stops"][0]["container"] == "istio-proxy" => {}
            Ok(plan) => panic!("wrong plan: {plan}"),
            Err(e) => {
                eprintln!("failed call: {}", e.report());
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if *policy.sha256() == shas[1] {
            on_variant.fetch_add(1, Ordering::Relaxed);
        }
        calls.fetch_add(1, Ordering::Relaxed);
    };
    let swapping = under_load(&store, 4, plan, || {
        let started = Instant::now();
        for i in 0..1_000 {
            let (bytes, origin) = if i % 2 == 0 {
                (&variant[..], "variant")
            } else {
                (embedded::BYTES, "embedded")
            };
            match store
                .propose(bytes, origin)
                .expect("valid versions are accepted")
            {
                Swap::Switched { to, .. } => assert_eq!(*to.policy.sha256(), shas[(i + 1) % 2]),
                Swap::Unchanged(_) => panic!("swap {i} changed nothing"),
            }
        }
        started.elapsed()
    });
    let calls = calls.load(Ordering::Relaxed);
    eprintln!(
        "1000 swaps in {swapping:?} under 4 planning threads: {calls} calls, {} on the variant",
        on_variant.load(Ordering::Relaxed)
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(calls > 0);
    assert_eq!(store.stats().switches, 1_000);
    assert_eq!(*store.current().sha256(), shas[0]);
}

#[test]
fn a_call_in_flight_finishes_on_its_version() {
    let store = store();
    let before = store.current();
    let variant = embedded_variant("in-flight");
    store.propose(&variant, "variant").expect("swap");
    assert_ne!(store.current().sha256(), before.sha256());
    // The old Arc is still a working policy.
    let plan = before.plan(ISTIO_POD).expect("the old version still plans");
    assert_eq!(
        plan["subjects"][0]["plan"]["stops"][0]["container"],
        "istio-proxy"
    );
    assert_eq!(*before.sha256(), embedded::sha256());
}

#[test]
fn rollback_returns_to_the_previous_version() {
    let store = store();
    assert_eq!(store.rollback().unwrap_err().name(), "no_previous");
    let variant = embedded_variant("rollback");
    store.propose(&variant, "variant").expect("swap");
    let Swap::Switched { from, to } = store.rollback().expect("rollback") else {
        panic!("rollback must switch")
    };
    assert_eq!(*from.policy.sha256(), Sha256::of(&variant));
    assert_eq!(*to.policy.sha256(), embedded::sha256());
    assert_eq!(to.origin, "embedded");
    // A second rollback goes forward again.
    store.rollback().expect("rollback");
    assert_eq!(*store.current().sha256(), Sha256::of(&variant));
    assert_eq!(store.stats().rollbacks, 2);
}

#[test]
fn a_refused_version_leaves_the_live_one_and_its_previous() {
    let store = store();
    store
        .propose(&embedded_variant("x"), "variant")
        .expect("swap");
    let err = store.propose(&wat("trap_plan"), "trap").unwrap_err();
    assert_eq!(err.name(), "canary");
    assert_eq!(
        *store.current().sha256(),
        Sha256::of(&embedded_variant("x"))
    );
    assert_eq!(
        store.previous().map(|v| *v.policy.sha256()),
        Some(embedded::sha256())
    );
}

#[test]
fn the_pin_refuses_any_other_module_before_compiling_it() {
    let store = pinned(embedded::sha256()).expect("the pinned module loads");
    let err = store
        .propose(&embedded_variant("pin"), "variant")
        .unwrap_err();
    assert_eq!(err.name(), "pin");
    assert!(err.to_string().contains(&embedded::sha256().to_string()));
    // Issue 17: the embedded module is trusted as part of the binary, so a pin (which
    // guards modules from outside) no longer refuses it; a pinned file still must match.
    let store = pinned(Sha256::of(b"other")).expect("the embedded module is trusted");
    let err = store
        .propose(&embedded_variant("x"), "variant")
        .unwrap_err();
    assert_eq!(err.name(), "pin");
}

#[test]
fn the_same_bytes_change_nothing() {
    let store = store();
    assert!(matches!(
        store.propose(embedded::BYTES, "again"),
        Ok(Swap::Unchanged(_))
    ));
    assert_eq!(store.stats().switches, 0);
}

#[test]
fn the_file_source_swaps_on_change_and_survives_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.wasm");
    let store = store();
    let mut source = FileSource::new(&path);

    // Missing file: an IO error, the live version keeps serving.
    assert_eq!(source.poll(&store).unwrap_err().name(), "io");

    let variant = embedded_variant("file");
    write(&path, &variant);
    assert!(matches!(
        source.poll(&store),
        Ok(Some(Swap::Switched { .. }))
    ));
    assert_eq!(*store.current().sha256(), Sha256::of(&variant));
    assert_eq!(store.live().origin, path.display().to_string());
    assert!(matches!(source.poll(&store), Ok(None)), "unchanged file");

    write(&path, b"garbage");
    assert_eq!(source.poll(&store).unwrap_err().name(), "not_wasm");
    assert!(
        matches!(source.poll(&store), Ok(None)),
        "a refused version is not retried"
    );
    assert_eq!(*store.current().sha256(), Sha256::of(&variant));

    write(&path, embedded::BYTES);
    assert!(matches!(
        source.poll(&store),
        Ok(Some(Swap::Switched { .. }))
    ));
    assert_eq!(*store.current().sha256(), embedded::sha256());
}

#[test]
fn the_file_watcher_picks_up_a_new_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.wasm");
    write(&path, embedded::BYTES);
    let store = Arc::new(store());
    let watcher =
        FileWatcher::spawn(Arc::clone(&store), &path, Duration::from_millis(10)).expect("watcher");
    let variant = embedded_variant("watcher");
    write(&path, &variant);
    let deadline = Instant::now() + Duration::from_secs(60);
    while *store.current().sha256() != Sha256::of(&variant) {
        assert!(Instant::now() < deadline, "the watcher did not swap");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(watcher);
}

/// Writes through a temporary file and a rename, as a deployment would.
fn write(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
