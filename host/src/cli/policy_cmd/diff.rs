//! `sidekill policy diff OLD NEW FILE...`: where two modules' plans differ.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use sidekill_policy::Call;

use super::{build_of, error_value, safe};
use crate::cli::plan::{check_facts, documents, facts, request, Problem};
use crate::cli::{module_origin, read_module, Context, Exit, FactsArgs};
use crate::diff::{diff as json_diff, Change};
use crate::error::Result;
use crate::policy::{check_answer, export_name, AnswerBudget, Policy};

/// One side's answer: the envelope as JSON, or the host's error as `{"hostError": ...}`.
/// The answer is charged to the command's `budget` (`left`: documents after this one), then
/// checked as every answer is ([`check_answer`]) before it is parsed.
///
/// # Errors
/// [`AnswerError::AnswerBudget`] only: the host's other errors are the side's answer.
fn envelope(
    policy: &Policy,
    request: &[u8],
    budget: &mut AnswerBudget,
    left: usize,
) -> Result<Value> {
    let bytes = match policy.call(Call::Plan, request) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(json!({"hostError": error_value(&e)})),
    };
    budget.charge(bytes.len(), left)?;
    if let Err(e) = check_answer(export_name(Call::Plan), &bytes) {
        return Ok(json!({"hostError": error_value(&e)}));
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(
        |e| json!({"hostError": {"error": "bad_answer", "message": format!("not JSON: {e}")}}),
    ))
}

/// Plans every document with both modules and shows the answers that differ.
pub(super) fn run(
    ctx: &mut Context<'_>,
    old_path: &Path,
    new_path: &Path,
    files: &[String],
    facts_args: &FactsArgs,
) -> Result<Exit> {
    let runtime = ctx.runtime()?;
    let old = runtime.load(&read_module(old_path)?)?;
    let new = runtime.load(&read_module(new_path)?)?;
    let facts = facts(facts_args);
    if let Err(message) = check_facts(&new, &facts) {
        ctx.error(&message);
        return Ok(Exit::Error);
    }
    let mut errors = Vec::new();
    let docs = documents(files, &mut errors);
    let mut results: Vec<(&crate::input::Document, Vec<Change>)> = Vec::new();
    // The changes kept are parts of the two answers: the budget on answers bounds them too.
    let mut budget = AnswerBudget::new(ctx.global.answer_budget_mib << 20);
    for (i, doc) in docs.iter().enumerate() {
        let request = request(doc, &facts);
        let left = docs.len() - i - 1;
        let sides = envelope(&old, &request, &mut budget, left)
            .and_then(|a| Ok((a, envelope(&new, &request, &mut budget, left)?)));
        match sides {
            Ok((a, b)) => results.push((doc, json_diff(&a, &b))),
            Err(e) => {
                errors.push(Problem::of(doc, e));
                break;
            }
        }
    }
    for problem in &errors {
        ctx.error(&problem.describe());
    }
    let differing = results.iter().filter(|(_, c)| !c.is_empty()).count();
    let exit = if !errors.is_empty() {
        Exit::Error
    } else if differing > 0 {
        Exit::Report
    } else {
        Exit::Ok
    };
    let side = |p: &Policy, path: &Path| json!({"file": path.display().to_string(), "name": p.info().name, "version": p.info().version, "sha256": p.sha256().to_string(), "build": build_of(path, p.sha256())});
    if ctx.json {
        let out = json!({
            "old": side(&old, old_path),
            "new": side(&new, new_path),
            "documents": results.iter().map(|(doc, changes)| json!({
                "file": doc.file,
                "document": doc.index,
                "item": doc.item,
                "object": doc.label(),
                "same": changes.is_empty(),
                "changes": changes.iter().map(|c| {
                    let mut v = json!({"path": c.path, "op": c.op()});
                    if let Some(old) = &c.old { v["old"] = old.clone(); }
                    if let Some(new) = &c.new { v["new"] = new.clone(); }
                    v
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "differing": differing,
            "errors": errors.iter().map(|p| p.json()).collect::<Vec<_>>(),
        });
        ctx.json_out(&out)?;
        return Ok(exit);
    }
    let s = ctx.style;
    let mut text = format!(
        "{} {} {} (sha256 {}), {}\n{} {} {} (sha256 {}), {}\n\n",
        s.bold("old"),
        safe(&old.info().name),
        safe(&old.info().version),
        old.sha256().short(),
        module_origin(Some(old_path)),
        s.bold("new"),
        safe(&new.info().name),
        safe(&new.info().version),
        new.sha256().short(),
        module_origin(Some(new_path)),
    );
    for (doc, changes) in &results {
        let head = format!("{} {} ({})", doc.file, doc.place(), doc.label());
        if changes.is_empty() {
            let _ = writeln!(text, "{} {head}", s.green("same"));
            continue;
        }
        let _ = writeln!(
            text,
            "{} {head}: {} change{}",
            s.yellow("differs"),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        );
        for c in changes {
            let short = |v: &Option<Value>| {
                let text = v.as_ref().map(Value::to_string).unwrap_or_default();
                if text.chars().count() > 100 {
                    format!("{}…", text.chars().take(100).collect::<String>())
                } else {
                    text
                }
            };
            let short = |v: &Option<Value>| safe(&short(v));
            let line = match c.op() {
                "added" => s.green(&format!("+ {}: {}", c.path, short(&c.new))),
                "removed" => s.red(&format!("- {}: {}", c.path, short(&c.old))),
                _ => format!("~ {}: {} -> {}", c.path, short(&c.old), short(&c.new)),
            };
            let _ = writeln!(text, "    {line}");
        }
    }
    let _ = writeln!(
        text,
        "\n{differing} of {} document{} differ{}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        if differing == 1 { "s" } else { "" }
    );
    ctx.print(&text)?;
    Ok(exit)
}
