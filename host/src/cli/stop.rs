//! `sidekill stop NAMESPACE/POD`: carry out one pod's plan now.

use std::sync::Arc;
use std::time::Duration;

use super::{load_policy, Context, Exit, StopArgs};
use crate::error::{Error, Result};
use crate::exec::{self, Executor, Options, Outcome, PodReport, Verdict};

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
        report.readiness["state"].as_str().unwrap_or("?"),
        report.readiness["reason"].as_str().unwrap_or("")
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
                crate::render::step(&st.step),
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
            let shown = |d: &&serde_json::Value| {
                c.verdict == Verdict::StillRunning
                    || report.outcome != Outcome::Done
                    || outcome_codes.contains(&d["code"].as_str().unwrap_or(""))
            };
            for d in c.diagnostics.iter().filter(shown) {
                let _ = writeln!(
                    s,
                    "    {} {}: {}\n      fix: {}",
                    style.severity(d["severity"].as_str().unwrap_or("info")),
                    d["code"].as_str().unwrap_or(""),
                    d["message"].as_str().unwrap_or(""),
                    d["fix"].as_str().unwrap_or("")
                );
            }
        }
    }
    if let Some(end) = &report.end {
        let predicted = exec::predicted_phase(&report.prediction).unwrap_or("nothing");
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
            .pointer("/pod/why")
            .and_then(|w| w.as_str())
        {
            let _ = writeln!(s, "    {}", style.dim(&format!("prediction: {why}")));
        }
    }
    if let Some(job) = &report.job {
        let _ = writeln!(s, "  {}", job.describe());
    }
    s
}

/// The report with every string that came from outside escaped (the module's answer, the
/// pod's names, a container's output, the API server's messages): shown, never obeyed.
fn escaped(report: &PodReport) -> PodReport {
    use crate::escape::{text, value};
    let own = |s: &str| text(s).into_owned();
    let mut r = report.clone();
    r.namespace = own(&r.namespace);
    r.name = own(&r.name);
    r.readiness = value(&r.readiness);
    r.prediction = value(&r.prediction);
    r.diagnostics = r.diagnostics.iter().map(value).collect();
    r.phase = r.phase.as_deref().map(own);
    r.end = r.end.as_deref().map(own);
    for c in &mut r.containers {
        c.container = own(&c.container);
        c.planned = own(&c.planned);
        c.method = c.method.as_deref().map(own);
        c.predicted_exit = value(&c.predicted_exit);
        c.diagnostics = c.diagnostics.iter().map(value).collect();
        for st in &mut c.steps {
            st.step = value(&st.step);
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
