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
//! - `the_manifest_reader_never_panics_and_places_every_error` (issue 18): the YAML/JSON reader
//!   (`sidekill::input`) on texts seeded from the real-world manifests under
//!   `../shared/fixtures/real-world` (read in place, when present) and from `tests/vectors`
//!   (as JSON), mutated at the byte and token level (YAML's anchors, aliases, merge keys,
//!   tags, flow brackets, document markers, tabs, a cut, a duplicated line): an answer, never
//!   a panic; each error a syntax error at a line of the text; at most `MAX_DOCUMENTS`.
//! - `the_kill_cmd_parser_agrees_with_json_and_never_panics` (issue 18): Argo's kill-cmd
//!   annotation parser on the values of `tests/vectors`, mutated: accepted exactly when the
//!   value is a JSON array of non-empty strings within the size cap, round-trips, renders
//!   every argument.
//!
//! The last two run through a `TestRunner` so that they can print how many cases they ran.
//!
//! The executor's guard has its own target next to it (`exec::guard::tests::
//! check_step_never_panics_and_passes_only_known_steps`, 256 cases unless `PROPTEST_CASES`):
//! arbitrary JSON as a step and as an answer's subject, against a pod. `scripts/test` runs all
//! of them in its `cargo test` step, bounded by `PROPTEST_CASES`. Executions measured for issue
//! 17 (debug build, 2 cores under load): ABI 1,000 cases in 7.3 s, differential 1,000 in
//! 10.9 s (four calls each), guard 10,000 in 36.8 s; for issue 18, the manifest reader and
//! the kill-cmd parser 2,000 cases each in 15 s.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;
use sidekill::{embedded, Policy};
use sidekill_policy::Call;

use crate::common::{real_world_fixtures, repo_root, runtime};
use sidekill::error::AnswerError;

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
            Ok(_) | Err(sidekill::Error::Answer(AnswerError::Policy { .. })) => {}
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

/// The fuzz target's cut at 0 as a fixed case: an empty request is the policy's to answer
/// (`invalid_json`), as the native core does, not a buffer the host failed to pass
/// (`bad_pointer`, before the host passed an empty range of a one-byte buffer).
#[test]
fn an_empty_request_gets_the_native_answer() {
    for call in [Call::Plan, Call::Classify] {
        let wasm = policy().call(call, b"").expect("an answer");
        assert_eq!(
            String::from_utf8_lossy(&wasm),
            String::from_utf8_lossy(&sidekill_policy::call(call, b""))
        );
    }
}

/// The real-world manifests' texts ([`real_world_fixtures`]). Missing: the seeds are
/// `tests/vectors` only.
fn real_world_texts() -> Vec<String> {
    let root = real_world_fixtures();
    let mut texts = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if [".yaml", ".yml", ".injected", ".json"]
                .iter()
                .any(|x| name.ends_with(x))
            {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    texts.push(text);
                }
            }
        }
    }
    texts.sort();
    texts
}

/// Manifest texts to mutate: the real-world manifests and each vector's object as JSON.
fn manifest_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut texts = real_world_texts();
        texts.extend(seeds().iter().filter_map(|r| {
            r.get("object")
                .map(|o| serde_json::to_string_pretty(o).expect("json"))
        }));
        texts
    })
}

/// Kill-cmd annotation values found in `tests/vectors`, and a few shapes Argo's docs use.
fn kill_cmd_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        match v {
                            Value::String(s)
                                if k.starts_with("workflows.argoproj.io/kill-cmd-") =>
                            {
                                out.push(s.clone());
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = vec![
            r#"["sh", "-c", "kill -%d 1"]"#.to_owned(),
            r#"["/bin/kill", "-%d", "1"]"#.to_owned(),
            r#"["pilot-agent", "request", "POST", "quitquitquit"]"#.to_owned(),
        ];
        seeds().iter().for_each(|s| walk(s, &mut out));
        out.sort();
        out.dedup();
        out
    })
}

/// Pieces a mutation inserts: what YAML and JSON parsers find hardest.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!str ",
    "---\n",
    "...\n",
    "{",
    "}",
    "[",
    "]",
    "\t",
    "- ",
    "? ",
    ": ",
    "%YAML 1.2\n",
    "\"",
    "'",
    "\\u0000",
    "#",
    "|\n",
    ">-\n",
    "\n  ",
    ",",
    "null",
    "1e999",
    "-0",
    "%d",
    "%%",
    "%!",
    "\u{feff}",
    "\u{2028}",
];

