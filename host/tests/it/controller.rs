//! The controller end to end on `crates/testcluster` (real processes; needs root): it stops
//! the sidecars of watched pods once their main containers exit and leaves other pods
//! alone, hot-swaps its policy from a ConfigMap, serves health and metrics, and two
//! controllers, one of them killed mid-plan, never run a step twice.
//!
//! Each controller runs on a runtime of its own, so that "killing" one (dropping its
//! runtime) cancels every task it had, as a crashed process would.

use std::collections::BTreeMap;
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
use crate::common::{embedded_variant, recorded, runtime};

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
    /// `controller::Options::hold`, when not the default.
    hold: Option<Duration>,
}

impl Running {
    fn start(kubeconfig: &std::path::Path, setup: Setup) -> Running {
        if std::env::var_os("SIDEKILL_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(std::io::stderr)
                .try_init();
        }
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
            let api_requests = Arc::new(sidekill::requests::Counts::default());
            let controller = rt.block_on(async {
                let client = sidekill::cli::stop::client_counted(Some(&kubeconfig), &api_requests)
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
                    api_requests,
                    retry_after: Duration::from_millis(200),
                    ..controller::Options::default()
                };
                if let Some(ttl) = setup.claim {
                    options.claim_ttl = ttl;
                }
                if let Some(grace) = setup.watch_grace {
                    options.watch_failure_grace = grace;
                }
                if let Some(hold) = setup.hold {
                    options.hold = hold;
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
        let answer =
            crate::http_client::get(self.endpoints, "x", &format!("/{path}")).expect("get");
        (answer.status, answer.body().to_owned())
    }

    /// A metric's value: `name{labels} value` lines, matched on the text before the value.
    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("metrics");
        assert_exposition(&body);
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

/// Checks the OpenMetrics text format line by line: a `# HELP`, `# TYPE` or `# UNIT`
/// comment, or a sample `name{labels} value` from the line's first character (prometheus
/// `expfmt` text_parse.go reads a line's first token as the metric name, so an indented
/// sample line is refused); and `# EOF` as the last line, once (OpenMetrics 1.0, "Overall
/// structure").
fn assert_exposition(body: &str) {
    assert_eq!(body.lines().last(), Some("# EOF"), "no `# EOF` at the end");
    assert_eq!(body.matches("# EOF").count(), 1, "`# EOF` more than once");
    for line in body.lines().filter(|l| !l.is_empty() && *l != "# EOF") {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                ["HELP ", "TYPE ", "UNIT "]
                    .iter()
                    .any(|c| comment.starts_with(c)),
                "comment: {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample and its value");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line:?}"
        );
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "value: {line:?}"
        );
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

/// The messages of the steps recorded on `pod` (its `SidecarStep` Events).
async fn events(client: kube::Client, pod: &str) -> Vec<String> {
    crate::cluster::events_on(client, "default", pod, "SidecarStep")
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect()
}

/// Waits until step 0 (SIGTERM) of the pod's `ign` sidecar is on the pod's record, as done
/// (`[0]`: a wait handed back carries it) or as a send begun (a wait held in place: the
/// record of the send is owed until the next write, and the begun record keeps it from
/// being sent again), and its Event is written: the Event follows the send, so a test that
/// kills the holder next counts steps run, not Events a killed process never sent.
async fn sigterm_recorded(c: &TestCluster, name: &str) {
    eventually("step 0 on record", Duration::from_secs(20), || {
        let a = annotations(c, name);
        let begun = a.get("sidekill.dev/wait-ign").is_some_and(|w| {
            serde_json::from_str::<serde_json::Value>(w)
                .is_ok_and(|w| w["step"] == 0 && w["started"] == true)
        });
        recorded(&a, "ign").as_deref() == Some("[0]") || begun
    })
    .await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(client.clone(), name)
        .await
        .iter()
        .any(|e| e.contains("step 0 send SIGTERM"))
    {
        assert!(Instant::now() < deadline, "no Event for step 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        assert_eq!(recorded(&a, sidecar).as_deref(), Some("[0]"));
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
    // Every request the controller sent is counted, by verb: one exec per stopped pod.
    assert_eq!(
        ctl.metric("sidekill_api_requests_total{request=\"get pods/exec\"}"),
        Some(2.0)
    );
    let info = ctl.get("metrics").1;
    let requests: Vec<&str> = info
        .lines()
        .filter(|l| l.starts_with("sidekill_api_requests_total{"))
        .collect();
    eprintln!("API requests for 2 stopped pods and 1 left alone: {requests:#?}");
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
    sigterm_recorded(&c, "handover").await;
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
            recorded(&a, "ign").as_deref() == Some("[0,1,2]")
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
            recorded(&annotations(&c, n), "proxy").as_deref(),
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
        recorded(&annotations(&c, "busy"), "ign").as_deref() == Some("[0,1,2]")
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

/// A pod whose owner chose its grace period (issue #18): a forged injector annotation, a
/// `terminationGracePeriodSeconds` of 999999999, and a sidecar whose process ignores SIGTERM.
fn hostile_pod(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{workflows.argoproj.io/workflow: wf}}
  annotations:
    sidecar.istio.io/status: '{{\"containers\": [\"ign\"]}}'
    workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"kill -%d $(pidof sleep)\"]'
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 999999999
  containers:
  - {{name: main, image: sidekill.test/main, args: [--seconds, '0']}}
  - {{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 100000) & echo running; wait $!; exit 0\"]}}
"
    )
}

/// Whether the pod's `sidekill.dev/wait-<container>` record is a wait handed back, not a
/// send recorded as begun (`"started": true`, written before every send).
fn wait_handed_back(annotations: &BTreeMap<String, String>, container: &str) -> bool {
    annotations
        .get(&format!("sidekill.dev/wait-{container}"))
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .is_some_and(|w| w.get("started").is_none())
}

/// A child process of `pid` (from /proc: its 4th stat field is the parent).
fn child_of(pid: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let child: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // The command (field 2) is in parentheses and may hold spaces.
        let (_, rest) = stat.rsplit_once(')')?;
        let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then_some(child)
    })
}

/// Seconds from applying a normal pod (main runs 1 s) to its sidecar's end.
async fn normal_pod_seconds(c: &TestCluster, name: &str) -> f64 {
    let start = Instant::now();
    c.apply_yaml(&pod(
        name,
        "workflows.argoproj.io/workflow: wf",
        "",
        1,
        SHELL_SIDECAR,
    ))
    .await
    .expect("apply");
    eventually(
        "the normal pod's sidecar stopped",
        Duration::from_secs(60),
        || terminated(c, name, "proxy"),
    )
    .await;
    start.elapsed().as_secs_f64()
}

/// Issue #18, "a controller that holds": twenty pods whose grace period is huge and whose
/// sidecars ignore SIGTERM must not hold the workers for their waits (before the fix each held
/// one of the 8 for up to --max-wait-seconds, 10 minutes, and a normal pod queued behind them
/// waited as long). Their waits are handed back, recorded on each pod, and a normal pod still
/// stops in its normal time. Times are printed for BENCHMARKS.md, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grace_periods_do_not_hold_the_workers() {
    let c = cluster().await;
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            ..Setup::default()
        },
    );
    eventually("readyz", Duration::from_secs(10), || {
        ctl.get("readyz").0 == 200
    })
    .await;
    let alone = normal_pod_seconds(&c, "normal-alone").await;
    let hostile: Vec<String> = (0..20).map(|i| format!("hostile-{i}")).collect();
    for name in &hostile {
        c.apply_yaml(&hostile_pod(name, "hostile"))
            .await
            .expect("apply");
    }
    // The hostile pods get the workers first: each has SIGTERM sent before the normal pod
    // is even created.
    eventually("a hostile pod signalled", Duration::from_secs(30), || {
        hostile.iter().any(|n| {
            c.pod("hostile", n)
                .and_then(|p| p.metadata.annotations)
                .is_some_and(|a| a.contains_key("sidekill.dev/done-ign"))
        })
    })
    .await;
    let crowded = normal_pod_seconds(&c, "normal-crowded").await;
    eprintln!(
        "normal pod: {alone:.2} s alone, {crowded:.2} s with 20 hostile pods (concurrency 8)"
    );
    // Every hostile pod is waiting, its wait on record and handed back; none holds a worker.
    eventually(
        "every hostile wait handed back",
        Duration::from_secs(60),
        || {
            let n = hostile
                .iter()
                .filter(|n| {
                    c.pod("hostile", n)
                        .and_then(|p| p.metadata.annotations)
                        .is_some_and(|a| wait_handed_back(&a, "ign"))
                })
                .count();
            n == 20
                && ctl.metric("sidekill_queue_depth{state=\"delayed\"}") == Some(20.0)
                && ctl.metric("sidekill_pods_in_flight") == Some(0.0)
        },
    )
    .await;
    for n in &hostile {
        let p = c.pod("hostile", n).expect("pod");
        assert!(container_running(&p, "ign"), "{n}: still in its grace");
        let a = p.metadata.annotations.unwrap_or_default();
        assert_eq!(
            recorded(&a, "ign").as_deref(),
            Some("[0]"),
            "{n}: SIGTERM once, the wait not over"
        );
    }
    drop(ctl);
    c.shutdown().await;
}

