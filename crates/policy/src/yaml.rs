//! YAML input: single or multi-document files, read into JSON values.
//!
//! Kubernetes manifests use YAML's JSON-compatible core: maps with string keys, lists,
//! strings, numbers, booleans and null. The parser is libyaml's (through
//! `serde_yaml_ng`), the same family `sigs.k8s.io/yaml` and kubectl accept, so
//! multi-line quoted scalars and anchors behave as they do for kubectl.
//!
//! Two checks come before or beside the parser, because the input may be hostile (a file in
//! CI, a share link of the debugger page):
//! - [`prescan`] refuses nesting deeper than [`MAX_DEPTH`] and texts longer than
//!   [`MAX_TEXT`] in one linear pass: libyaml parses deeply nested flow collections in
//!   quadratic time (20,000 levels took 21 s) before serde's own depth limit is reached.
//! - A key that appears twice in one mapping is an error, as in kubectl's strict decoding
//!   (`sigs.k8s.io/yaml` `UnmarshalStrict`), rather than the last value silently winning:
//!   see [`Strict`].

extern crate std;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// The deepest nesting of collections a document may have (serde's own limit).
pub const MAX_DEPTH: usize = 128;
/// The longest text read, in bytes: the raw module's largest request (docs/ABI.md).
pub const MAX_TEXT: usize = 8 << 20;
/// The most documents one text may hold.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Reads every document of a YAML (or JSON) text. Empty documents are skipped.
///
/// # Errors
/// [`Error::Yaml`] with the line and column of the problem: a syntax error, a map key
/// that is not a string or that appears twice in one mapping, nesting deeper than
/// [`MAX_DEPTH`] levels, a text over [`MAX_TEXT`] bytes, or more than [`MAX_DOCUMENTS`]
/// documents.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    prescan(text)?;
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        if out.len() == MAX_DOCUMENTS {
            return Err(Error::Yaml {
                line: 0,
                column: 0,
                message: format!("more than {MAX_DOCUMENTS} documents in one text"),
            });
        }
        let value = Strict::deserialize(document).map(|s| s.0).map_err(|e| {
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

/// Refuses, in one pass and before any parser sees it, a text over [`MAX_TEXT`] bytes or one
/// whose collections nest deeper than [`MAX_DEPTH`]: flow collections (`[`, `{` outside
/// quotes and comments) and compact block sequences (`- - - x`, each `- ` at the start of a
/// line opens a level). Block mappings and sequences on lines of their own nest by
/// indentation, which costs the text a byte per level per line, so the size cap bounds them.
///
/// # Errors
/// [`Error::Yaml`] at the line and column where the limit is passed.
pub fn prescan(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT {
        return Err(Error::Yaml {
            line: 0,
            column: 0,
            message: format!(
                "the text is {} bytes; at most {MAX_TEXT} are read",
                text.len()
            ),
        });
    }
    #[derive(PartialEq)]
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Plain;
    let (mut line, mut column) = (1usize, 0usize);
    let mut flow = 0usize;
    // At the start of a line, before anything but spaces and `- ` indicators.
    let mut line_start = true;
    let mut dashes = 0usize;
    let mut escaped = false;
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match state {
            In::Single if c == '\'' => state = In::Plain,
            In::Double if escaped => escaped = false,
            In::Double if c == '\\' => escaped = true,
            In::Double if c == '"' => state = In::Plain,
            In::Comment if c == '\n' => state = In::Plain,
            In::Plain => match c {
                // A quote opens a quoted scalar only where a scalar can start; in `it's` it is
                // a character of a plain scalar.
                '\'' if opens_scalar(previous) => state = In::Single,
                '"' if opens_scalar(previous) => state = In::Double,
                '#' if previous.is_whitespace() => state = In::Comment,
                '[' | '{' => flow += 1,
                ']' | '}' => flow = flow.saturating_sub(1),
                '-' if line_start && chars.peek().is_some_and(|n| *n == ' ') => dashes += 1,
                _ => {}
            },
            _ => {}
        }
        if c == '\n' {
            (line, column, line_start, dashes) = (line + 1, 0, true, 0);
            if state == In::Comment {
                state = In::Plain;
            }
        } else if line_start && c != ' ' && c != '-' {
            line_start = false;
        }
        if flow + dashes > MAX_DEPTH {
            return Err(Error::Yaml {
                line,
                column,
                message: format!("collections nested deeper than {MAX_DEPTH} levels"),
            });
        }
        previous = c;
    }
    Ok(())
}

/// Whether a quote after `previous` starts a quoted scalar.
fn opens_scalar(previous: char) -> bool {
    previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-')
}

/// A JSON value read strictly: a mapping with a key twice is an error (kubectl's strict
/// decoding), where `serde_json::Value` would keep the last value. Otherwise the same value
/// `serde_json::Value::deserialize` gives: string keys only, NaN and infinities as null.
#[derive(Debug, Clone, PartialEq)]
pub struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> core::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> core::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> core::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> core::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> core::result::Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> core::result::Result<Value, E> {
        Ok(Value::String(v.into()))
    }
    fn visit_string<E>(self, v: String) -> core::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> core::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> core::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> core::result::Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}` in one mapping"
                )));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
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
