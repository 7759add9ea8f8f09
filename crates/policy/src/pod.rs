//! A typed, read-only view of the parts of a Pod the policy looks at.
//!
//! The view is read from `serde_json::Value` by hand rather than through derived
//! deserializers, so that every error names the exact JSON path (for example
//! `object.spec.containers[2].name`) and unknown fields are ignored. Only the fields
//! the policy needs are read.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerList {
    /// `spec.containers`.
    Containers,
    /// `spec.initContainers`.
    InitContainers,
}

/// One container of a pod spec.
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// `name`.
    pub name: String,
    /// `image`, empty when absent.
    pub image: String,
    /// `command`, empty when absent (the image's entrypoint runs).
    pub command: Vec<String>,
    /// `args`.
    pub args: Vec<String>,
    /// `volumeMounts[].mountPath`.
    pub mount_paths: Vec<String>,
    /// `env[].name` and literal `env[].value` (empty for `valueFrom`).
    pub env: Vec<(String, String)>,
    /// `restartPolicy`: only `Always` on an init container is meaningful (a native sidecar).
    pub restart_policy: Option<String>,
    /// `securityContext.runAsUser`.
    pub run_as_user: Option<i64>,
    /// `securityContext.runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// `lifecycle.preStop` is set.
    pub has_pre_stop: bool,
    /// `lifecycle.stopSignal`, when set.
    pub stop_signal: Option<String>,
}

/// The environment variables whose values the policy reads; of every other variable it
/// reads the name only. A host sends the pod with every other literal value redacted (least
/// data: a module cannot leak what it never sees), so a read of another variable's value
/// would see nothing: [`Container::env_value`] refuses, in debug builds, a key not listed.
pub const ENV_VALUES_READ: &[&str] = &[
    "PATH",
    "ARGO_TEMPLATE",
    "CSQL_PROXY_EXIT_ZERO_ON_SIGTERM",
    "CSQL_PROXY_QUITQUITQUIT",
    "CSQL_PROXY_ADMIN_PORT",
    "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
    "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED",
    crate::declare::KRUISE_ENV,
];

impl Container {
    /// The environment variable's literal value, when set. `key` must be one of
    /// [`ENV_VALUES_READ`].
    pub fn env_value(&self, key: &str) -> Option<&str> {
        debug_assert!(
            ENV_VALUES_READ.contains(&key),
            "env {key} is read but not in ENV_VALUES_READ: hosts redact it"
        );
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether any volume is mounted at exactly `path`.
    pub fn mounts(&self, path: &str) -> bool {
        self.mount_paths
            .iter()
            .any(|m| m.trim_end_matches('/') == path)
    }

    /// `command` followed by `args`, the argv as the pod spec gives it.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.command
            .iter()
            .chain(self.args.iter())
            .map(String::as_str)
    }
}

/// The observed state of one container, from `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// `state.waiting`.
    Waiting,
    /// `state.running`.
    Running,
    /// `state.terminated`, with its exit code.
    Terminated {
        /// `state.terminated.exitCode`.
        exit_code: i64,
    },
}

/// The parts of a Pod that decide its plan.
#[derive(Debug, Clone, Default)]
pub struct Pod {
    /// `metadata.namespace`, when set.
    pub namespace: Option<String>,
    /// `metadata.name`, or `metadata.generateName`, or empty.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.containers`.
    pub containers: Vec<Container>,
    /// `spec.initContainers`.
    pub init_containers: Vec<Container>,
    /// `spec.terminationGracePeriodSeconds`, when set.
    pub termination_grace_period_seconds: Option<i64>,
    /// `spec.shareProcessNamespace`.
    pub share_process_namespace: bool,
    /// `spec.securityContext.runAsUser`.
    pub pod_run_as_user: Option<i64>,
    /// `spec.securityContext.runAsNonRoot`.
    pub pod_run_as_non_root: Option<bool>,
    /// `status.containerStatuses` and `status.initContainerStatuses`, by container name.
    /// Empty when the object has no status.
    pub states: BTreeMap<String, ContainerState>,
    /// Whether the object carried any container status at all.
    pub has_status: bool,
    /// `spec.restartPolicy`, when set.
    pub restart_policy: Option<String>,
    /// `status.phase`, when set.
    pub phase: Option<String>,
    /// `metadata.ownerReferences[].kind`.
    pub owner_kinds: Vec<String>,
}

