//! YAML input: single or multi-document files, read into JSON values.
//!
//! Kubernetes manifests use YAML's JSON-compatible core: maps with string keys, lists,
//! strings, numbers, booleans and null. The parser is libyaml's (through
//! `serde_yaml_ng`), the same family `sigs.k8s.io/yaml` and kubectl accept, so
//! multi-line quoted scalars and anchors behave as they do for kubectl.

extern crate std;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Reads every document of a YAML (or JSON) text. Empty documents are skipped.
///
/// # Errors
/// [`Error::Yaml`] with the line and column of the problem: a syntax error, a map key
/// that is not a string, or nesting deeper than 128 levels.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let text = e.to_string();
            // The location is carried separately; drop serde_yaml's " at line L column C".
            let message = match text.find(" at line ") {
                Some(cut) => String::from(&text[..cut]),
                None => text,
            };
            Error::Yaml {
                line,
                column,
                message,
            }
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// [`documents`] as the ABI's envelope: `{"ok": [document, ...]}`, or
/// `{"error": {"code": "invalid_yaml", "message", "line", "column"}}` with the 1-based
/// position of the problem (left out when the parser gave none). The raw module's
/// `sidekill_documents` and the JavaScript build's `parseDocuments` both answer with it.
///
/// Written by hand to keep the ABI's key order (code, message, ...): `json!` would sort keys.
pub fn documents_envelope(text: &str) -> Vec<u8> {
    let error = match documents(text) {
        Ok(documents) => {
            return serde_json::to_vec(&serde_json::json!({ "ok": documents })).unwrap_or_else(
                |_| crate::error_envelope("internal", "serialization failed", None),
            )
        }
        Err(error) => error,
    };
    let position = match error {
        // 0 means the parser gave no position: leave the fields out rather than lie.
        Error::Yaml { line, column, .. } if line > 0 => {
            alloc::format!(r#","line":{line},"column":{column}"#)
        }
        _ => String::new(),
    };
    // A JSON string's Display is its quoted, escaped JSON text.
    let message = Value::from(error.to_string());
    alloc::format!(
        r#"{{"error":{{"code":"{}","message":{message}{position}}}}}"#,
        error.code()
    )
    .into_bytes()
}