/// Issue #18: a wait handed back is resumed from the pod's record when the watch sees the
/// sidecar end (here, signalled from outside): its stop is reported, its wait removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_handed_back_resumes_when_the_sidecar_ends() {
    let c = cluster().await;
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            ..Setup::default()
        },
    );
    let mut reports = ctl.controller.reports();
    c.apply_yaml(&hostile_pod("long", "default"))
        .await
        .expect("apply");
    eventually("the wait handed back", Duration::from_secs(30), || {
        wait_handed_back(&annotations(&c, "long"), "ign")
    })
    .await;
    // The sidecar's process ends (SIGKILL from outside, as a node would); sh then exits 0.
    let pid = c.container_pid("default", "long", "ign").expect("pid");
    let sleep = child_of(pid).expect("the sleep child");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(sleep).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill");
    let r = loop {
        let r = tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .expect("a report within 20 s")
            .expect("report");
        if r.name == "long" && r.outcome == sidekill::exec::Outcome::Done {
            break r;
        }
    };
    assert_eq!(
        r.containers[0].verdict,
        sidekill::exec::Verdict::Stopped,
        "{r:#?}"
    );
    let a = annotations(&c, "long");
    assert!(!a.contains_key("sidekill.dev/wait-ign"), "{a:?}");
    assert_eq!(
        recorded(&a, "ign").as_deref(),
        Some("[0,1]"),
        "the wait recorded, SIGKILL never sent: {a:?}"
    );
    drop(ctl);
    c.shutdown().await;
}

