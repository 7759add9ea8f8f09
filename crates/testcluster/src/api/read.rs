//! Reads: get and list, as objects, as `PartialObjectMetadata` or as a Table (kubectl), with
//! label and field selectors, `limit` and `continue`, and the list `resourceVersion` rules.
//!
//! Failure modes: a `resourceVersion` newer than the store's is 504 (`too large resource
//! version`), `resourceVersionMatch=Exact` on another version and a `continue` token older
//! than the history are 410 `Expired`; a bad selector or token is 400.

use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};

use crate::ctx::{json_response, Body, Query};
use crate::kinds::Kind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::Store;
use hyper::Response;

/// How the client asked to see objects (the `Accept` header's `as=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    Object,
    Table,
    Metadata,
}

pub(super) fn view_of(req: &Request<Incoming>) -> View {
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable media type wins, as in the real server's negotiation.
    for part in accept.split(',') {
        if part.contains("as=Table") {
            return View::Table;
        }
        if part.contains("as=PartialObjectMetadata") {
            return View::Metadata;
        }
        if part.trim().starts_with("application/json") || part.trim().starts_with("*/*") {
            return View::Object;
        }
    }
    View::Object
}

pub(super) fn get_one<K: Kind>(
    store: &Store<K>,
    req: &Request<Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let obj = store
        .get(ns, name)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, name))?;
    let q = Query::parse(req.uri().query());
    let now = jiff::Timestamp::now();
    Ok(match view_of(req) {
        View::Object => json_response(200, &obj),
        View::Metadata => json_response(200, &partial_metadata(&obj)),
        View::Table => json_response(200, &table::<K>(&[obj], obj_rv_str(store), &q, now)),
    })
}

fn obj_rv_str<K: Kind>(store: &Store<K>) -> String {
    store.current_rv().to_string()
}

pub(super) fn partial_metadata<K: Kind>(obj: &K) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.metadata()})
}

pub(super) fn table<K: Kind>(objs: &[K], rv: String, q: &Query, now: jiff::Timestamp) -> Value {
    let include = q.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => serde_json::to_value(o).unwrap_or(Value::Null),
                _ => partial_metadata(o),
            };
            json!({"cells": o.table_cells(now), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": K::table_columns(),
        "rows": rows,
    })
}

pub(super) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(super) fn parse<K: Kind>(q: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), K::FIELDS)?,
        })
    }

    pub(super) fn matches<K: Kind>(&self, o: &K) -> bool {
        if !self.labels.matches(o.metadata().labels.as_ref()) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        // The name and namespace (what a watch of one object selects on) come from the
        // metadata; other fields from the object as JSON, made once and only if needed.
        // Serializing every object to compare a name made each list, and each change a
        // field-selected watch sees, cost a whole-object serialization per object.
        let m = o.metadata();
        let mut json: Option<Option<Value>> = None;
        self.fields.matches_by(|path| match path {
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            _ => json
                .get_or_insert_with(|| serde_json::to_value(o).ok())
                .as_ref()
                .map(|v| crate::selector::json_field(v, path))
                .unwrap_or_default(),
        })
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

pub(super) fn list<K: Kind>(
    store: &Store<K>,
    ns: Option<&str>,
    q: &Query,
    view: View,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::parse::<K>(q)?;
    let (items, current) = store.list(ns, |o| filter.matches(o));
    // resourceVersion semantics for lists: unset/"0" = current state; N = not older than N
    // (current state, or 504 when N is in the future); Exact = only the current version.
    let asked = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    if let Some(v) = asked {
        let n: u64 = v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
        if n > current {
            return Err(ApiError::too_large_resource_version(n, current));
        }
        if q.get("resourceVersionMatch") == Some("Exact") && n != current {
            return Err(ApiError::expired(format!(
                "too old resource version: {n} ({current})"
            )));
        }
    }
    let mut rv = current;
    let mut after: Option<(String, String)> = None;
    if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
        let decoded =
            unhex(token).ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let (trv, key) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let trv: u64 = trv
            .parse()
            .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
        if trv < store.compacted() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
            ));
        }
        rv = trv;
        let (a, b) = key.split_once('/').unwrap_or(("", key));
        after = Some((a.to_owned(), b.to_owned()));
    }
    let mut selected: Vec<K> = items
        .into_iter()
        .filter(|o| {
            after.as_ref().is_none_or(|(a, b)| {
                let m = o.metadata();
                (
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                ) > (a.as_str(), b.as_str())
            })
        })
        .collect();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if selected.len() > limit {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        if let Some(last) = selected.last() {
            let m = last.metadata();
            let key = format!(
                "{rv}:{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            );
            meta["continue"] = json!(hex(&key));
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let now = jiff::Timestamp::now();
    Ok(match view {
        View::Table => {
            let mut t = table::<K>(&selected, rv.to_string(), q, now);
            t["metadata"] = meta;
            json_response(200, &t)
        }
        View::Metadata => json_response(
            200,
            &json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": selected.iter().map(partial_metadata).collect::<Vec<_>>(),
            }),
        ),
        View::Object => json_response(
            200,
            &json!({
                "kind": format!("{}List", K::KIND),
                "apiVersion": K::API_VERSION,
                "metadata": meta,
                "items": selected,
            }),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        assert_eq!(unhex(&hex("12:default/p")).as_deref(), Some("12:default/p"));
        assert_eq!(unhex("zz"), None);
    }
}
