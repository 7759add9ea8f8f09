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

mod module;

pub use module::{AnswerError, CallError, LoadError};

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
    /// The module is refused when it is loaded ([`LoadError`]).
    #[error(transparent)]
    Load(#[from] LoadError),

    /// A call into the module gave no answer ([`CallError`]).
    #[error(transparent)]
    Call(#[from] CallError),

    /// The module's answer is not accepted ([`AnswerError`]).
    #[error(transparent)]
    Answer(#[from] AnswerError),

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
            Error::Load(LoadError::Empty) => "empty",
            Error::Load(LoadError::NotWasm { .. }) => "not_wasm",
            Error::Load(LoadError::Compile { .. }) => "compile",
            Error::Load(LoadError::Imports { .. }) => "imports",
            Error::Load(LoadError::MissingExport { .. }) => "missing_export",
            Error::Load(LoadError::ExportType { .. }) => "export_type",
            Error::Load(LoadError::AbiVersion { .. }) => "abi_version",
            Error::Load(LoadError::Pin { .. }) => "pin",
            Error::Load(LoadError::ModuleLimit { .. }) => "module_limit",
            Error::Load(LoadError::CompileLimit { .. }) => "compile_limit",
            Error::Load(LoadError::UnsafeCache { .. }) => "unsafe_cache",
            Error::Call(CallError::Deadline { .. }) => "deadline",
            Error::Call(CallError::StartDeadline { .. }) => "start_deadline",
            Error::Call(CallError::MemoryLimit { .. }) => "memory_limit",
            Error::Call(CallError::Trap { .. }) => "trap",
            Error::Call(CallError::Wasm { .. }) => "wasm",
            Error::Call(CallError::ResultTooLarge { .. }) => "result_too_large",
            Error::Call(CallError::ResultOutOfBounds { .. }) => "result_out_of_bounds",
            Error::Call(CallError::AllocFailed { .. }) => "alloc_failed",
            Error::Answer(AnswerError::BadAnswer { .. }) => "bad_answer",
            Error::Answer(AnswerError::UnreadableAnswer { .. }) => "unreadable_answer",
            Error::Answer(AnswerError::Policy { .. }) => "policy",
            Error::Answer(AnswerError::AnswerTooComplex { .. }) => "answer_too_complex",
            Error::Answer(AnswerError::AnswerBudget { .. }) => "answer_budget",
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
            Error::Answer(AnswerError::Policy { .. })
                | Error::NoPrevious
                | Error::Kube { .. }
                | Error::Signature(SignatureError::KeyFormat { .. })
                | Error::BadDigest { .. }
                | Error::Load(LoadError::UnsafeCache { .. })
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
    use std::time::Duration;

    #[test]
    fn import_error_names_module_and_field() {
        let err = Error::Load(LoadError::Imports {
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
        });
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
        let err = Error::Call(CallError::Deadline {
            call: "sidekill_plan",
            limit: Duration::from_millis(100),
            clock: "CPU-time",
        });
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
