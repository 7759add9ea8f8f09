//! Plans every object of a YAML or JSON file and prints the answer as JSON.
//!
//! Run: `cargo run -p sidekill-policy --example plan_file -- FILE`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: plan_file FILE");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let documents = match sidekill_policy::yaml::documents(&text) {
        Ok(docs) => docs,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    for object in documents {
        let request = serde_json::json!({ "object": object });
        let answer =
            sidekill_policy::call(sidekill_policy::Call::Plan, request.to_string().as_bytes());
        println!("{}", String::from_utf8_lossy(&answer));
    }
    ExitCode::SUCCESS
}
