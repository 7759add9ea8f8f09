//! Manifests in: a file (or standard input) of YAML or JSON, one or more documents, each
//! turned into a JSON value for the policy module.
//!
//! A text whose first non-blank character is `{` is read as a stream of JSON values (so
//! JSON indented with tabs works, and errors are JSON's). Anything else is read as YAML with
//! [`sidekill_policy::yaml::documents`] (multi-document, empty documents skipped). Errors
//! name the file, the line and the column.

use std::io::Read;

use serde_json::Value;

use crate::error::{Error, Result};

/// The name used for standard input.
pub const STDIN: &str = "-";

/// One object of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file it came from (`-` for standard input).
    pub file: String,
    /// Its 1-based position among the file's non-empty documents.
    pub index: usize,
    /// The object.
    pub object: Value,
}

impl Document {
    /// `kind name` for headings, from the object's `kind` and `metadata.name` (or
    /// `generateName`); `?` for what is missing.
    pub fn label(&self) -> String {
        let kind = self
            .object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let meta = self.object.get("metadata");
        let name = meta
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("?");
        format!("{kind} {name}")
    }
}

/// Reads every document of a file, or of standard input for `-`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read or is not UTF-8; [`Error::Syntax`] with the
/// line and column when it is not YAML or JSON.
pub fn read(file: &str) -> Result<Vec<Document>> {
    let text = if file == STDIN {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("standard input", e))?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?
    };
    parse(file, &text)
}

/// Parses the text of a manifest file.
///
/// # Errors
/// [`Error::Syntax`] with the line and column of the problem.
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>> {
    let values = if text.trim_start().starts_with('{') {
        json_stream(text).map_err(|e| Error::Syntax {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?
    } else {
        yaml(file, text)?
    };
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, object)| Document {
            file: file.to_string(),
            index: i + 1,
            object,
        })
        .collect())
}

fn json_stream(text: &str) -> serde_json::Result<Vec<Value>> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

fn yaml(file: &str, text: &str) -> Result<Vec<Value>> {
    sidekill_policy::yaml::documents(text).map_err(|e| match e {
        sidekill_policy::Error::Yaml {
            line,
            column,
            message,
        } => Error::Syntax {
            file: file.to_string(),
            line,
            column,
            message,
        },
        other => Error::Syntax {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: other.to_string(),
        },
    })
}

fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_gives_one_document_per_object() {
        let docs = parse(
            "x.yaml",
            "---\nkind: Pod\nmetadata: {name: a}\n---\n---\nkind: Job\nmetadata:\n  generateName: b-\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].label(), "Pod a");
        assert_eq!(docs[1].label(), "Job b-");
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn json_with_tabs_and_concatenated_values() {
        let docs = parse("x.json", "{\n\t\"kind\": \"Pod\"\n}\n{\"kind\": \"Job\"}").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn yaml_errors_name_file_line_and_column() {
        let err = parse("bad.yaml", "kind: Pod\nspec:\n  containers: [\n").unwrap_err();
        let Error::Syntax { file, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "bad.yaml");
        assert!(*line >= 3, "{err}");
        assert!(err.to_string().starts_with("bad.yaml: line "), "{err}");
    }

    #[test]
    fn json_errors_name_line_and_column() {
        let err = parse("bad.json", "{\"kind\": \"Pod\",\n \"spec\": }").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad.json: line 2, column 10: expected value (expected a YAML or JSON Kubernetes object)"
        );
    }
}
