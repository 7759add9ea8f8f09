//! Writes, for every shared vector, the request the loaders send and the native core's
//! answer, so every runtime can be compared with the native core byte for byte.
//!
//! Run: `cargo run -p sidekill-policy --example dump_vectors -- OUT_DIR`
//! Writes `OUT_DIR/<vector>.request.json` and `OUT_DIR/<vector>.answer.json`.

#[path = "common/vectors.rs"]
mod vectors;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dump_vectors OUT_DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::from(2);
    }
    let all = vectors::load_all();
    for vector in &all {
        let answer = sidekill_policy::call(sidekill_policy::Call::Plan, &vector.request);
        let request_path = out.join(format!("{}.request.json", vector.name));
        let answer_path = out.join(format!("{}.answer.json", vector.name));
        for (path, bytes) in [(&request_path, &vector.request), (&answer_path, &answer)] {
            if let Err(e) = std::fs::write(path, bytes) {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    println!("{} vectors written to {}", all.len(), out.display());
    ExitCode::SUCCESS
}
