//! The controller end to end on `crates/testcluster` (real processes; needs root): it stops
//! the sidecars of watched pods once their main containers exit and leaves other pods
//! alone, hot-swaps its policy from a ConfigMap, serves health and metrics, and two
//! controllers, one of them killed mid-plan, never run a step twice.
//!
//! Each controller runs on a runtime of its own, so that "killing" one (dropping its
//! runtime) cancels every task it had, as a crashed process would.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use sidekill::controller::{self, Controller};
use sidekill::exec::{Executor, Options};
use sidekill::source::configmap::ConfigMapSource;
use sidekill::{embedded, PolicyStore};
use sidekill_testcluster::{container_running, ClusterConfig, TestCluster};

use crate::cluster::require_root;
use crate::common::{embedded_variant, runtime};

async fn cluster() -> TestCluster {
    require_root();
    TestCluster::start(ClusterConfig {
        bookmark_interval: Duration::from_millis(200),
        ..ClusterConfig::default()
    })
    .await
    .expect(
        "start the test cluster (the stand-in comes from `cargo build -p sidekill-testcluster`)",
    )
}

/// A controller on a runtime of its own, with its endpoints on a free port.
struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    controller: Arc<Controller>,
    store: Arc<PolicyStore>,
    endpoints: std::net::SocketAddr,
}

#[derive(Default)]
struct Setup {
    identity: &'static str,
    claim: Option<Duration>,
    configmap: Option<(&'static str, &'static str)>,
    /// `controller::Options::watch_failure_grace`, when not the default.
    watch_grace: Option<Duration>,
}

impl Running {
    fn start(kubeconfig: &std::path::Path, setup: Setup) -> Running {
        let kubeconfig = kubeconfig.to_path_buf();
        // Runtimes cannot be built or blocked on from inside the test's own runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let store = Arc::new(
                PolicyStore::new(runtime().clone(), None, embedded::BYTES, embedded::ORIGIN)
                    .expect("store"),
            );
            let controller = rt.block_on(async {
                let client = sidekill::cli::stop::client(Some(&kubeconfig))
                    .await
                    .expect("client");
                if let Some((name, key)) = setup.configmap {
                    let source = ConfigMapSource::new(client.clone(), "default", name, key);
                    tokio::spawn(source.run(Arc::clone(&store)));
                }
                let executor = Executor::new(
                    client.clone(),
                    Arc::clone(&store) as _,
                    Options {
                        settle: Duration::from_secs(2),
                        backoff: Duration::from_millis(100),
                        // The controller's own behaviour, with the exec stops its pods'
                        // expectations name (executor/methods.rs covers image swap).
                        nop_image: None,
                        ..Options::default()
                    },
                );
                let mut options = controller::Options {
                    identity: setup.identity.to_owned(),
                    retry_after: Duration::from_millis(200),
                    ..controller::Options::default()
                };
                if let Some(ttl) = setup.claim {
                    options.claim_ttl = ttl;
                }
                if let Some(grace) = setup.watch_grace {
                    options.watch_failure_grace = grace;
                }
                Controller::new(client, executor, options)
            });
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let endpoints = listener.local_addr().expect("address");
            controller::metrics::spawn_server(
                listener,
                controller.metrics(),
                Arc::clone(&store),
                Duration::from_secs(60),
            )
            .expect("endpoints");
            rt.spawn(Arc::clone(&controller).run(std::future::pending(), Duration::ZERO));
            Running {
                runtime: Some(rt),
                controller,
                store,
                endpoints,
            }
        })
        .join()
        .expect("controller thread")
    }

    /// An endpoint's status code and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.endpoints).expect("connect");
        write!(s, "GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    /// A metric's value: `name{labels} value` lines, matched on the text before the value.
    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Ends the controller as a crash would: every task it had is dropped mid-flight.
    fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn annotations(c: &TestCluster, name: &str) -> BTreeMap<String, String> {
    c.pod("default", name)
        .and_then(|p| p.metadata.annotations)
        .unwrap_or_default()
}

fn terminated(c: &TestCluster, name: &str, container: &str) -> bool {
    c.pod("default", name)
        .is_some_and(|p| sidekill_testcluster::container_exit_code(&p, container).is_some())
}

async fn events(client: kube::Client, pod: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client, "default");
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.reason.as_deref() == Some("SidecarStep"))
        .filter_map(|e| e.message)
        .collect()
}

