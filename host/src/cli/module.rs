//! Which policy module a command runs and the runtime it runs in: `--policy` and `--sha256`,
//! the module files (`embedded` stands for the built-in one), the compiled-module cache, and
//! the async runtime of the commands that talk to a cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Global;
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Result};
use crate::runtime::{Config, Limits, Runtime};
use crate::{embedded, Policy};

/// Which policy module to run.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy module to run instead of the built-in one
    #[arg(
        long,
        value_name = "X.wasm",
        env = "SIDEKILL_POLICY",
        long_help = "Policy module (a raw-ABI .wasm file) to run instead of the one built \
                     into sidekill (which the name `embedded` stands for). It must pass the load checks of a hot swap: the wasm \
                     magic, no imports, the ABI's exports and their types, ABI major \
                     version 1. (`sidekill policy test` also runs the canary requests.)"
    )]
    pub policy: Option<PathBuf>,

    /// Refuse the module unless its sha256 is this (64 hex digits)
    #[arg(long, value_name = "HEX", env = "SIDEKILL_POLICY_SHA256", value_parser = parse_sha256)]
    pub sha256: Option<Sha256>,
}

pub(crate) fn parse_sha256(text: &str) -> std::result::Result<Sha256, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// The default compiled-module cache: `$XDG_CACHE_HOME/sidekill` when XDG_CACHE_HOME is an
/// absolute path, else `$HOME/.cache/sidekill`; `None` without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|dir| dir.join("sidekill"))
}

/// The runtime for a one-shot command (`plan`, `matrix`, `stop`, `policy`): as [`runtime`],
/// and without `--cache-dir` the [`default_cache_dir`], with the same checks (owned by this
/// user, writable by no one else, entries bound to the module's sha256 and the engine).
/// A default folder that cannot be created or fails the checks costs only the compilation:
/// a warning says why, and the module is compiled in memory.
///
/// # Errors
/// As [`runtime`].
pub fn cli_runtime(global: &Global) -> Result<Runtime> {
    if global.cache_dir.is_some() {
        return runtime(global);
    }
    let Some(dir) = default_cache_dir() else {
        return runtime(global);
    };
    match Runtime::new(config(global, Some(dir.clone()))) {
        Err(e @ (Error::Load(LoadError::UnsafeCache { .. }) | Error::Io { .. })) => {
            tracing::warn!(
                cache = %dir.display(),
                error = %e.report(),
                "not using the default module cache (give --cache-dir to choose another)"
            );
            runtime(global)
        }
        other => other,
    }
}

/// The runtime for the global options.
///
/// # Errors
/// As [`Runtime::new`].
pub fn runtime(global: &Global) -> Result<Runtime> {
    Runtime::new(config(global, global.cache_dir.clone()))
}

fn config(global: &Global, cache_dir: Option<PathBuf>) -> Config {
    Config {
        limits: Limits {
            timeout: Duration::from_millis(global.timeout_ms),
            memory: usize::try_from(global.memory_limit_mib << 20).unwrap_or(usize::MAX),
            ..Limits::default()
        },
        cache_dir,
        ..Config::default()
    }
}

/// Reads a module file, refusing one over 16 MiB without reading it whole. The name
/// `embedded` (no folder) is the module built into this binary; `./embedded` is a file.
pub(crate) fn read_module(path: &std::path::Path) -> Result<Vec<u8>> {
    if is_embedded(path) {
        return Ok(embedded::BYTES.to_vec());
    }
    crate::limits::read_module(path)
}

/// Whether a module argument names the embedded module.
pub(crate) fn is_embedded(path: &std::path::Path) -> bool {
    path.as_os_str() == embedded::ORIGIN
}

/// Where a module comes from, for people: `embedded (cargo profile wasm, opt-level 3, ...)`
/// or the file's path.
pub(crate) fn module_origin(path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) if !is_embedded(path) => path.display().to_string(),
        _ => format!("{} ({})", embedded::ORIGIN, embedded::BUILD),
    }
}

/// The module `--policy` names, or the embedded one, checked against `--sha256`.
/// Returns the policy and where it came from.
///
/// # Errors
/// [`Error::Io`], [`LoadError::Pin`] or a load error.
pub fn load_policy(global: &Global, args: &PolicyArgs) -> Result<(Policy, String)> {
    let runtime = cli_runtime(global)?;
    let (bytes, origin) = match &args.policy {
        Some(path) if !is_embedded(path) => (read_module(path)?, path.display().to_string()),
        _ => (embedded::BYTES.to_vec(), embedded::ORIGIN.to_string()),
    };
    if let Some(expected) = &args.sha256 {
        let found = Sha256::of(&bytes);
        if found != *expected {
            return Err(Error::Load(LoadError::Pin {
                expected: expected.to_string(),
                found: found.to_string(),
            }));
        }
    }
    let policy = runtime.load(&bytes)?;
    Ok((policy, origin))
}

/// The async runtime of the commands that talk to a cluster (`stop`, `controller`, `demo`,
/// `policy push` and `rollback`): two workers (the work is mostly waiting on the API
/// server), IO and timers.
#[cfg(feature = "configmap")]
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}
