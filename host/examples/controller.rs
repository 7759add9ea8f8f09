//! The controller embedded in a program of your own: the built-in policy, hot-swapped from a
//! module file when one is given, against the cluster of the current kubeconfig (or the
//! in-cluster service account), with the metrics endpoints on 127.0.0.1:9090.
//!
//! ```sh
//! cargo run -p sidekill --example controller -- [policy.wasm]
//! curl -s localhost:9090/metrics
//! ```

use std::sync::Arc;
use std::time::Duration;

use sidekill::controller::{self, Controller};
use sidekill::exec::{Executor, Options};
use sidekill::source::file::FileWatcher;
use sidekill::{embedded, Config, PolicyStore, Runtime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // Every version, the first included, passes the load checks and the canaries.
    let store = Arc::new(PolicyStore::new(
        Runtime::new(Config::default())?,
        None,
        embedded::BYTES,
        embedded::ORIGIN,
    )?);
    // Proposes the file's module whenever it changes; dropping the watcher stops it.
    let _watcher = match std::env::args().nth(1) {
        Some(path) => Some(FileWatcher::spawn(
            Arc::clone(&store),
            path,
            Duration::from_secs(2),
        )?),
        None => None,
    };
    let client = kube::Client::try_default().await?;
    let executor = Executor::new(client.clone(), Arc::clone(&store) as _, Options::default());
    let controller = Controller::new(client, executor, controller::Options::default());
    controller::metrics::spawn_server(
        std::net::TcpListener::bind("127.0.0.1:9090")?,
        controller.metrics(),
        store,
        Duration::from_secs(60),
    )?;
    controller
        .run(
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            Duration::from_secs(30),
        )
        .await?;
    Ok(())
}
