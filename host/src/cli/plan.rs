//! `sidekill plan`: one plan per pod of each manifest, as a table, JSON, SARIF or GitHub
//! Actions annotations, and an exit code a CI job can gate on (`--fail-on`).

use serde_json::{json, Map, Value};
use sidekill_policy::Call;

use super::{load_policy, module_origin, Context, Exit, FactsArgs, FailOn, Format, PlanArgs};
use crate::error::{Error, Result};
use crate::input::{self, Document};
use crate::policy::{export_name, unwrap_envelope, AnswerBudget};
use crate::render;

/// The `facts` object of a request, with only the facts given.
pub(crate) fn facts(args: &FactsArgs) -> Value {
    let mut facts = Map::new();
    if let Some(executor) = &args.executor {
        facts.insert("executor".into(), json!(executor));
    }
    if let Some(version) = &args.cluster_version {
        facts.insert("clusterVersion".into(), json!(version));
    }
    if args.pods_proxy {
        facts.insert("podsProxy".into(), json!(true));
    }
    if !args.main_containers.is_empty() {
        facts.insert("mainContainers".into(), json!(args.main_containers));
    }
    if !args.sidecars.is_empty() {
        facts.insert("sidecars".into(), json!(args.sidecars));
    }
    let mut methods = Map::new();
    if let Some(image) = &args.nop_image {
        methods.insert("imageSwap".into(), json!({"allowed": true, "image": image}));
    }
    if let Some(image) = &args.quitter_image {
        methods.insert("ephemeral".into(), json!({"allowed": true, "image": image}));
    }
    if !methods.is_empty() {
        facts.insert("stopMethods".into(), Value::Object(methods));
    }
    let mut inject = Map::new();
    for spec in &args.inject {
        // The policy checks the injector's name; a layout other than native or classic is
        // passed on as is, for the policy to refuse.
        let (name, layout) = spec.split_once(':').unwrap_or((spec, "classic"));
        let native = match layout {
            "native" => json!(true),
            "classic" => json!(false),
            other => json!(other),
        };
        inject.insert(name.into(), json!({"native": native}));
    }
    if !inject.is_empty() {
        facts.insert("inject".into(), Value::Object(inject));
    }
    Value::Object(facts)
}

/// The flag a `facts` field of the request comes from.
fn flag_of(path: &str) -> Option<&'static str> {
    let field = path.strip_prefix("facts.")?;
    let flag = match field.split(['.', '[']).next()? {
        "executor" => "--executor",
        "clusterVersion" => "--cluster-version",
        "podsProxy" => "--pods-proxy",
        "mainContainers" => "--main-container",
        "sidecars" => "--sidecar",
        "stopMethods" if field.starts_with("stopMethods.imageSwap") => "--nop-image",
        "stopMethods" if field.starts_with("stopMethods.ephemeral") => "--quitter-image",
        _ => return None,
    };
    Some(flag)
}

/// Checks the facts once, before any document is planned: the policy judges them (it
/// alone knows, say, the executors), and a fact it refuses is reported once, by its flag,
/// rather than once per document by its field in the request (`facts.executor`).
///
/// # Errors
/// A message naming the flag, when the policy refuses a fact.
pub(crate) fn check_facts(
    policy: &crate::Policy,
    facts: &Value,
) -> std::result::Result<(), String> {
    if facts.as_object().is_none_or(Map::is_empty) {
        return Ok(());
    }
    let probe = json!({"object": {"kind": "List", "items": []}, "facts": facts});
    match policy.plan(probe.to_string().as_bytes()) {
        Err(Error::Policy {
            message,
            path: Some(path),
            ..
        }) => match flag_of(&path) {
            Some(flag) => {
                // "invalid field `facts.executor`: expected ..." -> "invalid --executor: expected ..."
                let quoted = format!("`{path}`");
                let text = message
                    .replace(
                        &format!("invalid field {quoted}"),
                        &format!("invalid {flag}"),
                    )
                    .replace(
                        &format!("missing field {quoted}"),
                        &format!("{flag} is missing"),
                    )
                    .replace(&quoted, flag);
                Err(text)
            }
            None => Ok(()),
        },
        // Another answer to the empty probe says nothing about the facts: the documents'
        // own answers will.
        _ => Ok(()),
    }
}

