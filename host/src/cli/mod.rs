//! The `sidekill` command line: argument definitions (clap derive) and the commands.
//!
//! Arguments are parsed and validated first (clap, with value parsers that do no IO),
//! then resolved (files read, the module loaded), then acted on. Each command returns an
//! [`Exit`] code; errors that stop a command return [`Error`], which the binary prints
//! and turns into exit code 2.
//!
//! This module holds what every command shares: the global options, the list of commands
//! and the output [`Context`]. Each command's arguments, help text and code sit together in
//! its own module (`plan`, `matrix`, `policy_cmd`, `stop`, `controller`, `demo`, `web`);
//! `module` chooses the policy module and the runtime it runs in.

#[cfg(feature = "configmap")]
mod controller;
#[cfg(feature = "demo")]
mod demo;
mod matrix;
mod module;
mod plan;
mod policy_cmd;
#[cfg(feature = "configmap")]
pub mod stop;
mod web;

pub use matrix::MatrixArgs;
#[cfg(feature = "configmap")]
pub(crate) use module::async_runtime;
pub use module::{cli_runtime, default_cache_dir, load_policy, runtime, PolicyArgs};
pub(crate) use module::{is_embedded, module_origin, parse_sha256, read_module};
pub use plan::{FactsArgs, FailOn, PlanArgs};
pub use policy_cmd::{PolicyCommand, SignCommand};
#[cfg(feature = "configmap")]
pub(crate) use stop::parse_target;
#[cfg(feature = "configmap")]
pub use stop::{ExecutorArgs, StopArgs};
pub use web::WebArgs;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::embedded;
use crate::error::{Error, Result};
use crate::render::Style;
use crate::runtime::Runtime;

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
    /// [`Exit::Ok`] when `ok`, else [`Exit::Report`]: what a check that found nothing wrong
    /// (or something to report) exits with.
    pub(crate) fn ok_or_report(ok: bool) -> Exit {
        if ok {
            Exit::Ok
        } else {
            Exit::Report
        }
    }

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
    #[command(long_about = plan::ABOUT)]
    Plan(plan::PlanArgs),

    /// Print the support matrix: how each executor can stop each kind of sidecar
    #[command(long_about = matrix::ABOUT)]
    Matrix(matrix::MatrixArgs),

    /// Inspect, test, compare, publish and roll back policy modules
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),

    /// Stop the sidecars of one pod now, as its plan says
    #[cfg(feature = "configmap")]
    #[command(long_about = stop::ABOUT, after_long_help = stop::HELP)]
    Stop(stop::StopArgs),

    /// Watch the controller stop sidecars on a local test cluster (needs root)
    #[cfg(feature = "demo")]
    #[command(long_about = demo::DEMO_ABOUT, after_long_help = demo::DEMO_HELP)]
    Demo(demo::DemoArgs),

    /// Watch batch pods and stop their sidecars once their main containers exit
    #[cfg(feature = "configmap")]
    #[command(long_about = controller::CONTROLLER_ABOUT, after_long_help = controller::CONTROLLER_HELP)]
    Controller(controller::ControllerArgs),

    /// Serve the browser debugger on a local port
    #[command(args = web::refused_args(), long_about = web::ABOUT)]
    Web(web::WebArgs),
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
        Command::Matrix(args) => matrix::run(&mut ctx, args),
        Command::Policy(command) => policy_cmd::run(&mut ctx, command),
        #[cfg(feature = "configmap")]
        Command::Stop(args) => stop::run(&mut ctx, args),
        #[cfg(feature = "configmap")]
        Command::Controller(args) => controller::run(&mut ctx, args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&mut ctx, args),
        Command::Web(args) => web::run(&mut ctx, args),
    }
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
