//! Errors for input the core cannot plan at all.
//!
//! A problem the core can work around (a bad annotation, an unknown image) is a
//! [`Diagnostic`](crate::Diagnostic) inside a plan, never an error. An error means there
//! is no object to plan: the bytes are not JSON or YAML, or a field the core needs is
//! missing or has the wrong type.

use alloc::string::String;

/// The result type of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Why a request could not be planned. Every variant names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request bytes are not valid UTF-8.
    #[error("request is not valid UTF-8 (first bad byte at offset {offset})")]
    Utf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The request is not well-formed JSON.
    #[error("request is not valid JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// The document is not well-formed YAML.
    #[error("document is not valid YAML at line {line}, column {column}: {message}")]
    Yaml {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the YAML parser expected.
        message: String,
    },
    /// A required field is absent.
    #[error("missing field `{path}`: expected {expected}")]
    Missing {
        /// JSON path of the field, such as `object.spec.containers[0].name`.
        path: String,
        /// What should be there.
        expected: &'static str,
    },
    /// A field has the wrong type or an unusable value.
    #[error("invalid field `{path}`: expected {expected}, found {found}")]
    Invalid {
        /// JSON path of the field.
        path: String,
        /// What should be there.
        expected: &'static str,
        /// A short description of what is there instead.
        found: String,
    },
    /// The object's kind is not one the core can plan.
    #[error("unsupported kind `{kind}` at `{path}`: expected Pod, Job, CronJob, Deployment, ReplicaSet, StatefulSet, DaemonSet, Workflow, WorkflowTemplate or ClusterWorkflowTemplate")]
    UnsupportedKind {
        /// JSON path of the `kind` field.
        path: String,
        /// The kind found.
        kind: String,
    },
    /// The input nests deeper than the core accepts.
    #[error("input nests deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
}

impl Error {
    /// A stable, machine-readable code for this error, as used in the ABI's error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Utf8 { .. } => "invalid_utf8",
            Error::Json { .. } => "invalid_json",
            Error::Yaml { .. } => "invalid_yaml",
            Error::Missing { .. } => "missing_field",
            Error::Invalid { .. } => "invalid_field",
            Error::UnsupportedKind { .. } => "unsupported_kind",
            Error::TooDeep { .. } => "too_deep",
        }
    }

    /// The JSON path the error is about, when it is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::Missing { path, .. }
            | Error::Invalid { path, .. }
            | Error::UnsupportedKind { path, .. } => Some(path),
            _ => None,
        }
    }

    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        let text = alloc::format!("{err}");
        // serde_json appends " at line L column C"; the position is carried separately.
        let message = match text.rfind(" at line ") {
            Some(cut) => String::from(&text[..cut]),
            None => text,
        };
        if err.classify() == serde_json::error::Category::Syntax
            && message.contains("recursion limit")
        {
            return Error::TooDeep { limit: 128 };
        }
        Error::Json {
            line: err.line(),
            column: err.column(),
            message,
        }
    }
}
