//! The crate's one error type.
//!
//! Variant names are short and stable: they become log fields. Errors that a client of the API
//! server sees are not these: those are `metav1.Status` objects built in `api::status`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, driving or stopping a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process lacks the privilege to make PID and mount namespaces.
    #[error(
        "sidekill-testcluster runs every container in its own PID and mount namespace, which \
         needs CAP_SYS_ADMIN: run it as root ({reason})"
    )]
    NotPrivileged {
        /// What the check saw.
        reason: String,
    },
    /// A util-linux tool that containers are made with is not on PATH.
    #[error("`{tool}` was not found on PATH; install util-linux (it provides unshare, nsenter and setpriv)")]
    MissingTool {
        /// The tool's name.
        tool: &'static str,
    },
    /// The stand-in binary that plays the images' programs was not found.
    #[error(
        "the stand-in binary `sidekill-standin` was not found at {path} (build it with `cargo \
         build -p sidekill-testcluster`, or set SIDEKILL_TESTCLUSTER_BIN_DIR)"
    )]
    StandinMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The sidekill-quitter binary was named (ClusterConfig::quitter or SIDEKILL_QUITTER) but
    /// is not there.
    #[error(
        "the sidekill-quitter binary was not found at {path} (build it with `cargo build -p \
         sidekill-quitter`)"
    )]
    QuitterMissing {
        /// The path given.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest was not valid YAML or not a valid object.
    #[error("invalid manifest: {source}")]
    Manifest {
        /// The parser's error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An object could not be encoded or decoded as JSON.
    #[error("invalid object: {source}")]
    Json {
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The API refused a request made through the library (the same answer a client would get).
    #[error("API error {code} {reason}: {message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// The Status reason, e.g. `AlreadyExists`.
        reason: String,
        /// The Status message.
        message: String,
    },
    /// A manifest had a kind this server does not serve.
    #[error("kind {kind} is not served by the test cluster (Pod, ConfigMap and Event are)")]
    UnsupportedKind {
        /// The manifest's kind.
        kind: String,
    },
    /// A wait for a condition ran out of time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// What it waited for.
        what: String,
    },
    /// An object the call needs does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The images folder is missing or one of its manifests is invalid.
    #[error("images catalogue {path}: {message}")]
    Images {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
