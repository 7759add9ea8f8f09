//! The one HTTP/1.1 client of the host's tests and benches (issue 15): the servers they talk
//! to (`sidekill web`, the controller's health and metrics endpoints, `sidekill::http`)
//! answer one request per connection and then close it, so a client is a write and a read to
//! the end. The hardening tests send malformed and hostile requests byte for byte, which a
//! client crate would not, so the request is raw bytes; [`get`] is the common case.
//!
//! Included with `#[path]` by `tests/it` and by the benches.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a read may wait for the server: a server that never answers fails the caller.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One answer: its status code (0 when the status line cannot be read) and its whole text.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The answer as sent: status line, headers, body.
    pub text: String,
}

impl Answer {
    /// What follows the head (empty when there is no head).
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// Sends `request` as it is and reads the answer to the end (the server closes after one).
/// What arrived before an error or the read timeout is the answer.
///
/// # Errors
/// When the connection or the write fails.
pub fn exchange(address: impl ToSocketAddrs, request: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.write_all(request)?;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Answer { status, text })
}

/// `GET path` with the header `Host: host`.
///
/// # Errors
/// As [`exchange`].
pub fn get(address: impl ToSocketAddrs, host: &str, path: &str) -> std::io::Result<Answer> {
    exchange(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}
