//! Controller benchmarks (issue #6) on the test cluster, with real processes. Needs root.
//!
//! 1. **Latency.** `--latency-pods` Argo pods (default 50), each a `main` stand-in and a
//!    `sidecar` stand-in that obeys SIGTERM, grace period 30 s. Their main containers exit one
//!    after another, 300 ms apart, so each pod is handled on its own. Per pod: from the main
//!    container's exit (the `main: done ... (unix ms N)` line it prints as it exits) to the
//!    SIGTERM the sidecar receives (its `sidecar: got signal 15 ... (unix ms N)` line), and to
//!    the pod's completion, every container terminated, as a watch of the pods sees it (the
//!    event's arrival time). p50, p95, p99 and max, against the 30 s grace period.
//! 2. **Throughput and memory.** `--pods` pods (default 1,000: 2,000 containers, each a real
//!    process tree) whose main containers block on a FIFO until every pod runs, then all exit
//!    at once. From the first main exit to the last pod complete, in pods per second; the
//!    per-pod latencies under that burst; the controller's RSS before, during (sampled every
//!    100 ms) and after the burst, its `VmHWM`, and its CPU time. `--rounds` bursts (default 2)
//!    against the same controller, so that the second shows whether memory keeps growing; once
//!    per `--concurrency` value (default `2,8,32,128`).
//!
//! 3. **Soak** (`--soak SECONDS`, instead of 2). Bursts of `--pods` pods against one controller at the first `--concurrency`, each burst's pods deleted once
//!    complete, until the time is up; the controller's RSS after each burst. RSS is steady
//!    when the largest value of the last third of the bursts is within 10% (and at least
//!    8 MiB) of the largest of the first third (the first burst, which grows the allocator's
//!    pools, left out); otherwise the bench exits 2. `scripts/test` runs a one-minute soak of
//!    the debug build; the full hour is `-- --soak 3600`.
//!
//! Every run starts `sidekill-testcluster serve` and the real `sidekill controller` binary
//! (`--listen 127.0.0.1:0`, `--kubeconfig` of that server, `-n bench`, `--concurrency C`, and
//! `--controller-args '...'` if given) as separate processes, so the memory and CPU figures
//! are the controller's alone. The bench builds `sidekill-testcluster` first, with cargo, in
//! this bench's profile and target folder (`SIDEKILL_BENCH_BIN_DIR` names a folder holding
//! `sidekill`, `sidekill-testcluster` and `sidekill-standin` to use instead). Logs and
//! container output stay in a temporary folder, kept (and named) when a run fails or with
//! `--keep`.
//!
//! Run: `cargo bench -p sidekill --bench controller` as root (`-- quick`: 10 and 100 pods, one
//! round, one concurrency; `-- --latency-pods N --pods N --rounds N --concurrency 8,32`;
//! `--pods 0` or `--latency-pods 0` skips a part). It prints Markdown for BENCHMARKS.md on
//! stdout and progress on stderr. Exit code 2 when it cannot run (not root, a build or a
//! process that fails), when pods stop completing for 2 minutes, or when the controller's
//! counters disagree with the pods (a plan missing or failed). Under `cargo test --benches`
//! (no `--bench` argument) it does nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

#[path = "../tests/support/http_client.rs"]
mod http_client;

/// The namespace of every pod, and the only one the controller watches.
const NAMESPACE: &str = "bench";
/// `terminationGracePeriodSeconds` of every pod: what Argo or the kubelet would wait at worst.
const GRACE_SECONDS: u64 = 30;
/// Latency run: the first main container exits this long after its pod is created...
const LEAD: Duration = Duration::from_secs(5);
/// ...and each following one this much later.
const GAP: Duration = Duration::from_millis(300);
/// A throughput run fails when no pod completes for this long.
const STALL: Duration = Duration::from_secs(120);

