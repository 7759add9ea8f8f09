//! `sidekill controller`: watch batch pods and stop their sidecars, with a hot-swapped
//! policy and health endpoints.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::stop::{boxed, client_counted};
use super::{runtime, Context, Exit, PolicyArgs};
use crate::controller::{self, Controller};
use crate::error::{Error, Result};
use crate::exec::{self, Executor};
use crate::signature::SignatureError;
use crate::source::configmap::ConfigMapSource;
use crate::source::file::FileWatcher;
use crate::{embedded, PolicyStore};

pub(super) const CONTROLLER_ABOUT: &str = "\
Watch batch pods and stop their sidecars as soon as every main container has terminated.

Pods are watched with kube's runtime watcher (re-list after 410 Gone, bookmarks, retries
with backoff), one watch per --selector: by default Argo workflow pods
(workflows.argoproj.io/workflow) and Job pods (batch.kubernetes.io/job-name). Each pod
event is put to the policy module: when the plan is ready and a sidecar still runs with
steps not yet done, the pod is claimed (annotation sidekill.dev/claim, written with the
pod's resourceVersion so two controllers never both win) and its plan carried out as
`sidekill stop` would: exec steps through pods/exec, HTTP steps through pods/proxy (only
with --pods-proxy), each step recorded on the pod (sidekill.dev/done-<container>) so no
step ever runs twice, even across restarts, and reported as an Event. A failed pod is
retried with backoff.

The policy is hot-swapped while the controller runs: --policy FILE is polled for changes;
--policy-configmap NAMESPACE/NAME watches a ConfigMap's binaryData (key --policy-key).
A module from outside is code from outside: it goes live only when its sha256 is pinned
(--pin, --sha256), or its signature (FILE.sig beside the file, or the ConfigMap key
KEY.sig; `sidekill policy sign`, or `cosign sign-blob`) verifies with a --trusted-key,
or --allow-unsigned is given; then the load checks and the canary self-test must pass. A
refused version is logged and the live one keeps serving. The embedded module is trusted
as part of the binary. Plans in flight finish on the version they started with.

Endpoints on --listen: /healthz (the event loop turns), /readyz (every watch has listed
once, and none has failed for 30 s without a success: an outage or a permission taken
away makes the controller not ready, with the error), /metrics (Prometheus text: plans, containers, steps and failures by kind, watch
errors, pods in flight, policy identity, switches and refusals).

The first line of standard output is the endpoints' URL; logs go to standard error
(SIDEKILL_LOG, default info). SIGTERM or Ctrl-C stops watching and waits up to
--drain-seconds for plans in flight.";

pub(super) const CONTROLLER_HELP: &str = "\
Exit codes:
  0  stopped by SIGTERM or Ctrl-C
  2  error: bad arguments, no usable kubeconfig, the policy does not load, the listen
     address cannot be bound

RBAC (deploy/base/rbac.yaml): pods get/list/watch/patch, pods/exec get and create (the
WebSocket exec needs both), events create,
configmaps get/list/watch (for --policy-configmap); pods/proxy get only with
--pods-proxy (deploy/pods-proxy).

Environment:
  KUBECONFIG                  kubeconfig file (--kubeconfig); else in-cluster config
  SIDEKILL_POLICY             policy module file, watched (--policy)
  SIDEKILL_POLICY_SHA256      a pinned sha256 (--sha256; more with --pin)
  SIDEKILL_TRUSTED_KEYS       trusted public key files, comma-separated (--trusted-key)
  SIDEKILL_IDENTITY           name in claims (--identity)
  SIDEKILL_LISTEN             endpoints' address (--listen)
  SIDEKILL_LOG                log level on stderr (default info)";

/// Options of `sidekill controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Kubeconfig file [default: in-cluster config]
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch only this namespace [default: every namespace]
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Label selector of the pods to watch (repeatable; one watch each)
    #[arg(
        long = "selector",
        short = 'l',
        value_name = "SELECTOR",
        long_help = "Label selector of the pods to watch, such as \
                     `workflows.argoproj.io/workflow` or `team=batch,job-name`. Repeatable: \
                     one watch per selector. Default: `workflows.argoproj.io/workflow` and \
                     `batch.kubernetes.io/job-name` (use `job-name` before Kubernetes 1.27)."
    )]
    pub selectors: Vec<String>,

    /// Watch every pod (no label selector)
    #[arg(long, conflicts_with = "selectors")]
    pub all_pods: bool,

    /// Which policy module to start with, and the pin every version must match.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Hot-swap the policy from this ConfigMap's binaryData
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = super::parse_target, conflicts_with = "policy")]
    pub policy_configmap: Option<(String, String)>,

    /// The binaryData key of --policy-configmap
    #[arg(long, value_name = "KEY", default_value = "policy.wasm")]
    pub policy_key: String,

    /// Trust modules signed by this public key (PEM; repeatable)
    #[arg(
        long = "trusted-key",
        value_name = "FILE",
        env = "SIDEKILL_TRUSTED_KEYS",
        value_delimiter = ',',
        long_help = "A public key (SubjectPublicKeyInfo PEM, ECDSA P-256 or Ed25519: \
                     `sidekill policy keygen`, `cosign generate-key-pair`) whose signatures \
                     let a module go live. Repeatable. Mount it from a Secret: never put it \
                     in the policy ConfigMap, whose writers it guards against."
    )]
    pub trusted_keys: Vec<PathBuf>,

    /// Let this module sha256 go live unsigned (repeatable; with hot swap)
    #[arg(long = "pin", value_name = "HEX", value_parser = super::parse_sha256)]
    pub pins: Vec<crate::Sha256>,

    /// Let modules that are neither signed nor pinned go live (not recommended)
    #[arg(
        long,
        long_help = "Let a module go live without a signature or a pin. Anyone who can \
                     write the policy ConfigMap (or the --policy file) then chooses what \
                     sidekill runs in every watched pod. Ignored when a pin is given. A \
                     signature that does not verify is refused even so."
    )]
    pub allow_unsigned: bool,

    /// Seconds between two looks at the --policy file
    #[arg(long, value_name = "SECONDS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_seconds: u64,

    /// Address of /healthz, /readyz and /metrics; port 0 picks a free one
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:8080",
        env = "SIDEKILL_LISTEN"
    )]
    pub listen: SocketAddr,

    /// This controller's name in pod claims [default: sidekill-<hostname>-<pid>]
    #[arg(long, value_name = "NAME", env = "SIDEKILL_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds a claim on a pod lasts without renewal
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub claim_seconds: u64,

    /// Pods handled at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,

    /// sidekill may use the pods/proxy subresource (for HTTP stop endpoints)
    #[arg(long)]
    pub pods_proxy: bool,

    /// How the executor acts: stop methods and wait caps.
    #[command(flatten)]
    pub methods: super::ExecutorArgs,

    /// Log what would run, and run nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Seconds to watch for termination after the last signal of a container
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub settle_seconds: u64,

    /// Which Events to record on pods
    #[arg(
        long,
        value_enum,
        value_name = "WHICH",
        default_value = "warnings",
        long_help = "Which Events to record on pods. `warnings` (the default): a step \
                     refused, a sidecar restarted or left running, a pod whose end is not the \
                     one predicted. `all` adds a Normal Event per step sent, per sidecar \
                     stopped and per pod outcome: three more API requests per pod, which a \
                     large cluster's API server and etcd pay for. Either way each step done \
                     is recorded on the pod (sidekill.dev/done-<container>) and counted in \
                     /metrics."
    )]
    pub events: exec::Events,

    /// Seconds to wait for plans in flight after SIGTERM
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
}

