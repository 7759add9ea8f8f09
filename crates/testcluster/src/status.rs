//! API errors as the real API server words them: a `metav1.Status` with a code, a reason and a
//! message, built from one small struct that every layer of the server can return.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// An error answer of the API: turned into a `Status` body with `code` as the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`, worded as the real API server words it.
    pub message: String,
    /// `Status.details`.
    pub details: Option<Box<StatusDetails>>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, kind: &str, name: &str) -> Self {
        self.details = Some(Box::new(StatusDetails {
            name: Some(name.to_owned()),
            kind: Some(kind.to_owned()),
            ..StatusDetails::default()
        }));
        self
    }

    /// `pods "x" not found`.
    pub fn not_found(plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{plural} \"{name}\" not found"))
            .with_details(plural, name)
    }

    /// `pods "x" already exists`.
    pub fn already_exists(plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        )
        .with_details(plural, name)
    }

    /// An optimistic-concurrency conflict on update.
    pub fn conflict(plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {plural} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(plural, name)
    }

    /// 400 with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422: the object fails validation.
    pub fn invalid(kind: &str, name: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {message}"),
        )
        .with_details(kind, name)
    }

    /// 410: a resource version that history no longer holds.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500: `Internal error occurred: ...`.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        );
        e.details = Some(Box::new(StatusDetails {
            causes: Some(vec![StatusCause {
                message: Some(message.to_string()),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        }));
        e
    }

    /// 404 for a path the server does not serve.
    pub fn no_route() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(Box::default());
        e
    }

    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed() -> Self {
        let mut e = Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        e.details = Some(Box::default());
        e
    }

    /// 403 as RBAC words it: `pods "p" is forbidden: User "u" cannot patch resource "pods/ephemeralcontainers" in API group "" in the namespace "ns"`
    /// (k8s.io/apiserver pkg/endpoints/handlers/responsewriters errors.go `forbiddenMessage`).
    pub fn forbidden(verb: &str, resource: &str, ns: &str, name: &str) -> Self {
        let (plural, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let resource = if sub.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}/{sub}")
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{plural} \"{name}\" is forbidden: User \"sidekill-testcluster\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
            ),
        )
        .with_details(plural, name)
    }

    /// 401 for a request without the kubeconfig's token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 415 for a patch type the server does not understand.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"),
        )
    }

    /// 415 for a request body in a format the server does not decode (protobuf, CBOR).
    pub fn unsupported_body(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"),
        )
    }

    /// 503 from the pod proxy.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504 for a list at a resource version the server has not reached.
    pub fn too_large_resource_version(asked: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {asked}, current: {current}"),
        );
        e.details = Some(Box::new(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ResourceVersionTooLarge".to_owned()),
                message: Some("Too large resource version".to_owned()),
                ..StatusCause::default()
            }]),
            retry_after_seconds: Some(1),
            ..StatusDetails::default()
        }));
        e
    }

    /// The `Status` object a client receives.
    pub fn to_status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code)),
            details: self.details.as_deref().cloned(),
            message: Some(self.message.clone()),
            metadata: Default::default(),
            reason: Some(self.reason.to_owned()),
            status: Some("Failure".to_owned()),
        }
    }
}

/// Serializes a `Status` with the `kind` and `apiVersion` fields the wire carries (k8s-openapi's
/// `Status` leaves them out because it is not a top-level resource type there).
pub(crate) fn status_json(status: &Status) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), "Status".into());
        o.insert("apiVersion".into(), "v1".into());
        o.entry("metadata").or_insert_with(|| serde_json::json!({}));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_the_real_api() {
        let s = status_json(&ApiError::not_found("pods", "x").to_status());
        assert_eq!(s["message"], "pods \"x\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["details"]["kind"], "pods");
    }

    #[test]
    fn internal_error_has_the_prefix() {
        let e = ApiError::internal("boom");
        assert_eq!(e.message, "Internal error occurred: boom");
        assert_eq!(e.code, 500);
    }
}
