//! Where the executor's end-to-end tests run: the one home of the helpers that create, wait
//! for, read and delete their fixtures.
//!
//! - **The test server** (the default): `crates/testcluster`, embedded, one per test; it needs
//!   root for its PID namespaces. The executor and the fixtures share its kubeconfig, and the
//!   fixture pods live in namespace `default`.
//! - **A real cluster**, with `SIDEKILL_E2E=1` (`tests/k8s-harness/run.sh` runs the tests so
//!   against the genuine kube-apiserver):
//!   - `KUBECONFIG`: the identity the executor runs as, which should be sidekill's
//!     ServiceAccount with exactly `deploy/`'s RBAC (the harness's `sidekill.kubeconfig`);
//!   - `SIDEKILL_E2E_ADMIN_KUBECONFIG`: the identity that makes the fixtures (namespaces, pods,
//!     ServiceAccounts, Roles, tokens) and reads logs and events (the harness's
//!     `admin.kubeconfig`);
//!   - `SIDEKILL_E2E_NODE` (optional): written into every fixture pod's `spec.nodeName`, for a
//!     cluster without a scheduler (the harness: `sidekill-node`).
//!
//!   Each test gets a namespace of its own (`sidekill-e2e-<tag>-<hex>`, label
//!   `sidekill.dev/e2e`), deleted at the end, also when the test fails. The fixtures use the
//!   stand-in images of `tests/images`, so the cluster's node must run them (the harness's node
//!   does, given `SIDEKILL_STANDIN`).
//!
//! What only the test server can do (fault injection) is [`Cluster::faults`]; a test that
//! needs it starts with [`Cluster::start_test_server_only`], which on a real cluster prints
//! why the test is skipped. A test that needs what only a real cluster has (RBAC, Jobs)
//! starts with its mirror, [`Cluster::start_real_only`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{json, Value};
use sidekill_testcluster::{ClusterConfig, Faults, TestCluster};

/// The test server's tests need root: say so instead of failing obscurely.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root (CAP_SYS_ADMIN) for the test cluster's PID and mount \
         namespaces: run `cargo test -p sidekill --test it` as root"
    );
}

/// Whether the tests target a real cluster (`SIDEKILL_E2E=1`).
pub fn real() -> bool {
    std::env::var("SIDEKILL_E2E").as_deref() == Ok("1")
}

/// The Events in `namespace` on `pod` with `reason`, as listed (the executor's tests and the
/// controller's read the steps sidekill recorded so).
pub async fn events_on(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    reason: &str,
) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client, namespace);
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Why a test that needs RBAC skips on the test server.
pub const NO_RBAC: &str =
    "the test server has no RBAC (it allows every request); set SIDEKILL_E2E=1";
/// Why a test that needs Jobs skips on the test server.
pub const NO_JOBS: &str =
    "the test server has no batch API and no Job controller; set SIDEKILL_E2E=1";

/// Prints that the running test is skipped on this target, and why. The test is named by its
/// thread, which libtest names after the test (its path, as `cargo test` lists it), so that no
/// test has to spell its own name. Written to the process's stderr directly, past the test
/// harness's capture, so that a skip shows in every run's output instead of passing silently.
fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test} on the {}: {why}",
        if real() {
            "real cluster"
        } else {
            "test server"
        }
    );
}

/// A path from the environment, or a panic naming the variable and what it is for.
fn env_path(var: &str, what: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("SIDEKILL_E2E=1 needs {var}: {what}"))
}

/// Where a test runs.
pub enum Cluster {
    /// The embedded test server.
    Test(TestCluster),
    /// A real cluster, in a namespace of the test's own.
    Real(Real),
}

/// A real cluster: the executor's identity, the admin's, the test's namespace.
pub struct Real {
    kubeconfig: PathBuf,
    admin_kubeconfig: PathBuf,
    admin: kube::Client,
    namespace: String,
    node: Option<String>,
    /// Kubeconfigs written for other identities ([`Cluster::identity`]).
    dir: tempfile::TempDir,
    /// Whether the namespace was deleted by [`Cluster::shutdown`] (else `Drop` does it).
    deleted: bool,
}

impl Cluster {
    /// The target the environment selects, for one test; `tag` (a few lowercase letters)
    /// goes into a real cluster's namespace name.
    pub async fn start(tag: &str) -> Cluster {
        if real() {
            Cluster::Real(Real::start(tag).await)
        } else {
            Cluster::test_server().await
        }
    }

