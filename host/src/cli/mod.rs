//! The `sidekill` command line: argument definitions (clap derive) and the commands.
//!
//! Arguments are parsed and validated first (clap, with value parsers that do no IO),
//! then resolved (files read, the module loaded), then acted on. Each command returns an
//! [`Exit`] code; errors that stop a command return [`Error`], which the binary prints
//! and turns into exit code 2.

#[cfg(feature = "configmap")]
mod controller;
#[cfg(feature = "demo")]
mod demo;
mod plan;
mod policy_cmd;
#[cfg(feature = "configmap")]
pub mod stop;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::render::Style;
use crate::runtime::{Config, Limits, Runtime};
use crate::{embedded, Policy};

/// The exit codes, as documented in `sidekill --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, nothing to report.
    Ok,
    /// 1: done, and something to report: a plan has a finding at or above `--fail-on`,
    /// `policy diff` found differences, `policy test`, `inspect`, `push` or `rollback`
    /// found a module that would be refused, `stop` left a sidecar running.
    Report,
    /// 2: a usage or input error (bad arguments, unreadable file, invalid YAML or JSON,
    /// an object the policy cannot plan, a module that cannot be loaded).
    Error,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Report => 1,
            Exit::Error => 2,
        }
    }
}

const AFTER_HELP: &str = "\
Exit codes:
  0  done, nothing to report
  1  done, something to report: a plan has a finding at or above `plan --fail-on`
     (default: a container that cannot be stopped or an error-level diagnostic),
     `policy diff` found differences, `policy test`/`inspect`/`push`/`rollback`
     found a module that would be refused, `stop` left a sidecar running
  2  usage or input error: bad arguments, unreadable file, invalid YAML or JSON,
     an object the policy cannot plan, a policy module that cannot be loaded

Environment:
  SIDEKILL_POLICY             policy module for `plan` and `matrix` (--policy)
  SIDEKILL_POLICY_SHA256      required sha256 of that module (--sha256)
  SIDEKILL_FORMAT             output format (--format)
  SIDEKILL_COLOR              colour: auto, always, never (--color)
  SIDEKILL_TIMEOUT_MS         deadline of one call into the module (--timeout-ms)
  SIDEKILL_MEMORY_LIMIT_MIB   memory limit of the module (--memory-limit-mib)
  SIDEKILL_CACHE_DIR          compiled-module cache directory (--cache-dir)
  XDG_CACHE_HOME              its default is $XDG_CACHE_HOME/sidekill (or
                              ~/.cache/sidekill)
  SIDEKILL_FAIL_ON            what makes `plan` exit 1 (--fail-on)
  SIDEKILL_LOG                log level on stderr: error, warn (default), info,
                              debug, trace
  NO_COLOR                    when set, no colour even on a terminal

`plan`, `matrix`, `policy` and `web` need no cluster: plans come from manifests on disk
or standard input. `stop` and `controller` act on a cluster (KUBECONFIG or the in-cluster
service account); `demo` starts a local test cluster of its own.";

/// What `sidekill --version` (and `-V`) prints after the name: the package version, the git
/// commit it was built from (`host/build.rs`: `git rev-parse HEAD`, `SIDEKILL_GIT_COMMIT`, or
/// `unknown`) and the sha256 of the embedded policy module, the digest `--sha256` pins (and the
/// chart's `policy.sha256`). For example
/// `0.1.0 (commit 7b4d43c…, embedded policy sha256 3f5a…)`, with the full digests.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (commit {}, embedded policy sha256 {})",
            env!("CARGO_PKG_VERSION"),
            env!("SIDEKILL_GIT_COMMIT"),
            embedded::sha256()
        )
    })
}

/// Plans how to stop the sidecars of batch pods (Argo Workflows, Jobs), from manifests.
#[derive(Debug, Parser)]
#[command(
    name = "sidekill",
    version = version(),
    about = "Plan how sidecars of batch pods are stopped, with the sandboxed sidekill policy",
    long_about = "\
sidekill stops sidecar containers (istio-proxy, linkerd-proxy, kuma-sidecar, vault-agent,
cloud-sql-proxy, ...) once the main containers of a batch pod (an Argo Workflows step, a
Job) have finished. Every decision comes from the policy module, a WebAssembly module run
in a sandbox: no imports, a deadline and a memory limit on every call.

This command line shows those decisions for manifests on disk, with no cluster: what
each container is and why, how each sidecar would be stopped, in what order, and what
will go wrong and how to fix it. It also inspects, tests and compares policy modules
before they are rolled out.

The default policy module is built into the binary; --policy runs another one.",
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `table` on a terminal, `json` otherwise.
    Auto,
    /// Tables and text for people.
    Table,
    /// One JSON document on standard output, for programs.
    Json,
    /// `plan` only: SARIF 2.1.0, for code scanning (GitHub, GitLab, Azure DevOps).
    Sarif,
    /// `plan` only: GitHub Actions workflow commands (`::error file=...,line=...::...`).
    Github,
}

