//! Parsing Argo's `workflows.argoproj.io/kill-cmd-<container>` annotation.
//!
//! The value is a JSON array of non-empty strings. Argo (argo-workflows
//! `workflow/signal/signal.go`, `killCommand`, called `SignalContainer` before v3.6)
//! unmarshals it and, in every argument that contains `%d`, runs `fmt.Sprintf(arg, signal)`;
//! other arguments are passed unchanged. So `%%` in such an argument becomes `%`, a second
//! verb prints `%!d(MISSING)`, and the command runs anyway: [`render`] does exactly what Go
//! does. When the value is not a JSON array of strings, Argo's unmarshal fails and it runs
//! nothing for that container; sidekill reports the problem and falls back.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::Value;

use crate::diagnostics::Code;

/// The longest annotation value accepted, in bytes.
pub const MAX_LEN: usize = 4096;

/// Why a kill-cmd value is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The diagnostic code.
    pub code: Code,
    /// What exactly is wrong.
    pub detail: String,
}

fn problem(code: Code, detail: String) -> Problem {
    Problem { code, detail }
}

/// Parses an annotation value into an argv template (with `%d` left in place).
///
/// # Errors
/// A [`Problem`] naming the first thing wrong with the value.
pub fn parse(value: &str) -> Result<Vec<String>, Problem> {
    if value.len() > MAX_LEN {
        return Err(problem(
            Code::KillCmdTooLong,
            format!(
                "the value is {} bytes; at most {MAX_LEN} are accepted",
                value.len()
            ),
        ));
    }
    let parsed: Value = serde_json::from_str(value).map_err(|e| {
        problem(
            Code::KillCmdNotJson,
            format!(
                "the value is not JSON ({}, column {})",
                category(&e),
                e.column()
            ),
        )
    })?;
    let Value::Array(items) = parsed else {
        return Err(problem(
            Code::KillCmdNotArray,
            format!(
                "the value is JSON {}, not an array of strings",
                kind(&parsed)
            ),
        ));
    };
    if items.is_empty() {
        return Err(problem(Code::KillCmdEmpty, "the array is empty".into()));
    }
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::String(arg) = item else {
            return Err(problem(
                Code::KillCmdNotString,
                format!("element {i} is {}, not a string", kind(&item)),
            ));
        };
        if arg.is_empty() {
            return Err(problem(
                Code::KillCmdEmptyArgument,
                format!("element {i} is an empty string"),
            ));
        }
        argv.push(arg);
    }
    Ok(argv)
}

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "it ends too early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `%` directives of an argument, in order: `Some("d")` for `%d`, `None` for `%%`,
/// `Some(other)` for anything else.
fn directives(arg: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut chars = arg.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '%' {
            continue;
        }
        if let Some((_, '%')) = chars.peek() {
            chars.next();
            out.push(None);
            continue;
        }
        // Go verb syntax: flags, width, precision, then one verb letter.
        let mut end = arg.len();
        for (i, c) in chars.by_ref() {
            if !matches!(c, '+' | '-' | '#' | ' ' | '0'..='9' | '.' | '[' | ']' | '*') {
                end = i + c.len_utf8();
                break;
            }
        }
        out.push(Some(arg[start + 1..end].to_string()));
    }
    out
}

/// What Go's `fmt.Sprintf` makes of an argument's verbs that is not the one signal number:
/// a second verb, or a verb other than a plain `%d`. The command still runs, with
/// `%!d(MISSING)` (or the like) in it; each problem names the argument and its rendering.
pub fn verb_problems(template: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, arg) in template.iter().enumerate() {
        if !arg.contains("%d") {
            continue;
        }
        let found = directives(arg);
        let verbs: Vec<&str> = found.iter().flatten().map(String::as_str).collect();
        let rendered = sprintf(arg, SIGTERM_NUMBER);
        if verbs.iter().filter(|v| **v == "d").count() > 1 {
            problems.push(problem(
                Code::KillCmdSecondSignalVerb,
                format!("element {index} (`{arg}`) has {} `%d`: Argo fills the first with fmt.Sprintf and runs the command anyway, with `{rendered}` for SIGTERM", verbs.iter().filter(|v| **v == "d").count()),
            ));
        } else if verbs.len() > 1 || verbs.first() != Some(&"d") {
            problems.push(problem(
                Code::KillCmdOtherVerb,
                format!("element {index} (`{arg}`) has a `%` verb other than one plain `%d`: Argo runs fmt.Sprintf on it and the command anyway, with `{rendered}` for SIGTERM"),
            ));
        }
    }
    problems
}

const SIGTERM_NUMBER: u8 = 15;

