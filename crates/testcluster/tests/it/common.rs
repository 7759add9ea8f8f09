//! Helpers shared by the test modules.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use sidekill_testcluster::{ClusterConfig, TestCluster};
use tokio::io::AsyncReadExt;

/// The stand-in binary cargo built for these tests.
pub fn standin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sidekill-standin"))
}

/// The real `sidekill-quitter` binary (crates/quitter) behind the `sidekill-nop` and
/// `sidekill-quitter` images: `$SIDEKILL_QUITTER` when set, else built once per test run with
/// `cargo build -p sidekill-quitter` into this test binary's own target folder (cargo builds
/// another package's binaries for no test of this one).
pub fn quitter() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("SIDEKILL_QUITTER") {
                return PathBuf::from(p);
            }
            // <target>/debug/deps/it-HASH: the profile folder is two up, the target one three.
            let exe = std::env::current_exe().expect("current exe");
            let profile_dir = exe
                .parent()
                .and_then(|d| d.parent())
                .expect("the test binary sits in <target>/<profile>/deps");
            let target_dir = profile_dir.parent().expect("target folder");
            let mut cmd = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "--quiet", "-p", "sidekill-quitter", "--target-dir"])
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build -p sidekill-quitter");
            assert!(status.success(), "cargo build -p sidekill-quitter failed");
            let bin = profile_dir.join("sidekill-quitter");
            assert!(bin.is_file(), "{} was not built", bin.display());
            bin
        })
        .clone()
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
        quitter: Some(quitter()),
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

/// Asserts that a container status reports sidekill's image `name` (`sidekill-nop`,
/// `sidekill-quitter`) as containerd does: `image` the reference `name:0.1.0`, `imageID` its
/// Docker Hub digest.
pub fn assert_sidekill_image(s: &ContainerStatus, name: &str) {
    assert_eq!(s.image, format!("{name}:0.1.0"));
    let digest = format!("docker.io/library/{name}@sha256:");
    assert!(s.image_id.starts_with(&digest), "{}", s.image_id);
}

/// Whether `container` of pod `pod` has logged `needle` so far.
pub fn logged(c: &TestCluster, pod: &str, container: &str, needle: &str) -> bool {
    c.logs("default", pod, container)
        .unwrap_or_default()
        .contains(needle)
}

/// Waits until a container's log contains `needle` (a stand-in prints when its signal handlers
/// are installed: a signal sent before that would meet PID 1 without a handler, and be dropped).
pub async fn wait_log(c: &TestCluster, pod: &str, container: &str, needle: &str) {
    for _ in 0..500 {
        if logged(c, pod, container, needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{pod}/{container} never logged {needle:?}; log: {:?}",
        c.logs("default", pod, container)
    );
}

/// Sends `request` (head and body, as written) to `base` and reads the answer to the end:
/// status and body. The server closes after one answer (`Connection: close`).
async fn exchange(base: &str, request: String) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    sidekill_testcluster::standin::status_and_body(&resp)
}

/// A plain HTTP/1.1 GET (no client-side retries, unlike kube-rs which retries 503): status and body.
pub async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    exchange(
        base,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// A plain HTTP/1.1 request without credentials (as kubectl sends over plain HTTP): status and
/// body as JSON (`Value::String` when the body is not JSON).
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let host = base.trim_start_matches("http://");
    let (code, text) = exchange(
        base,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (code, v)
}

/// A container's status (init, regular or ephemeral), once the pod reports one.
pub fn find_status(pod: &Pod, name: &str) -> Option<ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .chain(st.ephemeral_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

/// A container's status (init, regular or ephemeral); panics when the pod reports none.
pub fn status_of(pod: &Pod, name: &str) -> ContainerStatus {
    find_status(pod, name).unwrap_or_else(|| panic!("no status for {name}: {:#?}", pod.status))
}

/// How a container's current instance ended; panics when it has not.
pub fn terminated(pod: &Pod, name: &str) -> ContainerStateTerminated {
    status_of(pod, name)
        .state
        .and_then(|s| s.terminated)
        .unwrap_or_else(|| panic!("{name} has not terminated: {:#?}", pod.status))
}

/// How a container's previous instance ended (`lastState`); panics when none did.
pub fn last_terminated(pod: &Pod, name: &str) -> ContainerStateTerminated {
    status_of(pod, name)
        .last_state
        .and_then(|s| s.terminated)
        .unwrap_or_else(|| panic!("{name} has no lastState: {:#?}", pod.status))
}

/// Waits until container `name` (of any kind) of pod `pod` has terminated; the pod then.
pub async fn wait_terminated(c: &TestCluster, pod: &str, name: &str) -> Pod {
    wait(c, pod, &format!("{name} terminated"), |p| {
        find_status(p, name)
            .and_then(|s| s.state)
            .is_some_and(|s| s.terminated.is_some())
    })
    .await
}

/// Applies a pod's YAML (namespace `default`) and waits until every container in `running`
/// runs; the pod then.
pub async fn start_pod(c: &TestCluster, yaml: &str, name: &str, running: &[&str]) -> Pod {
    c.apply_yaml(yaml).await.expect("apply");
    wait(c, name, &format!("{running:?} running"), |p| {
        running
            .iter()
            .all(|n| sidekill_testcluster::container_running(p, n))
    })
    .await
}

/// Pod `p`: one container, `side`, whose PID 1 is `sleep` (no SIGTERM handler), running.
pub async fn sleeping_pod(c: &TestCluster) -> Pod {
    start_pod(
        c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: side, image: alpine, command: [sleep, '1000']}\n",
        "p",
        &["side"],
    )
    .await
}

/// A PATCH of `path` that the server must refuse with 422: the Status it answers.
pub async fn refused_patch(
    c: &TestCluster,
    path: &str,
    content_type: &str,
    body: &str,
) -> serde_json::Value {
    let (code, status) = raw_request(c.base_url(), "PATCH", path, content_type, body).await;
    assert_eq!(code, 422, "{body}: {status}");
    status
}
