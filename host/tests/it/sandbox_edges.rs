//! Issue 17: the policy module is trusted no further than the sandbox. Each test pins one
//! finding of the security review and failed before its fix (see the commit messages):
//! signatures, the compiled-module cache, pristine state per call, compile bounds, the
//! cost of an answer, the module size cap.

use std::time::{Duration, Instant};

use sidekill::signature::{decode_signature, SigningKey, Trust};
use sidekill::{embedded, Config, Policy, PolicyStore, Runtime, Sha256};
use sidekill_policy::Call;

use crate::common::{assert_within, embedded_variant, runtime, under_load, wat, ISTIO_POD};

/// A module of an exported memory and `items` (functions, globals), in text: every module
/// built here has that frame.
fn module_of(items: &str) -> Vec<u8> {
    wat::parse_str(format!("(module (memory (export \"memory\") 1)\n{items})")).expect("wat")
}

/// A module of `functions` empty functions besides the ABI: the "250k empty functions"
/// compile bomb (1.43 GB and 141 s to compile before).
fn many_functions(functions: usize) -> Vec<u8> {
    module_of(&"(func)\n".repeat(functions))
}

/// `locals` i64 locals all live across `loops` nested-in-sequence loops: the "2,000 locals
/// live across 2,000 loops" compile bomb (42 KB, 101 s to compile before).
fn locals_across_loops(locals: usize, loops: usize) -> Vec<u8> {
    module_of(&function_text("(export \"f\") ", locals, loops))
}

/// `count` globals: the "900k globals" module whose instantiation cost ~380 ms outside
/// the deadline.
fn many_globals(count: usize) -> Vec<u8> {
    module_of(&"(global (mut i32) (i32.const 0))".repeat(count))
}

#[test]
fn compile_bombs_are_refused_fast_while_the_live_version_keeps_serving() {
    let store = PolicyStore::new(runtime().clone(), None, embedded::BYTES, embedded::ORIGIN)
        .expect("store");
    for (name, bytes) in [
        ("250k empty functions", many_functions(250_000)),
        (
            "2000 locals across 2000 loops",
            locals_across_loops(2_000, 2_000),
        ),
        ("900k globals", many_globals(900_000)),
    ] {
        let started = Instant::now();
        let err = store.propose(&bytes, name).expect_err(name);
        let took = started.elapsed();
        eprintln!("{name} ({} bytes): refused in {took:?}: {err}", bytes.len());
        assert_eq!(err.name(), "module_limit", "{name}: {}", err.report());
        // One parse, no code generation: well under a second even on a loaded machine
        // (before: 101 s to 5.6 min).
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        assert!(store.current().plan(ISTIO_POD).is_ok());
    }
}