impl Pod {
    /// Reads a pod from its `metadata` and `spec` (and `status`, when present).
    ///
    /// `path` is the JSON path of the object that holds them, used in errors.
    pub fn from_parts(
        metadata: Option<&Value>,
        spec: &Value,
        status: Option<&Value>,
        path: &str,
    ) -> Result<Pod> {
        let path = Path::Text(path);
        let mut pod = Pod::default();
        if let Some(meta) = metadata {
            let meta_path = path.key("metadata");
            let meta = as_object(meta, &meta_path)?;
            pod.namespace = opt_string(meta, "namespace", &meta_path)?;
            pod.name = opt_string(meta, "name", &meta_path)?
                .or(opt_string(meta, "generateName", &meta_path)?)
                .unwrap_or_default();
            pod.labels = string_map(meta.get("labels"), &meta_path.key("labels"))?;
            pod.annotations = string_map(meta.get("annotations"), &meta_path.key("annotations"))?;
            if let Some(owners) = meta.get("ownerReferences").filter(|v| !v.is_null()) {
                let owners_path = meta_path.key("ownerReferences");
                for (i, owner) in as_array(owners, &owners_path)?.iter().enumerate() {
                    let owner_path = owners_path.index(i);
                    if let Some(kind) =
                        opt_string(as_object(owner, &owner_path)?, "kind", &owner_path)?
                    {
                        pod.owner_kinds.push(kind);
                    }
                }
            }
        }
        let spec_path = path.key("spec");
        let spec = as_object(spec, &spec_path)?;
        pod.containers = match spec.get("containers") {
            None | Some(Value::Null) => {
                return Err(Error::Missing {
                    path: format!("{spec_path}.containers"),
                    expected: "a list of containers",
                })
            }
            Some(list) => containers(list, &spec_path.key("containers"))?,
        };
        pod.init_containers = match spec.get("initContainers") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => containers(list, &spec_path.key("initContainers"))?,
        };
        pod.termination_grace_period_seconds =
            opt_i64(spec, "terminationGracePeriodSeconds", &spec_path)?;
        if let Some(grace) = pod.termination_grace_period_seconds {
            if grace < 0 {
                return Err(Error::Invalid {
                    path: format!("{spec_path}.terminationGracePeriodSeconds"),
                    expected: "a non-negative number of seconds",
                    found: grace.to_string(),
                });
            }
        }
        pod.share_process_namespace =
            opt_bool(spec, "shareProcessNamespace", &spec_path)?.unwrap_or(false);
        pod.restart_policy = opt_string(spec, "restartPolicy", &spec_path)?;
        if let Some(sc) = spec.get("securityContext").filter(|v| !v.is_null()) {
            let sc_path = spec_path.key("securityContext");
            let sc = as_object(sc, &sc_path)?;
            pod.pod_run_as_user = opt_i64(sc, "runAsUser", &sc_path)?;
            pod.pod_run_as_non_root = opt_bool(sc, "runAsNonRoot", &sc_path)?;
        }
        if let Some(status) = status.filter(|v| !v.is_null()) {
            let status_path = path.key("status");
            let status = as_object(status, &status_path)?;
            pod.phase = opt_string(status, "phase", &status_path)?;
            for key in ["initContainerStatuses", "containerStatuses"] {
                if let Some(list) = status.get(key).filter(|v| !v.is_null()) {
                    let list_path = status_path.key(key);
                    for (i, item) in as_array(list, &list_path)?.iter().enumerate() {
                        let item_path = list_path.index(i);
                        let item = as_object(item, &item_path)?;
                        let name = req_string(item, "name", &item_path)?;
                        let state = container_state(item.get("state"), &item_path)?;
                        pod.has_status = true;
                        pod.states.insert(name, state);
                    }
                }
            }
        }
        Ok(pod)
    }

    /// Every container of the pod, regular ones first, with the list each is in.
    pub fn all_containers(&self) -> impl Iterator<Item = (ContainerList, &Container)> {
        self.containers
            .iter()
            .map(|c| (ContainerList::Containers, c))
            .chain(
                self.init_containers
                    .iter()
                    .map(|c| (ContainerList::InitContainers, c)),
            )
    }

    /// Finds a container by name in either list.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.all_containers()
            .map(|(_, c)| c)
            .find(|c| c.name == name)
    }

    /// Whether the container runs as a non-root user (container settings win over the pod's).
    pub fn runs_as_non_root(&self, c: &Container) -> bool {
        let user = c.run_as_user.or(self.pod_run_as_user);
        match user {
            Some(uid) => uid != 0,
            None => c.run_as_non_root.or(self.pod_run_as_non_root) == Some(true),
        }
    }
}

/// A JSON path for error messages (`object.spec.containers[2].name`), written out only when
/// an error names it. Formatting every field's path up front, whether or not anything was
/// wrong, was a tenth of a plan's time (issue 16).
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// A path given as text.
    Text(&'a str),
    /// `{parent}.{key}`.
    Key(&'a Path<'a>, &'a str),
    /// `{parent}[{index}]`.
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// `{self}.{key}`.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    /// `{self}[{index}]`.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Text(text) => f.write_str(text),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => "a string".into(),
        Value::String(s) => format!("string `{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

pub(crate) fn as_object<'v, P: fmt::Display + ?Sized>(
    v: &'v Value,
    path: &P,
) -> Result<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| Error::Invalid {
        path: path.to_string(),
        expected: "an object",
        found: describe(v),
    })
}

pub(crate) fn as_array<'v, P: fmt::Display + ?Sized>(
    v: &'v Value,
    path: &P,
) -> Result<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| Error::Invalid {
        path: path.to_string(),
        expected: "a list",
        found: describe(v),
    })
}

