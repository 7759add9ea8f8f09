//! Manifests in: a file (or standard input) of YAML or JSON, one or more documents, each
//! turned into a JSON value for the policy module.
//!
//! A text whose first non-blank character is `{` is read as a stream of JSON values (so
//! JSON indented with tabs works, and errors are JSON's). Anything else is YAML: the text is
//! cut at its document markers (`---` and `...` at the start of a line, which YAML forbids
//! inside a document's content) and each document is read on its own with
//! [`sidekill_policy::yaml::documents`]. A syntax error is then an error of its document,
//! with the file's line and column, and the other documents are still read: Helm and
//! kustomize output with one bad document can be checked without filtering it first.
//! A JSON stream stops at its first error (JSON has no markers to resynchronise on).
//!
//! A `List` (kubectl's `v1 List`, or a typed list such as `PodList` whose `items` carry no
//! `kind`) is read as its items, one [`Document`] each, so that one item the policy does not
//! plan (a ConfigMap in a kustomize `List`) is skipped alone.
//!
//! What one input may cost is bounded before it is parsed: at most
//! [`sidekill_policy::yaml::MAX_TEXT`] bytes are read (a larger file is refused by its size,
//! unread), at most [`sidekill_policy::yaml::MAX_DOCUMENTS`] documents are taken, nesting is
//! checked in one pass before the YAML parser runs, and a key given twice in one mapping is
//! an error, in JSON as in YAML (kubectl's strict decoding).

use std::io::Read;
use std::sync::Arc;

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
    /// Its 1-based position among the file's non-empty documents (a document with a
    /// syntax error counts).
    pub index: usize,
    /// For an item of a `List`, its 1-based position in `items`.
    pub item: Option<usize>,
    /// The 1-based line of the file where the document's content starts (for a `List`
    /// item, where the `List` starts).
    pub line: usize,
    /// The object.
    pub object: Value,
    /// The document's text, and the line of the file it starts on.
    text: Arc<str>,
    first_line: usize,
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

    /// Where the document is, for messages: `document 2` or `document 1, item 3`.
    pub fn place(&self) -> String {
        match self.item {
            Some(item) => format!("document {}, item {item}", self.index),
            None => format!("document {}", self.index),
        }
    }

    /// The line and column of a container's `name:` in the document's text: a text search
    /// for block YAML as `kubectl`, Helm and kustomize write it, in the items of a
    /// `containers:` (or `initContainers:`, `ephemeralContainers:`, `sidecars:`) list.
    /// `None` when it is not found (flow style, JSON): then the document's own line is the
    /// best position.
    pub fn container_position(&self, name: &str) -> Option<(usize, usize)> {
        const KEYS: [&str; 4] = [
            "containers:",
            "initContainers:",
            "ephemeralContainers:",
            "sidecars:",
        ];
        // The open list: the indentation of its key, and the column of its items' `-`.
        let mut list: Option<(usize, Option<usize>)> = None;
        for (n, line) in self.text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some((key, _)) = list {
                if indent < key || (indent == key && !trimmed.starts_with("- ")) {
                    list = None;
                }
            }
            if KEYS.iter().any(|k| trimmed.trim_end() == *k) {
                list = Some((indent, None));
                continue;
            }
            let Some((_, item)) = &mut list else {
                continue;
            };
            let dash = *item.get_or_insert(indent);
            // `- name: x` at the items' column, or `name: x` in an item's mapping.
            let (column, field) = match trimmed.strip_prefix('-') {
                Some(rest) if indent == dash => {
                    let field = rest.trim_start();
                    (line.len() - field.len(), field)
                }
                _ => (indent, trimmed),
            };
            if column != dash + 2 && !(column > dash && indent == dash) {
                continue;
            }
            let Some(value) = field.strip_prefix("name:") else {
                continue;
            };
            let value = value.split(" #").next().unwrap_or_default().trim();
            if value.trim_matches(|c| c == '"' || c == '\'') == name {
                return Some((self.first_line + n, column + 1));
            }
        }
        None
    }
}

/// What [`read`] found in one file: its documents, and the problems of the documents that
/// could not be read (a syntax error costs only its own document).
#[derive(Debug, Default)]
pub struct Manifest {
    /// The objects, in order.
    pub documents: Vec<Document>,
    /// Each problem, with the 1-based index of its document when it has one.
    pub errors: Vec<(Option<usize>, Error)>,
}

