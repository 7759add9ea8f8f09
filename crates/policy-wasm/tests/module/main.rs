//! Loads the real raw module in wasmtime and holds it to `docs/ABI.md`: what it imports and
//! exports, that it answers every vector with the native core's bytes, and that bad input
//! gets an error envelope, never a trap, with the instance still usable afterwards.
//!
//! The module is `$SIDEKILL_WASM`, or `dist/raw/sidekill_policy.wasm` from `scripts/build-wasm`:
//! the tests check the artifact loaders ship, not a build of their own.

mod bad_input;
mod exports;
mod vectors;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use sidekill_policy::Call;
use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

/// Where the module is: `$SIDEKILL_WASM`, else `dist/raw/sidekill_policy.wasm` in the repository.
fn module_path() -> PathBuf {
    std::env::var_os("SIDEKILL_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dist/raw/sidekill_policy.wasm")
        })
}

/// The module's bytes; panics with what to do when it has not been built.
fn module_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = module_path();
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the policy module {}: {e}\n\
                 Build it first with `scripts/build-wasm` (or point SIDEKILL_WASM at a module).",
                path.display()
            )
        })
    })
}

/// One engine and compiled module for the whole test binary: compiling is the slow part.
fn compiled() -> &'static (Engine, Module) {
    static COMPILED: OnceLock<(Engine, Module)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let engine = Engine::default();
        let module = Module::from_binary(&engine, module_bytes())
            .unwrap_or_else(|e| panic!("{}: {e:?}", module_path().display()));
        (engine, module)
    })
}

/// One instance of the module, driven through the raw ABI as a loader drives it.
pub struct Policy {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    reset: TypedFunc<(), ()>,
    result_len: TypedFunc<(), u32>,
    plan: TypedFunc<(u32, u32), u32>,
    classify: TypedFunc<(u32, u32), u32>,
    matrix: TypedFunc<(), u32>,
    info: TypedFunc<(), u32>,
}

impl Policy {
    /// A fresh instance, with an empty import object.
    #[allow(clippy::new_without_default)] // Each instance is a deliberate, costly choice.
    pub fn new() -> Policy {
        let (engine, module) = compiled();
        let mut store = Store::new(engine, ());
        let instance = Instance::new(&mut store, module, &[]).expect("instantiate");
        let memory = instance
            .get_memory(&mut store, "memory")
            .expect("export `memory`");
        macro_rules! func {
            ($name:literal) => {
                instance.get_typed_func(&mut store, $name).expect(concat!(
                    "export `",
                    $name,
                    "` with its ABI signature"
                ))
            };
        }
        Policy {
            alloc: func!("sidekill_alloc"),
            free: func!("sidekill_free"),
            reset: func!("sidekill_reset"),
            result_len: func!("sidekill_result_len"),
            plan: func!("sidekill_plan"),
            classify: func!("sidekill_classify"),
            matrix: func!("sidekill_matrix"),
            info: func!("sidekill_policy_info"),
            memory,
            store,
        }
    }

    /// The whole protocol: alloc, write, call, copy the answer out, free.
    pub fn call(&mut self, call: Call, request: &[u8]) -> Vec<u8> {
        match call {
            Call::Plan | Call::Classify => {
                let len = u32::try_from(request.len()).expect("request under 4 GiB");
                let ptr = self.alloc(len);
                assert_ne!(ptr, 0, "sidekill_alloc({len}) failed");
                self.write(ptr, request);
                let answer = self.call_at(call, ptr, len).expect("no trap");
                self.free(ptr, len);
                answer
            }
            Call::Matrix | Call::Info => self.call_at(call, 0, 0).expect("no trap"),
        }
    }

    /// `sidekill_alloc(len)`.
    pub fn alloc(&mut self, len: u32) -> u32 {
        self.alloc.call(&mut self.store, len).expect("no trap")
    }

    /// `sidekill_free(ptr, len)`.
    pub fn free(&mut self, ptr: u32, len: u32) {
        self.free
            .call(&mut self.store, (ptr, len))
            .expect("no trap");
    }

    /// `sidekill_reset()`.
    pub fn reset(&mut self) {
        self.reset.call(&mut self.store, ()).expect("no trap");
    }

    /// Writes bytes at an address, as a host does into a buffer from `sidekill_alloc`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) {
        self.memory
            .write(&mut self.store, ptr as usize, bytes)
            .expect("write inside memory");
    }

    /// Calls one export on `[ptr, ptr+len)` (ignored by matrix and info) and copies the
    /// answer out. A trap is the `Err`.
    pub fn call_at(&mut self, call: Call, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        let at = match call {
            Call::Plan => self.plan.call(&mut self.store, (ptr, len))?,
            Call::Classify => self.classify.call(&mut self.store, (ptr, len))?,
            Call::Matrix => self.matrix.call(&mut self.store, ())?,
            Call::Info => self.info.call(&mut self.store, ())?,
        };
        let len = self.result_len.call(&mut self.store, ())?;
        let mut answer = vec![0; len as usize];
        self.memory.read(&self.store, at as usize, &mut answer)?;
        Ok(answer)
    }

    /// The size of linear memory in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }
}

/// The answer as JSON; panics, with the text, when it is not JSON.
pub fn json(answer: &[u8]) -> Value {
    serde_json::from_slice(answer).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&answer[..answer.len().min(500)])
        )
    })
}

/// The error code of an error envelope; panics when the answer is not one.
pub fn error_code(answer: &[u8]) -> String {
    let envelope = json(answer);
    match envelope["error"]["code"].as_str() {
        Some(code) => code.to_owned(),
        None => panic!("expected an error envelope, got {}", short(answer)),
    }
}

/// The first 300 bytes of an answer, for failure messages.
pub fn short(answer: &[u8]) -> String {
    String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned()
}

/// A small request the core plans: a pod with an Istio sidecar.
pub const GOOD_REQUEST: &[u8] = br#"{"object": {"kind": "Pod", "metadata": {"name": "pi",
  "annotations": {"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
  "spec": {"containers": [{"name": "pi", "image": "perl"},
    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}]}}}"#;

/// Checks the instance still answers a good request exactly as the native core does.
pub fn assert_still_usable(policy: &mut Policy) {
    let answer = policy.call(Call::Plan, GOOD_REQUEST);
    assert_eq!(
        short(&answer),
        short(&sidekill_policy::call(Call::Plan, GOOD_REQUEST)),
        "the instance must answer a good request after bad input"
    );
    assert_eq!(answer, sidekill_policy::call(Call::Plan, GOOD_REQUEST));
}
