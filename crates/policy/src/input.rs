//! The request: a Kubernetes object plus facts from the host, and the pods it stands for.
//!
//! A Pod plans as itself. A Job, CronJob, Deployment, ReplicaSet, StatefulSet or DaemonSet
//! plans as its pod template. An Argo Workflow (or WorkflowTemplate) plans as one pod per
//! template that Argo runs as a pod, laid out as Argo's emissary executor lays it out. A
//! `List` plans each item.

use alloc::borrow::{Cow, ToOwned};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::inject::{self, Injection, Simulation};
use crate::matrix::Executor;
use crate::method::StopMethods;
use crate::pod::{as_array, as_object, opt_string, req_string, Pod};

/// Facts the host knows and the object does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The Argo executor that runs the pod; detected from the pod when absent.
    pub executor: Option<Executor>,
    /// The cluster's Kubernetes version as `major.minor`, such as `1.31`, when known.
    pub cluster_version: Option<(u32, u32)>,
    /// Whether the host may use the `pods/proxy` subresource (for HTTP stop steps).
    pub pods_proxy: bool,
    /// Names of the main containers, overriding detection: in a pod no Argo runs, every
    /// other regular container no injector marked becomes a declared sidecar.
    pub main_containers: Option<Vec<String>>,
    /// Names of containers the host declares sidecars (`sidekill plan --sidecar`).
    pub sidecars: Option<Vec<String>>,
    /// The stop methods the host may use besides `pods/exec`, with their images.
    pub stop_methods: StopMethods,
    /// Injections to simulate before planning (`facts.inject`, ABI 1.4): the pod is planned
    /// as each injector would inject it, in the order of [`inject::INJECTORS`].
    pub inject: Vec<Simulation>,
}

/// A request to the policy: one object and the host's facts.
#[derive(Debug, Clone)]
pub struct Request {
    /// The Kubernetes object as JSON.
    pub object: Value,
    /// What the host knows.
    pub facts: Facts,
}

impl Request {
    /// Parses the JSON request envelope `{"object": {...}, "facts": {...}}`.
    ///
    /// # Errors
    /// [`Error::Utf8`] or [`Error::Json`] for bytes that are not a JSON document;
    /// [`Error::Missing`] or [`Error::Invalid`] naming the field for a bad envelope.
    pub fn from_json(bytes: &[u8]) -> Result<Request> {
        let text = core::str::from_utf8(bytes).map_err(|e| Error::Utf8 {
            offset: e.valid_up_to(),
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| Error::from_json(&e))?;
        Request::from_value(value)
    }

    /// Reads the request envelope from an already parsed JSON value.
    ///
    /// # Errors
    /// As [`Request::from_json`], for the envelope's fields.
    pub fn from_value(value: Value) -> Result<Request> {
        let Value::Object(mut envelope) = value else {
            return Err(Error::Invalid {
                path: "$".into(),
                expected: "an object with `object` and optional `facts`",
                found: "another JSON value".into(),
            });
        };
        let object = envelope.remove("object").ok_or(Error::Missing {
            path: "object".into(),
            expected: "a Kubernetes object (Pod, Job, CronJob, Deployment, Workflow, ...)",
        })?;
        let facts = match envelope.get("facts") {
            None | Some(Value::Null) => Facts::default(),
            Some(v) => facts(v)?,
        };
        Ok(Request { object, facts })
    }
}

fn facts(v: &Value) -> Result<Facts> {
    let m = as_object(v, "facts")?;
    let mut facts = Facts::default();
    if let Some(name) = opt_string(m, "executor", "facts")? {
        facts.executor = Some(Executor::from_name(&name).ok_or(Error::Invalid {
            path: "facts.executor".into(),
            expected: "one of emissary, docker, k8sapi, kubelet, pns, none",
            found: format!("`{name}`"),
        })?);
    }
    if let Some(version) = opt_string(m, "clusterVersion", "facts")? {
        facts.cluster_version = Some(parse_version(&version).ok_or(Error::Invalid {
            path: "facts.clusterVersion".into(),
            expected: "a Kubernetes version such as \"1.31\" or \"v1.31.2\"",
            found: format!("`{version}`"),
        })?);
    }
    match m.get("podsProxy") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => facts.pods_proxy = *b,
        Some(_) => {
            return Err(Error::Invalid {
                path: "facts.podsProxy".into(),
                expected: "a boolean",
                found: "another JSON value".into(),
            })
        }
    }
    facts.main_containers = names(m, "mainContainers")?;
    facts.sidecars = names(m, "sidecars")?;
    if let Some(methods) = m.get("stopMethods").filter(|v| !v.is_null()) {
        let methods = as_object(methods, "facts.stopMethods")?;
        facts.stop_methods = StopMethods {
            image_swap: allowance(methods, "imageSwap")?,
            ephemeral: allowance(methods, "ephemeral")?,
        };
    }
    if let Some(inject) = m.get("inject").filter(|v| !v.is_null()) {
        facts.inject = simulations(as_object(inject, "facts.inject")?)?;
    }
    Ok(facts)
}