/// Colour choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour on a terminal, unless NO_COLOR is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Options accepted by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Output format [default: table on a terminal, json otherwise]
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Format::Auto,
        hide_default_value = true,
        env = "SIDEKILL_FORMAT",
        long_help = "Output format. `table` is for people; `json` is one JSON document on \
                     standard output, for programs. The default, `auto`, is `table` when \
                     standard output is a terminal and `json` otherwise (a pipe or a file). \
                     `plan` also writes `sarif` (SARIF 2.1.0, for code scanning) and \
                     `github` (GitHub Actions annotations); other commands refuse them."
    )]
    pub format: Format,

    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, env = "SIDEKILL_COLOR")]
    pub color: Color,

    /// Deadline of one call into the policy module, in milliseconds
    #[arg(
        long,
        global = true,
        value_name = "MS",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=60_000),
        env = "SIDEKILL_TIMEOUT_MS",
        long_help = "Deadline of one call into the policy module, in milliseconds of CPU \
                     time (1 to 60000); a call is also stopped after max(1 s, this) of \
                     wall-clock time. A call that runs longer (a runaway loop) is stopped \
                     and reported; the command goes on with the next document."
    )]
    pub timeout_ms: u64,

    /// Memory limit of the policy module, in MiB
    #[arg(
        long,
        global = true,
        value_name = "MIB",
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=4096),
        env = "SIDEKILL_MEMORY_LIMIT_MIB",
        long_help = "Largest linear memory the policy module may use, in MiB (1 to 4096). \
                     A call that grows memory past it is stopped and reported."
    )]
    pub memory_limit_mib: u64,

    /// Most bytes of answers one command reads from the module in all, in MiB
    #[arg(
        long,
        global = true,
        value_name = "MIB",
        default_value_t = crate::policy::ANSWER_BUDGET >> 20,
        value_parser = clap::value_parser!(u64).range(1..=65_536),
        env = "SIDEKILL_ANSWER_BUDGET_MIB",
        long_help = "The whole command's budget for the policy's answers, in MiB (1 to \
                     65536; default 256). One answer is at most 16 MiB; `plan` of many \
                     documents and `policy diff` read one per document (two for diff), and \
                     their sum may not pass this. The command stops at the answer that \
                     passes it, reports the error `answer_budget` naming the documents left \
                     unplanned, and exits 2."
    )]
    pub answer_budget_mib: u64,

    /// Keep compiled modules in this directory across runs
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "SIDEKILL_CACHE_DIR",
        long_help = "Keep compiled policy modules in DIR (created with mode 0700 when \
                     missing), keyed by the module's sha256 and bound to it, so later runs \
                     skip compilation (about 2 s). DIR must be owned by the user sidekill \
                     runs as and writable by no one else, or the command fails: compiled \
                     code is loaded from it. Default for `plan`, `matrix`, `stop` and \
                     `policy`: $XDG_CACHE_HOME/sidekill, else ~/.cache/sidekill, with the \
                     same checks; when that folder cannot be used, a warning says why and \
                     the module is compiled in memory. `controller` and `demo` write no \
                     cache unless given one."
    )]
    pub cache_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan how the sidecars of each object's pods would be stopped
    #[command(long_about = "\
Plan how the sidecars of each object's pods would be stopped.

Each FILE (or `-` for standard input) holds YAML or JSON: one object or several
(`---`-separated YAML documents, or concatenated JSON objects). Pods, Jobs, CronJobs,
Deployments, ReplicaSets, StatefulSets, DaemonSets, Argo Workflows and WorkflowTemplates
are planned: one plan per pod the object stands for (a Workflow has one per template that
runs as a pod). A `List` is planned item by item. Objects of kinds the policy does not
plan (ServiceAccount, ConfigMap, Service, ...) and documents with no `kind` (such as a
kustomization.yaml) are skipped with a note, so the output of `helm template` or
`kustomize build`, or a repository's YAML files, are checked as they are. A YAML document with a syntax
error is reported with its line and column, and the other documents are still planned.

For each pod the answer shows every container's classification with its evidence, the
support-matrix row that applies, the plan (which containers are stopped, in what order,
with which commands and waits) and diagnostics with fixes.

Exit codes: 0 when no finding is at or above --fail-on (default `error`); 1 when one is
(a container that cannot be stopped, an error-level diagnostic, ...); 2 on an input error:
a file that cannot be read, a YAML or JSON error, an object the policy cannot plan, a
fact the policy refuses (every other object is still planned and shown).

In CI (README, \"Checking manifests in CI\"):
  helm template my-release ./chart | sidekill plan --format github -
  git ls-files -z '*.yaml' | xargs -0 sidekill plan --format sarif > sidekill.sarif

JSON output: {\"policy\": {name, version, sha256, origin, build},
              \"plans\": [{file, document, item?, line, object, answer}],
              \"skipped\": [{file, document, item?, line, object, reason}],
              \"errors\": [{file, document?, item?, error, message, code?, path?, line?,
                          column?}]}
where `document` and `item` count from 1 (`item`: the position in a `List`), `line` is
where the document starts, and `answer` is the policy module's answer, unchanged.

SARIF (2.1.0) and GitHub output: one result per diagnostic, at the file, line and
column of its container's `name:` when found, else of its document; info diagnostics
only in SARIF (level `note`); one `error` result per input error.")]
    Plan(PlanArgs),

    /// Print the support matrix: how each executor can stop each kind of sidecar
    #[command(long_about = "\
Print the support matrix: for each Argo executor, in words, what Argo itself can do
with sidecars declared in the Workflow, injected sidecars and native sidecars, and what
sidekill does with them, which is the same with every executor (the row `none`: Jobs and
plain pods, sidekill alone); then the Argo versions of each executor and the path of
each cell (the command, endpoint or component that does it). The matrix comes from the
policy module; `--format json` prints the module's answer unchanged, methods by their
names: {\"columns\": [...], \"rows\": [{executor, versions, declared: {method, path},
...}]}.")]
    Matrix(MatrixArgs),

    /// Inspect, test, compare, publish and roll back policy modules
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Stop the sidecars of one pod now, as its plan says
    #[cfg(feature = "configmap")]
    #[command(
        long_about = "\
Stop the sidecars of one pod now. The pod is fetched from the cluster and sent to the
policy module; its plan is carried out step by step: exec steps through pods/exec, HTTP
steps through pods/proxy (only with --pods-proxy), and after each signal the pod's status
is watched until the container terminates or the plan's wait runs out.