impl Manifest {
    /// Adds the document `index` (a `List` as its items).
    fn push(&mut self, file: &str, index: usize, value: Value, text: &Arc<str>, first_line: usize) {
        let line = first_line + content_line(text);
        for (item, object) in list_items(value) {
            self.documents.push(Document {
                file: file.to_string(),
                index,
                item,
                line,
                object,
                text: text.clone(),
                first_line,
            });
        }
    }
}

/// Reads every document of a file, or of standard input for `-`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read or is not UTF-8, [`Error::Syntax`] when it is
/// over the size cap: nothing of the file is read then. A document that is not YAML or JSON
/// is an error in [`Manifest::errors`], with its line and column.
pub fn read(file: &str) -> Result<Manifest> {
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
    Ok(parse_all(file, &text))
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

/// Parses the text of a manifest file, stopping at the first problem.
///
/// # Errors
/// [`Error::Syntax`] with the line and column of the first problem.
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>> {
    let manifest = parse_all(file, text);
    match manifest.errors.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(manifest.documents),
    }
}

/// Parses the text of a manifest file: every YAML document that reads, and an error with
/// the file's line and column for each one that does not.
pub fn parse_all(file: &str, text: &str) -> Manifest {
    let mut manifest = Manifest::default();
    let mut index = 0;
    let syntax = |line: usize, column: usize, message: String| Error::Syntax {
        file: file.to_string(),
        line,
        column,
        message,
    };
    if text.trim_start().starts_with('{') {
        let mut start = 0;
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Strict>();
        let mut count = 0;
        while let Some(value) = stream.next() {
            let end = stream.byte_offset();
            match value {
                Ok(Strict(Value::Null)) => {}
                Ok(_) if count == MAX_DOCUMENTS => {
                    manifest.errors.push((
                        None,
                        syntax(
                            0,
                            0,
                            format!("more than {MAX_DOCUMENTS} documents in one text"),
                        ),
                    ));
                    break;
                }
                Ok(Strict(value)) => {
                    count += 1;
                    let first_line = 1 + text[..start].matches('\n').count();
                    let chunk: Arc<str> = Arc::from(&text[start..end]);
                    index += 1;
                    manifest.push(file, index, value, &chunk, first_line);
                }
                Err(e) => {
                    manifest.errors.push((
                        Some(index + 1),
                        // serde_json says column 0 for an error at a line's first
                        // character (a control character right after a newline); columns are
                        // 1-based here, as YAML's are. Found by the manifest fuzz target.
                        syntax(e.line(), e.column().max(1), strip_position(&e.to_string())),
                    ));
                    break;
                }
            }
            start = end;
        }
        return manifest;
    }
    let mut count = 0;
    for (first_line, chunk) in split_yaml(text) {
        match sidekill_policy::yaml::documents(chunk) {
            Ok(values) => {
                let shared: Arc<str> = Arc::from(chunk);
                for value in values {
                    if count == MAX_DOCUMENTS {
                        manifest.errors.push((
                            None,
                            syntax(
                                0,
                                0,
                                format!("more than {MAX_DOCUMENTS} documents in one text"),
                            ),
                        ));
                        return manifest;
                    }
                    count += 1;
                    index += 1;
                    manifest.push(file, index, value, &shared, first_line);
                }
            }
            Err(e) => {
                index += 1;
                count += 1;
                let (line, column, message) = match e {
                    sidekill_policy::Error::Yaml {
                        line,
                        column,
                        message,
                    } if line > 0 => (first_line + line - 1, column, message),
                    sidekill_policy::Error::Yaml { message, .. } => {
                        (first_line + content_line(chunk), 1, message)
                    }
                    other => (first_line + content_line(chunk), 1, other.to_string()),
                };
                manifest
                    .errors
                    .push((Some(index), syntax(line, column, message)));
            }
        }
    }
    manifest
}

/// Cuts a YAML text at its document markers: each piece with the 1-based line it starts on.
/// A `---` line starts a piece (it stays in it: `--- {kind: Pod}` holds content); a `...`
/// line ends one. Directives (`%YAML`) and comments before a `---` stay with it.
fn split_yaml(text: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    // Whether the piece so far holds content (more than directives, comments and markers).
    let mut content = false;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if marker(bare, "---") {
            if content {
                pieces.push((start_line, &text[start..offset]));
                (start, start_line) = (offset, n + 1);
            }
            let rest = bare[3..].trim_start();
            content = !rest.is_empty() && !rest.starts_with('#');
        } else if marker(bare, "...") {
            offset += line.len();
            pieces.push((start_line, &text[start..offset]));
            (start, start_line, content) = (offset, n + 2, false);
            continue;
        } else {
            let trimmed = bare.trim_start();
            if !trimmed.is_empty() && !trimmed.starts_with('#') && !bare.starts_with('%') {
                content = true;
            }
        }
        offset += line.len();
    }
    if start < text.len() {
        pieces.push((start_line, &text[start..]));
    }
    pieces
}

