//! Shared helpers: one runtime per test binary (compiled modules are cached by sha256, so
//! the embedded module is compiled once), WAT modules by name.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sidekill::{Config, Policy, PolicyStore, Runtime};

/// Asserts that less than `limit` has passed since `started`, and says how long it took: the
/// bound a test sets on work that must not wait (a refusal, a deadline, a closed client).
#[track_caller]
pub fn assert_within(started: Instant, limit: Duration) {
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, more than {limit:?}");
}

/// Runs `during` while `threads` threads each call `each` with the store's current policy, over
/// and over: the swap tests' "under load". The threads stop when `during` returns or panics (a
/// failed assertion in it must fail the test, not leave it waiting on threads that never end),
/// and are joined before this returns; a panic in one of them is this function's.
pub fn under_load<T>(
    store: &PolicyStore,
    threads: usize,
    each: impl Fn(&Policy) + Sync,
    during: impl FnOnce() -> T,
) -> T {
    /// Tells the threads to stop when dropped, on a return or a panic alike.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    each(&store.current());
                }
            });
        }
        let _stop = Stop(&stop);
        during()
    })
}

/// The runtime every test shares.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Config::default()).expect("runtime"))
}

/// `host/tests/modules/<name>.wat`, compiled to a binary module.
pub fn wat(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/modules")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The embedded module with a custom section appended: the same code, another sha256.
pub fn embedded_variant(tag: &str) -> Vec<u8> {
    let mut bytes = sidekill::embedded::BYTES.to_vec();
    let name = b"sidekill-test";
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u32);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    leb128(&mut bytes, payload.len() as u32);
    bytes.extend_from_slice(&payload);
    bytes
}

fn leb128(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A small batch pod with an istio sidecar, as a request envelope. `restartPolicy: Never`:
/// without it the pod is long-running and its plan stops nothing.
pub const ISTIO_POD: &[u8] = br#"{"object": {"kind": "Pod", "metadata": {"name": "pi",
  "annotations": {"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
  "spec": {"restartPolicy": "Never", "containers": [
    {"name": "pi", "image": "perl"},
    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}}}"#;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// `sidekill web` with `args` after `web --port 0`, in a process of its own, and the
/// `host:port` it serves on (read from the URL it prints first).
pub fn start_web(args: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args(["web", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    (child, address)
}

/// A canary-aware module (issue 17): it answers each canary request of
/// [`sidekill::canary::CANARIES`] with the bytes `real` answers it with (compared byte for
/// byte with the request), `policy_info` and `matrix` as `real` does, and any other request
/// with `hostile` (a plan answer's JSON). Built as WAT at test time, so the canned answers
/// are always the current embedded module's.
pub fn canary_aware(real: &sidekill::Policy, hostile: &str) -> Vec<u8> {
    use sidekill_policy::Call;
    use std::fmt::Write as _;
    // Data segments from 64 KiB on; the request buffer after them.
    let mut at: usize = 1 << 16;
    let mut data = String::new();
    let mut segment = |bytes: &[u8]| -> (usize, usize) {
        let start = at;
        let mut text = String::with_capacity(bytes.len() * 3);
        for b in bytes {
            let _ = write!(text, "\\{b:02x}");
        }
        let _ = writeln!(data, "  (data (i32.const {start}) \"{text}\")");
        at += bytes.len().next_multiple_of(8);
        (start, bytes.len())
    };
    let answer = |call, request: &[u8]| real.call(call, request).expect("the real module answers");
    let info = segment(&answer(Call::Info, b""));
    let matrix = segment(&answer(Call::Matrix, b""));
    let hostile = segment(hostile.as_bytes());
    // One `if` per canary of a call: request equal -> its real answer.
    let mut plan_ifs = String::new();
    let mut classify_ifs = String::new();
    for canary in &sidekill::canary::CANARIES {
        let ifs = match canary.call {
            Call::Plan => &mut plan_ifs,
            Call::Classify => &mut classify_ifs,
            _ => continue,
        };
        let request = segment(canary.request.as_bytes());
        let reply = segment(&answer(canary.call, canary.request.as_bytes()));
        let _ = writeln!(
            ifs,
            "    (if (call $eq (local.get $ptr) (local.get $len) (i32.const {}) (i32.const {}))
      (then (return (call $answer (i32.const {}) (i32.const {})))))",
            request.0, request.1, reply.0, reply.1
        );
    }
    let buffer = at.next_multiple_of(1 << 16);
    let pages = buffer / (1 << 16) + 16; // 1 MiB for the request
    let wat = format!(
        "(module
  (memory (export \"memory\") {pages})
{data}
  (global $len (mut i32) (i32.const 0))
  (func $answer (param $at i32) (param $n i32) (result i32)
    (global.set $len (local.get $n))
    (local.get $at))
  ;; Whether the n bytes at $a equal the m bytes at $b.
  (func $eq (param $a i32) (param $n i32) (param $b i32) (param $m i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $n) (local.get $m)) (then (return (i32.const 0))))
    (block $no
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne
          (i32.load8_u (i32.add (local.get $a) (local.get $i)))
          (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export \"sidekill_abi_major\") (result i32) i32.const 1)
  (func (export \"sidekill_abi_minor\") (result i32) i32.const {minor})
  (func (export \"sidekill_alloc\") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 1048576)) (then (return (i32.const 0))))
    (i32.const {buffer}))
  (func (export \"sidekill_free\") (param i32 i32))
  (func (export \"sidekill_reset\"))
  (func (export \"sidekill_result_len\") (result i32) global.get $len)
  (func (export \"sidekill_policy_info\") (result i32)
    (call $answer (i32.const {}) (i32.const {})))
  (func (export \"sidekill_matrix\") (result i32)
    (call $answer (i32.const {}) (i32.const {})))
  (func (export \"sidekill_plan\") (param $ptr i32) (param $len i32) (result i32)
{plan_ifs}    (call $answer (i32.const {}) (i32.const {})))
  (func (export \"sidekill_classify\") (param $ptr i32) (param $len i32) (result i32)
{classify_ifs}    (call $answer (i32.const {}) (i32.const {})))
)",
        info.0,
        info.1,
        matrix.0,
        matrix.1,
        hostile.0,
        hostile.1,
        hostile.0,
        hostile.1,
        minor = real.abi().minor,
    );
    wat::parse_str(&wat).expect("the generated WAT parses")
}

/// The real-world injector outputs, read in place (never copied into the project):
/// `$SIDEKILL_FIXTURES`, else `../shared/fixtures/real-world` beside the clone.
pub fn real_world_fixtures() -> PathBuf {
    std::env::var_os("SIDEKILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/fixtures/real-world"))
}

/// The steps a container's record (`sidekill.dev/done-<container>`) names, as their indices
/// (`"[0,1,2]"`): entries are `"<index>:<id>"` (exec/records.rs), or bare indices.
pub fn recorded(
    annotations: &std::collections::BTreeMap<String, String>,
    container: &str,
) -> Option<String> {
    let text = annotations.get(&sidekill::exec::done_key(container))?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(text).expect("a JSON list");
    let indices: Vec<String> = entries
        .iter()
        .map(|e| match e {
            serde_json::Value::String(s) => s.split(':').next().unwrap_or_default().to_owned(),
            other => other.to_string(),
        })
        .collect();
    Some(format!("[{}]", indices.join(",")))
}

/// What the executor reports of the module's answer (a step, the prediction, a diagnostic), as
/// the JSON `sidekill stop --format json` prints: what a test reads it as.
pub fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("JSON")
}
