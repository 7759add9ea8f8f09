//! Builds the embedded policy module from `crates/policy-wasm` in the same `cargo build`.
//!
//! A nested `cargo build -p sidekill-policy-wasm --target wasm32-unknown-unknown --profile wasm`
//! runs with its own target directory, so it never waits on the outer build's lock:
//! `embedded-policy-<hash of the workspace's path>` under `$CARGO_TARGET_DIR` when it is set,
//! otherwise next to the outer build's profile directories (or under `$OUT_DIR` when the
//! layout is not the usual one; see [`nested_target_dir`]). The module is copied
//! to `$OUT_DIR/sidekill_policy.wasm`, which `src/embedded.rs` includes. It is built with the
//! `yaml` feature (the optional `sidekill_documents` export), because `sidekill web` serves it
//! to the debugger page with the page's sources from `web/` (`$OUT_DIR/web_files.rs`).
//!
//! The wasm32 target comes from `rust-toolchain.toml`; when the toolchain lacks it, the build
//! adds it through rustup (see [`ensure_target_installed`]).
//!
//! The `wasm` profile optimises for size (`opt-level = "z"`), which suits the module the
//! polyglot loaders and the browser download. The native host runs every decision through
//! the embedded module, so its build overrides the profile's opt-level with 3
//! (`CARGO_PROFILE_WASM_OPT_LEVEL`): about 2.4× faster plans for a module of 265 KB
//! instead of 165 KB (host benchmarks). The code is the same; only the optimiser differs.
//!
//! The build is described in `SIDEKILL_EMBEDDED_BUILD` (`cargo profile wasm, opt-level 3,
//! feature yaml`, or the prebuilt file's name), which `sidekill policy inspect embedded` shows:
//! the module's own identity (`sidekill-policy 0.1.0`) is the same for every build.
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
/// Flags and wrappers meant for the outer (host) build, not for the nested ones.
const OUTER_BUILD_VARS: [&str; 9] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_PRIMARY_PACKAGE",
];

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
    build_module(&workspace, &out_dir, &embedded)?;
    if env::var_os("CARGO_FEATURE_DEMO").is_some() {
        build_quitter(&workspace, &out_dir)?;
    }
    stamp_commit(&workspace);
    abi_exports(&workspace, &out_dir)?;
    embed_web(&workspace, &out_dir, &embedded)
}

/// Writes `$OUT_DIR/abi_exports.rs` (`src/abi.rs` includes it): the exports a module must have,
/// read from `docs/ABI.md`'s "Exports" table, the one list of them (issue 15). Each row's
/// signature becomes the type wasmtime describes: `memory`, or `func(i32, ...)` with
/// `-> i32` unless the result is `()` (every parameter and result of the raw ABI is an
/// `i32`). A table that cannot be read so fails the build, naming the row.
fn abi_exports(workspace: &Path, out_dir: &Path) -> Result<(), String> {
    let path = workspace.join("docs/ABI.md");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let start = text
        .find("\n## Exports\n")
        .ok_or("docs/ABI.md has no `## Exports` section")?;
    // The table ends at the next heading (`### Optional exports` lists the optional ones).
    let end = text[start + 1..]
        .find("\n#")
        .map_or(text.len(), |at| start + 1 + at);
    let mut rows = Vec::new();
    for line in text[start..end].lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let (Some(name), Some(signature)) = (cells.first(), cells.get(1)) else {
            return Err(format!(
                "docs/ABI.md's Exports table: unreadable row {line:?}"
            ));
        };
        let name = name.trim_end_matches('`');
        let signature = signature.trim_matches('`');
        let described = if signature == "memory" {
            "memory".to_string()
        } else {
            let (params, result) = signature
                .strip_prefix('(')
                .and_then(|s| s.split_once(") -> "))
                .ok_or_else(|| format!("docs/ABI.md's Exports table: {name} has the signature {signature:?}, not `(params) -> result`"))?;
            let count = params.split(',').filter(|p| !p.trim().is_empty()).count();
            let params = vec!["i32"; count].join(", ");
            if result == "()" {
                format!("func({params})")
            } else {
                format!("func({params}) -> i32")
            }
        };
        rows.push(format!("    ({name:?}, {described:?}),\n"));
    }
    if rows.is_empty() {
        return Err("docs/ABI.md's Exports table lists no export".into());
    }
    let code = format!(
        "/// The exports the raw ABI requires, with their types as wasmtime describes them\n\
         /// (generated from docs/ABI.md's Exports table by host/build.rs).\n\
         pub const EXPORTS: [(&str, &str); {}] = [\n{}];\n",
        rows.len(),
        rows.concat()
    );
    std::fs::write(out_dir.join("abi_exports.rs"), code)
        .map_err(|e| format!("cannot write abi_exports.rs: {e}"))
}

