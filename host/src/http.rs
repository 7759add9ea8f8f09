//! A deliberately small HTTP/1.1 server on std, shared by `sidekill web` (static files) and
//! the controller's health and metrics endpoints: GET and HEAD only, `Connection: close`.
//!
//! Whoever can reach the port can send anything, so every cost is bounded:
//! - a fixed pool of [`Options::workers`] threads serves connections, and at most
//!   [`Options::queue`] more wait; a connection beyond that is closed at once (no thread, no
//!   buffer), so 10,000 idle connections cost a few threads and a short queue;
//! - the request head (request line and headers) may be [`Options::max_head`] bytes at most,
//!   else `431`, and must arrive within [`Options::read_timeout`] in total (not per read: a
//!   client that trickles one byte at a time is cut off too), else the connection is closed;
//! - no body is ever read.
//!
//! `sidekill web` also checks the `Host` header against the addresses it listens on (a DNS
//! rebinding page in the user's browser cannot read it), and every response carries
//! `X-Content-Type-Options: nosniff` plus the headers the caller adds (the page's
//! Content-Security-Policy with `frame-ancestors 'none'`).
//!
//! Why not hyper on tokio: `sidekill web` and the file-source host are built without tokio
//! (feature `configmap` off), and these two GET-only endpoints need none of hyper's protocol.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status line's code and reason, such as `200 OK`.
    pub status: &'static str,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `200 OK` with a body.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: "200 OK",
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text answer with any status.
    pub fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Answers a GET or HEAD of a path (without the query string and leading `/`).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// How the server bounds its work.
#[derive(Debug, Clone)]
pub struct Options {
    /// Threads serving connections. Default 4.
    pub workers: usize,
    /// Accepted connections waiting for a worker; more are closed at once. Default 64.
    pub queue: usize,
    /// Time for the whole request head to arrive, and for each write. Default 5 s.
    pub read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes. Default 16 KiB.
    pub max_head: usize,
    /// When set, the `Host` header must be one of these (`host:port`, compared without
    /// case), else `421 Misdirected Request`.
    pub allowed_hosts: Option<Vec<String>>,
    /// Headers added to every response.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 4,
            queue: 64,
            read_timeout: Duration::from_secs(5),
            max_head: 16 << 10,
            allowed_hosts: None,
            headers: Vec::new(),
        }
    }
}

/// Serves `handler` on `listener` with the default [`Options`] until the listener fails.
pub fn serve(listener: TcpListener, handler: Handler) {
    serve_with(listener, handler, Options::default());
}

/// Serves `handler` on `listener` until the listener fails (the process ends first).
pub fn serve_with(listener: TcpListener, handler: Handler, options: Options) {
    let options = Arc::new(options);
    let (queue, waiting) = mpsc::sync_channel::<TcpStream>(options.queue);
    let waiting = Arc::new(Mutex::new(waiting));
    let mut started = 0;
    for n in 0..options.workers.max(1) {
        let (handler, options, waiting) = (
            Arc::clone(&handler),
            Arc::clone(&options),
            Arc::clone(&waiting),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("sidekill-http-{n}"))
            .spawn(move || work(&waiting, &*handler, &options));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::warn!(error = %e, "cannot start an HTTP worker thread"),
        }
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) if started == 0 => {
                // No worker could start (a thread limit): answer on this thread, one by one.
                if let Err(e) = answer(stream, &*handler, &options) {
                    tracing::debug!(error = %e, "HTTP request failed");
                }
            }
            Ok(stream) => match queue.try_send(stream) {
                Ok(()) => {}
                // Closing is the cheapest refusal: nothing is read or written.
                Err(TrySendError::Full(stream)) => drop(stream),
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                // Out of file descriptors: back off instead of spinning on the error.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn work(
    waiting: &Mutex<Receiver<TcpStream>>,
    handler: &(dyn Fn(&str) -> Response + Send + Sync),
    options: &Options,
) {
    loop {
        // Hold the lock only to take one connection.
        let next = match waiting.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(stream) = next else { return };
        if let Err(e) = answer(stream, handler, options) {
            tracing::debug!(error = %e, "HTTP request failed");
        }
    }
}

/// The parts of a request head this server uses.
struct Head {
    method: String,
    target: String,
    host: Option<String>,
}

enum ReadHead {
    Head(Head),
    TooLarge,
    Malformed,
}

fn answer(
    mut stream: TcpStream,
    handler: &(dyn Fn(&str) -> Response + Send + Sync),
    options: &Options,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(options.read_timeout))?;
    let mut with_body = true;
    let head = read_head(&mut stream, options)?;
    let refused = !matches!(head, ReadHead::Head(_));
    let response = match head {
        ReadHead::TooLarge => Response::text(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        ReadHead::Malformed => Response::text("400 Bad Request", "bad request\n"),
        ReadHead::Head(head) => {
            if !host_allowed(head.host.as_deref(), options) {
                Response::text("421 Misdirected Request", "unexpected Host header\n")
            } else if head.method == "GET" || head.method == "HEAD" {
                // HEAD gets the headers of the GET answer without its body.
                with_body = head.method == "GET";
                let path = head
                    .target
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/');
                handler(path)
            } else {
                Response::text("405 Method Not Allowed", "GET or HEAD only\n")
            }
        }
    };
    write_response(&mut stream, &response, with_body, options)?;
    if refused {
        linger(&mut stream);
    }
    Ok(())
}

/// After refusing a head the client is still sending: stop writing and read a little more
/// (at most 1 MiB, 1 s), so the close does not reset the connection before the client has
/// read the refusal.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while drained < 1 << 20 && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Reads the request head within the deadline and the size cap. An I/O error (the deadline
/// included) closes the connection unanswered.
fn read_head(stream: &mut TcpStream, options: &Options) -> std::io::Result<ReadHead> {
    let deadline = Instant::now() + options.read_timeout;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = find_head_end(&buffer) {
            break end;
        }
        if buffer.len() > options.max_head {
            return Ok(ReadHead::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "request head too slow",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed before the request head ended",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    if end > options.max_head {
        return Ok(ReadHead::TooLarge);
    }
    let Ok(text) = std::str::from_utf8(&buffer[..end]) else {
        return Ok(ReadHead::Malformed);
    };
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Ok(ReadHead::Malformed);
    };
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim().to_string())
    });
    Ok(ReadHead::Head(Head {
        method: method.to_string(),
        target: target.to_string(),
        host,
    }))
}

/// The length of the head up to and including its blank line, once it is all there.
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn host_allowed(host: Option<&str>, options: &Options) -> bool {
    match (&options.allowed_hosts, host) {
        (None, _) => true,
        (Some(allowed), Some(host)) => allowed.iter().any(|a| a.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    with_body: bool,
    options: &Options,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    for (name, value) in &options.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}
