//! The programs of the stand-in images, in one multi-call binary: what it does depends on the
//! name it runs as (argv\[0\]), or on its first argument when run as `sidekill-standin`.
//!
//! The `sidekill-standin` binary is this module's [`main_if_standin`] and nothing else. Another
//! binary that embeds the test cluster (`sidekill demo`) can serve as the stand-in itself: call
//! [`main_if_standin`] first thing in `main` and point `ClusterConfig::standin` at
//! `std::env::current_exe()`.
//!
//! - `sidecar [--exit-code N] [--port P]`: runs until SIGTERM or SIGINT, then exits N (default
//!   0). With `--port`, answers every HTTP request on port P (all addresses, so the pod IP
//!   too) with `200 ok`.
//! - `stubborn`: a SIGTERM/SIGINT handler that ignores the signal; only SIGKILL stops it.
//! - `main [--seconds N] [--exit C]`: works N seconds (default 1), then exits C (default 0). It
//!   installs no signal handler, so as PID 1 it ignores SIGTERM (the kernel's rule).
//! - `pilot-agent proxy ...`: istio's agent and Envoy in one. Envoy's admin: `POST
//!   /quitquitquit` (answers `OK`, then exits 0) and `GET /healthz/ready` on
//!   127.0.0.1:$ISTIO_ADMIN_PORT (default 15000; Envoy's admin binds loopback). The agent's
//!   status server on all addresses, port $ISTIO_STATUS_PORT (default 15020): `POST
//!   /quitquitquit` answers 403 `Only requests from localhost are allowed` to a caller not
//!   inside the pod, 405 to another method, else `OK` and exits 0 (istio/istio
//!   pilot/cmd/pilot-agent/status/server.go `handleQuit`); `GET /healthz/ready` answers 200.
//!   When the status port is taken (several pods on one machine) it prints a warning and runs
//!   without it. Exits 0 on SIGTERM.
//! - `pilot-agent request METHOD PATH`: sends that request to the admin port and prints the body;
//!   exits 0 on a 2xx answer, 255 with `Error: ...` otherwise (as the real agent does).
//!
//! - `cloud-sql-proxy [--exit-zero-on-sigterm] [--quitquitquit] [--admin-port P] INSTANCE...`:
//!   the Cloud SQL Auth Proxy v2's exit codes. SIGTERM exits 143, or 0 with
//!   `--exit-zero-on-sigterm` (or `CSQL_PROXY_EXIT_ZERO_ON_SIGTERM=true`); SIGINT exits 130;
//!   with `--quitquitquit`, `POST /quitquitquit` on 127.0.0.1:P (default 9091) answers and
//!   exits 0.
//!
//! - `pidof [-s] [-o PID] NAME...`: busybox's pidof (as in Alpine images): matches a process whose
//!   `comm` or argv\[0\] basename is NAME, so it finds shell scripts by their file name too.
//!
//! **Inside the pod.** Containers share the machine's network namespace and a pod's IP is
//! `127.0.0.2`; a caller is inside the pod when the connection's local address is `127.0.0.1`
//! (what `exec` and ephemeral containers dial), and outside when it is the pod IP (what
//! `pods/proxy` dials).
//!
//! Every role prints a line when it starts and when it stops, so container logs tell the story.
//! The lines that mark a moment someone may want to time (`main` finishing, `sidecar` and
//! `stubborn` getting a signal) end with `(unix ms N)`: the wall clock in milliseconds since the
//! Unix epoch, as `cargo bench -p sidekill --bench controller` reads them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before it).
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn signals() -> Signals {
    match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            std::process::exit(2);
        }
    }
}

/// The pilot-agent status server's port: `ISTIO_STATUS_PORT` (a stand-in knob), default 15020.
fn status_port() -> u16 {
    std::env::var("ISTIO_STATUS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(15020)
}

fn admin_port() -> u16 {
    std::env::var("ISTIO_ADMIN_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(15000)
}

/// What a server answers: `answer(method, path, inside)` gives status and body, and whether to
/// exit 0 once the answer is written; `inside` tells whether the caller is inside the pod.
type Answer = fn(&str, &str, bool) -> (u16, &'static str, bool);

/// The address a caller inside the pod connects to (see the module docs).
const INSIDE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Serves HTTP/1.1 on `addr:port` (exits 1 when it cannot listen).
fn serve(addr: &str, port: u16, answer: Answer) {
    match TcpListener::bind((addr, port)) {
        Ok(l) => serve_on(l, answer),
        Err(e) => {
            eprintln!("cannot listen on {addr}:{port}: {e}");
            std::process::exit(1);
        }
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Not Found",
    }
}

/// Serves HTTP/1.1 on a bound listener, one connection at a time.
fn serve_on(listener: TcpListener, answer: Answer) {
    if let Ok(a) = listener.local_addr() {
        println!("listening on {a}");
    }
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let inside = stream.local_addr().is_ok_and(|a| a.ip() == INSIDE);
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length.min(1 << 20)];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let (code, text, exit) = answer(method, path, inside);
            let reason = reason_phrase(code);
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = out.flush();
            // Close the connection now: the caller reads to EOF.
            let _ = out.shutdown(std::net::Shutdown::Both);
            drop(out);
            drop(reader);
            println!("{method} {path} -> {code}");
            if exit {
                // Envoy drains its listeners before exiting; the caller has its answer by then.
                println!("quitquitquit: exiting");
                std::thread::sleep(Duration::from_millis(300));
                std::process::exit(0);
            }
        }
    });
}

