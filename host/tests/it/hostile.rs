//! Hostile and broken modules: each is refused at load or stopped during the call with a
//! distinct error, and the host (the shared runtime) keeps working afterwards.

use std::time::{Duration, Instant};

use sidekill::runtime::thread_cpu_time;
use sidekill::{Error, PolicyStore};

use crate::common::{runtime, wat, ISTIO_POD};
use sidekill::error::{CallError, LoadError};

/// Loads a module that must be refused; returns the error.
fn refused(name: &str) -> Error {
    let err = runtime()
        .load(&wat(name))
        .expect_err(&format!("{name} must be refused"));
    assert!(!err.to_string().is_empty());
    err
}

/// How long a call took: wall-clock and the calling thread's CPU time.
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Took) {
    let cpu = thread_cpu_time().expect("a per-thread CPU clock");
    let started = Instant::now();
    let out = f();
    let took = Took {
        wall: started.elapsed(),
        cpu: thread_cpu_time().expect("clock") - cpu,
    };
    (out, took)
}

/// Loads a module that must load, and plans with it; returns the call's error.
fn failing_plan(name: &str) -> (Error, Took) {
    let policy = runtime()
        .load(&wat(name))
        .unwrap_or_else(|e| panic!("{name} must load: {}", e.report()));
    let (result, took) = timed(|| policy.plan(ISTIO_POD));
    (result.expect_err(&format!("{name}: plan must fail")), took)
}

