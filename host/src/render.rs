//! Tables and colour for people on a terminal.
//!
//! The renderers show the module's answers as the host reads them ([`crate::answer`]): a field
//! an older policy version lacks shows as `?`, a field a newer one adds is not shown (it still
//! shows in `--format json`), and every string is escaped. They decide nothing. Colour is plain ANSI, used only when
//! [`Style::color`] is on (the command line turns it on for a terminal without `NO_COLOR`).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::answer::{Action, MatrixAnswer, MatrixRow, Step, Subject};

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

/// A string of the answer as shown: escaped ([`crate::escape::text`]: every string of the
/// answer is the module's or the manifest's, shown, never obeyed), `?` when absent.
fn show(text: Option<&str>) -> Cow<'_, str> {
    text.map_or(Cow::Borrowed("?"), crate::escape::text)
}

/// [`show`], `-` when absent.
fn show_or_dash(text: Option<&str>) -> Cow<'_, str> {
    text.map_or(Cow::Borrowed("-"), crate::escape::text)
}

/// An argv as a shell would read it: `/bin/sh -c 'kill -15 1'`, escaped.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=%@,+".contains(c));
            if safe {
                a.to_string()
            } else {
                format!("'{}'", crate::escape::text(a).replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stop request: `exec /bin/sh -c 'kill -15 1'`, `http POST :4191/shutdown (pods/proxy)`,
/// `image-swap to sidekill-nop:0.1.0 (containers[1])` or
/// `ephemeral sidekill-quitter:0.1.0 -> istio-proxy: /sidekill-quitter http POST ...`.
pub fn action(action: &Action) -> String {
    match action {
        Action::Exec { argv } => format!("exec {}", shell_words(argv)),
        Action::Http { method, port, path } => format!(
            "http {} :{port}{} (pods/proxy)",
            crate::escape::text(method),
            crate::escape::text(path)
        ),
        Action::ImageSwap {
            container_index,
            image,
        } => format!(
            "image-swap to {} (containers[{container_index}])",
            crate::escape::text(image)
        ),
        Action::Ephemeral(q) => format!(
            "ephemeral {} -> {}: {}",
            crate::escape::text(&q.image),
            crate::escape::text(&q.target_container_name),
            shell_words(&q.argv)
        ),
    }
}

/// One step of a container's stop, as `plan`, `stop` and the executor's Events show it.
pub fn step(step: &Step) -> String {
    match step {
        Step::Await { container } => {
            format!(
                "await container {} terminated",
                crate::escape::text(container)
            )
        }
        Step::Send {
            signal_name,
            action: a,
            ..
        } => format!(
            "send {:<7}  {}",
            crate::escape::text(signal_name),
            action(a)
        ),
        Step::Wait { seconds } => {
            format!("wait up to {seconds} s for the container to terminate")
        }
    }
}

/// Renders one plan report (one subject of the `plan` answer).
pub fn subject(report: &Subject, origin: &str, style: &Style) -> String {
    let mut out = String::new();
    let source = &report.source;
    let pod = &report.pod;
    let mut heading = format!(
        "{} {}",
        show(source.kind.as_deref()),
        show(source.name.as_deref())
    );
    if let Some(ns) = &source.namespace {
        heading.push_str(&format!(" (namespace {})", crate::escape::text(ns)));
    }
    if let Some(template) = &source.template {
        heading.push_str(&format!(", template {}", crate::escape::text(template)));
    }
    let _ = writeln!(
        out,
        "{}  {}",
        style.bold(&heading),
        style.dim(&format!("{origin} at {}", show(source.path.as_deref())))
    );
    let argo = match pod.argo {
        Some(true) => "Argo Workflows pod",
        Some(false) => "not an Argo pod",
        None => "?",
    };
    let _ = writeln!(
        out,
        "  pod {}: {argo}: {}",
        show(pod.name.as_deref()),
        show(pod.evidence.as_deref())
    );
    let mains: Vec<Cow<str>> = pod
        .main_containers
        .iter()
        .map(|m| crate::escape::text(m))
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
    let _ = writeln!(
        out,
        "  readiness: {} ({})",
        show(report.readiness.state.as_deref()),
        show(report.readiness.reason.as_deref())
    );

    let containers = &report.containers;
    if !containers.is_empty() {
        let _ = writeln!(out);
        let mut table = Table::new(&["CONTAINER", "LIST", "ROLE", "INJECTOR", "SOFTWARE", "IMAGE"]);
        for c in containers {
            table.row(vec![
                show(c.name.as_deref()).into(),
                show(c.list.as_deref()).into(),
                show(c.role.as_deref()).into(),
                show_or_dash(c.injector.as_deref()).into(),
                show_or_dash(c.software.as_deref()).into(),
                show(c.image.as_deref()).into(),
            ]);
        }
        out.push_str(&table.render(2, style));
        let _ = writeln!(out, "  {}", style.dim("evidence:"));
        let width = containers
            .iter()
            .map(|c| show(c.name.as_deref()).chars().count())
            .max()
            .unwrap_or(0);
        for c in containers {
            for e in &c.evidence {
                let _ = writeln!(
                    out,
                    "    {:<width$}  {}: {}",
                    show(c.name.as_deref()),
                    show(e.rule.as_deref()),
                    show(e.detail.as_deref())
                );
            }
        }
    }

    let matrix = &report.matrix;
    let executor = show(matrix.executor.as_deref());
    let _ = writeln!(
        out,
        "\n  matrix: executor {executor} ({})",
        show(matrix.row.versions.as_deref())
    );
    let who = if executor == "none" {
        "sidekill"
    } else {
        "Argo"
    };
    for column in &matrix.applies {
        let cell = matrix.row.cells.get(column).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "    {}: {who} {} ({})",
            crate::escape::text(column),
            method_words(&show(cell.method.as_deref())),
            show(cell.path.as_deref())
        );
    }
    if executor != "none" && !matrix.applies.is_empty() {
        let _ = writeln!(
            out,
            "    {}",
            style.dim("sidekill's plan below is the same whatever the executor")
        );
    }
    if matrix.applies.is_empty() {
        let _ = writeln!(
            out,
            "    {}",
            style.dim("no sidecar column applies to this pod")
        );
    }

    let plan = &report.plan;
    let _ = writeln!(
        out,
        "\n  {} (grace period {} s):",
        style.bold("plan"),
        plan.grace_period_seconds
            .map_or("?".into(), |s| s.to_string())
    );
    if plan.stops.is_empty() {
        let _ = writeln!(out, "    nothing to stop");
    }
    for (i, stop) in plan.stops.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {}. {}  {}  {} command  {}",
            i + 1,
            style.bold(&crate::escape::text(&stop.container)),
            show(stop.group.as_deref()),
            show(stop.source.as_deref()),
            style.verdict(&show(stop.verdict.as_deref()))
        );
        for s in &stop.steps {
            let _ = writeln!(out, "         {}", step(s));
        }
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(out, "    {}", style.dim("left alone:"));
        let width = plan
            .skipped
            .iter()
            .map(|s| show(s.container.as_deref()).chars().count())
            .max()
            .unwrap_or(0);
        for s in &plan.skipped {
            let _ = writeln!(
                out,
                "      {:<width$}  {}",
                show(s.container.as_deref()),
                show(s.reason.as_deref())
            );
        }
    }

    if !report.diagnostics.is_empty() {
        let _ = writeln!(out, "\n  {}:", style.bold("diagnostics"));
        for d in &report.diagnostics {
            let about = d
                .container
                .as_deref()
                .map(|c| format!("  [{}]", crate::escape::text(c)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {} {}{about}",
                style.severity(&show(d.severity.as_deref())),
                show(d.code.as_deref()),
            );
            let _ = writeln!(out, "      {}", show(d.message.as_deref()));
            let _ = writeln!(
                out,
                "      {} {}",
                style.green("fix:"),
                show(d.fix.as_deref())
            );
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

/// Renders the `matrix` answer: per executor, what Argo can do with each kind of sidecar
/// and what sidekill does, in words; then the paths. The row of the executor `none` (no
/// Argo, sidekill alone) is also what sidekill does beside any executor: what sidekill does
/// does not depend on the executor.
pub fn matrix(answer: &MatrixAnswer, style: &Style) -> String {
    let columns: Vec<Cow<str>> = answer
        .columns
        .iter()
        .map(|c| crate::escape::text(c))
        .collect();
    let mut header = vec!["EXECUTOR", "WHO"];
    let upper: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    header.extend(upper.iter().map(String::as_str));
    let mut table = Table::new(&header);
    let sidekill = answer
        .rows
        .iter()
        .find(|r| r.executor.as_deref() == Some("none"));
    let cell = |row: &MatrixRow, column: &str| row.cells.get(column).cloned().unwrap_or_default();
    let words = |row: &MatrixRow, column: &str| {
        method_words(&show(cell(row, column).method.as_deref())).to_string()
    };
    for row in &answer.rows {
        let executor = show(row.executor.as_deref());
        let is_none = sidekill.is_some_and(|s| std::ptr::eq(s, row));
        if !is_none {
            let mut cells = vec![executor.to_string(), "Argo".to_string()];
            cells.extend(answer.columns.iter().map(|c| words(row, c)));
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
            cells.extend(answer.columns.iter().map(|c| words(sidekill, c)));
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
    for row in &answer.rows {
        let _ = writeln!(
            out,
            "  {:<9} {}",
            show(row.executor.as_deref()),
            show(row.versions.as_deref())
        );
    }
    let _ = writeln!(out, "\n{}", style.bold("paths"));
    for row in &answer.rows {
        let who = if sidekill.is_some_and(|s| std::ptr::eq(s, row)) {
            "sidekill"
        } else {
            "Argo"
        };
        for (column, raw) in columns.iter().zip(&answer.columns) {
            let _ = writeln!(
                out,
                "  {:<9} {:<8} {:<9} {}",
                show(row.executor.as_deref()),
                who,
                column,
                show(cell(row, raw).path.as_deref())
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn argv_is_shell_quoted() {
        assert_eq!(
            shell_words(&words(&["/bin/sh", "-c", "kill -15 1"])),
            "/bin/sh -c 'kill -15 1'"
        );
        assert_eq!(shell_words(&words(&["it's"])), r"'it'\''s'");
        // A module's argv reaches a terminal escaped.
        assert_eq!(shell_words(&words(&["\u{1b}[2J"])), r"'\u{1b}[2J'");
    }

    #[test]
    fn actions_render_every_kind() {
        assert_eq!(
            action(&Action::Http {
                method: "POST".into(),
                port: 4191,
                path: "/shutdown".into()
            }),
            "http POST :4191/shutdown (pods/proxy)"
        );
        assert_eq!(
            action(&Action::ImageSwap {
                container_index: 1,
                image: "sidekill-nop:0.1.0".into()
            }),
            "image-swap to sidekill-nop:0.1.0 (containers[1])"
        );
        assert_eq!(
            action(&Action::Ephemeral(crate::answer::Quitter {
                target_container_name: "side".into(),
                image: "q".into(),
                argv: words(&["/sidekill-quitter", "signal", "15", "--process", "envoy"]),
                run_as_user: None,
            })),
            "ephemeral q -> side: /sidekill-quitter signal 15 --process envoy"
        );
    }

    /// `plan` and `stop` (and the executor's Events) show a step with this one function.
    #[test]
    fn a_step_reads_the_same_everywhere() {
        let s = Step::Send {
            signal: 15,
            signal_name: "SIGTERM".into(),
            action: Action::Exec {
                argv: words(&["/bin/sh", "-c", "kill -15 1"]),
            },
            expected_exit: None,
            endpoint: None,
        };
        assert_eq!(step(&s), "send SIGTERM  exec /bin/sh -c 'kill -15 1'");
        assert_eq!(
            step(&Step::Wait { seconds: 2 }),
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
        let out = subject(&Subject::default(), "f.yaml", &Style { color: false });
        assert!(out.starts_with("? ?"), "{out}");
    }
}
