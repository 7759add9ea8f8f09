//! The `sidekill-testcluster` binary, run for real in a temporary folder.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{raw_get, require_root, standin};

const BIN: &str = env!("CARGO_BIN_EXE_sidekill-testcluster");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_pods_writes_a_kubeconfig_and_cleans_up_on_sigterm() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: cli-pod}\nspec:\n  containers:\n  - {name: c, image: alpine, command: [sleep, '987654']}\n",
    )
    .expect("write pods");
    let kubeconfig = dir.path().join("kc");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--pods")
        .arg(&pods)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--standin")
        .arg(standin())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server starts")
        .expect("read")
        .unwrap_or_default();
    let base = first
        .split_whitespace()
        .nth(1)
        .expect("serving URL")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let kc = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    assert!(kc.contains(&format!("server: {base}")), "{kc}");
    let (code, body) = raw_get(&base, "/api/v1/namespaces/default/pods").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"name\":\"cli-pod\""), "{body}");
    let mut running = false;
    for _ in 0..250 {
        if sleeping_pids().next().is_some() {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the pod's process started");

    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        .expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM the server");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server stops")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        sleeping_pids().count(),
        0,
        "no container process outlives the server"
    );
}

/// Processes running `sleep 987654` (the CLI test's container).
fn sleeping_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            cmd == b"sleep\0987654\0"
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_root_it_names_the_missing_privilege() {
    require_root(); // to drop it with setpriv
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--kubeconfig",
            "/tmp/never-written-kubeconfig",
        ])
        .output()
        .await
        .expect("run as nobody");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_SYS_ADMIN") && err.contains("run it as root"),
        "{err}"
    );
}
