//! `sidekill stop NAMESPACE/POD`: carry out one pod's plan now.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{load_policy, Context, Exit, PolicyArgs};
use clap::Args;

use crate::answer::Diagnostic;
use crate::error::{Error, Result};
use crate::exec::{self, Executor, Options, Outcome, PodReport, Verdict};

pub(super) const ABOUT: &str = "\
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
note?}}";

pub(super) const HELP: &str = "\
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

impl ExecutorArgs {
    /// Sets the executor's images and caps.
    pub(crate) fn apply(&self, options: &mut crate::exec::Options) {
        options.nop_image = (!self.no_image_swap).then(|| self.nop_image.clone());
        options.quitter_image = self.quitter_image.clone();
        options.max_wait = std::time::Duration::from_secs(self.max_wait_seconds);
    }
}

pub(crate) fn parse_target(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_owned(), pod.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE/POD, got `{text}`")),
    }
}

/// A kube client from `--kubeconfig` (or `KUBECONFIG`), else the in-cluster config.
///
/// # Errors
/// [`exec::Error::Config`] when the kubeconfig cannot be read or used.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> exec::Result<kube::Client> {
    let config = config(kubeconfig).await?;
    kube::Client::try_from(config).map_err(|e| exec::Error::Config {
        message: e.to_string(),
    })
}

/// The client configuration from `kubeconfig`, or inferred (in-cluster, `KUBECONFIG`).
async fn config(kubeconfig: Option<&std::path::Path>) -> exec::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|e| exec::Error::Config {
                    message: format!("{}: {e}", path.display()),
                })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| exec::Error::Config {
                    message: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| exec::Error::Config {
                message: e.to_string(),
            })?,
    })
}

/// [`client`], counting every request it sends in `counts` ([`crate::requests`]).
///
/// # Errors
/// As [`client`].
pub async fn client_counted(
    kubeconfig: Option<&std::path::Path>,
    counts: &std::sync::Arc<crate::requests::Counts>,
) -> exec::Result<kube::Client> {
    let config = config(kubeconfig).await?;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| exec::Error::Config {
            message: e.to_string(),
        })?;
    Ok(builder.with_layer(&counts.layer()).build())
}

/// An executor error as the command line's error.
pub(super) fn boxed(e: exec::Error) -> Error {
    Error::Executor {
        source: Box::new(e),
    }
}

pub(super) fn run(ctx: &mut Context<'_>, args: &StopArgs) -> Result<Exit> {
    let (namespace, name) = args.target.clone();
    let (policy, _) = load_policy(ctx.global, &args.policy)?;
    let mut options = Options {
        dry_run: args.dry_run,
        force: args.force,
        pods_proxy: args.pods_proxy,
        settle: Duration::from_secs(args.settle_seconds),
        ..Options::default()
    };
    args.methods.apply(&mut options);
    let rt = crate::cli::async_runtime()?;
    let report = rt.block_on(async {
        let client = client(args.kubeconfig.as_deref()).await.map_err(boxed)?;
        let executor = Executor::new(client, Arc::new(policy), options);
        executor.stop_pod(&namespace, &name).await.map_err(boxed)
    })?;
    if ctx.json {
        let v = serde_json::to_value(&report).unwrap_or_default();
        ctx.json_out(&v)?;
    } else {
        let text = render(&report, &ctx.style);
        ctx.print(&text)?;
    }
    Ok(match report.outcome {
        Outcome::NotReady => Exit::Report,
        _ if report.left_running() => Exit::Report,
        // The stop worked, but the pod's result is not the main containers': say so.
        _ if matches!(report.end.as_deref(), Some("Failed" | "NeverCompletes")) => Exit::Report,
        _ => Exit::Ok,
    })
}

