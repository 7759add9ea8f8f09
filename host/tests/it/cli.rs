//! The real `sidekill` binary, run in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{repo_root, wat};

struct Sidekill {
    dir: tempfile::TempDir,
}

impl Sidekill {
    fn new() -> Self {
        Sidekill {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// Runs the binary with a shared compiled-module cache, so the debug build compiles
    /// the embedded module once for all tests.
    fn run(&self, args: &[&str]) -> Output {
        let cache = std::env::temp_dir().join("sidekill-cli-test-cache");
        Command::new(env!("CARGO_BIN_EXE_sidekill"))
            .args(args)
            .current_dir(self.dir.path())
            .env("SIDEKILL_CACHE_DIR", cache)
            .env_remove("SIDEKILL_POLICY")
            .env_remove("SIDEKILL_FORMAT")
            .env_remove("NO_COLOR")
            .output()
            .expect("run sidekill")
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

fn fixtures() -> PathBuf {
    std::env::var_os("SIDEKILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/fixtures/real-world"))
}

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            manifests(&path, out);
        } else if path.extension().is_none_or(|e| e != "md") {
            out.push(path);
        }
    }
}

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: pi
  annotations:
    sidecar.istio.io/status: '{\"containers\":[\"istio-proxy\"]}'
spec:
  containers:
  - name: pi
    image: perl
  - name: istio-proxy
    image: docker.io/istio/proxyv2:1.24.0
    args: [proxy, sidecar]
";

