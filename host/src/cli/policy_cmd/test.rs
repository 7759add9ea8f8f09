//! `sidekill policy test`: the checks a hot swap runs on one module, or a corpus of modules.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::{safe, shown_error};
use crate::canary;
use crate::cli::{read_module, Context, Exit};
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Result};
#[cfg(feature = "configmap")]
use crate::render::Table;

/// Runs the load checks and the canaries on one module; exit 1 when it would be refused.
pub(super) fn test(ctx: &mut Context<'_>, path: &Path, pin: Option<&Sha256>) -> Result<Exit> {
    let bytes = read_module(path)?;
    let runtime = ctx.runtime()?;
    let sha256 = Sha256::of(&bytes);
    let mut checks: Vec<(String, std::result::Result<String, Error>, Option<f64>)> = Vec::new();
    let pin_ok = match pin {
        Some(expected) if *expected != sha256 => {
            checks.push((
                "sha256 pin".into(),
                Err(Error::Load(LoadError::Pin {
                    expected: expected.to_string(),
                    found: sha256.to_string(),
                })),
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
    let exit = Exit::ok_or_report(accepted);
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
                let _ = writeln!(text, "  {} {name}: {}{time}", s.red("FAIL"), shown_error(e));
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
    let exit = Exit::ok_or_report(matched == cases.len());
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
