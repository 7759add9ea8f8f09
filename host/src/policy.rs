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

use std::time::Duration;

use serde_json::Value;
use sidekill_policy::Call;
use wasmtime::{
    Extern, ExternType, Instance, InstancePre, Linker, Memory, Module, ModuleExport, Store, Trap,
    TypedFunc,
};

use crate::digest::Sha256;
use crate::error::{boxed, Error, Import, Result};
use crate::runtime::{check_magic, Clock, Runtime, Sandbox};

/// The ABI major version this host speaks.
pub const ABI_MAJOR: i32 = 1;

/// The exports the raw ABI requires, with their types as [`describe`] prints them.
pub const ABI_EXPORTS: [(&str, &str); 11] = [
    ("memory", "memory"),
    ("sidekill_abi_major", "func() -> i32"),
    ("sidekill_abi_minor", "func() -> i32"),
    ("sidekill_alloc", "func(i32) -> i32"),
    ("sidekill_free", "func(i32, i32)"),
    ("sidekill_reset", "func()"),
    ("sidekill_result_len", "func() -> i32"),
    ("sidekill_plan", "func(i32, i32) -> i32"),
    ("sidekill_classify", "func(i32, i32) -> i32"),
    ("sidekill_matrix", "func() -> i32"),
    ("sidekill_policy_info", "func() -> i32"),
];

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

impl Policy {
    pub(crate) fn load(runtime: Runtime, bytes: &[u8]) -> Result<Policy> {
        check_magic(bytes)?;
        let sha256 = Sha256::of(bytes);
        let module = runtime.compile(bytes, &sha256)?;
        let imports = imports(&module);
        if !imports.is_empty() {
            return Err(Error::Imports { imports });
        }
        check_exports(&module)?;
        // An initial memory over the limit is refused here, by the same error a
        // `memory.grow` past it gets (the pooling allocator would refuse it later, less
        // clearly).
        if let Some(wasmtime::ExternType::Memory(memory)) = module.get_export("memory") {
            let wanted = memory.minimum().saturating_mul(65_536);
            let limit = runtime.limits().memory;
            if wanted > u64::try_from(limit).unwrap_or(u64::MAX) {
                return Err(Error::MemoryLimit {
                    call: "instantiate",
                    wanted: usize::try_from(wanted).unwrap_or(usize::MAX),
                    limit,
                });
            }
        }
        let export = |name: &'static str| {
            module.get_export_index(name).ok_or(Error::MissingExport {
                name,
                expected: "an ABI export",
            })
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
            .map_err(|e| Error::Wasm {
                call: "instantiate",
                source: boxed(e),
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
            return Err(Error::AbiVersion {
                major: policy.abi.major,
                minor: policy.abi.minor,
                supported: ABI_MAJOR,
            });
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
    /// Any call error: [`Error::Deadline`], [`Error::StartDeadline`],
    /// [`Error::MemoryLimit`], [`Error::Trap`], [`Error::AllocFailed`],
    /// [`Error::ResultTooLarge`], [`Error::ResultOutOfBounds`], [`Error::Wasm`].
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
    /// A call error as for [`Policy::call`]; [`Error::BadAnswer`] when the answer is not a
    /// JSON envelope; [`Error::Policy`] when the policy answered with an error envelope.
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

    /// A fresh store and instance; the call's clocks start before instantiation, so the
    /// start function runs under the budget.
    fn session(&self) -> Result<Session> {
        let mut store = Store::new(self.runtime.engine(), self.runtime.sandbox());
        store.limiter(|sandbox| sandbox);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_deadline()));
        let ticks = store.data_mut().begin();
        store.set_epoch_deadline(ticks);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(fault(&store, self.runtime.limits(), "instantiate", e)),
        };
        let memory = instance
            .get_module_export(&mut store, &self.exports.memory)
            .and_then(Extern::into_memory)
            .ok_or(Error::MissingExport {
                name: "memory",
                expected: "memory",
            })?;
        let mut func = |export: &ModuleExport, name: &'static str| {
            instance
                .get_module_export(&mut store, export)
                .and_then(Extern::into_func)
                .ok_or(Error::MissingExport {
                    name,
                    expected: "a function",
                })
        };
        let alloc = func(&self.exports.alloc, "sidekill_alloc")?;
        let result_len = func(&self.exports.result_len, "sidekill_result_len")?;
        let wrong = |name, expected| Error::ExportType {
            name,
            expected,
            found: "another type".into(),
        };
        let alloc = alloc
            .typed::<i32, i32>(&store)
            .map_err(|_| wrong("sidekill_alloc", "func(i32) -> i32"))?;
        let result_len = result_len
            .typed::<(), i32>(&store)
            .map_err(|_| wrong("sidekill_result_len", "func() -> i32"))?;
        Ok(Session {
            store,
            instance,
            memory,
            alloc,
            result_len,
            limits: *self.runtime.limits(),
        })
    }
}

