//! Builds the embedded policy module from `crates/policy-wasm` in the same `cargo build`.
//!
//! A nested `cargo build -p sidekill-policy-wasm --target wasm32-unknown-unknown --profile wasm`
//! runs with its own target directory, so it never waits on the outer build's lock:
//! `$CARGO_TARGET_DIR/embedded-policy` when `CARGO_TARGET_DIR` is set, otherwise
//! `<target>/embedded-policy` next to the outer build's profile directories (or
//! `$OUT_DIR/embedded-policy` when the layout is not the usual one). The module is copied
//! to `$OUT_DIR/sidekill_policy.wasm`, which `src/embedded.rs` includes.
//!
//! The `wasm` profile optimises for size (`opt-level = "z"`), which suits the module the
//! polyglot loaders and the browser download. The native host runs every decision through
//! the embedded module, so its build overrides the profile's opt-level with 3
//! (`CARGO_PROFILE_WASM_OPT_LEVEL`): about 2.4× faster plans for a module of 265 KB
//! instead of 165 KB (host benchmarks). The code is the same; only the optimiser differs.
//!
//! Environment:
//! - `SIDEKILL_POLICY_WASM=/path/to/module.wasm` embeds that file instead of building one
//!   (for packagers that ship a wasm-opt'ed `dist/raw/sidekill_policy.wasm`).
//! - `SIDEKILL_POLICY_OPT_LEVEL` (default `3`) is the opt-level of the nested build
//!   (`z` gives the size-optimised module of `scripts/build-wasm`).
//! - `RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS` and `CARGO_BUILD_RUSTFLAGS` are meant for the
//!   host and are not passed on; `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS` is.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm";
const ARTIFACT: &str = "sidekill_policy_wasm.wasm";

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; the message is what the user sees.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("host/ has no parent directory")?
        .to_path_buf();
    let embedded = out_dir.join("sidekill_policy.wasm");
    embed_web(&workspace, &out_dir)?;

    println!("cargo:rerun-if-env-changed=SIDEKILL_POLICY_WASM");
    if let Some(prebuilt) = env::var_os("SIDEKILL_POLICY_WASM") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        std::fs::copy(&prebuilt, &embedded).map_err(|e| {
            format!(
                "SIDEKILL_POLICY_WASM={}: cannot copy: {e}",
                prebuilt.display()
            )
        })?;
        return Ok(());
    }

    for path in [
        "crates/policy/src",
        "crates/policy/Cargo.toml",
        "crates/policy-wasm/src",
        "crates/policy-wasm/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=SIDEKILL_POLICY_OPT_LEVEL");
    let opt_level = env::var("SIDEKILL_POLICY_OPT_LEVEL").unwrap_or_else(|_| "3".into());

    check_target_installed()?;

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("embedded-policy"),
        None => outer_target_dir(&out_dir)
            .map(|dir| dir.join("embedded-policy"))
            .unwrap_or_else(|| out_dir.join("embedded-policy")),
    };

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args([
            "-p",
            "sidekill-policy-wasm",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_WASM_OPT_LEVEL", &opt_level);
    // Flags and wrappers meant for the outer (host) build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run the nested cargo build of the policy module: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the nested build of the policy module failed ({status}): \
             cargo build -p sidekill-policy-wasm --target {TARGET} --profile {PROFILE} \
             --target-dir {}",
            target_dir.display()
        ));
    }
    let built = target_dir.join(TARGET).join(PROFILE).join(ARTIFACT);
    std::fs::copy(&built, &embedded)
        .map_err(|e| format!("cannot copy {} to OUT_DIR: {e}", built.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (is this running under cargo?)"))
}

/// `<target>` from `<target>/<profile>/build/<package>-<hash>/out`.
fn outer_target_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.ancestors().nth(2)?;
    if build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.parent()?.to_path_buf())
}

/// Fails with the command to run when the wasm32 standard library is not installed.
fn check_target_installed() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc --print sysroot: {e}"))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib");
    let installed = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    if installed {
        Ok(())
    } else {
        Err(format!(
            "the {TARGET} target is not installed, and sidekill embeds its policy module \
             built for it.\n       Run: rustup target add {TARGET}\n       \
             (or set SIDEKILL_POLICY_WASM=/path/to/sidekill_policy.wasm to embed a prebuilt module)"
        ))
    }
}

/// Writes `$OUT_DIR/web_files.rs`: the debugger page (`dist/web`, made by `web/build.sh`, or
/// `$SIDEKILL_WEB_DIST`) as a list of (path, bytes) that `sidekill web` serves. Without a
/// built page the list is empty and `sidekill web` says how to build it.
fn embed_web(workspace: &Path, out_dir: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=SIDEKILL_WEB_DIST");
    let dir = env::var_os("SIDEKILL_WEB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("dist/web"));
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    if dir.join("index.html").is_file() {
        collect_files(&dir, &dir, &mut files)?;
    }
    files.sort();
    let mut code = String::from("/// The debugger page's files, by path relative to its root.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (relative, absolute) in &files {
        code.push_str(&format!(
            "    ({relative:?}, include_bytes!({absolute:?})),\n"
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("web_files.rs"), code)
        .map_err(|e| format!("cannot write web_files.rs: {e}"))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push((
                relative.to_string_lossy().replace('\\', "/"),
                path.to_string_lossy().into_owned(),
            ));
        }
    }
    Ok(())
}
