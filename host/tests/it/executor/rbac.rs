//! The executor with one permission of `deploy/base/rbac.yaml` taken away, on a real cluster (the
//! test server has no RBAC): a call the API server refuses (403) ends the pod's plan with
//! `Error::Forbidden`, which names the verb, the resource, the namespace and the rule of
//! `deploy/base/rbac.yaml` that grants it; it is not retried, and a refused exec is not recorded as
//! a step done. Events are best effort: without them the plan still runs.

use serde_json::{json, Value};
use sidekill::exec::Error;

use super::*;
use crate::cluster;
use crate::common::{assert_within, recorded, repo_root};

/// The permissions the executor needs, each taken away in turn.
const NEEDED: [(&str, &str); 6] = [
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("patch", "pods"),
    // A WebSocket exec is authorized as `get`, and kube-apiserver 1.35+ also checks `create`.
    ("get", "pods/exec"),
    ("create", "pods/exec"),
];

/// The rules of `deploy/base/rbac.yaml`'s ClusterRole `sidekill`.
fn deploy_rules() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/base/rbac.yaml")).expect("rbac.yaml");
    let role = sidekill_policy::yaml::documents(&text)
        .expect("rbac.yaml is YAML")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "sidekill")
        .expect("deploy/base/rbac.yaml has ClusterRole sidekill");
    role["rules"].as_array().cloned().expect("rules")
}

/// A rule's list (`resources`, `verbs`) as strings; empty when it has none.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// `rules` without `verb` on `resource` (a rule left with no verb goes).
fn without(rules: &[Value], verb: &str, resource: &str) -> Value {
    let mut out = Vec::new();
    let mut found = false;
    for rule in rules {
        let resources = strings(&rule["resources"]);
        let verbs = strings(&rule["verbs"]);
        if !resources.contains(&resource) || !verbs.contains(&verb) {
            out.push(rule.clone());
            continue;
        }
        found = true;
        // The other resources of the rule keep the verb.
        let others: Vec<&str> = resources
            .iter()
            .copied()
            .filter(|r| *r != resource)
            .collect();
        if !others.is_empty() {
            let mut kept = rule.clone();
            kept["resources"] = json!(others);
            out.push(kept);
        }
        let fewer: Vec<&str> = verbs.iter().copied().filter(|v| *v != verb).collect();
        if !fewer.is_empty() {
            let mut kept = rule.clone();
            kept["resources"] = json!([resource]);
            kept["verbs"] = json!(fewer);
            out.push(kept);
        }
    }
    assert!(
        found,
        "deploy/base/rbac.yaml grants no {verb} on {resource}"
    );
    Value::Array(out)
}

fn case_name(verb: &str, resource: &str) -> String {
    format!("minus-{verb}-{}", resource.replace('/', "-"))
}

/// A client as identity `name`, granted `rules` without `verb` on `resource` ([`without`]):
/// sidekill as deployed, short of one permission.
async fn client_without(
    c: &Cluster,
    name: &str,
    rules: &[Value],
    verb: &str,
    resource: &str,
) -> kube::Client {
    let kubeconfig = c.identity(name, without(rules, verb, resource)).await;
    sidekill::cli::stop::client(Some(&kubeconfig))
        .await
        .expect("client")
}