/// A fresh store with a fresh instance: one call's whole life.
struct Session {
    store: Store<Sandbox>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    result_len: TypedFunc<(), i32>,
    limits: crate::runtime::Limits,
}

impl Session {
    fn func<P, R>(&mut self, export: &ModuleExport, name: &'static str) -> Result<TypedFunc<P, R>>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        let func = self
            .instance
            .get_module_export(&mut self.store, export)
            .and_then(Extern::into_func)
            .ok_or(Error::MissingExport {
                name,
                expected: "a function",
            })?;
        func.typed(&self.store).map_err(|_| Error::ExportType {
            name,
            expected: "the ABI's signature",
            found: "another type".into(),
        })
    }

    fn run<R>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        f(&mut self.store).map_err(|e| fault(&self.store, &self.limits, name, e))
    }

    /// Copies the request into a buffer from `sidekill_alloc`; `(0, 0)` for an empty one.
    fn write_request(&mut self, request: &[u8]) -> Result<(i32, i32)> {
        if request.is_empty() {
            return Ok((0, 0));
        }
        let len = i32::try_from(request.len()).map_err(|_| Error::AllocFailed {
            len: request.len(),
            ptr: 0,
        })?;
        let alloc = self.alloc.clone();
        let ptr = self.run("sidekill_alloc", |store| alloc.call(store, len))?;
        let failed = Error::AllocFailed {
            len: request.len(),
            ptr: ptr as u32,
        };
        if ptr == 0 {
            return Err(failed);
        }
        self.memory
            .write(&mut self.store, ptr as u32 as usize, request)
            .map_err(|_| failed)?;
        Ok((ptr, len))
    }

    /// Copies `memory[ptr .. ptr + sidekill_result_len()]` out.
    fn read_answer(&mut self, name: &'static str, ptr: i32, max: usize) -> Result<Vec<u8>> {
        let result_len = self.result_len.clone();
        let len = self.run("sidekill_result_len", |store| result_len.call(store, ()))? as u32;
        if len as usize > max {
            return Err(Error::ResultTooLarge {
                call: name,
                len: u64::from(len),
                max,
            });
        }
        let data = self.memory.data(&self.store);
        let start = ptr as u32 as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| data.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or(Error::ResultOutOfBounds {
                call: name,
                ptr: ptr as u32,
                len,
                memory: data.len(),
            })
    }
}

/// Turns a wasmtime error into the variant that says what happened.
fn fault(
    store: &Store<Sandbox>,
    limits: &crate::runtime::Limits,
    call: &'static str,
    err: wasmtime::Error,
) -> Error {
    let sandbox = store.data();
    if let Some(wanted) = sandbox.memory_hit {
        return Error::MemoryLimit {
            call,
            wanted,
            limit: limits.memory,
        };
    }
    let deadline = match sandbox.deadline_hit {
        Some(Clock::Cpu) => Some((limits.timeout, "CPU-time")),
        Some(Clock::Wall) => Some((limits.wall_timeout, "wall-clock")),
        None if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
            Some((limits.timeout, "CPU-time"))
        }
        None => None,
    };
    match (deadline, err.downcast_ref::<Trap>()) {
        (Some((limit, clock)), _) if call == "instantiate" => Error::StartDeadline { limit, clock },
        (Some((limit, clock)), _) => Error::Deadline { call, limit, clock },
        (None, Some(trap)) => Error::Trap { call, trap: *trap },
        (None, None) => Error::Wasm {
            call,
            source: boxed(err),
        },
    }
}

