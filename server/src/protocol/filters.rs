//! `discover` filters: parsing (unknown operators are errors) and matching
//! against a peer's role and metadata (`tags`, `properties`).

use serde_json::Value;

use crate::protocol::{PeerInfo, ProtocolError};

/// A comparison on one property.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
}

/// Parsed `discover.filters`. The default matches every peer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub role: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Every property must pass every one of its operators.
    pub properties: Vec<(String, Vec<Op>)>,
}

impl Filters {
    /// Parses the filters object; anything not in the protocol is `BAD_REQUEST`.
    pub fn parse(value: &Value) -> Result<Self, ProtocolError> {
        let bad = |m: String| ProtocolError::bad_request(format!("`filters`: {m}"));
        let Value::Object(obj) = value else {
            return Err(bad("must be a JSON object".into()));
        };
        let mut filters = Filters::default();
        for (key, v) in obj {
            match key.as_str() {
                "role" => {
                    let Value::String(r) = v else {
                        return Err(bad("`role` must be a string".into()));
                    };
                    filters.role = Some(r.clone());
                }
                "tags" => {
                    let tags = v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|t| t.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| bad("`tags` must be an array of strings".into()))?;
                    filters.tags = Some(tags);
                }
                "properties" => {
                    let Value::Object(props) = v else {
                        return Err(bad("`properties` must be an object".into()));
                    };
                    for (name, cond) in props {
                        filters
                            .properties
                            .push((name.clone(), parse_condition(name, cond)?));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown filter {other:?}; use `role`, `tags` or `properties`"
                    )))
                }
            }
        }
        Ok(filters)
    }

    /// Whether `peer` passes every filter.
    pub fn matches(&self, peer: &PeerInfo) -> bool {
        if let Some(role) = &self.role {
            if &peer.role != role {
                return false;
            }
        }
        if let Some(wanted) = &self.tags {
            let has = peer
                .metadata
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|tags| {
                    tags.iter()
                        .any(|t| t.as_str().is_some_and(|t| wanted.iter().any(|w| w == t)))
                });
            if !has {
                return false;
            }
        }
        let props = peer.metadata.get("properties").and_then(Value::as_object);
        self.properties.iter().all(|(name, ops)| {
            let actual = props.and_then(|p| p.get(name));
            ops.iter().all(|op| op_matches(op, actual))
        })
    }
}

fn parse_condition(name: &str, cond: &Value) -> Result<Vec<Op>, ProtocolError> {
    let Value::Object(ops) = cond else {
        return Ok(vec![Op::Eq(cond.clone())]);
    };
    let mut out = Vec::with_capacity(ops.len());
    for (op, arg) in ops {
        out.push(match op.as_str() {
            "$eq" => Op::Eq(arg.clone()),
            "$ne" => Op::Ne(arg.clone()),
            "$gt" => Op::Gt(arg.clone()),
            "$gte" => Op::Gte(arg.clone()),
            "$lt" => Op::Lt(arg.clone()),
            "$lte" => Op::Lte(arg.clone()),
            "$in" => match arg {
                Value::Array(list) => Op::In(list.clone()),
                _ => {
                    return Err(ProtocolError::bad_request(format!(
                        "`filters.properties.{name}.$in` must be a list"
                    )))
                }
            },
            other => {
                return Err(ProtocolError::bad_request(format!(
                    "`filters.properties.{name}`: unknown operator {other:?}; use $eq $ne $gt $gte $lt $lte $in"
                )))
            }
        });
    }
    Ok(out)
}

/// Orders two scalars of the same kind (numbers with numbers, strings with
/// strings); anything else is unordered and fails every range comparison.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(std::cmp::Ordering::Equal),
        _ => a == b,
    }
}

fn op_matches(op: &Op, actual: Option<&Value>) -> bool {
    use std::cmp::Ordering::*;
    // A missing property never matches a comparison, `$ne` included.
    let Some(actual) = actual else { return false };
    match op {
        Op::Eq(v) => equal(actual, v),
        Op::Ne(v) => !equal(actual, v),
        Op::Gt(v) => compare(actual, v) == Some(Greater),
        Op::Gte(v) => matches!(compare(actual, v), Some(Greater | Equal)),
        Op::Lt(v) => compare(actual, v) == Some(Less),
        Op::Lte(v) => matches!(compare(actual, v), Some(Less | Equal)),
        Op::In(list) => list.iter().any(|v| equal(actual, v)),
    }
}

/// Keeps the peers that pass `filters`.
pub fn select(peers: Vec<PeerInfo>, filters: &Filters) -> Vec<PeerInfo> {
    peers.into_iter().filter(|p| filters.matches(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn peer(v: Value) -> PeerInfo {
        let metadata: Map<String, Value> = v.as_object().unwrap().clone();
        PeerInfo {
            peer: "p".into(),
            role: "worker".into(),
            metadata,
            joined_at: 0,
        }
    }

    fn f(v: Value) -> Filters {
        Filters::parse(&v).unwrap()
    }

    #[test]
    fn role_tags_and_properties() {
        let p = peer(json!({"tags":["gpu","eu"],"properties":{"vram_gb":24,"zone":"a"}}));
        assert!(f(json!({})).matches(&p));
        assert!(f(json!({"role":"worker"})).matches(&p));
        assert!(!f(json!({"role":"viewer"})).matches(&p));
        assert!(f(json!({"tags":["us","eu"]})).matches(&p));
        assert!(!f(json!({"tags":["us"]})).matches(&p));
        assert!(f(json!({"properties":{"vram_gb":{"$gte":16},"zone":"a"}})).matches(&p));
        assert!(!f(json!({"properties":{"vram_gb":{"$gt":24}}})).matches(&p));
        assert!(f(json!({"properties":{"vram_gb":{"$lte":24,"$gt":23.5}}})).matches(&p));
        assert!(f(json!({"properties":{"vram_gb":{"$lt":25}}})).matches(&p));
        assert!(f(json!({"properties":{"zone":{"$in":["b","a"]}}})).matches(&p));
        assert!(f(json!({"properties":{"zone":{"$ne":"b"}}})).matches(&p));
        assert!(f(json!({"properties":{"vram_gb":{"$eq":24.0}}})).matches(&p));
        assert!(!f(json!({"properties":{"zone":{"$gt":5}}})).matches(&p));
    }

    #[test]
    fn missing_property_never_matches() {
        let p = peer(json!({}));
        for op in ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"] {
            assert!(!f(json!({"properties":{"x":{op: 1}}})).matches(&p), "{op}");
        }
        assert!(!f(json!({"properties":{"x":{"$in":[1]}}})).matches(&p));
        assert!(!f(json!({"properties":{"x":1}})).matches(&p));
    }

    #[test]
    fn unknown_operators_and_shapes_are_rejected() {
        for bad in [
            json!({"properties":{"x":{"$regex":"a"}}}),
            json!({"properties":{"x":{"$in":1}}}),
            json!({"tags":"gpu"}),
            json!({"role":1}),
            json!({"colour":"red"}),
            json!([1]),
        ] {
            assert!(Filters::parse(&bad).is_err(), "{bad}");
        }
    }
}
