//! `sidekill policy inspect | test | diff | push | rollback`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use sidekill_policy::Call;

use super::plan::{check_facts, documents, facts, request, Problem};
use super::{read_module, Context, Exit, FactsArgs};
use crate::canary;
use crate::diff::{diff as json_diff, Change};
use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::policy::{check_answer, export_name, inspect as inspect_module, AnswerBudget, Policy};
use crate::render::Table;

fn error_value(e: &Error) -> Value {
    json!({"error": e.name(), "message": e.report().to_string()})
}

/// A module's string (name, version, export name, error message) made safe for a
/// terminal: control characters and bidi overrides escaped ([`crate::escape`]). JSON
/// output needs no escaping (serde_json escapes control characters).
fn safe(text: &str) -> String {
    crate::escape::text(text).into_owned()
}

/// Which build a module is: the module's identity is the same for every build of one
/// source, so the host says what it knows. For `embedded`, how `host/build.rs` built it;
/// for a file, whether its bytes are the embedded module's.
fn build_of(path: &Path, sha256: &Sha256) -> String {
    if super::is_embedded(path) {
        format!("embedded in this binary: {}", crate::embedded::BUILD)
    } else if *sha256 == crate::embedded::sha256() {
        format!(
            "a file with the embedded module's bytes ({})",
            crate::embedded::BUILD
        )
    } else {
        "a file, not the embedded build (another sha256); its build is not recorded in it".into()
    }
}

