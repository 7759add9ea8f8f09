//! The errors of the module itself, one enum per stage: loading it ([`LoadError`]), calling
//! it ([`CallError`]) and reading its answer ([`AnswerError`]). [`super::Error`] holds each as a
//! transparent variant, so a message is said once.

use std::path::PathBuf;

use std::time::Duration;

use super::{list, BoxError, Import};

/// A module refused when it is loaded: not WebAssembly, over a limit, with an import, without
/// an export of the ABI, of another ABI major version, or not the pinned one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The module is over a bound checked before compilation (size, functions, locals,
    /// globals, data, ...): compiling or instantiating it could cost the host minutes or
    /// gigabytes. See [`crate::limits::ModuleLimits`].
    #[error(
        "the module has {found} {limit}, over the limit of {max}; it is refused before compilation"
    )]
    ModuleLimit {
        /// Which bound: `module_bytes`, `functions`, `locals`, `globals`, ...
        limit: &'static str,
        /// What the module has.
        found: u64,
        /// The bound.
        max: u64,
    },

    /// The module has no bytes at all.
    #[error("the module is empty (0 bytes)")]
    Empty,

    /// The bytes are not a WebAssembly binary (no `\0asm` magic).
    #[error("not a WebAssembly binary: it starts with {found}, not the magic bytes 00 61 73 6d (\"\\0asm\")")]
    NotWasm {
        /// The first bytes, in hex.
        found: String,
    },

    /// The bytes look like WebAssembly but do not validate or compile.
    #[error("the module does not compile")]
    Compile {
        /// wasmtime's reason.
        #[source]
        source: BoxError,
    },

    /// The module imports something. Policy modules are instantiated with an empty import
    /// object, so any import is refused at load.
    #[error("the module imports {}; a policy module must import nothing", list(.imports))]
    Imports {
        /// Every import the module declares.
        imports: Vec<Import>,
    },

    /// An export of the ABI is missing.
    #[error("the module has no export `{name}` (expected {expected})")]
    MissingExport {
        /// The export's name.
        name: &'static str,
        /// Its expected type.
        expected: &'static str,
    },

    /// An export of the ABI has the wrong type.
    #[error("export `{name}` is {found}, expected {expected}")]
    ExportType {
        /// The export's name.
        name: &'static str,
        /// Its expected type.
        expected: &'static str,
        /// Its actual type.
        found: String,
    },

    /// The module speaks an ABI major version this host does not.
    #[error("ABI version {major}.{minor} is not supported: this host speaks {supported}.x")]
    AbiVersion {
        /// `sidekill_abi_major()`.
        major: i32,
        /// `sidekill_abi_minor()`.
        minor: i32,
        /// The major version this host speaks.
        supported: i32,
    },

    /// The module's sha256 does not match the pinned one.
    #[error("sha256 {found} does not match the pinned {expected}")]
    Pin {
        /// The pinned digest.
        expected: String,
        /// The module's digest.
        found: String,
    },

    /// Compiling the module in its child process went over a bound (CPU time, address
    /// space, wall-clock time) or the child failed: a compile bomb the static limits missed
    /// costs the live process this refusal and nothing else. See
    /// [`crate::runtime::ChildCompiler`].
    #[error("compiling the module {reason}; it is refused")]
    CompileLimit {
        /// What happened to the child: `used its 10 s of CPU time`, `ran past ...`.
        reason: String,
    },

    /// The compiled-module cache is not private to this user: its code could be replaced.
    #[error("the compiled-module cache {} is {reason}; it must be owned by this user and writable by no one else", .path.display())]
    UnsafeCache {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong: `owned by uid 0`, `writable by group or others`, ...
        reason: String,
    },
}

