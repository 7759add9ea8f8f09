//! `sidekill demo`: the controller against a local test cluster whose containers are real
//! processes, on sample pods that show every way a sidecar stops or does not.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use sidekill_testcluster::{ClusterConfig, TestCluster};

use super::controller::{start, terminated, PolicySource, Setup};
use super::stop::{boxed, client, render};
use super::{runtime, Context, Exit};
use crate::controller;
use crate::error::{Error, Result};
use crate::exec::{self, PodReport};
use crate::{embedded, PolicyStore};

/// The sample pods (`host/demo/pods.yaml`).
const PODS: &str = include_str!("../../demo/pods.yaml");

/// `sidekill-quitter` (crates/quitter), built by `build.rs`: the test cluster's nop and
/// quitter images run it, as the real images do.
const QUITTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sidekill-quitter"));

/// Writes the quitter binary into `dir`, executable, for the test cluster's images.
fn write_quitter(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("sidekill-quitter");
    std::fs::write(&path, QUITTER)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

pub(super) const DEMO_ABOUT: &str = "\
Run the controller against a local test cluster and watch it stop sidecars, with no
cluster of your own.

The demo starts sidekill's test API server on 127.0.0.1 (the Kubernetes wire protocol:
watch, patch, events, pods/exec over WebSocket), whose containers are real processes,
each in its own PID and mount namespaces, so PID 1 follows the kernel's rules. It creates
eight sample pods whose main containers exit after two seconds, with the sidecars found in
batch pods: an Istio proxy (stopped through pilot-agent's /quitquitquit), a shell-based
sidecar, one that ignores SIGTERM (SIGKILL after the grace period, through a `pidof`
annotation), one whose PID 1 is a wrapper script (the `pidof entrypoint.sh` annotation),
one without /bin/sh and a PID 1 without a signal handler (nothing sent from inside stops
them: the kernel ignores even SIGKILL from inside a PID namespace), and two Job pods with
a Cloud SQL proxy, which exits 143 on SIGTERM and so would fail its Job: one is stopped
through the proxy's /quitquitquit (exit 0). The others are stopped by image swap: the
container's image is patched to sidekill's nop, the kubelet stops it from outside and
starts the nop, which exits 0. The summary says which method each plan chose.

It then runs the controller, with the built-in policy, exactly as `sidekill controller`
runs in a cluster, and prints each pod's report as its plan finishes: every step, its
exit status, how long each sidecar took to terminate, and the diagnostics with fixes for
those left running. --keep leaves the cluster up afterwards for kubectl.

It needs root (CAP_SYS_ADMIN for the PID and mount namespaces), unshare and nsenter.";

pub(super) const DEMO_HELP: &str = "\
Exit codes:
  0  every sample pod's plan was carried out and every sidecar stopped
  1  a sidecar was left running, or a pod did not end as its plan predicted
  2  the demo could not run: not root, unshare or nsenter missing, or a plan did not
     finish within --timeout-seconds";

/// Options of `sidekill demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Give up when the plans have not all finished after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout_seconds: u64,

    /// Keep the test cluster running afterwards (until Ctrl-C), for kubectl
    #[arg(long)]
    pub keep: bool,
}

fn demo_error(message: impl Into<String>) -> Error {
    Error::Demo {
        message: message.into(),
    }
}

/// The sample pods, with free ports for the Istio and Cloud SQL proxy stand-ins' admin
/// endpoints (every container shares the machine's network).
fn sample_pods() -> Result<String> {
    let free = |what: &str| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::io(format!("choosing a port for the {what} stand-in"), e))
    };
    let istio = free("Istio")?;
    let csql = free("Cloud SQL proxy")?;
    Ok(PODS
        .replace("\"ISTIO_ADMIN_PORT\"", &format!("\"{istio}\""))
        .replace("\"CSQL_ADMIN_PORT\"", &format!("\"{csql}\"")))
}

pub(super) fn run(ctx: &mut Context<'_>, args: &DemoArgs) -> Result<Exit> {
    if !rustix::process::geteuid().is_root() {
        return Err(demo_error(
            "sidekill demo needs root: each container is a real process in its own PID and \
             mount namespaces (unshare and nsenter need CAP_SYS_ADMIN). Run it with sudo, or \
             try `sidekill plan FILE`, which needs no privilege",
        ));
    }
    let standin = std::env::current_exe()
        .map_err(|e| Error::io("finding the sidekill binary for the stand-in images", e))?;
    let store = Arc::new(PolicyStore::new(
        runtime(ctx.global)?,
        None,
        embedded::BYTES,
        embedded::ORIGIN,
    )?);
    let pods = sample_pods()?;
    let rt = crate::cli::async_runtime()?;
    let reports = rt.block_on(async {
        let bin = tempfile::Builder::new()
            .prefix("sidekill-demo-")
            .tempdir()
            .map_err(|e| Error::io("making a folder for the quitter binary", e))?;
        let cluster = TestCluster::start(ClusterConfig {
            standin: Some(standin),
            quitter: Some(write_quitter(bin.path())?),
            bookmark_interval: Duration::from_millis(500),
            ..ClusterConfig::default()
        })
        .await
        .map_err(|e| demo_error(format!("the test cluster did not start: {e}")))?;
        let outcome = demo(ctx, args, &cluster, store, &pods).await;
        if args.keep && outcome.is_ok() {
            let _ = writeln!(
                ctx.out,
                "\nThe test cluster keeps running: KUBECONFIG={} kubectl get pods\nCtrl-C stops it.",
                cluster.kubeconfig_path().display()
            );
            let _ = ctx.out.flush();
            terminated().await;
        }
        cluster.shutdown().await;
        outcome
    })?;
    if ctx.json {
        let v = serde_json::to_value(&reports).unwrap_or_default();
        ctx.json_out(&v)?;
    }
    let failed = reports
        .iter()
        .any(|r| r.left_running() || r.end_matches == Some(false));
    Ok(if failed { Exit::Report } else { Exit::Ok })
}

