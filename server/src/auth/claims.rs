//! The grant a verified token carries, and the rules it imposes on a
//! connection's `join` (room, pinned peer id and role) and role `update`.

use serde_json::{Map, Value};

use super::AuthError;
use crate::protocol::{is_valid_name, ErrorCode, JoinRequest, ProtocolError, MAX_ROLE_CHARS};

/// The grant a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The peer id the connection must use.
    pub sub: String,
    /// Room names, or `prefix*` patterns, the connection may join.
    pub rooms: Vec<String>,
    /// The only role the connection may take, when set.
    pub role: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl Claims {
    /// Whether the grant covers `room`: an exact name, or a pattern ending in
    /// `*` that `room` starts with (`*` alone covers every room).
    pub fn allows_room(&self, room: &str) -> bool {
        self.rooms
            .iter()
            .any(|grant| match grant.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => grant == room,
            })
    }

    /// Whether the token is past its expiry (with `leeway_secs`) at `now`.
    pub fn is_expired(&self, now: u64, leeway_secs: u64) -> bool {
        self.exp.saturating_add(leeway_secs) < now
    }

    /// Checks a `join` against the grant and fills in what the token decides:
    /// a join without `peer` takes `sub`, one without a role takes the pinned
    /// role. `now` is Unix seconds.
    ///
    /// An explicit role other than the pinned one is `FORBIDDEN`, the
    /// protocol's default `"peer"` included (docs/auth.md).
    pub fn authorize_join(
        &self,
        join: &mut JoinRequest,
        now: u64,
        leeway_secs: u64,
    ) -> Result<(), ProtocolError> {
        if self.is_expired(now, leeway_secs) {
            return Err(ProtocolError::new(
                ErrorCode::Unauthorized,
                "the connection's token has expired; reconnect with a fresh token to join",
            ));
        }
        match &join.peer {
            Some(peer) if *peer != self.sub => {
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "peer {peer:?} is not the token's subject; omit `peer` or use {:?}",
                        self.sub
                    ),
                ))
            }
            Some(_) => {}
            None => join.peer = Some(self.sub.clone()),
        }
        if !self.allows_room(&join.room) {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room {:?}", join.room),
            ));
        }
        if let Some(pinned) = &self.role {
            match &join.role {
                None => join.role = Some(pinned.clone()),
                Some(role) if role != pinned => return Err(self.role_error(role)),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the role of an `update`.
    pub fn authorize_role(&self, role: Option<&str>) -> Result<(), ProtocolError> {
        match (role, &self.role) {
            (Some(role), Some(pinned)) if role != pinned => Err(self.role_error(role)),
            _ => Ok(()),
        }
    }

    fn role_error(&self, role: &str) -> ProtocolError {
        let pinned = self.role.as_deref().unwrap_or_default();
        ProtocolError::new(
            ErrorCode::Forbidden,
            format!("the token pins role {pinned:?}; role {role:?} is not allowed"),
        )
    }
}

pub(super) fn claims_from(map: &Map<String, Value>) -> Result<Claims, AuthError> {
    let bad = |claim: &str, why: &str| AuthError::BadClaim(claim.to_owned(), why.to_owned());
    let sub = match map.get("sub") {
        Some(Value::String(s)) if is_valid_name(s) => s.clone(),
        Some(_) => {
            return Err(bad(
                "sub",
                "must be a peer id of 1-128 characters from [A-Za-z0-9._:@-]",
            ))
        }
        None => return Err(AuthError::MissingClaim("sub".into())),
    };
    let exp = match map.get("exp") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("exp", "must be Unix seconds"))?,
        None => return Err(AuthError::MissingClaim("exp".into())),
    };
    let rooms = match map.get("rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(bad(
                    "rooms",
                    "must be a list of room names or prefix* patterns",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(bad(
                "rooms",
                "must be a list of room names or prefix* patterns",
            ))
        }
        None => return Err(AuthError::MissingClaim("rooms".into())),
    };
    let role = match map.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if !r.is_empty() && r.chars().count() <= MAX_ROLE_CHARS => {
            Some(r.clone())
        }
        Some(_) => {
            return Err(bad(
                "role",
                &format!("must be a string of 1-{MAX_ROLE_CHARS} characters"),
            ))
        }
    };
    Ok(Claims {
        sub,
        rooms,
        role,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_names_and_prefixes() {
        let c = Claims {
            sub: "a".into(),
            rooms: vec!["lobby".into(), "team-*".into()],
            role: None,
            exp: 0,
        };
        assert!(c.allows_room("lobby"));
        assert!(!c.allows_room("lobby2"));
        assert!(c.allows_room("team-"));
        assert!(c.allows_room("team-x"));
        assert!(!c.allows_room("team"));
        let all = Claims {
            rooms: vec!["*".into()],
            ..c
        };
        assert!(all.allows_room("anything"));
    }
}