fn sidecar(args: &[String]) {
    let code: i32 = flag(args, "--exit-code")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if let Some(port) = flag(args, "--port").and_then(|p| p.parse().ok()) {
        serve("0.0.0.0", port, |_, _, _| (200, "ok\n", false));
    }
    let mut sigs = signals();
    println!("sidecar: running as pid {}", std::process::id());
    if let Some(sig) = sigs.forever().next() {
        println!(
            "sidecar: got signal {sig}, exiting {code} (unix ms {})",
            unix_ms()
        );
        std::process::exit(code);
    }
}

/// The Cloud SQL Auth Proxy v2 as far as its exit codes go, from its source
/// (GoogleCloudPlatform/cloud-sql-proxy v2, `cmd/root.go` and `cmd/errors.go`):
/// - `runSignalWrapper` turns SIGTERM into `errSigTerm` (exit code 143), or `errSigTermZero`
///   (exit code 0) when `--exit-zero-on-sigterm` (env `CSQL_PROXY_EXIT_ZERO_ON_SIGTERM`) is set;
///   SIGINT into `errSigInt` (130).
/// - `--quitquitquit` adds `/quitquitquit` to the admin server (`--admin-port`, default 9091,
///   which listens on localhost only); a POST (or GET) there sends `errQuitQuitQuit`, code 0
///   ("This error guarantees a clean exit").
///
/// The proxy itself connects to nothing here: the instance arguments are accepted and ignored.
fn cloud_sql_proxy(args: &[String]) {
    let zero_on_sigterm = args
        .iter()
        .any(|a| a == "--exit-zero-on-sigterm" || a == "--exit-zero-on-sigterm=true")
        || std::env::var("CSQL_PROXY_EXIT_ZERO_ON_SIGTERM").as_deref() == Ok("true");
    if args.iter().any(|a| a == "--quitquitquit") {
        let port = flag(args, "--admin-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(9091);
        // The admin server listens on localhost only: the pod IP is refused.
        serve("127.0.0.1", port, |method, path, _| match (method, path) {
            ("POST" | "GET", "/quitquitquit") => (200, "", true),
            _ => (404, "404 page not found\n", false),
        });
    }
    let mut sigs = signals();
    println!(
        "cloud-sql-proxy: The proxy has started successfully and is ready for new connections! (pid {})",
        std::process::id()
    );
    if let Some(sig) = sigs.forever().next() {
        let code = match sig {
            SIGTERM if zero_on_sigterm => 0,
            SIGTERM => 143,
            _ => 130,
        };
        println!(
            "cloud-sql-proxy: got signal {sig}, exiting {code} (unix ms {})",
            unix_ms()
        );
        std::process::exit(code);
    }
}

fn stubborn() {
    let mut sigs = signals();
    println!(
        "stubborn: running as pid {}; SIGTERM is ignored",
        std::process::id()
    );
    for sig in sigs.forever() {
        println!(
            "stubborn: got signal {sig}, ignoring it (unix ms {})",
            unix_ms()
        );
    }
}

fn main_role(args: &[String]) {
    let secs: f64 = flag(args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let code: i32 = flag(args, "--exit")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    println!("main: working for {secs}s as pid {}", std::process::id());
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    println!("main: done, exiting {code} (unix ms {})", unix_ms());
    std::process::exit(code);
}

fn pilot_agent(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("proxy") => {
            serve("127.0.0.1", admin_port(), |method, path, _| {
                match (method, path) {
                    ("POST", "/quitquitquit") => (200, "OK\n", true),
                    ("GET", "/healthz/ready") | ("GET", "/ready") => (200, "LIVE\n", false),
                    _ => (404, "not found\n", false),
                }
            });
            let status = status_port();
            match TcpListener::bind(("0.0.0.0", status)) {
                Ok(l) => serve_on(l, |method, path, inside| match (method, path) {
                    (_, "/quitquitquit") if !inside => {
                        (403, "Only requests from localhost are allowed\n", false)
                    }
                    ("POST", "/quitquitquit") => (200, "OK", true),
                    (_, "/quitquitquit") => (405, "Method Not Allowed\n", false),
                    ("GET", "/healthz/ready") => (200, "", false),
                    _ => (404, "404 page not found\n", false),
                }),
                Err(e) => println!(
                    "pilot-agent: warning: status server not started, cannot listen on 0.0.0.0:{status}: {e} (set ISTIO_STATUS_PORT)"
                ),
            }
            let mut sigs = signals();
            println!("pilot-agent: proxy running as pid {}", std::process::id());
            if let Some(sig) = sigs.forever().next() {
                println!("pilot-agent: got signal {sig}, draining and exiting 0");
                std::process::exit(0);
            }
        }
        Some("request") => {
            let method = args.get(1).cloned().unwrap_or_else(|| "GET".into());
            let path = args.get(2).cloned().unwrap_or_default();
            let path = format!("/{}", path.trim_start_matches('/'));
            let port = admin_port();
            let result = (|| -> std::io::Result<(u16, String)> {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                let mut resp = String::new();
                s.read_to_string(&mut resp)?;
                Ok(status_and_body(&resp))
            })();
            match result {
                Ok((code, body)) if (200..300).contains(&code) => {
                    print!("{body}");
                    std::process::exit(0);
                }
                Ok((code, body)) => {
                    eprintln!("Error: received unsuccessful response code {code}: {body}");
                    std::process::exit(255);
                }
                Err(e) => {
                    eprintln!("Error: failure sending request: {method} http://localhost:{port}{path}: {e}");
                    std::process::exit(255);
                }
            }
        }
        _ => {
            eprintln!("usage: pilot-agent proxy ... | pilot-agent request METHOD PATH");
            std::process::exit(2);
        }
    }
}

/// The status code (0 when the status line cannot be read) and the body of an HTTP/1.1 answer
/// read to the end. `pilot-agent request` reads its answers so, and so do the tests' raw
/// clients, which send what kube-rs would not.
pub fn status_and_body(answer: &str) -> (u16, String) {
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn pidof(args: &[String]) {
    let mut single = false;
    let mut omit: Vec<u32> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-s" => single = true,
            "-o" => {
                if let Some(p) = it.next() {
                    let p = if p == "%PPID" {
                        std::os::unix::process::parent_id().to_string()
                    } else {
                        p.clone()
                    };
                    omit.extend(p.split(',').filter_map(|x| x.parse::<u32>().ok()));
                }
            }
            n => names.push(n.to_owned()),
        }
    }
    let mut found: Vec<u32> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if omit.contains(&pid) {
                continue;
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline
                .split(|b| *b == 0)
                .next()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            let base = argv0.rsplit('/').next().unwrap_or("").to_owned();
            // The kernel keeps 15 bytes of a program's name in comm.
            if names
                .iter()
                .any(|n| n.get(..15).unwrap_or(n) == comm.trim_end() || *n == base)
            {
                found.push(pid);
            }
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    if single {
        found.truncate(1);
    }
    if found.is_empty() {
        std::process::exit(1);
    }
    println!(
        "{}",
        found
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The stand-in roles, by the name they run as.
pub const ROLES: &[&str] = &[
    "sidecar",
    "stubborn",
    "main",
    "pilot-agent",
    "cloud-sql-proxy",
    "pidof",
];

/// If this process runs as a stand-in (argv\[0\]'s file name is one of [`ROLES`], or it is
/// `sidekill-standin ROLE ...`), runs that role and exits; otherwise returns.
pub fn main_if_standin() {
    let mut args: Vec<String> = std::env::args().collect();
    if args.is_empty() {
        return;
    }
    let argv0 = args.remove(0);
    let mut role = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    if role == "sidekill-standin" {
        if args.is_empty() {
            return;
        }
        role = args.remove(0);
    }
    match role.as_str() {
        "sidecar" => sidecar(&args),
        "stubborn" => stubborn(),
        "main" => main_role(&args),
        "pilot-agent" => pilot_agent(&args),
        "cloud-sql-proxy" => cloud_sql_proxy(&args),
        "pidof" => pidof(&args),
        _ => return,
    }
    std::process::exit(0);
}
