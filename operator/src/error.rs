//! The operator's error type. Callers branch on the kind: `error_policy` backs off
//! on every kind, metrics label failures by kind, and the message of each variant
//! says what failed and, where the user can act, what to do.

/// An error of one reconcile.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action} failed: {source}")]
    Kube {
        /// What the operator was doing, e.g. "applying Deployment chat".
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The API server refused a change to a field that cannot change.
    #[error(
        "{action} was rejected: {message}. Some fields cannot change on an existing \
         object; revert the change, or delete the object so the operator recreates it"
    )]
    Immutable { action: String, message: String },
    /// The spec asks for an object of a kind the cluster does not serve (its
    /// CRD was not installed when the operator started).
    #[error(
        "{field} is on, but the cluster had no {kind} CRD ({group}) when the operator \
         started; install it (the Prometheus Operator) and restart the operator, or turn \
         {field} off"
    )]
    KindNotServed {
        field: &'static str,
        kind: &'static str,
        group: &'static str,
    },
    /// The caches of owned objects did not fill in time (watch errors: see the
    /// operator's log, often missing RBAC).
    #[error(
        "the caches of owned objects did not fill within {0} s; check the operator's \
         log for watch errors (missing RBAC, API server unreachable)"
    )]
    CachesNotReady(u64),
    /// Several objects failed; every other object was applied.
    #[error("{} of the cluster's objects could not be applied: {}", .0.len(), join(.0))]
    Partial(Vec<Error>),
    /// The SignalingCluster has no namespace (it is namespaced, so this is a bug in
    /// whatever handed it over).
    #[error("SignalingCluster has no namespace")]
    MissingNamespace,
}

fn join(errors: &[Error]) -> String {
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    messages.join("; ")
}

impl Error {
    /// Wraps a kube error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        let action = action.into();
        match &source {
            kube::Error::Api(s)
                if s.code == 422
                    && (s.message.contains("Forbidden")
                        || s.message.contains("field is immutable")) =>
            {
                Error::Immutable {
                    action,
                    message: s.message.clone(),
                }
            }
            _ => Error::Kube { action, source },
        }
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(_),
                ..
            } => "api",
            Error::Kube { .. } => "transport",
            Error::Immutable { .. } => "immutable",
            Error::KindNotServed { .. } => "kind_not_served",
            Error::CachesNotReady(_) => "caches_not_ready",
            Error::Partial(errors) => errors.first().map_or("partial", Error::metric_label),
            Error::MissingNamespace => "missing_namespace",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_failures_list_every_object() {
        let e = Error::Partial(vec![Error::MissingNamespace, Error::CachesNotReady(30)]);
        let msg = e.to_string();
        assert!(msg.starts_with("2 of the cluster's objects could not be applied: SignalingCluster has no namespace; the caches"), "{msg}");
        assert_eq!(e.metric_label(), "missing_namespace");
    }
}
