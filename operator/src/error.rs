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
         object (for the managed Redis: persistence and storage); revert the change, or \
         delete the object so the operator recreates it (a Redis without persistence \
         loses its data)"
    )]
    Immutable { action: String, message: String },
    /// The SignalingCluster has no namespace (it is namespaced, so this is a bug in
    /// whatever handed it over).
    #[error("SignalingCluster has no namespace")]
    MissingNamespace,
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
            Error::MissingNamespace => "missing_namespace",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