struct Args {
    latency_pods: usize,
    pods: usize,
    rounds: usize,
    concurrency: Vec<u64>,
    controller_args: Vec<String>,
    keep: bool,
    /// Soak: bursts of `pods` (each deleted after it) against one controller for this long.
    soak: Option<Duration>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        latency_pods: 50,
        pods: 1000,
        rounds: 2,
        concurrency: vec![2, 8, 32, 128],
        controller_args: Vec::new(),
        keep: false,
        soak: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "quick" => {
                args.latency_pods = 10;
                args.pods = 100;
                args.rounds = 1;
                args.concurrency = vec![8];
            }
            "--latency-pods" => args.latency_pods = value(&a)?.parse()?,
            "--pods" => args.pods = value(&a)?.parse()?,
            "--rounds" => args.rounds = value(&a)?.parse()?,
            "--controller-args" => {
                args.controller_args = value(&a)?.split_whitespace().map(str::to_owned).collect();
            }
            "--keep" => args.keep = true,
            "--soak" => args.soak = Some(Duration::from_secs(value(&a)?.parse()?)),
            "--concurrency" => {
                args.concurrency = value(&a)?
                    .split(',')
                    .map(|c| c.trim().parse::<u64>())
                    .collect::<Result<_, _>>()?;
            }
            other => bail!(
                "unknown argument {other}: quick, --latency-pods N, --pods N, --rounds N, \
                 --concurrency N,M, --controller-args 'ARGS', --keep, --soak SECONDS"
            ),
        }
    }
    Ok(args)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// The machine and the processes.

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kb = proc_field("/proc/meminfo", "MemTotal:").unwrap_or(0);
    format!(
        "{cores} cores (nproc), {model} (/proc/cpuinfo), {:.0} GiB, Linux {}",
        mem_kb as f64 / (1 << 20) as f64,
        kernel.trim()
    )
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `Name:   N kB`-style field of a /proc file, as a number.
fn proc_field(path: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A process's memory (kB) and CPU time (user + system), from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kb: u64,
    hwm_kb: u64,
    cpu: Duration,
}

