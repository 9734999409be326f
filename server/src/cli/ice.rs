//! The ICE flags (STUN/TURN) and their validation into an [`IceConfig`].

use clap::Args;

use super::{invalid, ConfigError};
use crate::ice::{IceConfig, TurnConfig, DEFAULT_TURN_TTL_SECS};

/// ICE server options.
#[derive(Debug, Clone, Default, Args)]
pub struct IceArgs {
    /// Comma-separated STUN URLs (`stun:` or `stuns:`), e.g. `stun:stun.example.com:3478`.
    #[arg(long, env = "STUN_URLS")]
    pub stun_urls: Option<String>,
    /// Comma-separated TURN URLs (`turn:` or `turns:`); needs TURN_SECRET.
    #[arg(long, env = "TURN_URLS")]
    pub turn_urls: Option<String>,
    /// Shared secret of the TURN server (coturn `static-auth-secret`).
    #[arg(long, env = "TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials, in seconds.
    #[arg(long, env = "TURN_TTL_SECS", default_value_t = DEFAULT_TURN_TTL_SECS)]
    pub turn_ttl_secs: u64,
}

fn url_list(
    setting: &'static str,
    value: Option<String>,
    schemes: [&str; 2],
) -> Result<Vec<String>, ConfigError> {
    let mut urls = Vec::new();
    for url in value.iter().flat_map(|v| v.split(',')) {
        let url = url.trim();
        if url.is_empty() {
            continue;
        }
        let host = schemes
            .iter()
            .find_map(|s| url.strip_prefix(s).and_then(|r| r.strip_prefix(':')));
        if host.is_none_or(str::is_empty) {
            return Err(invalid(
                setting,
                format!(
                    "{url:?} must start with {}: or {}: followed by a host",
                    schemes[0], schemes[1]
                ),
            ));
        }
        urls.push(url.to_owned());
    }
    Ok(urls)
}

impl IceArgs {
    /// Validates the options into an [`IceConfig`].
    pub fn into_config(self) -> Result<IceConfig, ConfigError> {
        let stun_urls = url_list("STUN_URLS", self.stun_urls, ["stun", "stuns"])?;
        let turn_urls = url_list("TURN_URLS", self.turn_urls, ["turn", "turns"])?;
        let secret = self.turn_secret.filter(|s| !s.is_empty());
        if self.turn_ttl_secs == 0 {
            return Err(invalid("TURN_TTL_SECS", "must be greater than 0"));
        }
        let turn =
            match (turn_urls.is_empty(), secret) {
                (true, None) => None,
                (true, Some(_)) => {
                    return Err(invalid(
                        "TURN_SECRET",
                        "is set but TURN_URLS is empty; set the TURN servers' URLs too",
                    ))
                }
                (false, None) => return Err(invalid(
                    "TURN_URLS",
                    "needs TURN_SECRET (the TURN server's static-auth-secret) to issue credentials",
                )),
                (false, Some(secret)) => Some(TurnConfig {
                    urls: turn_urls,
                    secret,
                    ttl_secs: self.turn_ttl_secs,
                }),
            };
        Ok(IceConfig { stun_urls, turn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice::{ice_servers, turn_credential};
    use serde_json::{json, Value};

    fn args(stun: &str, turn: &str, secret: &str) -> IceArgs {
        IceArgs {
            stun_urls: Some(stun.into()),
            turn_urls: Some(turn.into()),
            turn_secret: Some(secret.into()),
            turn_ttl_secs: 600,
        }
    }

    #[test]
    fn servers_carry_time_limited_credentials() {
        let c = args(
            "stun:s.example:3478",
            "turn:t.example:3478,turns:t.example:5349",
            "s3",
        )
        .into_config()
        .unwrap();
        let v = ice_servers(&c, "alice", 1000);
        assert_eq!(v[0], json!({"urls": ["stun:s.example:3478"]}));
        assert_eq!(v[1]["username"], "1600:alice");
        assert_eq!(v[1]["credential"], turn_credential("s3", "1600:alice"));
        assert_eq!(v[1]["urls"].as_array().unwrap().len(), 2);
        assert_eq!(
            ice_servers(&IceConfig::default(), "a", 1),
            Value::Array(vec![])
        );
        assert!(!format!("{c:?}").contains("s3\""));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let e = |a: IceArgs| a.into_config().unwrap_err().setting;
        assert_eq!(e(args("", "", "x")), "TURN_SECRET");
        assert_eq!(e(args("", "turn:t", "")), "TURN_URLS");
        assert_eq!(e(args("http://x", "", "")), "STUN_URLS");
        assert_eq!(e(args("", "stun:x", "s")), "TURN_URLS");
        assert_eq!(e(args("", "turn:", "s")), "TURN_URLS");
        let mut zero = args("", "", "");
        zero.turn_ttl_secs = 0;
        assert_eq!(e(zero), "TURN_TTL_SECS");
    }
}