#[test]
fn a_module_file_over_16_mib_is_refused_without_being_loaded() {
    let mut bytes = embedded_variant("big");
    bytes.extend(std::iter::repeat_n(0u8, 17 << 20));
    let err = runtime().load(&bytes).expect_err("too big");
    assert_eq!(err.name(), "module_limit", "{}", err.report());
    assert!(err.to_string().contains("module_bytes"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.wasm");
    std::fs::write(&path, &bytes).expect("write");
    let err = sidekill::limits::read_module(&path).expect_err("too big");
    assert_eq!(err.name(), "module_limit");
}

#[test]
fn one_calls_request_never_reaches_the_next_answer() {
    let policy = runtime().load(&wat("leak_between_calls")).expect("loads");
    let secret = br#"{"env": "DB_PASSWORD=hunter2"}"#;
    policy.call(Call::Plan, secret).expect("first pod");
    for _ in 0..8 {
        let answer = policy
            .call(Call::Plan, br#"{"env": "x"}"#)
            .expect("next pod");
        assert!(
            !String::from_utf8_lossy(&answer).contains("hunter2"),
            "the previous pod's request leaked: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// Issue 16: a call's memory slot is reset in place when it is reused (the pages it wrote
/// are found with PAGEMAP_SCAN and zeroed or copied back from the module's image, instead of
/// being unmapped). What a call wrote in its data image's page and in memory it grew must
/// still be gone on the next call, on the same slot.
#[test]
fn pages_reset_in_place_keep_nothing_of_the_last_call() {
    let module = wat::parse_str(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"ok\":{\"name\":\"marks\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
  (data (i32.const 1536) "{\"ok\":\"clean\"}")
  (data (i32.const 1600) "{\"ok\":\"leaked\"}")
  (global $len (mut i32) (i32.const 0))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 0)
  (func (export "sidekill_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset"))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32) (global.set $len (i32.const 73)) (i32.const 1024))
  (func (export "sidekill_matrix") (result i32) (global.set $len (i32.const 73)) (i32.const 1024))
  (func $plan (result i32)
    ;; Two more pages, then look for the marks a previous call left: one beside the data
    ;; image, one in the grown memory.
    (drop (memory.grow (i32.const 2)))
    (if (i32.or (i32.load (i32.const 2048)) (i32.load (i32.const 131072)))
      (then (global.set $len (i32.const 15)) (return (i32.const 1600))))
    (i32.store (i32.const 2048) (i32.const 0x5ec2e7))
    (i32.store (i32.const 131072) (i32.const 0x5ec2e7))
    (global.set $len (i32.const 14))
    (i32.const 1536))
  (func (export "sidekill_plan") (param i32 i32) (result i32) (call $plan))
  (func (export "sidekill_classify") (param i32 i32) (result i32) (call $plan))
)"#,
    )
    .expect("valid wat");
    let policy = runtime().load(&module).expect("loads");
    assert_every_call_answers(&policy, "clean");
}

#[test]
fn a_time_bomb_sees_every_call_as_its_first() {
    let policy = runtime().load(&wat("time_bomb")).expect("loads");
    assert_every_call_answers(&policy, "benign");
}

/// Plans 20 times and checks that every answer is `expected`: what one call leaves behind
/// must not reach the next.
fn assert_every_call_answers(policy: &Policy, expected: &str) {
    for call in 0..20 {
        let answer = policy.answer(Call::Plan, ISTIO_POD).expect("answers");
        assert_eq!(answer, expected, "call {call}");
    }
}

#[test]
fn a_looping_reset_costs_nothing_because_it_is_never_called() {
    let policy = runtime().load(&wat("reset_loop")).expect("loads");
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            policy.answer(Call::Plan, ISTIO_POD).expect("answers"),
            "answer"
        );
    }
    // Before, each call then ran the looping reset to its 100 ms deadline.
    assert_within(started, Duration::from_millis(400));
}

#[test]
fn a_16_mib_answer_is_refused_after_one_pass() {
    let policy = runtime().load(&wat("huge_answer")).expect("loads");
    let rss = || -> u64 {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .map_or(0, |pages: u64| pages * 4096)
    };
    let before = rss();
    let started = Instant::now();
    let err = policy.plan(ISTIO_POD).expect_err("too many values");
    let (took, grew) = (started.elapsed(), rss().saturating_sub(before));
    eprintln!("16 MiB answer refused in {took:?}, RSS +{} MiB", grew >> 20);
    assert_eq!(err.name(), "answer_too_complex", "{}", err.report());
    // The answer's own 16 MiB copy, never the ~700 MB of a parsed tree.
    assert!(grew < 200 << 20, "RSS grew {grew} bytes");
}

fn signed(key: &SigningKey, bytes: &[u8]) -> Vec<u8> {
    decode_signature(key.sign(bytes).expect("sign").as_bytes(), "sig").expect("base64")
}

