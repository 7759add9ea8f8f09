//! The executor end to end, on the target `cluster` selects: real processes in PID namespaces
//! behind `crates/testcluster` (the default; needs root), or a real cluster with
//! `SIDEKILL_E2E=1` (`tests/k8s-harness/run.sh` runs them on the genuine kube-apiserver, as
//! sidekill's ServiceAccount with exactly `deploy/`'s RBAC). `rbac`: the same executor with one
//! permission of `deploy/` taken away.

mod methods;
mod outcome;
mod rbac;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sidekill::exec::{Events, Executor, Options, Outcome, PodReport, Verdict};
use sidekill::{embedded, Config, Runtime};

use crate::cluster::Cluster;
use crate::common::json;
use crate::common::recorded;

fn executor(client: kube::Client, f: impl FnOnce(&mut Options)) -> Executor {
    let runtime = Runtime::new(Config::default()).expect("runtime");
    let policy = runtime.load(embedded::BYTES).expect("policy");
    // These tests are of pods/exec: the stop methods that need nothing inside the container
    // are off unless a test turns them on (methods.rs).
    let mut o = Options {
        settle: Duration::from_secs(2),
        backoff: Duration::from_millis(100),
        nop_image: None,
        ..Options::default()
    };
    f(&mut o);
    Executor::new(client, Arc::new(policy), o)
}

/// An Argo pod (so every non-main container is a sidecar) whose main works `seconds`, in the
/// target's namespace.
fn pod(name: &str, annotations: &str, main_args: &str, sidecars: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{workflows.argoproj.io/workflow: wf}}
  annotations: {{{annotations}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: main, image: sidekill.test/main, args: [{main_args}]}}
{sidecars}"
    )
}

/// The spec of the pods the Job tests run, as one YAML flow mapping, so that it fits a bare
/// pod and a Job's template alike: restartPolicy `restart`, a 2 s grace period, a main that
/// exits 0 at once, and `sidecar` (a flow mapping).
fn job_pod_spec(restart: &str, sidecar: &str) -> String {
    format!(
        "{{restartPolicy: {restart}, terminationGracePeriodSeconds: 2, containers: [\
         {{name: main, image: sidekill.test/main, args: ['--seconds', '0']}}, {sidecar}]}}"
    )
}

/// A Job's pod (by its label; no Job behind it) of [`job_pod_spec`]; `annotations` as in
/// [`pod`].
fn job_pod(name: &str, annotations: &str, restart: &str, sidecar: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{batch.kubernetes.io/job-name: {name}}}
  annotations: {{{annotations}}}
spec: {}
",
        job_pod_spec(restart, sidecar)
    )
}

/// A port nothing listens on yet, for a sidecar's endpoint.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Reports rendered for the test log, without colour.
const PLAIN: sidekill::render::Style = sidekill::render::Style { color: false };

async fn main_done(c: &Cluster, name: &str, sidecars: &[&str]) {
    let names: Vec<String> = sidecars.iter().map(|s| (*s).to_owned()).collect();
    c.wait_for_pod(name, Duration::from_secs(20), |p| {
        sidekill_testcluster::container_exit_code(p, "main").is_some()
            && names
                .iter()
                .all(|n| sidekill_testcluster::container_running(p, n))
    })
    .await
    .expect("main done, sidecars running");
    // Stand-ins print a line once their handlers exist; give them that moment.
    for n in sidecars {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let log = c.logs(name, n).await.unwrap_or_default();
            if log.contains("running") || log.contains("ready") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn verdict<'r>(r: &'r PodReport, container: &str) -> &'r sidekill::exec::ContainerReport {
    r.containers
        .iter()
        .find(|c| c.container == container)
        .unwrap_or_else(|| panic!("no {container} in {r:#?}"))
}