/// A sidecar that ends 3 s after SIGTERM, so that the executor must watch the pod to see its
/// end: one that ends at once can already be terminated when the wait's first list runs, and
/// the case without `watch pods` then passed (seen once in a fresh-machine run).
const SLOW_TO_EXIT_SIDECAR: &str = "  - {name: proxy, image: alpine, command: [sh, -c, \"trap 'sleep 3; exit 0' TERM; echo running; while true; do sleep 0.1; done\"]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_of_deploy_taken_away_is_named_with_its_rule() {
    let Some(c) = Cluster::start_real_only("rbac", cluster::NO_RBAC).await else {
        return;
    };
    let ns = c.namespace();
    let rules = deploy_rules();
    for (verb, resource) in NEEDED {
        let name = case_name(verb, resource);
        c.apply_yaml(&pod(&name, "", "'--seconds', '0'", SLOW_TO_EXIT_SIDECAR))
            .await
            .expect("apply");
    }
    for (verb, resource) in NEEDED {
        let name = case_name(verb, resource);
        main_done(&c, &name, &["proxy"]).await;
        let client = client_without(&c, &name, &rules, verb, resource).await;
        let started = Instant::now();
        let err = executor(client, |_| {})
            .stop_pod(ns, &name)
            .await
            .expect_err("a missing permission fails the plan");
        let text = err.to_string();
        eprintln!("without {verb} {resource}: {text}");
        let Error::Forbidden {
            verb: v,
            resource: r,
            namespace,
            ..
        } = &err
        else {
            panic!("without {verb} {resource}: not Forbidden: {err:?}");
        };
        assert_eq!((*v, *r, namespace.as_str()), (verb, resource, ns), "{text}");
        let (granted_by, rule) = sidekill::exec::deploy_rule(resource);
        assert_eq!(granted_by, "deploy/base/rbac.yaml", "{text}");
        let named = sidekill_policy::yaml::documents(rule).expect("the rule is YAML");
        assert!(
            rules.contains(&named[0]),
            "{rule} is not a rule of deploy/base/rbac.yaml: {rules:?}"
        );
        for part in [
            format!("may not {verb} {resource} in namespace {ns}"),
            format!(
                "deploy/base/rbac.yaml grants it in ClusterRole sidekill with the rule `{rule}`"
            ),
        ] {
            assert!(text.contains(&part), "{part:?} not in {text}");
        }
        assert_eq!(err.name(), "forbidden");
        // Not retried until the backoff gives up: a 403 does not go away by waiting.
        assert_within(started, Duration::from_secs(10));
    }

    // A refused exec ran nothing: nothing is recorded, the sidecar still runs, so a sidekill
    // given the permission later runs the step.
    for verb in ["get", "create"] {
        let refused = case_name(verb, "pods/exec");
        let p = c.pod(&refused).await.expect("pod");
        assert!(
            !p.metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .contains_key("sidekill.dev/done-proxy"),
            "{refused}: {:?}",
            p.metadata.annotations
        );
        assert!(sidekill_testcluster::container_running(&p, "proxy"));
        assert_eq!(c.events(&refused, "SidecarStep").await, 0);
    }

    // `sidekill stop` says the same and exits 2.
    let kubeconfig = c
        .identity("minus-exec-cli", without(&rules, "create", "pods/exec"))
        .await;
    let target = format!("{ns}/{}", case_name("create", "pods/exec"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidekill"))
        // The exec's permission is the point: no image swap, which `patch` on pods allows.
        .args(["stop", "--no-image-swap", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg(&target)
        .env(
            "SIDEKILL_CACHE_DIR",
            std::env::temp_dir().join("sidekill-cli-test-cache"),
        )
        .env_remove("SIDEKILL_POLICY")
        .output()
        .await
        .expect("run sidekill stop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("sidekill stop {target}: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Said once, not once per link of the error chain.
    assert_eq!(
        stderr.matches("may not create pods/exec").count(),
        1,
        "{stderr}"
    );
    for part in [
        format!("may not create pods/exec in namespace {ns}"),
        "deploy/base/rbac.yaml grants it in ClusterRole sidekill".to_owned(),
        "resources: [pods/exec], verbs: [get, create]".to_owned(),
    ] {
        assert!(stderr.contains(&part), "{part:?} not in {stderr}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_events_the_plan_still_runs() {
    let Some(c) = Cluster::start_real_only("noevents", cluster::NO_RBAC).await else {
        return;
    };
    let ns = c.namespace();
    c.apply_yaml(&pod("noev", "", "'--seconds', '0'", SH_SIDECAR))
        .await
        .expect("apply");
    main_done(&c, "noev", &["proxy"]).await;
    let client = client_without(&c, "minus-events", &deploy_rules(), "create", "events").await;
    let r = executor(client, |_| {})
        .stop_pod(ns, "noev")
        .await
        .expect("events are best effort");
    assert_eq!(verdict(&r, "proxy").verdict, Verdict::Stopped, "{r:#?}");
    assert_eq!(c.events("noev", "SidecarStep").await, 0);
    let p = c.pod("noev").await.expect("pod");
    assert_eq!(
        recorded(&p.metadata.annotations.unwrap_or_default(), "proxy").as_deref(),
        Some("[0]")
    );
    c.shutdown().await;
}
