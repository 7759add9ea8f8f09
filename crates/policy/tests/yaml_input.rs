//! Hostile and strict YAML input: the limits of `sidekill_policy::yaml` hold before the parser
//! spends time, and a key given twice is an error.

use std::time::{Duration, Instant};

use sidekill_policy::yaml::{documents, MAX_DEPTH, MAX_TEXT};
use sidekill_policy::Error;

fn yaml_error(text: &str) -> (usize, usize, String) {
    match documents(text) {
        Err(Error::Yaml {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("expected a YAML error, got {other:?}"),
    }
}

/// [`yaml_error`] for input the limits must refuse before the parser spends time on it: the
/// error has to come within a second.
fn yaml_error_at_once(text: &str) -> (usize, usize, String) {
    let start = Instant::now();
    let error = yaml_error(text);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    error
}

#[test]
fn deep_flow_nesting_is_refused_at_once() {
    for depth in [20_000, 100_000] {
        let text = format!("a: {}1{}", "[".repeat(depth), "]".repeat(depth));
        let (line, column, message) = yaml_error_at_once(&text);
        assert!(message.contains("nested deeper than 128"), "{message}");
        // The 129th `[` is at column 3 + 129.
        assert_eq!((line, column), (1, 3 + MAX_DEPTH + 1));
    }
}

#[test]
fn deep_compact_sequences_are_refused_at_once() {
    let text = format!("{}x\n", "- ".repeat(50_000));
    let (_, _, message) = yaml_error_at_once(&text);
    assert!(message.contains("nested deeper"), "{message}");
}

#[test]
fn nesting_at_the_limit_and_brackets_in_strings_are_fine() {
    let text = format!(
        "a: {}1{}",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(documents(&text).map(|d| d.len()), Ok(1));
    let quoted = format!(
        "a: '{}'\nb: \"{}\"\nc: it's {} # {}\n",
        "[".repeat(500),
        "{".repeat(500),
        "plain",
        "[".repeat(500)
    );
    assert_eq!(documents(&quoted).map(|d| d.len()), Ok(1));
}

#[test]
fn an_apostrophe_in_a_plain_scalar_does_not_hide_a_deep_nest() {
    let text = format!("a: it's {}1{}", "[".repeat(1_000), "]".repeat(1_000));
    let (_, _, message) = yaml_error(&text);
    assert!(message.contains("nested deeper"), "{message}");
}

#[test]
fn a_text_over_the_cap_is_refused_before_parsing() {
    let text = "#".repeat(MAX_TEXT + 1);
    let (_, _, message) = yaml_error_at_once(&text);
    assert!(message.contains("at most"), "{message}");
}

#[test]
fn a_key_twice_in_one_mapping_is_an_error_with_its_place() {
    let (line, _, message) = yaml_error("kind: Pod\nmetadata:\n  name: a\n  name: b\nspec: {}\n");
    assert!(message.contains("duplicate key `name`"), "{message}");
    // serde_yaml_ng places a custom error at the last event it read: the first `name` or the
    // second, never elsewhere.
    assert!((3..=4).contains(&line), "line {line}");
    // The same key in two mappings is fine.
    assert!(documents("a: {x: 1}\nb: {x: 2}\n").is_ok());
    // JSON text too.
    let (_, _, message) = yaml_error(r#"{"kind": "Pod", "kind": "Job"}"#);
    assert!(message.contains("duplicate key `kind`"), "{message}");
}

#[test]
fn values_are_those_serde_json_gives() {
    let docs = documents("a: 1\nb: -2\nc: 1.5\nd: .nan\ne: ~\nf: [true, 'x']\n").unwrap();
    assert_eq!(
        docs[0],
        serde_json::json!({"a": 1, "b": -2, "c": 1.5, "d": null, "e": null, "f": [true, "x"]})
    );
}
