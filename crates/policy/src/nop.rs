//! The nop image and what swapping a sidecar's image for it does.
//!
//! Image swap is the method Tekton uses (tektoncd/pipeline `pkg/pod/entrypoint.go`
//! `StopSidecars`): a JSON patch of `spec.containers[i].image`, one of the few pod fields an
//! update may change (kubernetes `pkg/apis/core/validation/validation.go`
//! `ValidatePodUpdate`). The kubelet hashes a container's name and image
//! (`pkg/kubelet/container/helpers.go`), sees the change and restarts the container whatever
//! the restart policy (`pkg/kubelet/kuberuntime/kuberuntime_manager.go` `computePodActions`):
//! it runs the preStop hook, stops the old container through the runtime (SIGTERM, the grace
//! period, SIGKILL, `kuberuntime_container.go` `killContainer`), then starts the new image
//! with the container's unchanged `command`, `args`, env and volume mounts.
//!
//! sidekill's nop is one static binary that exits 0 whatever its argv, placed at every path
//! of [`NOP_PATHS`] so that a container whose `command[0]` is one of them still exits 0
//! instead of failing to start (tektoncd/pipeline#4889, #7439), and so that a common
//! entrypoint never runs a real program that keeps the sidecar alive (tektoncd/pipeline#1347).

use alloc::format;
use alloc::string::String;

use crate::pod::Container;

/// Every path at which the nop image holds the nop binary. The image's ENTRYPOINT is the
/// first; the others are the entrypoints sidecars commonly set as `command[0]`: shells and
/// init wrappers, and the programs of the sidecars the presets know. The image builder reads
/// this list from `sidekill_policy_info` (`nopPaths`), so the policy's prediction and the
/// image agree.
pub const NOP_PATHS: [&str; 27] = [
    "/nop",
    "/bin/sh",
    "/bin/bash",
    "/bin/ash",
    "/bin/dash",
    "/bin/busybox",
    "/busybox/sh",
    "/busybox/busybox",
    "/usr/bin/env",
    "/bin/sleep",
    "/usr/bin/sleep",
    "/bin/tail",
    "/usr/bin/tail",
    "/sbin/tini",
    "/usr/bin/tini",
    "/tini",
    "/usr/bin/dumb-init",
    "/usr/local/bin/pilot-agent",
    "/usr/local/bin/envoy",
    "/usr/bin/envoy",
    "/usr/lib/linkerd/linkerd2-proxy-identity",
    "/usr/lib/linkerd/linkerd2-proxy",
    "/cloud-sql-proxy",
    "/cloud_sql_proxy",
    "/bin/vault",
    "/usr/bin/kuma-dp",
    "/usr/bin/vault",
];

/// The nop image's `PATH` (its image config's `Env`): the directories a bare `command[0]`
/// is looked up in when the container does not set `PATH` itself.
pub const NOP_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the swapped container is predicted to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapExit {
    /// The nop runs and exits 0.
    Zero(String),
    /// The container fails to start: the runtime reports a non-zero code (1, or 128 on some
    /// runtimes), and under `restartPolicy: Never` the pod fails.
    Fails(String),
    /// The program that runs is not known.
    Unknown(String),
}

