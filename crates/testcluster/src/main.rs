//! `sidekill-testcluster`: runs the test API server until interrupted.
//!
//! Exit codes: 0 stopped on SIGINT/SIGTERM; 2 could not start (not root, a tool missing, a bad
//! manifest, the port taken).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sidekill_testcluster::{ClusterConfig, TestCluster};

#[derive(Parser)]
#[command(
    name = "sidekill-testcluster",
    version,
    about = "A loopback Kubernetes API server whose containers are real processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGINT or SIGTERM, then kill every container.
    Serve {
        /// Port on 127.0.0.1 (0 picks a free one and prints it).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the kubeconfig for clients.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Manifests (Pods, ConfigMaps, Events) to create at start.
        #[arg(long = "pods", value_name = "FILE", num_args = 1..)]
        pods: Vec<PathBuf>,
        /// Folder for images and container logs (default: a temporary one).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Token written to the kubeconfig; a request with another one is 401.
        #[arg(long, env = "SIDEKILL_TESTCLUSTER_TOKEN")]
        token: Option<String>,
        /// The sidekill-standin binary (default: next to this one).
        #[arg(long, env = "SIDEKILL_TESTCLUSTER_STANDIN")]
        standin: Option<PathBuf>,
        /// The real sidekill-quitter binary behind the sidekill-nop and sidekill-quitter
        /// images (default: $SIDEKILL_TESTCLUSTER_BIN_DIR or next to this binary; without it
        /// those images cannot be pulled).
        #[arg(long, env = "SIDEKILL_QUITTER")]
        quitter: Option<PathBuf>,
        /// Seconds between watch bookmarks.
        #[arg(long, default_value_t = 1.0)]
        bookmark_interval: f64,
    },
    /// List the stand-in images (needs the same privileges as serve).
    Images,
}

fn init_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_default();
    let level = match filter.as_str() {
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        "warn" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            port,
            kubeconfig,
            pods,
            state_dir,
            token,
            standin,
            quitter,
            bookmark_interval,
        } => {
            let config = ClusterConfig {
                port,
                state_dir,
                kubeconfig: Some(kubeconfig),
                standin,
                quitter,
                token,
                bookmark_interval: Duration::from_secs_f64(bookmark_interval.max(0.05)),
                ..ClusterConfig::default()
            };
            let cluster = TestCluster::start(config)
                .await
                .context("starting the test cluster")?;
            for p in &pods {
                let made = cluster
                    .apply_file(p)
                    .await
                    .with_context(|| format!("applying {}", p.display()))?;
                for (kind, ns, name) in made {
                    eprintln!("created {kind} {ns}/{name}");
                }
            }
            println!(
                "serving {} (kubeconfig {})",
                cluster.base_url(),
                cluster.kubeconfig_path().display()
            );
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping: killing every container");
            cluster.shutdown().await;
            Ok(())
        }
        Command::Images => {
            let cluster = TestCluster::start(ClusterConfig::default())
                .await
                .context("starting the test cluster")?;
            for (name, description) in cluster.images() {
                println!("{name:32} {description}");
            }
            cluster.shutdown().await;
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
