//! Container processes: `unshare` makes each container's PID and mount namespace, `nsenter`
//! runs exec'd commands inside it, and `setpriv --pdeathsig KILL` ties both to the server.
//!
//! Every process is spawned from one long-lived thread (the [`Spawner`]), because the kernel
//! sends the parent-death signal when the *thread* that forked a child exits: spawning from a
//! tokio worker or blocking thread could kill containers when that thread is retired. When the
//! server dies, the spawner thread dies with it, every `unshare` gets SIGKILL, `--kill-child`
//! SIGKILLs its PID 1, and the kernel kills the rest of the namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The util-linux tools containers are made with, resolved once at start.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub setpriv: PathBuf,
    pub unshare: PathBuf,
    pub nsenter: PathBuf,
}

fn which(tool: &'static str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .ok_or(Error::MissingTool { tool })
}

impl Tools {
    /// Finds the tools on PATH.
    pub fn find() -> Result<Tools> {
        Ok(Tools {
            setpriv: which("setpriv")?,
            unshare: which("unshare")?,
            nsenter: which("nsenter")?,
        })
    }
}

/// Checks that this process may make PID and mount namespaces, by making one.
pub(crate) fn check_privilege(tools: &Tools) -> Result<()> {
    let euid = rustix::process::geteuid();
    let out = std::process::Command::new(&tools.unshare)
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(Error::NotPrivileged {
            reason: format!(
                "euid {}, `unshare --pid --fork --mount-proc true` failed: {}",
                euid.as_raw(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Err(e) => Err(Error::NotPrivileged {
            reason: format!("euid {}, could not run unshare: {e}", euid.as_raw()),
        }),
    }
}

type SpawnRequest = (Command, oneshot::Sender<std::io::Result<Child>>);

/// Spawns processes from one dedicated thread (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    tx: std::sync::mpsc::Sender<SpawnRequest>,
}

impl Spawner {
    /// Starts the spawner thread in the current tokio runtime.
    pub fn start() -> Result<Spawner> {
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testcluster-spawner".into())
            .spawn(move || {
                let _guard = handle.enter();
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map_err(|e| Error::io("starting the spawner thread", e))?;
        Ok(Spawner { tx })
    }

    /// Spawns `cmd` from the spawner thread.
    pub async fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .map_err(|_| std::io::Error::other("the spawner thread has stopped"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the spawner thread has stopped"))?
    }
}

/// The children of `pid` (from `/proc/PID/task/PID/children`, or a scan of `/proc`).
pub(crate) fn children_of(pid: i32) -> Vec<i32> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
    }
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // Field 4 (ppid) follows the `(comm)` field, which may contain spaces.
                let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                if after
                    .split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse::<i32>().ok())
                    == Some(pid)
                {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Whether `pid` is alive (not gone and not a zombie).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Sends `sig` to `pid` from outside its namespace. Errors (gone already) are ignored.
pub(crate) fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// How a container process ended, as Kubernetes reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The exit code (128 + signal for a signal death).
    pub code: i32,
    /// The signal, when it died of one.
    pub signal: Option<i32>,
}

/// One running container: the `unshare` launcher and its child, the container's PID 1.
#[derive(Debug)]
pub(crate) struct Launched {
    pub child: Child,
    /// Host PID of the launcher (`setpriv` exec'd into `unshare`).
    pub launcher: i32,
    /// Host PID of the container's PID 1, once it has exec'd the container command.
    pub pid1: Option<i32>,
    pub log: PathBuf,
}

/// What to run in a new container.
pub(crate) struct LaunchSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub root: Option<&'a Path>,
    pub workdir: &'a str,
    pub log: &'a Path,
    /// For an ephemeral container with a target: the host PID of the target's PID 1, whose
    /// PID namespace it joins instead of making its own.
    pub target_pid1: Option<i32>,
}

/// Starts a container: `setpriv --pdeathsig KILL -- unshare --pid --fork --mount-proc
/// --kill-child [--root R] --wd W -- argv...`, output appended to the log file.
///
/// With `target_pid1` (an ephemeral container's `targetContainerName`), it joins that
/// container's PID namespace as containerd does for `NamespaceMode_TARGET` (the CRI's
/// `PidNamespace TARGET`): `setpriv --pdeathsig KILL -- nsenter --target=P --pid -- unshare
/// --mount-proc [--root R] --wd W -- argv...`. nsenter forks after joining, so its child is in
/// the target's namespace (never its PID 1); `unshare --mount-proc` gives it a mount
/// namespace of its own, chroots into its image's root and mounts there the `/proc` of the
/// namespace it is in, so it sees the target's processes and not the machine's. It dies with
/// the target's PID 1, as every process of a PID namespace does.
pub(crate) async fn launch(
    tools: &Tools,
    spawner: &Spawner,
    spec: LaunchSpec<'_>,
) -> Result<Launched> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log)
        .map_err(|e| Error::io(format!("opening {}", spec.log.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the log file", e))?;
    let mut cmd = Command::new(&tools.setpriv);
    cmd.arg("--pdeathsig").arg("KILL").arg("--");
    match spec.target_pid1 {
        Some(target) => {
            cmd.arg(&tools.nsenter)
                .arg(format!("--target={target}"))
                .args(["--pid", "--"])
                .arg(&tools.unshare)
                .arg("--mount-proc");
        }
        None => {
            cmd.arg(&tools.unshare)
                .args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
        }
    }
    if let Some(root) = spec.root {
        cmd.arg(format!("--root={}", root.display()));
    }
    cmd.arg(format!("--wd={}", spec.workdir))
        .arg("--")
        .args(spec.argv)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
    let child = spawner
        .spawn(cmd)
        .await
        .map_err(|e| Error::io("spawning unshare", e))?;
    let launcher = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| Error::io("spawning unshare", std::io::Error::other("no pid")))?;
    let mut launched = Launched {
        child,
        launcher,
        pid1: None,
        log: spec.log.to_path_buf(),
    };
    launched.pid1 = find_pid1(tools, launcher).await;
    Ok(launched)
}

/// Waits (up to 5 s) for the launcher's child to have exec'd the container command (the child
/// is `unshare`, or `nsenter` then `unshare`, until it does).
async fn find_pid1(tools: &Tools, launcher: i32) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for c in children_of(launcher) {
            let exe = std::fs::read_link(format!("/proc/{c}/exe")).ok();
            if exe
                .as_deref()
                .is_some_and(|e| e != tools.unshare.as_path() && e != tools.nsenter.as_path())
            {
                return Some(c);
            }
        }
        if !alive(launcher) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The message util-linux 2.38's `unshare` prints (then exits 1) when its child died of SIGKILL,
/// because it cannot re-raise SIGKILL on itself. Later versions die of the signal instead.
const UNSHARE_SIGKILL_QUIRK: &str = "unshare: sigprocmask unblock failed";

impl Launched {
    /// Waits for the container to end and reports its exit as Kubernetes would.
    pub async fn wait(&mut self, we_killed: bool) -> Exit {
        let status = self.child.wait().await;
        let Ok(status) = status else {
            return Exit {
                code: 255,
                signal: None,
            };
        };
        if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return Exit {
                code: 128 + sig,
                signal: Some(sig),
            };
        }
        let code = status.code().unwrap_or(255);
        if code == 1 && (we_killed || self.log_ends_with_quirk()) {
            return Exit {
                code: 137,
                signal: Some(9),
            };
        }
        Exit { code, signal: None }
    }

    fn log_ends_with_quirk(&self) -> bool {
        std::fs::read(&self.log)
            .map(|b| {
                let tail = &b[b.len().saturating_sub(400)..];
                String::from_utf8_lossy(tail).contains(UNSHARE_SIGKILL_QUIRK)
            })
            .unwrap_or(false)
    }
}

/// Whether a log line is the launcher's, not the container's.
pub(crate) fn is_launcher_noise(line: &str) -> bool {
    line.starts_with(UNSHARE_SIGKILL_QUIRK)
}

/// What to run inside a running container.
pub(crate) struct ExecSpec<'a> {
    pub pid1: i32,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub chroot: bool,
    pub stdin: bool,
}

/// Starts `nsenter --target PID1 --pid --mount [--root] --wd -- argv...` with piped streams.
pub(crate) async fn exec(
    tools: &Tools,
    spawner: &Spawner,
    spec: ExecSpec<'_>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(&tools.setpriv);
    cmd.arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(&tools.nsenter)
        .arg(format!("--target={}", spec.pid1))
        .args(["--pid", "--mount"]);
    if spec.chroot {
        cmd.arg("--root");
    }
    cmd.arg("--wd")
        .arg("--")
        .args(spec.argv)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawner.spawn(cmd).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_no_children_here() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(alive(me));
        assert!(!alive(i32::MAX));
    }
}
