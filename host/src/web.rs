//! `sidekill web`: serves the browser debugger (`web/`, assembled into `dist/web` by
//! `web/build.sh`) from files embedded in the binary at build time, or from a folder.
//!
//! A deliberately small HTTP/1.1 server on std: GET and HEAD of static files, one thread
//! per connection, `Connection: close`. The page itself makes no network call; it only
//! needs the right content types (`application/wasm` for streaming compilation).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

mod files {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

/// Where the page's files come from.
#[derive(Debug, Clone)]
pub enum Site {
    /// The files embedded at build time.
    Embedded,
    /// A folder on disk, such as `dist/web`.
    Folder(PathBuf),
}

impl Site {
    /// Whether the binary was built with the page embedded.
    pub fn embedded_available() -> bool {
        !files::FILES.is_empty()
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self {
            Site::Embedded => files::FILES
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, bytes)| bytes.to_vec()),
            Site::Folder(root) => {
                let relative = Path::new(path);
                // Only plain path segments: no `..`, no absolute paths.
                if !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                {
                    return None;
                }
                std::fs::read(root.join(relative)).ok()
            }
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("yaml" | "yml") => "text/yaml; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Serves the site on `listener` until the process ends.
pub fn serve(listener: TcpListener, site: Site) {
    for stream in listener.incoming().flatten() {
        let site = site.clone();
        std::thread::spawn(move || {
            if let Err(e) = answer(stream, &site) {
                tracing::debug!(error = %e, "web request failed");
            }
        });
    }
}

fn answer(mut stream: TcpStream, site: &Site) -> std::io::Result<()> {
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let (status, kind, body) = match (method, site.read(path)) {
        ("GET" | "HEAD", Some(body)) => ("200 OK", content_type(path), body),
        ("GET" | "HEAD", None) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD only\n".to_vec(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}
