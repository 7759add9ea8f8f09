//! Shared helpers: one runtime per test binary (compiled modules are cached by sha256, so
//! the embedded module is compiled once), WAT modules by name.

use std::path::PathBuf;
use std::sync::OnceLock;

use sidekill::{Config, Runtime};

/// The runtime every test shares.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Config::default()).expect("runtime"))
}

/// `host/tests/modules/<name>.wat`, compiled to a binary module.
pub fn wat(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/modules")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The embedded module with a custom section appended: the same code, another sha256.
pub fn embedded_variant(tag: &str) -> Vec<u8> {
    let mut bytes = sidekill::embedded::BYTES.to_vec();
    let name = b"sidekill-test";
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u32);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    leb128(&mut bytes, payload.len() as u32);
    bytes.extend_from_slice(&payload);
    bytes
}

fn leb128(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A small batch pod with an istio sidecar, as a request envelope. `restartPolicy: Never`:
/// without it the pod is long-running and its plan stops nothing.
pub const ISTIO_POD: &[u8] = br#"{"object": {"kind": "Pod", "metadata": {"name": "pi",
  "annotations": {"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
  "spec": {"restartPolicy": "Never", "containers": [
    {"name": "pi", "image": "perl"},
    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}}}"#;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// `sidekill web` with `args` after `web --port 0`, in a process of its own, and the
/// `host:port` it serves on (read from the URL it prints first).
pub fn start_web(args: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args(["web", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    (child, address)
}
