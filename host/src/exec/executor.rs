//! The executor: a kube client, where plans come from, its options and its bounds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Options, Planner};

/// Carries out pods' plans. Cheap to clone; clones share the concurrency bound.
#[derive(Clone)]
pub struct Executor {
    pub(super) client: kube::Client,
    pub(super) planner: Arc<dyn Planner>,
    pub(super) options: Options,
    pub(super) permits: Arc<Semaphore>,
    /// What RBAC allows per namespace, for `facts.stopMethods`.
    pub(super) permissions: Arc<super::permissions::Cache>,
    /// The longest a wait holds the pod's permit; `None`: waits are waited in place.
    pub(super) hold: Option<Duration>,
    /// Whether other pods wait for a slot: a wait held then is handed back at once.
    pub(super) contended: Option<super::waits::Contended>,
    /// Whether the pod may still be written by this executor ([`Executor::fenced`]).
    pub(super) fence: Option<Arc<dyn super::records::Fence>>,
    /// The pods in work as the controller's watchers see them ([`Executor::reading_through`]).
    pub(super) cache: Option<Arc<super::cache::PodCache>>,
}

impl Executor {
    /// An executor with a client, where plans come from, and options.
    pub fn new(client: kube::Client, planner: Arc<dyn Planner>, options: Options) -> Executor {
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Executor {
            client,
            planner,
            options,
            permits,
            permissions: Arc::default(),
            hold: None,
            contended: None,
            fence: None,
            cache: None,
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// A plan's wait of `secs` seconds, at most [`Options::max_wait`]: the plan's number
    /// comes from the pod (its grace period) through the module, and neither may hold a
    /// concurrency slot for longer than the operator allows (nor overflow a deadline). A
    /// negative number waits not at all.
    pub(super) fn capped(&self, secs: i64) -> Duration {
        Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(self.options.max_wait)
    }
}
