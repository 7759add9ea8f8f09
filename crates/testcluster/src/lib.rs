//! # sidekill-testcluster
//!
//! A Kubernetes API server on loopback whose containers are real processes. It is the test bed
//! for sidekill's executor (which stops sidecars by exec'ing kill commands into them) and the
//! cluster behind `sidekill demo`.
//!
//! It speaks the real wire protocol where sidekill and kubectl touch it — discovery, pods,
//! events and configmaps with list/watch (resource versions, bookmarks, 410 Gone), patches
//! (merge, JSON with `test`, strategic, apply), `pods/exec` over WebSocket (v5 and v4 channel
//! protocols), `pods/proxy`, `pods/log`, `pods/ephemeralcontainers` — and it
//! keeps the kernel's rules for PID 1: each container is a process tree in its own PID namespace
//! (`unshare --pid --fork --mount-proc`), so `kill -9 1` from inside does nothing to a PID 1
//! without a handler, exactly as on a node.
//!
//! ```no_run
//! # async fn demo() -> sidekill_testcluster::Result<()> {
//! use std::time::Duration;
//! use sidekill_testcluster::{ClusterConfig, TestCluster};
//!
//! let cluster = TestCluster::start(ClusterConfig::default()).await?;
//! cluster
//!     .apply_yaml(
//!         r#"
//! apiVersion: v1
//! kind: Pod
//! metadata: {name: job, namespace: default}
//! spec:
//!   restartPolicy: Never
//!   containers:
//!   - {name: main, image: sidekill.test/main, args: ["--seconds", "1"]}
//!   - {name: proxy, image: sidekill.test/sidecar}
//! "#,
//!     )
//!     .await?;
//! // Any kube client can now use cluster.kubeconfig_path().
//! let pod = cluster
//!     .wait_for_pod("default", "job", Duration::from_secs(10), |p| {
//!         sidekill_testcluster::container_exit_code(p, "main").is_some()
//!     })
//!     .await?;
//! # let _ = pod;
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Concepts
//! - **Images** are stand-ins listed in `tests/images/images.yaml` (built in; see its README):
//!   `image:` selects one by name or alias, ignoring tag and digest. An unknown image leaves its
//!   container `Waiting`/`ErrImagePull`.
//!   `sidekill-nop` and `sidekill-quitter` hold the real `sidekill-quitter` binary
//!   (crates/quitter; see [`ClusterConfig::quitter`]), the nop at every path of
//!   `sidekill_policy::nop::NOP_PATHS`.
//! - **The node** (`kubelet`) starts regular init containers in order, native sidecars before the
//!   regular containers, stops sidecars after the regular containers finish, restarts by
//!   `restartPolicy`, and stops pods on deletion with SIGTERM, grace, SIGKILL.
//! - **Pod updates** are validated as `ValidatePodUpdate` does (only container images and a few
//!   fields may change; anything else, or a failed JSON-patch `test`, is 422). When a running
//!   container's image changes, the node stops it from outside (SIGTERM to its PID 1, the
//!   pod's grace period but at least 2 s, SIGKILL) and starts the new image at once, whatever
//!   the restart policy: `restartCount` + 1, the old end in `lastState`, a new `containerID`;
//!   a `command[0]` missing from the new image ends it with exit code 128, `StartError`.
//! - **Ephemeral containers** (`PATCH`/`PUT pods/NAME/ephemeralcontainers`, validated as
//!   `ValidatePodEphemeralContainersUpdate`) run once, in the PID namespace of their
//!   `targetContainerName`, with their own image's root and that namespace's `/proc`; they
//!   report in `status.ephemeralContainerStatuses`. When the target's PID 1 exits, the kernel
//!   kills what is left in its namespace, an ephemeral container included, as on a node.
//! - **Inside the pod.** Containers share the machine's network namespace. Every pod's IP
//!   (`status.podIP`, `podIPs`, the `status.podIP` env fieldRef) is `127.0.0.2`, and
//!   `pods/proxy` dials it; exec'd commands and ephemeral containers dial `127.0.0.1`. A server
//!   in a pod tells the two apart by the connection's local address: the stand-in
//!   pilot-agent's status port (15020) answers 403 unless it is `127.0.0.1`, cloud-sql-proxy's
//!   admin port listens on `127.0.0.1` only.
//! - **Authorization**: a bearer token or none (see `api::authorized`); there is no RBAC, so
//!   `patch pods` and `patch pods/ephemeralcontainers` are allowed to every client.
//! - **Faults** ([`Faults`]) make API requests fail, drop exec streams, or delete a pod when an
//!   exec into it starts.
//! - **Stand-ins** ([`standin`]) are the images' programs, in one multi-call binary
//!   (`sidekill-standin`); a binary that embeds the cluster can be its own stand-in.
//!
//! ## Configuration
//! [`ClusterConfig`] fields, with their defaults: `port` 0 (an ephemeral port); `state_dir` a new
//! temporary folder (removed on shutdown); `kubeconfig` `STATE_DIR/kubeconfig`; `standin` the
//! `sidekill-standin` binary next to the current executable (or in `SIDEKILL_TESTCLUSTER_BIN_DIR`);
//! `quitter` `$SIDEKILL_QUITTER`, else `sidekill-quitter` in `SIDEKILL_TESTCLUSTER_BIN_DIR` or
//! next to the current executable (without it the nop and quitter images are `ErrImagePull`);
//! `images_dir` none (the built-in catalogue); `bookmark_interval` 1 s; `history` 1000 changes;
//! `restart_backoff` 1 s; `token` a random one.
//!
//! ## Requirements and failure modes
//! Root (CAP_SYS_ADMIN) and util-linux's `unshare`, `nsenter` and `setpriv`: [`TestCluster::start`]
//! checks both and fails with [`Error::NotPrivileged`] or [`Error::MissingTool`]. Processes never
//! outlive the cluster: [`TestCluster::shutdown`] and `Drop` SIGKILL them, and a crashed server
//! takes them along through the parent-death signal.
//!
//! No features; no TLS (plain HTTP on 127.0.0.1).

