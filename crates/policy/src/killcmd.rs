//! Parsing Argo's `workflows.argoproj.io/kill-cmd-<container>` annotation.
//!
//! The value is a JSON array of non-empty strings. Argo replaces `%d` with the signal
//! number in every argument that contains it, with Go's `fmt.Sprintf`, so `%%` in such
//! an argument becomes `%` and any other verb would print `%!v(MISSING)`. Arguments
//! without `%d` are passed unchanged. When the value is bad, Argo itself runs nothing
//! and the pod hangs; sidekill reports the problem and falls back.

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
        check_verbs(&arg, i)?;
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

fn check_verbs(arg: &str, index: usize) -> Result<(), Problem> {
    let found = directives(arg);
    let signal_verbs = found.iter().filter(|d| d.as_deref() == Some("d")).count();
    if signal_verbs == 0 {
        return Ok(());
    }
    if signal_verbs > 1 {
        return Err(problem(
            Code::KillCmdSecondSignalVerb,
            format!("element {index} (`{arg}`) has {signal_verbs} `%d`; Go's Sprintf fills only the first and prints %!d(MISSING) for the rest"),
        ));
    }
    if let Some(other) = found.iter().flatten().find(|d| d.as_str() != "d") {
        return Err(problem(
            Code::KillCmdOtherVerb,
            format!("element {index} (`{arg}`) has `%{other}` next to `%d`; Go's Sprintf would print %!{}(MISSING)", other.chars().last().unwrap_or('?')),
        ));
    }
    Ok(())
}

/// Whether any argument of the template carries the signal number.
pub fn has_signal(template: &[String]) -> bool {
    template
        .iter()
        .any(|arg| directives(arg).contains(&Some("d".to_string())))
}

/// The argv for one signal: `%d` becomes the number and `%%` becomes `%` in arguments
/// that contain `%d`; other arguments are unchanged, as Argo does.
pub fn render(template: &[String], signal: u8) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            if !directives(arg).contains(&Some("d".to_string())) {
                return arg.clone();
            }
            let mut out = String::with_capacity(arg.len() + 2);
            let mut chars = arg.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '%' {
                    match chars.peek() {
                        Some('%') => {
                            chars.next();
                            out.push('%');
                        }
                        Some('d') => {
                            chars.next();
                            out.push_str(&signal.to_string());
                        }
                        _ => out.push(c),
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
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
            (r#"["kill -%d %d"]"#, Code::KillCmdSecondSignalVerb),
            (r#"["kill -%d %s"]"#, Code::KillCmdOtherVerb),
            (r#"["kill -%5d %d"]"#, Code::KillCmdOtherVerb),
        ];
        for (value, code) in cases {
            assert_eq!(parse(value).unwrap_err().code, code, "{value}");
        }
        let long = alloc::format!(r#"["{}"]"#, "a".repeat(MAX_LEN));
        assert_eq!(parse(&long).unwrap_err().code, Code::KillCmdTooLong);
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
