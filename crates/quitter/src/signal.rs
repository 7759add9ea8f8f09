//! A signal to one process found by name in `/proc`.

use std::fs;
use std::path::Path;

use rustix::process::{kill_process, Pid, Signal};

use crate::quitter::{AMBIGUOUS, DONE, FAILED, REFUSED, USAGE};

/// The pod's infrastructure process: PID 1 of a pod that shares one PID namespace. Signalling
/// it tears down the whole pod, so it is never a target.
const PAUSE: &str = "pause";

/// Sends `sig` to the one process named `name`.
pub fn by_name(sig: &str, name: &str) -> (u8, String) {
    let Some(signal) = parse_signal(sig) else {
        return (
            USAGE,
            format!(
                "`{sig}` is not a signal: give a number or TERM, KILL, INT, HUP, QUIT, USR1, USR2"
            ),
        );
    };
    if name.is_empty() || name.contains('/') {
        return (USAGE, format!("`{name}` is not a process name"));
    }
    if name == PAUSE {
        return (
            USAGE,
            "the pod's pause process is never a target: signalling it tears down the whole pod"
                .into(),
        );
    }
    let matches = find(Path::new("/proc"), name);
    let pid = match matches.as_slice() {
        [] => return (REFUSED, format!("no process named `{name}`")),
        [pid] => *pid,
        many => {
            return (
                AMBIGUOUS,
                format!(
                    "{} processes are named `{name}` ({many:?}); refusing to guess",
                    many.len()
                ),
            )
        }
    };
    let Some(target) = Pid::from_raw(pid) else {
        return (FAILED, format!("{pid} is not a process id"));
    };
    match kill_process(target, signal) {
        Ok(()) => (
            DONE,
            format!("sent signal {} to `{name}` (pid {pid})", signal.as_raw()),
        ),
        Err(e) => (
            FAILED,
            format!(
                "kill {} `{name}` (pid {pid}): {e} (signalling needs the target's uid or CAP_KILL)",
                signal.as_raw()
            ),
        ),
    }
}

fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.strip_prefix("SIG").unwrap_or(text);
    let raw = match text {
        "TERM" => Signal::TERM.as_raw(),
        "KILL" => Signal::KILL.as_raw(),
        "INT" => Signal::INT.as_raw(),
        "HUP" => Signal::HUP.as_raw(),
        "QUIT" => Signal::QUIT.as_raw(),
        "USR1" => Signal::USR1.as_raw(),
        "USR2" => Signal::USR2.as_raw(),
        number => number.parse().ok()?,
    };
    Signal::from_named_raw(raw)
}

/// Every pid under `proc` whose comm or executable's file name is `name`, except this
/// process and any process named `pause`.
fn find(proc: &Path, name: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            let dir = proc.join(pid.to_string());
            // comm is the name truncated to 15 bytes; the executable's link has it whole.
            let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let comm = comm.trim_end_matches('\n');
            let exe = fs::read_link(dir.join("exe"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            if comm == PAUSE || exe == PAUSE {
                return false;
            }
            comm == name
                || exe == name
                || (name.len() > 15 && comm.as_bytes() == &name.as_bytes()[..15])
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").map(Signal::as_raw), Some(15));
        assert_eq!(parse_signal("SIGKILL").map(Signal::as_raw), Some(9));
        assert_eq!(parse_signal("15").map(Signal::as_raw), Some(15));
        assert!(parse_signal("0").is_none());
        assert!(parse_signal("BOGUS").is_none());
    }

    #[test]
    fn pause_is_never_a_target() {
        assert_eq!(by_name("15", "pause").0, USAGE);
    }
}
