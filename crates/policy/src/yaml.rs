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
