//! `sidekill matrix`: the support matrix, from the policy module.

use clap::Args;

use super::{load_policy, Context, Exit, PolicyArgs};
use crate::error::Result;

pub(super) const ABOUT: &str = "\
Print the support matrix: for each Argo executor, in words, what Argo itself can do
with sidecars declared in the Workflow, injected sidecars and native sidecars, and what
sidekill does with them, which is the same with every executor (the row `none`: Jobs and
plain pods, sidekill alone); then the Argo versions of each executor and the path of
each cell (the command, endpoint or component that does it). The matrix comes from the
policy module; `--format json` prints the module's answer unchanged, methods by their
names: {\"columns\": [...], \"rows\": [{executor, versions, declared: {method, path},
...}]}.";

/// Options of `matrix`.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Which policy module to run.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Prints the module's support matrix.
pub(super) fn run(ctx: &mut Context<'_>, args: &MatrixArgs) -> Result<Exit> {
    let (policy, _) = load_policy(ctx.global, &args.policy)?;
    let answer = policy.matrix()?;
    if ctx.json {
        ctx.json_out(&answer)?;
    } else {
        let answer = crate::answer::MatrixAnswer::read(&answer)?;
        let text = crate::render::matrix(&answer, &ctx.style);
        ctx.print(&text)?;
    }
    Ok(Exit::Ok)
}
