//! `plan`'s outputs for CI: GitHub Actions workflow commands and SARIF 2.1.0.

use serde_json::{json, Value};

use super::{Finding, Problem};
use crate::error::AnswerError;
use crate::error::Error;
use crate::input;

/// GitHub Actions workflow commands: `::error file=F,line=L,col=C,title=T::message`, one
/// per error or warning diagnostic (and cannot-stop verdict), and one per input error.
/// Info diagnostics are left out: an annotation each would bury the rest.
pub(super) fn github(found: &[&Finding<'_>], problems: &[Problem]) -> String {
    let mut out = String::new();
    let mut line = |level: &str, file: &str, (l, c): (usize, usize), title: &str, text: &str| {
        let mut props = Vec::new();
        if file != input::STDIN {
            props.push(format!("file={}", gh_property(file)));
            if l > 0 {
                props.push(format!("line={l}"));
                props.push(format!("col={c}"));
            }
        }
        props.push(format!("title={}", gh_property(title)));
        out.push_str(&format!(
            "::{level} {}::{}\n",
            props.join(","),
            gh_data(text)
        ));
    };
    for f in found {
        let level = match f.severity {
            "error" | "cannot-stop" => "error",
            "warning" => "warning",
            _ => continue,
        };
        let about = f
            .container
            .map(|c| format!(", container {c}"))
            .unwrap_or_default();
        let title = format!("sidekill {} ({}{about})", f.code, f.subject);
        let mut text = f.message.clone();
        if let Some(fix) = f.fix {
            text.push_str("\nfix: ");
            text.push_str(fix);
        }
        line(level, &f.doc.file, f.position(), &title, &text);
    }
    for p in problems {
        let title = format!("sidekill {}", problem_rule(p));
        line("error", &p.file, p.position(), &title, &p.describe());
    }
    out
}

/// A workflow command's message: `%`, CR and LF escaped.
fn gh_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as data, and `:` and `,` too.
fn gh_property(text: &str) -> String {
    gh_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// The rule id of an input problem: the policy's error code, or the host's error name.
fn problem_rule(p: &Problem) -> String {
    match &p.error {
        Error::Answer(AnswerError::Policy { code, .. }) => code.clone(),
        other => other.name().to_string(),
    }
}

/// A SARIF 2.1.0 log: one run, one result per diagnostic and per input error, a rule per
/// code seen.
pub(super) fn sarif(found: &[&Finding<'_>], problems: &[Problem], policy: &str) -> Value {
    let mut rules: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let mut result = |rule: &str, level: &str, file: &str, (l, c): (usize, usize), text: String| {
        if !rules.iter().any(|r| r == rule) {
            rules.push(rule.to_string());
        }
        let mut r = json!({
            "ruleId": rule,
            "level": level,
            "message": {"text": text},
        });
        if file != input::STDIN {
            let mut location = json!({"artifactLocation": {"uri": sarif_uri(file)}});
            if l > 0 {
                location["region"] = json!({"startLine": l, "startColumn": c.max(1)});
            }
            r["locations"] = json!([{"physicalLocation": location}]);
        }
        results.push(r);
    };
    for f in found {
        let level = match f.severity {
            "error" | "cannot-stop" => "error",
            "warning" => "warning",
            _ => "note",
        };
        let about = f
            .container
            .map(|c| format!(", container {c}"))
            .unwrap_or_default();
        let mut text = format!("{} ({}{about})", f.message, f.subject);
        if let Some(fix) = f.fix {
            text.push_str(&format!(". Fix: {fix}"));
        }
        result(f.code, level, &f.doc.file, f.position(), text);
    }
    for p in problems {
        result(
            &problem_rule(p),
            "error",
            &p.file,
            p.position(),
            p.describe(),
        );
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sidekill",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/sidekill",
                "properties": {"policy": policy},
                "rules": rules.iter().map(|r| json!({"id": r})).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}

/// A relative file reference for SARIF: path separators kept, other reserved characters
/// percent-encoded.
fn sarif_uri(file: &str) -> String {
    let mut out = String::new();
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_values_are_escaped() {
        assert_eq!(gh_data("50%\nnext"), "50%25%0Anext");
        assert_eq!(gh_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn sarif_uris_keep_slashes() {
        assert_eq!(sarif_uri("deploy/my job.yaml"), "deploy/my%20job.yaml");
    }
}