/// Issue #18: pods deleted while the watch was down (a re-list, not a Delete event, tells
/// the controller) must not stay in its tracking for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_deleted_during_a_relist_leave_no_tracking_behind() {
    require_root();
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
            ..Setup::default()
        },
    );
    eventually("readyz", Duration::from_secs(10), || {
        ctl.get("readyz").0 == 200
    })
    .await;
    let names: Vec<String> = (0..6).map(|i| format!("leak-{i}")).collect();
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
    eventually("every pod finished", Duration::from_secs(60), || {
        ctl.metric("sidekill_plans_total{outcome=\"done\"}") == Some(6.0)
            && ctl.metric("sidekill_tracked_pods") == Some(6.0)
    })
    .await;
    // The watch goes down; the pods are deleted meanwhile, and more changes than the
    // history keeps make the watcher list again.
    c.faults().fail_for(Duration::from_secs(3));
    c.faults().close_watches();
    for name in &names {
        // A pod the test kubelet has already removed is deleted too (404); why one is gone
        // this early, in about one run of three, is not known (closing note, session 7).
        match c.delete_pod("default", name, Some(0)) {
            Ok(()) | Err(sidekill_testcluster::Error::Api { code: 404, .. }) => {}
            Err(e) => panic!("delete {name}: {e}"),
        }
    }
    for name in &names {
        c.wait_for_pod_gone("default", name, Duration::from_secs(20))
            .await
            .expect("gone");
    }
    for i in 0..10 {
        c.apply_yaml(&pod(
            &format!("churn-{i}"),
            "app: web",
            "",
            0,
            SHELL_SIDECAR,
        ))
        .await
        .expect("apply");
    }
    eventually("the tracking empty again", Duration::from_secs(30), || {
        ctl.metric("sidekill_tracked_pods") == Some(0.0)
    })
    .await;
    drop(ctl);
    c.shutdown().await;
}

