//! The pod's end next to the plan's prediction (issue 12): a sidecar's exit code decides whether
//! a `restartPolicy: Never` pod ends `Succeeded` or `Failed`, and under `OnFailure` whether the
//! kubelet restarts it. The sidecars are the Cloud SQL proxy's stand-in
//! (`sidekill.test/cloud-sql-proxy`: SIGTERM exits 143, or 0 with `--exit-zero-on-sigterm`;
//! `/quitquitquit` exits 0), whose exit codes the policy knows from the proxy's source.
//!
//! On a real cluster (`tests/k8s-harness/run.sh`) the same pods run, and real `batch/v1` Jobs
//! run through the genuine Job controller to `Complete`.

use std::time::SystemTime;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::*;
use crate::cluster;
use crate::common::{json, recorded};
use sidekill::answer::Diagnostic;

const PROXY_IMAGE: &str = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1-alpine";

/// A Job's pod (by its label; no Job behind it) whose main exits 0 at once, with a Cloud SQL
/// proxy sidecar given `args`.
fn job_pod(name: &str, restart: &str, args: &str) -> String {
    super::job_pod(
        name,
        "",
        restart,
        &format!("{{name: cloud-sql-proxy, image: '{PROXY_IMAGE}', args: [{args}]}}"),
    )
}

fn codes(r: &PodReport) -> Vec<&str> {
    r.diagnostics
        .iter()
        .filter_map(|d| d.code.as_deref())
        .collect()
}

fn diagnostic<'r>(r: &'r PodReport, code: &str) -> &'r Diagnostic {
    r.diagnostics
        .iter()
        .find(|d| d.code.as_deref() == Some(code))
        .unwrap_or_else(|| panic!("no {code} diagnostic in {r:#?}"))
}

/// The acceptance's negative case and its fix. A plain SIGTERM to a sidecar that exits 143,
/// under `restartPolicy: Never`: predicted `Failed`, and `Failed` it is, with the diagnostic
/// naming the fix; the same pod with the fix applied (`--exit-zero-on-sigterm`), and the same
/// pod with the endpoint that exits 0 (`--quitquitquit`, which the plan then prefers), end
/// `Succeeded`, as predicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_exiting_143_fails_a_never_pod_as_predicted_and_the_fixes_succeed() {
    let c = Cluster::start("exit143").await;
    let ns = c.namespace();
    let port = free_port();
    let pods = [
        ("csql-143", "'proj:region:db'".to_owned()),
        (
            "csql-zero",
            "'--exit-zero-on-sigterm', 'proj:region:db'".to_owned(),
        ),
        (
            "csql-quit",
            format!("'--quitquitquit', '--admin-port', '{port}', 'proj:region:db'"),
        ),
    ];
    for (name, args) in &pods {
        c.apply_yaml(&job_pod(name, "Never", args))
            .await
            .expect("apply");
    }
    let ex = executor(c.client().await, |_| {});
    let mut reports = Vec::new();
    for (name, _) in &pods {
        main_done(&c, name, &["cloud-sql-proxy"]).await;
        let r = ex.stop_pod(ns, name).await.expect("stop");
        eprintln!("{}", sidekill::cli::stop::render(&r, &PLAIN));
        reports.push(r);
    }

    // SIGTERM, 143, Failed: all three predicted, all three so.
    let r = &reports[0];
    let s = verdict(r, "cloud-sql-proxy");
    assert_eq!(s.verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(json(&s.steps[0].step)["signalName"], "SIGTERM", "{r:#?}");
    assert_eq!(
        json(&s.steps[0].step)["expectedExit"]["code"],
        143,
        "{r:#?}"
    );
    assert_eq!(s.exit_code, Some(143), "{r:#?}");
    assert_eq!(s.predicted_exit, 143, "{r:#?}");
    assert_eq!(s.exit_matches, Some(true), "{r:#?}");
    assert_eq!(json(&r.prediction)["pod"]["phase"], "Failed", "{r:#?}");
    assert_eq!(r.end.as_deref(), Some("Failed"), "{r:#?}");
    assert_eq!(r.phase.as_deref(), Some("Failed"), "{r:#?}");
    assert_eq!(r.end_matches, Some(true), "{r:#?}");
    let d = diagnostic(r, "pod-fails-on-exit");
    assert_eq!(d.container.as_deref(), Some("cloud-sql-proxy"));
    let fix = d.fix.as_deref().unwrap_or_default();
    assert!(fix.contains("--exit-zero-on-sigterm"), "{fix}");
    assert!(fix.contains("--quitquitquit"), "{fix}");
    // The report shown to people carries it: a failed end shows the fix.
    let text = sidekill::cli::stop::render(r, &PLAIN);
    assert!(text.contains("pod end: Failed, as predicted"), "{text}");
    assert!(text.contains("--exit-zero-on-sigterm"), "{text}");
    let p = c.pod("csql-143").await.expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    // No Job behind these pods: the report says it could not see one, it does not invent one.
    let job = r.job.as_ref().expect("a Job's pod's report has a job");
    assert!(!job.visible, "{job:?}");

    // The fix: --exit-zero-on-sigterm, the same SIGTERM, exit 0, Succeeded.
    let r = &reports[1];
    let s = verdict(r, "cloud-sql-proxy");
    assert_eq!(json(&s.steps[0].step)["signalName"], "SIGTERM", "{r:#?}");
    assert_eq!(s.exit_code, Some(0), "{r:#?}");
    assert_eq!(s.exit_matches, Some(true), "{r:#?}");
    assert_eq!(json(&r.prediction)["pod"]["phase"], "Succeeded", "{r:#?}");
    assert_eq!(r.end.as_deref(), Some("Succeeded"), "{r:#?}");
    assert_eq!(r.end_matches, Some(true), "{r:#?}");
    assert!(!codes(r).contains(&"pod-fails-on-exit"), "{r:#?}");

    // The other fix: --quitquitquit; the plan prefers the endpoint that exits 0 over SIGTERM.
    let r = &reports[2];
    let s = verdict(r, "cloud-sql-proxy");
    let argv = &json(&s.steps[0].step)["action"]["argv"];
    assert_eq!(argv[0], "wget", "{r:#?}");
    assert!(
        argv.to_string().contains(&format!("{port}/quitquitquit")),
        "{argv}"
    );
    assert_eq!(s.exit_code, Some(0), "{r:#?}");
    assert_eq!(r.end.as_deref(), Some("Succeeded"), "{r:#?}");
    assert_eq!(r.end_matches, Some(true), "{r:#?}");
    c.shutdown().await;
}