/// `facts.inject`: `{"istio" | "linkerd" | "kuma" | "vault": {"native": bool}}`; `native`
/// defaults to false (classic).
fn simulations(m: &Map<String, Value>) -> Result<Vec<Simulation>> {
    if let Some(unknown) = m
        .keys()
        .find(|k| !inject::INJECTORS.iter().any(|(name, _)| name == k))
    {
        return Err(Error::Invalid {
            path: format!("facts.inject.{unknown}"),
            expected: "an injector: istio, linkerd, kuma or vault",
            found: format!("`{unknown}`"),
        });
    }
    let mut out = Vec::new();
    for (name, injector) in inject::INJECTORS {
        let Some(v) = m.get(name) else { continue };
        let path = format!("facts.inject.{name}");
        let native = match v {
            Value::Null => false,
            Value::Object(o) => match o.get("native") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Error::Invalid {
                        path: format!("{path}.native"),
                        expected: "a boolean",
                        found: "another JSON value".into(),
                    })
                }
            },
            _ => {
                return Err(Error::Invalid {
                    path,
                    expected: "an object such as {\"native\": false}",
                    found: "another JSON value".into(),
                })
            }
        };
        out.push(Simulation { injector, native });
    }
    Ok(out)
}

/// `facts.stopMethods.<key>`, `{"allowed": bool, "image": "..."}`: the image when the method
/// is allowed. An allowed method without an image is an error: its steps need one.
fn allowance(m: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    let Some(v) = m.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let path = format!("facts.stopMethods.{key}");
    let method = as_object(v, &path)?;
    let allowed = match method.get("allowed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Error::Invalid {
                path: format!("{path}.allowed"),
                expected: "a boolean",
                found: "another JSON value".into(),
            })
        }
    };
    let image = opt_string(method, "image", &path)?.filter(|i| !i.trim().is_empty());
    match (allowed, image) {
        (false, _) => Ok(None),
        (true, Some(image)) => Ok(Some(image)),
        (true, None) => Err(Error::Missing {
            path: format!("{path}.image"),
            expected: "the image reference to use when the method is allowed",
        }),
    }
}