const SH_SIDECAR: &str =
    "  - {name: proxy, image: alpine, command: [sh, -c, \"trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done\"]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_kill_stops_a_shell_sidecar_and_records_it() {
    let c = Cluster::start("sh").await;
    let ns = c.namespace();
    c.apply_yaml(&pod("sh", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "sh", &["proxy"]).await;
    let ex = executor(c.client().await, |_| {});
    let r = ex.stop_pod(ns, "sh").await.expect("stop");
    assert_eq!(r.outcome, Outcome::Done);
    let p = verdict(&r, "proxy");
    assert_eq!(p.verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(p.steps[0].result, "ran");
    assert!(matches!(p.steps[0].exit_code, Some(0 | 137)), "{r:#?}");
    assert!(p.steps[0].terminated_after_ms.is_some());
    eprintln!(
        "shell sidecar stopped {} ms after SIGTERM",
        p.stopped_after_ms.unwrap_or(0)
    );
    let pod = c.pod("sh").await.expect("pod");
    assert_eq!(
        recorded(&pod.metadata.annotations.unwrap_or_default(), "proxy").as_deref(),
        Some("[0]")
    );
    assert_eq!(c.events("sh", "SidecarStep").await, 1);
    assert_eq!(c.events("sh", "SidecarStopped").await, 1);
    c.shutdown().await;
}

/// `Events::Warnings` (the controller's default): a stop that goes as planned records no
/// Normal Event and reads no Job, three requests and a Job poll fewer per pod, and is still
/// recorded on the pod; `Events::All` records and reads both, on the same kind of pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_only_events_leave_a_planned_stop_without_normal_events() {
    let c = Cluster::start("ev").await;
    let ns = c.namespace();
    for (name, events) in [("quiet", Events::Warnings), ("loud", Events::All)] {
        // An Argo pod that a Job label also names (no Job behind it): its Job is read only
        // when the outcome is shown.
        let yaml = pod(name, "", "'--seconds', '0'", SH_SIDECAR).replace(
            "labels: {workflows.argoproj.io/workflow: wf}",
            &format!("labels: {{workflows.argoproj.io/workflow: wf, batch.kubernetes.io/job-name: {name}}}"),
        );
        c.apply_yaml(&yaml).await.expect("apply");
        main_done(&c, name, &["proxy"]).await;
        let ex = executor(c.client().await, |o| o.events = events);
        let r = ex.stop_pod(ns, name).await.expect("stop");
        assert_eq!(verdict(&r, "proxy").verdict, Verdict::Stopped, "{r:#?}");
        let pod = c.pod(name).await.expect("pod");
        assert_eq!(
            recorded(&pod.metadata.annotations.unwrap_or_default(), "proxy").as_deref(),
            Some("[0]")
        );
        // A Warning (an end other than the prediction) is recorded either way.
        let shown = events == Events::All || r.end_matches == Some(false);
        let normal = usize::from(events == Events::All);
        assert_eq!(c.events(name, "SidecarStep").await, normal, "{name}");
        assert_eq!(c.events(name, "SidecarStopped").await, normal, "{name}");
        assert_eq!(
            c.events(name, "PodOutcome").await,
            usize::from(shown),
            "{name}"
        );
        assert_eq!(r.job.is_some(), shown, "{name}: {r:#?}");
    }
    c.shutdown().await;
}

