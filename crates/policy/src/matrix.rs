//! The support matrix: for each executor and each kind of sidecar, how the sidecar can
//! be stopped and by which path. It is data, so hosts, the page and the CLI print it
//! without deciding anything themselves.
//!
//! Sources: argo-workflows `docs/sidecar-injection.md` (the executor table, v3.1 to v3.3),
//! `docs/workflow-executors.md` (only emissary remains since v3.4),
//! `workflow/signal/signal.go` (the kill command) and `docs/initless-pod.md` (v4.1, beta).

use alloc::vec::Vec;
use serde::Serialize;

/// An Argo executor, or `None` for a pod that no Argo executor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Executor {
    /// The emissary executor, the only one since Argo v3.4.
    Emissary,
    /// The Docker executor (removed in v3.4).
    Docker,
    /// The Kubernetes API executor (removed in v3.4).
    K8sapi,
    /// The kubelet executor (removed in v3.4).
    Kubelet,
    /// The process-namespace-sharing executor (removed in v3.4).
    Pns,
    /// No Argo executor: a Job or plain pod, stopped by sidekill alone.
    None,
}

impl Executor {
    /// Every executor, in table order.
    pub const ALL: [Executor; 6] = [
        Executor::Emissary,
        Executor::Docker,
        Executor::K8sapi,
        Executor::Kubelet,
        Executor::Pns,
        Executor::None,
    ];

    /// Parses the name used in facts and in the JSON form.
    pub fn from_name(name: &str) -> Option<Executor> {
        Executor::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The name used in facts and in the JSON form.
    pub fn name(self) -> &'static str {
        match self {
            Executor::Emissary => "emissary",
            Executor::Docker => "docker",
            Executor::K8sapi => "k8sapi",
            Executor::Kubelet => "kubelet",
            Executor::Pns => "pns",
            Executor::None => "none",
        }
    }
}

/// How a kind of sidecar can be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Any image and process: the executor signals it from outside or through a handler it controls.
    Any,
    /// Only when the image has a shell (`/bin/sh -c 'kill 1'`).
    Shell,
    /// Only with an exec into the container (`pods/exec`), whose command must work in that image.
    KubectlExec,
    /// Nothing to do: Kubernetes stops it.
    NoneNeeded,
    /// There is no such sidecar for this executor.
    NotApplicable,
    /// The executor cannot stop it.
    Unsupported,
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// How it can be stopped.
    pub method: Method,
    /// By which path: the command, endpoint or component that does it.
    pub path: &'static str,
}

/// One row: an executor and its three columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The executor.
    pub executor: Executor,
    /// Argo versions that have it.
    pub versions: &'static str,
    /// Sidecars declared in the Workflow template.
    pub declared: Cell,
    /// Sidecars an injector added.
    pub injected: Cell,
    /// Native sidecars (`initContainers` with `restartPolicy: Always`).
    pub native: Cell,
}

/// The whole matrix, as the `matrix` call returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// The columns, in order.
    pub columns: [&'static str; 3],
    /// One row per executor.
    pub rows: Vec<Row>,
}

const NATIVE: Cell = Cell {
    method: Method::NoneNeeded,
    path: "the kubelet stops native sidecars after the main containers exit (Kubernetes 1.29+)",
};
const INJECTED_EXEC: Cell = Cell {
    method: Method::KubectlExec,
    path: "pods/exec: the kill-cmd annotation, else a preset, else /bin/sh -c 'kill -%d 1'",
};

/// The support matrix.
pub fn matrix() -> Matrix {
    let row = |executor, versions, declared, injected| Row {
        executor,
        versions,
        declared,
        injected,
        native: NATIVE,
    };
    Matrix {
        columns: ["declared", "injected", "native"],
        rows: alloc::vec![
            row(
                Executor::Emissary,
                "v3.1+ (the only executor since v3.4)",
                Cell {
                    method: Method::Any,
                    path: "pods/exec: /argo-bin/bin/argoexec kill %d 1 (initless layout, v4.1+) or /var/run/argo/argoexec kill %d 1; the emissary is PID 1 and forwards the signal",
                },
                INJECTED_EXEC,
            ),
            row(
                Executor::Docker,
                "up to v3.3",
                Cell { method: Method::Any, path: "docker kill --signal on the node" },
                Cell { method: Method::Unsupported, path: "no path: injected containers are not known to the executor" },
            ),
            row(
                Executor::K8sapi,
                "up to v3.3",
                Cell { method: Method::Shell, path: "pods/exec: /bin/sh -c 'kill -%d 1'" },
                INJECTED_EXEC,
            ),
            row(
                Executor::Kubelet,
                "up to v3.3",
                Cell { method: Method::Shell, path: "kubelet exec: /bin/sh -c 'kill -%d 1'" },
                INJECTED_EXEC,
            ),
            row(
                Executor::Pns,
                "up to v3.3",
                Cell { method: Method::Any, path: "shared process namespace: the wait container signals the process" },
                Cell { method: Method::Any, path: "shared process namespace: the wait container signals the process" },
            ),
            row(
                Executor::None,
                "no Argo (Job or plain pod; sidekill alone)",
                Cell { method: Method::KubectlExec, path: "pods/exec, as for injected sidecars: declared by sidekill.dev/sidecars or sidekill.dev/main-containers, a peer controller's annotation, a kill-cmd annotation, OpenKruise's env or the host's facts" },
                INJECTED_EXEC,
            ),
        ],
    }
}

impl Matrix {
    /// The row for one executor.
    pub fn row(&self, executor: Executor) -> Option<&Row> {
        self.rows.iter().find(|r| r.executor == executor)
    }
}
