//! The ConfigMap source against a fake API server on loopback that speaks enough of the
//! Kubernetes API for kube's watcher: list and watch of ConfigMaps in one namespace,
//! with resource versions, over plain HTTP/1.1 (chunked watch streams).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use sidekill::source::configmap::ConfigMapSource;
use sidekill::{embedded, PolicyStore, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::common::{embedded_variant, runtime};

#[derive(Default)]
struct State {
    rv: u64,
    current: Option<Value>,
    /// Every change: resource version and the watch event line.
    history: Vec<(u64, String)>,
    watchers: usize,
}

/// The fake API server.
struct FakeApi {
    url: String,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(u64, String)>,
}

impl FakeApi {
    async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let (events, _) = broadcast::channel(64);
        let (s, e) = (Arc::clone(&state), events.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, Arc::clone(&s), e.clone()));
            }
        });
        FakeApi { url, state, events }
    }

    /// Creates, replaces (`Some`) or deletes (`None`) the ConfigMap.
    fn set(&self, configmap: Option<ConfigMap>) {
        let mut state = self.state.lock().expect("state");
        state.rv += 1;
        let rv = state.rv;
        let (kind, object) = match configmap {
            Some(cm) => {
                let mut object = serde_json::to_value(cm).expect("configmap json");
                object["apiVersion"] = json!("v1");
                object["kind"] = json!("ConfigMap");
                object["metadata"]["resourceVersion"] = json!(rv.to_string());
                let kind = if state.current.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                state.current = Some(object.clone());
                (kind, object)
            }
            None => {
                let mut object = state.current.take().expect("a configmap to delete");
                object["metadata"]["resourceVersion"] = json!(rv.to_string());
                ("DELETED", object)
            }
        };
        let line = json!({"type": kind, "object": object}).to_string();
        state.history.push((rv, line.clone()));
        let _ = self.events.send((rv, line));
    }

    fn watchers(&self) -> usize {
        self.state.lock().expect("state").watchers
    }
}

async fn connection(
    socket: TcpStream,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(u64, String)>,
) {
    let mut socket = BufReader::new(socket);
    let mut request_line = String::new();
    if socket.read_line(&mut request_line).await.is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match socket.read_line(&mut header).await {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let socket = socket.get_mut();
    if path != "/api/v1/namespaces/sidekill/configmaps" {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}).to_string();
        let _ = socket
            .write_all(format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
            .await;
        return;
    }
    if param("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (backlog, mut live) = {
            let mut s = state.lock().expect("state");
            s.watchers += 1;
            let backlog: Vec<String> = s
                .history
                .iter()
                .filter(|(rv, _)| *rv > from)
                .map(|(_, l)| l.clone())
                .collect();
            (backlog, events.subscribe())
        };
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut ok = socket.write_all(head.as_bytes()).await.is_ok();
        for line in backlog {
            ok = ok && chunk(socket, &line).await;
        }
        while ok {
            match live.recv().await {
                Ok((rv, line)) if rv > from => ok = chunk(socket, &line).await,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        state.lock().expect("state").watchers -= 1;
        return;
    }
    let body = {
        let s = state.lock().expect("state");
        json!({
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": s.current.iter().collect::<Vec<_>>(),
        })
        .to_string()
    };
    let _ = socket
        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
        .await;
}

async fn chunk(socket: &mut TcpStream, line: &str) -> bool {
    let data = format!("{line}\n");
    socket
        .write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await
        .is_ok()
}

fn configmap(key: &str, bytes: &[u8]) -> ConfigMap {
    ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("policy".into()),
            namespace: Some("sidekill".into()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(bytes.to_vec()),
        )])),
        ..Default::default()
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_source_swaps_refuses_and_survives_deletion() {
    let store = Arc::new(
        PolicyStore::new(runtime().clone(), None, embedded::BYTES, embedded::ORIGIN)
            .expect("store"),
    );
    let variant = embedded_variant("configmap");
    let api = FakeApi::start().await;
    api.set(Some(configmap("policy.wasm", &variant)));

    let config = kube::Config::new(api.url.parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let source = ConfigMapSource::new(client, "sidekill", "policy", "policy.wasm");
    assert_eq!(source.origin(), "configmap sidekill/policy key policy.wasm");
    let task = tokio::spawn(source.run(Arc::clone(&store)));

    // The initial list: the variant goes live.
    eventually("the variant from the list", || {
        *store.current().sha256() == Sha256::of(&variant)
    })
    .await;
    assert_eq!(
        store.live().origin,
        "configmap sidekill/policy key policy.wasm"
    );
    eventually("a watch", || api.watchers() > 0).await;

    // A bad module: refused, the variant keeps serving.
    api.set(Some(configmap("policy.wasm", b"\0asm garbage")));
    eventually("the refusal", || store.stats().refusals == 1).await;
    assert_eq!(*store.current().sha256(), Sha256::of(&variant));

    // A version without the key: nothing happens.
    api.set(Some(configmap("other.wasm", embedded::BYTES)));
    // A good module: it goes live.
    api.set(Some(configmap("policy.wasm", embedded::BYTES)));
    eventually("the embedded module from the watch", || {
        *store.current().sha256() == embedded::sha256()
    })
    .await;

    // Deleted: the live version keeps serving.
    api.set(None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*store.current().sha256(), embedded::sha256());
    assert_eq!(store.stats().switches, 2);
    assert!(!task.is_finished(), "the source keeps watching");
    task.abort();
}