pub(super) fn inspect(ctx: &mut Context<'_>, path: &Path) -> Result<Exit> {
    let bytes = read_module(path)?;
    let runtime = ctx.runtime()?;
    let found = inspect_module(&runtime, &bytes);
    let build = build_of(path, &found.sha256);
    let exit = if found.load.is_ok() {
        Exit::Ok
    } else {
        Exit::Report
    };
    if ctx.json {
        let mut out = json!({
            "file": path.display().to_string(),
            "size": found.size,
            "sha256": found.sha256.to_string(),
            "build": build,
            "imports": found.imports.iter().map(|i| json!({"module": i.module, "name": i.name, "kind": i.kind})).collect::<Vec<_>>(),
            "exports": found.exports.iter().map(|(name, ty)| json!({"name": name, "type": ty})).collect::<Vec<_>>(),
            "loads": found.load.is_ok(),
            "compileMillis": found.compile_time.as_secs_f64() * 1e3,
            "loadMillis": found.load_time.as_secs_f64() * 1e3,
        });
        match &found.load {
            Ok(policy) => {
                out["abi"] = json!(policy.abi().to_string());
                out["info"] = json!({
                    "name": policy.info().name,
                    "version": policy.info().version,
                    "features": policy.info().features,
                    "presetsHash": policy.info().presets_hash,
                });
            }
            Err(e) => out["refused"] = error_value(e),
        }
        ctx.json_out(&out)?;
        return Ok(exit);
    }
    let s = ctx.style;
    let mut text = String::new();
    // A key-value table: an empty header, skipped below.
    let mut kv = Table::new(&["", ""]);
    kv.row(vec!["file".into(), path.display().to_string()]);
    kv.row(vec!["size".into(), format!("{} bytes", found.size)]);
    kv.row(vec!["sha256".into(), found.sha256.to_string()]);
    kv.row(vec!["build".into(), build.clone()]);
    if let Ok(policy) = &found.load {
        let info = policy.info();
        kv.row(vec!["abi".into(), policy.abi().to_string()]);
        kv.row(vec!["name".into(), safe(&info.name)]);
        kv.row(vec!["version".into(), safe(&info.version)]);
        kv.row(vec!["features".into(), safe(&info.features.join(", "))]);
        kv.row(vec!["presets hash".into(), safe(&info.presets_hash)]);
        kv.row(vec![
            "load".into(),
            format!(
                "compile {:.1} ms (less when cached), instantiate and check {:.2} ms",
                found.compile_time.as_secs_f64() * 1e3,
                found.load_time.as_secs_f64() * 1e3
            ),
        ]);
    }
    for line in kv.render(0, &s).lines().skip(1) {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(
        text,
        "\n{}",
        s.bold(&format!("imports ({})", found.imports.len()))
    );
    if found.imports.is_empty() {
        let _ = writeln!(text, "  none");
    }
    for import in &found.imports {
        let _ = writeln!(text, "  {}", s.red(&safe(&import.to_string())));
    }
    let _ = writeln!(
        text,
        "\n{}",
        s.bold(&format!("exports ({})", found.exports.len()))
    );
    let mut exports = Table::new(&["NAME", "TYPE"]);
    for (name, ty) in &found.exports {
        exports.row(vec![safe(name), ty.clone()]);
    }
    text.push_str(&exports.render(2, &s));
    match &found.load {
        Ok(_) => {
            let _ = writeln!(text, "\n{} the module loads", s.green("ok:"));
        }
        Err(e) => {
            let _ = writeln!(
                text,
                "\n{} {} ({})",
                s.red("refused:"),
                safe(&e.report().to_string()),
                e.name()
            );
        }
    }
    ctx.print(&text)?;
    Ok(exit)
}

pub(super) fn test(ctx: &mut Context<'_>, path: &Path, pin: Option<&Sha256>) -> Result<Exit> {
    let bytes = read_module(path)?;
    let runtime = ctx.runtime()?;
    let sha256 = Sha256::of(&bytes);
    let mut checks: Vec<(String, std::result::Result<String, Error>, Option<f64>)> = Vec::new();
    let pin_ok = match pin {
        Some(expected) if *expected != sha256 => {
            checks.push((
                "sha256 pin".into(),
                Err(Error::Pin {
                    expected: expected.to_string(),
                    found: sha256.to_string(),
                }),
                None,
            ));
            false
        }
        Some(_) => {
            checks.push(("sha256 pin".into(), Ok("matches".into()), None));
            true
        }
        None => true,
    };
    if pin_ok {
        let started = std::time::Instant::now();
        match runtime.load(&bytes) {
            Ok(policy) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                checks.push((
                    "load".into(),
                    Ok(format!(
                        "{} {}, ABI {}, no imports, every ABI export",
                        safe(&policy.info().name),
                        safe(&policy.info().version),
                        policy.abi()
                    )),
                    Some(ms),
                ));
                for result in canary::run_all(&policy) {
                    checks.push((
                        format!("canary {}", result.canary.name),
                        result
                            .outcome
                            .map(|()| "answer has the expected shape".into()),
                        Some(result.elapsed.as_secs_f64() * 1e3),
                    ));
                }
            }
            Err(e) => checks.push((
                "load".into(),
                Err(e),
                Some(started.elapsed().as_secs_f64() * 1e3),
            )),
        }
    }
    let accepted = checks.iter().all(|(_, r, _)| r.is_ok());
    let exit = if accepted { Exit::Ok } else { Exit::Report };
    if ctx.json {
        let out = json!({
            "file": path.display().to_string(),
            "sha256": sha256.to_string(),
            "accepted": accepted,
            "checks": checks.iter().map(|(name, r, ms)| {
                let mut c = json!({"check": name, "ok": r.is_ok(), "millis": ms});
                match r {
                    Ok(detail) => c["detail"] = json!(detail),
                    Err(e) => { c["error"] = json!(e.name()); c["message"] = json!(e.report().to_string()); }
                }
                c
            }).collect::<Vec<_>>(),
        });
        ctx.json_out(&out)?;
        return Ok(exit);
    }
    let s = ctx.style;
    let mut text = format!(
        "{} {}  sha256 {}\n",
        s.bold("policy"),
        path.display(),
        sha256
    );
    for (name, result, ms) in &checks {
        let time = ms
            .map(|ms| format!("  {}", s.dim(&format!("{ms:.2} ms"))))
            .unwrap_or_default();
        match result {
            Ok(detail) => {
                let _ = writeln!(text, "  {} {name}: {detail}{time}", s.green("pass"));
            }
            Err(e) => {
                let _ = writeln!(
                    text,
                    "  {} {name}: {} ({}){time}",
                    s.red("FAIL"),
                    safe(&e.report().to_string()),
                    e.name()
                );
            }
        }
    }
    let verdict = if accepted {
        s.green("accepted: a hot swap would make this module live")
    } else {
        s.red("refused: a hot swap would keep the live module")
    };
    let _ = writeln!(text, "{verdict}");
    ctx.print(&text)?;
    Ok(exit)
}

