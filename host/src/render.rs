//! Tables and colour for people on a terminal.
//!
//! The renderers read the module's answers as JSON and show what they find: a field that a
//! future policy version drops shows as `?`, a field it adds is ignored (it still shows in
//! `--format json`). They decide nothing. Colour is plain ANSI, used only when
//! [`Style::color`] is on (the command line turns it on for a terminal without `NO_COLOR`).

use std::fmt::Write as _;

use serde_json::Value;

/// Whether to use colour, and the helpers that apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dimmed.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Red: errors, `cannot-stop`.
    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Yellow: warnings, `may-stop`.
    pub fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Green: success, `stops`.
    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Cyan: informational.
    pub fn cyan(&self, text: &str) -> String {
        self.paint("36", text)
    }

    /// A severity (`error`, `warning`, `info`) in its colour.
    pub fn severity(&self, severity: &str) -> String {
        match severity {
            "error" => self.red(severity),
            "warning" => self.yellow(severity),
            _ => self.cyan(severity),
        }
    }

    /// A verdict (`stops`, `may-stop`, `cannot-stop`) in its colour.
    pub fn verdict(&self, verdict: &str) -> String {
        match verdict {
            "stops" => self.green(verdict),
            "may-stop" => self.yellow(verdict),
            _ => self.red(verdict),
        }
    }
}

/// A plain-text table: the first row is the header, columns are padded to their widest
/// cell, the last column is not padded.
#[derive(Debug, Default, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with `indent` spaces before each line and a bold header.
    pub fn render(&self, indent: usize, style: &Style) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let padded = if last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}  ", width = widths[i])
                };
                line.push_str(&padded);
            }
            let line = line.trim_end();
            let line = if r == 0 {
                style.bold(line)
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "{:indent$}{line}", "");
        }
        out
    }
}