A sidecar with nothing usable inside (no shell, a PID 1 that ignores SIGTERM) is stopped
by image swap: its image is patched to the nop image (--nop-image), the kubelet stops it
from outside (SIGTERM, the grace period, SIGKILL) and starts the nop, which exits 0. On by
default when sidekill may patch pods in the namespace (asked with a
SelfSubjectAccessReview); --no-image-swap turns it off. A quit endpoint that only answers
callers inside the pod (Istio, Linkerd, cloud-sql-proxy, Vault) in an image with no client
for it needs the ephemeral quitter: opt in with --quitter-image and grant patch on
pods/ephemeralcontainers (deploy/ephemeral/). The policy picks the method per container
and says why (`method` in the report).

Each step done is recorded on the pod (annotation sidekill.dev/done-<container>, a JSON
list of step indices) and skipped by later runs, so no step ever runs twice; each step
and its result is also an Event on the pod. Transient API errors are retried.

A plan whose readiness is not `ready` (a main container still running) is not run:
the command says so and exits 1, unless --force. Even then, and whatever the policy module
says, no stop runs while a container the plan calls main is still running, nor a stop of
one of them: its steps are reported `refused` (and an Event), and not recorded.

After the plan the pod is watched (at most 10 s) for its end, shown next to the plan's
prediction: each sidecar's exit code against the predicted one, the pod's end (Succeeded,
Failed, or NeverCompletes when the kubelet restarted a sidecar, which is then reported
`restarted` and never stopped again) and, for a Job's pod, the Job's conditions (needs
get on jobs; without it the Job is shown as not visible).

JSON output: {namespace, name, outcome, readiness, policy, containers: [{container,
planned, method?, verdict, stoppedAfterMs?, exitCode?, predictedExit, predictedResult?,
exitMatches?, restartCount?, steps: [...], diagnostics}], diagnostics, prediction,
phase?, end?, endMatches?, job?: {name, visible, conditions, succeeded, failed, active,
note?}}",
        after_long_help = STOP_HELP
    )]
    Stop(StopArgs),

    /// Watch the controller stop sidecars on a local test cluster (needs root)
    #[cfg(feature = "demo")]
    #[command(long_about = demo::DEMO_ABOUT, after_long_help = demo::DEMO_HELP)]
    Demo(demo::DemoArgs),

    /// Watch batch pods and stop their sidecars once their main containers exit
    #[cfg(feature = "configmap")]
    #[command(long_about = controller::CONTROLLER_ABOUT, after_long_help = controller::CONTROLLER_HELP)]
    Controller(controller::ControllerArgs),

    /// Serve the browser debugger on a local port
    #[command(args = web_refused_args(), long_about = "\
Serve the browser debugger: a static page that runs the policy in the browser (the
wasm-pack web build) and shows, for a pasted Pod, Job or Workflow, each container's
classification with its evidence, the support matrix, the plan as a timeline and the
diagnostics; it also edits kill-cmd annotations live, simulates Istio, Linkerd or Kuma
injection, and compares two policy modules.

The page's files are embedded in the binary when `dist/web` (made by `web/build.sh`, or
$SIDEKILL_WEB_DIST) existed at build time; --dir serves a folder instead. The page makes
no network call. Prints the URL on the first line of standard output, then serves until
interrupted. Exit code 2 when there is nothing to serve or the port cannot be bound.")]
    Web(WebArgs),
}

/// The options every other command takes and `web` has no use for: the page runs the policy
/// in the browser and `web` prints only its URL. They are refused as unknown arguments
/// (an argument of the subcommand with the same name hides the global one), so that
/// `sidekill web --timeout-ms 5` does not look like it did something. Their environment
/// variables are not read.
fn web_refused_args() -> Vec<clap::Arg> {
    [
        ("format", "format"),
        ("timeout_ms", "timeout-ms"),
        ("memory_limit_mib", "memory-limit-mib"),
        ("answer_budget_mib", "answer-budget-mib"),
        ("cache_dir", "cache-dir"),
    ]
    .into_iter()
    .map(|(id, flag)| {
        clap::Arg::new(id).long(flag).hide(true).value_parser(
            clap::builder::UnknownArgumentValueParser::suggest(
                "`sidekill web` serves a page that runs the policy in the browser; it \
                     prints only the page's URL and loads no module itself",
            ),
        )
    })
    .collect()
}

/// Arguments of `sidekill web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 8080, env = "SIDEKILL_WEB_PORT")]
    pub port: u16,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Serve this folder (such as dist/web) instead of the embedded page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(feature = "configmap")]
const STOP_HELP: &str = "\
Exit codes:
  0  every sidecar stopped (or was already stopped, or the pod is gone, or dry run)
  1  something is left running (verdict `still running`), a sidecar was restarted by
     the kubelet, the pod ended Failed, or the plan is not ready
  2  error: bad arguments, no usable kubeconfig, an API error past the retries,
     a policy that cannot plan the pod

Environment:
  KUBECONFIG                  kubeconfig file (--kubeconfig); else in-cluster config
  SIDEKILL_POLICY             policy module (--policy)
  SIDEKILL_POLICY_SHA256      required sha256 of that module (--sha256)
  SIDEKILL_FORMAT             output format (--format)
  SIDEKILL_LOG                log level on stderr";

/// Options of `stop`.
#[cfg(feature = "configmap")]
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The pod, as NAMESPACE/POD
    #[arg(value_name = "NAMESPACE/POD", value_parser = parse_target)]
    pub target: (String, String),

    /// Kubeconfig file [default: in-cluster config]
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Print what would run, and run nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Run the plan even when its readiness is not `ready`
    #[arg(long)]
    pub force: bool,

    /// sidekill may use the pods/proxy subresource (for HTTP stop endpoints)
    #[arg(long)]
    pub pods_proxy: bool,

    /// Seconds to watch for termination after the last signal of a container
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub settle_seconds: u64,

    /// How the executor acts: stop methods and wait caps.
    #[command(flatten)]
    pub methods: ExecutorArgs,

    /// Which policy module to run.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// How the executor acts, for `stop` and `controller`: the stop methods that need nothing
