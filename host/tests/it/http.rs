//! The small HTTP server behind `sidekill web` and the controller's `/healthz`, `/readyz`
//! and `/metrics`: whatever a client sends, what it costs the server is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidekill::http::{serve_with, Options, Response};

use crate::common::assert_within;
use crate::http_client;

/// A server on an ephemeral loopback port, on a thread of its own; its address.
fn start(options: Options) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let handler = Arc::new(|path: &str| Response::ok("text/plain", format!("path={path}\n")));
    std::thread::spawn(move || serve_with(listener, handler, options));
    address
}

/// Sends `request` and reads the whole answer ([`http_client::exchange`]).
fn exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
    http_client::exchange(address, request).unwrap().text
}

fn status_of(self_status: &str, field: &str) -> u64 {
    self_status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_get_is_answered_with_the_hardening_headers() {
    let address = start(Options {
        headers: vec![("Content-Security-Policy", "frame-ancestors 'none'")],
        ..Options::default()
    });
    let answer = exchange(address, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("X-Content-Type-Options: nosniff\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Content-Security-Policy: frame-ancestors 'none'\r\n"));
    assert!(answer.ends_with("path=metrics\n"), "{answer}");
    let head = exchange(address, b"HEAD / HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let post = exchange(address, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
}

#[test]
fn an_endless_request_line_is_refused_after_the_head_cap_without_buffering_it() {
    let server = WebServer::start();
    let rss_before = server.status("VmRSS:");
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // 64 MiB of request line, in 1 MiB writes, until the server has answered and closed;
    // read at the same time, so the answer is seen before the connection is reset.
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET /");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let _ = writing.join();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    let rss_after = server.status("VmRSS:");
    // The head cap is 16 KiB, the lingering read 8 KiB at a time.
    assert!(
        rss_after < rss_before + 4 * 1024,
        "the server's RSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn a_client_trickling_its_head_is_cut_off_at_the_deadline() {
    let address = start(Options {
        read_timeout: Duration::from_millis(500),
        ..Options::default()
    });
    let mut stream = TcpStream::connect(address).unwrap();
    let start = Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        // One byte every 100 ms: each read is quick, the whole head never ends.
        if stream.write_all(b"G").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut probe = [0u8; 1];
        stream.set_nonblocking(true).unwrap();
        let read = stream.read(&mut probe);
        stream.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server kept a trickling client for 4 s");
    assert_within(start, Duration::from_secs(2));
}

#[test]
fn a_host_outside_the_allowed_ones_is_refused() {
    let address = start(Options {
        allowed_hosts: Some(vec![format!("127.0.0.1:{}", 1)]),
        ..Options::default()
    });
    let evil = exchange(
        address,
        b"GET / HTTP/1.1\r\nHost: rebind.example:80\r\n\r\n",
    );
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");
    let none = exchange(address, b"GET / HTTP/1.1\r\n\r\n");
    assert!(none.starts_with("HTTP/1.1 421"), "{none}");
    let good = exchange(address, b"GET / HTTP/1.1\r\nhost: 127.0.0.1:1\r\n\r\n");
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
}

#[test]
fn ten_thousand_idle_connections_cost_a_few_threads_and_the_server_recovers() {
    // This process holds the 10,000 client ends.
    let wanted = 30_000;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(wanted);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(wanted.min(hard)),
            maximum: Some(hard),
        },
    );
    let server = WebServer::start();
    let (threads_before, rss_before) = (server.status("Threads:"), server.status("VmRSS:"));
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        match TcpStream::connect(&server.address) {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connection {} failed: {e}", idle.len()),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (threads, rss) = (server.status("Threads:"), server.status("VmRSS:"));
    assert!(
        threads <= threads_before.max(1 + 4),
        "the server's threads: {threads_before} before, {threads} with 10,000 idle connections"
    );
    assert!(
        rss < rss_before + 16 * 1024,
        "the server's RSS: {rss_before} KiB before, {rss} KiB with 10,000 idle connections"
    );
    drop(idle);
    // Queued idle connections time out (5 s each, 4 at a time); then a request is answered.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let host = server.address.clone();
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        if exchange_with(&server.address, request.as_bytes()).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no answer 120 s after the flood");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `sidekill web` in a process of its own, so that its threads and memory are its own.
struct WebServer {
    child: std::process::Child,
    address: String,
}

impl WebServer {
    fn start() -> WebServer {
        let (child, address) = crate::common::start_web(&[]);
        // Until its workers have started, its thread count is not yet its own.
        std::thread::sleep(Duration::from_millis(100));
        WebServer { child, address }
    }

    fn status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status_of(&text, field)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exchange_with(address: &str, request: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(request);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}