/// The controller's peak resident memory, from /proc (VmHWM), in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Issue #18: a backlog of 10,000 ready pods (after a downtime) must stay within the
/// Deployment's 256 Mi memory limit: before the work queue, one task per pod was spawned
/// before any slot (30-40 KiB each). The pods are bound to another node, so none runs a
/// process; their statuses say main has ended and the sidecar runs. The controller is the
/// real binary, so that its VmHWM is its own. Only a generous memory bound is asserted,
/// never a time; figures are printed for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_ten_thousand_ready_pods_stays_within_the_memory_limit() {
    use futures_util::StreamExt as _;
    const PODS: usize = 10_000;
    let c = cluster().await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let api: Api<Pod> = Api::namespaced(client, "default");
    let created = Instant::now();
    for i in 0..PODS {
        c.apply_yaml(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: backlog-{i}, namespace: default, labels: {{workflows.argoproj.io/workflow: wf}}}}
spec:
  nodeName: elsewhere
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: main, image: sidekill.test/main}}
  - {{name: proxy, image: alpine, command: [sh, -c, 'sleep 1000']}}
"
        ))
        .await
        .expect("apply");
    }
    let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [
        {"name": "main", "ready": false, "restartCount": 0, "image": "sidekill.test/main",
         "imageID": "", "containerID": "containerd://main",
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "proxy", "ready": true, "restartCount": 0, "image": "alpine", "imageID": "",
         "containerID": "containerd://proxy", "state": {"running": {}}}
    ]}});
    let patches = futures_util::stream::iter(0..PODS).map(|i| {
        let api = api.clone();
        let status = status.clone();
        async move {
            api.patch_status(
                &format!("backlog-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        }
    });
    let results: Vec<_> = patches.buffer_unordered(32).collect().await;
    assert!(results.iter().all(Result::is_ok), "every status written");
    eprintln!(
        "{PODS} ready pods created in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let cache = tempfile::tempdir().expect("cache dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args([
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--identity",
            "backlog",
        ])
        .arg("--kubeconfig")
        .arg(c.kubeconfig_path())
        .env("SIDEKILL_CACHE_DIR", cache.path())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the controller");
    let pid = child.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the controller's address");
    let address: std::net::SocketAddr = line
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("address");
    let metric = |series: &str| -> Option<f64> {
        let answer = crate::http_client::get(address, "x", "/metrics").ok()?;
        answer
            .body()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    // Every pod listed is queued or finished (the event count is no measure: the
    // controller's own claim patches come back as events too).
    while metric("sidekill_tracked_pods").unwrap_or(0.0) < PODS as f64 {
        assert!(
            Instant::now() < deadline,
            "the controller never queued every pod: {:?} tracked",
            metric("sidekill_tracked_pods")
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the controller exited"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let listed = started.elapsed().as_secs_f64();
    // Let the workers run on the backlog for a while.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let tracked = metric("sidekill_tracked_pods").unwrap_or(0.0);
    let plans: f64 = ["done", "waiting", "gone"]
        .iter()
        .filter_map(|o| metric(&format!("sidekill_plans_total{{outcome=\"{o}\"}}")))
        .sum();
    let hwm = vm_hwm_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "backlog: {PODS} pods listed and queued in {listed:.1} s; {tracked} tracked, {plans} plans \
         carried out in the next 20 s; controller VmHWM {} MiB",
        hwm / 1024
    );
    assert!(
        tracked >= PODS as f64,
        "every pod still queued or finished: {tracked}"
    );
    assert!(hwm > 0, "VmHWM read");
    // The workers get through the backlog (a fence refusing on a cached version that
    // predates the claim stopped every plan for a claim's lifetime).
    assert!(plans > 0.0, "no plan carried out in 20 s");
    assert!(
        hwm < 256 * 1024,
        "the controller peaked at {} MiB, over the Deployment's 256 Mi",
        hwm / 1024
    );
    c.shutdown().await;
}

/// A TCP proxy in front of the test cluster's API, which a test can cut off: the network
/// partition between one controller and the API server. Cut, it drops every connection and
/// holds new ones open without forwarding a byte (a blackhole: requests hang, as they do
/// behind a dead route).
struct Partition {
    address: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Partition {
    async fn start(upstream: std::net::SocketAddr) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (cut2, generation2) = (Arc::clone(&cut), Arc::clone(&generation));
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let cut = Arc::clone(&cut2);
                let mut changed = generation2.subscribe();
                tokio::spawn(async move {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        // Blackholed: keep the socket, forward nothing.
                        let _ = changed.changed().await;
                        return;
                    }
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = changed.changed() => {}
                    }
                });
            }
        });
        Partition {
            address,
            cut,
            generation,
        }
    }

    /// Cuts (or heals) the link; either way open connections end.
    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// A kubeconfig like `c`'s that goes through the proxy.
    fn kubeconfig(&self, c: &TestCluster, dir: &std::path::Path) -> std::path::PathBuf {
        let text = std::fs::read_to_string(c.kubeconfig_path()).expect("kubeconfig");
        let text = text.replace(
            c.base_url().trim_end_matches('/'),
            &format!("http://{}", self.address),
        );
        let path = dir.join("kubeconfig-partitioned");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

/// Issue #18, fencing: a claim holder cut off from the API server must stop acting before
/// its claim expires (its renewals are not confirmed), and the controller that takes the pod
/// over must not repeat a step done. Before the fix a failed renewal was only logged: the cut
/// off holder went on after the link healed and sent SIGKILL while the new holder, which had
/// taken the expired claim, sent it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_claim_holder_stops_before_its_claim_expires() {
    let c = cluster().await;
    let upstream: std::net::SocketAddr = c
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the test cluster's address");
    let partition = Partition::start(upstream).await;
    let dir = tempfile::tempdir().expect("dir");
    // A 6 s grace waited in place (hold 20 s), under a 3 s claim renewed every second.
    c.apply_yaml(
        &pod(
            "fenced",
            "workflows.argoproj.io/workflow: wf",
            "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"kill -%d $(pidof sleep)\"]'",
            1,
            "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
        )
        .replace("terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 6"),
    )
    .await
    .expect("apply");
    let claim = Some(Duration::from_secs(3));
    let hold = Some(Duration::from_secs(20));
    let a = Running::start(
        &partition.kubeconfig(&c, dir.path()),
        Setup {
            identity: "a",
            claim,
            hold,
            ..Setup::default()
        },
    );
    sigterm_recorded(&c, "fenced").await;
    let b = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "b",
            claim,
            hold,
            ..Setup::default()
        },
    );
    let held =
        controller::claim::Claim::of(&c.pod("default", "fenced").expect("pod")).expect("a's claim");
    assert_eq!(held.holder, "a");
    // The partition: a's renewals hang. Healed once its claim has expired.
    partition.set_cut(true);
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    partition.set_cut(false);
    eventually(
        "the sidecar stopped by SIGKILL",
        Duration::from_secs(30),
        || terminated(&c, "fenced", "ign"),
    )
    .await;
    eventually("the record complete", Duration::from_secs(10), || {
        recorded(&annotations(&c, "fenced"), "ign").as_deref() == Some("[0,1,2]")
    })
    .await;
    // Long enough for a holder that did not stop to have sent its SIGKILL too (a's wait
    // ends 6 s after its SIGTERM).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let mut steps = events(client, "fenced").await;
    steps.sort();
    assert_eq!(steps.len(), 2, "SIGTERM once, SIGKILL once: {steps:#?}");
    assert!(steps[1].contains("step 2 send SIGKILL"), "{steps:#?}");
    assert!(
        a.metric("sidekill_failures_total{kind=\"claim-lost\"}") >= Some(1.0),
        "a stopped acting on its own ({:.1} s after the cut)",
        cut_at.elapsed().as_secs_f64()
    );
    drop((a, b));
    c.shutdown().await;
}

