//! The real `sidekill` binary, run in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{real_world_fixtures, repo_root, wat};

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
        self.command(args).output().expect("run sidekill")
    }

    fn command(&self, args: &[&str]) -> Command {
        let cache = std::env::temp_dir().join("sidekill-cli-test-cache");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sidekill"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("SIDEKILL_CACHE_DIR", cache)
            .env_remove("SIDEKILL_POLICY")
            .env_remove("SIDEKILL_FORMAT")
            .env_remove("SIDEKILL_FAIL_ON")
            .env_remove("NO_COLOR");
        command
    }

    /// Runs the binary with `input` on standard input.
    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        run_with_stdin(self.command(args), input)
    }
}

fn run_with_stdin(mut command: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
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
    manifests(&real_world_fixtures(), &mut files);
    files.sort();
    assert!(
        files.len() >= 20,
        "{} fixtures under {}",
        files.len(),
        real_world_fixtures().display()
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
                    .any(|stop| stop["verdict"] == "cannot-stop")
                    || s["diagnostics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| d["severity"] == "error");
            }
        }
    }
    // Exit 1 exactly when some plan has a container that cannot be stopped or an error
    // (`--fail-on error`, the default).
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
    manifests(&real_world_fixtures(), &mut files);
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
    assert_eq!(inspected["abi"], "1.5");
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
    let get_from = |host: &str, path: &str| crate::http_client::get(&address, host, path).unwrap();
    let get = |path: &str| get_from(&address, path);
    let index = get("/");
    let wasm = get("/pkg/m.wasm");
    let outside = get("/../etc/passwd");
    // A page of another site that resolves its name to 127.0.0.1 (DNS rebinding) is refused.
    let rebound = get_from("rebind.example", "/");
    assert_eq!(rebound.status, 421, "{}", rebound.text);
    assert!(
        index.text.contains("X-Content-Type-Options: nosniff\r\n")
            && index.text.contains("frame-ancestors 'none'"),
        "{}",
        index.text
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        index.status == 200
            && index.text.contains("text/html")
            && index.body() == "<!doctype html><title>t</title>",
        "{}",
        index.text
    );
    assert!(
        wasm.text.contains("Content-Type: application/wasm"),
        "{}",
        wasm.text
    );
    assert_eq!(outside.status, 404, "{}", outside.text);
}