/// Whether any argument of the template carries the signal number.
pub fn has_signal(template: &[String]) -> bool {
    template
        .iter()
        .any(|arg| arg.contains("%d") && directives(arg).iter().flatten().next().is_some())
}

/// The argv for one signal, as Argo builds it: every argument containing `%d` goes through
/// Go's `fmt.Sprintf(arg, signal)` ([`sprintf`]); other arguments are unchanged.
pub fn render(template: &[String], signal: u8) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            if arg.contains("%d") {
                sprintf(arg, signal)
            } else {
                arg.clone()
            }
        })
        .collect()
}

/// Go's `fmt.Sprintf(format, syscall.Signal(signal))` for the verbs a kill command may hold:
/// the first verb takes the signal (`%d`, `%o`, `%b` its number, `%s`, `%v`, `%q`, `%x`, `%X`
/// its name, as `syscall.Signal` is a `Stringer`; `%c` its character), every later one prints
/// `%!d(MISSING)`, a trailing `%` prints `%!(NOVERB)`, `%%` prints `%`, and a format with no
/// verb ends in `%!(EXTRA syscall.Signal=terminated)`. Width and the `-` and `0` flags are
/// honoured for numbers and names; other flags are read and ignored.
pub fn sprintf(format: &str, signal: u8) -> String {
    let mut out = String::with_capacity(format.len() + 4);
    let mut used = false;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero) = (false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' | '#' | ' ' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            chars.next();
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if used {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        }
        used = true;
        let name = signal_name(signal);
        let text = match verb {
            'd' => signal.to_string(),
            'o' => format!("{signal:o}"),
            'b' => format!("{signal:b}"),
            'c' => char::from(signal).to_string(),
            's' | 'v' => name.to_string(),
            'q' => format!("\"{name}\""),
            'x' => name.bytes().map(|b| format!("{b:02x}")).collect(),
            'X' => name.bytes().map(|b| format!("{b:02X}")).collect(),
            other => {
                out.push_str(&format!("%!{other}(syscall.Signal={signal})"));
                continue;
            }
        };
        let pad = width.saturating_sub(text.chars().count());
        let numeric = matches!(verb, 'd' | 'o' | 'b');
        if minus {
            out.push_str(&text);
            out.extend(core::iter::repeat_n(' ', pad));
        } else {
            let fill = if zero && numeric { '0' } else { ' ' };
            out.extend(core::iter::repeat_n(fill, pad));
            out.push_str(&text);
        }
    }
    if !used {
        out.push_str(&format!("%!(EXTRA syscall.Signal={})", signal_name(signal)));
    }
    out
}

/// `syscall.Signal.String()` on Linux, for the two signals a stop sends.
fn signal_name(signal: u8) -> &'static str {
    match signal {
        9 => "killed",
        15 => "terminated",
        _ => "signal",
    }
}

/// Whether the command sends a signal (so a `%d` would matter): `kill`, `pkill`, `killall`
/// (also through busybox or argoexec), or a shell script that runs one of them. A command
/// that makes a request instead (`pilot-agent request POST quitquitquit`, `curl -X POST
/// localhost:15020/quitquitquit`, `redis-cli shutdown nosave`) takes no signal: repeating it
/// for SIGKILL is the same request again, and a `%d` would have nowhere to go.
pub fn sends_signal(argv: &[String]) -> bool {
    const KILLERS: [&str; 3] = ["kill", "pkill", "killall"];
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let Some(first) = argv.first().map(|p| base(p)) else {
        return false;
    };
    if KILLERS.contains(&first.as_str()) {
        return true;
    }
    if matches!(first.as_str(), "busybox" | "argoexec") {
        return argv.get(1).is_some_and(|a| KILLERS.contains(&a.as_str()));
    }
    if matches!(first.as_str(), "sh" | "bash" | "ash" | "dash") {
        return argv.iter().skip(1).any(|script| {
            script
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/'))
                .any(|word| KILLERS.contains(&base(word).as_str()))
        });
    }
    false
}

