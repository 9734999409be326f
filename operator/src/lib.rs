//! switchboard-operator: runs Switchboard signaling clusters on Kubernetes.
pub mod crd;