/// Where the controller's policy versions come from.
pub(crate) enum PolicySource {
    /// The embedded module only.
    Embedded,
    /// A file, polled.
    File(PathBuf, Duration),
    /// A ConfigMap key, watched.
    ConfigMap {
        namespace: String,
        name: String,
        key: String,
    },
}

/// Everything a running controller needs, set up; shared with `sidekill demo`.
pub(crate) struct Setup {
    pub(crate) client: kube::Client,
    pub(crate) store: Arc<PolicyStore>,
    pub(crate) source: PolicySource,
    pub(crate) executor: exec::Options,
    pub(crate) controller: controller::Options,
    pub(crate) listen: SocketAddr,
}

/// A controller started by [`start`]: its handle and where its endpoints are.
pub(crate) struct Started {
    pub(crate) controller: Arc<Controller>,
    pub(crate) address: SocketAddr,
    _file_watcher: Option<FileWatcher>,
}

/// Starts the policy source and the endpoints, and builds the controller (not yet run).
pub(crate) fn start(setup: Setup) -> Result<Started> {
    let Setup {
        client,
        store,
        source,
        executor,
        controller: options,
        listen,
    } = setup;
    let file_watcher = match source {
        PolicySource::Embedded => None,
        PolicySource::File(path, every) => {
            Some(FileWatcher::spawn(Arc::clone(&store), path, every)?)
        }
        PolicySource::ConfigMap {
            namespace,
            name,
            key,
        } => {
            let source = ConfigMapSource::new(client.clone(), &namespace, &name, &key);
            let store = Arc::clone(&store);
            tokio::spawn(async move { source.run(store).await });
            None
        }
    };
    let executor = Executor::new(client.clone(), Arc::clone(&store) as _, executor);
    let controller = Controller::new(client, executor, options);
    let listener =
        std::net::TcpListener::bind(listen).map_err(|e| Error::io(listen.to_string(), e))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::io(listen.to_string(), e))?;
    controller::metrics::spawn_server(
        listener,
        controller.metrics(),
        store,
        Duration::from_secs(60),
    )
    .map_err(|e| Error::io("sidekill-health thread", e))?;
    Ok(Started {
        controller,
        address,
        _file_watcher: file_watcher,
    })
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub(super) fn run(ctx: &mut Context<'_>, args: &ControllerArgs) -> Result<Exit> {
    let runtime = runtime(ctx.global)?;
    let (bytes, signature, origin) = match &args.policy.policy {
        Some(path) => (
            super::read_module(path)?,
            crate::source::file::read_signature(path)?,
            path.display().to_string(),
        ),
        None => (embedded::BYTES.to_vec(), None, embedded::ORIGIN.to_string()),
    };
    let trust = crate::signature::Trust {
        keys: args
            .trusted_keys
            .iter()
            .map(|path| crate::signature::PublicKey::from_file(path))
            .collect::<Result<_>>()?,
        pins: args
            .policy
            .sha256
            .iter()
            .chain(&args.pins)
            .copied()
            .collect(),
        allow_unsigned: args.allow_unsigned,
    };
    let hot_swap = args.policy.policy.is_some() || args.policy_configmap.is_some();
    if hot_swap && trust.keys.is_empty() && trust.pins.is_empty() && !trust.allow_unsigned {
        return Err(Error::from(SignatureError::KeyFormat {
            what: "--policy / --policy-configmap".into(),
            reason: "a module from outside needs --trusted-key (signed modules), --pin \
                     (modules by sha256) or, knowingly, --allow-unsigned"
                .into(),
        }));
    }
    let store = Arc::new(PolicyStore::with_trust(
        runtime,
        trust,
        &bytes,
        signature.as_deref(),
        &origin,
    )?);
    let source = match (&args.policy.policy, &args.policy_configmap) {
        (Some(path), _) => PolicySource::File(path.clone(), Duration::from_secs(args.poll_seconds)),
        (None, Some((namespace, name))) => PolicySource::ConfigMap {
            namespace: namespace.clone(),
            name: name.clone(),
            key: args.policy_key.clone(),
        },
        (None, None) => PolicySource::Embedded,
    };
    let mut options = controller::Options {
        namespace: args.namespace.clone(),
        claim_ttl: Duration::from_secs(args.claim_seconds),
        ..controller::Options::default()
    };
    if args.all_pods {
        options.selectors.clear();
    } else if !args.selectors.is_empty() {
        options.selectors = args.selectors.clone();
    }
    if let Some(identity) = &args.identity {
        options.identity = identity.clone();
    }
    let mut executor = exec::Options {
        dry_run: args.dry_run,
        pods_proxy: args.pods_proxy,
        settle: Duration::from_secs(args.settle_seconds),
        concurrency: usize::try_from(args.concurrency).unwrap_or(8),
        events: args.events,
        ..exec::Options::default()
    };
    args.methods.apply(&mut executor);
    executor.scope = args.namespace.iter().cloned().collect();
    let rt = crate::cli::async_runtime()?;
    rt.block_on(async {
        let client = client_counted(args.kubeconfig.as_deref(), &options.api_requests)
            .await
            .map_err(boxed)?;
        let started = start(Setup {
            client,
            store,
            source,
            executor,
            controller: options,
            listen: args.listen,
        })?;
        writeln!(ctx.out, "http://{}/", started.address)
            .and_then(|()| ctx.out.flush())
            .map_err(|e| Error::io("standard output", e))?;
        Arc::clone(&started.controller)
            .run(terminated(), Duration::from_secs(args.drain_seconds))
            .await
            .map_err(boxed)
    })?;
    Ok(Exit::Ok)
}
