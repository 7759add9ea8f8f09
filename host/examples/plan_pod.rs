//! Loads a policy module (the embedded one, or the file given), checks it like a hot swap
//! would, and plans a pod with an istio sidecar.
//!
//! Run: `cargo run -p sidekill --example plan_pod [-- path/to/sidekill_policy.wasm]`

use sidekill::{embedded, Config, PolicyStore, Runtime};

const POD: &str = r#"{"object": {
  "kind": "Pod",
  "metadata": {"name": "pi", "annotations": {
    "sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
  "spec": {"restartPolicy": "Never", "containers": [
    {"name": "pi", "image": "perl"},
    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]},
  "status": {"containerStatuses": [
    {"name": "pi", "state": {"terminated": {"exitCode": 0}}},
    {"name": "istio-proxy", "state": {"running": {}}}]}},
 "facts": {"clusterVersion": "1.28"}}"#;

fn main() -> anyhow::Result<()> {
    let runtime = Runtime::new(Config::default())?;
    let (bytes, origin) = match std::env::args().nth(1) {
        Some(path) => (std::fs::read(&path)?, path),
        None => (embedded::BYTES.to_vec(), embedded::ORIGIN.to_string()),
    };
    // The store validates the module (no imports, ABI 1.x, canaries) before serving it.
    let store = PolicyStore::new(runtime, None, &bytes, &origin)?;
    let policy = store.current();
    println!(
        "policy {} {} (sha256 {}, ABI {}) from {origin}",
        policy.info().name,
        policy.info().version,
        policy.sha256().short(),
        policy.abi()
    );
    let answer = policy.plan(POD.as_bytes())?;
    let report = &answer["subjects"][0];
    println!("readiness: {}", report["readiness"]["state"]);
    for stop in report["plan"]["stops"].as_array().into_iter().flatten() {
        println!("stop {} ({}):", stop["container"], stop["verdict"]);
        for step in stop["steps"].as_array().into_iter().flatten() {
            println!("  {step}");
        }
    }
    Ok(())
}