#[test]
fn unsigned_and_badly_signed_modules_are_refused_and_signed_ones_swap_in() {
    let (key, _) = SigningKey::generate().expect("key");
    let (other, _) = SigningKey::generate().expect("key");
    let trust = Trust {
        keys: vec![key.public().clone()],
        ..Trust::default()
    };
    // The embedded module is trusted as part of the binary.
    let store = PolicyStore::with_trust(
        runtime().clone(),
        trust,
        embedded::BYTES,
        None,
        embedded::ORIGIN,
    )
    .expect("embedded");
    let variant = embedded_variant("signed");
    let err = store.propose(&variant, "unsigned").expect_err("unsigned");
    assert_eq!(err.name(), "unsigned", "{}", err.report());
    let err = store
        .propose_signed(&variant, Some(&signed(&other, &variant)), "evil key")
        .expect_err("bad signature");
    assert_eq!(err.name(), "bad_signature", "{}", err.report());
    // A signature of other bytes does not carry over.
    let err = store
        .propose_signed(&variant, Some(&signed(&key, embedded::BYTES)), "replayed")
        .expect_err("bad signature");
    assert_eq!(err.name(), "bad_signature");
    assert_eq!(*store.current().sha256(), embedded::sha256());
    store
        .propose_signed(&variant, Some(&signed(&key, &variant)), "signed")
        .expect("signed swaps in");
    assert_eq!(*store.current().sha256(), Sha256::of(&variant));
}

#[test]
fn several_pins_work_with_hot_swap_and_the_embedded_module() {
    let (a, b) = (embedded_variant("a"), embedded_variant("b"));
    let store = PolicyStore::with_trust(
        runtime().clone(),
        Trust {
            pins: vec![Sha256::of(&a), Sha256::of(&b)],
            ..Trust::default()
        },
        embedded::BYTES,
        None,
        embedded::ORIGIN,
    )
    .expect("the embedded module starts under any pin");
    store.propose(&a, "a").expect("pinned a");
    store.propose(&b, "b").expect("pinned b");
    let err = store
        .propose(&embedded_variant("c"), "c")
        .expect_err("not pinned");
    assert_eq!(err.name(), "pin", "{}", err.report());
}

#[test]
fn a_renamed_cache_entry_never_runs_under_another_modules_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let config = Config {
        cache_dir: Some(cache.clone()),
        ..Config::default()
    };
    let (good, evil) = (wat("mock"), wat("evil_mock"));
    let first = Runtime::new(config.clone()).expect("runtime");
    first.load(&good).expect("good");
    first.load(&evil).expect("evil");
    let entry = |bytes: &[u8]| {
        let prefix = Sha256::of(bytes).to_string();
        std::fs::read_dir(&cache)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .expect("an entry")
    };
    // The attack of the review: evil's compiled code under good's name.
    std::fs::copy(entry(&evil), entry(&good)).expect("swap");
    let policy = Runtime::new(config)
        .expect("runtime")
        .load(&good)
        .expect("loads");
    assert_eq!(
        policy.info().name,
        "mock",
        "evil's code ran under mock's sha256"
    );
}

#[cfg(unix)]
#[test]
fn a_cache_dir_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("shared");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = Runtime::new(Config {
        cache_dir: Some(cache.clone()),
        ..Config::default()
    })
    .expect_err("refused");
    assert_eq!(err.name(), "unsafe_cache", "{}", err.report());
    assert!(
        err.to_string().contains("writable by group or others"),
        "{err}"
    );
    // A private one is used, and an entry made writable by others is ignored.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = Config {
        cache_dir: Some(cache.clone()),
        ..Config::default()
    };
    Runtime::new(config.clone())
        .expect("runtime")
        .load(&wat("mock"))
        .expect("loads");
    let entry = std::fs::read_dir(&cache)
        .expect("dir")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let policy = Runtime::new(config)
        .expect("runtime")
        .load(&wat("mock"))
        .expect("recompiles");
    assert_eq!(policy.info().name, "mock");
}

/// `functions` functions of `locals` i64 locals live across `loops` loops each: under every
/// limit checked before compiling (locals x blocks stays below 1,000,000 per function), yet
/// seconds of Cranelift per function.
fn slow_to_compile(functions: usize, locals: usize, loops: usize) -> Vec<u8> {
    module_of(&function_text("", locals, loops).repeat(functions))
}

