//! `sidekill demo`, run as a newcomer would: the real binary, its own test cluster, real
//! processes. Needs root, except the test that shows the message given without it.

use std::process::Command;

use serde_json::Value;

fn demo(wrapper: &[&str]) -> std::process::Output {
    let (program, args) = match wrapper.split_first() {
        Some((p, rest)) => (*p, rest.to_vec()),
        None => (env!("CARGO_BIN_EXE_sidekill"), Vec::new()),
    };
    let mut command = Command::new(program);
    command.args(args);
    if !wrapper.is_empty() {
        command.arg(env!("CARGO_BIN_EXE_sidekill"));
    }
    command
        .args(["demo", "--format", "json", "--timeout-seconds", "60"])
        .env_remove("SIDEKILL_FORMAT")
        .output()
        .expect("run sidekill demo")
}

#[test]
fn the_demo_stops_every_sample_sidecar_and_says_how() {
    crate::cluster::require_root();
    let out = demo(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON reports");
    let verdict = |pod: &str| -> (String, String) {
        let r = reports
            .iter()
            .find(|r| r["name"] == pod)
            .unwrap_or_else(|| panic!("no report for {pod}: {reports:#?}"));
        let c = &r["containers"][0];
        (
            c["verdict"].as_str().unwrap_or_default().to_owned(),
            c["planned"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(reports.len(), 8, "{reports:#?}");
    let report = |pod: &str| reports.iter().find(|r| r["name"] == pod).expect("report");
    let method = |pod: &str| {
        report(pod)["containers"][0]["method"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // Every sample pod's sidecar is stopped, none is left running (issue 13), each by the
    // method its plan chose.
    for r in &reports {
        let pod = r["name"].as_str().unwrap_or_default();
        assert_eq!(verdict(pod).0, "stopped", "{pod}: {reports:#?}");
        assert_eq!(r["end"], "Succeeded", "{pod}: {r:#?}");
    }
    for pod in [
        "istio-job",
        "argo-step-wrapped",
        "argo-step-ignores-sigterm",
        "sql-job-quitquitquit",
    ] {
        assert_eq!(method(pod), "exec", "{pod}: {reports:#?}");
    }
    // What nothing sent from inside can stop (no shell; a PID 1 without a handler, which the
    // kernel protects even from SIGKILL) is stopped by image swap, from outside, with exit 0
    // as predicted; and a proxy that would exit 143 on SIGTERM (failing the Job) is swapped.
    for pod in [
        "argo-step-distroless",
        "argo-step-pid1-no-handler",
        "sql-job-sigterm",
    ] {
        let r = report(pod);
        assert_eq!(method(pod), "image-swap", "{pod}: {r:#?}");
        assert_eq!(r["containers"][0]["exitCode"], 0, "{pod}: {r:#?}");
        assert_eq!(r["containers"][0]["exitMatches"], true, "{pod}: {r:#?}");
        assert_eq!(r["endMatches"], true, "{pod}: {r:#?}");
    }
    // The Job that succeeds because the plan chose the proxy's endpoint (exit 0) over
    // SIGTERM (exit 143) (issue 12).
    let quit = report("sql-job-quitquitquit");
    assert_eq!(
        quit["containers"][0]["steps"][0]["step"]["action"]["argv"][0], "wget",
        "{quit:#?}"
    );
    assert_eq!(quit["containers"][0]["exitCode"], 0, "{quit:#?}");
    assert_eq!(quit["endMatches"], true, "{quit:#?}");
    // SIGKILL came after the 3 s grace period, not before.
    let ignores = reports
        .iter()
        .find(|r| r["name"] == "argo-step-ignores-sigterm")
        .expect("report");
    let after = ignores["containers"][0]["stoppedAfterMs"]
        .as_u64()
        .unwrap_or(0);
    assert!((3000..10_000).contains(&after), "stopped after {after} ms");
}

#[test]
fn without_root_the_demo_says_which_privilege_is_missing() {
    // A user namespace without a mapping: the same binary and files, but not root.
    let out = demo(&["unshare", "--user"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("CAP_SYS_ADMIN"), "{stderr}");
    assert!(stderr.contains("sidekill plan"), "{stderr}");
}
