//! `sidekill policy inspect X.wasm`: what a module is and whether a hot swap would take it.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::{build_of, error_value, safe, shown_error};
use crate::cli::{read_module, Context, Exit};
use crate::error::Result;
use crate::policy::inspect as inspect_module;
use crate::render::Table;

/// Shows the module's identity, ABI, imports and exports; exit 1 when it would be refused.
pub(super) fn run(ctx: &mut Context<'_>, path: &Path) -> Result<Exit> {
    let bytes = read_module(path)?;
    let runtime = ctx.runtime()?;
    let found = inspect_module(&runtime, &bytes);
    let build = build_of(path, &found.sha256);
    let exit = Exit::ok_or_report(found.load.is_ok());
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
            let _ = writeln!(text, "\n{} {}", s.red("refused:"), shown_error(e));
        }
    }
    ctx.print(&text)?;
    Ok(exit)
}