/// After each hostile module, the embedded policy still plans.
fn host_still_works() {
    let policy = runtime()
        .load(sidekill::embedded::BYTES)
        .expect("embedded loads");
    let plan = policy.plan(ISTIO_POD).expect("embedded plans");
    assert_eq!(
        plan["subjects"][0]["plan"]["stops"][0]["container"],
        "istio-proxy"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline() {
    let (err, took) = failing_plan("loop_plan");
    assert_eq!(err.name(), "deadline", "{}", err.report());
    assert_eq!(
        err.to_string(),
        "`sidekill_plan` ran past its 100 ms CPU-time deadline and was stopped"
    );
    // Stopped once it has used 100 ms of CPU (checked every 10 ms tick); with a CPU to
    // itself that is 100 ms of wall-clock time, on a busy machine longer, never past 1 s.
    assert!(took.cpu >= Duration::from_millis(95), "{:?}", took.cpu);
    assert!(took.cpu < Duration::from_millis(130), "{:?}", took.cpu);
    assert!(took.wall < Duration::from_millis(1_100), "{:?}", took.wall);
    eprintln!(
        "loop stopped after {:?} wall, {:?} CPU",
        took.wall, took.cpu
    );
    host_still_works();
}

#[test]
fn memory_growth_stops_at_the_limit() {
    let (err, _) = failing_plan("grow_plan");
    assert_eq!(err.name(), "memory_limit", "{}", err.report());
    assert!(
        matches!(err, Error::Call(CallError::MemoryLimit { call: "sidekill_plan", limit, wanted }) if limit == 64 << 20 && wanted > limit),
        "{err:?}"
    );
    host_still_works();
}

#[test]
fn a_trap_is_reported() {
    let (err, _) = failing_plan("trap_plan");
    assert_eq!(err.name(), "trap", "{}", err.report());
    assert!(
        err.report().to_string().contains("unreachable"),
        "{}",
        err.report()
    );
    host_still_works();
}

#[test]
fn a_stack_overflow_is_a_trap() {
    let (err, _) = failing_plan("stack_overflow");
    assert!(
        matches!(
            err,
            Error::Call(CallError::Trap {
                trap: wasmtime::Trap::StackOverflow,
                ..
            })
        ),
        "{err:?}"
    );
    host_still_works();
}

#[test]
fn a_start_function_that_never_returns_is_stopped() {
    // Compile first: compilation shares a thread pool with other tests and is not timed.
    let bytes = wat("start_loop");
    runtime()
        .compile(&bytes, &sidekill::Sha256::of(&bytes))
        .expect("compiles");
    let (result, took) = timed(|| runtime().load(&bytes));
    let err = result.expect_err("refused");
    assert_eq!(err.name(), "start_deadline", "{}", err.report());
    assert_eq!(
        err.to_string(),
        "the module's start function ran past the 100 ms CPU-time deadline and was stopped"
    );
    assert!(took.cpu < Duration::from_millis(130), "{:?}", took.cpu);
    assert!(took.wall < Duration::from_millis(1_100), "{:?}", took.wall);
    host_still_works();
}

#[test]
fn a_lying_result_length_is_refused() {
    // result_len says 1 GiB: refused on the first answer read, the policy_info at load.
    let err = refused("huge_result");
    assert!(
        matches!(
            err,
            Error::Call(CallError::ResultTooLarge {
                len: 0x4000_0000,
                ..
            })
        ),
        "{err:?}"
    );
    let (err, _) = failing_plan("result_out_of_bounds");
    assert_eq!(err.name(), "result_out_of_bounds", "{}", err.report());
    host_still_works();
}

#[test]
fn another_abi_version_is_refused() {
    let err = refused("abi_v2");
    assert!(
        matches!(
            err,
            Error::Load(LoadError::AbiVersion {
                major: 2,
                minor: 0,
                supported: 1
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "ABI version 2.0 is not supported: this host speaks 1.x"
    );
}

#[test]
fn garbage_bytes_are_refused() {
    let err = runtime()
        .load(b"\x7fELF\x02\x01\x01 not wasm at all")
        .unwrap_err();
    assert_eq!(err.name(), "not_wasm");
    assert!(err.to_string().contains("7f 45 4c 46"), "{err}");
    // WAT text is not accepted either: the host loads binaries only.
    let err = runtime().load(b"(module)").unwrap_err();
    assert_eq!(err.name(), "not_wasm");
    // The magic, then garbage.
    let err = runtime()
        .load(b"\0asm\x01\0\0\0\xff\xff\xff\xff")
        .unwrap_err();
    assert_eq!(err.name(), "compile", "{}", err.report());
    assert!(
        err.report()
            .to_string()
            .starts_with("the module does not compile: "),
        "{}",
        err.report()
    );
}

#[test]
fn an_empty_module_is_refused() {
    assert_eq!(runtime().load(b"").unwrap_err().name(), "empty");
    let err = refused("empty");
    assert!(
        matches!(
            err,
            Error::Load(LoadError::MissingExport { name: "memory", .. })
        ),
        "{err:?}"
    );
}

#[test]
fn imports_are_refused_by_name() {
    let err = refused("imports");
    let Error::Load(LoadError::Imports { imports }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(imports.len(), 2);
    let text = err.to_string();
    assert!(text.contains(r#""env" "now" (func)"#), "{text}");
    assert!(
        text.contains(r#""wasi_snapshot_preview1" "fd_write" (func)"#),
        "{text}"
    );
}

#[test]
fn an_initial_memory_over_the_limit_is_refused() {
    let err = refused("big_memory");
    assert!(
        matches!(
            err,
            Error::Call(CallError::MemoryLimit {
                call: "instantiate",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn a_failed_alloc_is_reported() {
    let (err, _) = failing_plan("alloc_zero");
    assert!(
        matches!(err, Error::Call(CallError::AllocFailed { ptr: 0, .. })),
        "{err:?}"
    );
}

#[test]
fn an_answer_that_is_not_json_is_reported() {
    let (err, _) = failing_plan("not_json");
    assert_eq!(err.name(), "bad_answer", "{}", err.report());
}

#[test]
fn a_wrong_signature_is_refused() {
    let err = refused("wrong_signature");
    assert!(
        matches!(&err, Error::Load(LoadError::ExportType { name: "sidekill_plan", found, .. }) if found == "func(i32) -> i32"),
        "{err:?}"
    );
}

#[test]
fn the_store_refuses_what_the_canaries_catch() {
    let store = PolicyStore::new(
        runtime().clone(),
        None,
        sidekill::embedded::BYTES,
        "embedded",
    )
    .expect("the embedded module passes");
    let live = store.current().sha256().to_string();
    for (name, reason) in [
        ("mock", "canary"),
        ("loop_plan", "canary"),
        ("grow_plan", "canary"),
        ("trap_plan", "canary"),
        ("imports", "imports"),
        ("start_loop", "start_deadline"),
    ] {
        let err = store.propose(&wat(name), name).expect_err(name);
        assert_eq!(err.name(), reason, "{name}: {}", err.report());
        assert_eq!(
            store.current().sha256().to_string(),
            live,
            "{name} must not go live"
        );
    }
    // The mock answers a bad request with `ok`; the canary says so.
    let err = store.propose(&wat("mock"), "mock").unwrap_err();
    assert!(
        err.report().to_string().contains("bad-request"),
        "{}",
        err.report()
    );
    // A loop is stopped by the deadline and the canary says which call.
    let err = store.propose(&wat("loop_plan"), "loop").unwrap_err();
    assert_eq!(
        err.report().to_string(),
        "canary `istio-job` failed: `sidekill_plan` ran past its 100 ms CPU-time deadline and was stopped"
    );
    assert_eq!(store.stats().refusals, 8);
    assert_eq!(store.stats().switches, 0);
}

/// The corpus's `.wasm` files, which the loaders read (they have no WAT parser), are the
/// `.wat` files compiled, and the manifest lists every one (issue 17). `SIDEKILL_BLESS=1`
/// rewrites the `.wasm` files.
#[test]
fn the_corpus_wasm_files_are_the_wat_files_compiled_and_all_listed() {
    let dir = crate::common::repo_root().join("host/tests/modules");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("corpus.json")).expect("manifest"))
            .expect("JSON");
    let listed: Vec<&str> = manifest["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .filter_map(|m| m["file"].as_str())
        .collect();
    let bless = std::env::var_os("SIDEKILL_BLESS").is_some();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("modules")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".wat").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        let compiled = wat(name);
        let path = dir.join(format!("{name}.wasm"));
        if bless {
            std::fs::write(&path, &compiled).expect("write");
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == compiled,
            "{} is not {name}.wat compiled: run SIDEKILL_BLESS=1 cargo test -p sidekill --test it corpus_wasm",
            path.display()
        );
        assert!(
            listed.contains(&format!("{name}.wasm").as_str()),
            "{name}.wasm is not in corpus.json"
        );
    }
}