const SHELL_SIDECAR: &str = "{name: proxy, image: alpine, command: [sh, -c, \"trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done\"]}";

fn pod(name: &str, labels: &str, annotations: &str, main_seconds: u32, sidecar: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
  labels: {{{labels}}}
  annotations: {{{annotations}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: main, image: sidekill.test/main, args: [--seconds, '{main_seconds}']}}
  - {sidecar}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_stops_watched_pods_once_main_exits_and_leaves_the_rest_alone() {
    let c = cluster().await;
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            ..Setup::default()
        },
    );
    let mut reports = ctl.controller.reports();
    eventually("readyz", Duration::from_secs(10), || {
        ctl.get("readyz").0 == 200
    })
    .await;
    assert_eq!(ctl.get("healthz").0, 200);
    c.apply_yaml(&pod(
        "argo",
        "workflows.argoproj.io/workflow: wf",
        "",
        1,
        SHELL_SIDECAR,
    ))
    .await
    .expect("apply");
    c.apply_yaml(&pod(
        "job",
        "batch.kubernetes.io/job-name: j",
        // Outside Argo, only an injector's marks make a container a sidecar.
        "vault.hashicorp.com/agent-inject-status: injected",
        1,
        &SHELL_SIDECAR.replace("name: proxy", "name: vault-agent"),
    ))
    .await
    .expect("apply");
    c.apply_yaml(&pod("other", "app: web", "", 1, SHELL_SIDECAR))
        .await
        .expect("apply");
    // Not ready yet: main works for a second; nothing may happen before it exits.
    assert!(annotations(&c, "argo").is_empty());
    let mut done = BTreeMap::new();
    while done.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .expect("a report within 20 s")
            .expect("report");
        done.insert(r.name.clone(), r);
    }
    for (name, sidecar) in [("argo", "proxy"), ("job", "vault-agent")] {
        let r = &done[name];
        assert_eq!(r.containers.len(), 1, "{r:#?}");
        assert_eq!(
            r.containers[0].verdict,
            sidekill::exec::Verdict::Stopped,
            "{r:#?}"
        );
        assert!(terminated(&c, name, sidecar));
        let a = annotations(&c, name);
        assert_eq!(
            a.get(&format!("sidekill.dev/done-{sidecar}"))
                .map(String::as_str),
            Some("[0]")
        );
        assert!(
            !a.contains_key(controller::claim::CLAIM_ANNOTATION),
            "claim released: {a:?}"
        );
    }
    // The unwatched pod's main has exited too; its sidecar must still run, untouched.
    c.wait_for_pod("default", "other", Duration::from_secs(10), |p| {
        sidekill_testcluster::container_exit_code(p, "main").is_some()
    })
    .await
    .expect("other's main exits");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = c.pod("default", "other").expect("other");
    assert!(container_running(&other, "proxy"));
    assert!(annotations(&c, "other").is_empty());
    assert_eq!(
        ctl.metric("sidekill_plans_total{outcome=\"done\"}"),
        Some(2.0)
    );
    assert_eq!(
        ctl.metric("sidekill_containers_total{verdict=\"stopped\"}"),
        Some(2.0)
    );
    assert_eq!(
        ctl.metric("sidekill_steps_total{result=\"ran\"}"),
        Some(2.0)
    );
    assert_eq!(ctl.metric("sidekill_pods_in_flight"), Some(0.0));
    let info = ctl.get("metrics").1;
    assert!(
        info.contains(&format!("sha256=\"{}\"", ctl.store.current().sha256())),
        "{info}"
    );
    // Later events of finished pods start nothing new.
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.patch(
        "argo",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .expect("touch");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(client, "argo").await.len(), 1);
    assert_eq!(
        ctl.metric("sidekill_plans_total{outcome=\"done\"}"),
        Some(2.0)
    );
    drop(ctl);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_hot_swaps_its_policy_from_a_configmap_and_refuses_a_bad_one() {
    let c = cluster().await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let module = |bytes: Vec<u8>| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("sidekill-policy".into()),
            ..Default::default()
        },
        binary_data: Some([("policy.wasm".to_owned(), ByteString(bytes))].into()),
        ..Default::default()
    };
    let variant = embedded_variant("v2");
    let v2 = sidekill::Sha256::of(&variant).to_string();
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            configmap: Some(("sidekill-policy", "policy.wasm")),
            ..Setup::default()
        },
    );
    let mut reports = ctl.controller.reports();
    configmaps
        .create(&PostParams::default(), &module(variant))
        .await
        .expect("create the policy ConfigMap");
    eventually("the swap to v2", Duration::from_secs(20), || {
        ctl.store.current().sha256().to_string() == v2
    })
    .await;
    c.apply_yaml(&pod(
        "swapped",
        "workflows.argoproj.io/workflow: wf",
        "",
        0,
        SHELL_SIDECAR,
    ))
    .await
    .expect("apply");
    let r = tokio::time::timeout(Duration::from_secs(20), reports.recv())
        .await
        .expect("a report")
        .expect("report");
    assert!(r.policy.ends_with(&v2), "planned by v2: {}", r.policy);
    assert_eq!(r.containers[0].verdict, sidekill::exec::Verdict::Stopped);
    // A module with an import is refused; v2 keeps serving.
    let hostile = wat::parse_str(r#"(module (import "env" "f" (func)))"#).expect("wat");
    configmaps
        .replace("sidekill-policy", &PostParams::default(), &{
            let mut cm = configmaps.get("sidekill-policy").await.expect("get");
            cm.binary_data = module(hostile).binary_data;
            cm
        })
        .await
        .expect("replace");
    eventually("the refusal", Duration::from_secs(20), || {
        ctl.metric("sidekill_policy_refusals_total") == Some(1.0)
    })
    .await;
    assert_eq!(ctl.store.current().sha256().to_string(), v2);
    drop(ctl);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_one_killed_mid_plan_never_run_a_step_twice() {
    let c = cluster().await;
    // SIGTERM is ignored by the process the kill command targets, so the plan is
    // SIGTERM, a 2 s grace wait, SIGKILL: long enough to kill a controller inside it.
    c.apply_yaml(&pod(
        "handover",
        "workflows.argoproj.io/workflow: wf",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"kill -%d $(pidof sleep)\"]'",
        1,
        "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
    ))
    .await
    .expect("apply");
    let claim = Some(Duration::from_secs(2));
    let mut a = Some(Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "a",
            claim,
            ..Setup::default()
        },
    ));
    let mut b = Some(Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "b",
            claim,
            ..Setup::default()
        },
    ));
    // Wait until one of them has sent SIGTERM (step 0 recorded) and is in the grace wait.
    eventually("step 0 recorded", Duration::from_secs(20), || {
        annotations(&c, "handover")
            .get("sidekill.dev/done-ign")
            .map(String::as_str)
            == Some("[0]")
    })
    .await;
    // The step's Event follows its record: let it be written before the holder is killed,
    // so that the count below is of steps run, not of Events a killed process never sent.
    let events_client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(events_client.clone(), "handover")
        .await
        .iter()
        .any(|e| e.contains("step 0 send SIGTERM"))
    {
        assert!(Instant::now() < deadline, "no Event for step 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = controller::claim::Claim::of(&c.pod("default", "handover").expect("pod"))
        .expect("a claim while the plan runs")
        .holder;
    assert!(
        !terminated(&c, "handover", "ign"),
        "SIGTERM must not stop it"
    );
    let survivor = if holder == "a" {
        a.take().expect("a").kill();
        b.take().expect("b")
    } else {
        b.take().expect("b").kill();
        a.take().expect("a")
    };
    // The killed one comes back (a new process, same name), while the survivor waits
    // for the dead claim to expire and takes over.
    let restarted = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: if holder == "a" { "a" } else { "b" },
            claim,
            ..Setup::default()
        },
    );
    eventually(
        "the sidecar stopped by SIGKILL",
        Duration::from_secs(30),
        || terminated(&c, "handover", "ign"),
    )
    .await;
    eventually(
        "the record complete and the claim released",
        Duration::from_secs(10),
        || {
            let a = annotations(&c, "handover");
            a.get("sidekill.dev/done-ign").map(String::as_str) == Some("[0,1,2]")
                && !a.contains_key(controller::claim::CLAIM_ANNOTATION)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let mut steps = events(client, "handover").await;
    steps.sort();
    assert_eq!(steps.len(), 2, "SIGTERM once, SIGKILL once: {steps:#?}");
    assert!(steps[0].contains("step 0 send SIGTERM"), "{steps:#?}");
    assert!(steps[1].contains("step 2 send SIGKILL"), "{steps:#?}");
    drop((survivor, restarted));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_rides_out_an_api_outage_and_a_watch_too_old_to_resume() {
    require_root();
    // A short history: the changes made during the outage are more than a watch can
    // resume over, so the watcher's reconnect gets 410 Gone and must list again.
    let c = TestCluster::start(ClusterConfig {
        bookmark_interval: Duration::from_millis(200),
        history: 8,
        ..ClusterConfig::default()
    })
    .await
    .expect("start the test cluster");
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            watch_grace: Some(Duration::from_millis(500)),
            ..Setup::default()
        },
    );
    eventually("readyz", Duration::from_secs(10), || {
        ctl.get("readyz").0 == 200
    })
    .await;
    // An API server restart: every watch ends, and for 4 s every request fails. Readiness
    // follows the watch: not ready while it fails past the grace, ready again after.
    c.faults().fail_for(Duration::from_secs(4));
    c.faults().close_watches();
    eventually(
        "readyz 503 while the watch fails",
        Duration::from_secs(4),
        || {
            let (code, body) = ctl.get("readyz");
            code == 503 && body.contains("the pod watch has failed")
        },
    )
    .await;
    let names: Vec<String> = (0..12).map(|i| format!("outage-{i}")).collect();
    for name in &names {
        c.apply_yaml(&pod(
            name,
            "workflows.argoproj.io/workflow: wf",
            "",
            0,
            SHELL_SIDECAR,
        ))
        .await
        .expect("apply");
    }
    eventually(
        "every sidecar stopped after the outage",
        Duration::from_secs(60),
        || names.iter().all(|n| terminated(&c, n, "proxy")),
    )
    .await;
    // The record follows the stop: the executor writes it once it has watched the pod to its
    // end (up to 10 s), through the same API that was just down.
    eventually("every stop recorded once", Duration::from_secs(30), || {
        names
            .iter()
            .all(|n| annotations(&c, n).contains_key("sidekill.dev/done-proxy"))
    })
    .await;
    for n in &names {
        assert_eq!(
            annotations(&c, n)
                .get("sidekill.dev/done-proxy")
                .map(String::as_str),
            Some("[0]"),
            "{n}"
        );
    }
    assert!(
        ctl.metric("sidekill_watch_errors_total").unwrap_or(0.0) >= 1.0,
        "the outage was seen by the watch"
    );
    assert_eq!(ctl.get("healthz").0, 200);
    eventually(
        "readyz again after the outage",
        Duration::from_secs(10),
        || ctl.get("readyz").0 == 200,
    )
    .await;
    drop(ctl);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_keeps_changing_does_not_cost_its_controller_the_claim() {
    let c = cluster().await;
    c.apply_yaml(&pod(
        "busy",
        "workflows.argoproj.io/workflow: wf",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"kill -%d $(pidof sleep)\"]'",
        1,
        "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
    ))
    .await
    .expect("apply");
    // Renewals every 0.4 s race with a writer patching the pod every 20 ms.
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            claim: Some(Duration::from_millis(1200)),
            ..Setup::default()
        },
    );
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let writer = tokio::spawn(async move {
        for i in 0u32.. {
            let patch = serde_json::json!({"metadata": {"labels": {"tick": i.to_string()}}});
            let _ = api
                .patch("busy", &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    eventually(
        "SIGKILL after the grace period",
        Duration::from_secs(30),
        || terminated(&c, "busy", "ign"),
    )
    .await;
    writer.abort();
    eventually("the record complete", Duration::from_secs(10), || {
        annotations(&c, "busy")
            .get("sidekill.dev/done-ign")
            .map(String::as_str)
            == Some("[0,1,2]")
    })
    .await;
    assert_eq!(
        ctl.metric("sidekill_failures_total{kind=\"claim-lost\"}"),
        None,
        "{}",
        ctl.get("metrics").1
    );
    assert_eq!(events(client, "busy").await.len(), 2);
    drop(ctl);
    c.shutdown().await;
}

fn reasons(
    c: &TestCluster,
    pod: &str,
    reason: &str,
) -> impl std::future::Future<Output = Vec<String>> {
    let kubeconfig = c.kubeconfig_path().to_owned();
    let (pod, reason) = (pod.to_owned(), reason.to_owned());
    async move {
        let client = sidekill::cli::stop::client(Some(&kubeconfig))
            .await
            .expect("client");
        let api: Api<Event> = Api::namespaced(client, "default");
        api.list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod.as_str()))
            .filter(|e| e.reason.as_deref() == Some(reason.as_str()))
            .filter_map(|e| e.message)
            .collect()
    }
}

/// Issue 12 through the controller: Job pods whose Cloud SQL proxy exits 143 (Failed under
/// `Never`), 0 (`--exit-zero-on-sigterm`: Succeeded) and 143 under `OnFailure` (restarted by
/// the kubelet: never completes). `/metrics` counts the pods by final phase and by whether the
/// prediction held; each pod gets a `PodOutcome` Event with prediction and result; the restarted
/// sidecar gets `SidecarRestarted` and is not stopped again while the controller keeps watching
/// its pod (whose status keeps changing as the kubelet restarts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reports_each_pods_end_against_the_prediction_and_counts_phases() {
    let c = cluster().await;
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl-outcome",
            ..Setup::default()
        },
    );
    let mut reports = ctl.controller.reports();
    eventually("readyz", Duration::from_secs(10), || {
        ctl.get("readyz").0 == 200
    })
    .await;
    let proxy = |args: &str| {
        format!("{{name: cloud-sql-proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1-alpine', args: [{args}]}}")
    };
    let job = "batch.kubernetes.io/job-name: j";
    c.apply_yaml(&pod("fails", job, "", 1, &proxy("'p:r:i'")))
        .await
        .expect("apply");
    c.apply_yaml(&pod(
        "succeeds",
        job,
        "",
        1,
        &proxy("'--exit-zero-on-sigterm', 'p:r:i'"),
    ))
    .await
    .expect("apply");
    c.apply_yaml(
        &pod("restarts", job, "", 1, &proxy("'p:r:i'"))
            .replace("restartPolicy: Never", "restartPolicy: OnFailure"),
    )
    .await
    .expect("apply");
    let mut done = BTreeMap::new();
    while done.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(30), reports.recv())
            .await
            .expect("a report within 30 s")
            .expect("report");
        done.insert(r.name.clone(), r);
    }
    for (name, end) in [
        ("fails", "Failed"),
        ("succeeds", "Succeeded"),
        ("restarts", "NeverCompletes"),
    ] {
        let r = &done[name];
        assert_eq!(r.end.as_deref(), Some(end), "{r:#?}");
        assert_eq!(r.end_matches, Some(true), "{r:#?}");
        let outcome = reasons(&c, name, "PodOutcome").await;
        assert_eq!(outcome.len(), 1, "{name}: {outcome:?}");
        assert!(
            outcome[0].starts_with(&format!("pod {end} (predicted {end})")),
            "{outcome:?}"
        );
    }
    assert_eq!(
        done["restarts"].containers[0].verdict,
        sidekill::exec::Verdict::Restarted
    );
    for (phase, n) in [("Failed", 1.0), ("Succeeded", 1.0), ("NeverCompletes", 1.0)] {
        assert_eq!(
            ctl.metric(&format!(
                "sidekill_pods_by_phase_total{{phase=\"{phase}\"}}"
            )),
            Some(n),
            "{phase}"
        );
    }
    assert_eq!(
        ctl.metric("sidekill_pod_predictions_total{result=\"match\"}"),
        Some(3.0)
    );
    assert_eq!(
        ctl.metric("sidekill_containers_total{verdict=\"restarted\"}"),
        Some(1.0)
    );
    // The kubelet keeps restarting nothing now (the new instance runs), but its status changes
    // came to the controller as events: it never stopped the new instance.
    c.wait_for_pod("default", "restarts", Duration::from_secs(20), |p| {
        container_running(p, "cloud-sql-proxy")
    })
    .await
    .expect("the new instance runs");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reasons(&c, "restarts", "SidecarStep").await.len(), 1);
    assert_eq!(reasons(&c, "restarts", "SidecarRestarted").await.len(), 1);
    let p = c.pod("default", "restarts").expect("pod");
    assert!(container_running(&p, "cloud-sql-proxy"));
    assert_eq!(
        ctl.metric("sidekill_plans_total{outcome=\"done\"}"),
        Some(3.0)
    );
}