fn usage(pid: u32, ticks: u64) -> Usage {
    let status = format!("/proc/{pid}/status");
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // utime and stime are fields 14 and 15; the comm field may hold spaces.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Usage {
        rss_kb: proc_field(&status, "VmRSS:").unwrap_or(0),
        hwm_kb: proc_field(&status, "VmHWM:").unwrap_or(0),
        cpu: Duration::from_millis(cpu * 1000 / ticks.max(1)),
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

struct Bins {
    sidekill: PathBuf,
    testcluster: PathBuf,
}

/// The `sidekill` binary cargo built for this bench, and `sidekill-testcluster` built now in
/// the same profile and target folder; or both from `SIDEKILL_BENCH_BIN_DIR`.
fn binaries() -> Result<Bins> {
    if let Ok(dir) = std::env::var("SIDEKILL_BENCH_BIN_DIR") {
        return Ok(Bins {
            sidekill: Path::new(&dir).join("sidekill"),
            testcluster: Path::new(&dir).join("sidekill-testcluster"),
        });
    }
    let sidekill = PathBuf::from(env!("CARGO_BIN_EXE_sidekill"));
    let dir = sidekill
        .parent()
        .context("the sidekill binary has no folder")?;
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => "release",
    };
    let target_dir = dir.parent().context("the profile folder has no parent")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The quitter beside the test server: its nop and quitter images hold it, and the
    // embedded policy swaps a sidecar whose SIGTERM exit would fail the pod to the nop.
    eprintln!("building sidekill-testcluster and sidekill-quitter (profile {profile})...");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--profile", profile])
        .args(["-p", "sidekill-testcluster", "-p", "sidekill-quitter"])
        .args(["--bins", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("running cargo build -p sidekill-testcluster")?;
    if !status.success() {
        bail!("cargo build -p sidekill-testcluster failed ({status})");
    }
    let testcluster = dir.join("sidekill-testcluster");
    Ok(Bins {
        sidekill,
        testcluster,
    })
}

/// Reads `child`'s stdout on a thread until a line starts with `prefix`; returns that line.
/// Later lines are read and dropped, so the child never blocks on a full pipe.
fn first_line(child: &mut Child, prefix: &'static str, timeout: Duration) -> Result<String> {
    let out = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if !sent && line.starts_with(prefix) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    rx.recv_timeout(timeout)
        .map_err(|_| anyhow!("no `{prefix}` line on stdout within {timeout:?}"))
}

/// Starts `command` with its stdout piped (for [`first_line`]) and its stderr written to the
/// file `log`, where a server that does not start says why.
fn spawn_logging(command: &mut Command, log: &Path) -> Result<Child> {
    let log_file = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `sidekill-testcluster serve` in a process of its own.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
}

impl Server {
    fn start(bins: &Bins, dir: &Path) -> Result<Server> {
        let kubeconfig = dir.join("kubeconfig");
        let mut child = spawn_logging(
            Command::new(&bins.testcluster)
                .args(["serve", "--port", "0", "--kubeconfig"])
                .arg(&kubeconfig)
                .arg("--state-dir")
                .arg(dir.join("state")),
            &dir.join("testcluster.log"),
        )?;
        let line = first_line(&mut child, "serving ", Duration::from_secs(60));
        let server = Server { child, kubeconfig };
        line.with_context(|| {
            format!(
                "sidekill-testcluster serve did not start (see {})",
                dir.join("testcluster.log").display()
            )
        })?;
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server SIGKILLs every container on SIGTERM.
        terminate(&mut self.child, Duration::from_secs(30));
    }
}

/// `sidekill controller` in a process of its own.
struct ControllerProcess {
    child: Child,
    endpoints: SocketAddr,
}

impl ControllerProcess {
    fn start(
        bins: &Bins,
        kubeconfig: &Path,
        concurrency: u64,
        extra: &[String],
        log: &Path,
    ) -> Result<Self> {
        let mut child = spawn_logging(
            Command::new(&bins.sidekill)
                .args(["controller", "--kubeconfig"])
                .arg(kubeconfig)
                .args(["--listen", "127.0.0.1:0", "--identity", "sidekill-bench"])
                .args(["--namespace", NAMESPACE, "--concurrency"])
                .arg(concurrency.to_string())
                .args(extra)
                .env_remove("KUBECONFIG"),
            log,
        )?;
        let line = first_line(&mut child, "http://", Duration::from_secs(120));
        let mut this = ControllerProcess {
            child,
            endpoints: "127.0.0.1:0".parse()?,
        };
        let line = line.with_context(|| {
            format!("sidekill controller did not start (see {})", log.display())
        })?;
        this.endpoints = line
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("the controller's address: {line}"))?;
        Ok(this)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An endpoint's status code and body.
    fn get(&self, path: &str) -> Result<(u16, String)> {
        let answer = http_client::get(self.endpoints, "bench", &format!("/{path}"))?;
        Ok((answer.status, answer.body().to_owned()))
    }

    async fn ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if matches!(self.get("readyz"), Ok((200, _))) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("the controller was not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics` as `series -> value` (`name{labels}` as written).
    /// `/metrics` once no plan is in flight any more and every pod has a plan done (a pod
    /// is complete a moment before its plan's report), or after 30 s.
    async fn settled_metrics(&self, n: usize) -> HashMap<String, f64> {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            let get = |s: &str| m.get(s).copied().unwrap_or(0.0);
            // Done plans: a wait handed back reports a plan too, before its pod's last one.
            let plans = get("sidekill_plans_total{outcome=\"done\"}");
            if (get("sidekill_pods_in_flight") == 0.0 && plans >= n as f64)
                || start.elapsed() > Duration::from_secs(30)
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn metrics(&self) -> HashMap<String, f64> {
        let body = self.get("metrics").map(|(_, b)| b).unwrap_or_default();
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and what a watch sees of them.

fn pod(name: &str, main: serde_json::Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"workflows.argoproj.io/workflow": "bench"},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [main, {"name": "proxy", "image": "sidekill.test/sidecar"}],
        },
    }))?)
}

/// When the watch first saw each state of a pod (unix ms of the event's arrival).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// Every container running.
    running: Option<u64>,
    /// The main container terminated.
    main_exited: Option<u64>,
    /// Every container terminated: the pod is complete.
    complete: Option<u64>,
}

type Book = Arc<Mutex<HashMap<String, Seen>>>;

fn terminated(pod: &Pod) -> (usize, usize, usize) {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let running = statuses
        .iter()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .count();
    let done = statuses
        .iter()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        .count();
    let main = statuses
        .iter()
        .filter(|c| c.name == "main")
        .filter(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        .count();
    (running, done, main)
}

/// Watches the bench namespace and notes, per pod, when each state was first seen.
fn spawn_watch(client: kube::Client, book: Book) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("bench watch: {e} (the watcher retries)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let at = now_ms();
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let (running, done, main) = terminated(&pod);
            let mut book = book.lock().unwrap_or_else(|p| p.into_inner());
            let seen = book.entry(name).or_default();
            if running == 2 && seen.running.is_none() {
                seen.running = Some(at);
            }
            if main == 1 && seen.main_exited.is_none() {
                seen.main_exited = Some(at);
            }
            if done == 2 && seen.complete.is_none() {
                seen.complete = Some(at);
            }
        }
    })
}

