//! Reading the shared vectors in `tests/vectors/`: one JSON file per case, holding the
//! object (inline, or a fixture under `../shared/fixtures/real-world`), the facts, and
//! the expected answer. Shared by the core's vector test and `dump_vectors`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// One vector file.
pub struct Vector {
    /// The file's stem.
    pub name: String,
    /// The file's JSON.
    #[allow(dead_code)] // the vector test reads the expectations; dump_vectors does not
    pub json: Value,
    /// The request envelope to send, as bytes.
    pub request: Vec<u8>,
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the real-world fixtures are: `$SIDEKILL_FIXTURES`, or `../shared/fixtures/real-world`
/// beside the repository.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("SIDEKILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/fixtures/real-world"))
}

/// Every real-world fixture (each folder's files but its notes, `*.md`), sorted, as its path
/// relative to [`fixtures_dir`] (`folder/file`, as a vector's `fixture` names it) and its
/// full path.
#[allow(dead_code)] // the core's tests walk the fixtures; dump_vectors and the module's do not
pub fn fixture_files() -> Vec<(String, PathBuf)> {
    let root = fixtures_dir();
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.expect("directory entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let file = file.expect("directory entry").path();
            let name = file.file_name().expect("file name").to_string_lossy();
            if name.ends_with(".md") {
                continue;
            }
            let folder = dir.file_name().expect("folder name").to_string_lossy();
            files.push((format!("{folder}/{name}"), file.clone()));
        }
    }
    files.sort();
    files
}

/// Every vector, sorted by name.
pub fn load_all() -> Vec<Vector> {
    let dir = repo_root().join("tests/vectors");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

fn load(path: &Path) -> Vector {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let object = match (&json["object"], &json["fixture"]) {
        (Value::Null, Value::String(fixture)) => {
            let fixture_path = fixtures_dir().join(fixture);
            let text = std::fs::read_to_string(&fixture_path)
                .unwrap_or_else(|e| panic!("{}: {e}", fixture_path.display()));
            let mut docs = sidekill_policy::yaml::documents(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", fixture_path.display()));
            assert_eq!(
                docs.len(),
                1,
                "{}: one document expected",
                fixture_path.display()
            );
            docs.remove(0)
        }
        (object, Value::Null) => object.clone(),
        _ => panic!("{}: give `object` or `fixture`, not both", path.display()),
    };
    let mut request = json!({ "object": object });
    if !json["facts"].is_null() {
        request["facts"] = json["facts"].clone();
    }
    // A vector may give the raw request text instead, to test bad input.
    let request = match &json["rawRequest"] {
        Value::String(raw) => raw.clone().into_bytes(),
        _ => serde_json::to_vec(&request).expect("request serializes"),
    };
    Vector {
        name: path
            .file_stem()
            .expect("file stem")
            .to_string_lossy()
            .into_owned(),
        json,
        request,
    }
}
