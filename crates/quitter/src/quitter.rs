//! The quitter's command line: parsing and dispatch, with its documented exit codes.

use std::time::Duration;

use crate::{http, signal};

/// The binary's own name: under it, the quitter; under any other, the nop.
pub const NAME: &str = "sidekill-quitter";

/// Done: the endpoint answered 2xx, or the signal was delivered.
pub const DONE: u8 = 0;
/// The target refused: a non-2xx answer, or no process with that name.
pub const REFUSED: u8 = 1;
/// The command line is wrong.
pub const USAGE: u8 = 2;
/// Could not act: no connection, a timeout, a malformed answer, or `kill` failed (EPERM).
pub const FAILED: u8 = 3;
/// More than one process has that name: the quitter does not guess.
pub const AMBIGUOUS: u8 = 4;

/// `--help`.
pub const HELP: &str = "\
sidekill-quitter: stop a sidecar from inside its pod (sidekill's ephemeral quitter)

Usage:
  sidekill-quitter http METHOD HOST:PORT PATH [--timeout SECONDS]
      Send `METHOD PATH` over plain HTTP/1.1 to HOST:PORT, which must be a loopback
      address (127.0.0.0/8, ::1 or localhost): quit endpoints accept only callers
      inside the pod. Exit 0 on a 2xx answer. The timeout (default 5) covers the
      connection and the answer.
  sidekill-quitter signal SIGNAL --process NAME
      Send SIGNAL (a number, or TERM, KILL, INT, HUP, QUIT, USR1, USR2) to the one
      process whose /proc/<pid>/comm or executable's file name is NAME. The pod's
      `pause` process is never a target. Signalling needs the target's uid or
      CAP_KILL; a signal to PID 1 of its own PID namespace is dropped unless the
      program handles it (SIGKILL always is).
  sidekill-quitter --help

Under any other name (the nop image places this binary at /bin/sh, /nop and the
other paths of sidekill_policy_info's nopPaths) it exits 0 whatever its arguments.

Exit codes:
  0  done: a 2xx answer, or the signal was delivered
  1  refused: a non-2xx answer, or no process with that name
  2  usage: the command line is wrong
  3  failed: no connection, a timeout, a malformed answer, or kill failed
  4  ambiguous: more than one process has that name";

/// Runs the quitter's argv (without the program name): the exit code and a message.
pub fn run(args: &[String]) -> (u8, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => (USAGE, format!("a command is needed\n\n{HELP}")),
        ["--help" | "-h" | "help", ..] => (DONE, HELP.into()),
        ["http", method, address, path, rest @ ..] => {
            let timeout = match timeout(rest) {
                Ok(t) => t,
                Err(message) => return (USAGE, message),
            };
            http::request(method, address, path, timeout)
        }
        ["signal", sig, "--process", name] | ["signal", "--process", name, sig] => {
            signal::by_name(sig, name)
        }
        [command, ..] => (
            USAGE,
            format!("unknown or incomplete command `{command}`\n\n{HELP}"),
        ),
    }
}

fn timeout(rest: &[&str]) -> Result<Duration, String> {
    match rest {
        [] => Ok(Duration::from_secs(5)),
        ["--timeout", seconds] => seconds
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("--timeout `{seconds}` is not a positive number of seconds")),
        other => Err(format!("unexpected arguments {other:?} after the path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(args: &[&str]) -> u8 {
        run(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).0
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(run_str(&[]), USAGE);
        assert_eq!(run_str(&["http", "POST"]), USAGE);
        assert_eq!(run_str(&["signal", "15"]), USAGE);
        assert_eq!(
            run_str(&["http", "POST", "127.0.0.1:1", "/", "--timeout", "0"]),
            USAGE
        );
        assert_eq!(run_str(&["--help"]), DONE);
    }
}
