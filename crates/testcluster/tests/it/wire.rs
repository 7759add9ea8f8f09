//! The wire protocol through kube-rs: discovery, list/watch with resource versions, bookmarks
//! and 410, patches, selectors and paging, and errors as Status objects.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference, Pod};
use kube::api::{
    Api, ListParams, Patch, PatchParams, PostParams, VersionMatch, WatchEvent, WatchParams,
};
use serde_json::json;

use crate::common::{client, cluster, cluster_with, wait};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"}
    }))
    .expect("configmap")
}

fn api_code(e: &kube::Error) -> Option<(u16, String, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.reason.clone(), s.message.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_version_look_like_a_cluster() {
    let c = cluster().await;
    let k = client(&c).await;
    let v = k.apiserver_version().await.expect("version");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "37"));
    let core = k.list_core_api_resources("v1").await.expect("api/v1");
    let names: Vec<&str> = core.resources.iter().map(|r| r.name.as_str()).collect();
    for want in ["pods", "pods/exec", "pods/proxy", "events", "configmaps"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let groups = k.list_api_groups().await.expect("apis");
    assert!(groups.groups.is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_sends_bookmarks_and_answers_410_on_a_stale_version() {
    let c = cluster_with(|cfg| cfg.history = 4).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .expect("create a");
    let rv0 = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("list rv");

    let wp = WatchParams::default().timeout(10);
    let mut stream = cms.watch(&wp, &rv0).await.expect("watch").boxed();
    cms.create(&PostParams::default(), &cm("b", &[]))
        .await
        .expect("create b");
    let patch = json!({"metadata": {"annotations": {"touched": "yes"}}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch a");
    let mut seen = Vec::new();
    let mut bookmark_rv = None;
    while let Some(ev) = stream.try_next().await.expect("watch event") {
        match ev {
            WatchEvent::Added(o) => {
                seen.push(format!("ADDED {}", o.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Modified(o) => {
                seen.push(format!("MODIFIED {}", o.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Deleted(o) => {
                seen.push(format!("DELETED {}", o.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Bookmark(b) => {
                bookmark_rv = Some(b.metadata.resource_version.clone());
                assert_eq!(b.types.kind, "ConfigMap");
                if seen.len() >= 2 {
                    break;
                }
            }
            WatchEvent::Error(e) => panic!("unexpected error event {e:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED b", "MODIFIED a"]);
    let bookmark: u64 = bookmark_rv
        .expect("a bookmark")
        .parse()
        .expect("numeric rv");
    assert!(
        bookmark > rv0.parse::<u64>().expect("rv0"),
        "bookmark {bookmark} must move past {rv0}"
    );

    // Push the old version out of the (4-change) history.
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("x{i}"), &[]))
            .await
            .expect("create");
    }
    let mut stale = cms
        .watch(&WatchParams::default().timeout(5), &rv0)
        .await
        .expect("watch")
        .boxed();
    match stale.try_next().await.expect("first event") {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // A list at an exact version that is gone is 410 too.
    let err = cms
        .list(&ListParams::default().at(&rv0).matching(VersionMatch::Exact))
        .await
        .expect_err("stale exact list");
    assert_eq!(api_code(&err).map(|e| e.0), Some(410));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_filters_by_label_and_field_and_ends_at_timeout() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    let wp = WatchParams::default()
        .labels("team=a")
        .timeout(2)
        .disable_bookmarks();
    let start = std::time::Instant::now();
    let mut stream = cms.watch(&wp, "0").await.expect("watch").boxed();
    cms.create(&PostParams::default(), &cm("one", &[("team", "a")]))
        .await
        .expect("create");
    cms.create(&PostParams::default(), &cm("two", &[("team", "b")]))
        .await
        .expect("create");
    let mut names = Vec::new();
    while let Some(ev) = stream.try_next().await.expect("event") {
        if let WatchEvent::Added(o) = ev {
            names.push(o.metadata.name.unwrap_or_default());
        }
    }
    assert_eq!(names, vec!["one"]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(8),
        "timeoutSeconds ends the watch"
    );
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=two"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);
    let err = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .expect_err("bad field");
    assert_eq!(
        api_code(&err),
        Some((
            400,
            "BadRequest".into(),
            "field label not supported: data.k".into()
        ))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_limit_and_continue() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    for n in ["c1", "c2", "c3"] {
        cms.create(&PostParams::default(), &cm(n, &[]))
            .await
            .expect("create");
    }
    let first = cms
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    let names: Vec<String> = second
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["c3"]);
    assert!(second.metadata.continue_.is_none());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_patch_three_ways_and_spec_stays_immutable() {
    let c = cluster().await;
    c.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: side, image: sidekill.test/sidecar}\n")
        .await
        .expect("apply");
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let pp = PatchParams::default();
    pods.patch(
        "p",
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "merge"}}})),
    )
    .await
    .expect("merge patch");
    pods.patch(
        "p",
        &pp,
        &Patch::Strategic(json!({"metadata": {"annotations": {"b": "strategic"}}})),
    )
    .await
    .expect("strategic patch");
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations/sidekill.io~1done", "value": "json"}
    ]))
    .expect("json patch");
    let p = pods
        .patch("p", &pp, &Patch::<()>::Json(jp))
        .await
        .expect("json patch");
    let ann = p.metadata.annotations.expect("annotations");
    assert_eq!(ann.get("a").map(String::as_str), Some("merge"));
    assert_eq!(ann.get("b").map(String::as_str), Some("strategic"));
    assert_eq!(
        ann.get("sidekill.io/done").map(String::as_str),
        Some("json")
    );
    let err = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .expect_err("spec change");
    let (code, reason, message) = api_code(&err).expect("api error");
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("pod updates may not change fields"),
        "{message}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_status_objects_with_the_real_wording() {
    let c = cluster().await;
    let k = client(&c).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let err = pods.get("x").await.expect_err("missing pod");
    assert_eq!(
        api_code(&err),
        Some((404, "NotFound".into(), "pods \"x\" not found".into()))
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(k);
    cms.create(&PostParams::default(), &cm("dup", &[]))
        .await
        .expect("create");
    let err = cms
        .create(&PostParams::default(), &cm("dup", &[]))
        .await
        .expect_err("duplicate");
    assert_eq!(
        api_code(&err),
        Some((
            409,
            "AlreadyExists".into(),
            "configmaps \"dup\" already exists".into()
        ))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_created_listed_and_written_by_the_node() {
    let c = cluster().await;
    let k = client(&c).await;
    c.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: ev}\nspec:\n  containers:\n  - {name: side, image: sidekill.test/sidecar}\n")
        .await
        .expect("apply");
    wait(&c, "ev", "running", |p| {
        sidekill_testcluster::container_running(p, "side")
    })
    .await;
    let events: Api<Event> = Api::default_namespaced(k);
    let mine = Event {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("ev.".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            name: Some("ev".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        reason: Some("SidecarStopped".into()),
        message: Some("sidekill stopped side".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    events
        .create(&PostParams::default(), &mine)
        .await
        .expect("create event");
    let list = events
        .list(&ListParams::default().fields("involvedObject.name=ev"))
        .await
        .expect("list events");
    let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
    for want in [
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
        "SidecarStopped",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "{want} not in {reasons:?}"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_update_with_optimistic_concurrency() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    let made = cms
        .create(&PostParams::default(), &cm("cfg", &[]))
        .await
        .expect("create");
    let mut fresh = made.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    let updated = cms
        .replace("cfg", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_eq!(
        updated
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("new")
    );
    let err = cms
        .replace("cfg", &PostParams::default(), &made)
        .await
        .expect_err("stale replace");
    assert_eq!(
        api_code(&err).map(|e| (e.0, e.1)),
        Some((409, "Conflict".into()))
    );
    let all: Vec<ConfigMap> = cms.list(&ListParams::default()).await.expect("list").items;
    assert_eq!(all.len(), 1);
    let names: Vec<_> = futures_util::stream::iter(all)
        .map(|c| c.metadata.name)
        .collect()
        .await;
    assert_eq!(names, vec![Some("cfg".to_string())]);
    c.shutdown().await;
}

/// Creates a pod whose only container's image does not exist: it never runs, so nothing but
/// the test writes to it.
async fn idle_pod(pods: &Api<Pod>, name: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "sidekill.test/no-such-image"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create")
}

/// Status writes go through the objects' one write path: a stale `metadata.resourceVersion`
/// is 409 there too, as the real `pods/status` (the generic registry's `Store.Update`) answers;
/// none is an unconditional write (issue #15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_check_the_resource_version_as_object_writes_do() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let made = idle_pod(&pods, "st").await;
    // A version older than the pod itself: stale whatever the node has written since.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "status": {"message": "stale"}});
    for (what, result) in [
        (
            "patch",
            pods.patch_status("st", &PatchParams::default(), &Patch::Merge(&stale))
                .await,
        ),
        (
            "replace",
            pods.replace_status(
                "st",
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "st", "resourceVersion": "1"},
                    "status": {"message": "stale"}
                }))
                .expect("pod"),
            )
            .await,
        ),
    ] {
        let err = result.expect_err(what);
        assert_eq!(
            api_code(&err).map(|e| (e.0, e.1)),
            Some((409, "Conflict".into())),
            "{what}"
        );
    }
    let fresh = json!({"status": {"message": "fresh"}});
    let written = pods
        .patch_status("st", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .expect("unconditional status patch");
    assert_eq!(
        written.status.and_then(|s| s.message).as_deref(),
        Some("fresh")
    );
    assert_eq!(written.spec, made.spec, "a status write keeps the spec");
    c.shutdown().await;
}

/// A write that names another `metadata.uid` is refused with 422, as kube-apiserver's
/// `ValidateObjectMetaUpdate` refuses it (the UID is immutable): so a patch carrying the UID it
/// was meant for never lands on a pod recreated under the same name (issue #18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_naming_another_uid_is_refused_as_immutable() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
    let made = idle_pod(&pods, "uid").await;
    let uid = made.metadata.uid.clone().expect("uid");
    let other = json!({"metadata": {"uid": "not-the-pod", "annotations": {"a": "b"}}});
    for (what, result) in [
        (
            "patch",
            pods.patch("uid", &PatchParams::default(), &Patch::Merge(&other))
                .await,
        ),
        (
            "status patch",
            pods.patch_status("uid", &PatchParams::default(), &Patch::Merge(&other))
                .await,
        ),
    ] {
        let err = result.expect_err(what);
        let (code, _, message) = api_code(&err).expect("an API error");
        assert_eq!(code, 422, "{what}: {message}");
        assert!(message.contains("field is immutable"), "{what}: {message}");
    }
    let same = json!({"metadata": {"uid": uid, "annotations": {"a": "b"}}});
    let written = pods
        .patch("uid", &PatchParams::default(), &Patch::Merge(&same))
        .await
        .expect("a patch naming the pod's own UID");
    assert_eq!(
        written
            .metadata
            .annotations
            .and_then(|a| a.get("a").cloned()),
        Some("b".into())
    );
    c.shutdown().await;
}

/// `dryRun` on an update or patch answers the would-be object and stores nothing (issue #15:
/// the one write path honours it for objects and subresources alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_patches_store_nothing() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    cms.create(&PostParams::default(), &cm("dry", &[]))
        .await
        .expect("create");
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let answered = cms
        .patch("dry", &params, &Patch::Merge(json!({"data": {"k": "dry"}})))
        .await
        .expect("dry-run patch");
    let value = |m: &ConfigMap| m.data.as_ref().and_then(|d| d.get("k")).cloned();
    assert_eq!(value(&answered).as_deref(), Some("dry"));
    let stored = cms.get("dry").await.expect("get");
    assert_eq!(value(&stored).as_deref(), Some("v"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_proxy_forwards_to_the_container_port() {
    let c = cluster().await;
    let port = crate::common::free_port();
    c.apply_yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: side\n    image: sidekill.test/sidecar\n    args: [\"--port\", \"{port}\"]\n    ports: [{{containerPort: {port}}}]\n"
    ))
    .await
    .expect("apply");
    wait(&c, "web", "running", |p| {
        sidekill_testcluster::container_running(p, "side")
    })
    .await;
    let k = client(&c).await;
    let mut body = String::new();
    for _ in 0..50 {
        let req = hyper::Request::get(format!(
            "/api/v1/namespaces/default/pods/web:{port}/proxy/hello"
        ))
        .body(Vec::new())
        .expect("request");
        if let Ok(b) = k.request_text(req).await {
            body = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(body, "ok\n");
    let closed = crate::common::free_port();
    let (code, body) = crate::common::raw_get(
        c.base_url(),
        &format!("/api/v1/namespaces/default/pods/web:{closed}/proxy/"),
    )
    .await;
    assert_eq!(code, 503);
    let status: serde_json::Value = serde_json::from_str(&body).expect("status body");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("connect: connection refused"),
        "{body}"
    );
    c.shutdown().await;
}

/// kube-runtime's watcher, as the controller will run it: a paged initial list, then a watch,
/// and the streaming-list variant (`sendInitialEvents` with the initial-events-end bookmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_watcher_lists_then_watches_both_ways() {
    use kube::runtime::watcher::{self, Event as WEvent};
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&c).await);
    cms.create(&PostParams::default(), &cm("before", &[]))
        .await
        .expect("create");
    for cfg in [
        watcher::Config::default().page_size(1),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut stream = watcher::watcher(cms.clone(), cfg).boxed();
        let mut initial = Vec::new();
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
                .await
                .expect("watcher event in time")
                .expect("watcher event")
            {
                Some(WEvent::InitApply(o)) => initial.push(o.metadata.name.unwrap_or_default()),
                Some(WEvent::InitDone) => break,
                Some(_) => {}
                None => panic!("watcher ended"),
            }
        }
        assert!(initial.contains(&"before".to_string()), "{initial:?}");
        let name = format!("after-{}", initial.len());
        cms.create(&PostParams::default(), &cm(&name, &[]))
            .await
            .expect("create");
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
                .await
                .expect("watcher event in time")
                .expect("watcher event")
            {
                Some(WEvent::Apply(o)) if o.metadata.name.as_deref() == Some(name.as_str()) => {
                    break
                }
                Some(_) => {}
                None => panic!("watcher ended"),
            }
        }
    }
    c.shutdown().await;
}
