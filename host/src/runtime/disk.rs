//! The disk cache of compiled modules: entries written with [`Module::serialize`] behind a
//! header (the module's SHA-256 and the engine's hash), read back only from a directory and
//! file this user alone may write (see [Module cache](super#module-cache)).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Module;

use super::Runtime;
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Result};

impl Runtime {
    fn disk_path(&self, sha256: &Sha256) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }

    pub(super) fn read_disk(&self, sha256: &Sha256) -> Option<Module> {
        let path = self.disk_path(sha256)?;
        if !path.is_file() {
            return None;
        }
        let bytes = match check_private(&path)
            .and_then(|()| std::fs::read(&path).map_err(|e| Error::io(&path, e)))
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e.report(), "ignoring a disk cache entry");
                return None;
            }
        };
        let Some(code) = strip_header(&bytes, sha256, self.engine_hash()) else {
            tracing::warn!(path = %path.display(), "ignoring a disk cache entry made for another module or engine");
            return None;
        };
        // SAFETY: `deserialize` runs the machine code in `code` without checking it. The
        // file is owned by this user and writable by no one else (`check_private`, as is
        // its directory, checked in `Runtime::new`), and its header names the SHA-256 of
        // the module it was compiled from and this engine's configuration hash: a file
        // renamed from another module's entry, or written by another engine, is refused
        // above. wasmtime checks its own header too, which we treat as a miss.
        match unsafe { Module::deserialize(&self.inner.engine, code) } {
            Ok(module) => {
                tracing::debug!(path = %path.display(), "compiled module read from the disk cache");
                Some(module)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable disk cache entry");
                None
            }
        }
    }

    pub(super) fn engine_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }

    pub(super) fn write_disk(&self, sha256: &Sha256, module: &Module) {
        let Some(path) = self.disk_path(sha256) else {
            return;
        };
        if let Err(e) = write_cache_file(&path, sha256, self.engine_hash(), module) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the disk cache entry");
        }
    }
}

/// The first bytes of every disk cache entry, followed by the module's SHA-256 (32 bytes)
/// and the engine hash (8 bytes, little endian), then wasmtime's serialized module.
const CACHE_MAGIC: &[u8; 16] = b"sidekill-cwasm-1";

pub(super) fn header(sha256: &Sha256, engine: u64) -> Vec<u8> {
    let mut out = CACHE_MAGIC.to_vec();
    out.extend_from_slice(&sha256.0);
    out.extend_from_slice(&engine.to_le_bytes());
    out
}

/// The compiled code of a cache entry, when its header names this module and engine.
pub(super) fn strip_header<'b>(bytes: &'b [u8], sha256: &Sha256, engine: u64) -> Option<&'b [u8]> {
    let expected = header(sha256, engine);
    bytes.strip_prefix(expected.as_slice())
}

fn write_cache_file(
    path: &Path,
    sha256: &Sha256,
    engine: u64,
    module: &Module,
) -> std::result::Result<(), String> {
    let dir = path.parent().ok_or("no parent directory")?;
    create_private_dir(dir).map_err(|e| e.to_string())?;
    let mut bytes = header(sha256, engine);
    bytes.extend_from_slice(&module.serialize().map_err(|e| e.to_string())?);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("module"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = std::fs::remove_file(&tmp);
    let written = options
        .open(&tmp)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes));
    written.map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

/// Refuses a cache directory or file that another user owns or that group or others may
/// write: whoever can write there chooses the native code sidekill runs.
pub(super) fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let unsafe_cache = |reason: String| {
            Error::Load(LoadError::UnsafeCache {
                path: path.to_path_buf(),
                reason,
            })
        };
        if meta.file_type().is_symlink() {
            return Err(unsafe_cache("a symbolic link".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_cache(format!(
                "owned by uid {}, not this user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unsafe_cache(format!(
                "writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