    async fn test_server() -> Cluster {
        require_root();
        let c = ClusterConfig {
            bookmark_interval: Duration::from_millis(200),
            ..ClusterConfig::default()
        };
        Cluster::Test(TestCluster::start(c).await.unwrap_or_else(|e| {
            panic!("start the test cluster ({e}); the stand-in binary comes from `cargo build -p sidekill-testcluster`")
        }))
    }

    /// The test server for a test that needs what only it can do; on a real cluster, `None`
    /// after printing that the test is skipped and `why`.
    pub async fn start_test_server_only(why: &str) -> Option<Cluster> {
        if real() {
            skip(why);
            return None;
        }
        Some(Cluster::test_server().await)
    }

    /// A real cluster (`tag` as in [`Cluster::start`]) for a test that needs what the test
    /// server lacks (`lacking`: [`NO_RBAC`], [`NO_JOBS`]); on the test server, `None` after
    /// printing that the test is skipped and why.
    pub async fn start_real_only(tag: &str, lacking: &str) -> Option<Cluster> {
        if !real() {
            skip(lacking);
            return None;
        }
        Some(Cluster::Real(Real::start(tag).await))
    }

    /// The namespace the fixtures live in.
    pub fn namespace(&self) -> &str {
        match self {
            Cluster::Test(_) => "default",
            Cluster::Real(r) => &r.namespace,
        }
    }

    /// The kubeconfig of the identity the executor runs as.
    pub fn kubeconfig(&self) -> &Path {
        match self {
            Cluster::Test(c) => c.kubeconfig_path(),
            Cluster::Real(r) => &r.kubeconfig,
        }
    }

    /// A client as the executor's identity (`sidekill stop`'s own way to make one).
    pub async fn client(&self) -> kube::Client {
        client_for(self.kubeconfig()).await
    }

    /// A client for making fixtures and reading what the executor left (events, logs).
    pub async fn admin(&self) -> kube::Client {
        match self {
            Cluster::Test(c) => client_for(c.kubeconfig_path()).await,
            Cluster::Real(r) => r.admin.clone(),
        }
    }

    /// The fault injection of the test server; `None` on a real cluster.
    pub fn faults(&self) -> Option<&Faults> {
        match self {
            Cluster::Test(c) => Some(c.faults()),
            Cluster::Real(_) => None,
        }
    }

