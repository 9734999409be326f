//! The command line: flags and environment variables into validated
//! settings. Every flag struct lives here; the types they turn into live with
//! what they configure (`config`, `auth`, `ice`), which never read flags.
//!
//! - [`auth`]: the JWT, origin and admin token flags;
//! - [`ice`]: the STUN/TURN flags.

pub mod auth;
pub mod ice;

/// A configuration value that cannot be used: which setting, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

/// The error for `setting`.
pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}