async fn demo(
    ctx: &mut Context<'_>,
    args: &DemoArgs,
    cluster: &TestCluster,
    store: Arc<PolicyStore>,
    pods: &str,
) -> Result<Vec<PodReport>> {
    let client = client(Some(cluster.kubeconfig_path()))
        .await
        .map_err(boxed)?;
    let started = start(Setup {
        client,
        store,
        source: PolicySource::Embedded,
        executor: exec::Options {
            settle: Duration::from_secs(2),
            ..exec::Options::default()
        },
        controller: controller::Options {
            identity: "sidekill-demo".into(),
            // Eight pods and eight workers: every wait is waited in place, so that each
            // report times its sidecar's stop from the first signal.
            hold: Duration::from_secs(60),
            ..controller::Options::default()
        },
        listen: "127.0.0.1:0"
            .parse()
            .map_err(|_| demo_error("the demo's listen address"))?,
    })?;
    let mut reports_rx = started.controller.reports();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = Arc::clone(&started.controller);
    let running = tokio::spawn(async move {
        controller
            .run(
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(5),
            )
            .await
    });
    let created = cluster
        .apply_yaml(pods)
        .await
        .map_err(|e| demo_error(format!("creating the sample pods: {e}")))?;
    let t0 = Instant::now();
    if !ctx.json {
        let _ = writeln!(
            ctx.out,
            "{} test API server {} (kubeconfig {})\n{} controller running; metrics on http://{}/metrics\n{} {} sample pods created; their main containers exit after 2 s\n",
            ctx.style.bold("▸"),
            cluster.base_url(),
            cluster.kubeconfig_path().display(),
            ctx.style.bold("▸"),
            started.address,
            ctx.style.bold("▸"),
            created.len()
        );
        let _ = ctx.out.flush();
    }
    let mut reports: BTreeMap<String, PodReport> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_seconds);
    while reports.len() < created.len() {
        let report = match tokio::time::timeout_at(deadline, reports_rx.recv()).await {
            Ok(Ok(r)) => r,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) => break,
            Err(_) => {
                let waiting: Vec<&str> = created
                    .iter()
                    .map(|(_, _, name)| name.as_str())
                    .filter(|n| !reports.contains_key(*n))
                    .collect();
                let _ = stop_tx.send(());
                return Err(demo_error(format!(
                    "no plan finished within {} s for: {} (SIDEKILL_LOG=debug shows why)",
                    args.timeout_seconds,
                    waiting.join(", ")
                )));
            }
        };
        if !ctx.json {
            let _ = writeln!(
                ctx.out,
                "{} after {:.1} s\n{}",
                ctx.style.dim("──"),
                t0.elapsed().as_secs_f64(),
                render(&report, &ctx.style)
            );
            let _ = ctx.out.flush();
        }
        reports.insert(report.name.clone(), (*report).clone());
    }
    let _ = stop_tx.send(());
    let _ = running.await;
    if !ctx.json {
        let _ = writeln!(ctx.out, "{}", summary(&reports, &ctx.style));
    }
    Ok(reports.into_values().collect())
}

/// One line per sidecar: what happened, how fast, and the result next to the prediction: the
/// sidecar's exit code and the pod's end (`Succeeded`, `Failed`, `NeverCompletes`).
fn summary(reports: &BTreeMap<String, PodReport>, style: &crate::render::Style) -> String {
    use std::fmt::Write as _;
    let predicted = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "?".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "{}", style.bold("Summary"));
    let _ = writeln!(
        s,
        "  {:<26} {:<16} {:<11} {:<11} {:<19} {:<16} {:<32} after first signal",
        "pod", "sidecar", "method", "plan", "result", "exit (predicted)", "pod end (predicted)"
    );
    for r in reports.values() {
        let end = r.end.as_deref().unwrap_or("-");
        let pod_predicted = r.predicted_phase().unwrap_or("?");
        let mark = match r.end_matches {
            Some(true) => " ✓",
            Some(false) => " ✗",
            None => "",
        };
        let pod_end = format!("{end} ({pod_predicted}){mark}");
        for c in &r.containers {
            let result = c.verdict.name();
            let exit = format!(
                "{} ({})",
                c.exit_code
                    .map_or_else(|| "-".to_owned(), |code| code.to_string()),
                predicted(&c.predicted_exit)
            );
            let after = c
                .stopped_after_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
            let _ = writeln!(
                s,
                "  {:<26} {:<16} {:<11} {:<11} {:<19} {:<16} {:<32} {after}",
                r.name,
                c.container,
                c.method.as_deref().unwrap_or("-"),
                c.planned,
                result,
                exit,
                pod_end
            );
        }
    }
    s
}
