//! Watches: the change stream of a store as newline-delimited JSON events, with filters,
//! bookmarks (`allowWatchBookmarks`), streaming lists (`sendInitialEvents`) and a resume point.
//!
//! Failure modes: a `resourceVersion` older than the history answers 200 with one ERROR event
//! holding a 410 `Expired` Status and ends; a watch ends after `timeoutSeconds` (default 1800),
//! when the client goes away, when it falls more than 4096 changes behind, when a fault closes
//! watches, or when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::read::{partial_metadata, table, Filter, View};
use crate::ctx::{Body, Ctx, Query};
use crate::kinds::Kind;
use crate::status::{status_json, ApiError};
use crate::store::{Change, ChangeType, Store};

fn event_json<K: Kind>(ty: &str, obj: &K, view: View, q: &Query) -> Value {
    let object = match view {
        View::Object => serde_json::to_value(obj).unwrap_or(Value::Null),
        View::Metadata => partial_metadata(obj),
        View::Table => table::<K>(
            std::slice::from_ref(obj),
            obj.metadata().resource_version.clone().unwrap_or_default(),
            q,
            jiff::Timestamp::now(),
        ),
    };
    json!({"type": ty, "object": object})
}

fn bookmark_json<K: Kind>(rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": K::KIND, "apiVersion": K::API_VERSION, "metadata": meta}})
}

/// What a filtered watch shows of one change.
fn filtered<K: Kind>(c: &Change<K>, f: &Filter) -> Option<&'static str> {
    let now_in = f.matches(&c.object);
    let was_in = c.previous.as_ref().is_some_and(|p| f.matches(p));
    match c.kind {
        ChangeType::Added => now_in.then_some("ADDED"),
        ChangeType::Deleted => (was_in || now_in).then_some("DELETED"),
        ChangeType::Modified => match (was_in, now_in) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

pub(super) fn watch<K: Kind>(
    ctx: &Arc<Ctx>,
    store: &Arc<Store<K>>,
    ns: Option<&str>,
    q: &Query,
    view: View,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::parse::<K>(q)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let initial = q.flag("sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from = match q.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        // A streaming list starts with the current state whatever version it names.
        Some(_) if initial => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        ),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let start = store.watch(ns, from);
    let store = store.clone();
    let q2 = q.clone();
    let mut shutdown = ctx.shutdown.clone();
    let interval = ctx.bookmark_interval;
    let faults = ctx.faults.clone();
    let generation = faults.watch_generation();
    tokio::spawn(async move {
        let mut start = match start {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(line(
                        &json!({"type": "ERROR", "object": status_json(&e.to_status())}),
                    ))
                    .await;
                return;
            }
        };
        let mut last_rv = from
            .unwrap_or(0)
            .max(if from.is_none() { start.rv } else { 0 });
        for c in &start.replay {
            if let Some(ty) = filtered(c, &filter) {
                if tx
                    .send(line(&event_json(ty, &c.object, view, &q2)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            last_rv = last_rv.max(c.rv);
        }
        if initial && bookmarks {
            let _ = tx
                .send(line(&bookmark_json::<K>(start.rv.max(last_rv), true)))
                .await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            if faults.watch_generation() != generation {
                return;
            }
            // What to deliver now: changes, then (on a tick) a bookmark of the version they
            // reach.
            let (changes, bookmark) = tokio::select! {
                _ = faults.watches_closed() => return,
                r = start.rx.recv() => match r {
                    Ok(c) => (vec![c], None),
                    // Too slow a watcher is closed, as the watch cache does; it re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    // Everything broadcast up to the current version is in our queue by now;
                    // deliver it, then the bookmark may name the current version.
                    let (pending, rv) = store.drain(&mut start.rx);
                    (pending, Some(rv))
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            };
            for c in changes {
                if c.rv <= last_rv {
                    continue;
                }
                last_rv = c.rv;
                if let Some(ty) = filtered(&c, &filter) {
                    if tx
                        .send(line(&event_json(ty, &c.object, view, &q2)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if let Some(rv) = bookmark {
                last_rv = last_rv.max(rv);
                if tx
                    .send(line(&bookmark_json::<K>(last_rv, false)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}
