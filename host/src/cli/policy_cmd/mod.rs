//! `sidekill policy inspect | test | diff | push | rollback | keygen | sign | verify`: the
//! subcommands and their arguments, each run in its own module.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use super::{parse_sha256, Context, Exit, FactsArgs};
use crate::digest::Sha256;
use crate::error::{Error, Result};

mod diff;
mod inspect;
#[cfg(feature = "configmap")]
mod publish;
mod sign;
mod test;

pub use sign::SignCommand;

/// `sidekill policy ...`
///
/// Wherever a module file is expected, the name `embedded` stands for the module built
/// into this binary (`./embedded` is a file of that name).
#[derive(Debug, Subcommand)]
#[command(after_long_help = "\
Wherever a module file is expected, the name `embedded` stands for the module built into
this binary: `sidekill policy inspect embedded`, `sidekill policy diff embedded
dist/raw/sidekill_policy.wasm manifests.yaml` (a file named embedded: ./embedded).")]
pub enum PolicyCommand {
    /// Show a module's ABI version, identity, build, imports, exports, size and sha256
    #[command(
        visible_alias = "info",
        long_about = "\
Show a module's size, sha256, imports and exports, and, when it loads, its ABI version
and identity (name, version, features, presets hash). A module that would be refused
(an import, a missing export, another ABI version, ...) is shown with the reason, and
the exit code is 1.

Every build of one source has the same identity (`sidekill-policy 0.1.0`): the embedded
module (opt-level 3, for speed) and dist/raw/sidekill_policy.wasm (opt-level z, for
size) differ only in their sha256. `build` says which one a module is: for `embedded`,
how it was built; for a file, whether it is the embedded module's bytes."
    )]
    Inspect {
        /// The module: a file, or `embedded`
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
    },

    /// Compare the plans of two modules on the same manifests
    #[command(long_about = "\
Plan every object of FILES with OLD and with NEW, and show which answers differ and how,
as JSON paths (`$.ok.subjects[0].plan.stops[0].verdict: \"may-stop\" -> \"stops\"`).
An error answer, or a call that fails in one module and not the other, is a difference
too. Exit code 1 when anything differs, 0 when every answer is the same.")]
    Diff {
        /// The module in service: a file, or `embedded`
        #[arg(value_name = "OLD.wasm")]
        old: PathBuf,
        /// The candidate: a file, or `embedded`
        #[arg(value_name = "NEW.wasm")]
        new: PathBuf,
        /// Manifest files (YAML or JSON); `-` reads standard input
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Facts passed to the policy.
        #[command(flatten)]
        facts: FactsArgs,
    },

    /// Run the checks a hot swap runs before a module goes live, or a corpus of modules
    #[command(long_about = "\
Run the checks a hot swap runs before a module goes live: the sha256 pin (with
--sha256), loading (wasm magic, compilation, no imports, the ABI's exports and their
types, ABI major version 1, instantiation under the limits), then every canary request
(no trap, no deadline, an answer that parses and has the expected shape). Exit code 0
when the module would be accepted, 1 when it would be refused.

With --corpus DIR instead of X.wasm: run every module DIR/corpus.json lists (the
hostile-module corpus is host/tests/modules) through the path every module takes:
read (16 MiB at most), load, plan the manifest's `request`, and check the plan with the
executor's guard against the request's pod. Each module's outcome (refused-at-load,
call-fails, not-a-plan, steps-refused or benign, with the error's name for the first
two) is compared with the one the manifest gives it. Exit code 0 when every module did
what the manifest says, 1 when one did not, 2 when the manifest cannot be read.

  sidekill policy test --corpus host/tests/modules

JSON output with --corpus: {corpus, total, matched, modules: [{file, expected: {outcome,
error?}, actual: {outcome, error?}, detail, matches}]}")]
    Test {
        /// The module
        #[arg(value_name = "X.wasm")]
        #[cfg_attr(feature = "configmap", arg(required_unless_present = "corpus"))]
        #[cfg_attr(not(feature = "configmap"), arg(required = true))]
        module: Option<PathBuf>,
        /// Refuse the module unless its sha256 is this (64 hex digits)
        #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
        sha256: Option<Sha256>,
        /// Run the corpus in DIR (DIR/corpus.json) instead of one module
        #[cfg(feature = "configmap")]
        #[arg(long, value_name = "DIR", conflicts_with_all = ["module", "sha256"])]
        corpus: Option<PathBuf>,
    },

    /// Put a module live in the ConfigMap a controller watches, keeping the old one
    #[cfg(feature = "configmap")]
    #[command(long_about = "\
Put a policy module live in the ConfigMap a running controller watches (its ConfigMap
source), keeping the module it replaces for `sidekill policy rollback`.