/// Sets `SIDEKILL_GIT_COMMIT`, which `sidekill --version` prints: `SIDEKILL_GIT_COMMIT` from the
/// environment when set (a build from a source tarball), else `git rev-parse HEAD` of the
/// workspace, else `unknown` (no git, not a clone). The build reruns when HEAD moves: on
/// `.git/HEAD`, the branch it points to and `packed-refs`, each only when it exists (a
/// missing path would make cargo rerun the script on every build).
fn stamp_commit(workspace: &Path) {
    println!("cargo:rerun-if-env-changed=SIDEKILL_GIT_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let commit = env::var("SIDEKILL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Branches and packed-refs live in the common dir (another folder in a worktree).
        let git_dir = PathBuf::from(git_dir);
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .map(PathBuf::from)
            .unwrap_or_else(|| git_dir.clone());
        let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(branch));
        }
        for path in watched.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rustc-env=SIDEKILL_GIT_COMMIT={commit}");
}

/// Builds (or copies) the policy module to `embedded`.
fn build_module(workspace: &Path, out_dir: &Path, embedded: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=SIDEKILL_POLICY_WASM");
    if let Some(prebuilt) = env::var_os("SIDEKILL_POLICY_WASM") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        std::fs::copy(&prebuilt, embedded).map_err(|e| {
            format!(
                "SIDEKILL_POLICY_WASM={}: cannot copy: {e}",
                prebuilt.display()
            )
        })?;
        let name = prebuilt.file_name().map_or_else(
            || prebuilt.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        println!("cargo:rustc-env=SIDEKILL_EMBEDDED_BUILD=prebuilt {name} (SIDEKILL_POLICY_WASM)");
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
    // What `sidekill policy inspect embedded` says the embedded module's build is.
    println!(
        "cargo:rustc-env=SIDEKILL_EMBEDDED_BUILD=cargo profile {PROFILE}, opt-level {opt_level}, feature yaml"
    );

    ensure_target_installed()?;

    let target_dir = nested_target_dir("embedded-policy", workspace, out_dir);

    nested_build(
        workspace,
        &target_dir,
        &[
            "-p",
            "sidekill-policy-wasm",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            // The raw ABI plus `sidekill_documents`, which the debugger page reads YAML with.
            "--features",
            "yaml",
        ],
        &[("CARGO_PROFILE_WASM_OPT_LEVEL", &opt_level)],
    )?;
    let built = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join("sidekill_policy_wasm.wasm");
    std::fs::copy(&built, embedded)
        .map_err(|e| format!("cannot copy {} to OUT_DIR: {e}", built.display()))?;
    Ok(())
}

/// Runs `cargo build ARGS --target-dir TARGET_DIR` on the workspace with `envs`, without the
/// flags and wrappers meant for the outer (host) build; its own target directory means it
/// never waits on the outer build's lock.
fn nested_build(
    workspace: &Path,
    target_dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .envs(envs.iter().copied());
    for var in OUTER_BUILD_VARS {
        command.env_remove(var);
    }
    let what = || {
        format!(
            "cargo build {} --target-dir {}",
            args.join(" "),
            target_dir.display()
        )
    };
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the nested build failed ({status}): {}", what())),
        Err(e) => Err(format!("cannot run the nested build ({}): {e}", what())),
    }
}

/// The nested builds' target directory for `name`: under `CARGO_TARGET_DIR` when set, else
/// next to the outer build's profile directories, keyed by the workspace's path. Clones of
/// the repository that share one `CARGO_TARGET_DIR` (CI's clean clones, git worktrees) would
/// otherwise share the uplifted `<target>/<profile>/<artifact>`: cargo re-links it only when
/// it rebuilds, so a clone whose build is fresh would embed the other clone's artifact.
fn nested_target_dir(name: &str, workspace: &Path, out_dir: &Path) -> PathBuf {
    // FNV-1a 64: stable across builds and toolchains, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in workspace.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let dir = format!("{name}-{hash:016x}");
    match env::var_os("CARGO_TARGET_DIR") {
        Some(target) => PathBuf::from(target).join(dir),
        None => outer_target_dir(out_dir)
            .map(|target| target.join(&dir))
            .unwrap_or_else(|| out_dir.join(&dir)),
    }
}