/// The report as text for people.
pub fn render(report: &PodReport, style: &crate::render::Style) -> String {
    use crate::escape::text;
    use std::fmt::Write;
    let report = &escaped(report);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {}/{}",
        style.bold("pod"),
        report.namespace,
        report.name
    );
    let readiness = format!(
        "{} ({})",
        text(report.readiness.state.as_deref().unwrap_or("?")),
        text(report.readiness.reason.as_deref().unwrap_or(""))
    );
    let _ = writeln!(s, "  readiness: {readiness}");
    match report.outcome {
        Outcome::Gone => {
            let _ = writeln!(s, "  the pod is gone: nothing left to stop");
        }
        // `sidekill stop` waits in place; only the controller's executor hands waits back.
        Outcome::Waiting => {
            let _ = writeln!(s, "  a wait was handed back: run again to resume it");
        }
        Outcome::NotReady => {
            let _ = writeln!(
                s,
                "  {} the plan is not ready; nothing was run (--force runs it anyway)",
                style.yellow("not ready:")
            );
        }
        Outcome::DryRun => {
            let _ = writeln!(s, "  {} nothing was run", style.cyan("dry run:"));
        }
        Outcome::Done => {}
    }
    if report.containers.is_empty() {
        let _ = writeln!(s, "  no sidecar to stop");
    }
    for c in &report.containers {
        let verdict = match c.verdict {
            Verdict::Stopped => style.green("stopped"),
            Verdict::AlreadyTerminated => style.green("already terminated"),
            Verdict::StillRunning => style.red("still running"),
            Verdict::Restarted => style.red("restarted by the kubelet"),
            Verdict::NotRun => style.dim("not run"),
        };
        let mut extra = String::new();
        if let Some(code) = c.exit_code {
            let _ = write!(extra, ", exit code {code}");
            match &c.predicted_exit {
                serde_json::Value::Null => {}
                p => {
                    let predicted = p.as_str().map_or_else(|| p.to_string(), str::to_owned);
                    let mark = match c.exit_matches {
                        Some(true) => style.green(" as predicted"),
                        Some(false) => style.red(" NOT as predicted"),
                        None => String::new(),
                    };
                    let _ = write!(extra, " (predicted {predicted}{mark})");
                }
            }
        }
        if c.verdict == Verdict::Restarted {
            let _ = write!(
                extra,
                ", restart count {}: left alone",
                c.restart_count.unwrap_or(0)
            );
        }
        if let Some(ms) = c.stopped_after_ms {
            let _ = write!(extra, ", {ms} ms after the first signal");
        }
        let method = c
            .method
            .as_deref()
            .map(|m| format!(", method {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {} {} (plan: {}{method}){extra}",
            style.bold(&c.container),
            verdict,
            c.planned
        );
        for st in &c.steps {
            let mut line = format!(
                "    [{}] {}: {}",
                st.index,
                st.step.as_ref().map_or_else(
                    || "(a step known from the pod's record)".into(),
                    crate::render::step
                ),
                st.result
            );
            if let Some(code) = st.exit_code {
                let _ = write!(line, ", exit {code}");
                // An exec runs in the container's PID namespace: when the container's PID 1
                // ends, the kernel kills the exec's process too, so a stop that worked reads
                // 137 (SIGKILL) here. Said, so that it does not read as a failure.
                if code == 137 && st.terminated_after_ms.is_some() {
                    let _ = write!(line, " (the exec was killed with the container it stopped)");
                }
            }
            if let Some(ms) = st.terminated_after_ms {
                let _ = write!(line, ", container terminated after {ms} ms");
            } else if st.millis > 0 {
                let _ = write!(line, ", {} ms", st.millis);
            }
            let _ = writeln!(s, "{line}");
            if let Some(m) = &st.message {
                if !m.is_empty() && st.result != "ran" {
                    let _ = writeln!(s, "        {}", style.dim(m));
                }
            }
            for (label, text) in [("stdout", &st.stdout), ("stderr", &st.stderr)] {
                if !text.trim().is_empty() {
                    let _ = writeln!(s, "        {label}: {}", text.trim_end());
                }
            }
        }
        let outcome_codes = [
            "pod-fails-on-exit",
            "sidecar-restarted",
            "argo-step-fails-on-exit",
        ];
        let bad_end = matches!(report.end.as_deref(), Some("Failed" | "NeverCompletes"))
            || c.verdict == Verdict::Restarted;
        if c.verdict == Verdict::StillRunning || report.outcome != Outcome::Done || bad_end {
            let shown = |d: &&Diagnostic| {
                c.verdict == Verdict::StillRunning
                    || report.outcome != Outcome::Done
                    || outcome_codes.contains(&d.code.as_deref().unwrap_or(""))
            };
            for d in c.diagnostics.iter().filter(shown) {
                let _ = writeln!(
                    s,
                    "    {} {}: {}\n      fix: {}",
                    style.severity(&text(d.severity.as_deref().unwrap_or("info"))),
                    text(d.code.as_deref().unwrap_or("")),
                    text(d.message.as_deref().unwrap_or("")),
                    text(d.fix.as_deref().unwrap_or(""))
                );
            }
        }
    }
    if let Some(end) = &report.end {
        let predicted = report.predicted_phase().map_or("nothing".into(), text);
        let shown = match report.end_matches {
            Some(true) => style.green(&format!("{end}, as predicted")),
            Some(false) => style.red(&format!("{end}, NOT as predicted ({predicted})")),
            None => format!("{end} (predicted {predicted})"),
        };
        let _ = writeln!(
            s,
            "  {} {shown}{}",
            style.bold("pod end:"),
            report
                .phase
                .as_deref()
                .filter(|p| *p != end)
                .map(|p| format!(", phase {p}"))
                .unwrap_or_default()
        );
        if let Some(why) = report
            .prediction
            .as_ref()
            .and_then(|o| o.pod.as_ref()?.why.as_deref())
        {
            let _ = writeln!(
                s,
                "    {}",
                style.dim(&format!("prediction: {}", text(why)))
            );
        }
    }
    if let Some(job) = &report.job {
        let _ = writeln!(s, "  {}", job.describe());
    }
    s
}

/// The report with every string that came from outside escaped (the pod's names, a
/// container's output, the API server's messages): shown, never obeyed. What the report keeps
/// of the module's answer (readiness, steps, diagnostics, prediction) is escaped where it is
/// shown, as [`crate::render`] shows answers.
fn escaped(report: &PodReport) -> PodReport {
    use crate::escape::{text, value};
    let own = |s: &str| text(s).into_owned();
    let mut r = report.clone();
    r.namespace = own(&r.namespace);
    r.name = own(&r.name);
    r.phase = r.phase.as_deref().map(own);
    r.end = r.end.as_deref().map(own);
    for c in &mut r.containers {
        c.container = own(&c.container);
        c.planned = own(&c.planned);
        c.method = c.method.as_deref().map(own);
        c.predicted_exit = value(&c.predicted_exit);
        for st in &mut c.steps {
            st.result = own(&st.result);
            st.message = st.message.as_deref().map(own);
            // Output keeps its lines; each line is escaped.
            st.stdout = st.stdout.lines().map(own).collect::<Vec<_>>().join("\n");
            st.stderr = st.stderr.lines().map(own).collect::<Vec<_>>().join("\n");
        }
    }
    if let Some(job) = &mut r.job {
        job.name = own(&job.name);
        job.conditions = job.conditions.iter().map(|c| own(c)).collect();
        job.note = job.note.as_deref().map(own);
    }
    r
}