#![forbid(unsafe_code)]

mod api;
mod config;
mod ctx;
mod error;
mod exec;
mod faults;
mod images;
mod kinds;
mod kubelet;
mod patch;
mod process;
mod proxy;
mod selector;
pub mod standin;
mod status;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::ClusterConfig;
pub use crate::error::{Error, Result};
pub use crate::faults::{FaultRequest, Faults};
pub use crate::images::Image;
pub use rustix::process::Signal;

use crate::config::{find_quitter, find_standin};
use crate::ctx::Ctx;
use crate::store::Store;

/// A running test cluster. Dropping it SIGKILLs every container; prefer [`TestCluster::shutdown`].
pub struct TestCluster {
    ctx: Arc<Ctx>,
    base_url: String,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    temp_state: bool,
    shutdown_tx: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

fn kubeconfig_text(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sidekill-testcluster\n  cluster:\n    server: {server}\ncontexts:\n- name: sidekill-testcluster\n  context:\n    cluster: sidekill-testcluster\n    user: sidekill-testcluster\n    namespace: default\ncurrent-context: sidekill-testcluster\nusers:\n- name: sidekill-testcluster\n  user:\n    token: {token}\npreferences: {{}}\n"
    )
}

/// The exit code of a container of the pod, once it has terminated (init containers included).
pub fn container_exit_code(pod: &Pod, container: &str) -> Option<i32> {
    container_state(pod, container)?
        .terminated
        .map(|t| t.exit_code)
}

/// The current state of a container of the pod (init containers included).
pub fn container_state(
    pod: &Pod,
    container: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)
        .and_then(|c| c.state.clone())
}

/// Whether a container of the pod is running.
pub fn container_running(pod: &Pod, container: &str) -> bool {
    container_state(pod, container).is_some_and(|s| s.running.is_some())
}

