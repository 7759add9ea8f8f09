//! `sidekill-quitter`: sidekill's nop and quitter, one static binary.
//!
//! - Under any name but its own (the nop image places it at `/bin/sh`, `/nop` and the other
//!   paths of sidekill-policy's `nopPaths`) it exits 0 whatever its argv: a sidecar whose
//!   image was swapped for the nop ends with exit 0.
//! - Invoked as `sidekill-quitter` (the quitter image's ENTRYPOINT, `/sidekill-quitter`) it
//!   does what its argv says, from an ephemeral container that shares the sidecar's network
//!   and PID namespace: an HTTP request to a loopback quit endpoint, or a signal to the
//!   sidecar's process found by name. See [`quitter::HELP`] for the command line and the
//!   exit codes.
//!
//! No dependency but `rustix` (for `kill(2)`), so it builds as a static binary for the
//! `x86_64-unknown-linux-musl` target.

#![forbid(unsafe_code)]

mod http;
mod quitter;
mod signal;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    let name = Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name != quitter::NAME {
        // The nop: whatever the swapped container's command and args were, exit 0.
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let (code, message) = quitter::run(&args);
    if !message.is_empty() {
        if code == 0 {
            println!("{message}");
        } else {
            eprintln!("sidekill-quitter: {message}");
        }
    }
    ExitCode::from(code)
}
