//! How to start a cluster ([`ClusterConfig`]) and where its binaries are found.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// How to start a cluster. `Default` gives an ephemeral port and a temporary state folder.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one. Default 0.
    pub port: u16,
    /// Folder for the kubeconfig, the materialised images and container logs. Default: a new
    /// temporary folder, removed on shutdown.
    pub state_dir: Option<PathBuf>,
    /// Where to write the kubeconfig. Default: `STATE_DIR/kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// The `sidekill-standin` binary. Default: `$SIDEKILL_TESTCLUSTER_BIN_DIR/sidekill-standin`,
    /// else next to the current executable or in its parent folder (cargo's `deps/` layout).
    pub standin: Option<PathBuf>,
    /// The real `sidekill-quitter` binary (crates/quitter) behind the `sidekill-nop` and
    /// `sidekill-quitter` images. Default: `$SIDEKILL_QUITTER`, else
    /// `$SIDEKILL_TESTCLUSTER_BIN_DIR/sidekill-quitter`, else next to the current executable or
    /// in its parent folder (so `cargo build -p sidekill-quitter` in the same target folder is
    /// enough). A path given here or in `SIDEKILL_QUITTER` that is not a file fails
    /// [`TestCluster::start`](crate::TestCluster::start) with [`Error::QuitterMissing`]; when no default is found the
    /// cluster starts and those two images answer `ErrImagePull`, saying how to provide it.
    pub quitter: Option<PathBuf>,
    /// A folder with an `images.yaml` to use instead of the built-in catalogue. Default none.
    pub images_dir: Option<PathBuf>,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK. Default 1 s.
    pub bookmark_interval: Duration,
    /// How many changes per kind a watch can resume over before it gets 410. Default 1000.
    pub history: usize,
    /// First back-off before a container restart (doubling, at most 8×). Default 1 s.
    pub restart_backoff: Duration,
    /// The bearer token clients must send. Default: a random one.
    pub token: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            port: 0,
            state_dir: None,
            kubeconfig: None,
            standin: None,
            quitter: None,
            images_dir: None,
            bookmark_interval: Duration::from_secs(1),
            history: 1000,
            restart_backoff: Duration::from_secs(1),
            token: None,
        }
    }
}

/// Where a binary of the test cluster is looked for when no path names it:
/// `$SIDEKILL_TESTCLUSTER_BIN_DIR/NAME`, then next to the current executable, then in its parent
/// folder (cargo's `deps/` layout).
fn default_places(name: &str) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Ok(dir) = std::env::var("SIDEKILL_TESTCLUSTER_BIN_DIR") {
        places.push(Path::new(&dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            places.push(dir.join(name));
            if let Some(up) = dir.parent() {
                places.push(up.join(name));
            }
        }
    }
    places
}

/// The first of `places` that is a file, made absolute.
fn first_file(places: &[PathBuf]) -> Option<PathBuf> {
    places
        .iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// The stand-in binary: the configured path, else the first default place that holds it.
pub(crate) fn find_standin(configured: Option<&Path>) -> Result<PathBuf> {
    let name = "sidekill-standin";
    let candidates = match configured {
        Some(p) => vec![p.to_path_buf()],
        None => default_places(name),
    };
    first_file(&candidates).ok_or_else(|| Error::StandinMissing {
        path: candidates
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(name)),
    })
}

/// The quitter binary: the configured path or `SIDEKILL_QUITTER` (which must exist), else the
/// first of the default places that holds it, else none.
pub(crate) fn find_quitter(configured: Option<&Path>) -> Result<Option<PathBuf>> {
    let named = configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SIDEKILL_QUITTER").map(PathBuf::from));
    if let Some(p) = named {
        return first_file(std::slice::from_ref(&p))
            .map(Some)
            .ok_or(Error::QuitterMissing { path: p });
    }
    Ok(first_file(&default_places("sidekill-quitter")))
}
