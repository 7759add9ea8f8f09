//! `sidekill plan`: one plan per pod of each manifest, as a table, JSON, SARIF or GitHub
//! Actions annotations, and an exit code a CI job can gate on (`--fail-on`).

use crate::error::AnswerError;
use serde_json::{json, Map, Value};
use sidekill_policy::Call;

mod ci;
mod facts;

use clap::{Args, ValueEnum};

pub use facts::FactsArgs;
pub(crate) use facts::{check_facts, facts, request};

use super::{load_policy, module_origin, Context, Exit, Format, PolicyArgs};
use crate::answer::{PlanAnswer, Subject};
use crate::error::{Error, Result};
use crate::input::{self, Document};
use crate::policy::{export_name, unwrap_envelope, AnswerBudget};
use crate::render;

pub(super) const ABOUT: &str = "\
Plan how the sidecars of each object's pods would be stopped.

Each FILE (or `-` for standard input) holds YAML or JSON: one object or several
(`---`-separated YAML documents, or concatenated JSON objects). Pods, Jobs, CronJobs,
Deployments, ReplicaSets, StatefulSets, DaemonSets, Argo Workflows and WorkflowTemplates
are planned: one plan per pod the object stands for (a Workflow has one per template that
runs as a pod). A `List` is planned item by item. Objects of kinds the policy does not
plan (ServiceAccount, ConfigMap, Service, ...) and documents with no `kind` (such as a
kustomization.yaml) are skipped with a note, so the output of `helm template` or
`kustomize build`, or a repository's YAML files, are checked as they are. A YAML document with a syntax
error is reported with its line and column, and the other documents are still planned.

For each pod the answer shows every container's classification with its evidence, the
support-matrix row that applies, the plan (which containers are stopped, in what order,
with which commands and waits) and diagnostics with fixes.

Exit codes: 0 when no finding is at or above --fail-on (default `error`); 1 when one is
(a container that cannot be stopped, an error-level diagnostic, ...); 2 on an input error:
a file that cannot be read, a YAML or JSON error, an object the policy cannot plan, a
fact the policy refuses (every other object is still planned and shown).

In CI (README, \"Checking manifests in CI\"):
  helm template my-release ./chart | sidekill plan --format github -
  git ls-files -z '*.yaml' | xargs -0 sidekill plan --format sarif > sidekill.sarif

JSON output: {\"policy\": {name, version, sha256, origin, build},
              \"plans\": [{file, document, item?, line, object, answer}],
              \"skipped\": [{file, document, item?, line, object, reason}],
              \"errors\": [{file, document?, item?, error, message, code?, path?, line?,
                          column?}]}
where `document` and `item` count from 1 (`item`: the position in a `List`), `line` is
where the document starts, and `answer` is the policy module's answer, unchanged.

SARIF (2.1.0) and GitHub output: one result per diagnostic, at the file, line and
column of its container's `name:` when found, else of its document; info diagnostics
only in SARIF (level `note`); one `error` result per input error.";

/// Which findings make `plan` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    /// Never: exit 0 whatever the plans say (2 still for input errors).
    Never,
    /// A container that cannot be stopped (verdict `cannot-stop`).
    CannotStop,
    /// That, or an error-level diagnostic (such as a malformed kill-cmd).
    Error,
    /// Any of those, or a warning-level diagnostic.
    Warning,
}

/// The facts and policy options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Manifest files (YAML or JSON); `-` reads standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Exit 1 on findings at or above this level [default: error]
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        default_value_t = FailOn::Error,
        hide_default_value = true,
        env = "SIDEKILL_FAIL_ON",
        long_help = "Which findings make the exit code 1: `cannot-stop` (a container that \
                     cannot be stopped), `error` (that, or an error-level diagnostic, such \
                     as a malformed kill-cmd that makes the pod hang), `warning` (any of \
                     those, or a warning), or `never`. Default: error. Input errors (a file \
                     that cannot be read, a YAML error, an object the policy refuses) exit 2 \
                     whatever the level; skipped non-workload objects never fail."
    )]
    pub fail_on: FailOn,

    /// Which policy module to run.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Facts passed to the policy.
    #[command(flatten)]
    pub facts: FactsArgs,
}

