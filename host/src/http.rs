//! A deliberately small HTTP/1.1 server on std, shared by `sidekill web` (static files)
//! and the controller's health and metrics endpoints: GET and HEAD only, one thread per
//! connection, `Connection: close`. Nothing here parses headers or bodies, so there is
//! little for a client to get wrong.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

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

/// Serves `handler` on `listener` until the listener fails (the process ends first).
pub fn serve(listener: TcpListener, handler: Handler) {
    for stream in listener.incoming().flatten() {
        let handler = Arc::clone(&handler);
        std::thread::spawn(move || {
            if let Err(e) = answer(stream, &*handler) {
                tracing::debug!(error = %e, "HTTP request failed");
            }
        });
    }
}

fn answer(
    mut stream: TcpStream,
    handler: &(dyn Fn(&str) -> Response + Send + Sync),
) -> std::io::Result<()> {
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let response = match method {
        "GET" | "HEAD" => handler(path),
        _ => Response::text("405 Method Not Allowed", "GET or HEAD only\n"),
    };
    write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}
