//! The `sidekill` binary: parses the command line, sets up logging, runs the command.
//! Everything else lives in the library (`sidekill::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sidekill::cli::{self, Cli, Exit};
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = std::env::var("SIDEKILL_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
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
