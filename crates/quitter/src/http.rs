//! A plain HTTP/1.1 request to a loopback endpoint, over `TcpStream`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::quitter::{DONE, FAILED, REFUSED, USAGE};

/// The most of an answer read: enough for the status line and a short message.
const MAX_ANSWER: u64 = 16 * 1024;

/// Sends `method path` to `address` and reports the exit code and a message.
pub fn request(method: &str, address: &str, path: &str, timeout: Duration) -> (u8, String) {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return (
            USAGE,
            format!("`{method}` is not an HTTP method such as POST"),
        );
    }
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return (
            USAGE,
            format!("`{path}` is not a request path starting with /"),
        );
    }
    let Some((host, _)) = address.rsplit_once(':') else {
        return (USAGE, format!("`{address}` is not HOST:PORT"));
    };
    let addrs: Vec<SocketAddr> = match address.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => return (USAGE, format!("`{address}` is not HOST:PORT: {e}")),
    };
    // Quit endpoints accept only loopback callers; anything else is a mistake or misuse.
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return (USAGE, format!("`{address}` is not a loopback address: the quitter only calls endpoints inside the pod"));
    }
    let mut last_error = String::new();
    for addr in &addrs {
        match exchange(addr, host, method, path, timeout) {
            Ok(answer) => return verdict(method, address, path, &answer),
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    (
        FAILED,
        format!("{method} http://{address}{path}: {last_error}"),
    )
}

fn exchange(
    addr: &SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sidekill-quitter\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    // A server that keeps the connection open past its answer ends the read with a timeout;
    // what arrived before is enough.
    match stream.take(MAX_ANSWER).read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e)
            if !answer.is_empty()
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn verdict(method: &str, address: &str, path: &str, answer: &str) -> (u8, String) {
    let status_line = answer.lines().next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or("");
    match status {
        Some(code) if (200..300).contains(&code) => (
            DONE,
            format!("{method} http://{address}{path}: {status_line}"),
        ),
        Some(_) => (
            REFUSED,
            format!(
                "{method} http://{address}{path}: {status_line}{}{body}",
                if body.is_empty() { "" } else { ": " }
            ),
        ),
        None => (
            FAILED,
            format!("{method} http://{address}{path}: not an HTTP/1.x answer: `{status_line}`"),
        ),
    }
}