    /// Creates the pods of a (multi-document) YAML manifest in [`Cluster::namespace`] (when
    /// the manifest names none), on `SIDEKILL_E2E_NODE` when that is set.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<(), String> {
        let r = match self {
            Cluster::Test(c) => {
                return c
                    .apply_yaml(yaml)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Cluster::Real(r) => r,
        };
        let docs = sidekill_policy::yaml::documents(yaml).map_err(|e| e.to_string())?;
        for mut doc in docs {
            if doc["kind"] != "Pod" {
                return Err(format!("only pods are fixtures here, not {}", doc["kind"]));
            }
            if doc.pointer("/metadata/namespace").is_none() {
                doc["metadata"]["namespace"] = json!(r.namespace);
            }
            if let Some(node) = &r.node {
                if doc.pointer("/spec/nodeName").is_none() {
                    doc["spec"]["nodeName"] = json!(node);
                }
            }
            let pod: Pod = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            Api::<Pod>::namespaced(r.admin.clone(), &ns)
                .create(&PostParams::default(), &pod)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Creates a `batch/v1` Job from YAML in [`Cluster::namespace`], its pod template on
    /// `SIDEKILL_E2E_NODE` when that is set. Only on a real cluster: the test server serves no
    /// `batch` API group (docs/test-apiserver.md), so there is no Job controller to run it.
    pub async fn create_job(&self, yaml: &str) -> Result<(), String> {
        let Cluster::Real(r) = self else {
            return Err("the test server has no Job controller".into());
        };
        let docs = sidekill_policy::yaml::documents(yaml).map_err(|e| e.to_string())?;
        for mut doc in docs {
            doc["metadata"]["namespace"] = json!(r.namespace);
            if let Some(node) = &r.node {
                doc["spec"]["template"]["spec"]["nodeName"] = json!(node);
            }
            let job: Job = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            Api::<Job>::namespaced(r.admin.clone(), &r.namespace)
                .create(&PostParams::default(), &job)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A Job now, as the admin reads it (`None` on the test server, or when it is not there).
    pub async fn job(&self, name: &str) -> Option<Job> {
        let Cluster::Real(r) = self else {
            return None;
        };
        Api::<Job>::namespaced(r.admin.clone(), &r.namespace)
            .get_opt(name)
            .await
            .expect("get job as admin")
    }

    /// Every pod the Job controller made for a Job (label `batch.kubernetes.io/job-name`).
    pub async fn pods_of_job(&self, job: &str) -> Vec<Pod> {
        let Cluster::Real(r) = self else {
            return Vec::new();
        };
        Api::<Pod>::namespaced(r.admin.clone(), &r.namespace)
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .expect("list pods as admin")
            .items
    }

    /// The pod now, as the API returns it.
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        match self {
            Cluster::Test(c) => c.pod("default", name),
            Cluster::Real(r) => Api::<Pod>::namespaced(r.admin.clone(), &r.namespace)
                .get_opt(name)
                .await
                .expect("get pod as admin"),
        }
    }

    /// Waits until `cond` holds for the pod; fails after `timeout`, or when the pod
    /// disappears while waited for.
    pub async fn wait_for_pod(
        &self,
        name: &str,
        timeout: Duration,
        cond: impl Fn(&Pod) -> bool,
    ) -> Result<Pod, String> {
        if let Cluster::Test(c) = self {
            return c
                .wait_for_pod("default", name, timeout, cond)
                .await
                .map_err(|e| e.to_string());
        }
        let start = Instant::now();
        let mut last = None;
        loop {
            match self.pod(name).await {
                Some(p) if cond(&p) => return Ok(p),
                Some(p) => last = Some(p),
                None if last.is_some() => return Err(format!("pod {name} went away")),
                None => {}
            }
            if start.elapsed() >= timeout {
                return Err(format!(
                    "pod {name}: not there after {timeout:?}; last seen: {:?}",
                    last.and_then(|p| p.status)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A container's log, or `None` when it cannot be read (yet).
    pub async fn logs(&self, name: &str, container: &str) -> Option<String> {
        match self {
            Cluster::Test(c) => c.logs("default", name, container),
            Cluster::Real(r) => {
                let lp = LogParams {
                    container: Some(container.to_owned()),
                    ..LogParams::default()
                };
                Api::<Pod>::namespaced(r.admin.clone(), &r.namespace)
                    .logs(name, &lp)
                    .await
                    .ok()
            }
        }
    }

    /// Deletes the pod while a plan runs on it: on the test server at the exec itself (fault
    /// `deletePodOnExec`); on a real cluster as soon as a step is recorded on the pod (a
    /// `sidekill.dev/done-` annotation), the first moment a client can see the plan running.
    pub async fn delete_pod_during_plan(&self, name: &str) {
        match self {
            Cluster::Test(c) => c.faults().delete_pod_on_exec("default", name),
            Cluster::Real(r) => {
                let pods = Api::<Pod>::namespaced(r.admin.clone(), &r.namespace);
                let name = name.to_owned();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        let recorded = pods.get_opt(&name).await.ok().flatten().is_some_and(|p| {
                            p.metadata
                                .annotations
                                .unwrap_or_default()
                                .keys()
                                .any(|k| k.starts_with(sidekill::exec::DONE_ANNOTATION_PREFIX))
                        });
                        if recorded {
                            let _ = pods.delete(&name, &DeleteParams::default()).await;
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        }
    }

    /// How many Events on `pod` have `reason`.
    pub async fn events(&self, pod: &str, reason: &str) -> usize {
        events_on(self.admin().await, self.namespace(), pod, reason)
            .await
            .len()
    }

    /// A new identity in the test's namespace (ServiceAccount `name`) bound to a Role with
    /// `rules`, once the API server applies them; its kubeconfig (the executor's cluster,
    /// a token from the TokenRequest API). Real clusters only: the test server has no RBAC.
    pub async fn identity(&self, name: &str, rules: Value) -> PathBuf {
        let Cluster::Real(r) = self else {
            panic!("identities are for real clusters: the test server has no RBAC")
        };
        let ns = &r.namespace;
        let pp = PostParams::default();
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
        let sas = Api::<ServiceAccount>::namespaced(r.admin.clone(), ns);
        sas.create(&pp, &sa).await.expect("create ServiceAccount");
        let role: Role =
            serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules}))
                .expect("role");
        Api::<Role>::namespaced(r.admin.clone(), ns)
            .create(&pp, &role)
            .await
            .expect("create Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }))
        .expect("binding");
        Api::<RoleBinding>::namespaced(r.admin.clone(), ns)
            .create(&pp, &binding)
            .await
            .expect("create RoleBinding");
        let request =
            serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
                .expect("token request");
        let token = sas
            .create_token_request(name, &pp, &request)
            .await
            .expect("TokenRequest")
            .status
            .expect("a token")
            .token;
        // The executor's kubeconfig with the new identity's token as every user.
        let text = std::fs::read_to_string(&r.kubeconfig).expect("read KUBECONFIG");
        let mut kc = sidekill_policy::yaml::documents(&text)
            .expect("KUBECONFIG is YAML")
            .remove(0);
        for user in kc["users"].as_array_mut().into_iter().flatten() {
            user["user"] = json!({"token": token});
        }
        let path = r.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kc.to_string()).expect("write kubeconfig");
        // RBAC reaches the authorizer through an informer: wait until every granted rule is
        // in force, or a test would see a 403 for a permission it was given.
        let client = client_for(&path).await;
        let reviews = Api::<SelfSubjectAccessReview>::all(client);
        for rule in rules.as_array().into_iter().flatten() {
            // The rule's API group (`""` is core; `batch` for jobs): a review without it asks
            // about the core group, which a `batch` rule does not grant.
            let group = rule["apiGroups"][0].as_str().unwrap_or_default();
            for resource in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    let (resource, subresource) = resource
                        .as_str()
                        .unwrap_or_default()
                        .split_once('/')
                        .map_or((resource.as_str().unwrap_or_default(), None), |(r, s)| {
                            (r, Some(s))
                        });
                    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
                        "spec": {"resourceAttributes": {"namespace": ns, "verb": verb,
                            "group": group, "resource": resource, "subresource": subresource}}
                    }))
                    .expect("review");
                    let deadline = Instant::now() + Duration::from_secs(15);
                    loop {
                        let answer = reviews.create(&pp, &review).await.expect("review");
                        if answer.status.is_some_and(|s| s.allowed) {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{name} may not {verb} {resource} 15 s after its Role was made"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        path
    }

    /// Stops the test server, or deletes the real cluster's namespace.
    pub async fn shutdown(self) {
        match self {
            Cluster::Test(c) => c.shutdown().await,
            Cluster::Real(mut r) => {
                // In the background: the namespace controller deletes the pods (and so their
                // processes) and then the namespace.
                let _ = Api::<Namespace>::all(r.admin.clone())
                    .delete(&r.namespace, &DeleteParams::background())
                    .await;
                r.deleted = true;
            }
        }
    }
}

/// A client from a kubeconfig, made as `sidekill stop` makes its own.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    sidekill::cli::stop::client(Some(kubeconfig))
        .await
        .unwrap_or_else(|e| panic!("a client from {}: {e}", kubeconfig.display()))
}

impl Real {
    async fn start(tag: &str) -> Real {
        let kubeconfig = env_path(
            "KUBECONFIG",
            "the executor's identity (sidekill's ServiceAccount, deploy/ RBAC)",
        );
        let admin_kubeconfig = env_path(
            "SIDEKILL_E2E_ADMIN_KUBECONFIG",
            "an identity that may make namespaces, pods and RBAC objects",
        );
        let node = std::env::var("SIDEKILL_E2E_NODE")
            .ok()
            .filter(|n| !n.is_empty());
        let admin = client_for(&admin_kubeconfig).await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let namespace = format!("sidekill-e2e-{tag}-{:x}-{nanos:x}", std::process::id());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": namespace, "labels": {"sidekill.dev/e2e": "true"}}
        }))
        .expect("namespace");
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {namespace} as admin: {e}"));
        let real = Real {
            kubeconfig,
            admin_kubeconfig,
            admin,
            namespace,
            node,
            dir: tempfile::tempdir().expect("tempdir"),
            deleted: false,
        };
        // The ServiceAccount admission plugin refuses pods until the namespace's `default`
        // ServiceAccount exists (kube-controller-manager makes it).
        let sas = Api::<ServiceAccount>::namespaced(real.admin.clone(), &real.namespace);
        let deadline = Instant::now() + Duration::from_secs(30);
        while sas.get_opt("default").await.ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "namespace {}: no default ServiceAccount after 30 s",
                real.namespace
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        real
    }
}

impl Drop for Real {
    /// A test that panicked leaves no namespace behind either. The test's runtime may be
    /// unwinding, so the deletion runs on a thread and runtime of its own.
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let namespace = self.namespace.clone();
        let admin_kubeconfig = self.admin_kubeconfig.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(admin) = sidekill::cli::stop::client(Some(&admin_kubeconfig)).await else {
                    return;
                };
                let _ = Api::<Namespace>::all(admin)
                    .delete(&namespace, &DeleteParams::background())
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}