/// A problem with one file or document.
pub(crate) struct Problem {
    /// The file (`-` for standard input).
    pub(crate) file: String,
    /// The document, when the problem is one document's.
    pub(crate) document: Option<usize>,
    /// The `List` item, when it is one item's.
    pub(crate) item: Option<usize>,
    /// `kind name` of the object, when it was read.
    pub(crate) label: Option<String>,
    /// Where the document starts, when known.
    pub(crate) line: Option<usize>,
    /// What went wrong.
    pub(crate) error: Error,
}

impl Problem {
    pub(crate) fn of(doc: &Document, error: Error) -> Problem {
        Problem {
            file: doc.file.clone(),
            document: Some(doc.index),
            item: doc.item,
            label: Some(doc.label()),
            line: Some(doc.line),
            error,
        }
    }

    /// The problem as JSON for the `errors` list.
    pub(crate) fn json(&self) -> Value {
        let mut out = Map::new();
        out.insert("file".into(), json!(self.file));
        if let Some(document) = self.document {
            out.insert("document".into(), json!(document));
        }
        if let Some(item) = self.item {
            out.insert("item".into(), json!(item));
        }
        out.insert("error".into(), json!(self.error.name()));
        out.insert("message".into(), json!(self.error.report().to_string()));
        match &self.error {
            Error::Answer(AnswerError::Policy { code, path, .. }) => {
                out.insert("code".into(), json!(code));
                if let Some(path) = path {
                    out.insert("path".into(), json!(path));
                }
                if let Some(line) = self.line {
                    out.insert("line".into(), json!(line));
                }
            }
            Error::Syntax { line, column, .. } => {
                out.insert("line".into(), json!(line));
                out.insert("column".into(), json!(column));
            }
            _ => {}
        }
        Value::Object(out)
    }

    /// A one-line message: syntax and IO errors name the file themselves; others get
    /// `FILE: document N (Kind name): `.
    pub(crate) fn describe(&self) -> String {
        match (&self.error, self.document) {
            (Error::Syntax { .. } | Error::Io { .. }, _) => self.error.report().to_string(),
            (_, Some(n)) => format!(
                "{}: document {n}{}{}: {}",
                self.file,
                self.item.map(|i| format!(", item {i}")).unwrap_or_default(),
                self.label
                    .as_ref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default(),
                self.error.report()
            ),
            (_, None) => format!("{}: {}", self.file, self.error.report()),
        }
    }

    /// The line and column for annotations.
    fn position(&self) -> (usize, usize) {
        match &self.error {
            Error::Syntax { line, column, .. } => (*line, *column),
            _ => (self.line.unwrap_or(0), 1),
        }
    }
}

/// Reads every file; problems go to `problems`.
pub(crate) fn documents(files: &[String], problems: &mut Vec<Problem>) -> Vec<Document> {
    let mut out = Vec::new();
    for file in files {
        let problem = |document, error| Problem {
            file: file.clone(),
            document,
            item: None,
            label: None,
            line: None,
            error,
        };
        match input::read(file) {
            Ok(manifest) => {
                if manifest.documents.is_empty() && manifest.errors.is_empty() {
                    problems.push(problem(
                        None,
                        Error::Syntax {
                            file: file.clone(),
                            line: 1,
                            column: 1,
                            message:
                                "no object found (the file is empty or holds only empty documents)"
                                    .into(),
                        },
                    ));
                }
                problems.extend(
                    manifest
                        .errors
                        .into_iter()
                        .map(|(document, error)| problem(document, error)),
                );
                out.extend(manifest.documents);
            }
            Err(e) => problems.push(problem(None, e)),
        }
    }
    out
}

/// A document the policy does not plan: its kind is not a workload.
struct Skipped<'d> {
    doc: &'d Document,
    /// The policy's words on what it plans instead.
    reason: String,
}

/// Whether an error answer means "not a workload", and why: the policy answers
/// `unsupported_kind` at `object.kind` for a kind it does not plan, and `missing_field` at
/// `object.kind` for a document that is no Kubernetes object (a kustomization.yaml, a
/// values.yaml, a CI file among `git ls-files`). Deeper paths (a `List` item inside a
/// `PodList`, a field of a Job) are errors of a workload and stay errors.
fn skipped_reason(error: &Error) -> Option<String> {
    match error {
        Error::Answer(AnswerError::Policy {
            code,
            path: Some(path),
            ..
        }) if code == "missing_field" && path == "object.kind" => {
            Some("not a Kubernetes object (it has no `kind`)".into())
        }
        Error::Answer(AnswerError::Policy {
            code,
            path: Some(path),
            message,
        }) if code == "unsupported_kind" && path == "object.kind" => {
            // "unsupported kind `X` at `object.kind`: expected Pod, Job, ..." -> the list.
            let planned = message
                .split_once(": expected ")
                .map_or(message.as_str(), |(_, kinds)| kinds);
            Some(format!(
                "not a workload sidekill plans (it plans {planned})"
            ))
        }
        _ => None,
    }
}

