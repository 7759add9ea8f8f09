//! `sidekill plan`.

use serde_json::{json, Map, Value};

use super::{load_policy, Context, Exit, FactsArgs, PlanArgs};
use crate::error::{Error, Result};
use crate::input::{self, Document};
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

/// The request envelope for one document.
pub(crate) fn request(doc: &Document, facts: &Value) -> Vec<u8> {
    let mut request = Map::new();
    request.insert("object".into(), doc.object.clone());
    if facts.as_object().is_some_and(|f| !f.is_empty()) {
        request.insert("facts".into(), facts.clone());
    }
    Value::Object(request).to_string().into_bytes()
}

/// An input problem as JSON for the `errors` list.
pub(crate) fn error_json(file: &str, document: Option<usize>, error: &Error) -> Value {
    let mut out = Map::new();
    out.insert("file".into(), json!(file));
    if let Some(document) = document {
        out.insert("document".into(), json!(document));
    }
    out.insert("error".into(), json!(error.name()));
    out.insert("message".into(), json!(error.report().to_string()));
    match error {
        Error::Policy { code, path, .. } => {
            out.insert("code".into(), json!(code));
            if let Some(path) = path {
                out.insert("path".into(), json!(path));
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

/// Reads every file; problems go to `errors`.
pub(crate) fn documents(
    files: &[String],
    errors: &mut Vec<(String, Option<usize>, Error)>,
) -> Vec<Document> {
    let mut out = Vec::new();
    for file in files {
        match input::read(file) {
            Ok(docs) if docs.is_empty() => errors.push((
                file.clone(),
                None,
                Error::Syntax {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                    message: "no object found (the file is empty or holds only empty documents)"
                        .into(),
                },
            )),
            Ok(docs) => out.extend(docs),
            Err(e) => errors.push((file.clone(), None, e)),
        }
    }
    out
}

/// A one-line message for an error about one document.
pub(crate) fn describe_error(
    file: &str,
    document: Option<usize>,
    label: Option<&str>,
    error: &Error,
) -> String {
    match (error, document) {
        // Syntax and IO errors already name the file.
        (Error::Syntax { .. } | Error::Io { .. }, _) => error.report().to_string(),
        (_, Some(n)) => format!(
            "{file}: document {n}{}: {}",
            label.map(|l| format!(" ({l})")).unwrap_or_default(),
            error.report()
        ),
        (_, None) => format!("{file}: {}", error.report()),
    }
}

pub(super) fn run(ctx: &mut Context<'_>, args: &PlanArgs) -> Result<Exit> {
    let (policy, origin) = load_policy(ctx.global, &args.policy)?;
    let facts = facts(&args.facts);
    let mut errors = Vec::new();
    let docs = documents(&args.files, &mut errors);
    let mut exit = if errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Error
    };
    for (file, document, error) in &errors {
        ctx.error(&describe_error(file, *document, None, error));
    }

    let mut plans = Vec::new();
    let mut json_errors: Vec<Value> = errors
        .iter()
        .map(|(file, document, e)| error_json(file, *document, e))
        .collect();
    let mut first = true;
    for doc in &docs {
        match policy.plan(&request(doc, &facts)) {
            Ok(answer) => {
                let cannot_stop = answer["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["plan"]["stops"].as_array().into_iter().flatten())
                    .any(|stop| stop["verdict"] == "cannot-stop");
                if cannot_stop {
                    exit = exit.worst(Exit::Report);
                }
                if ctx.json {
                    plans.push(json!({
                        "file": doc.file,
                        "document": doc.index,
                        "object": doc.label(),
                        "answer": answer,
                    }));
                } else {
                    let origin = format!("{} document {}", doc.file, doc.index);
                    let mut text = String::new();
                    for subject in answer["subjects"].as_array().into_iter().flatten() {
                        if !first {
                            text.push('\n');
                        }
                        first = false;
                        text.push_str(&render::subject(subject, &origin, &ctx.style));
                    }
                    ctx.print(&text)?;
                }
            }
            Err(e) => {
                exit = Exit::Error;
                ctx.error(&describe_error(
                    &doc.file,
                    Some(doc.index),
                    Some(&doc.label()),
                    &e,
                ));
                json_errors.push(error_json(&doc.file, Some(doc.index), &e));
            }
        }
    }
    if ctx.json {
        let out = json!({
            "policy": {
                "name": policy.info().name,
                "version": policy.info().version,
                "sha256": policy.sha256().to_string(),
                "origin": origin,
            },
            "plans": plans,
            "errors": json_errors,
        });
        ctx.json_out(&out)?;
    }
    Ok(exit)
}
