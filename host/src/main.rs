//! The `sidekill` binary: parses the command line, sets up logging, runs the command.
//! Everything else lives in the library (`sidekill::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sidekill::cli::{self, Cli, Exit};
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    // `sidekill demo`'s containers run this binary under the stand-in images' names.
    #[cfg(feature = "demo")]
    sidekill_testcluster::standin::main_if_standin();
    // The hidden `sidekill __compile` child (sidekill::runtime::ChildCompiler): it sets its
    // own rlimits and compiles one module. Handled before clap so that it is in no help text
    // and parses nothing else.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == sidekill::runtime::COMPILE_SUBCOMMAND)
    {
        let args: Vec<_> = args.collect();
        return ExitCode::from(sidekill::runtime::compile_child_main(&args));
    }
    // Every module this process compiles (the embedded one, --policy, each hot-swap
    // candidate) is compiled by this binary in a child under rlimits. Without a path to
    // ourselves (no /proc), modules are compiled in-process, bounded only by the limits
    // checked before compiling: said on stderr, as logging is not set up yet.
    match std::env::current_exe() {
        Ok(exe) => sidekill::runtime::ChildCompiler::new(exe).register(),
        Err(e) => eprintln!(
            "sidekill: warning: modules are compiled in this process (cannot find this \
             binary for a child compiler: {e})"
        ),
    }
    let cli = Cli::parse();
    let level = std::env::var("SIDEKILL_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or_else(|| default_level(&cli.command));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(&cli).map_err(anyhow::Error::from) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidekill: {e:#}");
            ExitCode::from(Exit::Error.code())
        }
    }
}

/// A reader that went away (`sidekill plan x | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The controller logs what it does; other commands only what went wrong.
fn default_level(command: &cli::Command) -> LevelFilter {
    #[cfg(feature = "configmap")]
    if matches!(command, cli::Command::Controller(_)) {
        return LevelFilter::INFO;
    }
    // The demo prints every report itself; the controller's warnings would repeat them.
    #[cfg(feature = "demo")]
    if matches!(command, cli::Command::Demo(_)) {
        return LevelFilter::ERROR;
    }
    let _ = command;
    LevelFilter::WARN
}
