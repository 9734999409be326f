//! The server part of the spec: image, settings, the internal listener,
//! authentication and TURN.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{default_true, SecretKeyRef};

/// Default server image repository.
pub const DEFAULT_SERVER_IMAGE: &str = "ghcr.io/switchboard-dev/switchboard";
/// Default port of the server's internal listener (`/metrics`, `/status`).
pub const DEFAULT_INTERNAL_PORT: i32 = 9091;

/// Container image of the server.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default = "default_server_repository")]
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of Secrets in the same namespace used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_server_repository(),
            tag: None,
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }
}

fn default_server_repository() -> String {
    DEFAULT_SERVER_IMAGE.to_string()
}

/// Kubernetes image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Settings of the signaling server. Unset limits keep the server's defaults.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSettings {
    /// `RUST_LOG` filter, for example `info` or `switchboard=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Seconds a terminating pod waits for its clients to leave. The pod's termination
    /// grace period is set longer than this.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_timeout_seconds: i32,
    /// Region label reported by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Browser origins allowed to open WebSockets; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Maximum WebSocket connections per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<i64>,
    /// Maximum peers in one room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_peers_per_room: Option<i64>,
    /// Maximum `signal`/`broadcast` payload in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_payload_bytes: Option<i64>,
    /// Sustained messages per second per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_per_sec: Option<i64>,
    /// Message burst per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_burst: Option<i64>,
    /// Seconds a disconnected peer may resume its session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub resume_window_seconds: Option<i64>,
    /// A second listener for `/metrics` and `/status` (and the server API), which
    /// the public port then no longer serves. On by default.
    #[serde(default)]
    pub internal_listener: InternalListener,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            log_level: default_log_level(),
            drain_timeout_seconds: default_drain_timeout(),
            region: None,
            allowed_origins: Vec::new(),
            max_connections: None,
            max_peers_per_room: None,
            max_payload_bytes: None,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            resume_window_seconds: None,
            internal_listener: InternalListener::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

fn default_drain_timeout() -> i32 {
    15
}

/// The server's internal listener (`INTERNAL_ADDR`): `/metrics`, `/status` and
/// the probes' `/health` and `/ready`, kept off the public port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalListener {
    /// Serve `/metrics` and `/status` on their own port (set `INTERNAL_ADDR`).
    /// Off: one port serves everything, as without the setting.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Port of the internal listener.
    #[serde(default = "default_internal_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for InternalListener {
    fn default() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_INTERNAL_PORT,
        }
    }
}

fn default_internal_port() -> i32 {
    DEFAULT_INTERNAL_PORT
}

/// How strongly server pods are kept off each other's nodes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AntiAffinity {
    /// Spread across nodes when possible (scheduling never blocks).
    #[default]
    Preferred,
    /// Never two server pods of this cluster on one node.
    Required,
    /// No anti-affinity.
    None,
}

/// JWT authentication of clients: one key source (a shared secret, a public
/// key or a JWKS document), and the token that protects `/status`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.jwtSecretRef) ? 1 : 0) + (has(self.publicKeySecretRef) ? 1 : 0) + (has(self.jwksSecretRef) ? 1 : 0) <= 1").message("auth takes one key source: set only one of jwtSecretRef, publicKeySecretRef and jwksSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding the HS256 shared secret (`JWT_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding a PEM public key (RS256/ES256), mounted as
    /// `JWT_PUBLIC_KEY_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding a JWKS document, mounted as `JWT_JWKS_FILE`. The server
    /// rereads the file, so rotating keys needs no restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_secret_ref: Option<SecretKeyRef>,
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Secret key holding `ADMIN_TOKEN`, which protects `/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret_ref: Option<SecretKeyRef>,
}

impl AuthSpec {
    /// Whether a key source is set (tokens are verified).
    pub fn has_key_source(&self) -> bool {
        self.jwt_secret_ref.is_some()
            || self.public_key_secret_ref.is_some()
            || self.jwks_secret_ref.is_some()
    }
}

/// STUN and TURN servers announced to clients.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnSpec {
    /// TURN URLs, for example `turn:turn.example.com:3478?transport=udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// STUN URLs, for example `stun:stun.example.com:3478`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stun_urls: Vec<String>,
    /// Secret key holding the TURN REST shared secret, used to mint time-limited
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Lifetime of minted TURN credentials in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub ttl_seconds: Option<i64>,
}