X.wasm is first checked exactly as a hot swap checks it: loading (wasm magic, no
imports, the ABI's exports and their types, ABI major version 1, under --timeout-ms and
--memory-limit-mib), then every canary request. A module that would be refused is not
written. Then ConfigMap NAMESPACE/NAME is read and written: the module goes under
binaryData[KEY], the module it replaces under binaryData[KEY.previous], and the
annotations sidekill.dev/KEY and sidekill.dev/KEY.previous record each module's name,
version, sha256 and size as JSON. The ConfigMap is created when missing; a KEY that
already holds these bytes is left alone. The controller swaps to the new module after
its own checks.

The write is conditional on the resourceVersion that was read. When someone else
changed the ConfigMap meanwhile (another push), it is read again and the push retried,
at most 5 times: the version the other writer made live becomes the previous one, so no
version is lost. Both modules must fit in the API server's 1 MiB ConfigMap limit.
RBAC: get, create and update on configmaps in NAMESPACE.

Exit codes: 0 pushed (or already live); 1 the module would be refused, nothing was
written; 2 error: an unreadable file, no usable kubeconfig, an API error, a ConfigMap
that changed at every attempt.

JSON output: {configmap, key, previousKey, action: created|pushed|unchanged,
              live: {name, version, sha256, size}, previous: {...} | null,
              resourceVersion, attempts}
or, refused: {configmap, key, previousKey, action: \"refused\",
              module: {file, sha256, size}, error, message}")]
    Push {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// Its signature, written under KEY.sig [default: X.wasm.sig when it exists]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The ConfigMap.
        #[command(flatten)]
        target: publish::ConfigMapArgs,
    },

    /// Make the previous module live again in a ConfigMap, after checking it
    #[cfg(feature = "configmap")]
    #[command(long_about = "\
Swap the live and the previous modules of the ConfigMap a running controller watches:
binaryData[KEY.previous] (kept by `sidekill policy push`) goes back under KEY, and the
module it replaces under KEY.previous, with their annotations. Running it twice returns
to where it started.

The previous module is first checked exactly as a hot swap checks it (loading, then
every canary request); one that would be refused is not written. The write is
conditional on the resourceVersion that was read, and is not retried: when someone else
changed the ConfigMap meanwhile, nothing is written and the command fails, so a push it
did not see is never rolled back. RBAC: get and update on configmaps in NAMESPACE.

Exit codes: 0 rolled back; 1 the previous module would be refused, nothing was written;
2 error: no such ConfigMap, no KEY.previous in it, no usable kubeconfig, an API error,
a ConfigMap changed meanwhile.

JSON output: {configmap, key, previousKey, action: \"rolled-back\",
              live: {name, version, sha256, size}, previous: {...} | null,
              resourceVersion, attempts}
or, refused: {configmap, key, previousKey, action: \"refused\", module: {key},
              error, message}")]
    Rollback {
        /// The ConfigMap.
        #[command(flatten)]
        target: publish::ConfigMapArgs,
    },

    /// Module signatures: keygen, sign, verify.
    #[command(flatten)]
    Sign(SignCommand),
}

/// Runs one `sidekill policy` subcommand.
pub(super) fn run(ctx: &mut Context<'_>, command: &PolicyCommand) -> Result<Exit> {
    match command {
        PolicyCommand::Inspect { module } => inspect::run(ctx, module),
        #[cfg(feature = "configmap")]
        PolicyCommand::Test {
            corpus: Some(dir), ..
        } => test::corpus(ctx, dir),
        PolicyCommand::Test {
            module: Some(module),
            sha256,
            ..
        } => test::test(ctx, module, sha256.as_ref()),
        // clap requires X.wasm unless --corpus is given.
        PolicyCommand::Test { .. } => Ok(Exit::Error),
        PolicyCommand::Diff {
            old,
            new,
            files,
            facts,
        } => diff::run(ctx, old, new, files, facts),
        #[cfg(feature = "configmap")]
        PolicyCommand::Push {
            module,
            signature,
            target,
        } => publish::push(ctx, module, signature.as_deref(), target),
        #[cfg(feature = "configmap")]
        PolicyCommand::Rollback { target } => publish::rollback(ctx, target),
        PolicyCommand::Sign(SignCommand::Keygen { out }) => sign::keygen(ctx, out),
        PolicyCommand::Sign(SignCommand::Sign { module, key, out }) => {
            sign::sign(ctx, module, key, out.as_deref())
        }
        PolicyCommand::Sign(SignCommand::Verify {
            module,
            keys,
            signature,
        }) => sign::verify(ctx, module, keys, signature.as_deref()),
    }
}

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

/// An error as the table shows it: the report, made safe, then the error's name.
fn shown_error(e: &Error) -> String {
    format!("{} ({})", safe(&e.report().to_string()), e.name())
}