fn count(book: &Book, f: impl Fn(&String, &Seen) -> bool) -> usize {
    book.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(name, seen)| f(name, seen))
        .count()
}

/// Waits until `n` pods satisfy `f`; fails when none more does for `stall`.
async fn wait_for(
    book: &Book,
    n: usize,
    what: &str,
    stall: Duration,
    f: impl Fn(&String, &Seen) -> bool,
) -> Result<()> {
    let mut last = (0, Instant::now());
    let mut said = Instant::now();
    loop {
        let k = count(book, &f);
        if k >= n {
            return Ok(());
        }
        if k > last.0 {
            last = (k, Instant::now());
        } else if last.1.elapsed() > stall {
            bail!("{what}: {k} of {n} pods, none more for {stall:?}");
        }
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!("  {what}: {k}/{n}");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create_all(api: &Api<Pod>, pods: Vec<Pod>) -> Result<()> {
    let results: Vec<_> = futures_util::stream::iter(pods)
        .map(|p| async move { api.create(&PostParams::default(), &p).await })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r.context("creating a pod")?;
    }
    Ok(())
}

/// The unix ms at the end of the first log line of a container that contains `marker`.
async fn log_ms(api: &Api<Pod>, pod: &str, container: &str, marker: &str) -> Result<u64> {
    let params = LogParams {
        container: Some(container.to_owned()),
        ..LogParams::default()
    };
    let text = api.logs(pod, &params).await?;
    text.lines()
        .find(|l| l.contains(marker))
        .and_then(|l| {
            l.rsplit_once("(unix ms ")?
                .1
                .strip_suffix(')')?
                .parse()
                .ok()
        })
        .with_context(|| format!("no `{marker} ... (unix ms N)` line in {pod}/{container}: {text}"))
}

/// Per pod: main exit, SIGTERM received by the sidecar (both from their logs), complete (watch).
#[derive(Debug, Clone, Copy)]
struct Timeline {
    exit: u64,
    sigterm: u64,
    complete: u64,
    /// The main container's termination, as the watch saw it.
    exit_seen: u64,
}

async fn timelines(api: &Api<Pod>, book: &Book, names: &[String]) -> Result<Vec<Timeline>> {
    let seen = book.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let results: Vec<Result<Timeline>> = futures_util::stream::iter(names)
        .map(|name| {
            let seen = seen.get(name).copied().unwrap_or_default();
            async move {
                Ok(Timeline {
                    exit: log_ms(api, name, "main", "main: done").await?,
                    sigterm: log_ms(api, name, "proxy", "sidecar: got signal 15").await?,
                    complete: seen.complete.context("not seen complete")?,
                    exit_seen: seen.main_exited.context("main not seen terminated")?,
                })
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// p50, p95, p99 and max (nearest rank) of millisecond samples.
fn percentiles(samples: &[i64]) -> (i64, i64, i64, i64) {
    let mut v = samples.to_vec();
    v.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
        v.get(rank - 1).copied().unwrap_or(0)
    };
    (at(0.50), at(0.95), at(0.99), v.last().copied().unwrap_or(0))
}

fn row(what: &str, samples: &[i64]) -> String {
    let (p50, p95, p99, max) = percentiles(samples);
    let grace = (GRACE_SECONDS * 1000) as f64;
    format!(
        "| {what} | {p50} | {p95} | {p99} | {max} | {:.1}% |",
        max as f64 / grace * 100.0
    )
}

fn latency_table(t: &[Timeline]) -> String {
    let d = |f: fn(&Timeline) -> i64| t.iter().map(f).collect::<Vec<_>>();
    [
        "| From the main container's exit to | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | max / 30 s grace |"
            .to_owned(),
        "| --- | ---: | ---: | ---: | ---: | ---: |".to_owned(),
        row(
            "its termination in the pod's status (test server; watch)",
            &d(|t| t.exit_seen as i64 - t.exit as i64),
        ),
        row(
            "SIGTERM received by the sidecar",
            &d(|t| t.sigterm as i64 - t.exit as i64),
        ),
        row(
            "pod complete (every container terminated; watch)",
            &d(|t| t.complete as i64 - t.exit as i64),
        ),
    ]
    .join("\n")
}

/// Checks the controller's counters: `n` plans done, `n` sidecars stopped, no failure.
fn check_metrics(m: &HashMap<String, f64>, n: usize) -> Vec<String> {
    let get = |s: &str| m.get(s).copied().unwrap_or(0.0);
    let mut problems = Vec::new();
    let done = get("sidekill_plans_total{outcome=\"done\"}");
    let stopped = get("sidekill_containers_total{verdict=\"stopped\"}");
    if done as usize != n || stopped as usize != n {
        problems.push(format!(
            "{done} plans done and {stopped} sidecars stopped, for {n} pods"
        ));
    }
    for (series, v) in m {
        if series.starts_with("sidekill_failures_total") && *v > 0.0 {
            problems.push(format!("{series} {v}"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The two parts.

struct Run {
    dir: tempfile::TempDir,
    server: Server,
    controller: ControllerProcess,
    client: kube::Client,
    book: Book,
    watch: tokio::task::JoinHandle<()>,
}

impl Run {
    async fn start(bins: &Bins, concurrency: u64, extra: &[String]) -> Result<Run> {
        let dir = tempfile::Builder::new()
            .prefix("sidekill-bench-")
            .tempdir()?;
        let server = Server::start(bins, dir.path())?;
        let controller = ControllerProcess::start(
            bins,
            &server.kubeconfig,
            concurrency,
            extra,
            &dir.path().join("controller.log"),
        )?;
        controller.ready(Duration::from_secs(60)).await?;
        let client = sidekill::cli::stop::client(Some(&server.kubeconfig))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let book = Book::default();
        let watch = spawn_watch(client.clone(), Arc::clone(&book));
        Ok(Run {
            dir,
            server,
            controller,
            client,
            book,
            watch,
        })
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Stops both processes; keeps the folder (logs, container output) when asked to, and
    /// says where it is.
    fn finish(self, keep: bool) {
        self.watch.abort();
        drop(self.controller);
        drop(self.server);
        if keep {
            let kept = self.dir.keep();
            eprintln!("logs kept in {}", kept.display());
        }
    }
}

/// A part's report, and whether the controller's counters disagree with it.
struct Report {
    text: String,
    problems: bool,
}

async fn latency(bins: &Bins, args: &Args) -> Result<Report> {
    let n = args.latency_pods;
    eprintln!("latency: {n} pods, main containers exiting {GAP:?} apart");
    let run = Run::start(bins, 8, &args.controller_args).await?;
    let result = latency_run(&run, n).await;
    run.finish(args.keep || result.as_ref().map_or(true, |r| r.problems));
    result
}

async fn latency_run(run: &Run, n: usize) -> Result<Report> {
    let load_start = loadavg();
    let names: Vec<String> = (0..n).map(|i| format!("lat-{i:03}")).collect();
    let pods = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let seconds = (LEAD + GAP * i as u32).as_secs_f64();
            pod(
                name,
                json!({"name": "main", "image": "sidekill.test/main",
                       "args": ["--seconds", format!("{seconds:.3}")]}),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let api = run.api();
    create_all(&api, pods).await?;
    wait_for(&run.book, n, "complete", LEAD + STALL, |_, s| {
        s.complete.is_some()
    })
    .await?;
    let t = timelines(&api, &run.book, &names).await?;
    let problems = check_metrics(&run.controller.settled_metrics(n).await, n);
    let mut out = format!(
        "### Latency: {n} pods, one at a time\n\nLoad average (1, 5, 15 min): {load_start} at the start, {} at the end.\n\n{}\n",
        loadavg(),
        latency_table(&t)
    );
    if !problems.is_empty() {
        out.push_str(&format!("\nController counters: {}\n", problems.join("; ")));
    }
    Ok(Report {
        text: out,
        problems: !problems.is_empty(),
    })
}

/// One burst of a throughput run, measured.
struct Round {
    /// From the first create to every container running.
    started: Duration,
    /// Unix ms when the mains were released.
    released: u64,
    timelines: Vec<Timeline>,
    /// The controller before the release and after the last plan.
    before: Usage,
    after: Usage,
    /// The controller's largest RSS, sampled every 100 ms during the burst (kB).
    peak_rss_kb: u64,
}

impl Round {
    fn first_exit(&self) -> u64 {
        self.timelines.iter().map(|t| t.exit).min().unwrap_or(0)
    }
    fn last_exit(&self) -> u64 {
        self.timelines.iter().map(|t| t.exit).max().unwrap_or(0)
    }
    fn last_complete(&self) -> u64 {
        self.timelines.iter().map(|t| t.complete).max().unwrap_or(0)
    }
    /// From the first main exit to the last pod complete.
    fn makespan(&self) -> Duration {
        Duration::from_millis(self.last_complete().saturating_sub(self.first_exit()))
    }
}

async fn throughput(bins: &Bins, args: &Args, concurrency: u64) -> Result<Report> {
    let (n, rounds) = (args.pods, args.rounds);
    eprintln!("throughput: {n} pods, {rounds} round(s), --concurrency {concurrency}");
    let run = Run::start(bins, concurrency, &args.controller_args).await?;
    let result = throughput_run(&run, n, rounds, concurrency).await;
    run.finish(args.keep || result.as_ref().map_or(true, |r| r.problems));
    result
}

/// The names of the `n` pods of burst `round`.
fn burst_names(n: usize, round: usize) -> Vec<String> {
    (0..n).map(|i| format!("tp{round}-{i:04}")).collect()
}

/// Creates `n` pods whose mains wait on a FIFO, waits until they all run, releases them at
/// once and waits until every pod is complete.
async fn burst(run: &Run, n: usize, round: usize, ticks: u64) -> Result<Round> {
    let pid = run.controller.pid();
    let fifo = run.dir.path().join(format!("release-{round}"));
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )?;
    let names = burst_names(n, round);
    // Each main blocks reading a line from the FIFO, then runs the `main` stand-in, which
    // prints its exit time and exits 0.
    let script = format!("read _ < {}; exec main --seconds 0", fifo.display());
    let pods = names
        .iter()
        .map(|name| {
            pod(
                name,
                json!({"name": "main", "image": "sidekill.test/main",
                       "command": ["sh", "-c", script]}),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let api = run.api();
    let created = Instant::now();
    create_all(&api, pods).await?;
    let mine = |name: &String| name.starts_with(&format!("tp{round}-"));
    wait_for(&run.book, n, "running", STALL, |name, s| {
        mine(name) && s.running.is_some()
    })
    .await?;
    let started = created.elapsed();
    // A sidecar signalled before its handler is installed would ignore SIGTERM (PID 1): wait
    // for every sidecar's `running` line.
    let logs: Vec<Result<()>> = futures_util::stream::iter(&names)
        .map(|name| {
            let api = api.clone();
            async move {
                let params = LogParams {
                    container: Some("proxy".into()),
                    ..LogParams::default()
                };
                while !api.logs(name, &params).await?.contains("sidecar: running") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    logs.into_iter().collect::<Result<Vec<_>>>()?;
    let before = usage(pid, ticks);
    // Release every main at once. The writer stays open until they have all exited, so a
    // shell that opens the FIFO late still reads its line.
    let released = now_ms();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo)?;
        f.write_all(&vec![b'\n'; n * 2])?;
        Ok(f)
    })
    .await??;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::task::spawn_blocking(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(usage(pid, ticks).rss_kb);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let done = wait_for(&run.book, n, "complete", STALL, |name, s| {
        mine(name) && s.complete.is_some()
    })
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_rss_kb = sampler.await?;
    drop(writer);
    done?;
    // The last plans report a moment after their pods complete.
    let total = count(&run.book, |_, s| s.complete.is_some());
    run.controller.settled_metrics(total).await;
    let after = usage(pid, ticks);
    let timelines = timelines(&api, &run.book, &names).await?;
    Ok(Round {
        started,
        released,
        timelines,
        before,
        after,
        peak_rss_kb: peak_rss_kb.max(after.rss_kb),
    })
}

async fn throughput_run(run: &Run, n: usize, rounds: usize, concurrency: u64) -> Result<Report> {
    let ticks = clock_ticks();
    let pid = run.controller.pid();
    let load_start = loadavg();
    let ready = usage(pid, ticks);
    let mut done = Vec::new();
    for round in 0..rounds {
        done.push(burst(run, n, round, ticks).await?);
    }
    let end = usage(pid, ticks);
    let load_end = loadavg();
    let metrics = run.controller.settled_metrics(n * rounds).await;
    let problems = check_metrics(&metrics, n * rounds);
    let server = usage(run.server.child.id(), ticks);
    let ms3 = |v: Vec<i64>| {
        let (p50, p95, p99, max) = percentiles(&v);
        format!("{p50} / {p95} / {p99} / {max}")
    };
    let mut out = format!(
        "### Throughput: {n} pods × {rounds} round{}, `--concurrency {concurrency}`\n\n\
         Load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end.\n\n\
         | Round | {} containers running after | mains exited within | first main exit → last pod complete | pods/s | controller CPU per pod | controller VmRSS before → peak → after |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        if rounds == 1 { "" } else { "s" },
        2 * n
    );
    for (i, r) in done.iter().enumerate() {
        let cpu = r.after.cpu.saturating_sub(r.before.cpu);
        out.push_str(&format!(
            "| {} | {:.1} s | {:.2} s | **{:.1} s** | **{:.0}** | {:.2} ms | {} → {} → {} |\n",
            i + 1,
            r.started.as_secs_f64(),
            (r.last_exit() - r.first_exit()) as f64 / 1000.0,
            r.makespan().as_secs_f64(),
            n as f64 / r.makespan().as_secs_f64().max(0.001),
            cpu.as_secs_f64() * 1000.0 / n as f64,
            mib(r.before.rss_kb),
            mib(r.peak_rss_kb),
            mib(r.after.rss_kb),
        ));
    }
    out.push_str(
        "\n| Round | main exit → seen terminated (test server) | main exit → SIGTERM received | main exit → pod complete |\n\
         | ---: | ---: | ---: | ---: |\n",
    );
    for (i, r) in done.iter().enumerate() {
        let d = |f: fn(&Timeline) -> i64| r.timelines.iter().map(f).collect::<Vec<_>>();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            i + 1,
            ms3(d(|t| t.exit_seen as i64 - t.exit as i64)),
            ms3(d(|t| t.sigterm as i64 - t.exit as i64)),
            ms3(d(|t| t.complete as i64 - t.exit as i64)),
        ));
    }
    out.push_str(&format!(
        "\n(p50 / p95 / p99 / max, ms.) Releases to first main exit: {}. Controller: VmRSS {} \
         ready and idle, VmHWM {} when ready (start-up included) and {} at the end; test \
         server: VmHWM {}, {:.1} s CPU in all.\n",
        done.iter()
            .map(|r| format!("{} ms", r.first_exit().saturating_sub(r.released)))
            .collect::<Vec<_>>()
            .join(", "),
        mib(ready.rss_kb),
        mib(ready.hwm_kb),
        mib(end.hwm_kb),
        mib(server.hwm_kb),
        server.cpu.as_secs_f64(),
    ));
    out.push_str(&requests_per_pod(&metrics, n * rounds));
    let errors = metrics
        .get("sidekill_watch_errors_total")
        .copied()
        .unwrap_or(0.0);
    if errors > 0.0 {
        out.push_str(&format!("\nController watch errors: {errors}\n"));
    }
    if !problems.is_empty() {
        out.push_str(&format!("\nController counters: {}\n", problems.join("; ")));
    }
    Ok(Report {
        text: out,
        problems: !problems.is_empty(),
    })
}

/// The controller's API requests (`sidekill_api_requests_total`, every request its client
/// sent, retries included) per stopped pod, by request; the watchers' lists and watches are
/// shared by every pod and shown as totals.
fn requests_per_pod(metrics: &HashMap<String, f64>, pods: usize) -> String {
    let mut per_pod = Vec::new();
    let mut shared = Vec::new();
    let mut total = 0.0;
    let mut series: Vec<(&String, &f64)> = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("sidekill_api_requests_total{"))
        .collect();
    series.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in series {
        let request = k
            .split_once("request=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map_or(k.as_str(), |(r, _)| r);
        if request.starts_with("list ") || request.starts_with("watch ") {
            shared.push(format!("{request} {v}"));
        } else {
            let each = v / pods.max(1) as f64;
            total += each;
            per_pod.push(format!("{request} {each:.2}"));
        }
    }
    format!(
        "\nAPI requests per stopped pod: **{total:.2}** ({}); shared by all: {}.\n",
        per_pod.join(", "),
        shared.join(", ")
    )
}

/// Bursts against one controller until `duration` has passed, each burst's pods deleted
/// once complete; the controller's RSS after each.
async fn soak(bins: &Bins, args: &Args, duration: Duration) -> Result<Report> {
    let n = args.pods;
    let concurrency = args.concurrency.first().copied().unwrap_or(8);
    eprintln!("soak: bursts of {n} pods for {duration:?}, --concurrency {concurrency}");
    let run = Run::start(bins, concurrency, &args.controller_args).await?;
    let result = soak_run(&run, n, duration).await;
    run.finish(args.keep || result.as_ref().map_or(true, |r| r.problems));
    result
}

async fn soak_run(run: &Run, n: usize, duration: Duration) -> Result<Report> {
    let ticks = clock_ticks();
    let pid = run.controller.pid();
    let load_start = loadavg();
    let ready = usage(pid, ticks);
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut round = 0;
    while started.elapsed() < duration || round < 3 {
        burst(run, n, round, ticks).await?;
        let names = burst_names(n, round);
        delete_all(&run.api(), &names).await?;
        rss.push(usage(pid, ticks).rss_kb);
        round += 1;
    }
    let metrics = run.controller.settled_metrics(n * round).await;
    let mut problems = check_metrics(&metrics, n * round);
    let third = (rss.len() / 3).max(1);
    let first = rss.iter().skip(1).take(third).max().copied().unwrap_or(0);
    let last = rss.iter().rev().take(third).max().copied().unwrap_or(0);
    let allowed = first + (first / 10).max(8 * 1024);
    if last > allowed {
        problems.push(format!(
            "RSS grew: {} at most in the last third of the bursts, against {} in the first",
            mib(last),
            mib(first)
        ));
    }
    let series: Vec<String> = rss.iter().map(|k| mib(*k)).collect();
    let mut out = format!(
        "### Soak: {round} bursts of {n} pods in {:.0} s\n\n\
         Load average (1, 5, 15 min): {load_start} at the start, {} at the end. Controller \
         VmRSS ready {}; after each burst: {}. Largest in the first third (burst 1 left \
         out) {}, in the last third {}: {}.\n",
        started.elapsed().as_secs_f64(),
        loadavg(),
        mib(ready.rss_kb),
        series.join(", "),
        mib(first),
        mib(last),
        if last > allowed { "growing" } else { "steady" },
    );
    out.push_str(&requests_per_pod(&metrics, n * round));
    if !problems.is_empty() {
        out.push_str(&format!("\nProblems: {}\n", problems.join("; ")));
    }
    Ok(Report {
        text: out,
        problems: !problems.is_empty(),
    })
}

/// Deletes the pods and waits until they are gone.
async fn delete_all(api: &Api<Pod>, names: &[String]) -> Result<()> {
    let results: Vec<_> = futures_util::stream::iter(names)
        .map(|name| async move {
            match api.delete(name, &kube::api::DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let deadline = Instant::now() + STALL;
    for name in names {
        while api.get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("pod {name} not gone {STALL:?} after its deletion");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn bench() -> Result<()> {
    // cargo bench passes --bench; `cargo test --benches` runs bench targets without it, and
    // this one is no test: it takes minutes and root.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the controller bench runs under `cargo bench` only (it passes --bench)");
        return Ok(());
    }
    let args = parse_args()?;
    if !rustix::process::geteuid().is_root() {
        bail!(
            "needs root: the test cluster runs each container as a real process in its own \
             PID and mount namespaces (CAP_SYS_ADMIN). Run it as root, e.g. \
             `sudo -E cargo bench -p sidekill --bench controller`"
        );
    }
    let bins = binaries()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("## Controller (cargo bench -p sidekill --bench controller)\n");
    println!("Machine: {}.\n", machine());
    let mut problems = false;
    if args.latency_pods > 0 {
        let r = rt.block_on(latency(&bins, &args))?;
        println!("{}", r.text);
        problems |= r.problems;
    }
    if let Some(duration) = args.soak {
        let r = rt.block_on(soak(&bins, &args, duration))?;
        println!("{}", r.text);
        problems |= r.problems;
    } else if args.pods > 0 {
        for c in &args.concurrency {
            let r = rt.block_on(throughput(&bins, &args, *c))?;
            println!("{}", r.text);
            problems |= r.problems;
        }
    }
    if problems {
        bail!("the controller's counters disagree with what the pods show (see above)");
    }
    Ok(())
}