/// inside the sidecar, and the cap on waits. What RBAC grants is asked per namespace (SelfSubjectAccessReview) and passed to the policy with
/// the images as `facts.stopMethods`; the policy chooses the method per container.
#[cfg(feature = "configmap")]
#[derive(Debug, Clone, Args)]
pub struct ExecutorArgs {
    /// The nop image for image swap
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = crate::exec::DEFAULT_NOP_IMAGE,
        long_help = "The nop image for image swap: a sidecar with no usable command inside \
                     (no shell, a PID 1 that ignores SIGTERM) is stopped by patching its \
                     image to the nop; the kubelet stops it from outside (SIGTERM, the grace \
                     period, SIGKILL) and starts the nop, which exits 0, as Tekton stops \
                     sidecars. Used when sidekill may patch pods in the namespace (deploy/ \
                     grants it) and the policy predicts the nop exits 0. The image must be \
                     pullable by the nodes: scripts/build-image builds it \
                     (dist/image/sidekill-nop-image.tar)."
    )]
    pub nop_image: String,

    /// Never swap images
    #[arg(long)]
    pub no_image_swap: bool,

    /// Allow the ephemeral quitter, with this image (opt-in)
    #[arg(
        long,
        value_name = "IMAGE",
        long_help = "Allow the ephemeral quitter, with this image (sidekill-quitter:<version>, \
                     built by scripts/build-image): an ephemeral container next to the \
                     sidecar, in its PID namespace and the pod's network, that calls a \
                     loopback-only quit endpoint (Istio, Linkerd, cloud-sql-proxy, Vault) or \
                     signals the sidecar's process by name. Needs patch on \
                     pods/ephemeralcontainers (deploy/ephemeral/); the container stays in the \
                     pod spec for good and admission may refuse it. Default: not used."
    )]
    pub quitter_image: Option<String>,

    /// The longest one wait of a plan may last, in seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long_help = "The longest one wait of a plan may last (the grace period before SIGKILL, \
                     the watch after a send), whatever the pod's terminationGracePeriodSeconds \
                     says: a pod's owner chooses that number, and a huge one would hold one of \
                     the executor's slots for as long."
    )]
    pub max_wait_seconds: u64,
}

#[cfg(feature = "configmap")]
impl ExecutorArgs {
    /// Sets the executor's images and caps.
    pub(crate) fn apply(&self, options: &mut crate::exec::Options) {
        options.nop_image = (!self.no_image_swap).then(|| self.nop_image.clone());
        options.quitter_image = self.quitter_image.clone();
        options.max_wait = std::time::Duration::from_secs(self.max_wait_seconds);
    }
}

#[cfg(feature = "configmap")]
pub(crate) fn parse_target(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_owned(), pod.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE/POD, got `{text}`")),
    }
}

/// Which findings make `plan` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    /// Never: exit 0 whatever the plans say (2 still for input errors).
    Never,
    /// A container that cannot be stopped (verdict `cannot-stop`).
    CannotStop,
    /// That, or an error-level diagnostic (such as a malformed kill-cmd).
    Error,
    /// Any of those, or a warning-level diagnostic.
    Warning,
}

/// The facts and policy options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Manifest files (YAML or JSON); `-` reads standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Exit 1 on findings at or above this level [default: error]
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        default_value_t = FailOn::Error,
        hide_default_value = true,
        env = "SIDEKILL_FAIL_ON",
        long_help = "Which findings make the exit code 1: `cannot-stop` (a container that \
                     cannot be stopped), `error` (that, or an error-level diagnostic, such \
                     as a malformed kill-cmd that makes the pod hang), `warning` (any of \
                     those, or a warning), or `never`. Default: error. Input errors (a file \
                     that cannot be read, a YAML error, an object the policy refuses) exit 2 \
                     whatever the level; skipped non-workload objects never fail."
    )]
    pub fail_on: FailOn,

    /// Which policy module to run.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Facts passed to the policy.
    #[command(flatten)]
    pub facts: FactsArgs,
}

/// Which policy module to run.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy module to run instead of the built-in one
    #[arg(
        long,
        value_name = "X.wasm",
        env = "SIDEKILL_POLICY",
        long_help = "Policy module (a raw-ABI .wasm file) to run instead of the one built \
                     into sidekill (which the name `embedded` stands for). It must pass the load checks of a hot swap: the wasm \
                     magic, no imports, the ABI's exports and their types, ABI major \
                     version 1. (`sidekill policy test` also runs the canary requests.)"
    )]
    pub policy: Option<PathBuf>,

    /// Refuse the module unless its sha256 is this (64 hex digits)
    #[arg(long, value_name = "HEX", env = "SIDEKILL_POLICY_SHA256", value_parser = parse_sha256)]
    pub sha256: Option<Sha256>,
}

