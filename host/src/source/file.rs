//! A policy module file, watched by polling.
//!
//! Each poll reads the file's metadata (following symlinks, so a ConfigMap volume's
//! `..data` swap is seen). When the modification time or the size changed, the file is
//! read and hashed; when the SHA-256 differs from the last one seen, the bytes are
//! proposed to the [`PolicyStore`]. A refused version is not proposed again until the
//! file changes. A missing or unreadable file is logged once and the live version keeps
//! serving.
//!
//! Write a new module with write-to-temporary-then-rename: a poll that reads a
//! half-written file gets a refused candidate (logged), and the next change is picked up.

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
}

/// A module file, polled for changes.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    stamp: Option<Stamp>,
    seen: Option<Sha256>,
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
        };
        if self.stamp == Some(stamp) {
            return Ok(None);
        }
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        self.stamp = Some(stamp);
        let sha256 = Sha256::of(&bytes);
        if self.seen == Some(sha256) {
            return Ok(None);
        }
        self.seen = Some(sha256);
        let origin = self.path.display().to_string();
        store.propose(&bytes, &origin).map(Some)
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
