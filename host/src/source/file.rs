//! A policy module file, watched by polling.
//!
//! Each poll reads the file's metadata (following symlinks, so a ConfigMap volume's
//! `..data` swap is seen). When the modification time or the size changed, the file is
//! read and hashed; when the SHA-256 differs from the last one seen, the bytes are
//! proposed to the [`PolicyStore`]. A refused version is not proposed again until the
//! file changes. A missing or unreadable file is logged once and the live version keeps
//! serving.
//!
//! The module's signature, when it has one, is the file beside it with `.sig` appended
//! (`policy.wasm.sig`: base64, as `sidekill policy sign` and `cosign sign-blob` write it);
//! a change of either file is a change. A module over 16 MiB is refused without being read
//! whole ([`LoadError::ModuleLimit`]).
//!
//! Write a new module with write-to-temporary-then-rename, its signature first: a poll
//! that reads a half-written file gets a refused candidate (logged), and the next change
//! is picked up.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::store::{PolicyStore, Swap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    signature: Option<(Option<SystemTime>, u64)>,
}

/// `X.wasm.sig` for `X.wasm`: where a module file's signature is.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Reads a module's signature file when there is one: `Ok(None)` when it is missing.
///
/// # Errors
/// [`Error::Io`] when it exists but cannot be read, [`SignatureError::KeyFormat`](crate::signature::SignatureError::KeyFormat) when it is not
/// base64.
pub fn read_signature(module: &Path) -> Result<Option<Vec<u8>>> {
    let path = signature_path(module);
    match crate::limits::read_capped(&path, 64 << 10) {
        Ok(text) => {
            crate::signature::decode_signature(&text, &format!("signature {}", path.display()))
                .map(Some)
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A module file, polled for changes.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    stamp: Option<Stamp>,
    seen: Option<(Sha256, Option<Sha256>)>,
    failing: bool,
}

impl FileSource {
    /// A source for `path`. Nothing is read until the first [`FileSource::poll`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            stamp: None,
            seen: None,
            failing: false,
        }
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the file once and proposes it when it changed.
    ///
    /// Returns `Ok(None)` when the file did not change (or has the SHA-256 last seen).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; a validation error when the store
    /// refused the new version. Either way the live version keeps serving.
    pub fn poll(&mut self, store: &PolicyStore) -> Result<Option<Swap>> {
        let result = self.poll_inner(store);
        match &result {
            Err(e @ Error::Io { .. }) if !self.failing => {
                self.failing = true;
                tracing::warn!(path = %self.path.display(), error = %e.report(), "cannot read the policy file; the live version keeps serving");
            }
            Ok(_) => self.failing = false,
            Err(_) => {}
        }
        result
    }

    fn poll_inner(&mut self, store: &PolicyStore) -> Result<Option<Swap>> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let stamp = Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            signature: std::fs::metadata(signature_path(&self.path))
                .ok()
                .map(|m| (m.modified().ok(), m.len())),
        };
        if self.stamp == Some(stamp) {
            return Ok(None);
        }
        let bytes = crate::limits::read_module(&self.path)?;
        let signature = read_signature(&self.path)?;
        self.stamp = Some(stamp);
        let seen = (Sha256::of(&bytes), signature.as_deref().map(Sha256::of));
        if self.seen == Some(seen) {
            return Ok(None);
        }
        self.seen = Some(seen);
        let origin = self.path.display().to_string();
        store
            .propose_signed(&bytes, signature.as_deref(), &origin)
            .map(Some)
    }
}

/// A thread that polls a [`FileSource`] every `interval` until dropped.
#[derive(Debug)]
pub struct FileWatcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FileWatcher {
    /// Starts polling `path` for `store`. The first poll happens at once.
    ///
    /// # Errors
    /// [`Error::Io`] when the thread cannot be started.
    pub fn spawn(
        store: Arc<PolicyStore>,
        path: impl Into<PathBuf>,
        interval: Duration,
    ) -> Result<FileWatcher> {
        let mut source = FileSource::new(path);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sidekill-policy-file".into())
            .spawn(move || loop {
                // Refusals and read errors are logged by the store and the source.
                let _ = source.poll(&store);
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            })
            .map_err(|e| Error::io("sidekill-policy-file thread", e))?;
        Ok(FileWatcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