/// A string field, or `?`.
pub fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// A string field, or `-` when absent.
fn opt<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn list<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An argv as a shell would read it: `/bin/sh -c 'kill -15 1'`.
pub fn shell_words(argv: &[Value]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_str().unwrap_or("?");
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=%@,+".contains(c));
            if safe {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stop request: `exec /bin/sh -c 'kill -15 1'`, `http POST :4191/shutdown (pods/proxy)`,
/// `image-swap to sidekill-nop:0.1.0 (containers[1])` or
/// `ephemeral sidekill-quitter:0.1.0 -> istio-proxy: /sidekill-quitter http POST ...`.
pub fn action(action: &Value) -> String {
    match action.get("kind").and_then(Value::as_str) {
        Some("exec") => format!("exec {}", shell_words(list(action, "argv"))),
        Some("http") => format!(
            "http {} :{}{} (pods/proxy)",
            text(action, "method"),
            action.get("port").map_or("?".into(), Value::to_string),
            text(action, "path")
        ),
        Some("image-swap") => format!(
            "image-swap to {} (containers[{}])",
            text(action, "image"),
            action
                .get("containerIndex")
                .map_or("?".into(), Value::to_string)
        ),
        Some("ephemeral") => format!(
            "ephemeral {} -> {}: {}",
            text(action, "image"),
            text(action, "targetContainerName"),
            shell_words(list(action, "argv"))
        ),
        _ => action.to_string(),
    }
}

/// One step of a container's stop, as `plan`, `stop` and the executor's Events show it.
pub fn step(step: &Value) -> String {
    match step.get("step").and_then(Value::as_str) {
        Some("await") => format!("await container {} terminated", text(step, "container")),
        Some("send") => format!(
            "send {:<7}  {}",
            text(step, "signalName"),
            action(step.get("action").unwrap_or(&Value::Null))
        ),
        Some("wait") => format!(
            "wait up to {} s for the container to terminate",
            step.get("seconds").map_or("?".into(), Value::to_string)
        ),
        _ => step.to_string(),
    }
}

/// Renders one plan report (one subject of the `plan` answer).
pub fn subject(report: &Value, origin: &str, style: &Style) -> String {
    // Every string of the answer is the module's (or the manifest's): shown, never obeyed.
    let report = &crate::escape::value(report);
    let mut out = String::new();
    let source = report.get("source").unwrap_or(&Value::Null);
    let pod = report.get("pod").unwrap_or(&Value::Null);
    let mut heading = format!("{} {}", text(source, "kind"), text(source, "name"));
    if let Some(ns) = source.get("namespace").and_then(Value::as_str) {
        heading.push_str(&format!(" (namespace {ns})"));
    }
    if let Some(template) = source.get("template").and_then(Value::as_str) {
        heading.push_str(&format!(", template {template}"));
    }
    let _ = writeln!(
        out,
        "{}  {}",
        style.bold(&heading),
        style.dim(&format!("{origin} at {}", text(source, "path")))
    );
    let argo = match pod.get("argo").and_then(Value::as_bool) {
        Some(true) => "Argo Workflows pod",
        Some(false) => "not an Argo pod",
        None => "?",
    };
    let _ = writeln!(
        out,
        "  pod {}: {argo}: {}",
        text(pod, "name"),
        text(pod, "evidence")
    );
    let mains: Vec<&str> = list(pod, "mainContainers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let _ = writeln!(
        out,
        "  main containers: {}",
        if mains.is_empty() {
            "-".to_string()
        } else {
            mains.join(", ")
        }
    );
    let readiness = report.get("readiness").unwrap_or(&Value::Null);
    let _ = writeln!(
        out,
        "  readiness: {} ({})",
        text(readiness, "state"),
        text(readiness, "reason")
    );

    let containers = list(report, "containers");
    if !containers.is_empty() {
        let _ = writeln!(out);
        let mut table = Table::new(&["CONTAINER", "LIST", "ROLE", "INJECTOR", "SOFTWARE", "IMAGE"]);
        for c in containers {
            table.row(vec![
                text(c, "name").into(),
                text(c, "list").into(),
                text(c, "role").into(),
                opt(c, "injector").into(),
                opt(c, "software").into(),
                text(c, "image").into(),
            ]);
        }
        out.push_str(&table.render(2, style));
        let _ = writeln!(out, "  {}", style.dim("evidence:"));
        let width = containers
            .iter()
            .map(|c| text(c, "name").chars().count())
            .max()
            .unwrap_or(0);
        for c in containers {
            for e in list(c, "evidence") {
                let _ = writeln!(
                    out,
                    "    {:<width$}  {}: {}",
                    text(c, "name"),
                    text(e, "rule"),
                    text(e, "detail")
                );
            }
        }
    }

    let matrix = report.get("matrix").unwrap_or(&Value::Null);
    let row = matrix.get("row").unwrap_or(&Value::Null);
    let applies: Vec<&str> = list(matrix, "applies")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let _ = writeln!(
        out,
        "\n  matrix: executor {} ({})",
        text(matrix, "executor"),
        text(row, "versions")
    );
    let executor = text(matrix, "executor");
    let who = if executor == "none" {
        "sidekill"
    } else {
        "Argo"
    };
    for column in &applies {
        let cell = row.get(*column).unwrap_or(&Value::Null);
        let _ = writeln!(
            out,
            "    {column}: {who} {} ({})",
            method_words(text(cell, "method")),
            text(cell, "path")
        );
    }
    if executor != "none" && !applies.is_empty() {
        let _ = writeln!(
            out,
            "    {}",
            style.dim("sidekill's plan below is the same whatever the executor")
        );
    }
    if applies.is_empty() {
        let _ = writeln!(
            out,
            "    {}",
            style.dim("no sidecar column applies to this pod")
        );
    }

    let plan = report.get("plan").unwrap_or(&Value::Null);
    let _ = writeln!(
        out,
        "\n  {} (grace period {} s):",
        style.bold("plan"),
        plan.get("gracePeriodSeconds")
            .map_or("?".into(), Value::to_string)
    );
    let stops = list(plan, "stops");
    if stops.is_empty() {
        let _ = writeln!(out, "    nothing to stop");
    }
    for (i, stop) in stops.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {}. {}  {}  {} command  {}",
            i + 1,
            style.bold(text(stop, "container")),
            text(stop, "group"),
            text(stop, "source"),
            style.verdict(text(stop, "verdict"))
        );
        for s in list(stop, "steps") {
            let _ = writeln!(out, "         {}", step(s));
        }
    }
    let skipped = list(plan, "skipped");
    if !skipped.is_empty() {
        let _ = writeln!(out, "    {}", style.dim("left alone:"));
        let width = skipped
            .iter()
            .map(|s| text(s, "container").chars().count())
            .max()
            .unwrap_or(0);
        for s in skipped {
            let _ = writeln!(
                out,
                "      {:<width$}  {}",
                text(s, "container"),
                text(s, "reason")
            );
        }
    }

    let diagnostics = list(report, "diagnostics");
    if !diagnostics.is_empty() {
        let _ = writeln!(out, "\n  {}:", style.bold("diagnostics"));
        for d in diagnostics {
            let about = d
                .get("container")
                .and_then(Value::as_str)
                .map(|c| format!("  [{c}]"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {} {}{about}",
                style.severity(text(d, "severity")),
                text(d, "code"),
            );
            let _ = writeln!(out, "      {}", text(d, "message"));
            let _ = writeln!(out, "      {} {}", style.green("fix:"), text(d, "fix"));
        }
    }
    out
}

/// A matrix cell's `method` in words. The module's JSON keeps the method's name (`Any`,
/// `KubectlExec`, ...) for programs; people read what it means. A method this host does not
/// know is shown by its name.
pub fn method_words(method: &str) -> &str {
    match method {
        "Any" => "stops it (any image)",
        "Shell" => "needs a shell in the image",
        "KubectlExec" => "exec into it",
        "NoneNeeded" => "kubelet stops it",
        "NotApplicable" => "no such sidecar",
        "Unsupported" => "cannot stop it",
        other => other,
    }
}

/// The row of the executor `none`: no Argo, sidekill alone. What sidekill does does not
/// depend on the executor, so this row is also what sidekill does beside any executor.
fn sidekill_row(answer: &Value) -> Option<&Value> {
    list(answer, "rows")
        .iter()
        .find(|r| r.get("executor").and_then(Value::as_str) == Some("none"))
}

/// Renders the `matrix` answer: per executor, what Argo can do with each kind of sidecar
/// and what sidekill does, in words; then the paths.
pub fn matrix(answer: &Value, style: &Style) -> String {
    let answer = &crate::escape::value(answer);
    let columns: Vec<&str> = list(answer, "columns")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut header = vec!["EXECUTOR", "WHO"];
    let upper: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    header.extend(upper.iter().map(String::as_str));
    let mut table = Table::new(&header);
    let rows = list(answer, "rows");
    let sidekill = sidekill_row(answer);
    let words = |row: &Value, column: &str| {
        method_words(text(row.get(column).unwrap_or(&Value::Null), "method")).to_string()
    };
    for row in rows {
        let executor = text(row, "executor");
        let is_none = Some(row) == sidekill;
        if !is_none {
            let mut cells = vec![executor.to_string(), "Argo".to_string()];
            cells.extend(columns.iter().map(|c| words(row, c)));
            table.row(cells);
        }
        if let Some(sidekill) = sidekill {
            let mut cells = vec![
                if is_none {
                    executor.to_string()
                } else {
                    String::new()
                },
                "sidekill".to_string(),
            ];
            cells.extend(columns.iter().map(|c| words(sidekill, c)));
            table.row(cells);
        }
    }
    let mut out = table.render(0, style);
    let _ = writeln!(
        out,
        "\nDECLARED: sidecars the Workflow (or sidekill's annotations) declares. INJECTED: \
         added by an\ninjector (istio, linkerd, ...). NATIVE: init containers with \
         restartPolicy Always, which the\nkubelet stops after the main containers \
         (Kubernetes 1.29+). `exec into it`: a command run in the\ncontainer through \
         pods/exec, which works only if the image has its program. sidekill does the\n\
         same with every executor: `sidekill plan` shows its commands for each pod."
    );
    let _ = writeln!(out, "\n{}", style.bold("Argo versions"));
    for row in rows {
        let _ = writeln!(
            out,
            "  {:<9} {}",
            text(row, "executor"),
            text(row, "versions")
        );
    }
    let _ = writeln!(out, "\n{}", style.bold("paths"));
    for row in rows {
        let who = if Some(row) == sidekill {
            "sidekill"
        } else {
            "Argo"
        };
        for column in &columns {
            let cell = row.get(*column).unwrap_or(&Value::Null);
            let _ = writeln!(
                out,
                "  {:<9} {:<8} {:<9} {}",
                text(row, "executor"),
                who,
                column,
                text(cell, "path")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argv_is_shell_quoted() {
        assert_eq!(
            shell_words(&[json!("/bin/sh"), json!("-c"), json!("kill -15 1")]),
            "/bin/sh -c 'kill -15 1'"
        );
        assert_eq!(shell_words(&[json!("it's")]), r"'it'\''s'");
    }

    #[test]
    fn actions_render_every_kind() {
        assert_eq!(
            action(&json!({"kind": "http", "method": "POST", "port": 4191, "path": "/shutdown"})),
            "http POST :4191/shutdown (pods/proxy)"
        );
        assert_eq!(
            action(
                &json!({"kind": "image-swap", "containerIndex": 1, "image": "sidekill-nop:0.1.0"})
            ),
            "image-swap to sidekill-nop:0.1.0 (containers[1])"
        );
        assert_eq!(
            action(
                &json!({"kind": "ephemeral", "image": "q", "targetContainerName": "side",
                "argv": ["/sidekill-quitter", "signal", "15", "--process", "envoy"]})
            ),
            "ephemeral q -> side: /sidekill-quitter signal 15 --process envoy"
        );
    }

    /// `plan` and `stop` (and the executor's Events) show a step with this one function.
    #[test]
    fn a_step_reads_the_same_everywhere() {
        let s = json!({"step": "send", "signalName": "SIGTERM",
            "action": {"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]}});
        assert_eq!(step(&s), "send SIGTERM  exec /bin/sh -c 'kill -15 1'");
        assert_eq!(
            step(&json!({"step": "wait", "seconds": 2})),
            "wait up to 2 s for the container to terminate"
        );
    }

    #[test]
    fn tables_pad_all_but_the_last_column() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["long".into(), "x".into()]);
        assert_eq!(
            t.render(1, &Style { color: false }),
            " A     BB\n long  x\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        assert_eq!(Style { color: false }.red("x"), "x");
        assert_eq!(Style { color: true }.red("x"), "\x1b[31mx\x1b[0m");
    }

    #[test]
    fn missing_fields_render_as_question_marks() {
        let out = subject(&json!({}), "f.yaml", &Style { color: false });
        assert!(out.starts_with("? ?"), "{out}");
    }
}
