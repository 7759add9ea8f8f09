//! The real binary, in both modes: the nop under another name, and the quitter's `http`
//! (against a local TcpListener) and `signal` (against a child process) commands, with
//! their documented exit codes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;

const QUITTER: &str = env!("CARGO_BIN_EXE_sidekill-quitter");

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sidekill-quitter-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn quitter(args: &[&str]) -> (i32, String) {
    let out = Command::new(QUITTER).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn under_another_name_it_exits_zero_whatever_its_argv() {
    let dir = TempDir::new("nop");
    for name in ["sh", "nop", "pilot-agent"] {
        let path = dir.0.join(name);
        std::os::unix::fs::symlink(QUITTER, &path).unwrap();
        for args in [
            &[][..],
            &["-c", "exit 3"][..],
            &["http", "POST", "10.0.0.1:1", "/"][..],
        ] {
            let status = Command::new(&path).args(args).status().unwrap();
            assert_eq!(status.code(), Some(0), "{name} {args:?}");
        }
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(quitter(&[]).0, 2);
    assert_eq!(quitter(&["frobnicate"]).0, 2);
    let (code, text) = quitter(&["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("Exit codes:"), "{text}");
}

/// Serves one connection: records the request, answers with `answer`.
fn serve_once(answer: &'static str) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(request).unwrap()
    });
    (address, handle)
}

#[test]
fn http_2xx_exits_0_and_sends_a_plain_request() {
    let (address, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshutdown\n");
    let (code, text) = quitter(&["http", "POST", &address, "/shutdown"]);
    assert_eq!(code, 0, "{text}");
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /shutdown HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Content-Length: 0\r\n"), "{request}");
}

#[test]
fn http_non_2xx_exits_1_with_the_answer() {
    let (address, server) = serve_once(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 33\r\n\r\nshutdown endpoint is not enabled\n",
    );
    let (code, text) = quitter(&["http", "POST", &address, "/shutdown"]);
    server.join().unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("404") && text.contains("not enabled"),
        "{text}"
    );
}

#[test]
fn http_to_a_closed_port_exits_3_and_to_another_host_exits_2() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: nothing listens on the port any more.
    let (code, text) = quitter(&[
        "http",
        "POST",
        &format!("127.0.0.1:{port}"),
        "/quitquitquit",
        "--timeout",
        "2",
    ]);
    assert_eq!(code, 3, "{text}");
    let (code, text) = quitter(&["http", "POST", "192.0.2.1:15000", "/quitquitquit"]);
    assert_eq!(code, 2, "{text}");
}

/// A child running `sleep 60` under a name no other process has: a symlink, whose name the
/// kernel gives the process as its comm. Not a copy: exec'ing a file just written fails with
/// ETXTBSY when another test thread forks while the copy's fd is open (seen in a CI run).
fn sleeper(dir: &Path, name: &str) -> Child {
    let path = dir.join(name);
    if !path.exists() {
        std::os::unix::fs::symlink(which_sleep(), &path).unwrap();
    }
    Command::new(&path).arg("60").spawn().unwrap()
}

fn which_sleep() -> &'static str {
    ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a sleep binary")
}

#[test]
fn signal_by_name_delivers_and_exits_0() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("signal");
    let name = format!("skq{}", std::process::id() % 100_000);
    let mut child = sleeper(&dir.0, &name);
    // Give the child time to exec, so its comm is the new name.
    thread::sleep(std::time::Duration::from_millis(200));
    let (code, text) = quitter(&["signal", "15", "--process", &name]);
    assert_eq!(code, 0, "{text}");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15));
}

#[test]
fn signal_refuses_a_missing_or_ambiguous_name() {
    let dir = TempDir::new("ambiguous");
    let name = format!("skd{}", std::process::id() % 100_000);
    assert_eq!(quitter(&["signal", "TERM", "--process", &name]).0, 1);
    let mut a = sleeper(&dir.0, &name);
    let mut b = sleeper(&dir.0, &name);
    thread::sleep(std::time::Duration::from_millis(200));
    let (code, text) = quitter(&["signal", "TERM", "--process", &name]);
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    assert_eq!(code, 4, "{text}");
    assert_eq!(quitter(&["signal", "15", "--process", "pause"]).0, 2);
}