/// A container name of 63 characters (the most a DNS label allows) would make
/// `sidekill.dev/done-<name>` an invalid annotation key: the API server refuses the record
/// after the step ran, and the plan would re-send SIGTERM forever. The record's key is
/// shortened instead, and a second run finds it (issue 18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_with_a_63_character_name_is_stopped_and_recorded_once() {
    let c = Cluster::start("longname").await;
    let ns = c.namespace();
    let name = format!("{}-proxy", "l".repeat(57));
    assert_eq!(name.len(), 63);
    let sidecar = SH_SIDECAR.replace("name: proxy", &format!("name: {name}"));
    c.apply_yaml(&pod("longname", "", "'--seconds', '0'", &sidecar))
        .await
        .expect("apply");
    main_done(&c, "longname", &[&name]).await;
    let ex = executor(c.client().await, |_| {});
    let r = ex.stop_pod(ns, "longname").await.expect("stop");
    assert_eq!(verdict(&r, &name).verdict, Verdict::Stopped, "{r:#?}");
    let pod = c.pod("longname").await.expect("pod");
    let key = sidekill::exec::done_key(&name);
    assert_eq!(
        recorded(&pod.metadata.annotations.clone().unwrap_or_default(), &name).as_deref(),
        Some("[0]"),
        "{key}"
    );
    // Asked again, nothing runs twice.
    assert!(ex.assess(&pod).expect("assess").pending.is_empty());
    assert_eq!(c.events("longname", "SidecarStep").await, 1);
    c.shutdown().await;
}

/// The host trusts the module no further than the sandbox (issue 17): a module whose plan
/// sends an argv outside its own signed catalogue gets the step refused, before anything
/// runs; the sidecar is left running and the refusal is an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argv_outside_the_modules_catalogue_is_refused_before_it_runs() {
    let c = Cluster::start("outside").await;
    let ns = c.namespace();
    let pwned = std::path::Path::new("/tmp/sidekill-pwned");
    let _ = std::fs::remove_file(pwned);
    c.apply_yaml(&pod("outside", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "outside", &["proxy"]).await;
    let runtime = Runtime::new(Config::default()).expect("runtime");
    let hostile = runtime
        .load(&crate::common::wat("argv_outside_catalogue"))
        .expect("the module loads: it is well-formed");
    let o = Options {
        settle: Duration::from_millis(500),
        backoff: Duration::from_millis(100),
        nop_image: None,
        ..Options::default()
    };
    let r = Executor::new(c.client().await, Arc::new(hostile), o)
        .stop_pod(ns, "outside")
        .await
        .expect("stop");
    let p = verdict(&r, "proxy");
    assert_eq!(p.steps[0].result, "refused", "{r:#?}");
    let why = p.steps[0].message.as_deref().unwrap_or_default();
    assert!(why.contains("catalogue"), "{why}");
    assert_eq!(p.verdict, Verdict::StillRunning, "{r:#?}");
    assert!(p.steps[0].exit_code.is_none(), "nothing ran: {r:#?}");
    assert_eq!(c.events("outside", "SidecarStepRefused").await, 1);
    if !crate::cluster::real() {
        assert!(!pwned.exists(), "the refused argv ran");
    }
    c.shutdown().await;
}

/// An executor that plans with `module` (a hostile module's bytes).
fn hostile_executor(client: kube::Client, module: &[u8]) -> Executor {
    let runtime = Runtime::new(Config::default()).expect("runtime");
    let hostile = runtime
        .load(module)
        .expect("the module loads: it is well-formed");
    let o = Options {
        settle: Duration::from_millis(500),
        backoff: Duration::from_millis(100),
        outcome_timeout: Duration::from_secs(1),
        nop_image: None,
        ..Options::default()
    };
    Executor::new(client, Arc::new(hostile), o)
}