/// A call into the module that gave no answer: stopped at its deadline or memory limit,
/// trapped, or with a result outside its memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// A call ran past its deadline (an infinite or runaway loop) and was interrupted.
    #[error("`{call}` ran past its {} ms {clock} deadline and was stopped", .limit.as_millis())]
    Deadline {
        /// The export that was running.
        call: &'static str,
        /// The deadline.
        limit: Duration,
        /// Which clock: `CPU-time` (the call's budget) or `wall-clock` (the cap).
        clock: &'static str,
    },

    /// The module's start function ran past the deadline during instantiation.
    #[error("the module's start function ran past the {} ms {clock} deadline and was stopped", .limit.as_millis())]
    StartDeadline {
        /// The deadline.
        limit: Duration,
        /// Which clock: `CPU-time` (the call's budget) or `wall-clock` (the cap).
        clock: &'static str,
    },

    /// The module tried to grow its memory (or start with a memory) beyond the limit.
    #[error("`{call}` tried to grow memory to {wanted} bytes, over the {limit}-byte limit")]
    MemoryLimit {
        /// The export that was running, or `instantiate`.
        call: &'static str,
        /// The size asked for.
        wanted: usize,
        /// The limit.
        limit: usize,
    },

    /// The module trapped (`unreachable`, out-of-bounds access, stack overflow, ...).
    #[error("`{call}` trapped")]
    Trap {
        /// The export that was running, or `start` for the start function.
        call: &'static str,
        /// The trap.
        #[source]
        trap: wasmtime::Trap,
    },

    /// A call failed in wasmtime for another reason (a resource limit, an instantiation error).
    #[error("`{call}` failed")]
    Wasm {
        /// The export that was running, or `instantiate`.
        call: &'static str,
        /// wasmtime's reason.
        #[source]
        source: BoxError,
    },

    /// `sidekill_result_len` reported an answer larger than the host accepts.
    #[error("`{call}` reported a {len}-byte answer; at most {max} bytes are accepted")]
    ResultTooLarge {
        /// The export whose answer it is.
        call: &'static str,
        /// The reported length.
        len: u64,
        /// The limit.
        max: usize,
    },

    /// The answer's address and length do not lie inside the module's memory.
    #[error("`{call}` answered at [{ptr}, {ptr} + {len}), outside its {memory}-byte memory")]
    ResultOutOfBounds {
        /// The export whose answer it is.
        call: &'static str,
        /// The answer's address.
        ptr: u32,
        /// The reported length.
        len: u32,
        /// The memory's size.
        memory: usize,
    },

    /// `sidekill_alloc` gave no usable buffer for the request.
    #[error("`sidekill_alloc({len})` returned {ptr}: no usable buffer for the request")]
    AllocFailed {
        /// The request's length.
        len: usize,
        /// The address returned.
        ptr: u32,
    },
}

/// An answer the host does not accept: not an envelope, not of the answer's shape, too
/// complex, over the command's budget, or the policy's own error envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The answer is not a JSON envelope `{"ok": ...}` or `{"error": {...}}`.
    #[error("`{call}` answered something that is not a JSON envelope: {reason}")]
    BadAnswer {
        /// The export whose answer it is.
        call: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The answer is an envelope, but what it holds is not of the answer's shape
    /// ([`crate::answer`]): a field missing, a step or action of a kind this host does not
    /// know. Nothing of it is acted on.
    #[error("`{call}` answered what this host cannot read: {reason}")]
    UnreadableAnswer {
        /// The export whose answer it is.
        call: &'static str,
        /// The first field that is not of the answer's shape, and why.
        reason: String,
    },

    /// The policy answered with an error envelope: the request itself is bad.
    #[error("{message}")]
    Policy {
        /// The code from the ABI's error table, such as `missing_field`.
        code: String,
        /// The policy's message, naming the field.
        message: String,
        /// The JSON path the error is about, when it is about one field.
        path: Option<String>,
    },

    /// An answer is over what the host parses: too deep, or too many values.
    #[error("`{call}` answered a JSON value with {what}, over the host's limit of {max}")]
    AnswerTooComplex {
        /// The export whose answer it is.
        call: &'static str,
        /// What is over: `nesting depth 10000`, `2000000 values`.
        what: String,
        /// The limit.
        max: u64,
    },

    /// The answers of one command (`plan` over many documents, `policy diff`) are over the
    /// command's budget: one answer is bounded, their sum is too.
    #[error("the policy's answers in this command reached {used} bytes, over its budget of {limit} bytes (--answer-budget-mib); the {left} document(s) after this one were not planned")]
    AnswerBudget {
        /// Bytes of answers read so far, this one included.
        used: u64,
        /// The budget.
        limit: u64,
        /// Documents left unplanned.
        left: usize,
    },
}
