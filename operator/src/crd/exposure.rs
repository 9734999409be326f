//! How the servers are reached and watched: the Service, an Ingress with cookie
//! stickiness, a NetworkPolicy and a Prometheus Operator ServiceMonitor.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::default_true;

/// Default name of the stickiness cookie the Ingress sets.
pub const DEFAULT_AFFINITY_COOKIE: &str = "SWITCHBOARD_AFFINITY";
/// Default proxy read/send timeout of the Ingress for WebSockets, in seconds:
/// the usual 60 s would cut quiet connections.
pub const DEFAULT_INGRESS_TIMEOUT_SECS: i32 = 3600;

/// The Service exposing the server pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service listens on (forwarded to the pods' port 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Service annotations, for example cloud load balancer settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `ClientIP` keeps a client on one pod (sticky sessions at the Service).
    #[serde(default)]
    pub session_affinity: SessionAffinity,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
            session_affinity: SessionAffinity::default(),
        }
    }
}

fn default_service_port() -> i32 {
    80
}

/// Kubernetes Service type.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes expects in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Kubernetes Service session affinity.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP,
}

impl SessionAffinity {
    /// The value Kubernetes expects in `spec.sessionAffinity`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionAffinity::None => "None",
            SessionAffinity::ClientIP => "ClientIP",
        }
    }
}

/// An Ingress for the public paths. Its stickiness and timeout annotations are
/// ingress-nginx's; for another controller turn `stickySessions` off and put
/// that controller's annotations in `annotations`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Create the Ingress.
    #[serde(default)]
    pub enabled: bool,
    /// IngressClass name; unset uses the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Host names routed to the servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Secret with the TLS certificate for the hosts; unset serves plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Paths routed to the servers (prefixes). Only the WebSocket by default:
    /// `/metrics` and `/status` never belong on the internet.
    #[serde(default = "default_ingress_paths")]
    pub paths: Vec<String>,
    /// Extra annotations (for example cert-manager's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Cookie stickiness (ingress-nginx).
    #[serde(default)]
    pub sticky_sessions: StickySessions,
    /// Proxy read and send timeout in seconds (ingress-nginx); 0 leaves the
    /// controller's default.
    #[serde(default = "default_ingress_timeout")]
    #[schemars(range(min = 0, max = 86400))]
    pub timeout_seconds: i32,
}

fn default_ingress_paths() -> Vec<String> {
    vec!["/ws".to_string()]
}

fn default_ingress_timeout() -> i32 {
    DEFAULT_INGRESS_TIMEOUT_SECS
}

/// A cookie that keeps a browser on one pod, so a reconnect usually finds its
/// session on the node that has it. Any pod can serve any client: this only
/// saves work.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickySessions {
    /// Set the cookie.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cookie name.
    #[serde(default = "default_cookie_name")]
    #[schemars(length(min = 1, max = 64))]
    pub cookie_name: String,
    /// Cookie lifetime in seconds.
    #[serde(default = "default_cookie_max_age")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: i32,
    /// `SameSite` of the cookie. `None` (default, always with `Secure`) keeps
    /// stickiness for pages served from another site than the signaling host.
    #[serde(default)]
    pub same_site: SameSite,
}

impl Default for StickySessions {
    fn default() -> Self {
        Self {
            enabled: true,
            cookie_name: default_cookie_name(),
            max_age_seconds: default_cookie_max_age(),
            same_site: SameSite::default(),
        }
    }
}

fn default_cookie_name() -> String {
    DEFAULT_AFFINITY_COOKIE.to_string()
}

fn default_cookie_max_age() -> i32 {
    3600
}

/// The cookie's `SameSite` attribute.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SameSite {
    #[default]
    None,
    Lax,
    Strict,
}

impl SameSite {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// A NetworkPolicy for the server pods: the public port from `clientsFrom`, the
/// internal port (metrics, status) from `internalFrom`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy.
    #[serde(default)]
    pub enabled: bool,
    /// Who may open WebSockets (for example the Ingress controller's
    /// namespace); empty: anyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients_from: Vec<NetworkPolicyPeer>,
    /// Who may reach the internal port (for example Prometheus's namespace);
    /// empty: pods of the same namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal_from: Vec<NetworkPolicyPeer>,
}

/// Prometheus Operator integration.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A ServiceMonitor scraping every server pod's `/metrics`.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// A `monitoring.coreos.com/v1` ServiceMonitor (needs the Prometheus Operator's
/// CRD when the operator starts).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    /// Labels your Prometheus selects ServiceMonitors by (for example
    /// `release: kube-prometheus-stack`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_scrape_interval(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_scrape_interval() -> String {
    "30s".to_string()
}