/// The pod's phase (`Pending`, `Running`, `Succeeded`, `Failed`).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

impl TestCluster {
    /// Checks privileges and tools, materialises the images, starts serving and writes the
    /// kubeconfig. Must be called inside a tokio runtime.
    pub async fn start(config: ClusterConfig) -> Result<TestCluster> {
        let tools = process::Tools::find()?;
        process::check_privilege(&tools)?;
        let standin = find_standin(config.standin.as_deref())?;
        let quitter = find_quitter(config.quitter.as_deref())?;
        let (state_dir, temp_state) = match &config.state_dir {
            Some(d) => (d.clone(), false),
            None => {
                let d =
                    std::env::temp_dir().join(format!("sidekill-testcluster-{}", store::new_uid()));
                (d, true)
            }
        };
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
        let catalogue = images::Catalogue::materialise(
            config.images_dir.as_deref(),
            &state_dir,
            &standin,
            quitter.as_deref(),
        )?;
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|e| Error::io(format!("binding 127.0.0.1:{}", config.port), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let base_url = format!("http://{addr}");
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| store::new_uid().replace('-', ""));
        let kubeconfig = config
            .kubeconfig
            .clone()
            .unwrap_or_else(|| state_dir.join("kubeconfig"));
        if let Some(parent) = kubeconfig.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&kubeconfig, kubeconfig_text(&base_url, &token))
            .map_err(|e| Error::io(format!("writing {}", kubeconfig.display()), e))?;