/// Facts the host knows and manifests do not say; passed to the policy as they are.
#[derive(Debug, Args)]
pub struct FactsArgs {
    /// Argo executor: emissary, docker, k8sapi, kubelet, pns or none
    #[arg(
        long,
        value_name = "NAME",
        long_help = "The Argo executor that runs the pods: emissary, docker, k8sapi, \
                     kubelet, pns, or none (no Argo). Detected from each pod when absent. \
                     The policy module checks the name."
    )]
    pub executor: Option<String>,

    /// Kubernetes version of the cluster, 1.20 or later, such as 1.31 or v1.31.2
    #[arg(
        long,
        value_name = "VERSION",
        value_parser = parse_cluster_version,
        long_help = "The cluster's Kubernetes version: 1.MINOR with MINOR 20 or more, with \
                     an optional `v`, patch and suffix (1.31, v1.31.2, 1.31+, v1.31.2-eks-1). \
                     Older versions are refused: they are long out of support, and a typo \
                     such as 1.3 for 1.30 would change the plan. Native sidecars \
                     (initContainers with restartPolicy Always) need 1.29 or later: given \
                     an older version, the plan reports each native sidecar as an error \
                     (it runs as an ordinary init container and blocks the pod). Without \
                     this fact the plan assumes 1.29 or later."
    )]
    pub cluster_version: Option<String>,

    /// sidekill may use the pods/proxy subresource (for HTTP stop endpoints)
    #[arg(long)]
    pub pods_proxy: bool,

    /// Name of a main container, overriding detection (repeatable)
    ///
    /// In a pod no Argo runs, every other container no injector marked becomes a sidecar.
    #[arg(long = "main-container", value_name = "NAME")]
    pub main_containers: Vec<String>,

    /// Name of a container to treat as a sidecar (repeatable)
    #[arg(long = "sidecar", value_name = "NAME")]
    pub sidecars: Vec<String>,

    /// Plan image swap to this nop image (needs patch on pods)
    #[arg(
        long,
        value_name = "IMAGE",
        long_help = "Allow image swap, with this nop image: a sidecar is stopped by patching \
                     its image to the nop, which the kubelet stops from outside and which \
                     exits 0. Needs patch on pods. Passed as facts.stopMethods.imageSwap. \
                     Default: not allowed."
    )]
    pub nop_image: Option<String>,

    /// Plan the ephemeral quitter with this image (opt-in)
    #[arg(
        long,
        value_name = "IMAGE",
        long_help = "Allow the ephemeral quitter, with this image: an ephemeral container \
                     that calls a loopback-only quit endpoint or signals the sidecar by \
                     name. Needs pods/ephemeralcontainers; the container stays in the pod \
                     spec and admission may refuse it. Passed as \
                     facts.stopMethods.ephemeral. Default: not allowed."
    )]
    pub quitter_image: Option<String>,

    /// Plan the pods as INJECTOR would inject them (repeatable)
    #[arg(
        long,
        value_name = "INJECTOR[:native]",
        long_help = "Plan the pods as this injector would inject them, as when their \
                     namespace is injected: istio, linkerd, kuma or vault, with :native for \
                     the proxy as a native sidecar (default :classic, a regular container). \
                     A pod that opts out or already has the injector's containers is left \
                     alone. Passed as facts.inject."
    )]
    pub inject: Vec<String>,
}

/// Options of `matrix`.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Which policy module to run.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `sidekill policy ...`
///
/// Wherever a module file is expected, the name `embedded` stands for the module built
/// into this binary (`./embedded` is a file of that name).
#[derive(Debug, Subcommand)]
#[command(after_long_help = "\
Wherever a module file is expected, the name `embedded` stands for the module built into
this binary: `sidekill policy inspect embedded`, `sidekill policy diff embedded
dist/raw/sidekill_policy.wasm manifests.yaml` (a file named embedded: ./embedded).")]
pub enum PolicyCommand {
    /// Show a module's ABI version, identity, build, imports, exports, size and sha256
    #[command(
        visible_alias = "info",
        long_about = "\
Show a module's size, sha256, imports and exports, and, when it loads, its ABI version
and identity (name, version, features, presets hash). A module that would be refused
(an import, a missing export, another ABI version, ...) is shown with the reason, and
the exit code is 1.

Every build of one source has the same identity (`sidekill-policy 0.1.0`): the embedded
module (opt-level 3, for speed) and dist/raw/sidekill_policy.wasm (opt-level z, for
size) differ only in their sha256. `build` says which one a module is: for `embedded`,
how it was built; for a file, whether it is the embedded module's bytes."
    )]
    Inspect {
        /// The module: a file, or `embedded`
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
    },

    /// Compare the plans of two modules on the same manifests
    #[command(long_about = "\
Plan every object of FILES with OLD and with NEW, and show which answers differ and how,
as JSON paths (`$.ok.subjects[0].plan.stops[0].verdict: \"may-stop\" -> \"stops\"`).
An error answer, or a call that fails in one module and not the other, is a difference
too. Exit code 1 when anything differs, 0 when every answer is the same.")]
    Diff {
        /// The module in service: a file, or `embedded`
        #[arg(value_name = "OLD.wasm")]
        old: PathBuf,
        /// The candidate: a file, or `embedded`
        #[arg(value_name = "NEW.wasm")]
        new: PathBuf,
        /// Manifest files (YAML or JSON); `-` reads standard input
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Facts passed to the policy.
        #[command(flatten)]
        facts: FactsArgs,
    },

    /// Run the checks a hot swap runs before a module goes live, or a corpus of modules
    #[command(long_about = "\
Run the checks a hot swap runs before a module goes live: the sha256 pin (with
--sha256), loading (wasm magic, compilation, no imports, the ABI's exports and their
types, ABI major version 1, instantiation under the limits), then every canary request
(no trap, no deadline, an answer that parses and has the expected shape). Exit code 0
when the module would be accepted, 1 when it would be refused.

With --corpus DIR instead of X.wasm: run every module DIR/corpus.json lists (the
hostile-module corpus is host/tests/modules) through the path every module takes:
read (16 MiB at most), load, plan the manifest's `request`, and check the plan with the
executor's guard against the request's pod. Each module's outcome (refused-at-load,
call-fails, not-a-plan, steps-refused or benign, with the error's name for the first
two) is compared with the one the manifest gives it. Exit code 0 when every module did
what the manifest says, 1 when one did not, 2 when the manifest cannot be read.

  sidekill policy test --corpus host/tests/modules