/// Issue #18: a pod deleted and recreated under the same name mid-plan is another pod (another
/// UID): the old plan's writes, which name the UID they were planned for, never land on it,
/// so it inherits no record. Before the fix the record of the step in flight was patched by
/// name onto the new pod, whose own SIGTERM step was then skipped as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_recreated_under_its_name_inherits_no_record() {
    let c = cluster().await;
    // The kill command takes 2 s: the pod is replaced while it runs.
    let old = pod(
        "reborn",
        "workflows.argoproj.io/workflow: wf",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"sleep 2; kill -%d $(pidof sleep)\"]'",
        0,
        "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
    );
    c.apply_yaml(&old).await.expect("apply");
    let ctl = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "ctl",
            ..Setup::default()
        },
    );
    let first = c.pod("default", "reborn").expect("pod").metadata.uid;
    eventually("the old pod claimed", Duration::from_secs(20), || {
        annotations(&c, "reborn").contains_key(controller::claim::CLAIM_ANNOTATION)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Replaced while the kill command runs; the new pod's main works for a minute, so no
    // plan of its own may touch it yet.
    c.delete_pod("default", "reborn", Some(0)).expect("delete");
    c.wait_for_pod_gone("default", "reborn", Duration::from_secs(10))
        .await
        .expect("gone");
    c.apply_yaml(&old.replace("args: [--seconds, '0']", "args: [--seconds, '60']"))
        .await
        .expect("recreate");
    let second = c.pod("default", "reborn").expect("pod").metadata.uid;
    assert_ne!(first, second);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let a = annotations(&c, "reborn");
    assert!(
        !a.keys().any(|k| k.starts_with("sidekill.dev/")),
        "the new pod inherited the old plan's record: {a:?}"
    );
    drop(ctl);
    c.shutdown().await;
}

/// Issue #18: a send is recorded as begun before it is sent, so that a controller killed in
/// the middle of it (its result never recorded) leaves the next one a record not to send it
/// again: the kill command ran once, the plan goes on with its grace wait and SIGKILL. Before
/// the fix the survivor sent SIGTERM a second time. The kill command writes a line to the
/// container's log each time it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_begun_by_a_killed_controller_is_not_sent_again() {
    let c = cluster().await;
    c.apply_yaml(&pod(
        "begun",
        "workflows.argoproj.io/workflow: wf",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"echo kill-cmd ran >> /proc/1/fd/1; sleep 2; kill -%d $(pidof sleep)\"]'",
        0,
        "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
    ))
    .await
    .expect("apply");
    let claim = Some(Duration::from_secs(2));
    let a = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "a",
            claim,
            ..Setup::default()
        },
    );
    let ran = |c: &TestCluster| {
        c.logs("default", "begun", "ign")
            .unwrap_or_default()
            .matches("kill-cmd ran")
            .count()
    };
    eventually("step 0 begun", Duration::from_secs(20), || ran(&c) == 1).await;
    assert!(
        annotations(&c, "begun")
            .get("sidekill.dev/wait-ign")
            .is_some_and(|w| w.contains("\"started\":true")),
        "{:?}",
        annotations(&c, "begun")
    );
    a.kill();
    let b = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "b",
            claim,
            ..Setup::default()
        },
    );
    eventually("the sidecar stopped", Duration::from_secs(30), || {
        terminated(&c, "begun", "ign")
    })
    .await;
    eventually("the record complete", Duration::from_secs(10), || {
        recorded(&annotations(&c, "begun"), "ign").as_deref() == Some("[0,1,2]")
    })
    .await;
    assert_eq!(
        ran(&c),
        2,
        "SIGTERM's command once, SIGKILL's once: {:?}",
        c.logs("default", "begun", "ign")
    );
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let steps = events(client, "begun").await;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert!(steps[0].contains("step 2 send SIGKILL"), "{steps:#?}");
    drop(b);
    c.shutdown().await;
}