/// An optional list of container names under `facts.<key>`.
fn names(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>> {
    let Some(list) = m.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let path = format!("facts.{key}");
    as_array(list, &path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_owned).ok_or(Error::Invalid {
                path: format!("{path}[{i}]"),
                expected: "a container name",
                found: "another JSON value".into(),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    // Managed clusters report minors such as "31+".
    let digits = minor_text.trim_end_matches(|c: char| !c.is_ascii_digit());
    Some((major, digits.parse().ok()?))
}

/// Where a planned pod comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The object's `kind`.
    pub kind: String,
    /// The object's name (or `generateName`), empty when it has neither.
    pub name: String,
    /// The object's namespace, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// For a Workflow, the template this pod runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// JSON path of the pod spec inside the request.
    pub path: String,
}

/// One pod to plan.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Where the pod comes from.
    pub source: Source,
    /// The pod.
    pub pod: Pod,
    /// Main container names known from the object (a Workflow template's layout).
    pub main_containers: Option<Vec<String>>,
    /// The simulated injections (`facts.inject`), when any were asked for.
    pub injection: Option<Injection>,
}

/// Splits an object into the pods it stands for.
///
/// # Errors
/// A missing or mistyped field the core needs, named by its path under `object`.
pub fn subjects(object: &Value, facts: &Facts) -> Result<Vec<Subject>> {
    let mut out = Vec::new();
    collect(object, "object", &facts.inject, &mut out)?;
    Ok(out)
}

/// One pod from its JSON, injected first when simulations are asked for.
struct PodJson<'a> {
    /// Borrowed from the request unless an injection is simulated on it: a plan reads
    /// the pod and copies only the strings it keeps (issue 16).
    metadata: Cow<'a, Value>,
    spec: Cow<'a, Value>,
    status: Option<&'a Value>,
    path: &'a str,
}

fn subject(
    json: PodJson<'_>,
    source: Source,
    main_containers: Option<Vec<String>>,
    simulations: &[Simulation],
) -> Result<Subject> {
    let PodJson {
        metadata,
        spec,
        status,
        path,
    } = json;
    let parse = |metadata: &Value, spec: &Value| {
        Pod::from_parts(Some(metadata).filter(|m| !m.is_null()), spec, status, path)
    };
    let mut pod = parse(&metadata, &spec)?;
    let injection = if simulations.is_empty() {
        None
    } else {
        let (mut metadata, mut spec) = (metadata.into_owned(), spec.into_owned());
        let injected = inject::simulate(&pod, &mut metadata, &mut spec, simulations);
        if injected.iter().any(|i| !i.added.is_empty()) {
            pod = parse(&metadata, &spec)?;
        }
        Some(Injection {
            injected,
            pod: json!({"metadata": metadata, "spec": spec}),
        })
    };
    Ok(Subject {
        source,
        pod,
        main_containers,
        injection,
    })
}