/// One diagnostic (or cannot-stop verdict) of a plan, with where it is.
struct Finding<'a> {
    doc: &'a Document,
    /// `error`, `warning` or `info`.
    severity: &'a str,
    code: &'a str,
    message: String,
    fix: Option<&'a str>,
    container: Option<&'a str>,
    /// Kind, name and template of the pod's source, for titles.
    subject: String,
}

impl Finding<'_> {
    fn position(&self) -> (usize, usize) {
        self.container
            .and_then(|c| self.doc.container_position(c))
            .unwrap_or((self.doc.line, 1))
    }
}

fn subject_label(subject: &Subject) -> String {
    let source = &subject.source;
    let mut label = format!(
        "{} {}",
        source.kind.as_deref().unwrap_or("?"),
        source.name.as_deref().unwrap_or("?")
    );
    if let Some(template) = &source.template {
        label.push_str(&format!(", template {template}"));
    }
    label
}

fn findings<'a>(doc: &'a Document, answer: &'a PlanAnswer, out: &mut Vec<Finding<'a>>) {
    for subject in &answer.subjects {
        let label = subject_label(subject);
        for d in &subject.diagnostics {
            out.push(Finding {
                doc,
                severity: d.severity.as_deref().unwrap_or("info"),
                code: d.code.as_deref().unwrap_or("?"),
                message: d.message.as_deref().unwrap_or("?").to_string(),
                fix: d.fix.as_deref(),
                container: d.container.as_deref(),
                subject: label.clone(),
            });
        }
        for stop in &subject.plan.stops {
            if stop.verdict.as_deref() == Some("cannot-stop") {
                let container = Some(stop.container.as_str());
                out.push(Finding {
                    doc,
                    severity: "cannot-stop",
                    code: "cannot-stop",
                    message: format!(
                        "sidecar `{}` cannot be stopped: the plan has no way to end it",
                        stop.container
                    ),
                    fix: None,
                    container,
                    subject: label.clone(),
                });
            }
        }
    }
}

/// The findings to show as annotations: a cannot-stop verdict only when the policy gave no
/// error diagnostic about the same container (it does today: the diagnostic says why and
/// how to fix it, the verdict would say it again).
fn shown<'f, 'a>(found: &'f [Finding<'a>]) -> Vec<&'f Finding<'a>> {
    found
        .iter()
        .filter(|f| {
            f.severity != "cannot-stop"
                || !found.iter().any(|g| {
                    g.severity == "error"
                        && std::ptr::eq(g.doc, f.doc)
                        && g.subject == f.subject
                        && g.container == f.container
                })
        })
        .collect()
}

/// Whether a finding is at or above the `--fail-on` level.
fn fails(level: FailOn, severity: &str) -> bool {
    match severity {
        "cannot-stop" => level >= FailOn::CannotStop,
        "error" => level >= FailOn::Error,
        "warning" => level >= FailOn::Warning,
        _ => false,
    }
}

