//! `sidekill web`: serves the browser debugger from files embedded in the binary at build
//! time (`web/`'s sources and the binary's own policy module, see `build.rs`), or from a
//! folder such as `dist/web` (`web/build.sh`).
//!
//! Served by [`crate::http`]. The page itself makes no network call; it only needs the
//! right content types (`application/wasm` for streaming compilation).

use std::net::TcpListener;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::http::Response;

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

/// Headers on every answer. The page's own Content-Security-Policy is the `<meta>` tag of
/// `index.html`; a browser enforces both, and only a header can forbid framing.
const HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// The `Host` values a browser sends for `listener`, when it listens on loopback: anything
/// else is a DNS-rebinding page, refused. Listening on another address is the user's choice
/// to serve other machines, under names sidekill cannot know, so no check then.
fn allowed_hosts(listener: &TcpListener) -> Option<Vec<String>> {
    let local = listener.local_addr().ok()?;
    if !local.ip().is_loopback() {
        return None;
    }
    let port = local.port();
    Some(vec![
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        local.to_string(),
    ])
}

/// Serves the site on `listener` until the process ends.
pub fn serve(listener: TcpListener, site: Site) {
    let options = crate::http::Options {
        allowed_hosts: allowed_hosts(&listener),
        headers: HEADERS.to_vec(),
        ..crate::http::Options::default()
    };
    crate::http::serve_with(
        listener,
        Arc::new(move |path: &str| {
            let path = if path.is_empty() { "index.html" } else { path };
            match site.read(path) {
                Some(body) => Response::ok(content_type(path), body),
                None => Response::text("404 Not Found", "not found\n"),
            }
        }),
        options,
    );
}