fn collect(
    object: &Value,
    path: &str,
    simulations: &[Simulation],
    out: &mut Vec<Subject>,
) -> Result<()> {
    let m = as_object(object, path)?;
    let kind = req_string(m, "kind", path)?;
    let metadata = m.get("metadata").filter(|v| !v.is_null());
    let meta_map = match metadata {
        Some(meta) => Some(as_object(meta, &format!("{path}.metadata"))?),
        None => None,
    };
    let meta_str = |key: &str| -> Result<Option<String>> {
        match meta_map {
            Some(meta) => opt_string(meta, key, &format!("{path}.metadata")),
            None => Ok(None),
        }
    };
    let name = meta_str("name")?
        .or(meta_str("generateName")?)
        .unwrap_or_default();
    let namespace = meta_str("namespace")?;
    let source = |template: Option<String>, pod_path: String| Source {
        kind: kind.clone(),
        name: name.clone(),
        namespace: namespace.clone(),
        template,
        path: pod_path,
    };
    let spec = || {
        m.get("spec")
            .filter(|v| !v.is_null())
            .ok_or(Error::Missing {
                path: format!("{path}.spec"),
                expected: "the object's spec",
            })
    };
    match kind.as_str() {
        "List" | "PodList" => {
            let items_path = format!("{path}.items");
            let items = m.get("items").ok_or(Error::Missing {
                path: items_path.clone(),
                expected: "a list of objects",
            })?;
            for (i, item) in as_array(items, &items_path)?.iter().enumerate() {
                collect(item, &format!("{items_path}[{i}]"), simulations, out)?;
            }
        }
        "Pod" => {
            let json = PodJson {
                metadata: metadata.map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                spec: Cow::Borrowed(spec()?),
                status: m.get("status"),
                path,
            };
            let mut s = subject(json, source(None, path.to_owned()), None, simulations)?;
            s.pod.namespace = s.pod.namespace.or(namespace.clone());
            out.push(s);
        }
        "Job" | "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let template_path = format!("{path}.spec.template");
            let template = field(spec()?, "template", &format!("{path}.spec"))?;
            out.push(template_subject(
                template,
                &template_path,
                &[],
                source(None, template_path.clone()),
                namespace.clone(),
                simulations,
            )?);
        }
        "CronJob" => {
            let job_path = format!("{path}.spec.jobTemplate");
            let job = field(spec()?, "jobTemplate", &format!("{path}.spec"))?;
            let job_meta = as_object(job, &job_path)?
                .get("metadata")
                .filter(|v| !v.is_null());
            let job_spec = field(job, "spec", &job_path)?;
            let template_path = format!("{job_path}.spec.template");
            let template = field(job_spec, "template", &format!("{job_path}.spec"))?;
            // Injectors run by `kube-inject` annotate the job template, not the pod template
            // (istio's cronjob golden file): their evidence counts as the pod's.
            let outer: Vec<&Value> = job_meta.into_iter().collect();
            out.push(template_subject(
                template,
                &template_path,
                &outer,
                source(None, template_path.clone()),
                namespace.clone(),
                simulations,
            )?);
        }
        "Workflow" | "WorkflowTemplate" | "ClusterWorkflowTemplate" => {
            for (template, pod, mains) in crate::argo::workflow_pods(spec()?, &name, path)? {
                let pod_path = template.1;
                let json = PodJson {
                    metadata: Cow::Owned(pod.0),
                    spec: Cow::Owned(pod.1),
                    status: None,
                    path: &pod_path,
                };
                let source = source(Some(template.0), pod_path.clone());
                let mut s = subject(json, source, Some(mains), simulations)?;
                s.pod.namespace = namespace.clone();
                out.push(s);
            }
        }
        other => {
            return Err(Error::UnsupportedKind {
                path: format!("{path}.kind"),
                kind: other.into(),
            })
        }
    }
    Ok(())
}

fn field<'v>(v: &'v Value, key: &str, path: &str) -> Result<&'v Value> {
    as_object(v, path)?
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or(Error::Missing {
            path: format!("{path}.{key}"),
            expected: "an object",
        })
}

/// A pod template, with annotations of enclosing templates merged under its own.
fn template_subject(
    template: &Value,
    path: &str,
    outer_metadata: &[&Value],
    source: Source,
    namespace: Option<String>,
    simulations: &[Simulation],
) -> Result<Subject> {
    let t = as_object(template, path)?;
    let spec = t
        .get("spec")
        .filter(|v| !v.is_null())
        .ok_or(Error::Missing {
            path: format!("{path}.spec"),
            expected: "the pod template's spec",
        })?;
    let metadata = merged_metadata(t.get("metadata"), outer_metadata);
    let name = source.name.clone();
    let json = PodJson {
        metadata: Cow::Owned(metadata),
        spec: Cow::Borrowed(spec),
        status: None,
        path,
    };
    let mut s = subject(json, source, None, simulations)?;
    s.pod.namespace = namespace;
    if s.pod.name.is_empty() {
        s.pod.name = name;
    }
    Ok(s)
}

fn merged_metadata(inner: Option<&Value>, outer: &[&Value]) -> Value {
    let mut merged = Map::new();
    for key in ["labels", "annotations"] {
        let mut map = Map::new();
        for meta in outer.iter().copied().chain(inner) {
            if let Some(Value::Object(entries)) = meta.get(key) {
                for (k, v) in entries {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        merged.insert(key.into(), Value::Object(map));
    }
    if let Some(Value::Object(inner)) = inner {
        for (k, v) in inner {
            if k != "labels" && k != "annotations" {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    json!(merged)
}