/// Deepest nesting of arrays and objects the host parses in an answer.
pub const ANSWER_DEPTH: u64 = 64;
/// Most JSON values (array elements, object members, containers) the host parses in one
/// answer. A parsed value costs the host tens of bytes however small it is in the answer,
/// so an answer of 16 MiB of `[0,0,0,...]` would cost hundreds of MB to parse and render;
/// it is refused after one pass over its bytes instead. The embedded policy's largest
/// answers (a Workflow of many templates) have a few thousand.
pub const ANSWER_VALUES: u64 = 100_000;

/// Default of a command's answer budget ([`AnswerBudget`], `--answer-budget-mib`): 256 MiB.
pub const ANSWER_BUDGET: u64 = 256 << 20;

/// What one command may read from the module in all: the sum of its answers' bytes. One
/// answer is bounded ([`Limits::max_answer`](crate::Limits), [`check_answer`]); a command
/// over many documents (`plan` of a file of 10,000 documents, `policy diff`) holds or
/// produces one per document, so their sum is bounded too. Each answer is charged when it is
/// read, whether it is then accepted or refused (a refused one still cost its pass); the
/// command stops at the first answer over the budget, with [`Error::AnswerBudget`].
/// What a command keeps of its answers (parsed plans, `policy diff`'s changes, which are
/// parts of the two answers) is at most what it was charged, plus the parsed values'
/// overhead that [`ANSWER_VALUES`] bounds per answer.
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    limit: u64,
    used: u64,
}