/// Whether `name` is a valid container name: an RFC 1123 label (lower-case
/// alphanumerics and `-`, starting and ending with an alphanumeric, at most 63).
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_every_argument_with_a_signal_verb() {
        let t = parse(r#"["sh","-c","kill -%d $(pidof entrypoint.sh)"]"#).unwrap();
        assert_eq!(
            render(&t, 15),
            strings(&["sh", "-c", "kill -15 $(pidof entrypoint.sh)"])
        );
        let t = parse(r#"["/custom","kill","%d"]"#).unwrap();
        assert_eq!(render(&t, 9), strings(&["/custom", "kill", "9"]));
    }

    #[test]
    fn percent_escape_is_unescaped_only_next_to_a_signal_verb() {
        let t = parse(r#"["sh","-c","kill -%d 1 && echo 100%%","date +%s"]"#).unwrap();
        assert_eq!(
            render(&t, 15),
            strings(&["sh", "-c", "kill -15 1 && echo 100%", "date +%s"])
        );
    }

    #[test]
    fn rejects_each_bad_shape_with_its_own_code() {
        let cases = vec![
            ("not-json", Code::KillCmdNotJson),
            (r#"{"a":1}"#, Code::KillCmdNotArray),
            ("[]", Code::KillCmdEmpty),
            (r#"["kill", 9]"#, Code::KillCmdNotString),
            (r#"["kill", ""]"#, Code::KillCmdEmptyArgument),
        ];
        for (value, code) in cases {
            assert_eq!(parse(value).unwrap_err().code, code, "{value}");
        }
        let long = alloc::format!(r#"["{}"]"#, "a".repeat(MAX_LEN));
        assert_eq!(parse(&long).unwrap_err().code, Code::KillCmdTooLong);
    }

    /// Issue 19: Argo runs `fmt.Sprintf` on an argument with two verbs and runs the command
    /// anyway; the renderings below are Go 1.24's, checked with `go run`.
    #[test]
    fn verbs_render_as_go_sprintf_and_the_command_still_runs() {
        let cases = [
            (
                "kill -%d 1; kill -%d 1",
                "kill -15 1; kill -%!d(MISSING) 1",
                Some(Code::KillCmdSecondSignalVerb),
            ),
            (
                "kill -%d %s",
                "kill -15 %!s(MISSING)",
                Some(Code::KillCmdOtherVerb),
            ),
            (
                "kill -%5d %d",
                "kill -   15 %!d(MISSING)",
                Some(Code::KillCmdOtherVerb),
            ),
            (
                "%s %d",
                "terminated %!d(MISSING)",
                Some(Code::KillCmdOtherVerb),
            ),
            (
                "%x %d",
                "7465726d696e61746564 %!d(MISSING)",
                Some(Code::KillCmdOtherVerb),
            ),
            (
                "echo %%d",
                "echo %d%!(EXTRA syscall.Signal=terminated)",
                Some(Code::KillCmdOtherVerb),
            ),
            ("%d%", "15%!(NOVERB)", Some(Code::KillCmdOtherVerb)),
            ("100%% %d", "100% 15", None),
        ];
        for (arg, rendered, code) in cases {
            let t = parse(&alloc::format!(r#"["sh", "-c", "{arg}"]"#)).unwrap();
            assert_eq!(render(&t, 15)[2], rendered, "{arg}");
            let problems = verb_problems(&t);
            assert_eq!(problems.first().map(|p| p.code), code, "{arg}");
            if let Some(p) = problems.first() {
                assert!(p.detail.contains(rendered), "{}", p.detail);
            }
        }
        assert_eq!(sprintf("%-5d|", 15), "15   |");
        assert_eq!(sprintf("%05d", 15), "00015");
        // An argument without a literal `%d` is left alone, whatever else it holds.
        assert_eq!(sprintf("x", 9), "x%!(EXTRA syscall.Signal=killed)");
        assert_eq!(
            render(&strings(&["date +%s", "-%5d"]), 15),
            strings(&["date +%s", "-%5d"])
        );
    }

    #[test]
    fn commands_that_send_a_signal() {
        for argv in [
            &["kill", "-TERM", "1"][..],
            &["/bin/sh", "-c", "kill 1"],
            &["sh", "-c", "sleep 1; /usr/bin/pkill -f app"],
            &["/busybox/busybox", "killall", "kuma-dp"],
            &["/var/run/argo/argoexec", "kill", "15", "1"],
        ] {
            assert!(sends_signal(&strings(argv)), "{argv:?}");
        }
        for argv in [
            &["pilot-agent", "request", "POST", "quitquitquit"][..],
            &["curl", "-X", "POST", "localhost:15020/quitquitquit"],
            &["redis-cli", "shutdown", "nosave"],
            &["sh", "-c", "curl -X POST localhost:15020/quitquitquit"],
        ] {
            assert!(!sends_signal(&strings(argv)), "{argv:?}");
        }
    }

    #[test]
    fn detects_signal_verbs() {
        assert!(has_signal(&strings(&["kill", "-%d", "1"])));
        assert!(!has_signal(&strings(&[
            "pilot-agent",
            "request",
            "POST",
            "quitquitquit"
        ])));
        assert!(!has_signal(&strings(&["echo", "%%d"])));
    }

    #[test]
    fn container_names_are_dns1123_labels() {
        assert!(is_dns1123_label("istio-proxy"));
        assert!(!is_dns1123_label("Istio_Proxy"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
