//! One loaded policy module and the calls into it.
//!
//! Every call runs in a fresh [`Store`] instantiated from a reused [`InstancePre`], from
//! the module's pristine state (its memory is a copy-on-write image of the data segments,
//! in a pooled slot): no state survives from one call to the next, so one pod's request
//! can never appear in the next pod's answer, and a module cannot count its calls to pass
//! the canaries and turn hostile afterwards. `sidekill_reset` is never called: the host
//! does not rely on the module to forget. A call that fails (deadline, memory limit,
//! trap, a lying `sidekill_result_len`) only loses its own store, and calls on the same
//! [`Policy`] run in parallel from any number of threads.
//!
//! The protocol is the raw ABI of `docs/ABI.md`: `p = sidekill_alloc(n)`, write the request
//! at `p`, `r = sidekill_plan(p, n)`, copy `memory[r .. r + sidekill_result_len()]` out.

use serde_json::Value;
use sidekill_policy::Call;
use wasmtime::{InstancePre, Linker, Module, ModuleExport};

use crate::digest::Sha256;
use crate::error::{boxed, Error, Result};
use crate::error::{AnswerError, CallError, LoadError};
use crate::runtime::{check_magic, Runtime, Sandbox};

mod answer;
mod inspect;
mod session;

pub use answer::{
    check_answer, unwrap_envelope, AnswerBudget, ANSWER_BUDGET, ANSWER_DEPTH, ANSWER_VALUES,
};
use inspect::check_exports;
pub use inspect::{describe, exports, imports, inspect, Inspection};

/// The ABI major version this host speaks.
pub const ABI_MAJOR: i32 = 1;

/// The exports the raw ABI requires, with their types as [`describe`] prints them: `docs/ABI.md`'s
/// table ([`crate::abi::EXPORTS`]), the one list the page's check is generated from too.
pub use crate::abi::EXPORTS as ABI_EXPORTS;

/// The policy's identity, from `sidekill_policy_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The policy's name.
    pub name: String,
    /// The policy's version.
    pub version: String,
    /// The calls and behaviours it supports.
    pub features: Vec<String>,
    /// The hash of its built-in presets.
    pub presets_hash: String,
    /// Its command catalogue (`commands`, ABI 1.4): the argv templates its plans may contain
    /// besides a pod's own kill-cmd annotation ([`sidekill_policy::catalogue`]). The executor
    /// runs no other argv. Empty for an older module: then only annotations run.
    pub commands: Vec<Vec<String>>,
}

/// Bounds on the catalogue a module may publish: it is read once per load, but it is the
/// module's data.
const MAX_COMMANDS: usize = 256;
const MAX_COMMAND_ARGS: usize = 32;
const MAX_COMMAND_ARG_BYTES: usize = 256;

/// The ABI version a module reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    /// `sidekill_abi_major()`.
    pub major: i32,
    /// `sidekill_abi_minor()`.
    pub minor: i32,
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Handles to the ABI's exports, resolved once per module.
struct Exports {
    memory: ModuleExport,
    abi_major: ModuleExport,
    abi_minor: ModuleExport,
    alloc: ModuleExport,
    result_len: ModuleExport,
    plan: ModuleExport,
    classify: ModuleExport,
    matrix: ModuleExport,
    info: ModuleExport,
}

/// A loaded, ABI-checked policy module, ready to be called.
pub struct Policy {
    runtime: Runtime,
    module: Module,
    pre: InstancePre<Sandbox>,
    exports: Exports,
    sha256: Sha256,
    size: usize,
    abi: AbiVersion,
    info: PolicyInfo,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("sha256", &self.sha256)
            .field("abi", &self.abi)
            .finish_non_exhaustive()
    }
}

/// The export a call runs.
pub fn export_name(call: Call) -> &'static str {
    match call {
        Call::Plan => "sidekill_plan",
        Call::Classify => "sidekill_classify",
        Call::Matrix => "sidekill_matrix",
        Call::Info => "sidekill_policy_info",
    }
}

