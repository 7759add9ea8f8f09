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
fn the_demo_stops_what_can_be_stopped_and_explains_the_rest() {
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
    for pod in [
        "istio-job",
        "argo-step-shell-sidecar",
        "argo-step-wrapped",
        "argo-step-ignores-sigterm",
    ] {
        assert_eq!(verdict(pod).0, "stopped", "{pod}: {reports:#?}");
    }
    // The kernel's rule: nothing sent from inside stops these two; the report says why.
    assert_eq!(
        verdict("argo-step-distroless"),
        ("still-running".into(), "cannot-stop".into())
    );
    assert_eq!(verdict("argo-step-pid1-no-handler").0, "still-running");
    let codes = |pod: &str| -> Vec<String> {
        reports.iter().find(|r| r["name"] == pod).expect("report")["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .filter_map(|d| d["code"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(codes("argo-step-distroless").contains(&"no-shell".to_owned()));
    assert!(codes("argo-step-pid1-no-handler").contains(&"pid1-ignores-sigkill".to_owned()));
    // The Job that succeeds only because the plan chose the proxy's endpoint (exit 0) over
    // SIGTERM (exit 143), and the same Job without the endpoint: Failed, as predicted, with
    // the fix (issue 12).
    let report = |pod: &str| reports.iter().find(|r| r["name"] == pod).expect("report");
    let quit = report("sql-job-quitquitquit");
    assert_eq!(verdict("sql-job-quitquitquit").0, "stopped");
    assert_eq!(
        quit["containers"][0]["steps"][0]["step"]["action"]["argv"][0], "wget",
        "{quit:#?}"
    );
    assert_eq!(quit["containers"][0]["exitCode"], 0, "{quit:#?}");
    assert_eq!(quit["end"], "Succeeded", "{quit:#?}");
    assert_eq!(quit["endMatches"], true, "{quit:#?}");
    let sigterm = report("sql-job-sigterm");
    assert_eq!(sigterm["containers"][0]["exitCode"], 143, "{sigterm:#?}");
    assert_eq!(
        sigterm["prediction"]["pod"]["phase"], "Failed",
        "{sigterm:#?}"
    );
    assert_eq!(sigterm["end"], "Failed", "{sigterm:#?}");
    assert_eq!(sigterm["endMatches"], true, "{sigterm:#?}");
    assert!(codes("sql-job-sigterm").contains(&"pod-fails-on-exit".to_owned()));
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