JSON output with --corpus: {corpus, total, matched, modules: [{file, expected: {outcome,
error?}, actual: {outcome, error?}, detail, matches}]}")]
    Test {
        /// The module
        #[arg(value_name = "X.wasm")]
        #[cfg_attr(feature = "configmap", arg(required_unless_present = "corpus"))]
        #[cfg_attr(not(feature = "configmap"), arg(required = true))]
        module: Option<PathBuf>,
        /// Refuse the module unless its sha256 is this (64 hex digits)
        #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
        sha256: Option<Sha256>,
        /// Run the corpus in DIR (DIR/corpus.json) instead of one module
        #[cfg(feature = "configmap")]
        #[arg(long, value_name = "DIR", conflicts_with_all = ["module", "sha256"])]
        corpus: Option<PathBuf>,
    },

    /// Put a module live in the ConfigMap a controller watches, keeping the old one
    #[cfg(feature = "configmap")]
    #[command(long_about = "\
Put a policy module live in the ConfigMap a running controller watches (its ConfigMap
source), keeping the module it replaces for `sidekill policy rollback`.

X.wasm is first checked exactly as a hot swap checks it: loading (wasm magic, no
imports, the ABI's exports and their types, ABI major version 1, under --timeout-ms and
--memory-limit-mib), then every canary request. A module that would be refused is not
written. Then ConfigMap NAMESPACE/NAME is read and written: the module goes under
binaryData[KEY], the module it replaces under binaryData[KEY.previous], and the
annotations sidekill.dev/KEY and sidekill.dev/KEY.previous record each module's name,
version, sha256 and size as JSON. The ConfigMap is created when missing; a KEY that
already holds these bytes is left alone. The controller swaps to the new module after
its own checks.

The write is conditional on the resourceVersion that was read. When someone else
changed the ConfigMap meanwhile (another push), it is read again and the push retried,
at most 5 times: the version the other writer made live becomes the previous one, so no
version is lost. Both modules must fit in the API server's 1 MiB ConfigMap limit.
RBAC: get, create and update on configmaps in NAMESPACE.

Exit codes: 0 pushed (or already live); 1 the module would be refused, nothing was
written; 2 error: an unreadable file, no usable kubeconfig, an API error, a ConfigMap
that changed at every attempt.

JSON output: {configmap, key, previousKey, action: created|pushed|unchanged,
              live: {name, version, sha256, size}, previous: {...} | null,
              resourceVersion, attempts}
or, refused: {configmap, key, previousKey, action: \"refused\",
              module: {file, sha256, size}, error, message}")]
    Push {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// Its signature, written under KEY.sig [default: X.wasm.sig when it exists]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The ConfigMap.
        #[command(flatten)]
        target: policy_cmd::ConfigMapArgs,
    },

    /// Make the previous module live again in a ConfigMap, after checking it
    #[cfg(feature = "configmap")]
    #[command(long_about = "\
Swap the live and the previous modules of the ConfigMap a running controller watches:
binaryData[KEY.previous] (kept by `sidekill policy push`) goes back under KEY, and the
module it replaces under KEY.previous, with their annotations. Running it twice returns
to where it started.

The previous module is first checked exactly as a hot swap checks it (loading, then
every canary request); one that would be refused is not written. The write is
conditional on the resourceVersion that was read, and is not retried: when someone else
changed the ConfigMap meanwhile, nothing is written and the command fails, so a push it
did not see is never rolled back. RBAC: get and update on configmaps in NAMESPACE.

Exit codes: 0 rolled back; 1 the previous module would be refused, nothing was written;
2 error: no such ConfigMap, no KEY.previous in it, no usable kubeconfig, an API error,
a ConfigMap changed meanwhile.

JSON output: {configmap, key, previousKey, action: \"rolled-back\",
              live: {name, version, sha256, size}, previous: {...} | null,
              resourceVersion, attempts}
or, refused: {configmap, key, previousKey, action: \"refused\", module: {key},
              error, message}")]
    Rollback {
        /// The ConfigMap.
        #[command(flatten)]
        target: policy_cmd::ConfigMapArgs,
    },

    /// Module signatures: keygen, sign, verify.
    #[command(flatten)]
    Sign(SignCommand),
}

/// `sidekill policy keygen | sign | verify`: module signatures (see `crate::signature`).
#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// Make an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM) and PREFIX.pub
    #[command(long_about = "\
Make an ECDSA P-256 key pair, the kind `cosign generate-key-pair` makes: PREFIX.key, the
private key as unencrypted PKCS#8 PEM (mode 0600: keep it out of the cluster), and
PREFIX.pub, the public key as SubjectPublicKeyInfo PEM, which the controller trusts with
--trusted-key (mounted from a Secret). Existing files are not overwritten.")]
    Keygen {
        /// Where to write PREFIX.key and PREFIX.pub
        #[arg(long, value_name = "PREFIX", default_value = "sidekill-policy")]
        out: PathBuf,
    },

    /// Sign a module: writes X.wasm.sig (base64 ECDSA P-256/SHA-256, as cosign)
    #[command(long_about = "\
