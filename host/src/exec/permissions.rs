//! What the executor may do besides `pods/exec`, as the policy's `facts.stopMethods`
//! (docs/ABI.md): image swap when a nop image is configured and the identity may `patch`
//! pods, the ephemeral quitter when a quitter image is configured and it may `patch`
//! `pods/ephemeralcontainers`.
//!
//! RBAC is asked, not assumed: one SelfSubjectAccessReview per verb and namespace (every
//! authenticated identity may create them), remembered for [`TTL`] so that a controller does
//! not ask twice per pod. A review that fails counts as "not allowed": the policy then plans
//! without the method and says what is missing, which is better than a patch refused halfway
//! through a plan.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Map, Value};

use super::Executor;

/// How long a namespace's answers are reused. RBAC changes are rare; a grant made now is used
/// within this time, and a revoked one fails loudly (403) before then.
pub(super) const TTL: Duration = Duration::from_secs(60);

/// The RBAC answers for one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grants {
    /// `patch` on `pods`: image swap.
    pub patch_pods: bool,
    /// `patch` on `pods/ephemeralcontainers`: the ephemeral quitter.
    pub patch_ephemeral: bool,
}

/// Answers per namespace, with when they were asked.
#[derive(Debug, Default)]
pub(super) struct Cache(Mutex<HashMap<String, (Instant, Grants)>>);

impl Cache {
    fn get(&self, ns: &str) -> Option<Grants> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(ns)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, g)| *g)
    }

    fn put(&self, ns: &str, grants: Grants) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the namespaces pods come from; expired entries go when the map grows.
        if map.len() >= 4096 {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        map.insert(ns.to_owned(), (Instant::now(), grants));
    }
}

impl Executor {
    /// The `stopMethods` fact for pods of `ns`, from the answers remembered for it (none yet:
    /// nothing but `pods/exec`). [`Executor::ask_permissions`] fills them in.
    pub(super) fn stop_methods(&self, ns: &str) -> Value {
        let grants = self.permissions.get(ns).unwrap_or(Grants {
            patch_pods: false,
            patch_ephemeral: false,
        });
        let mut methods = Map::new();
        let method = |allowed: bool, image: &Option<String>| match image {
            Some(image) => json!({"allowed": allowed, "image": image}),
            None => json!({"allowed": false}),
        };
        methods.insert(
            "imageSwap".into(),
            method(grants.patch_pods, &self.options.nop_image),
        );
        methods.insert(
            "ephemeral".into(),
            method(grants.patch_ephemeral, &self.options.quitter_image),
        );
        Value::Object(methods)
    }

    /// Asks RBAC what the identity may do in `ns`, unless asked within [`TTL`]. Only the
    /// methods an image is configured for are asked about.
    pub(super) async fn ask_permissions(&self, ns: &str) {
        if self.permissions.get(ns).is_some() {
            return;
        }
        let patch_pods = match self.options.nop_image {
            Some(_) => self.allowed(ns, "patch", "").await,
            None => false,
        };
        let patch_ephemeral = match self.options.quitter_image {
            Some(_) => self.allowed(ns, "patch", "ephemeralcontainers").await,
            None => false,
        };
        self.permissions.put(
            ns,
            Grants {
                patch_pods,
                patch_ephemeral,
            },
        );
    }

    /// Whether the identity may `verb` pods (with `subresource`, or none when empty) in `ns`.
    pub(super) async fn allowed(&self, ns: &str, verb: &str, subresource: &str) -> bool {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns.to_owned()),
                    verb: Some(verb.to_owned()),
                    resource: Some("pods".to_owned()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                tracing::debug!(%ns, %verb, %subresource, error = %e, "access review failed");
                false
            }
        }
    }
}