/// One of `seeds`, mutated `mutations` times by [`mutate_text`] (each over at most `max_len`
/// bytes).
fn mutated(
    seeds: &[String],
    max_len: usize,
    mutations: std::ops::Range<usize>,
) -> impl Strategy<Value = String> + '_ {
    let mutation = (
        any::<u8>(),
        any::<usize>(),
        0..max_len,
        any::<usize>(),
        any::<u8>(),
    );
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation, mutations),
    )
        .prop_map(move |(seed, list)| {
            list.into_iter().fold(
                seed.get(seeds).clone(),
                |text, (op, at, len, token, byte)| mutate_text(&text, op, at, len, token, byte),
            )
        })
}

/// A text with one mutation: a token inserted, a span deleted, a byte replaced, the text
/// cut, or a line duplicated; positions are moved to a char boundary.
fn mutate_text(text: &str, op: u8, at: usize, len: usize, token: usize, byte: u8) -> String {
    let boundary = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let at = boundary(at % (text.len() + 1));
    let end = boundary(at + len);
    let mut out = String::with_capacity(text.len() + 16);
    match op % 5 {
        0 => {
            out.push_str(&text[..at]);
            out.push_str(TOKENS[token % TOKENS.len()]);
            out.push_str(&text[at..]);
        }
        1 => {
            out.push_str(&text[..at]);
            out.push_str(&text[end..]);
        }
        2 => {
            out.push_str(&text[..at]);
            out.push(char::from(byte & 0x7f));
            out.push_str(&text[end.max(boundary(at + 1))..]);
        }
        3 => out.push_str(&text[..at]),
        _ => {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let stop = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
            out.push_str(&text[..stop]);
            out.push_str(&text[start..stop]);
            out.push_str(&text[stop..]);
        }
    }
    out
}

fn runner() -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(config())
}

#[test]
fn the_manifest_reader_never_panics_and_places_every_error() {
    use sidekill_policy::yaml::MAX_DOCUMENTS;
    let seeds = manifest_seeds();
    assert!(seeds.len() > 50, "{} seeds", seeds.len());
    // The seeds themselves read cleanly.
    for text in seeds {
        let m = sidekill::input::parse_all("seed", text);
        assert!(m.errors.is_empty(), "{:?}\n{text}", m.errors);
        assert!(!m.documents.is_empty(), "{text}");
    }
    let runs = std::sync::atomic::AtomicU64::new(0);
    runner()
        .run(&mutated(seeds, 64, 1..4), |text| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let m = sidekill::input::parse_all("fuzz.yaml", &text);
            prop_assert!(m.documents.len() <= MAX_DOCUMENTS);
            let lines = text.lines().count() + 1;
            for (_, e) in &m.errors {
                match e {
                    sidekill::Error::Syntax {
                        line,
                        column,
                        message,
                        ..
                    } => {
                        prop_assert!(!message.is_empty(), "{e}");
                        prop_assert!(
                            (1..=lines).contains(line) && *column >= 1,
                            "{e} is not at a line of the {lines}-line text:\n{text}"
                        );
                    }
                    other => prop_assert!(false, "not a syntax error: {other}"),
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "the manifest reader: {} cases from {} seeds",
        runs.into_inner(),
        seeds.len()
    );
}

#[test]
fn the_kill_cmd_parser_agrees_with_json_and_never_panics() {
    use sidekill_policy::killcmd;
    let seeds = kill_cmd_seeds();
    assert!(seeds.len() > 5, "{seeds:?}");
    let runs = std::sync::atomic::AtomicU64::new(0);
    runner()
        .run(&mutated(seeds, 8, 0..4), |value| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let as_json = serde_json::from_str::<Vec<String>>(&value)
                .ok()
                .filter(|a| !a.is_empty() && a.iter().all(|s| !s.is_empty()))
                .filter(|_| value.len() <= killcmd::MAX_LEN);
            match killcmd::parse(&value) {
                Ok(argv) => {
                    prop_assert_eq!(Some(&argv), as_json.as_ref(), "accepted {}", value);
                    let again = serde_json::to_string(&argv).expect("json");
                    if again.len() <= killcmd::MAX_LEN {
                        prop_assert_eq!(killcmd::parse(&again).ok(), Some(argv.clone()));
                    }
                    for signal in [9u8, 15] {
                        let rendered = killcmd::render(&argv, signal);
                        prop_assert_eq!(rendered.len(), argv.len());
                        for (r, a) in rendered.iter().zip(&argv) {
                            if !a.contains('%') {
                                prop_assert_eq!(r, a);
                            }
                        }
                    }
                    let _ = killcmd::verb_problems(&argv);
                }
                Err(p) => {
                    prop_assert!(!p.detail.is_empty());
                    prop_assert!(as_json.is_none(), "refused {} ({})", value, p.detail);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "the kill-cmd parser: {} cases from {} seeds",
        runs.into_inner(),
        seeds.len()
    );
}
