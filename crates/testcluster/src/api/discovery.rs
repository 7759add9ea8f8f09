//! Discovery: `/version`, `/api`, `/api/v1` (the resource list with its subresources), the
//! OpenAPI v3 document kubectl reads, and the namespaces (every name exists, `Active`).

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList, ObjectMeta};
use serde_json::{json, Value};

use crate::kinds::Kind;

/// A minimal OpenAPI v3 document for `api/v1`: no schemas, only each kind's PATCH operation
/// declaring the `fieldValidation` query parameter. That is what kubectl looks for to decide
/// that the server validates fields itself, so `kubectl create` and `kubectl apply` work without
/// `--validate=false` (the server accepts the parameter and does not check unknown fields).
pub(super) fn openapi_v3_core() -> Value {
    let mut paths = serde_json::Map::new();
    for (plural, kind) in [
        ("pods", "Pod"),
        ("configmaps", "ConfigMap"),
        ("events", "Event"),
    ] {
        paths.insert(
            format!("/api/v1/namespaces/{{namespace}}/{plural}/{{name}}"),
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
                "x-kubernetes-action": "patch",
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (sidekill-testcluster)", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": {}}
    })
}

pub(super) fn version() -> k8s_openapi::apimachinery::pkg::version::Info {
    k8s_openapi::apimachinery::pkg::version::Info {
        build_date: "2026-01-01T00:00:00Z".into(),
        compiler: "gc".into(),
        git_commit: "sidekill-testcluster".into(),
        git_tree_state: "clean".into(),
        git_version: "v1.37.0-sidekill-testcluster".into(),
        go_version: "go1.25.0".into(),
        major: "1".into(),
        minor: "37".into(),
        platform: "linux/amd64".into(),
        ..Default::default()
    }
}

pub(super) fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn resource_list() -> APIResourceList {
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = verbs(&[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ]);
    let res =
        |name: &str, kind: &str, singular: &str, short: &[&str], verbs: Vec<String>| APIResource {
            name: name.into(),
            kind: kind.into(),
            singular_name: singular.into(),
            namespaced: true,
            short_names: (!short.is_empty()).then(|| short.iter().map(|s| s.to_string()).collect()),
            categories: (name == "pods").then(|| vec!["all".to_string()]),
            verbs,
            ..Default::default()
        };
    APIResourceList {
        group_version: "v1".into(),
        resources: vec![
            res(
                "configmaps",
                "ConfigMap",
                "configmap",
                <ConfigMap as Kind>::SHORT_NAMES,
                all.clone(),
            ),
            res(
                "events",
                "Event",
                "event",
                <Event as Kind>::SHORT_NAMES,
                all.clone(),
            ),
            res(
                "namespaces",
                "Namespace",
                "namespace",
                &["ns"],
                verbs(&["get"]),
            ),
            res("pods", "Pod", "pod", <Pod as Kind>::SHORT_NAMES, all),
            res(
                "pods/ephemeralcontainers",
                "Pod",
                "",
                &[],
                verbs(&["get", "patch", "update"]),
            ),
            res(
                "pods/exec",
                "PodExecOptions",
                "",
                &[],
                verbs(&["create", "get"]),
            ),
            res("pods/log", "Pod", "", &[], verbs(&["get"])),
            res(
                "pods/proxy",
                "PodProxyOptions",
                "",
                &[],
                verbs(&["create", "delete", "get", "patch", "update"]),
            ),
            res(
                "pods/status",
                "Pod",
                "",
                &[],
                verbs(&["get", "patch", "update"]),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_the_subresources() {
        let l = resource_list();
        let names: Vec<&str> = l.resources.iter().map(|r| r.name.as_str()).collect();
        for want in [
            "pods",
            "pods/exec",
            "pods/proxy",
            "pods/ephemeralcontainers",
            "events",
            "configmaps",
        ] {
            assert!(names.contains(&want), "{want}");
        }
    }
}