/// Whether a line is the document marker `mark` (`---` or `...`), alone or followed by a
/// space or tab.
fn marker(line: &str, mark: &str) -> bool {
    line.strip_prefix(mark)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// How many lines into a piece its content starts (0-based): markers, directives, blank
/// and comment lines skipped.
fn content_line(piece: &str) -> usize {
    piece
        .lines()
        .position(|l| {
            let t = l.trim_start();
            !(t.is_empty()
                || t.starts_with('#')
                || l.starts_with('%')
                || marker(l, "---") && l[3..].trim_start().is_empty())
        })
        .unwrap_or(0)
}

/// A `List`'s items (with `kind` and `apiVersion` from a typed list such as `PodList` when
/// an item has none), each with its 1-based position; any other value alone.
fn list_items(value: Value) -> Vec<(Option<usize>, Value)> {
    let list_kind = value
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| k.ends_with("List"))
        .map(str::to_owned);
    let (Some(kind), Some(Value::Array(_))) = (list_kind, value.get("items")) else {
        return vec![(None, value)];
    };
    let api_version = value.get("apiVersion").cloned();
    let Value::Object(mut list) = value else {
        unreachable!("a value with `kind` is an object")
    };
    let Some(Value::Array(items)) = list.remove("items") else {
        unreachable!("checked above")
    };
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let (Some(kind), Value::Object(object)) = (item_kind, &mut item) {
                if !object.contains_key("kind") {
                    object.insert("kind".into(), Value::from(kind));
                    if let Some(v) = &api_version {
                        object.entry("apiVersion").or_insert_with(|| v.clone());
                    }
                }
            }
            (Some(i + 1), item)
        })
        .collect()
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
    fn a_yaml_error_costs_only_its_document_and_keeps_the_file_position() {
        let text = "kind: Pod\nmetadata: {name: a}\n---\n# Source: x\nkind: Job\n  bad: [\n---\nkind: Pod\nmetadata: {name: c}\n";
        let manifest = parse_all("x.yaml", text);
        assert_eq!(manifest.documents.len(), 2);
        assert_eq!(manifest.documents[1].index, 3);
        assert_eq!(manifest.documents[1].line, 8);
        let [(Some(2), Error::Syntax { line, .. })] = manifest.errors.as_slice() else {
            panic!("{:?}", manifest.errors)
        };
        assert_eq!(*line, 6, "{:?}", manifest.errors);
    }

    #[test]
    fn markers_directives_and_document_ends() {
        let text = "%YAML 1.1\n---\nkind: Pod\n...\n--- {kind: Job}\n---\n# only a comment\n";
        let docs = parse("x.yaml", text).unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.object["kind"].clone()).collect();
        assert_eq!(kinds, ["Pod", "Job"]);
        assert_eq!(docs[0].line, 3);
        assert_eq!(docs[1].line, 5);
    }

    #[test]
    fn a_list_is_read_as_its_items_and_a_typed_list_names_their_kind() {
        let docs = parse(
            "x.yaml",
            "kind: List\nitems:\n- {kind: ConfigMap}\n- {kind: Job}\n---\nkind: PodList\napiVersion: v1\nitems:\n- metadata: {name: p}\n",
        )
        .unwrap();
        let places: Vec<_> = docs.iter().map(|d| (d.place(), d.label())).collect();
        assert_eq!(
            places,
            [
                ("document 1, item 1".to_string(), "ConfigMap ?".to_string()),
                ("document 1, item 2".to_string(), "Job ?".to_string()),
                ("document 2, item 1".to_string(), "Pod p".to_string()),
            ]
        );
        assert_eq!(docs[2].object["apiVersion"], "v1");
    }

    #[test]
    fn a_container_is_found_by_its_name_under_containers() {
        let text = "kind: Pod\nmetadata:\n  name: proxy\nspec:\n  containers:\n  - name: main\n    env:\n    - {name: proxy}\n  - image: x\n    name: \"proxy\"\n";
        let docs = parse("x.yaml", text).unwrap();
        // Not the pod's own name above `containers:`, nor the env var's.
        assert_eq!(docs[0].container_position("main"), Some((6, 5)));
        assert_eq!(docs[0].container_position("proxy"), Some((10, 5)));
        assert_eq!(docs[0].container_position("absent"), None);
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
