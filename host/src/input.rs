//! Manifests in: a file (or standard input) of YAML or JSON, one or more documents, each
//! turned into a JSON value for the policy module.
//!
//! A text whose first non-blank character is `{` is read as a stream of JSON values (so
//! JSON indented with tabs works, and errors are JSON's). Anything else is read as YAML with
//! [`sidekill_policy::yaml::documents`] (multi-document, empty documents skipped). Errors
//! name the file, the line and the column.
//!
//! What one input may cost is bounded before it is parsed: at most
//! [`sidekill_policy::yaml::MAX_TEXT`] bytes are read (a larger file is refused by its size,
//! unread), at most [`sidekill_policy::yaml::MAX_DOCUMENTS`] documents are taken, nesting is
//! checked in one pass before the YAML parser runs, and a key given twice in one mapping is
//! an error, in JSON as in YAML (kubectl's strict decoding).

use std::io::Read;

use sidekill_policy::yaml::{Strict, MAX_DOCUMENTS, MAX_TEXT};

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
        read_capped(file, std::io::stdin())?
    } else {
        let handle = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let size = handle.metadata().map_err(|e| Error::io(file, e))?.len();
        if size > MAX_TEXT as u64 {
            return Err(too_large(file, size));
        }
        read_capped(file, handle)?
    };
    parse(file, &text)
}

/// The text of `reader`, refused past [`MAX_TEXT`] bytes without reading further.
fn read_capped(file: &str, reader: impl Read) -> Result<String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_TEXT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(file, e))?;
    if bytes.len() > MAX_TEXT {
        return Err(too_large(file, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::io(
            file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

fn too_large(file: &str, size: u64) -> Error {
    let shown = if size > MAX_TEXT as u64 {
        format!("more than {MAX_TEXT}")
    } else {
        size.to_string()
    };
    Error::Syntax {
        file: file.to_string(),
        line: 0,
        column: 0,
        message: format!(
            "the input is {shown} bytes; at most {MAX_TEXT} are read (split it into smaller files)"
        ),
    }
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
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Strict>() {
        let Strict(value) = value?;
        if value.is_null() {
            continue;
        }
        if values.len() == MAX_DOCUMENTS {
            return Err(serde_json::Error::io(std::io::Error::other(format!(
                "more than {MAX_DOCUMENTS} documents in one text"
            ))));
        }
        values.push(value);
    }
    Ok(values)
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
    fn a_file_over_the_cap_is_refused_by_its_size_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: its size says 25 MB, and reading it would take as much memory.
        file.set_len(25 << 20).unwrap();
        let start = std::time::Instant::now();
        let err = read(path.to_str().unwrap()).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(err.to_string().contains("at most 8388608"), "{err}");
    }

    #[test]
    fn json_keys_given_twice_are_an_error() {
        let err = parse("x.json", r#"{"kind": "Pod", "kind": "Job"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `kind`"), "{err}");
    }

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