/// The acceptance's `OnFailure` case: a sidecar that exits 143 under `restartPolicy: OnFailure`
/// is restarted by the kubelet. The plan predicted it (`sidecar-restarted`, the pod never
/// completes); the report says `restarted`, with the restart count, not `stopped`; and sidekill
/// does not stop the new instance: a second run and the controller's assessment leave it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_a_sidecar_exiting_non_zero_is_reported_restarted_and_not_stopped_again() {
    let c = Cluster::start("onfailure").await;
    let ns = c.namespace();
    c.apply_yaml(&job_pod("csql-onfailure", "OnFailure", "'proj:region:db'"))
        .await
        .expect("apply");
    main_done(&c, "csql-onfailure", &["cloud-sql-proxy"]).await;
    let ex = executor(c.client().await, |_| {});
    let r = ex.stop_pod(ns, "csql-onfailure").await.expect("stop");
    eprintln!("{}", sidekill::cli::stop::render(&r, &PLAIN));
    assert!(codes(&r).contains(&"sidecar-restarted"), "{r:#?}");
    assert_eq!(
        json(&r.prediction)["pod"]["phase"],
        "NeverCompletes",
        "{r:#?}"
    );
    let s = verdict(&r, "cloud-sql-proxy");
    assert_eq!(s.predicted_result.as_deref(), Some("restarted"), "{r:#?}");
    assert_eq!(s.verdict, Verdict::Restarted, "{r:#?}");
    assert_eq!(s.exit_code, Some(143), "{r:#?}");
    assert!(s.restart_count.unwrap_or(0) >= 1, "{r:#?}");
    assert_eq!(r.end.as_deref(), Some("NeverCompletes"), "{r:#?}");
    assert_eq!(r.end_matches, Some(true), "{r:#?}");
    // Only the SIGTERM ran: the container ended under it.
    assert_eq!(s.steps.len(), 1, "{r:#?}");

    // The record keeps it finished: every step of the plan (SIGTERM, wait, SIGKILL), though
    // only the first ran.
    let p = c.pod("csql-onfailure").await.expect("pod");
    let done = recorded(
        &p.metadata.annotations.clone().unwrap_or_default(),
        "cloud-sql-proxy",
    );
    assert_eq!(done.as_deref(), Some("[0,1,2]"));
    let p = c
        .wait_for_pod("csql-onfailure", Duration::from_secs(20), |p| {
            sidekill_testcluster::container_running(p, "cloud-sql-proxy")
        })
        .await
        .expect("the kubelet runs the new instance");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert!(
        ex.assess(&p).expect("assess").pending.is_empty(),
        "nothing pending for the controller"
    );
    let sends = c.events("csql-onfailure", "SidecarStep").await;
    assert_eq!(c.events("csql-onfailure", "SidecarRestarted").await, 1);

    // Asked again (`sidekill stop` run twice): nothing is sent to the new instance.
    let again = ex.stop_pod(ns, "csql-onfailure").await.expect("stop again");
    let s = verdict(&again, "cloud-sql-proxy");
    assert_eq!(s.verdict, Verdict::Restarted, "{again:#?}");
    assert!(
        s.steps.iter().all(|st| st.result == "skipped-restarted"),
        "{again:#?}"
    );
    assert_eq!(c.events("csql-onfailure", "SidecarStep").await, sends);
    let p = c.pod("csql-onfailure").await.expect("pod");
    assert!(sidekill_testcluster::container_running(
        &p,
        "cloud-sql-proxy"
    ));
    c.shutdown().await;
}