/// Builds `sidekill-quitter` (crates/quitter) for the host, for `sidekill demo`: its test
/// cluster's `sidekill-nop` and `sidekill-quitter` images run the real binary, which the demo
/// writes out from `$OUT_DIR/sidekill-quitter`. A nested build with its own target directory,
/// as for the policy module; the crate has one dependency (rustix), so it takes seconds.
fn build_quitter(workspace: &Path, out_dir: &Path) -> Result<(), String> {
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("crates/quitter").display()
    );
    let target_dir = nested_target_dir("embedded-quitter", workspace, out_dir);
    nested_build(
        workspace,
        &target_dir,
        &["-p", "sidekill-quitter", "--release"],
        &[],
    )?;
    let built = target_dir.join("release").join("sidekill-quitter");
    std::fs::copy(&built, out_dir.join("sidekill-quitter"))
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

/// Makes sure the wasm32 standard library is there. `rust-toolchain.toml` declares the target,
/// but rustup installs a toolchain file's targets only with the toolchain itself: on a machine
/// that already has the toolchain (a Rust image, CI), nothing adds the target before this build
/// needs it. So the build adds it through rustup, which is what ran this cargo
/// (`RUSTUP_TOOLCHAIN` names the toolchain), and fails with the command to run otherwise.
fn ensure_target_installed() -> Result<(), String> {
    if target_installed()? {
        return Ok(());
    }
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        println!(
            "cargo:warning=adding the {TARGET} target to toolchain {} (rust-toolchain.toml declares it; the embedded policy module is built for it)",
            toolchain.to_string_lossy()
        );
        let rustup = env::var_os("RUSTUP").unwrap_or_else(|| "rustup".into());
        let status = Command::new(rustup)
            .args(["target", "add", TARGET, "--toolchain"])
            .arg(&toolchain)
            .status();
        if matches!(status, Ok(s) if s.success()) && target_installed()? {
            return Ok(());
        }
    }
    Err(format!(
        "the {TARGET} target is not installed, and sidekill embeds its policy module \
         built for it.\n       Run: rustup target add {TARGET}\n       \
         (or set SIDEKILL_POLICY_WASM=/path/to/sidekill_policy.wasm to embed a prebuilt module)"
    ))
}

/// Whether the active toolchain's sysroot has the wasm32 standard library.
fn target_installed() -> Result<bool, String> {
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
    Ok(std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false))
}

/// Writes `$OUT_DIR/web_files.rs`: the debugger page as a list of (path, bytes) that
/// `sidekill web` serves: the page's sources from `web/` (the files `web/build.sh` copies) and,
/// as `sidekill_policy.wasm`, the very module this binary embeds. So a plain `cargo build`
/// serves the page, and the page decides with the same module as the binary.
fn embed_web(workspace: &Path, out_dir: &Path, module: &Path) -> Result<(), String> {
    let web = workspace.join("web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    for entry in read_dir(&web)? {
        let name = entry.to_string_lossy().into_owned();
        if name == "index.html" || name.ends_with(".js") || name.ends_with(".css") {
            files.push((name.clone(), web.join(&name)));
        }
    }
    for entry in read_dir(&web.join("examples"))? {
        let name = entry.to_string_lossy().into_owned();
        if name.ends_with(".yaml") || name == "index.json" {
            files.push((format!("examples/{name}"), web.join("examples").join(&name)));
        }
    }
    files.push(("sidekill_policy.wasm".into(), module.to_path_buf()));
    files.sort();
    let mut code = String::from("/// The debugger page's files, by path relative to its root.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (relative, absolute) in &files {
        code.push_str(&format!(
            "    ({relative:?}, include_bytes!({:?})),\n",
            absolute.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("web_files.rs"), code)
        .map_err(|e| format!("cannot write web_files.rs: {e}"))
}

/// The names of the files (not folders) in `dir`.
fn read_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.path().is_file() {
            names.push(entry.file_name());
        }
    }
    Ok(names)
}
