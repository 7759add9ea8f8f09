//! The ConfigMap source end to end, against `crates/testcluster` (a real API server on
//! loopback; needs root): a [`PolicyStore`] fed by [`ConfigMapSource`] follows the real
//! `sidekill policy push` and `sidekill policy rollback`, refuses a bad module written
//! around them, and keeps serving through a missing key and a deleted ConfigMap; pushes
//! that race lose no version (optimistic concurrency on `resourceVersion`).

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use sidekill::error::Error;
use sidekill::publish::{Action, Candidate, PolicyConfigMap, Snapshot};
use sidekill::source::configmap::{ConfigMapError, ConfigMapSource};
use sidekill::{embedded, PolicyStore, Sha256};
use sidekill_testcluster::{ClusterConfig, TestCluster};

use crate::common::{embedded_variant, runtime};

const NS: &str = "sidekill";
const GARBAGE: &[u8] = b"\0asm garbage";

async fn cluster() -> TestCluster {
    assert!(
        rustix::process::geteuid().is_root(),
        "the ConfigMap tests need root for crates/testcluster: run \
         `cargo test -p sidekill --test it configmap` as root"
    );
    TestCluster::start(ClusterConfig::default())
        .await
        .unwrap_or_else(|e| {
            panic!("start the test cluster ({e}); the stand-in binary comes from `cargo build -p sidekill-testcluster`")
        })
}

async fn client(c: &TestCluster) -> kube::Client {
    sidekill::cli::stop::client(Some(c.kubeconfig_path()))
        .await
        .expect("client")
}

/// Runs the real binary against the cluster, with `--format json`.
async fn sidekill(c: &TestCluster, args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("sidekill-cli-test-cache");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig_path())
        .args(["--format", "json"])
        .env("SIDEKILL_CACHE_DIR", cache)
        .env_remove("SIDEKILL_POLICY")
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("run sidekill")
}

async fn push(c: &TestCluster, module: &Path, configmap: &str) -> Output {
    let module = module.to_str().expect("utf-8 path");
    sidekill(c, &["policy", "push", module, "--configmap", configmap]).await
}

async fn rollback(c: &TestCluster, configmap: &str) -> Output {
    sidekill(c, &["policy", "rollback", "--configmap", configmap]).await
}