        let rv = Arc::new(AtomicU64::new(0));
        let pods = Arc::new(Store::<Pod>::new(rv.clone(), config.history));
        let configmaps = Arc::new(Store::<ConfigMap>::new(rv.clone(), config.history));
        let events = Arc::new(Store::<Event>::new(rv, config.history));
        let spawner = process::Spawner::start()?;
        let kubelet = kubelet::Kubelet::new(
            tools,
            spawner,
            catalogue,
            state_dir.clone(),
            pods.clone(),
            events.clone(),
            config.restart_backoff,
        );
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            pods,
            configmaps,
            events,
            kubelet,
            faults: Arc::new(Faults::default()),
            token,
            bookmark_interval: config.bookmark_interval,
            address: addr.to_string(),
            shutdown: shutdown_rx.clone(),
        });
        let server = tokio::spawn(serve(listener, ctx.clone(), shutdown_rx));
        tracing::info!(%base_url, kubeconfig = %kubeconfig.display(), "test cluster serving");
        Ok(TestCluster {
            ctx,
            base_url,
            kubeconfig,
            state_dir,
            temp_state,
            shutdown_tx,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The kubeconfig file (server, token user, `default` namespace).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.ctx.token
    }

    /// The state folder (images, container logs, kubeconfig by default).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The fault injector.
    pub fn faults(&self) -> &Faults {
        &self.ctx.faults
    }

    /// The images this cluster runs: name and description.
    pub fn images(&self) -> Vec<(String, String)> {
        self.ctx.kubelet.images().names()
    }

    /// Creates every object of a (multi-document) YAML manifest: Pods, ConfigMaps, Events, in
    /// order, in their namespace (default `default`). Returns `(kind, namespace, name)` of each.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let v =
                serde_json::Value::deserialize(doc).map_err(|source| Error::Manifest { source })?;
            if v.is_null() {
                continue;
            }
            let kind = v
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_owned();
            let ns = v
                .pointer("/metadata/namespace")
                .and_then(|n| n.as_str())
                .unwrap_or("default")
                .to_owned();
            let body = serde_json::to_vec(&v).map_err(|source| Error::Json { source })?;
            let q = ctx::Query::default();
            let api_err = |e: status::ApiError| Error::Api {
                code: e.code,
                reason: e.reason.to_owned(),
                message: e.message,
            };
            let name = match kind.as_str() {
                "Pod" => {
                    let pod = api::create(&self.ctx.pods, &ns, &body, &q).map_err(api_err)?;
                    self.ctx.kubelet.admit(&pod);
                    pod.metadata.name.unwrap_or_default()
                }
                "ConfigMap" => api::create(&self.ctx.configmaps, &ns, &body, &q)
                    .map_err(api_err)?
                    .metadata
                    .name
                    .unwrap_or_default(),
                "Event" => api::create(&self.ctx.events, &ns, &body, &q)
                    .map_err(api_err)?
                    .metadata
                    .name
                    .unwrap_or_default(),
                other => {
                    return Err(Error::UnsupportedKind {
                        kind: other.to_owned(),
                    })
                }
            };
            out.push((kind, ns, name));
        }
        Ok(out)
    }

    /// Reads and applies a manifest file.
    pub async fn apply_file(&self, path: &Path) -> Result<Vec<(String, String, String)>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        self.apply_yaml(&text).await
    }

    /// The pod as the API would return it now.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.ctx.pods.get(namespace, name)
    }

    /// Waits until `cond` holds for the pod (polling every 20 ms). Fails with
    /// [`Error::Timeout`], or [`Error::NotFound`] if the pod disappears while waited for.
    pub async fn wait_for_pod(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        cond: impl Fn(&Pod) -> bool,
    ) -> Result<Pod> {
        let start = Instant::now();
        let mut seen = false;
        loop {
            match self.pod(namespace, name) {
                Some(p) => {
                    seen = true;
                    if cond(&p) {
                        return Ok(p);
                    }
                }
                None if seen => {
                    return Err(Error::NotFound {
                        what: format!("pod {namespace}/{name}"),
                    })
                }
                None => {}
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    waited: timeout,
                    what: format!("pod {namespace}/{name}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the pod is gone from the API.
    pub async fn wait_for_pod_gone(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        while self.pod(namespace, name).is_some() {
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    waited: timeout,
                    what: format!("pod {namespace}/{name} to be deleted"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Deletes a pod as `DELETE` does (`grace` seconds, default the pod's own).
    pub fn delete_pod(&self, namespace: &str, name: &str, grace: Option<i64>) -> Result<()> {
        self.ctx
            .kubelet
            .delete(namespace, name, grace)
            .map(|_| ())
            .map_err(|e| Error::Api {
                code: e.code,
                reason: e.reason.to_owned(),
                message: e.message,
            })
    }

    /// Host PID of a running container's PID 1.
    pub fn container_pid(&self, namespace: &str, pod: &str, container: &str) -> Option<i32> {
        self.ctx
            .kubelet
            .slot(namespace, pod, container)
            .map(|s| s.pid1)
    }

    /// Sends `sig` to a running container's PID 1 from outside its namespace, as `kill` on the
    /// node would. Returns false when the container has no running process.
    pub fn signal_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        sig: Signal,
    ) -> bool {
        self.ctx
            .kubelet
            .signal_container(namespace, pod, container, sig)
    }

    /// A container's log (stdout and stderr, interleaved as written).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let p = self.pod(namespace, pod)?;
        self.ctx.kubelet.logs(namespace, &p, container)
    }

    /// Stops serving, SIGKILLs every container and waits for them (at most 10 s), and removes a
    /// temporary state folder.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.ctx.kubelet.shutdown(Duration::from_secs(10)).await;
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
        // Drop removes a temporary state folder.
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        self.ctx.kubelet.kill_all_now();
        if let Some(s) = self.server.take() {
            s.abort();
        }
        if self.temp_state {
            // Best effort: a process SIGKILLed a moment ago may still hold a log file open,
            // which does not stop the removal on Linux.
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ctx = ctx.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| api::handle(ctx.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    conns.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_has_server_and_token() {
        let k = kubeconfig_text("http://127.0.0.1:1234", "tok");
        let v: serde_json::Value = serde_yaml_ng::from_str(&k).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["current-context"], "sidekill-testcluster");
    }
}