impl Runtime {
    /// Loads a module: checks it is WebAssembly, compiles it (or takes it from the cache),
    /// refuses imports, checks the ABI exports, instantiates it once to read its ABI
    /// version and identity. The self-test on canary requests is separate
    /// ([`Policy::self_test`]); the [`PolicyStore`](crate::PolicyStore) runs both.
    ///
    /// # Errors
    /// [`LoadError::Empty`], [`LoadError::NotWasm`], [`LoadError::Compile`], [`LoadError::Imports`],
    /// [`LoadError::MissingExport`], [`LoadError::ExportType`], [`LoadError::AbiVersion`], or a call
    /// error from instantiation or the version calls ([`CallError::StartDeadline`],
    /// [`CallError::MemoryLimit`], [`CallError::Trap`], ...).
    pub fn load(&self, bytes: &[u8]) -> Result<Policy> {
        Policy::load(self.clone(), bytes)
    }
}

impl Policy {
    pub(crate) fn load(runtime: Runtime, bytes: &[u8]) -> Result<Policy> {
        check_magic(bytes)?;
        let sha256 = Sha256::of(bytes);
        let module = runtime.compile(bytes, &sha256)?;
        let imports = imports(&module);
        if !imports.is_empty() {
            return Err(Error::Load(LoadError::Imports { imports }));
        }
        check_exports(&module)?;
        // An initial memory over the limit is refused here, by the same error a
        // `memory.grow` past it gets (the pooling allocator would refuse it later, less
        // clearly).
        if let Some(wasmtime::ExternType::Memory(memory)) = module.get_export("memory") {
            let wanted = memory.minimum().saturating_mul(65_536);
            let limit = runtime.limits().memory;
            if wanted > u64::try_from(limit).unwrap_or(u64::MAX) {
                return Err(Error::Call(CallError::MemoryLimit {
                    call: "instantiate",
                    wanted: usize::try_from(wanted).unwrap_or(usize::MAX),
                    limit,
                }));
            }
        }
        let export = |name: &'static str| {
            module
                .get_export_index(name)
                .ok_or(Error::Load(LoadError::MissingExport {
                    name,
                    expected: "an ABI export",
                }))
        };
        let exports = Exports {
            memory: export("memory")?,
            abi_major: export("sidekill_abi_major")?,
            abi_minor: export("sidekill_abi_minor")?,
            alloc: export("sidekill_alloc")?,
            result_len: export("sidekill_result_len")?,
            plan: export("sidekill_plan")?,
            classify: export("sidekill_classify")?,
            matrix: export("sidekill_matrix")?,
            info: export("sidekill_policy_info")?,
        };
        let pre = Linker::new(runtime.engine())
            .instantiate_pre(&module)
            .map_err(|e| {
                Error::Call(CallError::Wasm {
                    call: "instantiate",
                    source: boxed(e),
                })
            })?;
        let mut policy = Policy {
            runtime,
            module,
            pre,
            exports,
            sha256,
            size: bytes.len(),
            abi: AbiVersion { major: 0, minor: 0 },
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                features: Vec::new(),
                presets_hash: String::new(),
                commands: Vec::new(),
            },
        };
        policy.abi = policy.read_abi()?;
        if policy.abi.major != ABI_MAJOR {
            return Err(Error::Load(LoadError::AbiVersion {
                major: policy.abi.major,
                minor: policy.abi.minor,
                supported: ABI_MAJOR,
            }));
        }
        policy.info = parse_info(&policy.answer(Call::Info, b"")?)?;
        Ok(policy)
    }

    /// The SHA-256 of the module's bytes.
    pub fn sha256(&self) -> &Sha256 {
        &self.sha256
    }

    /// The module's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The ABI version the module reports.
    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// The policy's name, version, features and presets hash.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The compiled module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The runtime the policy runs in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Runs one call and returns the answer envelope's bytes as the module wrote them:
    /// `{"ok": ...}` or `{"error": {...}}`. `Matrix` and `Info` ignore `request`.
    ///
    /// The call runs in a fresh instance, from the module's pristine state, under the
    /// limits; the CPU-time budget starts before instantiation, so a module whose
    /// instantiation is slow pays for it from the call's budget.
    ///
    /// # Errors
    /// Any call error: [`CallError::Deadline`], [`CallError::StartDeadline`],
    /// [`CallError::MemoryLimit`], [`CallError::Trap`], [`CallError::AllocFailed`],
    /// [`CallError::ResultTooLarge`], [`CallError::ResultOutOfBounds`], [`CallError::Wasm`].
    pub fn call(&self, call: Call, request: &[u8]) -> Result<Vec<u8>> {
        let mut session = self.session()?;
        let name = export_name(call);
        let export = match call {
            Call::Plan => &self.exports.plan,
            Call::Classify => &self.exports.classify,
            Call::Matrix => &self.exports.matrix,
            Call::Info => &self.exports.info,
        };
        let ptr = match call {
            Call::Plan | Call::Classify => {
                let (ptr, len) = session.write_request(request)?;
                let func = session.func::<(i32, i32), i32>(export, name)?;
                session.run(name, |store| func.call(store, (ptr, len)))?
            }
            Call::Matrix | Call::Info => {
                let func = session.func::<(), i32>(export, name)?;
                session.run(name, |store| func.call(store, ()))?
            }
        };
        session.read_answer(name, ptr, self.runtime.limits().max_answer)
    }

    /// Runs one call and unwraps the envelope: the value under `ok`.
    ///
    /// # Errors
    /// A call error as for [`Policy::call`]; [`AnswerError::BadAnswer`] when the answer is not a
    /// JSON envelope; [`AnswerError::Policy`] when the policy answered with an error envelope.
    pub fn answer(&self, call: Call, request: &[u8]) -> Result<Value> {
        let bytes = self.call(call, request)?;
        unwrap_envelope(export_name(call), &bytes)
    }

    /// Plans a request envelope `{"object": ..., "facts": ...}`; the value under `ok`.
    ///
    /// # Errors
    /// As [`Policy::answer`].
    pub fn plan(&self, request: &[u8]) -> Result<Value> {
        self.answer(Call::Plan, request)
    }

    /// The support matrix.
    ///
    /// # Errors
    /// As [`Policy::answer`].
    pub fn matrix(&self) -> Result<Value> {
        self.answer(Call::Matrix, b"")
    }

    /// Instantiates the module in a fresh store and reads its ABI version: the fixed cost
    /// of a call, as the benchmarks measure it.
    ///
    /// # Errors
    /// A call error, as for [`Policy::call`].
    pub fn read_abi(&self) -> Result<AbiVersion> {
        let mut session = self.session()?;
        let major = session.func::<(), i32>(&self.exports.abi_major, "sidekill_abi_major")?;
        let minor = session.func::<(), i32>(&self.exports.abi_minor, "sidekill_abi_minor")?;
        let major = session.run("sidekill_abi_major", |store| major.call(store, ()))?;
        let minor = session.run("sidekill_abi_minor", |store| minor.call(store, ()))?;
        Ok(AbiVersion { major, minor })
    }
}

