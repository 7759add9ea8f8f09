//! `sidekill web`: serve the browser debugger.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Context, Exit};
use crate::error::{Error, Result};

pub(super) const ABOUT: &str = "\
Serve the browser debugger: a static page that runs the policy in the browser (the raw
policy module, the same bytes every loader runs) and shows, for a pasted Pod, Job or Workflow, each container's
classification with its evidence, the support matrix, the plan as a timeline and the
diagnostics; it also edits kill-cmd annotations live, simulates Istio, Linkerd or Kuma
injection, and compares two policy modules.

The page's files are embedded in the binary when `dist/web` (made by `web/build.sh`, or
$SIDEKILL_WEB_DIST) existed at build time; --dir serves a folder instead. The page makes
no network call. Prints the URL on the first line of standard output, then serves until
interrupted. Exit code 2 when there is nothing to serve or the port cannot be bound.";

/// The options every other command takes and `web` has no use for: the page runs the policy
/// in the browser and `web` prints only its URL. They are refused as unknown arguments
/// (an argument of the subcommand with the same name hides the global one), so that
/// `sidekill web --timeout-ms 5` does not look like it did something. Their environment
/// variables are not read.
pub(super) fn refused_args() -> Vec<clap::Arg> {
    [
        ("format", "format"),
        ("timeout_ms", "timeout-ms"),
        ("memory_limit_mib", "memory-limit-mib"),
        ("answer_budget_mib", "answer-budget-mib"),
        ("cache_dir", "cache-dir"),
    ]
    .into_iter()
    .map(|(id, flag)| {
        clap::Arg::new(id).long(flag).hide(true).value_parser(
            clap::builder::UnknownArgumentValueParser::suggest(
                "`sidekill web` serves a page that runs the policy in the browser; it \
                     prints only the page's URL and loads no module itself",
            ),
        )
    })
    .collect()
}

/// Arguments of `sidekill web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 8080, env = "SIDEKILL_WEB_PORT")]
    pub port: u16,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Serve this folder (such as dist/web) instead of the embedded page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Serves the page until interrupted.
pub(super) fn run(ctx: &mut Context<'_>, args: &WebArgs) -> Result<Exit> {
    let site = match &args.dir {
        Some(dir) => crate::web::Site::Folder(dir.clone()),
        None => crate::web::Site::Embedded,
    };
    let address = std::net::SocketAddr::new(args.bind, args.port);
    let listener =
        std::net::TcpListener::bind(address).map_err(|e| Error::io(address.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(address.to_string(), e))?;
    writeln!(ctx.out, "http://{local}/").map_err(|e| Error::io("standard output", e))?;
    ctx.out
        .flush()
        .map_err(|e| Error::io("standard output", e))?;
    crate::web::serve(listener, site);
    Ok(Exit::Ok)
}
