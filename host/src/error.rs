//! The host's errors: one variant per way a module, a call or an input can fail.
//!
//! Variant names are short and stable, and [`Error::name`] gives each a snake_case label
//! for log fields and metric labels. A subsystem with errors of its own keeps them in its
//! own enum, wrapped here: [`crate::signature::SignatureError`] and (feature `configmap`)
//! `crate::source::configmap::ConfigMapError`; their names are the ones they had here. The
//! host survives every one of them: a failed call drops its store and leaves the loaded
//! module, the policy store and the process intact.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::signature::SignatureError;
#[cfg(feature = "configmap")]
use crate::source::configmap::ConfigMapError;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from wasmtime or another library, kept as the `source` of a variant.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One import of a module, as `(import "module" "name" ...)` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The import's module name, such as `env` or `wasi_snapshot_preview1`.
    pub module: String,
    /// The import's field name, such as `fd_write`.
    pub name: String,
    /// What is imported: `func`, `memory`, `table`, `global` or `tag`.
    pub kind: &'static str,
}

impl fmt::Display for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?} ({})", self.module, self.name, self.kind)
    }
}

/// Everything that can go wrong while loading a module, calling it, swapping it or
/// reading the manifests the command line plans.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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

    /// The module's sha256 does not match the pinned one.
    #[error("sha256 {found} does not match the pinned {expected}")]
    Pin {
        /// The pinned digest.
        expected: String,
        /// The module's digest.
        found: String,
    },

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

    /// A corpus manifest (`corpus.json`, `sidekill policy test --corpus`) is not JSON or not
    /// the manifest's shape.
    #[error("{}: {message}", .path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },

    /// A canary request failed during the self-test before a swap.
    #[error("canary `{canary}` failed{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Canary {
        /// The canary's name.
        canary: &'static str,
        /// What was wrong with the answer, when the call itself succeeded.
        reason: Option<String>,
        /// The call error, when the call itself failed.
        #[source]
        source: Option<Box<Error>>,
    },

    /// A rollback was asked for, but no previous version is kept.
    #[error("no previous policy version to roll back to")]
    NoPrevious,

    /// A Kubernetes API call about a policy ConfigMap failed (`policy push`, `rollback`).
    #[error("{configmap}: cannot {action}")]
    Kube {
        /// The ConfigMap, as `configmap NAMESPACE/NAME`.
        configmap: String,
        /// What was being done: `read it`, `replace it`, ...
        action: &'static str,
        /// The client's or the API server's reason.
        #[source]
        source: BoxError,
    },

    /// A sha256 pin is not 64 hex digits.
    #[error("`{value}` is not a sha256 digest (64 hex digits)")]
    BadDigest {
        /// The text given.
        value: String,
    },

    /// A file could not be read or written.
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },

    /// wasmtime's engine could not be set up with the configuration.
    #[error("cannot set up the wasm engine")]
    Engine {
        /// wasmtime's reason.
        #[source]
        source: BoxError,
    },

    /// A manifest is not YAML or JSON.
    #[error("{file}: line {line}, column {column}: {message} (expected a YAML or JSON Kubernetes object)")]
    Syntax {
        /// The file (`-` for standard input).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },

    /// Carrying out a plan against a cluster failed (`sidekill stop`, `controller`).
    /// Transparent: the executor's error is the message, said once (`sidekill: {e:#}` prints
    /// each error of the chain).
    #[error(transparent)]
    Executor {
        /// The executor's error.
        source: BoxError,
    },

    /// `sidekill demo` could not run (no root, the test cluster did not start, a plan
    /// did not finish in time).
    #[error("demo: {message}")]
    Demo {
        /// What went wrong and what to do.
        message: String,
    },

    /// The policy ConfigMap: a key, a missing module, a concurrent write
    /// ([`crate::source::configmap::ConfigMapError`]).
    #[cfg(feature = "configmap")]
    #[error(transparent)]
    ConfigMap(#[from] ConfigMapError),

    /// Module signatures and the keys that check them
    /// ([`crate::signature::SignatureError`]).
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

fn list(imports: &[Import]) -> String {
    let shown: Vec<String> = imports.iter().map(Import::to_string).collect();
    shown.join(", ")
}

impl Error {
    /// A short, stable snake_case name for the variant, for log fields and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Empty => "empty",
            Error::NotWasm { .. } => "not_wasm",
            Error::Compile { .. } => "compile",
            Error::Imports { .. } => "imports",
            Error::MissingExport { .. } => "missing_export",
            Error::ExportType { .. } => "export_type",
            Error::AbiVersion { .. } => "abi_version",
            Error::Deadline { .. } => "deadline",
            Error::StartDeadline { .. } => "start_deadline",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::Trap { .. } => "trap",
            Error::Wasm { .. } => "wasm",
            Error::ResultTooLarge { .. } => "result_too_large",
            Error::ResultOutOfBounds { .. } => "result_out_of_bounds",
            Error::AllocFailed { .. } => "alloc_failed",
            Error::BadAnswer { .. } => "bad_answer",
            Error::UnreadableAnswer { .. } => "unreadable_answer",
            Error::Policy { .. } => "policy",
            Error::Pin { .. } => "pin",
            Error::ModuleLimit { .. } => "module_limit",
            Error::CompileLimit { .. } => "compile_limit",
            Error::UnsafeCache { .. } => "unsafe_cache",
            Error::AnswerTooComplex { .. } => "answer_too_complex",
            Error::AnswerBudget { .. } => "answer_budget",
            Error::Manifest { .. } => "manifest",
            Error::Canary { .. } => "canary",
            Error::NoPrevious => "no_previous",
            Error::Kube { .. } => "kube",
            Error::BadDigest { .. } => "bad_digest",
            Error::Io { .. } => "io",
            Error::Engine { .. } => "engine",
            Error::Syntax { .. } => "syntax",
            Error::Executor { .. } => "executor",
            Error::Demo { .. } => "demo",
            Error::Signature(SignatureError::Unsigned { .. }) => "unsigned",
            Error::Signature(SignatureError::BadSignature { .. }) => "bad_signature",
            Error::Signature(SignatureError::KeyFormat { .. }) => "key_format",
            #[cfg(feature = "configmap")]
            Error::ConfigMap(e) => match e {
                ConfigMapError::MissingKey { .. } => "missing_key",
                ConfigMapError::BadKey { .. } => "bad_key",
                ConfigMapError::NoConfigMap { .. } => "no_configmap",
                ConfigMapError::NoPreviousModule { .. } => "no_previous_module",
                ConfigMapError::Conflict { .. } => "conflict",
            },
        }
    }

    /// Whether the error is about the module (it is broken, hostile or misbehaved), as
    /// opposed to the request, a file or the configuration.
    pub fn is_module_fault(&self) -> bool {
        #[cfg(feature = "configmap")]
        if let Error::ConfigMap(_) = self {
            return false;
        }
        !matches!(
            self,
            Error::Policy { .. }
                | Error::NoPrevious
                | Error::Kube { .. }
                | Error::Signature(SignatureError::KeyFormat { .. })
                | Error::BadDigest { .. }
                | Error::UnsafeCache { .. }
                | Error::Io { .. }
                | Error::Engine { .. }
                | Error::Syntax { .. }
                | Error::Manifest { .. }
        )
    }

    /// The error and its chain of causes, `": "`-separated, for log lines and messages.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Displays an error with its causes: `canary `x` failed: `sidekill_plan` trapped: wasm trap: ...`.
/// Messages never repeat their source, so this is how an error is shown whole (anyhow's
/// `{e:#}` shows the same).
#[derive(Debug, Clone, Copy)]
pub struct Report<'e>(&'e (dyn std::error::Error + 'static));

impl<'e> Report<'e> {
    /// The report of any error (the executor's, kube's).
    pub fn of(error: &'e (dyn std::error::Error + 'static)) -> Report<'e> {
        Report(error)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Converts a wasmtime error into a boxed standard error.
pub(crate) fn boxed(err: wasmtime::Error) -> BoxError {
    err.into_boxed_dyn_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_error_names_module_and_field() {
        let err = Error::Imports {
            imports: vec![
                Import {
                    module: "env".into(),
                    name: "now".into(),
                    kind: "func",
                },
                Import {
                    module: "wasi_snapshot_preview1".into(),
                    name: "fd_write".into(),
                    kind: "func",
                },
            ],
        };
        let text = err.to_string();
        assert!(text.contains(r#""env" "now" (func)"#), "{text}");
        assert!(
            text.contains(r#""wasi_snapshot_preview1" "fd_write""#),
            "{text}"
        );
        assert_eq!(err.name(), "imports");
    }

    #[test]
    fn deadline_message_names_call_and_limit() {
        let err = Error::Deadline {
            call: "sidekill_plan",
            limit: Duration::from_millis(100),
            clock: "CPU-time",
        };
        assert_eq!(
            err.to_string(),
            "`sidekill_plan` ran past its 100 ms CPU-time deadline and was stopped"
        );
    }

    /// The split into subsystem enums keeps each variant's name and fault (issue 15): they
    /// are log fields, metric labels and the `error` of JSON output.
    #[test]
    fn wrapped_errors_keep_their_names() {
        let unsigned = Error::from(SignatureError::Unsigned {
            sha256: "00".into(),
        });
        assert_eq!(
            (unsigned.name(), unsigned.is_module_fault()),
            ("unsigned", true)
        );
        let key = Error::from(SignatureError::KeyFormat {
            what: "key k.pub".into(),
            reason: "not PEM".into(),
        });
        assert_eq!((key.name(), key.is_module_fault()), ("key_format", false));
        assert_eq!(key.to_string(), "key k.pub: not PEM");
        #[cfg(feature = "configmap")]
        {
            let conflict = Error::from(ConfigMapError::Conflict {
                configmap: "configmap a/b".into(),
                attempts: 1,
            });
            assert_eq!(
                (conflict.name(), conflict.is_module_fault()),
                ("conflict", false)
            );
        }
    }
}