pub(super) fn run(ctx: &mut Context<'_>, args: &PlanArgs) -> Result<Exit> {
    let (policy, origin) = load_policy(ctx.global, &args.policy)?;
    let facts = facts(&args.facts);
    if let Err(message) = check_facts(&policy, &facts) {
        ctx.error(&message);
        return Ok(Exit::Error);
    }
    let mut problems = Vec::new();
    let docs = documents(&args.files, &mut problems);

    let mut answers = Vec::new();
    let mut skipped = Vec::new();
    let mut budget = AnswerBudget::new(ctx.global.answer_budget_mib << 20);
    for (i, doc) in docs.iter().enumerate() {
        let answer = match policy.call(Call::Plan, &request(doc, &facts)) {
            Ok(bytes) => {
                if let Err(e) = budget.charge(bytes.len(), docs.len() - i - 1) {
                    problems.push(Problem::of(doc, e));
                    break;
                }
                unwrap_envelope(export_name(Call::Plan), &bytes)
                    .and_then(|raw| Ok((PlanAnswer::read(&raw)?, raw)))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((typed, raw)) => answers.push((doc, raw, typed)),
            Err(e) => match skipped_reason(&e) {
                Some(reason) => skipped.push(Skipped { doc, reason }),
                None => problems.push(Problem::of(doc, e)),
            },
        }
    }
    let mut all = Vec::new();
    for (doc, _, typed) in &answers {
        findings(doc, typed, &mut all);
    }
    let found = shown(&all);
    let exit = if !problems.is_empty() {
        Exit::Error
    } else if all.iter().any(|f| fails(args.fail_on, f.severity)) {
        Exit::Report
    } else {
        Exit::Ok
    };

    // Errors on standard error in every format (also in the output for json, sarif and
    // github); notes only beside tables and annotations (json has `skipped`).
    for problem in &problems {
        ctx.error(&problem.describe());
    }
    if ctx.format != Format::Json {
        notes(ctx, &skipped);
    }
    match ctx.format {
        Format::Json => {
            let policy_json = json!({
                "name": policy.info().name,
                "version": policy.info().version,
                "sha256": policy.sha256().to_string(),
                "origin": origin,
                "build": module_origin(args.policy.policy.as_deref()),
            });
            let plans: Vec<Value> = answers
                .iter()
                .map(|(doc, raw, _)| {
                    let mut plan = place_json(doc);
                    plan["answer"] = raw.clone();
                    plan
                })
                .collect();
            let skipped: Vec<Value> = skipped
                .iter()
                .map(|s| {
                    let mut v = place_json(s.doc);
                    v["reason"] = json!(s.reason);
                    v
                })
                .collect();
            ctx.json_out(&json!({
                "policy": policy_json,
                "plans": plans,
                "skipped": skipped,
                "errors": problems.iter().map(Problem::json).collect::<Vec<_>>(),
            }))?;
        }
        Format::Github => ctx.print(&ci::github(&found, &problems))?,
        Format::Sarif => {
            let version = format!("{} {}", policy.info().name, policy.info().version);
            ctx.json_out(&ci::sarif(&found, &problems, &version))?;
        }
        Format::Table | Format::Auto => {
            let mut text = String::new();
            for (doc, _, typed) in &answers {
                let origin = format!("{} {}", doc.file, doc.place());
                for subject in &typed.subjects {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&render::subject(subject, &origin, &ctx.style));
                }
            }
            ctx.print(&text)?;
        }
    }
    Ok(exit)
}

/// `{file, document, item?, line, object}` of a document.
fn place_json(doc: &Document) -> Value {
    let mut v = json!({"file": doc.file, "document": doc.index});
    if let Some(item) = doc.item {
        v["item"] = json!(item);
    }
    v["line"] = json!(doc.line);
    v["object"] = json!(doc.label());
    v
}

/// One note per skipped document on standard error, and the kinds planned once.
fn notes(ctx: &Context<'_>, skipped: &[Skipped<'_>]) {
    let note = ctx.err_style.cyan("note:");
    for s in skipped {
        let short = if s.doc.object.get("kind").is_some() {
            "skipped, not a workload"
        } else {
            "skipped, not a Kubernetes object (no kind)"
        };
        eprintln!(
            "{note} {}: {} ({}): {short}",
            s.doc.file,
            s.doc.place(),
            s.doc.label()
        );
    }
    let kinds = skipped
        .iter()
        .filter(|s| s.doc.object.get("kind").is_some())
        .collect::<Vec<_>>();
    if let Some(first) = kinds.first() {
        eprintln!(
            "{note} {} skipped: {}",
            if kinds.len() == 1 {
                "1 object".to_string()
            } else {
                format!("{} objects", kinds.len())
            },
            first.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_levels_nest() {
        assert!(fails(FailOn::Error, "cannot-stop"));
        assert!(fails(FailOn::Error, "error"));
        assert!(!fails(FailOn::Error, "warning"));
        assert!(fails(FailOn::Warning, "warning"));
        assert!(!fails(FailOn::CannotStop, "error"));
        assert!(!fails(FailOn::Never, "cannot-stop"));
        assert!(!fails(FailOn::Warning, "info"));
    }
}
