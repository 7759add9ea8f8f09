//! Stop methods: how a stop request reaches a sidecar, and what the host may use.
//!
//! - `exec`: a command run inside the container through `pods/exec` (a preset, the
//!   kill-cmd annotation, argoexec, or `/bin/sh -c 'kill -%d 1'`). Needs a program in the
//!   image and obeys the PID 1 rules of the container's PID namespace.
//! - `image-swap`: the container's image is patched to sidekill's nop image ([`crate::nop`]);
//!   the kubelet stops the old container from outside and starts the nop, which exits 0.
//!   Needs `patch` on `pods`; nothing inside the container.
//! - `ephemeral`: an ephemeral container running sidekill's quitter, with
//!   `targetContainerName` set to the sidecar: it shares the pod's network (so it reaches
//!   loopback-only endpoints) and the sidecar's PID namespace (so it can signal by name).
//!   Needs `pods/ephemeralcontainers`; the container stays in the pod spec for good.
//!
//! The host says what it may do in `facts.stopMethods` ([`StopMethods`]). Defaults a user
//! would approve of, which the host applies when it fills the facts: image swap allowed when
//! its RBAC self-check says it may `patch` `pods` and a nop image is configured; the
//! ephemeral quitter only when the user opts in and `pods/ephemeralcontainers` is granted.
//! Without the facts neither is allowed, and plans are as before.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;

use crate::presets::Endpoint;

/// Where sidekill's quitter binary lives in the quitter image (its ENTRYPOINT); invoked
/// under this name it acts on its argv, under any other name it is the nop.
pub const QUITTER_PATH: &str = "/sidekill-quitter";

/// How a stop request reaches the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Run an argv in the container through `pods/exec`. `%d` stands for the signal.
    Exec {
        /// The argv template.
        argv: Vec<String>,
    },
    /// Patch `spec.containers[containerIndex].image` to the nop image.
    #[serde(rename_all = "camelCase")]
    ImageSwap {
        /// The container's index in `spec.containers`, for the JSON patch path.
        container_index: usize,
        /// The nop image.
        image: String,
    },
    /// Add an ephemeral container running the quitter with this argv.
    #[serde(rename_all = "camelCase")]
    Ephemeral {
        /// The sidecar, as the ephemeral container's `targetContainerName`.
        target_container_name: String,
        /// The quitter image.
        image: String,
        /// The ephemeral container's `command`.
        argv: Vec<String>,
        /// The user to run as, when the pod spec gives the sidecar's: a signal needs the
        /// target's uid or CAP_KILL.
        #[serde(skip_serializing_if = "Option::is_none")]
        run_as_user: Option<i64>,
    },
}

/// What the host may do besides `pods/exec`, from `facts.stopMethods`: for each method, the
/// image to use when the host allows it, `None` when it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopMethods {
    /// The nop image, when image swap is allowed (`facts.stopMethods.imageSwap`).
    pub image_swap: Option<String>,
    /// The quitter image, when the ephemeral quitter is allowed
    /// (`facts.stopMethods.ephemeral`).
    pub ephemeral: Option<String>,
}

/// The method a stop uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// A command inside the container, through `pods/exec`.
    Exec,
    /// The container's image is swapped for the nop.
    ImageSwap,
    /// An ephemeral quitter container.
    Ephemeral,
    /// Nothing the host may do can stop it: no step is planned.
    None,
}

/// The method chosen for a container, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Method {
    /// The method.
    pub kind: MethodKind,
    /// Why it was chosen over the others.
    pub evidence: String,
}

/// The quitter's argv for an HTTP request to a loopback endpoint.
pub fn quitter_http(endpoint: &Endpoint) -> Vec<String> {
    [
        QUITTER_PATH.to_string(),
        "http".into(),
        endpoint.method.into(),
        alloc::format!("{}:{}", endpoint.host, endpoint.port),
        endpoint.path.into(),
    ]
    .into()
}

/// The quitter's argv for a signal to the process with this name.
pub fn quitter_signal(signal: u8, process: &str) -> Vec<String> {
    [
        QUITTER_PATH.to_string(),
        "signal".into(),
        signal.to_string(),
        "--process".into(),
        process.into(),
    ]
    .into()
}