Sign a module with a PKCS#8 PEM private key (ECDSA P-256 or Ed25519; from `sidekill policy
keygen` or `openssl genpkey`). The signature is base64 of the ASN.1 DER ECDSA signature
over the module's bytes with SHA-256, the format of `cosign sign-blob`, so `cosign
verify-blob --key PREFIX.pub --signature X.wasm.sig --insecure-ignore-tlog=true X.wasm`
accepts it. cosign's own encrypted private keys are not read: sign with cosign itself
then (its signatures verify here).")]
    Sign {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// The private key (PKCS#8 PEM)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the signature [default: X.wasm.sig]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },

    /// Check a module's signature with public keys, as the controller will
    #[command(long_about = "\
Check a module's signature (base64, X.wasm.sig by default; `cosign sign-blob` output
works) with one or more public keys (SubjectPublicKeyInfo PEM: `sidekill policy keygen`,
`cosign generate-key-pair`). Exit code 0 when a key verifies it, 1 when none does, 2 when
a file cannot be read.")]
    Verify {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// A trusted public key (PEM; repeatable)
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// The signature [default: X.wasm.sig]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
}

/// The oldest Kubernetes minor version `--cluster-version` accepts.
const OLDEST_MINOR: u32 = 20;

/// Checks `--cluster-version` (`1.31`, `v1.31.2`, `1.31+`, `v1.31.2-eks-1`) and passes it
/// on unchanged: the policy reads it.
fn parse_cluster_version(text: &str) -> std::result::Result<String, String> {
    let refuse = || {
        format!(
            "expected a Kubernetes version 1.{OLDEST_MINOR} or later, as MAJOR.MINOR or \
             vMAJOR.MINOR.PATCH (such as 1.31 or v1.31.2)"
        )
    };
    let bare = text.strip_prefix('v').unwrap_or(text);
    let mut parts = bare.splitn(3, '.');
    let major = parts.next().ok_or_else(refuse)?;
    let minor = parts.next().ok_or_else(refuse)?;
    let digits = minor.trim_end_matches('+');
    if major != "1" || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    match digits.parse::<u32>() {
        Ok(minor) if minor >= OLDEST_MINOR => Ok(text.to_string()),
        Ok(minor) => Err(format!(
            "Kubernetes 1.{minor} is older than 1.{OLDEST_MINOR}, the oldest version sidekill \
             plans for{}",
            if (2..10).contains(&minor) {
                format!(" (did you mean 1.{minor}0?)")
            } else {
                String::new()
            }
        )),
        Err(_) => Err(refuse()),
    }
}

fn parse_sha256(text: &str) -> std::result::Result<Sha256, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// Runs a parsed command line, writing to standard output.
///
/// # Errors
/// An error that stops the command (exit code 2): an unreadable module, a module that does
/// not load, an output that cannot be written.
pub fn run(cli: &Cli) -> Result<Exit> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let format = match cli.global.format {
        Format::Auto if terminal => Format::Table,
        Format::Auto => Format::Json,
        other => other,
    };
    if matches!(format, Format::Sarif | Format::Github) && !matches!(cli.command, Command::Plan(_))
    {
        let name = if format == Format::Sarif {
            "sarif"
        } else {
            "github"
        };
        eprintln!(
            "sidekill: --format {name} is an output of `sidekill plan` only; this command \
             writes table or json"
        );
        return Ok(Exit::Error);
    }
    let mut ctx = Context {
        json: format == Format::Json,
        format,
        style: Style {
            color: match cli.global.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    terminal
                        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                        && std::env::var("TERM").map_or(true, |t| t != "dumb")
                }
            },
        },
        out: Box::new(stdout.lock()),
        err_style: Style {
            color: cli.global.color == Color::Always
                || (cli.global.color == Color::Auto && std::io::stderr().is_terminal()),
        },
        global: &cli.global,
    };
    match &cli.command {
        Command::Plan(args) => plan::run(&mut ctx, args),
        Command::Matrix(args) => {
            let (policy, _) = load_policy(&cli.global, &args.policy)?;
            let answer = policy.matrix()?;
            if ctx.json {
                ctx.json_out(&answer)?;
            } else {
                let text = crate::render::matrix(&answer, &ctx.style);
                ctx.print(&text)?;
            }
            Ok(Exit::Ok)
        }
        Command::Policy(PolicyCommand::Inspect { module }) => policy_cmd::inspect(&mut ctx, module),
        #[cfg(feature = "configmap")]
        Command::Policy(PolicyCommand::Test {
            corpus: Some(dir), ..
        }) => policy_cmd::corpus(&mut ctx, dir),
        Command::Policy(PolicyCommand::Test {
            module: Some(module),
            sha256,
            ..
        }) => policy_cmd::test(&mut ctx, module, sha256.as_ref()),
        // clap requires X.wasm unless --corpus is given.
        Command::Policy(PolicyCommand::Test { .. }) => Ok(Exit::Error),
        Command::Policy(PolicyCommand::Diff {
            old,
            new,
            files,
            facts,
        }) => policy_cmd::diff(&mut ctx, old, new, files, facts),
        #[cfg(feature = "configmap")]
        Command::Policy(PolicyCommand::Push {
            module,
            signature,
            target,
        }) => policy_cmd::push(&mut ctx, module, signature.as_deref(), target),
        Command::Policy(PolicyCommand::Sign(SignCommand::Keygen { out })) => {
            policy_cmd::keygen(&mut ctx, out)
        }
        Command::Policy(PolicyCommand::Sign(SignCommand::Sign { module, key, out })) => {
            policy_cmd::sign(&mut ctx, module, key, out.as_deref())
        }
        Command::Policy(PolicyCommand::Sign(SignCommand::Verify {
            module,
            keys,
            signature,
        })) => policy_cmd::verify(&mut ctx, module, keys, signature.as_deref()),
        #[cfg(feature = "configmap")]
        Command::Policy(PolicyCommand::Rollback { target }) => {
            policy_cmd::rollback(&mut ctx, target)
        }
        #[cfg(feature = "configmap")]
        Command::Stop(args) => stop::run(&mut ctx, args),
        #[cfg(feature = "configmap")]
        Command::Controller(args) => controller::run(&mut ctx, args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&mut ctx, args),
        Command::Web(args) => web(&mut ctx, args),
    }
}

fn web(ctx: &mut Context<'_>, args: &WebArgs) -> Result<Exit> {
    let site = match &args.dir {
        Some(dir) => crate::web::Site::Folder(dir.clone()),
        None => crate::web::Site::Embedded,
    };
    let address = std::net::SocketAddr::new(args.bind, args.port);
    let listener =
        std::net::TcpListener::bind(address).map_err(|e| Error::io(address.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(address.to_string(), e))?;
    writeln!(ctx.out, "http://{local}/").map_err(|e| Error::io("standard output", e))?;
    ctx.out
        .flush()
        .map_err(|e| Error::io("standard output", e))?;
    crate::web::serve(listener, site);
    Ok(Exit::Ok)
}

/// What every command writes with.
pub(crate) struct Context<'a> {
    pub(crate) json: bool,
    /// The output format, `auto` resolved.
    pub(crate) format: Format,
    pub(crate) style: Style,
    pub(crate) err_style: Style,
    pub(crate) out: Box<dyn Write + 'a>,
    pub(crate) global: &'a Global,
}

impl Context<'_> {
    pub(crate) fn print(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io("standard output", e))
    }

    pub(crate) fn json_out(&mut self, value: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        text.push('\n');
        self.print(&text)
    }

    /// An error line on standard error, prefixed `error:` (in red on a terminal).
    pub(crate) fn error(&self, text: &str) {
        eprintln!("{} {text}", self.err_style.red("error:"));
    }

    /// The runtime of a command run by a person or a CI job: with the default disk cache
    /// when `--cache-dir` is not given ([`cli_runtime`]).
    pub(crate) fn runtime(&self) -> Result<Runtime> {
        cli_runtime(self.global)
    }
}

/// The default compiled-module cache: `$XDG_CACHE_HOME/sidekill` when XDG_CACHE_HOME is an
/// absolute path, else `$HOME/.cache/sidekill`; `None` without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|dir| dir.join("sidekill"))
}

/// The runtime for a one-shot command (`plan`, `matrix`, `stop`, `policy`): as [`runtime`],
/// and without `--cache-dir` the [`default_cache_dir`], with the same checks (owned by this
/// user, writable by no one else, entries bound to the module's sha256 and the engine).
/// A default folder that cannot be created or fails the checks costs only the compilation:
/// a warning says why, and the module is compiled in memory.
///
/// # Errors
/// As [`runtime`].
pub fn cli_runtime(global: &Global) -> Result<Runtime> {
    if global.cache_dir.is_some() {
        return runtime(global);
    }
    let Some(dir) = default_cache_dir() else {
        return runtime(global);
    };
    match Runtime::new(config(global, Some(dir.clone()))) {
        Err(e @ (Error::UnsafeCache { .. } | Error::Io { .. })) => {
            tracing::warn!(
                cache = %dir.display(),
                error = %e.report(),
                "not using the default module cache (give --cache-dir to choose another)"
            );
            runtime(global)
        }
        other => other,
    }
}

/// The runtime for the global options.
///
/// # Errors
/// As [`Runtime::new`].
pub fn runtime(global: &Global) -> Result<Runtime> {
    Runtime::new(config(global, global.cache_dir.clone()))
}

fn config(global: &Global, cache_dir: Option<PathBuf>) -> Config {
    Config {
        limits: Limits {
            timeout: Duration::from_millis(global.timeout_ms),
            memory: usize::try_from(global.memory_limit_mib << 20).unwrap_or(usize::MAX),
            ..Limits::default()
        },
        cache_dir,
        ..Config::default()
    }
}

/// Reads a module file, refusing one over 16 MiB without reading it whole. The name
/// `embedded` (no folder) is the module built into this binary; `./embedded` is a file.
pub(crate) fn read_module(path: &std::path::Path) -> Result<Vec<u8>> {
    if is_embedded(path) {
        return Ok(embedded::BYTES.to_vec());
    }
    crate::limits::read_module(path)
}

/// Whether a module argument names the embedded module.
pub(crate) fn is_embedded(path: &std::path::Path) -> bool {
    path.as_os_str() == embedded::ORIGIN
}

/// Where a module comes from, for people: `embedded (cargo profile wasm, opt-level 3, ...)`
/// or the file's path.
pub(crate) fn module_origin(path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) if !is_embedded(path) => path.display().to_string(),
        _ => format!("{} ({})", embedded::ORIGIN, embedded::BUILD),
    }
}

/// The module `--policy` names, or the embedded one, checked against `--sha256`.
/// Returns the policy and where it came from.
///
/// # Errors
/// [`Error::Io`], [`Error::Pin`] or a load error.
pub fn load_policy(global: &Global, args: &PolicyArgs) -> Result<(Policy, String)> {
    let runtime = cli_runtime(global)?;
    let (bytes, origin) = match &args.policy {
        Some(path) if !is_embedded(path) => (read_module(path)?, path.display().to_string()),
        _ => (embedded::BYTES.to_vec(), embedded::ORIGIN.to_string()),
    };
    if let Some(expected) = &args.sha256 {
        let found = Sha256::of(&bytes);
        if found != *expected {
            return Err(Error::Pin {
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
    }
    let policy = runtime.load(&bytes)?;
    Ok((policy, origin))
}

/// The async runtime of the commands that talk to a cluster (`stop`, `controller`, `demo`,
/// `policy push` and `rollback`): two workers (the work is mostly waiting on the API
/// server), IO and timers.
fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sha256_is_validated_while_parsing() {
        let err =
            Cli::try_parse_from(["sidekill", "plan", "--sha256", "xyz", "f.yaml"]).unwrap_err();
        assert!(err.to_string().contains("not a sha256 digest"), "{err}");
    }
}