/// `policy test --corpus DIR`: every module of the corpus against its manifest
/// ([`crate::corpus`]).
#[cfg(feature = "configmap")]
pub(super) fn corpus(ctx: &mut Context<'_>, dir: &Path) -> Result<Exit> {
    let runtime = ctx.runtime()?;
    let cases = crate::corpus::run(&runtime, dir)?;
    let matched = cases.iter().filter(|c| c.matches()).count();
    let exit = if matched == cases.len() {
        Exit::Ok
    } else {
        Exit::Report
    };
    if ctx.json {
        ctx.json_out(&json!({
            "corpus": dir.display().to_string(),
            "total": cases.len(),
            "matched": matched,
            "modules": cases.iter().map(|c| json!({
                "file": c.file,
                "expected": c.expected.json(),
                "actual": c.actual.json(),
                "detail": c.detail,
                "matches": c.matches(),
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(exit);
    }
    let s = ctx.style;
    let mut table = Table::new(&["", "MODULE", "EXPECTED", "ACTUAL", "DETAIL"]);
    for c in &cases {
        let mut detail = safe(&c.detail);
        if detail.chars().count() > 90 {
            detail = format!("{}…", detail.chars().take(90).collect::<String>());
        }
        table.row(vec![
            if c.matches() {
                s.green("ok")
            } else {
                s.red("FAIL")
            },
            safe(&c.file),
            safe(&c.expected.label()),
            safe(&c.actual.label()),
            detail,
        ]);
    }
    let mut text = table.render(0, &s);
    let _ = writeln!(
        text,
        "\n{matched} of {} modules did what {} says",
        cases.len(),
        dir.join(crate::corpus::MANIFEST).display()
    );
    ctx.print(&text)?;
    Ok(exit)
}

/// One side's answer: the envelope as JSON, or the host's error as `{"hostError": ...}`.
/// The answer is charged to the command's `budget` (`left`: documents after this one), then
/// checked as every answer is ([`check_answer`]) before it is parsed.
///
/// # Errors
/// [`Error::AnswerBudget`] only: the host's other errors are the side's answer.
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

pub(super) fn diff(
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
        super::module_origin(Some(old_path)),
        s.bold("new"),
        safe(&new.info().name),
        safe(&new.info().version),
        new.sha256().short(),
        super::module_origin(Some(new_path)),
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

/// Which ConfigMap `policy push` and `policy rollback` write, and how to reach it.
#[cfg(feature = "configmap")]
#[derive(Debug, clap::Args)]
pub struct ConfigMapArgs {
    /// The ConfigMap the controller watches, as NAMESPACE/NAME
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_configmap)]
    pub configmap: (String, String),

    /// binaryData key of the live module
    #[arg(
        long,
        value_name = "KEY",
        default_value = "policy.wasm",
        value_parser = parse_key,
        long_help = "The binaryData key the controller's ConfigMap source reads. The \
                     module it replaces is kept under KEY.previous. Letters, digits, `-`, \
                     `_` and `.`, starting and ending with a letter or a digit, at most 54 \
                     characters."
    )]
    pub key: String,

    /// Kubeconfig file [default: ~/.kube/config, else the in-cluster config]
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

#[cfg(feature = "configmap")]
fn parse_configmap(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE/NAME, got `{text}`")),
    }
}

#[cfg(feature = "configmap")]
fn parse_key(text: &str) -> std::result::Result<String, String> {
    crate::source::configmap::check_key(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `policy push` and `policy rollback`: thin over [`PolicyConfigMap`], which holds the
/// Kubernetes side.
///
/// [`PolicyConfigMap`]: crate::publish::PolicyConfigMap
#[cfg(feature = "configmap")]
mod publish {
    use std::fmt::Write as _;
    use std::path::Path;

    use serde_json::{json, Value};

    use super::ConfigMapArgs;
    use crate::cli::{read_module, Context, Exit};
    use crate::digest::Sha256;
    use crate::error::{Error, Result};
    use crate::publish::{Action, Candidate, ModuleId, PolicyConfigMap, Published};
    use crate::render::Table;
    use crate::runtime::Runtime;
    use crate::source::configmap::previous_key;

    /// `sidekill policy push X.wasm [--signature X.wasm.sig] --configmap NAMESPACE/NAME`.
    /// The signature (`--signature`, else `X.wasm.sig` when it exists) goes under
    /// `KEY.sig`, where the controller looks for it.
    pub(in crate::cli) fn push(
        ctx: &mut Context<'_>,
        module: &Path,
        signature: Option<&Path>,
        target: &ConfigMapArgs,
    ) -> Result<Exit> {
        let bytes = read_module(module)?;
        let beside = crate::source::file::signature_path(module);
        let signature = match signature {
            Some(path) => Some(crate::limits::read_capped(path, 64 << 10)?),
            None if beside.is_file() => Some(crate::limits::read_capped(&beside, 64 << 10)?),
            None => None,
        };
        let (sha256, size) = (Sha256::of(&bytes), bytes.len());
        let runtime = ctx.runtime()?;
        let candidate = match Candidate::validate(&runtime, bytes) {
            Ok(candidate) => candidate,
            Err(e) if e.is_module_fault() => {
                let about = json!({"file": module.display().to_string(), "sha256": sha256.to_string(), "size": size});
                let what = format!(
                    "{} ({} bytes, sha256 {})",
                    module.display(),
                    size,
                    sha256.short()
                );
                return refused(ctx, target, about, &what, &e);
            }
            Err(e) => return Err(e),
        };
        let candidate = match signature {
            Some(text) => candidate.with_signature(text)?,
            None => candidate,
        };
        let published = in_cluster(target, &runtime, |configmap, runtime| async move {
            configmap.push(runtime, &candidate).await
        })?;
        show(ctx, target, &published)
    }

    /// `sidekill policy rollback --configmap NAMESPACE/NAME`.
    pub(in crate::cli) fn rollback(ctx: &mut Context<'_>, target: &ConfigMapArgs) -> Result<Exit> {
        let runtime = ctx.runtime()?;
        let outcome = in_cluster(target, &runtime, |configmap, runtime| async move {
            configmap.rollback(runtime).await
        });
        match outcome {
            Ok(published) => show(ctx, target, &published),
            Err(e) if e.is_module_fault() => {
                let key = previous_key(&target.key);
                let about = json!({"key": key});
                refused(
                    ctx,
                    target,
                    about,
                    &format!("the previous module (`{key}`)"),
                    &e,
                )
            }
            Err(e) => Err(e),
        }
    }

    /// Connects with the kubeconfig and runs `work` on the ConfigMap in a small runtime.
    fn in_cluster<'r, F, Fut>(
        target: &ConfigMapArgs,
        runtime: &'r Runtime,
        work: F,
    ) -> Result<Published>
    where
        F: FnOnce(PolicyConfigMap, &'r Runtime) -> Fut,
        Fut: std::future::Future<Output = Result<Published>>,
    {
        let (namespace, name) = &target.configmap;
        let rt = crate::cli::async_runtime()?;
        rt.block_on(async {
            let client = crate::cli::stop::client(target.kubeconfig.as_deref())
                .await
                .map_err(|e| Error::Kube {
                    configmap: format!("configmap {namespace}/{name}"),
                    action: "connect to the cluster",
                    source: Box::new(e),
                })?;
            let configmap = PolicyConfigMap::new(client, namespace, name, &target.key)?;
            work(configmap, runtime).await
        })
    }

    fn head(target: &ConfigMapArgs) -> Value {
        let (namespace, name) = &target.configmap;
        json!({
            "configmap": format!("{namespace}/{name}"),
            "key": target.key,
            "previousKey": previous_key(&target.key),
        })
    }

    /// A module that would be refused: nothing was written; exit code 1.
    fn refused(
        ctx: &mut Context<'_>,
        target: &ConfigMapArgs,
        about: Value,
        what: &str,
        error: &Error,
    ) -> Result<Exit> {
        if ctx.json {
            let mut out = head(target);
            out["action"] = json!("refused");
            out["module"] = about;
            out["error"] = json!(error.name());
            out["message"] = json!(error.report().to_string());
            ctx.json_out(&out)?;
        } else {
            let (namespace, name) = &target.configmap;
            let s = ctx.style;
            let text = format!(
                "{} {what} would be refused by a hot swap: {} ({})\nconfigmap {namespace}/{name} was not changed\n",
                s.red("refused:"),
                crate::escape::text(&error.report().to_string()),
                error.name()
            );
            ctx.print(&text)?;
        }
        Ok(Exit::Report)
    }

    fn show(ctx: &mut Context<'_>, target: &ConfigMapArgs, published: &Published) -> Result<Exit> {
        let previous_key = previous_key(&target.key);
        if ctx.json {
            let mut out = head(target);
            out["action"] = json!(published.action.as_str());
            out["live"] = published.live.to_json();
            out["previous"] = published
                .previous
                .as_ref()
                .map_or(Value::Null, ModuleId::to_json);
            out["resourceVersion"] = json!(published.resource_version);
            out["attempts"] = json!(published.attempts);
            ctx.json_out(&out)?;
            return Ok(Exit::Ok);
        }
        let s = ctx.style;
        let (namespace, name) = &target.configmap;
        let key = &target.key;
        let summary = match published.action {
            Action::Created => {
                format!("created configmap {namespace}/{name} with the module under `{key}`")
            }
            Action::Pushed => format!(
                "pushed to configmap {namespace}/{name}: the module under `{key}` is live, the one it replaced is under `{previous_key}`"
            ),
            Action::Unchanged => format!(
                "unchanged: `{key}` of configmap {namespace}/{name} already holds this module; nothing was written"
            ),
            Action::RolledBack => format!(
                "rolled back configmap {namespace}/{name}: the previous module is under `{key}` again, the one it replaced under `{previous_key}`"
            ),
        };
        let mut text = format!("{} {summary}\n", s.green("ok:"));
        let mut table = Table::new(&["", "KEY", "NAME", "VERSION", "SHA256", "SIZE"]);
        let row = |slot: &str, key: &str, id: &ModuleId| {
            vec![
                slot.to_string(),
                key.to_string(),
                id.name.clone().unwrap_or_else(|| "(does not load)".into()),
                id.version.clone().unwrap_or_default(),
                id.sha256.short(),
                id.size.to_string(),
            ]
        };
        table.row(row("live", key, &published.live));
        match &published.previous {
            Some(id) => table.row(row("previous", &previous_key, id)),
            None => table.row(vec!["previous".into(), previous_key.clone(), "none".into()]),
        }
        text.push_str(&table.render(2, &s));
        let mut tail = String::new();
        if let Some(rv) = &published.resource_version {
            let _ = write!(tail, "resourceVersion {rv}");
        }
        if published.attempts > 1 {
            let _ = write!(
                tail,
                ", after {} attempts (concurrent writes)",
                published.attempts
            );
        }
        if !tail.is_empty() {
            let _ = writeln!(text, "  {}", s.dim(&tail));
        }
        ctx.print(&text)?;
        Ok(Exit::Ok)
    }
}

#[cfg(feature = "configmap")]
pub(super) use publish::{push, rollback};

/// `sidekill policy keygen --out PREFIX`: writes `PREFIX.key` (PKCS#8 PEM, mode 0600) and
/// `PREFIX.pub` (SubjectPublicKeyInfo PEM), ECDSA P-256 as cosign's keys.
pub(super) fn keygen(ctx: &mut Context<'_>, prefix: &Path) -> Result<Exit> {
    let (key, pem) = crate::signature::SigningKey::generate()?;
    let (private, public) = (with_suffix(prefix, ".key"), with_suffix(prefix, ".pub"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&private)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pem.as_bytes()))
        .map_err(|e| Error::io(&private, e))?;
    std::fs::write(&public, key.public().to_pem()).map_err(|e| Error::io(&public, e))?;
    let out = json!({
        "privateKey": private.display().to_string(),
        "publicKey": public.display().to_string(),
        "algorithm": key.public().algorithm().as_str(),
        "fingerprint": key.public().fingerprint(),
    });
    if ctx.json {
        ctx.json_out(&out)?;
    } else {
        let text = format!(
            "{} wrote {} (keep it secret) and {} ({}, fingerprint {})\n",
            ctx.style.green("ok:"),
            private.display(),
            public.display(),
            key.public().algorithm().as_str(),
            key.public().fingerprint()
        );
        ctx.print(&text)?;
    }
    Ok(Exit::Ok)
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// `sidekill policy sign X.wasm --key KEY [--out X.wasm.sig]`.
pub(super) fn sign(
    ctx: &mut Context<'_>,
    module: &Path,
    key: &Path,
    out: Option<&Path>,
) -> Result<Exit> {
    let bytes = read_module(module)?;
    let key = crate::signature::SigningKey::from_file(key)?;
    let signature = key.sign(&bytes)?;
    let out = out.map_or_else(
        || crate::source::file::signature_path(module),
        Path::to_path_buf,
    );
    std::fs::write(&out, &signature).map_err(|e| Error::io(&out, e))?;
    let sha256 = Sha256::of(&bytes);
    if ctx.json {
        ctx.json_out(&json!({
            "file": module.display().to_string(),
            "sha256": sha256.to_string(),
            "signature": out.display().to_string(),
            "key": key.public().fingerprint(),
        }))?;
    } else {
        let text = format!(
            "{} signed {} (sha256 {}) with key {}: {}\n",
            ctx.style.green("ok:"),
            module.display(),
            sha256,
            key.public().fingerprint(),
            out.display()
        );
        ctx.print(&text)?;
    }
    Ok(Exit::Ok)
}

/// `sidekill policy verify X.wasm --key PUB... [--signature X.wasm.sig]`: exit 0 when a
/// key verifies the signature, 1 when none does.
pub(super) fn verify(
    ctx: &mut Context<'_>,
    module: &Path,
    keys: &[std::path::PathBuf],
    signature: Option<&Path>,
) -> Result<Exit> {
    let bytes = read_module(module)?;
    let keys = keys
        .iter()
        .map(|k| crate::signature::PublicKey::from_file(k))
        .collect::<Result<Vec<_>>>()?;
    let sig_path = signature.map_or_else(
        || crate::source::file::signature_path(module),
        Path::to_path_buf,
    );
    let text = crate::limits::read_capped(&sig_path, 64 << 10)?;
    let raw =
        crate::signature::decode_signature(&text, &format!("signature {}", sig_path.display()))?;
    let trust = crate::signature::Trust {
        keys,
        ..crate::signature::Trust::default()
    };
    let sha256 = Sha256::of(&bytes);
    // The embedded module's bytes are trusted by the store, but `verify` checks the
    // signature itself: it answers "is this signature good", whatever the module.
    let verdict = trust
        .keys
        .iter()
        .find(|k| k.verifies(&bytes, &raw))
        .map(|k| k.fingerprint())
        .ok_or(Error::BadSignature {
            sha256: sha256.to_string(),
            keys: trust.keys.len(),
        });
    let exit = if verdict.is_ok() {
        Exit::Ok
    } else {
        Exit::Report
    };
    if ctx.json {
        let mut out = json!({
            "file": module.display().to_string(),
            "sha256": sha256.to_string(),
            "signature": sig_path.display().to_string(),
            "verified": verdict.is_ok(),
        });
        match &verdict {
            Ok(key) => out["key"] = json!(key),
            Err(e) => out["error"] = error_value(e),
        }
        ctx.json_out(&out)?;
    } else {
        let text = match &verdict {
            Ok(key) => format!(
                "{} {} (sha256 {}) is signed by key {key}\n",
                ctx.style.green("verified:"),
                module.display(),
                sha256
            ),
            Err(e) => format!("{} {} ({})\n", ctx.style.red("refused:"), e, e.name()),
        };
        ctx.print(&text)?;
    }
    Ok(exit)
}
