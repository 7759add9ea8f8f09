//! Helpers shared by the test modules.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use sidekill_testcluster::{ClusterConfig, TestCluster};
use tokio::io::AsyncReadExt;

/// The stand-in binary cargo built for these tests.
pub fn standin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sidekill-standin"))
}

/// Fails the test with a clear message when not running as root.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (CAP_SYS_ADMIN) to create PID and mount namespaces: run `cargo test -p sidekill-testcluster` as root"
    );
}

/// A cluster with fast bookmarks and restarts.
pub async fn cluster() -> TestCluster {
    cluster_with(|_| {}).await
}

/// Logs the server's requests to stderr when `RUST_LOG=debug` is set.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("RUST_LOG").as_deref() == Ok("debug") {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_test_writer()
                .try_init();
        }
    });
}

/// A cluster with a tweaked configuration.
pub async fn cluster_with(f: impl FnOnce(&mut ClusterConfig)) -> TestCluster {
    require_root();
    init_logging();
    let mut c = ClusterConfig {
        standin: Some(standin()),
        bookmark_interval: Duration::from_millis(200),
        restart_backoff: Duration::from_millis(200),
        ..ClusterConfig::default()
    };
    f(&mut c);
    TestCluster::start(c).await.expect("start the test cluster")
}

/// A kube-rs client built from the cluster's kubeconfig, as any user would build one.
pub async fn client(c: &TestCluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(c.kubeconfig_path()).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(cfg).expect("client")
}

/// What an exec returned.
#[derive(Debug)]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<Status>,
}

impl ExecResult {
    /// The exit code the status carries: 0 for Success, the ExitCode cause for a failure.
    pub fn exit_code(&self) -> Option<i32> {
        let s = self.status.as_ref()?;
        if s.status.as_deref() == Some("Success") {
            return Some(0);
        }
        s.details
            .as_ref()?
            .causes
            .as_ref()?
            .iter()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse().ok())
    }
}

/// Runs `cmd` in a container through kube-rs and collects everything.
pub async fn exec(pods: &Api<Pod>, pod: &str, container: &str, cmd: &[&str]) -> ExecResult {
    let ap = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let mut p = pods
        .exec(pod, cmd.to_vec(), &ap)
        .await
        .expect("exec upgrade");
    let mut stdout = p.stdout().expect("stdout");
    let mut stderr = p.stderr().expect("stderr");
    let status = p.take_status().expect("status");
    let (mut o, mut e) = (String::new(), String::new());
    let (r1, r2, status) = tokio::join!(
        stdout.read_to_string(&mut o),
        stderr.read_to_string(&mut e),
        status
    );
    r1.expect("read stdout");
    r2.expect("read stderr");
    let _ = p.join().await;
    ExecResult {
        stdout: o,
        stderr: e,
        status,
    }
}

/// A free TCP port on loopback (for stand-ins that listen).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits for a condition on a pod with a 20 s limit.
pub async fn wait(c: &TestCluster, name: &str, what: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
    c.wait_for_pod("default", name, Duration::from_secs(20), cond)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "waiting for {what}: {e}; pod now: {:#?}",
                c.pod("default", name).map(|p| p.status)
            )
        })
}

/// Waits until a container's log contains `needle` (a stand-in prints when its signal handlers
/// are installed: a signal sent before that would meet PID 1 without a handler, and be dropped).
pub async fn wait_log(c: &TestCluster, pod: &str, container: &str, needle: &str) {
    for _ in 0..500 {
        if c.logs("default", pod, container)
            .unwrap_or_default()
            .contains(needle)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{pod}/{container} never logged {needle:?}; log: {:?}",
        c.logs("default", pod, container)
    );
}

/// A plain HTTP/1.1 GET (no client-side retries, unlike kube-rs which retries 503): status and body.
pub async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}