fn parse_info(value: &Value) -> Result<PolicyInfo> {
    let bad = |reason: &str| {
        Error::Answer(AnswerError::BadAnswer {
            call: "sidekill_policy_info",
            reason: reason.into(),
        })
    };
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| bad(&format!("`ok.{key}` is not a string")))
    };
    let features = value
        .get("features")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut commands = Vec::new();
    if let Some(list) = value.get("commands") {
        let list = list
            .as_array()
            .filter(|l| l.len() <= MAX_COMMANDS)
            .ok_or_else(|| {
                bad(&format!(
                    "`ok.commands` is not an array of at most {MAX_COMMANDS} commands"
                ))
            })?;
        for command in list {
            let argv: Option<Vec<String>> = command
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= MAX_COMMAND_ARGS)
                .and_then(|a| {
                    a.iter()
                        .map(|e| {
                            e.as_str()
                                .filter(|s| s.len() <= MAX_COMMAND_ARG_BYTES)
                                .map(String::from)
                        })
                        .collect()
                });
            commands.push(argv.ok_or_else(|| {
                bad(&format!(
                    "`ok.commands` holds {command}, not an array of 1 to {MAX_COMMAND_ARGS} strings of at most {MAX_COMMAND_ARG_BYTES} bytes"
                ))
            })?);
        }
    }
    Ok(PolicyInfo {
        name: text("name")?,
        version: text("version")?,
        commands,
        features,
        presets_hash: value
            .get("presetsHash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}