/// Predicts the exit of a container once its image is the nop.
pub fn swap_exit(c: &Container) -> SwapExit {
    let Some(first) = c.command.first() else {
        return SwapExit::Zero("the container sets no `command`, so the nop image's entrypoint runs, and it exits 0 whatever the container's `args`".into());
    };
    let resolved = if first.contains('/') {
        Some(String::from(first.as_str()))
    } else {
        let path = c.env_value("PATH").unwrap_or(NOP_PATH_ENV);
        path.split(':')
            .map(|dir| format!("{}/{first}", dir.trim_end_matches('/')))
            .find(|candidate| NOP_PATHS.contains(&candidate.as_str()))
    };
    match resolved {
        // A file on a volume survives the swap (volume mounts are unchanged) and runs: what it
        // does, and which interpreter its shebang names, is not known (tektoncd/pipeline#7439).
        Some(path) if under_mount(c, &path) => SwapExit::Unknown(format!("`command[0]` `{path}` lies under a volume mount, which the swapped container keeps: that file runs, not the nop, and what it does is not known")),
        Some(path) if NOP_PATHS.contains(&path.as_str()) => SwapExit::Zero(format!("`command[0]` `{path}` is one of the nop image's paths, so the nop runs and exits 0")),
        _ if first.contains('/') && under_mount(c, first) => SwapExit::Unknown(format!("`command[0]` `{first}` lies under a volume mount, which the swapped container keeps: that file runs, not the nop, and what it does is not known")),
        _ => SwapExit::Fails(format!("`command[0]` `{first}` does not exist in the nop image: the swapped container fails to start, the runtime reports a non-zero exit (1, or 128 on some runtimes; tektoncd/pipeline#4889, #7439)")),
    }
}

fn under_mount(c: &Container, path: &str) -> bool {
    c.mount_paths.iter().any(|m| {
        let m = m.trim_end_matches('/');
        !m.is_empty()
            && path
                .strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn container(command: &[&str], mounts: &[&str]) -> Container {
        Container {
            command: command.iter().map(|s| String::from(*s)).collect(),
            mount_paths: mounts.iter().map(|s| String::from(*s)).collect(),
            ..Container::default()
        }
    }

    #[test]
    fn nop_paths_are_absolute_unique_and_on_the_path_env() {
        for (i, path) in NOP_PATHS.iter().enumerate() {
            assert!(path.starts_with('/'), "{path}");
            assert!(!NOP_PATHS[..i].contains(path), "{path} twice");
        }
        // The ENTRYPOINT first: the image builder reads it from nopPaths[0].
        assert_eq!(NOP_PATHS[0], "/nop");
        assert!(NOP_PATH_ENV.split(':').all(|d| d.starts_with('/')));
    }

    #[test]
    fn no_command_runs_the_nop() {
        assert!(matches!(swap_exit(&container(&[], &[])), SwapExit::Zero(_)));
    }

    #[test]
    fn a_nop_path_or_a_bare_name_found_on_path_exits_zero() {
        assert!(matches!(
            swap_exit(&container(&["/bin/sh", "-c", "x"], &[])),
            SwapExit::Zero(_)
        ));
        assert!(matches!(
            swap_exit(&container(&["sleep", "1"], &[])),
            SwapExit::Zero(_)
        ));
    }

    #[test]
    fn another_program_fails_to_start() {
        assert!(matches!(
            swap_exit(&container(&["/usr/bin/python3"], &[])),
            SwapExit::Fails(_)
        ));
        assert!(matches!(
            swap_exit(&container(&["python3"], &[])),
            SwapExit::Fails(_)
        ));
    }

    #[test]
    fn a_program_on_a_volume_is_unknown() {
        let c = container(&["/tekton/scripts/sidecar-script-0"], &["/tekton/scripts"]);
        assert!(matches!(swap_exit(&c), SwapExit::Unknown(_)));
        // A volume at /bin hides the nop's /bin/sh.
        assert!(matches!(
            swap_exit(&container(&["/bin/sh"], &["/bin"])),
            SwapExit::Unknown(_)
        ));
        // A mount at /tekton/scriptsX is not a parent of /tekton/scripts.
        let c = container(&["/tekton/scripts/x"], &["/tekton/scriptsX"]);
        assert!(matches!(swap_exit(&c), SwapExit::Fails(_)));
    }

    #[test]
    fn a_container_path_env_decides_bare_names() {
        let mut c = container(&["sh"], &[]);
        c.env = vec![(String::from("PATH"), String::from("/opt/bin"))];
        assert!(matches!(swap_exit(&c), SwapExit::Fails(_)));
    }
}