/// The exit code, and the JSON on standard output (when there is none, both streams as
/// text, for the assertion messages).
fn outcome(out: &Output) -> (i32, Value) {
    let code = out.status.code().expect("exited");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(
        |_| json!({"stdout": String::from_utf8_lossy(&out.stdout), "stderr": stderr(out)}),
    );
    (code, json)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::of(bytes).to_string()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bytes under a `binaryData` key, and the annotation `sidekill.dev/<key>` as JSON.
fn slot(cm: &ConfigMap, key: &str) -> (Option<Vec<u8>>, Value) {
    let bytes = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone());
    let note = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("sidekill.dev/{key}")))
        .map_or(Value::Null, |text| {
            serde_json::from_str(text).expect("annotation is JSON")
        });
    (bytes, note)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_rollback_drive_a_store_fed_by_the_configmap_source() {
    let c = cluster().await;
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let (v1, v2, v3) = (
        embedded_variant("v1"),
        embedded_variant("v2"),
        embedded_variant("v3"),
    );
    let (v1_path, v2_path, v3_path) = (
        file("v1.wasm", &v1),
        file("v2.wasm", &v2),
        file("v3.wasm", &v3),
    );
    let garbage_path = file("garbage.wasm", GARBAGE);
    let target = "sidekill/policy";

    // The source starts before the ConfigMap exists.
    let store = Arc::new(
        PolicyStore::new(runtime().clone(), None, embedded::BYTES, embedded::ORIGIN)
            .expect("store"),
    );
    let source = ConfigMapSource::new(client.clone(), NS, "policy", "policy.wasm");
    assert_eq!(source.origin(), "configmap sidekill/policy key policy.wasm");
    let task = tokio::spawn(source.run(Arc::clone(&store)));
    let live = || store.current().sha256().to_string();

    // A push creates the ConfigMap; the store swaps to it.
    let (code, out) = outcome(&push(&c, &v1_path, target).await);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["action"], "created", "{out}");
    assert_eq!(out["live"]["sha256"], sha(&v1));
    assert_eq!(out["previous"], Value::Null);
    eventually("v1 from the created ConfigMap", || live() == sha(&v1)).await;
    assert_eq!(
        store.live().origin,
        "configmap sidekill/policy key policy.wasm"
    );

    // A second push: v2 live, v1 kept under policy.wasm.previous, both identified.
    let (code, out) = outcome(&push(&c, &v2_path, target).await);
    assert_eq!((code, &out["action"]), (0, &json!("pushed")), "{out}");
    assert_eq!(out["previous"]["sha256"], sha(&v1));
    eventually("v2 from the watch", || live() == sha(&v2)).await;
    let cm = cms.get("policy").await.expect("get");
    let (bytes, note) = slot(&cm, "policy.wasm");
    assert_eq!(bytes.as_deref(), Some(v2.as_slice()));
    assert_eq!(note["sha256"], sha(&v2));
    let info = runtime().load(&v2).expect("v2 loads").info().clone();
    assert_eq!(note["name"], info.name);
    assert_eq!(note["version"], info.version);
    assert_eq!(note["size"], v2.len());
    let (bytes, note) = slot(&cm, "policy.wasm.previous");
    assert_eq!(bytes.as_deref(), Some(v1.as_slice()));
    assert_eq!(note["sha256"], sha(&v1));
    assert_eq!(
        out["resourceVersion"].as_str(),
        cm.metadata.resource_version.as_deref()
    );
    let rv = cm.metadata.resource_version.clone();

    // The same module again changes nothing.
    let (code, out) = outcome(&push(&c, &v2_path, target).await);
    assert_eq!((code, &out["action"]), (0, &json!("unchanged")), "{out}");
    assert_eq!(out["previous"]["sha256"], sha(&v1));

    // A module a hot swap would refuse is refused by the push: exit 1, nothing written.
    let (code, out) = outcome(&push(&c, &garbage_path, target).await);
    assert_eq!((code, &out["action"]), (1, &json!("refused")), "{out}");
    assert_eq!(out["error"], "compile", "{out}");
    let cm = cms.get("policy").await.expect("get");
    assert_eq!(cm.metadata.resource_version, rv, "a refused push wrote");

    // Rollback: v1 live again (observed through the store), v2 kept as the previous.
    let (code, out) = outcome(&rollback(&c, target).await);
    assert_eq!((code, &out["action"]), (0, &json!("rolled-back")), "{out}");
    assert_eq!(out["live"]["sha256"], sha(&v1));
    assert_eq!(out["previous"]["sha256"], sha(&v2));
    eventually("v1 after the rollback", || live() == sha(&v1)).await;
    // Twice returns to where it started.
    let (code, out) = outcome(&rollback(&c, target).await);
    assert_eq!(code, 0, "{out}");
    eventually("v2 after the second rollback", || live() == sha(&v2)).await;
    assert_eq!(store.stats().refusals, 0);

    // A bad module written around the CLI (as `kubectl edit` could): the store refuses it
    // and v2 keeps serving.
    let garbage = json!({"binaryData": {"policy.wasm": k8s_openapi::ByteString(GARBAGE.to_vec())}});
    cms.patch("policy", &PatchParams::default(), &Patch::Merge(&garbage))
        .await
        .expect("patch");
    eventually("the refusal", || store.stats().refusals == 1).await;
    assert_eq!(live(), sha(&v2));

    // A push over it keeps the bad module as the previous one, unidentified ...
    let (code, out) = outcome(&push(&c, &v3_path, target).await);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["previous"]["sha256"], sha(GARBAGE));
    assert_eq!(out["previous"]["name"], Value::Null);
    eventually("v3", || live() == sha(&v3)).await;
    // ... and a rollback to it is refused before anything is written.
    let rv = cms
        .get("policy")
        .await
        .expect("get")
        .metadata
        .resource_version;
    let (code, out) = outcome(&rollback(&c, target).await);
    assert_eq!((code, &out["action"]), (1, &json!("refused")), "{out}");
    assert_eq!(out["module"]["key"], "policy.wasm.previous");
    let cm = cms.get("policy").await.expect("get");
    assert_eq!(cm.metadata.resource_version, rv, "a refused rollback wrote");

    // A version without the key, then a deleted ConfigMap: v3 keeps serving.
    let without = json!({"binaryData": {"policy.wasm": null}});
    cms.patch("policy", &PatchParams::default(), &Patch::Merge(&without))
        .await
        .expect("patch");
    cms.delete("policy", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live(), sha(&v3));
    assert_eq!(store.stats().refusals, 1);
    assert_eq!(store.stats().switches, 5);
    assert!(!task.is_finished(), "the source keeps watching");

    // Rolling back what is not there: exit 2, and the message names the ConfigMap and key.
    let out = rollback(&c, target).await;
    assert_eq!(outcome(&out).0, 2);
    assert!(
        stderr(&out).contains("configmap sidekill/policy not found"),
        "{}",
        stderr(&out)
    );
    let (code, _) = outcome(&push(&c, &v1_path, "sidekill/fresh").await);
    assert_eq!(code, 0);
    let out = rollback(&c, "sidekill/fresh").await;
    assert_eq!(outcome(&out).0, 2);
    assert!(
        stderr(&out).contains(
            "configmap sidekill/fresh has no previous module to roll back to: no `binaryData` \
             key `policy.wasm.previous` next to `policy.wasm`"
        ),
        "{}",
        stderr(&out)
    );

    task.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_pushes_lose_no_version() {
    let c = cluster().await;
    let client = client(&c).await;
    let variants: Vec<Vec<u8>> = (0..5)
        .map(|i| embedded_variant(&format!("race-{i}")))
        .collect();
    let candidate = |i: usize| Candidate::validate(runtime(), variants[i].clone()).expect("valid");

    // A write on a stale snapshot is refused, and leaves the ConfigMap as it was.
    let cm = PolicyConfigMap::new(client.clone(), NS, "race", "policy.wasm").expect("key");
    let missing = cm.read().await.expect("read");
    assert!(missing.configmap().is_none());
    let first = cm.push(runtime(), &candidate(0)).await.expect("push");
    assert_eq!(first.action, Action::Created);
    // Someone else created it meanwhile: a create on the stale snapshot conflicts.
    conflicting_write(&cm, &missing, &candidate(1), "stale create").await;
    let stale = cm.read().await.expect("read");
    cm.push(runtime(), &candidate(1)).await.expect("push");
    let err = conflicting_write(&cm, &stale, &candidate(2), "stale write").await;
    assert!(err.to_string().contains("configmap sidekill/race"), "{err}");
    let now = cm.read().await.expect("read");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let current = cms.get("race").await.expect("get");
    assert_eq!(slot(&current, "policy.wasm").0, Some(variants[1].clone()));
    assert_eq!(
        slot(&current, "policy.wasm.previous").0,
        Some(variants[0].clone())
    );
    // A push reads again: what the other writer made live becomes the previous.
    let pushed = cm.push(runtime(), &candidate(2)).await.expect("push");
    assert_eq!(
        pushed.previous.map(|p| p.sha256),
        Some(Sha256::of(&variants[1]))
    );
    assert_ne!(
        cm.read().await.expect("read").resource_version(),
        now.resource_version()
    );

    // The real binary, four pushes at once onto a ConfigMap holding variant 0: each push
    // replaces a different version, so the versions form one chain and none is lost.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "race-cli", "namespace": NS},
            "binaryData": {"policy.wasm": k8s_openapi::ByteString(variants[0].clone())},
        }))
        .expect("configmap"),
    )
    .await
    .expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let pushes = (1..5).map(|i| {
        let path = dir.path().join(format!("{i}.wasm"));
        std::fs::write(&path, &variants[i]).expect("write");
        let c = &c;
        async move { push(c, &path, "sidekill/race-cli").await }
    });
    let outs = futures_util::future::join_all(pushes).await;
    let mut replaced = Vec::new();
    for out in &outs {
        let (code, out) = outcome(out);
        assert_eq!((code, &out["action"]), (0, &json!("pushed")), "{out}");
        eprintln!(
            "push of {} after {} attempt(s)",
            out["live"]["sha256"], out["attempts"]
        );
        replaced.push(
            out["previous"]["sha256"]
                .as_str()
                .expect("previous")
                .to_string(),
        );
    }
    let current = cms.get("race-cli").await.expect("get");
    let live = Sha256::of(&slot(&current, "policy.wasm").0.expect("live")).to_string();
    let mut seen: Vec<String> = replaced.iter().cloned().chain([live]).collect();
    seen.sort();
    let mut all: Vec<String> = variants.iter().map(|v| sha(v)).collect();
    all.sort();
    assert_eq!(
        seen, all,
        "every version is either live or was replaced exactly once"
    );
    c.shutdown().await;
}

/// A write of `candidate` on `snapshot`, which must be refused as a conflict (`what` says
/// which write): the error.
async fn conflicting_write(
    cm: &PolicyConfigMap,
    snapshot: &Snapshot,
    candidate: &Candidate,
    what: &str,
) -> Error {
    let err = cm
        .write(runtime(), snapshot, candidate)
        .await
        .expect_err(what);
    assert!(
        matches!(err, Error::ConfigMap(ConfigMapError::Conflict { .. })),
        "{what}: {err}"
    );
    err
}