#[test]
fn help_reads_like_a_manual() {
    let t = Sidekill::new();
    let out = t.run(&["--help"]);
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for needle in [
        "Exit codes:",
        "0  done",
        "1  done, something to report",
        "2  usage or input error",
        "SIDEKILL_POLICY",
        "SIDEKILL_TIMEOUT_MS",
        "NO_COLOR",
        "plan",
        "matrix",
        "policy",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let out = t.run(&["plan", "--help"]);
    assert!(
        stdout(&out).contains("[env: SIDEKILL_POLICY="),
        "{}",
        stdout(&out)
    );
    let out = t.run(&["policy", "diff", "--help"]);
    assert!(
        stdout(&out).contains("Exit code 1 when anything differs"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let t = Sidekill::new();
    assert_eq!(code(&t.run(&[])), 2);
    assert_eq!(code(&t.run(&["plan"])), 2);
    assert_eq!(code(&t.run(&["plan", "--format", "xml", "x.yaml"])), 2);
    let out = t.run(&["plan", "--sha256", "nope", "x.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not a sha256 digest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_json_on_every_real_world_fixture() {
    let mut files = Vec::new();
    manifests(&fixtures(), &mut files);
    files.sort();
    assert!(
        files.len() >= 20,
        "{} fixtures under {}",
        files.len(),
        fixtures().display()
    );
    let t = Sidekill::new();
    let args: Vec<String> = ["plan", "--format", "json"]
        .iter()
        .map(|s| s.to_string())
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t.run(&args);
    let answer = json(&out);
    assert_eq!(answer["errors"], Value::Array(vec![]), "{}", stderr(&out));
    let plans = answer["plans"].as_array().expect("plans");
    let mut cannot_stop = false;
    for file in &files {
        let file = file.display().to_string();
        let mine: Vec<&Value> = plans
            .iter()
            .filter(|p| p["file"] == file.as_str())
            .collect();
        assert!(!mine.is_empty(), "no plan for {file}");
        for plan in mine {
            let subjects = plan["answer"]["subjects"].as_array().expect("subjects");
            assert!(!subjects.is_empty(), "{file}: no subjects");
            for s in subjects {
                assert!(s["plan"]["stops"].is_array(), "{file}: no plan");
                cannot_stop |= s["plan"]["stops"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|stop| stop["verdict"] == "cannot-stop");
            }
        }
    }
    // Exit 1 exactly when some plan has a container that cannot be stopped.
    assert_eq!(
        code(&out),
        if cannot_stop { 1 } else { 0 },
        "{}",
        stderr(&out)
    );
    assert_eq!(answer["policy"]["origin"], "embedded");
}

#[test]
fn plan_each_fixture_alone_as_a_table() {
    let mut files = Vec::new();
    manifests(&fixtures(), &mut files);
    let t = Sidekill::new();
    for file in files.iter().take(4) {
        let out = t.run(&["plan", "--format", "table", &file.display().to_string()]);
        assert!(
            matches!(code(&out), 0 | 1),
            "{}: {}",
            file.display(),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("plan (grace period"),
            "{}",
            stdout(&out)
        );
        assert!(
            !stdout(&out).contains('\x1b'),
            "no colour when not on a terminal"
        );
    }
}

#[test]
fn plan_reads_stdin_multi_document_yaml_and_facts() {
    let t = Sidekill::new();
    let input = format!("{POD}---\n{POD}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args([
            "plan",
            "-",
            "--executor",
            "emissary",
            "--cluster-version",
            "v1.31.2",
            "--pods-proxy",
        ])
        .env(
            "SIDEKILL_CACHE_DIR",
            std::env::temp_dir().join("sidekill-cli-test-cache"),
        )
        .current_dir(t.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let answer = json(&out);
    let plans = answer["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[1]["file"], "-");
    assert_eq!(plans[1]["document"], 2);
    assert_eq!(
        plans[0]["answer"]["subjects"][0]["matrix"]["executor"],
        "emissary"
    );
}

#[test]
fn bad_input_names_the_file_and_the_position() {
    let t = Sidekill::new();
    t.write("bad.yaml", b"kind: Pod\nspec:\n  containers: [\n");
    let out = t.run(&["plan", "bad.yaml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("bad.yaml: line "), "{err}");
    assert!(err.contains("column"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    t.write("bad.json", b"{\"kind\": \"Pod\",\n \"spec\": }");
    let out = t.run(&["plan", "--format", "json", "bad.json"]);
    assert_eq!(code(&out), 2);
    let answer = json(&out);
    assert_eq!(answer["errors"][0]["line"], 2);
    assert_eq!(answer["errors"][0]["column"], 10);

    // Valid YAML, but not a plannable object: the policy names the JSON path.
    t.write(
        "nameless.yaml",
        b"kind: Pod\nspec:\n  containers:\n  - image: perl\n",
    );
    let out = t.run(&["plan", "--format", "table", "nameless.yaml", "missing.yaml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("nameless.yaml: document 1 (Pod ?): "), "{err}");
    assert!(err.contains("object.spec.containers[0].name"), "{err}");
    assert!(err.contains("missing.yaml"), "{err}");

    t.write("empty.yaml", b"---\n");
    let out = t.run(&["plan", "empty.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no object found"), "{}", stderr(&out));

    t.write("list.yaml", b"- a\n- b\n");
    let out = t.run(&["plan", "list.yaml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn matrix_as_table_and_json() {
    let t = Sidekill::new();
    let out = t.run(&["matrix", "--format", "json"]);
    assert_eq!(code(&out), 0);
    let matrix = json(&out);
    assert!(matrix["rows"].as_array().is_some_and(|r| !r.is_empty()));
    let out = t.run(&["matrix", "--format", "table"]);
    assert!(stdout(&out).starts_with("EXECUTOR"), "{}", stdout(&out));
    let out = t.run(&["matrix", "--format", "table", "--color", "always"]);
    assert!(stdout(&out).contains("\x1b[1m"), "colour when asked");
}

#[test]
fn policy_inspect_test_and_diff() {
    let t = Sidekill::new();
    let good = t.write("good.wasm", sidekill::embedded::BYTES);
    let good = good.display().to_string();

    let out = t.run(&["policy", "inspect", "--format", "json", &good]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let inspected = json(&out);
    assert_eq!(inspected["abi"], "1.4");
    assert_eq!(
        inspected["sha256"],
        sidekill::embedded::sha256().to_string()
    );
    assert_eq!(inspected["imports"], Value::Array(vec![]));
    assert_eq!(inspected["info"]["name"], "sidekill-policy");

    let imports = t.write("imports.wasm", &wat("imports"));
    let out = t.run(&[
        "policy",
        "inspect",
        "--format",
        "table",
        &imports.display().to_string(),
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains(r#""env" "now" (func)"#),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("refused:"), "{}", stdout(&out));

    let out = t.run(&["policy", "test", "--format", "table", &good]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("accepted"), "{}", stdout(&out));
    let out = t.run(&[
        "policy",
        "test",
        "--format",
        "json",
        "--sha256",
        &"0".repeat(64),
        &good,
    ]);
    assert_eq!(code(&out), 1);
    assert_eq!(json(&out)["checks"][0]["error"], "pin");
    let looping = t.write("loop.wasm", &wat("loop_plan"));
    let out = t.run(&[
        "policy",
        "test",
        "--format",
        "json",
        &looping.display().to_string(),
    ]);
    assert_eq!(code(&out), 1);
    let checks = json(&out)["checks"].clone();
    assert!(
        checks
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["error"] == "canary"),
        "{checks}"
    );

    let pod = t.write("pod.yaml", POD.as_bytes());
    let pod = pod.display().to_string();
    let out = t.run(&["policy", "diff", "--format", "json", &good, &good, &pod]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["differing"], 0);
    let mock = t.write("mock.wasm", &wat("mock"));
    let out = t.run(&[
        "policy",
        "diff",
        "--format",
        "table",
        &good,
        &mock.display().to_string(),
        &pod,
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).contains("differs"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("$.ok.subjects[0]"),
        "{}",
        stdout(&out)
    );

    let out = t.run(&["plan", "--policy", &imports.display().to_string(), &pod]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("must import nothing"),
        "{}",
        stderr(&out)
    );
}

/// `policy push` and `rollback` check their arguments, then the module, before they
/// touch a cluster; the round trip through a cluster is in `configmap`.
#[cfg(feature = "configmap")]
#[test]
fn policy_push_checks_arguments_and_the_module_before_the_cluster() {
    let t = Sidekill::new();
    let out = t.run(&["policy", "push", "x.wasm", "--configmap", "nope"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("expected NAMESPACE/NAME, got `nope`"),
        "{}",
        stderr(&out)
    );
    for key in ["a/b", "policy.wasm.previous", "x-", ""] {
        let out = t.run(&["policy", "rollback", "--configmap", "ns/cm", "--key", key]);
        assert_eq!(code(&out), 2, "--key {key:?}");
        assert!(
            stderr(&out).contains("cannot be the policy key of a ConfigMap"),
            "{}",
            stderr(&out)
        );
    }
    // The kubeconfig names nothing: the refusal comes before any cluster call.
    let imports = t.write("imports.wasm", &wat("imports"));
    let imports = imports.display().to_string();
    let args = [
        "--configmap",
        "ns/cm",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ];
    let out = t.run(&[&["policy", "push", &imports, "--format", "json"][..], &args].concat());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let refused = json(&out);
    assert_eq!(refused["action"], "refused");
    assert_eq!(refused["error"], "imports");
    assert_eq!(refused["previousKey"], "policy.wasm.previous");
    let out = t.run(
        &[
            &["policy", "push", &imports, "--format", "table"][..],
            &args,
        ]
        .concat(),
    );
    assert!(
        stdout(&out).contains("configmap ns/cm was not changed"),
        "{}",
        stdout(&out)
    );
    // A good module gets as far as the kubeconfig: exit 2, naming the ConfigMap.
    let good = t.write("good.wasm", sidekill::embedded::BYTES);
    let good = good.display().to_string();
    let out = t.run(&[&["policy", "push", &good][..], &args].concat());
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("configmap ns/cm: cannot connect to the cluster"),
        "{}",
        stderr(&out)
    );
    for command in ["push", "rollback"] {
        let out = t.run(&["policy", command, "--help"]);
        let help = stdout(&out);
        for needle in [
            "Exit codes: 0",
            "resourceVersion",
            "KEY.previous",
            "JSON output",
            "[env: KUBECONFIG",
        ] {
            assert!(
                help.contains(needle),
                "policy {command} --help lacks {needle:?}:\n{help}"
            );
        }
    }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let t = Sidekill::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sidekill"))
        .args(["matrix", "--format", "json"])
        .env(
            "SIDEKILL_CACHE_DIR",
            std::env::temp_dir().join("sidekill-cli-test-cache"),
        )
        .current_dir(t.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// `sidekill web --dir` serves a folder: the URL on the first line, files with their
/// content types, and nothing outside the folder.
#[test]
fn web_serves_a_folder_and_nothing_outside_it() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>t</title>",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let (mut child, address) =
        crate::common::start_web(&[std::ffi::OsStr::new("--dir"), dir.path().as_os_str()]);
    let get_from = |host: &str, path: &str| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let get = |path: &str| get_from(&address, path);
    let index = get("/");
    let wasm = get("/pkg/m.wasm");
    let outside = get("/../etc/passwd");
    // A page of another site that resolves its name to 127.0.0.1 (DNS rebinding) is refused.
    let rebound = get_from("rebind.example", "/");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(
        index.contains("X-Content-Type-Options: nosniff\r\n")
            && index.contains("frame-ancestors 'none'"),
        "{index}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        index.starts_with("HTTP/1.1 200 OK")
            && index.contains("text/html")
            && index.ends_with("<title>t</title>"),
        "{index}"
    );
    assert!(wasm.contains("Content-Type: application/wasm"), "{wasm}");
    assert!(outside.starts_with("HTTP/1.1 404"), "{outside}");
}