fn job_manifest(name: &str, annotations: &str, sidecar: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  backoffLimit: 6
  template:
    metadata:
      annotations: {{{annotations}}}
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      containers:
      - {{name: main, image: sidekill.test/main, args: ['--seconds', '1']}}
{sidecar}"
    )
}

/// The first pod the Job controller made for Job `name` (at most 30 s).
pub(super) async fn first_pod_of_job(c: &Cluster, name: &str) -> Pod {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = c.pods_of_job(name).await.into_iter().next() {
            return p;
        }
        assert!(Instant::now() < deadline, "job {name}: no pod after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Job `name` once its `Complete` condition is there (at most 30 s).
pub(super) async fn completed_job(c: &Cluster, name: &str) -> Job {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = c.job(name).await.expect("job");
        if complete(&job).is_some() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {name} not Complete: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) fn complete(job: &Job) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Complete" && c.status == "True")?
        .last_transition_time
        .as_ref()
}

pub(super) fn finished(p: &Pod, container: &str) -> Option<SystemTime> {
    let cs = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?;
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    Some(t.finished_at.as_ref()?.0.into())
}

/// The acceptance's Jobs, on a cluster with the real Job controller: a `batch/v1` Job with a
/// sidecar for each stop method sidekill has (the default `sh -c 'kill -15 1'`, a kill-cmd
/// annotation, istio's preset `pilot-agent request POST quitquitquit`, the Cloud SQL proxy's
/// preset `wget` of `/quitquitquit`) reaches `Complete` with exactly one pod and
/// `succeeded: 1`, and the report's prediction is what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_sidecar_completes_with_one_pod_for_each_stop_method() {
    let Some(c) = Cluster::start_real_only("jobs", cluster::NO_JOBS).await else {
        return;
    };
    let ns = c.namespace().to_owned();
    let istio_port = free_port();
    let csql_port = free_port();
    let jobs = [
        (
            "job-default-kill",
            "/bin/sh",
            String::new(),
            format!("      - {{name: cloud-sql-proxy, image: '{PROXY_IMAGE}', args: ['--exit-zero-on-sigterm', 'proj:region:db']}}\n"),
        ),
        (
            "job-kill-cmd",
            "sh",
            r#"workflows.argoproj.io/kill-cmd-cloud-sql-proxy: '["sh", "-c", "kill -%d 1"]'"#.to_owned(),
            format!("      - {{name: cloud-sql-proxy, image: '{PROXY_IMAGE}', args: ['--exit-zero-on-sigterm', 'proj:region:db']}}\n"),
        ),
        (
            "job-istio",
            "pilot-agent",
            r#"sidecar.istio.io/status: '{"containers":["istio-proxy"]}'"#.to_owned(),
            format!("      - name: istio-proxy\n        image: docker.io/istio/proxyv2:1.24.0\n        args: [proxy, sidecar]\n        env: [{{name: ISTIO_ADMIN_PORT, value: '{istio_port}'}}]\n"),
        ),
        (
            "job-csql-quit",
            "wget",
            String::new(),
            format!("      - {{name: cloud-sql-proxy, image: '{PROXY_IMAGE}', args: ['--quitquitquit', '--admin-port', '{csql_port}', 'proj:region:db']}}\n"),
        ),
    ];
    for (name, _, annotations, sidecar) in &jobs {
        c.create_job(&job_manifest(name, annotations, sidecar))
            .await
            .unwrap_or_else(|e| panic!("create job {name}: {e}"));
    }
    let ex = executor(c.client().await, |_| {});
    for (name, program, _, _) in &jobs {
        let sidecar = if *program == "pilot-agent" {
            "istio-proxy"
        } else {
            "cloud-sql-proxy"
        };
        let pod = first_pod_of_job(&c, name).await;
        let pod_name = pod.metadata.name.clone().expect("pod name");
        main_done(&c, &pod_name, &[sidecar]).await;
        let r = ex.stop_pod(&ns, &pod_name).await.expect("stop");
        eprintln!("{}", sidekill::cli::stop::render(&r, &PLAIN));
        let s = verdict(&r, sidecar);
        assert_eq!(s.verdict, Verdict::Stopped, "{name}: {r:#?}");
        let first = json(&s.steps[0].step)["action"]["argv"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // The default is `/bin/sh -c 'kill -15 1'`; the annotation's own argv starts `sh`.
        assert_eq!(first, *program, "{name}: {r:#?}");
        assert_eq!(s.exit_code, Some(0), "{name}: {r:#?}");
        assert_eq!(
            json(&r.prediction)["pod"]["phase"],
            "Succeeded",
            "{name}: {r:#?}"
        );
        assert_eq!(r.end.as_deref(), Some("Succeeded"), "{name}: {r:#?}");
        assert_eq!(r.end_matches, Some(true), "{name}: {r:#?}");
        // The Job controller counts the pod and completes the Job.
        let job = completed_job(&c, name).await;
        let status = job.status.clone().unwrap_or_default();
        assert_eq!(status.succeeded, Some(1), "{name}: {status:?}");
        assert_eq!(status.failed.unwrap_or(0), 0, "{name}: {status:?}");
        let pods = c.pods_of_job(name).await;
        assert_eq!(pods.len(), 1, "{name}: exactly one pod, not a retry");
        // sidekill's ServiceAccount reads the Job (deploy/base/rbac.yaml grants get on jobs).
        let seen = r.job.as_ref().expect("a Job's pod's report has its Job");
        assert!(seen.visible, "{name}: {seen:?}");
        assert_eq!(seen.name, *name);
        let p = c.pod(&pod_name).await;
        let (main, side) = (
            p.as_ref().and_then(|p| finished(p, "main")),
            p.as_ref().and_then(|p| finished(p, sidecar)),
        );
        if let (Some(main), Some(side), Some(done)) = (main, side, complete(&job)) {
            let done: SystemTime = done.0.into();
            eprintln!(
                "FIGURE {name}: main exited -> sidecar exited {:?} -> Job Complete {:?} \
                 (API times have 1 s resolution); report: {}",
                side.duration_since(main).unwrap_or_default(),
                done.duration_since(side).unwrap_or_default(),
                seen.describe()
            );
        }
    }
    c.shutdown().await;
}

/// The generic stand-ins `sidekill.test/sigterm-143`, `-1` and `-0` exit with their code on
/// SIGTERM, and under `restartPolicy: Never` the kubelet's rule turns that into the phase:
/// any non-zero regular container fails the pod. The policy does not know these programs, so
/// it predicts `unknown` exit codes and an `Unknown` phase, and the report claims no match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_programs_exit_codes_decide_the_phase_and_no_match_is_claimed() {
    let c = Cluster::start("standins").await;
    let ns = c.namespace();
    let cases = [
        ("exit-143", "sidekill.test/sigterm-143", 143, "Failed"),
        ("exit-1", "sidekill.test/sigterm-1", 1, "Failed"),
        ("exit-0", "sidekill.test/sigterm-0", 0, "Succeeded"),
    ];
    for (name, image, _, _) in cases {
        // Declared a sidecar by a peer controller's annotation (issue 12), in a Job's pod.
        let yaml = format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{batch.kubernetes.io/job-name: {name}}}
  annotations: {{pod.kubernetes.io/sidecars: side}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: main, image: sidekill.test/main, args: ['--seconds', '0']}}
  - {{name: side, image: {image}}}
"
        );
        c.apply_yaml(&yaml).await.expect("apply");
    }
    let ex = executor(c.client().await, |_| {});
    for (name, _, code, phase) in cases {
        main_done(&c, name, &["side"]).await;
        let r = ex.stop_pod(ns, name).await.expect("stop");
        let s = verdict(&r, "side");
        assert_eq!(s.verdict, Verdict::Stopped, "{name}: {r:#?}");
        assert_eq!(s.exit_code, Some(code), "{name}: {r:#?}");
        assert_eq!(s.predicted_exit, "unknown", "{name}: {r:#?}");
        assert_eq!(s.exit_matches, None, "{name}: {r:#?}");
        assert_eq!(r.end.as_deref(), Some(phase), "{name}: {r:#?}");
        assert_eq!(
            json(&r.prediction)["pod"]["phase"],
            "Unknown",
            "{name}: {r:#?}"
        );
        assert_eq!(r.end_matches, None, "{name}: {r:#?}");
    }
    c.shutdown().await;
}