/// A pod whose main runs until SIGTERM (a shell with a handler, so that a SIGTERM sent from
/// inside would end it), with a shell sidecar.
const MAIN_RUNS: &str = "apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {name: main, image: alpine, command: [sh, -c, \"trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done\"]}
  - {name: proxy, image: alpine, command: [sh, -c, \"trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done\"]}
";

async fn both_running(c: &Cluster, name: &str) {
    c.wait_for_pod(name, Duration::from_secs(20), |p| {
        sidekill_testcluster::container_running(p, "main")
            && sidekill_testcluster::container_running(p, "proxy")
    })
    .await
    .expect("main and proxy running");
    for n in ["main", "proxy"] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if c.logs(name, n)
                .await
                .unwrap_or_default()
                .contains("running")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Issue 17: a plan naming a running main container is refused by the host, however the
/// module labels it. `stop_running_main.wat` calls the running sidecar the main and plans
/// SIGTERM to `main` with a command of its own catalogue (every step check passes): the stop
/// is refused before anything runs, the main keeps running, the refusal is reported and an
/// Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_stops_the_running_main_is_refused_and_the_main_keeps_running() {
    let c = Cluster::start("mainrun").await;
    let ns = c.namespace();
    c.apply_yaml(&MAIN_RUNS.replace("NAME", "mainrun"))
        .await
        .expect("apply");
    both_running(&c, "mainrun").await;
    let ex = hostile_executor(c.client().await, &crate::common::wat("stop_running_main"));
    let r = ex.stop_pod(ns, "mainrun").await.expect("stop");
    let m = verdict(&r, "main");
    assert_eq!(m.steps.len(), 1, "{r:#?}");
    assert_eq!(m.steps[0].result, "refused", "{r:#?}");
    let why = m.steps[0].message.as_deref().unwrap_or_default();
    assert!(
        why.contains("main container proxy has not terminated"),
        "{why}"
    );
    assert!(m.steps[0].exit_code.is_none(), "nothing ran: {r:#?}");
    assert_eq!(m.verdict, Verdict::NotRun, "{r:#?}");
    assert_eq!(c.events("mainrun", "SidecarStepRefused").await, 1);
    // The refusal is not recorded: once the real main ends, the pod is not marked done.
    let pod = c.pod("mainrun").await.expect("pod");
    assert!(!pod
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("sidekill.dev/done-main"));
    // A second later the main still runs: no SIGTERM reached it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pod = c.pod("mainrun").await.expect("pod");
    assert!(
        sidekill_testcluster::container_running(&pod, "main"),
        "the main was stopped: {:?}",
        pod.status
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_a_shell_is_reported_still_running_with_or_without_annotation() {
    let c = Cluster::start("nosh").await;
    let ns = c.namespace();
    let nosh = "  - {name: nosh, image: gcr.io/distroless/static}\n";
    c.apply_yaml(&pod("nosh", "", "'--seconds', '0'", nosh))
        .await
        .expect("apply");
    c.apply_yaml(&pod(
        "nosh-ann",
        "workflows.argoproj.io/kill-cmd-nosh: '[\"kill\", \"-%d\", \"1\"]'",
        "'--seconds', '0'",
        nosh,
    ))
    .await
    .expect("apply");
    main_done(&c, "nosh", &["nosh"]).await;
    main_done(&c, "nosh-ann", &["nosh"]).await;
    let ex = executor(c.client().await, |o| o.settle = Duration::from_millis(500));
    let r = ex.stop_pod(ns, "nosh").await.expect("stop");
    let n = verdict(&r, "nosh");
    assert_eq!(n.planned, "cannot-stop");
    assert_eq!(n.verdict, Verdict::StillRunning, "{r:#?}");
    // Since ABI 1.3 the plan sends nothing it knows cannot work (no `/bin/sh` to exec): no
    // step, the diagnostic with its fix, and an empty record so that it is reported once.
    assert!(n.steps.is_empty(), "{r:#?}");
    assert!(
        n.diagnostics
            .iter()
            .any(|d| d.code.as_deref() == Some("no-shell")),
        "{r:#?}"
    );
    let p = c.pod("nosh").await.expect("pod");
    assert_eq!(
        recorded(&p.metadata.annotations.clone().unwrap_or_default(), "nosh").as_deref(),
        Some("[]")
    );
    assert!(ex.assess(&p).expect("assess").pending.is_empty());
    // Asked again: still running, no second Event.
    let again = ex.stop_pod(ns, "nosh").await.expect("stop again");
    assert_eq!(verdict(&again, "nosh").verdict, Verdict::StillRunning);
    let r = ex.stop_pod(ns, "nosh-ann").await.expect("stop");
    let n = verdict(&r, "nosh");
    assert_eq!(n.verdict, Verdict::StillRunning, "{r:#?}");
    assert!(
        n.steps[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("executable file not found"),
        "{r:#?}"
    );
    assert_eq!(c.events("nosh", "SidecarStillRunning").await, 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_is_not_pid_1_is_stopped_through_the_pidof_annotation() {
    let c = Cluster::start("wrapped").await;
    let ns = c.namespace();
    c.apply_yaml(&pod(
        "wrapped",
        "workflows.argoproj.io/kill-cmd-wrapped: '[\"sh\", \"-c\", \"kill -%d $(pidof entrypoint.sh)\"]'",
        "'--seconds', '0'",
        "  - {name: wrapped, image: sidekill.test/wrapped}\n",
    ))
    .await
    .expect("apply");
    main_done(&c, "wrapped", &["wrapped"]).await;
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "wrapped")
        .await
        .expect("stop");
    let w = verdict(&r, "wrapped");
    assert_eq!(w.verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(w.steps.len(), 1, "stopped by SIGTERM: {r:#?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_ignoring_sigterm_gets_sigkill_after_the_grace_period() {
    let c = Cluster::start("ign").await;
    let ns = c.namespace();
    let side = "  - {name: ign, image: alpine, command: [sh, -c, \"(trap '' TERM; exec sleep 1000) & echo running; wait $!; exit 0\"]}\n";
    c.apply_yaml(&pod(
        "ign",
        "workflows.argoproj.io/kill-cmd-ign: '[\"sh\", \"-c\", \"kill -%d $(pidof sleep)\"]'",
        "'--seconds', '0'",
        side,
    ))
    .await
    .expect("apply");
    main_done(&c, "ign", &["ign"]).await;
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "ign")
        .await
        .expect("stop");
    let s = verdict(&r, "ign");
    assert_eq!(s.verdict, Verdict::Stopped, "{r:#?}");
    let results: Vec<&str> = s.steps.iter().map(|s| s.result.as_str()).collect();
    assert_eq!(results, ["ran", "timeout", "ran"], "{r:#?}");
    let after = s.stopped_after_ms.unwrap_or(0);
    assert!(
        (2000..8000).contains(&after),
        "SIGKILL after the 2 s grace: {after} ms"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_1_without_a_handler_survives_sigkill_and_is_reported_with_the_fix() {
    let c = Cluster::start("stub").await;
    let ns = c.namespace();
    c.apply_yaml(&pod(
        "stub",
        "",
        "'--seconds', '0'",
        "  - {name: stub, image: sidekill.test/stubborn}\n",
    ))
    .await
    .expect("apply");
    main_done(&c, "stub", &["stub"]).await;
    let r = executor(c.client().await, |o| o.settle = Duration::from_secs(1))
        .stop_pod(ns, "stub")
        .await
        .expect("stop");
    let s = verdict(&r, "stub");
    assert_eq!(s.verdict, Verdict::StillRunning, "{r:#?}");
    assert_eq!(s.steps.len(), 3);
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.code.as_deref() == Some("pid1-ignores-sigkill")),
        "{r:#?}"
    );
    assert!(r.left_running());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_is_stopped_with_pilot_agent_quitquitquit() {
    let c = Cluster::start("istio").await;
    let ns = c.namespace();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let side = format!(
        "  - name: istio-proxy\n    image: docker.io/istio/proxyv2:1.22.0\n    args: [proxy, sidecar]\n    env: [{{name: ISTIO_ADMIN_PORT, value: '{port}'}}]\n"
    );
    c.apply_yaml(&pod("istio", "", "'--seconds', '0'", &side))
        .await
        .expect("apply");
    main_done(&c, "istio", &["istio-proxy"]).await;
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "istio")
        .await
        .expect("stop");
    let s = verdict(&r, "istio-proxy");
    assert_eq!(s.verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(
        json(&s.steps[0].step)["action"]["argv"][0],
        "pilot-agent",
        "{r:#?}"
    );
    assert_eq!(s.exit_code, Some(0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_main_still_gets_its_sidecars_stopped() {
    let c = Cluster::start("fail").await;
    let ns = c.namespace();
    c.apply_yaml(&pod(
        "fail",
        "",
        "'--seconds', '0', '--exit', '3'",
        SH_SIDECAR,
    ))
    .await
    .expect("apply");
    main_done(&c, "fail", &["proxy"]).await;
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "fail")
        .await
        .expect("stop");
    assert!(r.readiness.is_ready(), "{r:#?}");
    assert_eq!(verdict(&r, "proxy").verdict, Verdict::Stopped, "{r:#?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_already_terminated_is_left_alone_and_a_running_main_is_not_ready() {
    let c = Cluster::start("quick").await;
    let ns = c.namespace();
    let side = "  - {name: quick, image: alpine, command: [sh, -c, 'exit 0']}\n";
    c.apply_yaml(&pod("quick", "", "'--seconds', '0'", side))
        .await
        .expect("apply");
    c.wait_for_pod("quick", Duration::from_secs(20), |p| {
        sidekill_testcluster::container_exit_code(p, "main").is_some()
            && sidekill_testcluster::container_exit_code(p, "quick").is_some()
    })
    .await
    .expect("both done");
    let ex = executor(c.client().await, |_| {});
    let r = ex.stop_pod(ns, "quick").await.expect("stop");
    // The policy plans no stop for a container that has terminated: nothing runs.
    assert_eq!(r.outcome, Outcome::Done);
    assert!(r.containers.is_empty(), "{r:#?}");
    assert_eq!(c.events("quick", "SidecarStep").await, 0);

    c.apply_yaml(&pod("busy", "", "'--seconds', '60'", SH_SIDECAR))
        .await
        .expect("apply");
    c.wait_for_pod("busy", Duration::from_secs(20), |p| {
        sidekill_testcluster::container_running(p, "proxy")
    })
    .await
    .expect("running");
    let r = ex.stop_pod(ns, "busy").await.expect("stop");
    assert_eq!(r.outcome, Outcome::NotReady, "{r:#?}");
    assert!(sidekill_testcluster::container_running(
        &c.pod("busy").await.expect("pod"),
        "proxy"
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_its_plan_runs_is_done() {
    let c = Cluster::start("del").await;
    let ns = c.namespace();
    c.apply_yaml(&pod(
        "del",
        "",
        "'--seconds', '0'",
        "  - {name: stub, image: sidekill.test/stubborn}\n",
    ))
    .await
    .expect("apply");
    main_done(&c, "del", &["stub"]).await;
    c.delete_pod_during_plan("del").await;
    let started = std::time::Instant::now();
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "del")
        .await
        .expect("stop");
    // The plan ends without an error, promptly: a hang would last the executor's wait cap
    // (10 min) or the outcome watch and more; alone this takes about 10 s, and a loaded
    // 2-core machine has taken 15. KNOWN GAP: the outcome observed here is not yet
    // `Gone`/`Stopped` every time (see the report); only the absence of errors and hangs is
    // pinned.
    assert!(started.elapsed() < Duration::from_secs(45));
    let after = c.pod("del").await;
    eprintln!(
        "outcome {:?}, verdict {:?}, pod after: {:?}",
        r.outcome,
        r.containers.first().map(|c| &c.verdict),
        after.map(|p| (
            p.metadata.deletion_timestamp.is_some(),
            sidekill_testcluster::container_state(&p, "stub")
        ))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_exec_is_not_run_again() {
    let Some(c) = Cluster::start_test_server_only(
        "it drops the exec's WebSocket mid-stream (fault dropExecAfterFrames), which a real \
         API server cannot be made to do from a test",
    )
    .await
    else {
        return;
    };
    let ns = c.namespace();
    let faults = c.faults().expect("the test server injects faults");
    c.apply_yaml(&pod("drop", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "drop", &["proxy"]).await;
    faults.drop_next_exec_after(0);
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "drop")
        .await
        .expect("stop");
    let p = verdict(&r, "proxy");
    assert!(
        matches!(p.steps[0].result.as_str(), "dropped" | "ran"),
        "{r:#?}"
    );
    assert!(
        matches!(p.verdict, Verdict::Stopped | Verdict::StillRunning),
        "{r:#?}"
    );
    let sends = p
        .steps
        .iter()
        .filter(|s| json(&s.step)["step"] == "send" && s.result != "skipped-recorded")
        .count();
    assert_eq!(c.events("drop", "SidecarStep").await, sends);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_answering_500_for_a_while_is_retried() {
    let Some(c) = Cluster::start_test_server_only(
        "it makes the API server answer 500 (fault failRequests), which a real API server \
         cannot be made to do from a test",
    )
    .await
    else {
        return;
    };
    let ns = c.namespace();
    let faults = c.faults().expect("the test server injects faults");
    c.apply_yaml(&pod("flaky", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "flaky", &["proxy"]).await;
    faults.fail_requests(4);
    let r = executor(c.client().await, |_| {})
        .stop_pod(ns, "flaky")
        .await
        .expect("stop despite 500s");
    assert_eq!(verdict(&r, "proxy").verdict, Verdict::Stopped, "{r:#?}");
    assert!(faults.injected() >= 4);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_run_never_runs_a_step_twice() {
    let c = Cluster::start("twice").await;
    let ns = c.namespace();
    c.apply_yaml(&pod(
        "twice",
        "",
        "'--seconds', '0'",
        "  - {name: stub, image: sidekill.test/stubborn}\n",
    ))
    .await
    .expect("apply");
    main_done(&c, "twice", &["stub"]).await;
    let ex = executor(c.client().await, |o| o.settle = Duration::from_millis(500));
    let first = ex.stop_pod(ns, "twice").await.expect("first");
    assert_eq!(verdict(&first, "stub").verdict, Verdict::StillRunning);
    let second = executor(c.client().await, |o| o.settle = Duration::from_millis(500))
        .stop_pod(ns, "twice")
        .await
        .expect("second");
    let s = verdict(&second, "stub");
    assert!(
        s.steps.iter().all(|s| s.result == "skipped-recorded"),
        "{second:#?}"
    );
    assert_eq!(
        c.events("twice", "SidecarStep").await,
        2,
        "two sends, once each"
    );
    let pod = c.pod("twice").await.expect("pod");
    assert_eq!(
        recorded(&pod.metadata.annotations.unwrap_or_default(), "stub").as_deref(),
        Some("[0,1,2]")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_runs_nothing() {
    let c = Cluster::start("dry").await;
    let ns = c.namespace();
    c.apply_yaml(&pod("dry", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "dry", &["proxy"]).await;
    let r = executor(c.client().await, |o| o.dry_run = true)
        .stop_pod(ns, "dry")
        .await
        .expect("dry run");
    assert_eq!(r.outcome, Outcome::DryRun);
    assert!(verdict(&r, "proxy")
        .steps
        .iter()
        .all(|s| s.result == "dry-run"));
    assert!(sidekill_testcluster::container_running(
        &c.pod("dry").await.expect("pod"),
        "proxy"
    ));
    assert_eq!(c.events("dry", "SidecarStep").await, 0);
    c.shutdown().await;
}

/// What the canary-aware module answers for any pod that is not a canary: SIGTERM through an
/// argv outside the catalogue to `proxy` (it would leave a file behind), and SIGTERM through a
/// catalogue command to `main`, which it calls main.
const CANARY_AWARE_HOSTILE: &str = r#"{"ok":{"subjects":[{"source":{},"pod":{"mainContainers":["main"]},"containers":[],"commands":[],"readiness":{"state":"ready","reason":"the module says so"},"matrix":{},"plan":{"gracePeriodSeconds":2,"stops":[{"container":"proxy","verdict":"stops","group":"sidecar","source":"default","method":{"kind":"exec","evidence":"-"},"steps":[{"step":"send","signal":15,"signalName":"SIGTERM","action":{"kind":"exec","argv":["/bin/sh","-c","echo pwned > /tmp/sidekill-pwned-canary; kill -15 1"]}}]},{"container":"main","verdict":"stops","group":"sidecar","source":"default","method":{"kind":"exec","evidence":"-"},"steps":[{"step":"send","signal":15,"signalName":"SIGTERM","action":{"kind":"exec","argv":["/bin/sh","-c","kill -15 1"]}}]}],"skipped":[]},"diagnostics":[]}]}}"#;

/// Issue 17: a module that answers every canary exactly as the real module does and turns
/// hostile on any other pod. The hot swap's checks accept it: canaries are a fixed set of
/// requests, so a module can recognise them byte for byte, and no canary can catch it. What
/// makes it harmless is the executor's guard: on a real pod its steps are refused (an argv
/// outside the catalogue; a stop of a container it calls main) and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_aware_module_passes_the_swap_and_its_steps_are_refused() {
    let runtime = Runtime::new(Config::default()).expect("runtime");
    let real = runtime.load(embedded::BYTES).expect("embedded");
    let module = crate::common::canary_aware(&real, CANARY_AWARE_HOSTILE);
    let store = sidekill::PolicyStore::new(runtime.clone(), None, embedded::BYTES, "embedded")
        .expect("store");
    // (a) The swap's checks accept it: every canary answers as the real module does.
    store
        .propose(&module, "canary-aware")
        .unwrap_or_else(|e| panic!("the canaries cannot tell: {}", e.report()));
    assert_eq!(
        store.current().sha256().to_string(),
        sidekill::Sha256::of(&module).to_string()
    );
    // (b) On a pod of the cluster it is hostile, and its steps are refused.
    let c = Cluster::start("canaryaware").await;
    let ns = c.namespace();
    let pwned = std::path::Path::new("/tmp/sidekill-pwned-canary");
    let _ = std::fs::remove_file(pwned);
    c.apply_yaml(&pod("canaryaware", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "canaryaware", &["proxy"]).await;
    let o = Options {
        settle: Duration::from_millis(500),
        backoff: Duration::from_millis(100),
        outcome_timeout: Duration::from_secs(1),
        nop_image: None,
        ..Options::default()
    };
    let ex = Executor::new(c.client().await, Arc::new(store), o);
    let r = ex.stop_pod(ns, "canaryaware").await.expect("stop");
    let p = verdict(&r, "proxy");
    assert_eq!(p.steps[0].result, "refused", "{r:#?}");
    assert!(p.steps[0]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("catalogue")));
    assert_eq!(p.verdict, Verdict::StillRunning, "{r:#?}");
    let m = verdict(&r, "main");
    assert_eq!(m.verdict, Verdict::AlreadyTerminated, "{r:#?}");
    assert_eq!(c.events("canaryaware", "SidecarStepRefused").await, 1);
    // On a pod whose main still runs, both stops are refused whole and the main runs on.
    c.apply_yaml(&MAIN_RUNS.replace("NAME", "canaryrun"))
        .await
        .expect("apply");
    both_running(&c, "canaryrun").await;
    let r = ex.stop_pod(ns, "canaryrun").await.expect("stop");
    for container in ["proxy", "main"] {
        let s = verdict(&r, container);
        assert_eq!(s.steps[0].result, "refused", "{r:#?}");
        assert_eq!(s.verdict, Verdict::NotRun, "{r:#?}");
    }
    assert_eq!(c.events("canaryrun", "SidecarStepRefused").await, 2);
    let pod = c.pod("canaryrun").await.expect("pod");
    assert!(sidekill_testcluster::container_running(&pod, "main"));
    if !crate::cluster::real() {
        assert!(!pwned.exists(), "the refused argv ran");
    }
    c.shutdown().await;
}