/// Issue #18: records are fenced by the claim. A holder whose claim became another's while it
/// was busy (here the claim is overwritten mid-send; a holder paused past its claim's end sees
/// the same) records nothing more and sends nothing more: its record write reads the pod, finds
/// the claim is not its own, and the plan stops. Before the fence it recorded step 0 and sent
/// SIGKILL after the grace, while the claim's new holder would have carried the plan on too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_claim_was_taken_records_and_sends_nothing_more() {
    let c = cluster().await;
    c.apply_yaml(&pod(
        "taken",
        "workflows.argoproj.io/workflow: wf",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"echo kill-cmd ran >> /proc/1/fd/1; sleep 2; kill -%d $(pidof sleep)\"]'",
        0,
        "{name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}",
    ))
    .await
    .expect("apply");
    // A claim long enough that no renewal comes before the record: only the fence can stop it.
    let a = Running::start(
        c.kubeconfig_path(),
        Setup {
            identity: "a",
            claim: Some(Duration::from_secs(60)),
            ..Setup::default()
        },
    );
    let ran = |c: &TestCluster| {
        c.logs("default", "taken", "ign")
            .unwrap_or_default()
            .matches("kill-cmd ran")
            .count()
    };
    eventually("step 0 begun", Duration::from_secs(20), || ran(&c) == 1).await;
    let client = sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client");
    let intruder = serde_json::json!({"metadata": {"annotations": {
        controller::claim::CLAIM_ANNOTATION:
            format!(r#"{{"holder":"b","until":{},"ttl":60000}}"#, sidekill::exec::now_ms() + 60_000)
    }}});
    Api::<Pod>::namespaced(client, "default")
        .patch("taken", &PatchParams::default(), &Patch::Merge(&intruder))
        .await
        .expect("the claim taken");
    eventually("a stopped by its fence", Duration::from_secs(20), || {
        ctl_failures(&a, "claim-lost") >= 1.0
    })
    .await;
    // The grace (2 s) and more: no SIGKILL, no record of a's send.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let p = c.pod("default", "taken").expect("pod");
    assert!(container_running(&p, "ign"), "nothing more was sent");
    assert_eq!(ran(&c), 1, "the kill command ran once");
    let annotations = p.metadata.annotations.unwrap_or_default();
    assert_eq!(recorded(&annotations, "ign"), None, "{annotations:?}");
    drop(a);
    c.shutdown().await;
}

fn ctl_failures(ctl: &Running, kind: &str) -> f64 {
    ctl.metric(&format!("sidekill_failures_total{{kind=\"{kind}\"}}"))
        .unwrap_or(0.0)
}