/// A real fixture's text.
fn fixture(path: &str) -> String {
    let path = real_world_fixtures().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `helm template` writes for a chart with a ServiceAccount, a ConfigMap, a Service and
/// a Job: `# Source:` comments, `---` before each document. The Job is istio's injected Job
/// (a real fixture, read in place), with a native istio-proxy sidecar.
fn helm_output() -> String {
    format!(
        "---\n# Source: app/templates/serviceaccount.yaml\napiVersion: v1\nkind: ServiceAccount\n\
         metadata:\n  name: app\n---\n# Source: app/templates/configmap.yaml\napiVersion: v1\n\
         kind: ConfigMap\nmetadata:\n  name: app\ndata:\n  key: value\n---\n\
         # Source: app/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  \
         name: app\nspec:\n  ports:\n  - port: 80\n---\n# Source: app/templates/job.yaml\n{}",
        fixture("istio/job.yaml.injected")
    )
}

/// Issue #19, "Real inputs mix kinds": the non-workloads of `helm template` output are
/// skipped with a note, the workload is planned, and the exit code is 0.
#[test]
fn a_helm_rendered_multi_kind_file_is_planned_with_the_non_workloads_skipped() {
    let t = Sidekill::new();
    let input = helm_output();
    let out = t.run_stdin(&["plan", "--format", "json", "-"], &input);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let answer = json(&out);
    assert_eq!(answer["errors"], Value::Array(vec![]));
    let plans = answer["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0]["object"], "Job pi");
    assert_eq!(plans[0]["document"], 4);
    // The Job's `apiVersion:` is the line after its `# Source:` comment.
    let job_line = input
        .lines()
        .position(|l| l == "apiVersion: batch/v1")
        .expect("the Job")
        + 1;
    assert_eq!(plans[0]["line"], job_line);
    let skipped: Vec<&str> = answer["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["object"].as_str().expect("object"))
        .collect();
    assert_eq!(
        skipped,
        ["ServiceAccount app", "ConfigMap app", "Service app"]
    );
    assert!(answer["skipped"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("not a workload")));

    // In a table, a note per skipped object on standard error.
    let out = t.run_stdin(&["plan", "--format", "table", "-"], &input);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("note: -: document 1 (ServiceAccount app): skipped, not a workload"),
        "{err}"
    );
    assert!(!err.contains("error"), "{err}");
    assert!(stdout(&out).contains("Job pi"), "{}", stdout(&out));
}

/// The README's CI example ("Checking manifests in CI"), as it is written there:
/// `helm template … | sidekill plan --fail-on error -`, here with the chart's output above.
/// (`scripts/test` runs it with the real helm on charts/sidekill.)
#[test]
fn the_readme_ci_example_gates_on_errors() {
    let t = Sidekill::new();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    assert!(
        readme.contains("| sidekill plan --fail-on error -"),
        "the README's CI example changed: update this test"
    );
    let clean = helm_output();
    let out = t.run_stdin(&["plan", "--fail-on", "error", "-"], &clean);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The same output on a cluster too old for its native sidecar: an error, exit 1.
    let out = t.run_stdin(
        &[
            "plan",
            "--fail-on",
            "error",
            "--cluster-version",
            "1.28",
            "-",
        ],
        &clean,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // The `git ls-files` form, over a folder of manifests.
    let repo = t.path("repo");
    std::fs::create_dir_all(repo.join("deploy")).expect("mkdir");
    std::fs::write(repo.join("deploy/app.yaml"), &clean).expect("write");
    std::fs::write(repo.join("deploy/pod.yaml"), POD).expect("write");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        out
    };
    git(&["init", "-q"]);
    git(&["add", "deploy"]);
    let listed = stdout(&git(&["ls-files", "--", "*.yaml"]));
    let files: Vec<&str> = listed.lines().collect();
    assert_eq!(files, ["deploy/app.yaml", "deploy/pod.yaml"]);
    let mut args = vec!["plan", "--fail-on", "error", "--format", "github"];
    args.extend(&files);
    let mut command = t.command(&args);
    command.current_dir(&repo);
    let out = command.output().expect("run");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no annotation for clean plans");
}

/// Issue #19: "A `List` with one ConfigMap fails whole." A kustomize-style `List` is planned
/// item by item; its ConfigMap and Service are skipped.
#[test]
fn a_kustomize_list_is_planned_item_by_item() {
    let t = Sidekill::new();
    let job = "    apiVersion: batch/v1\n    kind: Job\n    metadata:\n      name: migrate\n    \
               spec:\n      template:\n        metadata:\n          annotations:\n            \
               sidecar.istio.io/status: '{\"containers\":[\"istio-proxy\"]}'\n        spec:\n          \
               restartPolicy: Never\n          containers:\n          - name: migrate\n            \
               image: perl\n          - name: istio-proxy\n            \
               image: docker.io/istio/proxyv2:1.24.0\n            args: [proxy, sidecar]\n";
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    \
         name: settings\n  data: {{a: b}}\n-\n{job}- apiVersion: v1\n  kind: Service\n  metadata:\n    \
         name: web\n  spec: {{ports: [{{port: 80}}]}}\n"
    );
    t.write("list.yaml", list.as_bytes());
    let out = t.run(&["plan", "--format", "json", "list.yaml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let answer = json(&out);
    assert_eq!(answer["errors"], Value::Array(vec![]));
    let plans = answer["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["object"], "Job migrate");
    assert_eq!(plans[0]["item"], 2);
    let skipped = answer["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0]["item"], 1);
    assert_eq!(skipped[1]["object"], "Service web");
    let stops = &plans[0]["answer"]["subjects"][0]["plan"]["stops"];
    assert_eq!(stops[0]["container"], "istio-proxy");
}

/// Issue #19: "One YAML syntax error discards the whole file." It costs its own document:
/// reported with the file's line and column, the others planned, exit 2.
#[test]
fn a_yaml_error_costs_only_its_document() {
    let t = Sidekill::new();
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\n  labels: {a: [b}\n";
    t.write(
        "mixed.yaml",
        format!("{POD}---\n{bad}---\n{POD}").as_bytes(),
    );
    let bad_line = POD.lines().count() + 1 + 5;
    let out = t.run(&["plan", "--format", "json", "mixed.yaml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let answer = json(&out);
    assert_eq!(answer["plans"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer["plans"][1]["document"], 3);
    let errors = answer["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["document"], 2);
    assert_eq!(errors[0]["line"], bad_line);
    assert_eq!(errors[0]["column"], 17);

    let out = t.run(&["plan", "--format", "github", "mixed.yaml"]);
    assert_eq!(code(&out), 2);
    let annotations = stdout(&out);
    assert!(
        annotations.starts_with(&format!(
            "::error file=mixed.yaml,line={bad_line},col=17,title=sidekill syntax::"
        )),
        "{annotations}"
    );
}

/// Issue #19, "Exit codes" and "An output CI systems read": `--fail-on` on plans with an
/// error, a warning and nothing, and the GitHub and SARIF outputs with the positions.
#[test]
fn fail_on_and_the_ci_formats() {
    let t = Sidekill::new();
    let native = real_world_fixtures().join("istio/job.yaml.injected");
    let native = native.to_str().expect("utf-8 path");
    let classic = real_world_fixtures().join("istio/hello.yaml.injected");
    let classic = classic.to_str().expect("utf-8 path");
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--format", "github"];
        args.extend(extra);
        t.run(&args)
    };
    // An error: a native sidecar on Kubernetes 1.28.
    let error = ["--cluster-version", "1.28", native];
    assert_eq!(code(&plan(&error)), 1, "the default is --fail-on error");
    for (level, expected) in [
        ("error", 1),
        ("warning", 1),
        ("cannot-stop", 0),
        ("never", 0),
    ] {
        let mut args = vec!["--fail-on", level];
        args.extend(error);
        assert_eq!(
            code(&plan(&args)),
            expected,
            "--fail-on {level} on an error"
        );
    }
    // A warning: Argo's docker executor and an injected sidecar.
    let warning = ["--executor", "docker", classic];
    assert_eq!(code(&plan(&warning)), 0, "a warning passes --fail-on error");
    let mut args = vec!["--fail-on", "warning"];
    args.extend(warning);
    let out = plan(&args);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).starts_with(&format!("::warning file={classic},line=1,col=1,")),
        "{}",
        stdout(&out)
    );
    // Clean: info diagnostics only, which are no annotations.
    let out = plan(&["--fail-on", "warning", native]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    // The error's annotation is at the line and column of the sidecar's `name:`.
    let out = plan(&error);
    let text = fixture("istio/job.yaml.injected");
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(n, l)| {
            (l.trim_start() == "name: istio-proxy")
                .then(|| (n + 1, l.len() - l.trim_start().len() + 1))
        })
        .expect("istio-proxy's name");
    let annotation = stdout(&out);
    assert!(
        annotation.starts_with(&format!(
            "::error file={native},line={line},col={column},title=sidekill native-sidecar-unsupported (Job pi%2C container istio-proxy)::"
        )),
        "{annotation}"
    );

    // SARIF: the same result, with its rule and region.
    let out = t.run(&[
        "plan",
        "--format",
        "sarif",
        "--cluster-version",
        "1.28",
        native,
    ]);
    assert_eq!(code(&out), 1);
    let sarif = json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "sidekill");
    let results = run["results"].as_array().expect("results");
    let error = results
        .iter()
        .find(|r| r["level"] == "error")
        .expect("an error result");
    assert_eq!(error["ruleId"], "native-sidecar-unsupported");
    let location = &error["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], native);
    assert_eq!(location["region"]["startLine"], line);
    assert_eq!(location["region"]["startColumn"], column);
    assert!(run["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .any(|r| r["id"] == "native-sidecar-unsupported"));

    // Other commands refuse the plan-only formats.
    let out = t.run(&["matrix", "--format", "sarif"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("`sidekill plan` only"),
        "{}",
        stderr(&out)
    );
}

/// Issue #19: "`--cluster-version 1.3` is silently accepted" and "Flag errors quote internal
/// field names (`facts.executor`), repeated once per document".
#[test]
fn flag_errors_name_the_flag_once() {
    let t = Sidekill::new();
    let out = t.run(&["plan", "--cluster-version", "1.3", "x.yaml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("1.20 or later") || err.contains("older than 1.20"),
        "{err}"
    );
    assert!(err.contains("did you mean 1.30?"), "{err}");
    for good in ["1.31", "v1.31.2", "1.31+", "v1.29.3-eks-1"] {
        let out = t.run_stdin(&["plan", "--cluster-version", good, "-"], POD);
        assert_eq!(code(&out), 0, "{good}: {}", stderr(&out));
    }
    let out = t.run(&["plan", "--cluster-version", "2.1", "x.yaml"]);
    assert!(
        stderr(&out).contains("expected a Kubernetes version"),
        "{}",
        stderr(&out)
    );

    t.write("two.yaml", format!("{POD}---\n{POD}").as_bytes());
    let out = t.run(&["plan", "--executor", "podman", "two.yaml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(!err.contains("facts."), "{err}");
    assert_eq!(err.matches("--executor").count(), 1, "{err}");
    assert!(err.contains("emissary"), "{err}");
}

/// Issue #19, "Speed": without --cache-dir, `plan` keeps the compiled module under
/// $XDG_CACHE_HOME/sidekill; a folder others may write is not used, with a warning.
#[test]
fn plan_caches_the_module_in_the_user_cache_dir_by_default() {
    let t = Sidekill::new();
    let xdg = t.path("xdg");
    let run = |xdg: &Path| {
        let mut command = t.command(&["plan", "-"]);
        command
            .env_remove("SIDEKILL_CACHE_DIR")
            .env("XDG_CACHE_HOME", xdg);
        run_with_stdin(command, POD)
    };
    let out = run(&xdg);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let entries: Vec<_> = std::fs::read_dir(xdg.join("sidekill"))
        .expect("the default cache folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with(&sidekill::embedded::sha256().to_string())),
        "{entries:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let open = t.path("open");
        std::fs::create_dir_all(open.join("sidekill")).expect("mkdir");
        std::fs::set_permissions(
            open.join("sidekill"),
            std::fs::Permissions::from_mode(0o777),
        )
        .expect("chmod");
        let out = run(&open);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not using the default module cache"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_dir(open.join("sidekill"))
                .expect("dir")
                .count(),
            0
        );
    }
}

/// Issue #19, "Policy identity": the embedded module by name, with its build.
#[test]
fn the_embedded_module_is_named_embedded() {
    let t = Sidekill::new();
    let out = t.run(&["policy", "info", "embedded", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let info = json(&out);
    assert_eq!(info["sha256"], sidekill::embedded::sha256().to_string());
    assert!(
        info["build"]
            .as_str()
            .is_some_and(|b| b.contains("embedded in this binary")),
        "{info}"
    );
    let copy = t.write("copy.wasm", &common_variant());
    t.write("pod.yaml", POD.as_bytes());
    let out = t.run(&[
        "policy",
        "diff",
        "embedded",
        copy.to_str().expect("path"),
        "pod.yaml",
        "--format",
        "table",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("embedded (cargo profile wasm"),
        "{}",
        stdout(&out)
    );
    let out = t.run(&[
        "policy",
        "inspect",
        copy.to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert!(
        json(&out)["build"]
            .as_str()
            .is_some_and(|b| b.contains("not the embedded build")),
        "{}",
        stdout(&out)
    );
}

fn common_variant() -> Vec<u8> {
    crate::common::embedded_variant("identity")
}

/// Issue #19: "`sidekill web` accepts `--format` and `--timeout-ms` and ignores them."
#[test]
fn web_refuses_the_flags_it_would_ignore() {
    let t = Sidekill::new();
    for flag in [
        ["--format", "json"],
        ["--timeout-ms", "5"],
        ["--cache-dir", "x"],
    ] {
        let out = t.run(&["web", "--port", "0", flag[0], flag[1]]);
        assert_eq!(code(&out), 2, "{flag:?}");
        assert!(
            stderr(&out).contains(&format!("unexpected argument '{}", flag[0])),
            "{}",
            stderr(&out)
        );
    }
    let help = stdout(&t.run(&["web", "--help"]));
    assert!(!help.contains("--timeout-ms"), "{help}");
}

/// Issue #19: the support matrix in words, no enum names.
#[test]
fn the_matrix_says_in_words_what_argo_and_sidekill_do() {
    let t = Sidekill::new();
    let out = t.run(&["matrix", "--format", "table"]);
    let table = stdout(&out);
    for name in ["KubectlExec", "NoneNeeded", "Any", "Unsupported"] {
        assert!(
            !table
                .split_whitespace()
                .any(|w| w.trim_matches(',') == name),
            "{name} in:\n{table}"
        );
    }
    let docker: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("docker"))
        .take(2)
        .collect();
    assert!(
        docker[0].contains("Argo") && docker[0].contains("cannot stop it"),
        "{table}"
    );
    assert!(
        docker[1].contains("sidekill") && docker[1].contains("exec into it"),
        "{table}"
    );
}

/// Runs `command` with its output in files of `t`'s folder and returns its output and its
/// peak RSS in bytes (VmHWM, polled from /proc every 5 ms until it exits: a lower bound
/// of the true peak, close to it since VmHWM only grows).
fn run_measured(t: &Sidekill, mut command: Command) -> (Output, u64) {
    let (out_path, err_path) = (t.path("stdout"), t.path("stderr"));
    let mut child = command
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0) << 10);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: std::fs::read(&out_path).expect("stdout"),
        stderr: std::fs::read(&err_path).expect("stderr"),
    };
    (output, peak)
}

/// `n` small pods, one YAML document each.
fn many_pods(n: usize) -> String {
    (0..n)
        .map(|i| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: main, image: busybox}}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Issue 17, the whole-command cost: one answer is bounded (16 MiB, 100,000 values), and
/// so is their sum over a command. `plan` of 10,000 documents with a module whose every
/// answer is an accepted 8 MiB envelope would hold 80 GB; with a budget of 64 MiB it stops at
/// the 9th answer with an error naming the budget. The huge_answer module's 16 MiB answers
/// are refused one by one, and still charged: the command stops at the 5th.
#[test]
fn plan_stops_at_the_commands_answer_budget() {
    let t = Sidekill::new();
    let many = t.write("many.yaml", many_pods(10_000).as_bytes());
    let many = many.display().to_string();
    let fat = t.write("fat.wasm", &wat("fat_answer"));
    let fat = fat.display().to_string();
    let args = [
        "plan",
        "--format",
        "table",
        "--answer-budget-mib",
        "64",
        "--policy",
        &fat,
        &many,
    ];
    let (out, peak) = run_measured(&t, t.command(&args));
    eprintln!(
        "plan, fat_answer x 10,000 documents, budget 64 MiB: VmHWM {} MiB",
        peak >> 20
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("reached 75497472 bytes, over its budget of 67108864 bytes (--answer-budget-mib); the 9991 document(s) after this one were not planned"),
        "{err}"
    );
    // Eight 8 MiB answers held, parsed once: far under 1 GiB (80 GB without the budget).
    assert!(peak < 1 << 30, "VmHWM {peak}");

    let huge = t.write("huge.wasm", &wat("huge_answer"));
    let huge = huge.display().to_string();
    let args = [
        "plan",
        "--format",
        "json",
        "--answer-budget-mib",
        "64",
        "--policy",
        &huge,
        &many,
    ];
    let (out, peak) = run_measured(&t, t.command(&args));
    eprintln!(
        "plan, huge_answer x 10,000 documents, budget 64 MiB: VmHWM {} MiB",
        peak >> 20
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let errors = json(&out)["errors"].as_array().expect("errors").clone();
    let names: Vec<&str> = errors.iter().filter_map(|e| e["error"].as_str()).collect();
    assert_eq!(
        names,
        ["answer_too_complex"; 4]
            .into_iter()
            .chain(["answer_budget"])
            .collect::<Vec<_>>()
    );
    assert!(peak < 1 << 30, "VmHWM {peak}");
}

/// Issue 17: `policy diff` reads two answers per document and keeps the changes between
/// them. A module answering 16 MiB of `[0,0,...]` used to be parsed whole on each side (about
/// 700 MB) and kept as one change per document; each answer is now checked before it is
/// parsed, and the answers of the command are charged to its budget.
#[test]
fn policy_diff_stops_at_the_commands_answer_budget() {
    let t = Sidekill::new();
    let many = t.write("many.yaml", many_pods(1_000).as_bytes());
    let many = many.display().to_string();
    let huge = t.write("huge.wasm", &wat("huge_answer"));
    let huge = huge.display().to_string();
    let args = [
        "policy",
        "diff",
        "--format",
        "json",
        "--answer-budget-mib",
        "64",
        "embedded",
        &huge,
        &many,
    ];
    let (out, peak) = run_measured(&t, t.command(&args));
    eprintln!(
        "policy diff, huge_answer x 1,000 documents, budget 64 MiB: VmHWM {} MiB",
        peak >> 20
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = json(&out);
    assert_eq!(out["documents"].as_array().map(Vec::len), Some(4), "{out}");
    let changes = out["documents"][0]["changes"].as_array().expect("changes");
    let refused = changes
        .iter()
        .find(|c| c["path"] == "$.hostError")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(refused["new"]["error"], "answer_too_complex");
    assert_eq!(out["errors"][0]["error"], "answer_budget");
    assert!(peak < 1 << 30, "VmHWM {peak}");
}

/// Issue 17: `policy test --corpus` runs every module of the hostile corpus through read,
/// load, plan and the executor's guard, and compares each outcome with the manifest; one
/// outcome that differs makes the exit code 1.
#[test]
fn policy_test_runs_the_hostile_corpus_against_its_manifest() {
    let t = Sidekill::new();
    let corpus = repo_root().join("host/tests/modules");
    let corpus_arg = corpus.display().to_string();
    let out = t.run(&[
        "policy",
        "test",
        "--format",
        "json",
        "--corpus",
        &corpus_arg,
    ]);
    let report = json(&out);
    assert_eq!(code(&out), 0, "{report:#}\n{}", stderr(&out));
    let modules = report["modules"].as_array().expect("modules").clone();
    assert_eq!(report["matched"], report["total"]);
    let outcome = |file: &str| {
        let m = modules
            .iter()
            .find(|m| m["file"] == file)
            .unwrap_or_else(|| panic!("{file} in {report:#}"));
        m["actual"].clone()
    };
    assert_eq!(outcome("loop_plan.wasm")["error"], "deadline");
    assert_eq!(outcome("imports.wasm")["outcome"], "refused-at-load");
    assert_eq!(
        outcome("stop_running_main.wasm")["outcome"],
        "steps-refused"
    );
    assert_eq!(outcome("embedded")["outcome"], "benign");
    eprintln!("corpus:");
    for m in &modules {
        eprintln!(
            "  {:28} {}{}",
            m["file"].as_str().unwrap_or(""),
            m["actual"]["outcome"].as_str().unwrap_or(""),
            m["actual"]["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }

    // A manifest that expects something else of one module: exit 1, and the table says which.
    let text = std::fs::read_to_string(corpus.join("corpus.json")).expect("manifest");
    let wrong = text.replacen("\"error\": \"deadline\"", "\"error\": \"trap\"", 1);
    assert_ne!(wrong, text);
    std::fs::create_dir(t.path("corpus")).expect("dir");
    std::fs::write(t.path("corpus/corpus.json"), wrong).expect("write");
    std::fs::copy(
        corpus.join("loop_plan.wasm"),
        t.path("corpus/loop_plan.wasm"),
    )
    .expect("copy");
    let dir = t.path("corpus").display().to_string();
    let out = t.run(&["policy", "test", "--format", "table", "--corpus", &dir]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let table = stdout(&out);
    assert!(
        table
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("loop_plan.wasm")),
        "{table}"
    );
    // Modules missing from the folder are refused at load with `io`, and reported.
    assert!(table.contains("refused-at-load (io)"), "{table}");
    // A manifest that is not one: exit 2 with the field named.
    std::fs::write(t.path("corpus/corpus.json"), "{\"modules\": []}").expect("write");
    let out = t.run(&["policy", "test", "--corpus", &dir]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no `request`"), "{}", stderr(&out));
}