/// The request envelope for one document.
pub(crate) fn request(doc: &Document, facts: &Value) -> Vec<u8> {
    let mut request = Map::new();
    request.insert("object".into(), doc.object.clone());
    if facts.as_object().is_some_and(|f| !f.is_empty()) {
        request.insert("facts".into(), facts.clone());
    }
    Value::Object(request).to_string().into_bytes()
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
            Error::Policy { code, path, .. } => {
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
        Error::Policy {
            code,
            path: Some(path),
            ..
        } if code == "missing_field" && path == "object.kind" => {
            Some("not a Kubernetes object (it has no `kind`)".into())
        }
        Error::Policy {
            code,
            path: Some(path),
            message,
        } if code == "unsupported_kind" && path == "object.kind" => {
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

fn subject_label(subject: &Value) -> String {
    let source = &subject["source"];
    let mut label = format!(
        "{} {}",
        render::text(source, "kind"),
        render::text(source, "name")
    );
    if let Some(template) = source["template"].as_str() {
        label.push_str(&format!(", template {template}"));
    }
    label
}

fn findings<'a>(doc: &'a Document, answer: &'a Value, out: &mut Vec<Finding<'a>>) {
    for subject in answer["subjects"].as_array().into_iter().flatten() {
        let label = subject_label(subject);
        for d in subject["diagnostics"].as_array().into_iter().flatten() {
            out.push(Finding {
                doc,
                severity: d["severity"].as_str().unwrap_or("info"),
                code: d["code"].as_str().unwrap_or("?"),
                message: d["message"].as_str().unwrap_or("?").to_string(),
                fix: d["fix"].as_str(),
                container: d["container"].as_str(),
                subject: label.clone(),
            });
        }
        for stop in subject["plan"]["stops"].as_array().into_iter().flatten() {
            if stop["verdict"] == "cannot-stop" {
                let container = stop["container"].as_str();
                out.push(Finding {
                    doc,
                    severity: "cannot-stop",
                    code: "cannot-stop",
                    message: format!(
                        "sidecar `{}` cannot be stopped: the plan has no way to end it",
                        container.unwrap_or("?")
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
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => answers.push((doc, answer)),
            Err(e) => match skipped_reason(&e) {
                Some(reason) => skipped.push(Skipped { doc, reason }),
                None => problems.push(Problem::of(doc, e)),
            },
        }
    }
    let mut all = Vec::new();
    for (doc, answer) in &answers {
        findings(doc, answer, &mut all);
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
                .map(|(doc, answer)| {
                    let mut plan = place_json(doc);
                    plan["answer"] = answer.clone();
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
        Format::Github => ctx.print(&github(&found, &problems))?,
        Format::Sarif => {
            let version = format!("{} {}", policy.info().name, policy.info().version);
            ctx.json_out(&sarif(&found, &problems, &version))?;
        }
        Format::Table | Format::Auto => {
            let mut text = String::new();
            for (doc, answer) in &answers {
                let origin = format!("{} {}", doc.file, doc.place());
                for subject in answer["subjects"].as_array().into_iter().flatten() {
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

/// GitHub Actions workflow commands: `::error file=F,line=L,col=C,title=T::message`, one
/// per error or warning diagnostic (and cannot-stop verdict), and one per input error.
/// Info diagnostics are left out: an annotation each would bury the rest.
fn github(found: &[&Finding<'_>], problems: &[Problem]) -> String {
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
        Error::Policy { code, .. } => code.clone(),
        other => other.name().to_string(),
    }
}

/// A SARIF 2.1.0 log: one run, one result per diagnostic and per input error, a rule per
/// code seen.
fn sarif(found: &[&Finding<'_>], problems: &[Problem], policy: &str) -> Value {
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
    fn fail_on_levels_nest() {
        assert!(fails(FailOn::Error, "cannot-stop"));
        assert!(fails(FailOn::Error, "error"));
        assert!(!fails(FailOn::Error, "warning"));
        assert!(fails(FailOn::Warning, "warning"));
        assert!(!fails(FailOn::CannotStop, "error"));
        assert!(!fails(FailOn::Never, "cannot-stop"));
        assert!(!fails(FailOn::Warning, "info"));
    }

    #[test]
    fn facts_fields_map_to_their_flags() {
        assert_eq!(flag_of("facts.executor"), Some("--executor"));
        assert_eq!(
            flag_of("facts.stopMethods.imageSwap.image"),
            Some("--nop-image")
        );
        assert_eq!(flag_of("facts.sidecars[0]"), Some("--sidecar"));
        assert_eq!(flag_of("object.kind"), None);
    }

    #[test]
    fn sarif_uris_keep_slashes() {
        assert_eq!(sarif_uri("deploy/my job.yaml"), "deploy/my%20job.yaml");
    }
}