/// A function (`export`, such as `(export "f") `, or none) whose `locals` i64 locals are all
/// live across `loops` loops in sequence: what makes Cranelift's register allocation slow.
fn function_text(export: &str, locals: usize, loops: usize) -> String {
    let mut text = format!("(func {export}(result i64)\n");
    for _ in 0..locals {
        text.push_str("(local i64)");
    }
    for i in 0..loops {
        let l = i % locals;
        text.push_str(&format!(
            "(loop $l{i} (local.set {l} (i64.add (local.get {l}) (i64.const 1))) (br_if $l{i} (i64.lt_u (local.get {l}) (i64.const 1))))\n"
        ));
    }
    text.push_str("(i64.const 0)");
    for l in 0..locals {
        text.push_str(&format!("(i64.add (local.get {l}))"));
    }
    text.push_str(")\n");
    text
}

/// A runtime that compiles in `sidekill __compile` children under `cpu`, sharing `cache`.
fn child_runtime(cache: &std::path::Path, cpu: Duration, wall: Duration) -> Runtime {
    Runtime::new(Config {
        cache_dir: Some(cache.to_path_buf()),
        child_compiler: Some(sidekill::runtime::ChildCompiler {
            cpu,
            wall,
            ..sidekill::runtime::ChildCompiler::new(env!("CARGO_BIN_EXE_sidekill").into())
        }),
        ..Config::default()
    })
    .expect("runtime")
}

#[test]
fn a_module_compiled_in_a_child_process_runs_bound_to_its_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let runtime = child_runtime(&cache, Duration::from_secs(30), Duration::from_secs(120));
    let policy = runtime.load(&wat("mock")).expect("compiled by the child");
    assert_eq!(policy.info().name, "mock");
    // The child's code is what the disk cache keeps: a later process reads it back.
    let again = child_runtime(&cache, Duration::from_secs(1), Duration::from_secs(5))
        .load(&wat("mock"))
        .expect("from the cache");
    assert_eq!(again.sha256(), policy.sha256());
}

/// Issue 17: "the compile bombs refused within a bounded time and memory while a live
/// controller keeps serving". A module every static limit accepts but that needs more CPU
/// to compile than its child may use is refused after about that CPU time, and the live
/// version answers throughout. Before, it compiled on the live process's own CPU.
#[test]
fn a_compile_over_the_childs_cpu_limit_is_refused_while_the_live_version_keeps_serving() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let bomb = slow_to_compile(16, 450, 2_000);
    sidekill::limits::check(&bomb, &sidekill::limits::ModuleLimits::default(), 64 << 20)
        .expect("the static limits let it through");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    // The live module is compiled once, in this process, into the shared cache: the child
    // runtime's 1 s of CPU is for the bomb alone.
    Runtime::new(Config {
        cache_dir: Some(cache.clone()),
        ..Config::default()
    })
    .expect("runtime")
    .load(embedded::BYTES)
    .expect("embedded");
    let runtime = child_runtime(&cache, Duration::from_secs(1), Duration::from_secs(30));
    let store = PolicyStore::new(runtime, None, embedded::BYTES, embedded::ORIGIN).expect("store");
    let (served, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let serve = |policy: &Policy| {
        match policy.plan(ISTIO_POD) {
            Ok(_) => served.fetch_add(1, Ordering::Relaxed),
            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
        };
    };
    let (err, took) = under_load(&store, 1, serve, || {
        let started = Instant::now();
        let err = store.propose(&bomb, "bomb").expect_err("refused");
        (err, started.elapsed())
    });
    eprintln!(
        "bomb ({} bytes) refused in {took:?}: {}; {} plans served meanwhile",
        bomb.len(),
        err.report(),
        served.load(Ordering::Relaxed)
    );
    assert_eq!(err.name(), "compile_limit", "{}", err.report());
    assert!(err.to_string().contains("CPU time"), "{err}");
    // 1 s of the child's CPU, on a loaded machine, well inside the 30 s wall bound.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(served.load(Ordering::Relaxed) > 0);
    assert_eq!(store.current().sha256(), &Sha256::of(embedded::BYTES));
}
