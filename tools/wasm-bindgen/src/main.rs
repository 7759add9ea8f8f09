//! `sidekill-bindgen`: turns the `js` build of `crates/policy-wasm` into a JavaScript package,
//! as `wasm-bindgen --target web|nodejs` does, with the same library (`wasm-bindgen-cli-support`)
//! at the version `crates/policy-wasm` pins.
//!
//! Why not `cargo install wasm-bindgen-cli`: its lock file pins crates the registry may no
//! longer serve (`--locked` then fails), without `--locked` it resolves anew on every machine,
//! and it builds a test runner with an HTTP and TLS stack sidekill never uses (7 minutes on
//! two cores). This crate's own `Cargo.lock` pins what the library needs, and nothing else.
//!
//! ```text
//! $ cargo run --release --manifest-path tools/wasm-bindgen/Cargo.toml -- \
//!     --target web --out-dir dist/pkg-web --out-name sidekill_policy module.wasm
//! ```
//!
//! Exit codes: 0 written; 1 wasm-bindgen failed; 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use wasm_bindgen_cli_support::Bindgen;

const USAGE: &str =
    "usage: sidekill-bindgen --target web|nodejs --out-dir DIR --out-name NAME INPUT.wasm";

struct Args {
    target: String,
    out_dir: PathBuf,
    out_name: String,
    input: PathBuf,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut target, mut out_dir, mut out_name, mut input) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--target" => target = Some(value("--target")?),
            "--out-dir" => out_dir = Some(PathBuf::from(value("--out-dir")?)),
            "--out-name" => out_name = Some(value("--out-name")?),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            path if input.is_none() => input = Some(PathBuf::from(path)),
            extra => return Err(format!("one input only; also got {extra}")),
        }
    }
    Ok(Args {
        target: target.ok_or("--target is required")?,
        out_dir: out_dir.ok_or("--out-dir is required")?,
        out_name: out_name.ok_or("--out-name is required")?,
        input: input.ok_or("the input .wasm is required")?,
    })
}

fn generate(args: &Args) -> Result<(), String> {
    let mut bindgen = Bindgen::new();
    bindgen
        .input_path(&args.input)
        .out_name(&args.out_name)
        .typescript(true)
        // The library's defaults are not the command's: these are what `wasm-bindgen` (and
        // so wasm-pack) passes when no flag says otherwise. A default module path lets
        // `init()` be called with no argument.
        .omit_default_module_path(false);
    let chosen = match args.target.as_str() {
        "web" => bindgen.web(true),
        "nodejs" => bindgen.nodejs(true),
        other => return Err(format!("--target {other}: expected web or nodejs")),
    };
    chosen.map_err(|e| format!("{e:#}"))?;
    bindgen
        .generate(&args.out_dir)
        .map_err(|e| format!("{}: {e:#}", args.input.display()))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sidekill-bindgen: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sidekill-bindgen: {message}");
            ExitCode::from(1)
        }
    }
}