impl AnswerBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        AnswerBudget { limit, used: 0 }
    }

    /// Charges one answer of `bytes`; `left` is how many documents the command has after
    /// this one, for the error.
    ///
    /// # Errors
    /// [`Error::AnswerBudget`] when the sum goes over the budget.
    pub fn charge(&mut self, bytes: usize, left: usize) -> Result<()> {
        self.used = self
            .used
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if self.used > self.limit {
            return Err(Error::AnswerBudget {
                used: self.used,
                limit: self.limit,
                left,
            });
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// Counts an answer's nesting depth and values in one pass, without allocating, and
/// refuses one over [`ANSWER_DEPTH`] or [`ANSWER_VALUES`].
///
/// # Errors
/// [`Error::AnswerTooComplex`].
pub fn check_answer(call: &'static str, bytes: &[u8]) -> Result<()> {
    let (mut depth, mut values, mut in_string, mut escaped) = (0u64, 0u64, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > ANSWER_DEPTH {
                    return Err(Error::AnswerTooComplex {
                        call,
                        what: format!("nesting deeper than {ANSWER_DEPTH}"),
                        max: ANSWER_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
    }
    if values > ANSWER_VALUES {
        return Err(Error::AnswerTooComplex {
            call,
            what: format!("{values} values"),
            max: ANSWER_VALUES,
        });
    }
    Ok(())
}

/// The value under `ok`, or the error envelope as [`Error::Policy`]. The answer is first
/// checked with [`check_answer`], so what it costs the host to parse is bounded.
///
/// # Errors
/// [`Error::AnswerTooComplex`], [`Error::BadAnswer`] or [`Error::Policy`].
pub fn unwrap_envelope(call: &'static str, bytes: &[u8]) -> Result<Value> {
    check_answer(call, bytes)?;
    let bad = |reason: String| Error::BadAnswer { call, reason };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
    let Value::Object(mut envelope) = value else {
        return Err(bad("not a JSON object".into()));
    };
    if let Some(ok) = envelope.remove("ok") {
        return Ok(ok);
    }
    match envelope.remove("error") {
        Some(Value::Object(error)) => {
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(String::from);
            Err(Error::Policy {
                code: text("code").ok_or_else(|| bad("error envelope without a `code`".into()))?,
                message: text("message").unwrap_or_default(),
                path: text("path"),
            })
        }
        _ => Err(bad("neither `ok` nor `error`".into())),
    }
}

fn parse_info(value: &Value) -> Result<PolicyInfo> {
    let bad = |reason: &str| Error::BadAnswer {
        call: "sidekill_policy_info",
        reason: reason.into(),
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

/// Every import of a module.
pub fn imports(module: &Module) -> Vec<Import> {
    module
        .imports()
        .map(|import| Import {
            module: import.module().to_string(),
            name: import.name().to_string(),
            kind: kind(&import.ty()),
        })
        .collect()
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "func",
        ExternType::Memory(_) => "memory",
        ExternType::Table(_) => "table",
        ExternType::Global(_) => "global",
        ExternType::Tag(_) => "tag",
    }
}

/// An export's type, as `func(i32, i32) -> i32`, `memory`, `memory64`, `table`, ...
pub fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let params: Vec<String> = f.params().map(|p| p.to_string()).collect();
            let results: Vec<String> = f.results().map(|r| r.to_string()).collect();
            match results.len() {
                0 => format!("func({})", params.join(", ")),
                1 => format!("func({}) -> {}", params.join(", "), results[0]),
                _ => format!("func({}) -> ({})", params.join(", "), results.join(", ")),
            }
        }
        ExternType::Memory(m) if m.is_64() => "memory64".into(),
        ExternType::Memory(m) if m.is_shared() => "shared memory".into(),
        other => kind(other).into(),
    }
}

/// Every export of a module with its type.
pub fn exports(module: &Module) -> Vec<(String, String)> {
    module
        .exports()
        .map(|e| (e.name().to_string(), describe(&e.ty())))
        .collect()
}

fn check_exports(module: &Module) -> Result<()> {
    for (name, expected) in ABI_EXPORTS {
        let ty = module
            .get_export(name)
            .ok_or(Error::MissingExport { name, expected })?;
        let found = describe(&ty);
        if found != expected {
            return Err(Error::ExportType {
                name,
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// What `sidekill policy inspect` shows about a module, whether or not it loads.
#[derive(Debug)]
pub struct Inspection {
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// Imports (a loadable policy has none).
    pub imports: Vec<Import>,
    /// Exports with their types.
    pub exports: Vec<(String, String)>,
    /// The loaded policy, or why it does not load.
    pub load: Result<Policy>,
    /// How long compilation took (or reading it from a cache).
    pub compile_time: Duration,
    /// How long loading took after compilation: ABI checks, instantiation, version calls.
    pub load_time: Duration,
}

/// Inspects a module's bytes: what it imports and exports, and whether it loads.
pub fn inspect(runtime: &Runtime, bytes: &[u8]) -> Inspection {
    let sha256 = Sha256::of(bytes);
    let started = std::time::Instant::now();
    let compiled = runtime.compile(bytes, &sha256);
    let compile_time = started.elapsed();
    let (imports, exports) = match compiled {
        Ok(module) => (imports(&module), exports(&module)),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let started = std::time::Instant::now();
    let load = runtime.load(bytes);
    Inspection {
        size: bytes.len(),
        sha256,
        imports,
        exports,
        load,
        compile_time,
        load_time: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_unwrap_or_name_the_problem() {
        assert_eq!(
            unwrap_envelope("sidekill_plan", br#"{"ok":{"a":1}}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        let err = unwrap_envelope(
            "sidekill_plan",
            br#"{"error":{"code":"missing_field","message":"missing field `object`","path":"object"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Policy { code, path: Some(p), .. } if code == "missing_field" && p == "object")
        );
        for bad in [&b"nope"[..], b"[1]", b"{}", br#"{"error":{}}"#] {
            assert_eq!(
                unwrap_envelope("sidekill_plan", bad).unwrap_err().name(),
                "bad_answer"
            );
        }
    }
}
