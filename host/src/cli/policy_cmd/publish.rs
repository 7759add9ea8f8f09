//! `sidekill policy push` and `policy rollback`: thin over [`PolicyConfigMap`], which holds
//! the Kubernetes side.
//!
//! [`PolicyConfigMap`]: crate::publish::PolicyConfigMap

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::cli::{read_module, Context, Exit};
use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::publish::{Action, Candidate, ModuleId, PolicyConfigMap, Published};
use crate::render::Table;
use crate::runtime::Runtime;
use crate::source::configmap::previous_key;

/// Which ConfigMap `policy push` and `policy rollback` write, and how to reach it.
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

fn parse_configmap(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("expected NAMESPACE/NAME, got `{text}`")),
    }
}

fn parse_key(text: &str) -> std::result::Result<String, String> {
    crate::source::configmap::check_key(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `sidekill policy push X.wasm [--signature X.wasm.sig] --configmap NAMESPACE/NAME`.
/// The signature (`--signature`, else `X.wasm.sig` when it exists) goes under
/// `KEY.sig`, where the controller looks for it.
pub(super) fn push(
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
pub(super) fn rollback(ctx: &mut Context<'_>, target: &ConfigMapArgs) -> Result<Exit> {
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