pub(crate) fn opt_string<P: fmt::Display + ?Sized>(
    m: &Map<String, Value>,
    key: &str,
    path: &P,
) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::Invalid {
            path: format!("{path}.{key}"),
            expected: "a string",
            found: describe(other),
        }),
    }
}

pub(crate) fn req_string<P: fmt::Display + ?Sized>(
    m: &Map<String, Value>,
    key: &str,
    path: &P,
) -> Result<String> {
    opt_string(m, key, path)?.ok_or_else(|| Error::Missing {
        path: format!("{path}.{key}"),
        expected: "a string",
    })
}

fn opt_bool(m: &Map<String, Value>, key: &str, path: &Path<'_>) -> Result<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Error::Invalid {
            path: format!("{path}.{key}"),
            expected: "a boolean",
            found: describe(other),
        }),
    }
}

fn opt_i64(m: &Map<String, Value>, key: &str, path: &Path<'_>) -> Result<Option<i64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(other) => Err(Error::Invalid {
            path: format!("{path}.{key}"),
            expected: "an integer",
            found: describe(other),
        }),
    }
}

fn string_list(v: Option<&Value>, path: &Path<'_>) -> Result<Vec<String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    as_array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(Error::Invalid {
                path: format!("{path}[{i}]"),
                expected: "a string",
                found: describe(other),
            }),
        })
        .collect()
}

/// Labels and annotations: a map of strings. A number or boolean value is a type error,
/// as the API server would reject it.
fn string_map(v: Option<&Value>, path: &Path<'_>) -> Result<BTreeMap<String, String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let mut map = BTreeMap::new();
    for (k, item) in as_object(v, path)? {
        let Value::String(s) = item else {
            return Err(Error::Invalid {
                path: format!("{path}.{k}"),
                expected: "a string",
                found: describe(item),
            });
        };
        map.insert(k.clone(), s.clone());
    }
    Ok(map)
}

fn containers(list: &Value, path: &Path<'_>) -> Result<Vec<Container>> {
    as_array(list, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| container(item, &path.index(i)))
        .collect()
}

fn container(v: &Value, path: &Path<'_>) -> Result<Container> {
    let m = as_object(v, path)?;
    let mut c = Container {
        name: req_string(m, "name", path)?,
        image: opt_string(m, "image", path)?.unwrap_or_default(),
        command: string_list(m.get("command"), &path.key("command"))?,
        args: string_list(m.get("args"), &path.key("args"))?,
        restart_policy: opt_string(m, "restartPolicy", path)?,
        ..Container::default()
    };
    if let Some(mounts) = m.get("volumeMounts").filter(|v| !v.is_null()) {
        let mounts_path = path.key("volumeMounts");
        for (i, mount) in as_array(mounts, &mounts_path)?.iter().enumerate() {
            let mount_path = mounts_path.index(i);
            c.mount_paths.push(req_string(
                as_object(mount, &mount_path)?,
                "mountPath",
                &mount_path,
            )?);
        }
    }
    if let Some(env) = m.get("env").filter(|v| !v.is_null()) {
        let env_path = path.key("env");
        for (i, var) in as_array(env, &env_path)?.iter().enumerate() {
            let var_path = env_path.index(i);
            let var = as_object(var, &var_path)?;
            let name = req_string(var, "name", &var_path)?;
            let value = opt_string(var, "value", &var_path)?.unwrap_or_default();
            c.env.push((name, value));
        }
    }
    if let Some(sc) = m.get("securityContext").filter(|v| !v.is_null()) {
        let sc_path = path.key("securityContext");
        let sc = as_object(sc, &sc_path)?;
        c.run_as_user = opt_i64(sc, "runAsUser", &sc_path)?;
        c.run_as_non_root = opt_bool(sc, "runAsNonRoot", &sc_path)?;
    }
    if let Some(lc) = m.get("lifecycle").filter(|v| !v.is_null()) {
        let lc_path = path.key("lifecycle");
        let lc = as_object(lc, &lc_path)?;
        c.has_pre_stop = lc.get("preStop").is_some_and(|v| !v.is_null());
        c.stop_signal = opt_string(lc, "stopSignal", &lc_path)?;
    }
    Ok(c)
}

fn container_state(v: Option<&Value>, path: &Path<'_>) -> Result<ContainerState> {
    let state_path = path.key("state");
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(ContainerState::Waiting);
    };
    let m = as_object(v, &state_path)?;
    if let Some(t) = m.get("terminated").filter(|v| !v.is_null()) {
        let t_path = state_path.key("terminated");
        let exit_code = opt_i64(as_object(t, &t_path)?, "exitCode", &t_path)?.unwrap_or(0);
        return Ok(ContainerState::Terminated { exit_code });
    }
    if m.get("running").is_some_and(|v| !v.is_null()) {
        return Ok(ContainerState::Running);
    }
    Ok(ContainerState::Waiting)
}
