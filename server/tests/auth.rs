//! Auth and ICE servers, black-box against the real binary: every refusal of
//! an upgrade (HTTP 401 with a JSON reason, 403 for a foreign origin), every
//! `FORBIDDEN` join, tokens that expire mid-session, key rotation through a
//! JWKS file, the `token` command, config errors, and TURN credentials checked
//! with an independent HMAC. The same grant rules run on one embedded node and
//! on two Redis-backed nodes.
//!
//! Tokens are made here with `jsonwebtoken`; RSA and P-256 keys are generated
//! at test time with the `openssl` command line tool.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha1::Sha1;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use support::files::{openssl, TempDir};
use support::{Client, Cluster, Settings};

const SECRET: &str = "test-secret-0123456789abcdef";
const OTHER_SECRET: &str = "other-secret-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
/// A Server API key, to read the room history.
const HISTORY_KEY: &str = "history-api-key-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims granting `rooms` to `sub` for an hour.
fn grant(sub: &str, rooms: &[&str]) -> Value {
    json!({"sub": sub, "rooms": rooms, "iat": now(), "exp": now() + 3600})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn settings_hs() -> Settings {
    Settings::new().set("JWT_SECRET", SECRET)
}

// ---- keys ----

/// A key pair made by `openssl`: the PEM files and the signing key.
struct KeyPair {
    private_pem: PathBuf,
    public_pem: PathBuf,
    alg: Algorithm,
}

impl KeyPair {
    fn generate(dir: &TempDir, name: &str, alg: Algorithm) -> KeyPair {
        let private_pem = dir.join(&format!("{name}.key.pem"));
        let public_pem = dir.join(&format!("{name}.pub.pem"));
        let params: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            _ => unreachable!(),
        };
        let run = |args: &[&str]| openssl(dir.path(), args);
        let mut gen = vec!["genpkey"];
        gen.extend_from_slice(params);
        gen.extend_from_slice(&["-out", private_pem.to_str().unwrap()]);
        run(&gen);
        run(&[
            "pkey",
            "-in",
            private_pem.to_str().unwrap(),
            "-pubout",
            "-out",
            public_pem.to_str().unwrap(),
        ]);
        KeyPair {
            private_pem,
            public_pem,
            alg,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        let pem = std::fs::read(&self.private_pem).unwrap();
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        }
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        sign(self.alg, kid, &self.encoding_key(), claims)
    }

    /// The public JWK of this key with `kid`.
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_value(jwk).unwrap()
    }
}

/// Writes a JWKS file atomically (rename), as a deployment would.
fn write_jwks(path: &Path, keys: &[Value]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---- upgrades ----

/// The request of an upgrade of `/ws` on node `i`, with extra headers.
fn ws_request(
    c: &Cluster,
    i: usize,
    query: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("{}{query}", c.ws_url(i));
    let mut request = url.as_str().into_client_request().unwrap();
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    request
}

/// Attempts an upgrade; `Ok(101)` when it passed (the socket is dropped),
/// `Err((status, JSON body))` when it was refused.
async fn try_upgrade(
    c: &Cluster,
    i: usize,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<u16, (u16, Value)> {
    let request = ws_request(c, i, query, headers);
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Err(_) => panic!("node {i}: no answer to an upgrade"),
        Ok(Ok((_ws, response))) => Ok(response.status().as_u16()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let body = serde_json::from_str(&body)
                .unwrap_or_else(|_| panic!("{status} body is not JSON: {body:?}"));
            Err((status, body))
        }
        Ok(Err(e)) => panic!("node {i}: upgrade failed: {e}"),
    }
}

/// The HTTP status of an upgrade (101 when it passed).
async fn upgrade_status(c: &Cluster, i: usize, query: &str, headers: &[(&str, &str)]) -> u16 {
    match try_upgrade(c, i, query, headers).await {
        Ok(status) | Err((status, _)) => status,
    }
}

/// A client on node `i` with `?token=`.
async fn with_token(c: &Cluster, i: usize, token: &str) -> Client {
    let url = format!("{}?token={token}", c.ws_url(i));
    match Client::try_connect(&url, &format!("client@node-{i}")).await {
        Ok(client) => client,
        Err(e) => {
            let refusal = try_upgrade(c, i, &format!("?token={token}"), &[]).await;
            panic!("token refused on node {i}: {e}; {refusal:?}")
        }
    }
}

/// Asserts the upgrade is refused with 401 and a reason containing `why`;
/// the reason never contains a secret.
async fn assert_401(c: &Cluster, i: usize, query: &str, headers: &[(&str, &str)], why: &str) {
    match try_upgrade(c, i, query, headers).await {
        Ok(_) => panic!("node {i}: expected 401 ({why}), the upgrade passed"),
        Err((status, body)) => {
            assert_eq!(status, 401, "expected 401 ({why}): {body}");
            assert_eq!(body["error"], "unauthorized", "{body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(why),
                "401 message {message:?} should mention {why:?}"
            );
            for secret in [SECRET, OTHER_SECRET, ADMIN] {
                assert!(!body.to_string().contains(secret), "secret leaked: {body}");
            }
        }
    }
}

async fn refused(c: &Cluster, i: usize, token: &str, why: &str) {
    assert_401(c, i, &format!("?token={token}"), &[], why).await;
}

/// `GET path` with optional headers; (status, body).
async fn http_get(c: &Cluster, i: usize, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = support::http::get_with(c.addr(i), path, headers).await;
    (response.status, response.body)
}

fn log_mentions(c: &Cluster, i: usize, needle: &str) -> bool {
    c.node(i).output().iter().any(|l| l.contains(needle))
}

// ---- single node ----

#[tokio::test]
async fn open_by_default_and_the_log_says_so() {
    let c = Cluster::embedded(Settings::new()).await;
    assert!(
        log_mentions(&c, 0, "authentication is off"),
        "{}",
        c.node(0).output_tail()
    );
    let mut a = c.connect(0).await;
    let joined = a
        .join(json!({"type": "join", "room": "r", "peer": "x"}))
        .await;
    assert_eq!(joined["ice_servers"], json!([]));
    let (status, _) = http_get(&c, 0, "/status", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upgrades_without_a_valid_token_get_401() {
    let dir = TempDir::new("auth");
    let rsa = KeyPair::generate(&dir, "rsa", Algorithm::RS256);
    let c = Cluster::embedded(settings_hs()).await;
    assert!(log_mentions(&c, 0, "authentication is on"));

    // Missing, malformed.
    assert_401(&c, 0, "", &[], "required").await;
    refused(&c, 0, "", "required").await;
    refused(&c, 0, "not-a-jwt", "well-formed").await;
    refused(&c, 0, "a.b.c", "well-formed").await;
    // Signed with another secret.
    let wrong = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
        &grant("alice", &["r"]),
    );
    refused(&c, 0, &wrong, "signature").await;
    // Tampered claims keep the old signature.
    let good = hs(&grant("alice", &["r"]));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(grant("alice", &["*"]).to_string());
    refused(
        &c,
        0,
        &format!("{}.{forged}.{}", parts[0], parts[2]),
        "signature",
    )
    .await;
    // Expired (beyond the 30 s leeway) and not yet valid.
    let mut expired = grant("alice", &["r"]);
    expired["exp"] = json!(now() - 120);
    refused(&c, 0, &hs(&expired), "expired").await;
    let mut early = grant("alice", &["r"]);
    early["nbf"] = json!(now() + 120);
    refused(&c, 0, &hs(&early), "not valid yet").await;
    // Within the leeway: accepted.
    let mut skewed = grant("alice", &["r"]);
    skewed["exp"] = json!(now() - 5);
    with_token(&c, 0, &hs(&skewed)).await;
    // Algorithms: none, another HMAC, RS256.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(grant("alice", &["r"]).to_string());
    refused(&c, 0, &format!("{header}.{claims}."), "\"none\"").await;
    let hs512 = sign(
        Algorithm::HS512,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &grant("alice", &["r"]),
    );
    refused(&c, 0, &hs512, "\"HS512\"").await;
    refused(&c, 0, &rsa.sign(None, &grant("alice", &["r"])), "\"RS256\"").await;
    // Missing or malformed claims.
    for (claim, why) in [("sub", "sub"), ("exp", "exp"), ("rooms", "rooms")] {
        let mut claims = grant("alice", &["r"]);
        claims.as_object_mut().unwrap().remove(claim);
        refused(&c, 0, &hs(&claims), why).await;
    }
    let mut bad_rooms = grant("alice", &["r"]);
    bad_rooms["rooms"] = json!("r");
    refused(&c, 0, &hs(&bad_rooms), "rooms").await;
    let mut bad_sub = grant("a b", &["r"]);
    bad_sub["sub"] = json!("a b");
    refused(&c, 0, &hs(&bad_sub), "sub").await;
    let mut bad_role = grant("alice", &["r"]);
    bad_role["role"] = json!(7);
    refused(&c, 0, &hs(&bad_role), "role").await;

    // Authorization: Bearer works too, and wins over the query.
    let bearer = format!("Bearer {good}");
    assert_eq!(
        upgrade_status(&c, 0, "", &[("authorization", &bearer)]).await,
        101
    );
    let bad_bearer = format!("Bearer {wrong}");
    assert_eq!(
        upgrade_status(
            &c,
            0,
            &format!("?token={good}"),
            &[("authorization", &bad_bearer)]
        )
        .await,
        401
    );
    c.assert_alive();
}

#[tokio::test]
async fn joins_are_checked_against_the_grant() {
    let c = Cluster::embedded(settings_hs()).await;
    let alice_token = hs(&grant("alice", &["team-*", "lobby"]));

    // A join without `peer` takes `sub`.
    let mut alice = with_token(&c, 0, &alice_token).await;
    let joined = alice.join(json!({"type": "join", "room": "team-1"})).await;
    assert_eq!(joined["peer"], "alice");

    let mut other = with_token(&c, 0, &alice_token).await;
    let e = other
        .request_error(json!({"type": "join", "room": "private"}), "FORBIDDEN")
        .await;
    assert!(e["message"].as_str().unwrap().contains("private"), "{e}");
    other
        .request_error(json!({"type": "join", "room": "team"}), "FORBIDDEN")
        .await;
    other
        .request_error(
            json!({"type": "join", "room": "team-2", "peer": "bob"}),
            "FORBIDDEN",
        )
        .await;
    // After refusals the connection still works, as the same peer elsewhere.
    let joined = other
        .join(json!({"type": "join", "room": "lobby", "peer": "alice"}))
        .await;
    assert_eq!(joined["peer"], "alice");

    // A pinned role: another role is refused, none takes the pinned one.
    let mut carol_claims = grant("carol", &["team-1"]);
    carol_claims["role"] = json!("viewer");
    let carol_token = hs(&carol_claims);
    let mut carol = with_token(&c, 0, &carol_token).await;
    carol
        .request_error(
            json!({"type": "join", "room": "team-1", "role": "host"}),
            "FORBIDDEN",
        )
        .await;
    carol.join(json!({"type": "join", "room": "team-1"})).await;
    let peers = alice.request(json!({"type": "discover"})).await;
    let carol_info = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == "carol")
        .cloned()
        .unwrap_or_else(|| panic!("carol not listed: {peers}"));
    assert_eq!(carol_info["role"], "viewer");
    carol
        .request_error(json!({"type": "update", "role": "host"}), "FORBIDDEN")
        .await;
    carol
        .request_ok(json!({"type": "update", "role": "viewer"}))
        .await;
    carol
        .request_ok(json!({"type": "update", "metadata": {"x": 1}}))
        .await;
    carol.close().await;

    // Resume keeps the grant: alice's token resumes alice; bob's token cannot
    // take alice's session, and joins as bob instead.
    let session = joined["session"].as_str().unwrap().to_owned();
    other.close().await;
    let mut back = with_token(&c, 0, &alice_token).await;
    let resumed = back
        .join(json!({"type": "join", "room": "lobby", "resume": session}))
        .await;
    assert_eq!(resumed["peer"], "alice");
    assert!(resumed.get("recovered").is_some(), "{resumed}");
    let session = resumed["session"].as_str().unwrap().to_owned();
    back.close().await;
    let bob_token = hs(&grant("bob", &["lobby"]));
    let mut bob = with_token(&c, 0, &bob_token).await;
    bob.request_error(
        json!({"type": "join", "room": "lobby", "peer": "alice", "resume": session}),
        "FORBIDDEN",
    )
    .await;
    let as_bob = bob
        .join(json!({"type": "join", "room": "lobby", "resume": session}))
        .await;
    assert_eq!(as_bob["peer"], "bob");
    // And alice can still resume her own session.
    let mut again = with_token(&c, 0, &alice_token).await;
    let resumed = again
        .join(json!({"type": "join", "room": "lobby", "resume": session}))
        .await;
    assert_eq!(resumed["peer"], "alice");
    assert_eq!(resumed["recovered"], true, "{resumed}");
    c.assert_alive();
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let c = Cluster::embedded(
        settings_hs()
            .set("JWT_ISSUER", "https://auth.example")
            .set("JWT_AUDIENCE", "switchboard"),
    )
    .await;
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut claims = grant("alice", &["r"]);
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = aud;
        }
        hs(&claims)
    };
    let aud = Some(json!("switchboard"));
    refused(&c, 0, &with(None, aud.clone()), "iss").await;
    refused(
        &c,
        0,
        &with(Some("https://evil.example"), aud.clone()),
        "iss",
    )
    .await;
    refused(&c, 0, &with(Some("https://auth.example"), None), "aud").await;
    refused(
        &c,
        0,
        &with(Some("https://auth.example"), Some(json!("other"))),
        "aud",
    )
    .await;
    with_token(&c, 0, &with(Some("https://auth.example"), aud)).await;
    with_token(
        &c,
        0,
        &with(
            Some("https://auth.example"),
            Some(json!(["other", "switchboard"])),
        ),
    )
    .await;
}

#[tokio::test]
async fn public_key_files_rs256_and_es256() {
    let dir = TempDir::new("auth");
    let rsa = KeyPair::generate(&dir, "rsa", Algorithm::RS256);
    let rsa2 = KeyPair::generate(&dir, "rsa2", Algorithm::RS256);
    let ec = KeyPair::generate(&dir, "ec", Algorithm::ES256);
    let claims = grant("alice", &["r"]);

    let c = Cluster::embedded(Settings::new().set("JWT_PUBLIC_KEY_FILE", rsa.public_pem.display()))
        .await;
    let mut a = with_token(&c, 0, &rsa.sign(None, &claims)).await;
    a.join(json!({"type": "join", "room": "r"})).await;
    refused(&c, 0, &rsa2.sign(None, &claims), "signature").await;
    refused(&c, 0, &ec.sign(None, &claims), "\"ES256\"").await;
    // Algorithm confusion: HS256 keyed with the public key's bytes.
    let public = std::fs::read(&rsa.public_pem).unwrap();
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&public),
        &claims,
    );
    refused(&c, 0, &confused, "\"HS256\"").await;
    drop(c);

    let c = Cluster::embedded(Settings::new().set("JWT_PUBLIC_KEY_FILE", ec.public_pem.display()))
        .await;
    let mut a = with_token(&c, 0, &ec.sign(None, &claims)).await;
    a.join(json!({"type": "join", "room": "r"})).await;
    refused(&c, 0, &rsa.sign(None, &claims), "\"RS256\"").await;
    let other_ec = KeyPair::generate(&dir, "ec2", Algorithm::ES256);
    refused(&c, 0, &other_ec.sign(None, &claims), "signature").await;
}

/// Waits (bounded) until `token` is accepted (`want` true) or refused on node `i`.
async fn await_acceptance(c: &Cluster, i: usize, token: &str, want: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = upgrade_status(c, i, &format!("?token={token}"), &[]).await;
        if (status == 101) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {i}: token still {} after 20 s (status {status}); output:\n{}",
            if want { "refused" } else { "accepted" },
            c.node(i).output_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// JWKS keys by kid, then a rotation that drops k1 and adds k3 without a restart.
async fn jwks_rotation_case(c: &Cluster, jwks: &Path, keys: &[KeyPair; 3]) {
    let [k1, k2, k3] = keys;
    let claims = grant("alice", &["r"]);
    for i in 0..c.len() {
        with_token(c, i, &k1.sign(Some("k1"), &claims)).await;
        with_token(c, i, &k2.sign(Some("k2"), &claims)).await;
        refused(c, i, &k3.sign(Some("k3"), &claims), "kid").await;
        refused(c, i, &k1.sign(None, &claims), "kid").await;
        // Right kid, wrong key; kid of an RSA key on an ES256 token.
        refused(c, i, &k3.sign(Some("k1"), &claims), "signature").await;
        refused(c, i, &k2.sign(Some("k1"), &claims), "\"ES256\"").await;
    }
    write_jwks(jwks, &[k2.jwk("k2"), k3.jwk("k3")]);
    for i in 0..c.len() {
        await_acceptance(c, i, &k3.sign(Some("k3"), &claims), true).await;
        await_acceptance(c, i, &k1.sign(Some("k1"), &claims), false).await;
        with_token(c, i, &k2.sign(Some("k2"), &claims)).await;
        assert!(log_mentions(c, i, "JWKS reloaded"));
    }
    // A broken file keeps the last good keys.
    std::fs::write(jwks, "{not json").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..c.len() {
        with_token(c, i, &k3.sign(Some("k3"), &claims)).await;
    }
}

fn jwks_keys(dir: &TempDir) -> [KeyPair; 3] {
    [
        KeyPair::generate(dir, "k1", Algorithm::RS256),
        KeyPair::generate(dir, "k2", Algorithm::ES256),
        KeyPair::generate(dir, "k3", Algorithm::RS256),
    ]
}

#[tokio::test]
async fn jwks_keys_by_kid_rotate_without_restart() {
    let dir = TempDir::new("auth");
    let keys = jwks_keys(&dir);
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[keys[0].jwk("k1"), keys[1].jwk("k2")]);
    let c = Cluster::embedded(Settings::new().set("JWT_JWKS_FILE", jwks.display())).await;
    jwks_rotation_case(&c, &jwks, &keys).await;
    c.assert_alive();
}

#[tokio::test]
async fn origin_allow_list() {
    let c = Cluster::embedded(settings_hs().set(
        "ALLOWED_ORIGINS",
        "https://app.example.com,http://localhost:3000",
    ))
    .await;
    let token = hs(&grant("alice", &["r"]));
    let query = format!("?token={token}");
    match try_upgrade(&c, 0, &query, &[("origin", "https://evil.example")]).await {
        Err((403, body)) => assert_eq!(body["error"], "forbidden_origin", "{body}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // The origin is checked before the token.
    assert_eq!(
        upgrade_status(&c, 0, "", &[("origin", "https://evil.example")]).await,
        403
    );
    for origin in ["https://app.example.com", "http://localhost:3000"] {
        assert_eq!(
            upgrade_status(&c, 0, &query, &[("origin", origin)]).await,
            101,
            "{origin}"
        );
    }
    // Non-browser clients send no Origin.
    assert_eq!(upgrade_status(&c, 0, &query, &[]).await, 101);
    // A listed origin still needs a token.
    assert_eq!(
        upgrade_status(&c, 0, "", &[("origin", "https://app.example.com")]).await,
        401
    );
}

#[tokio::test]
async fn an_expired_token_keeps_its_connection_but_gates_new_joins() {
    let c = Cluster::embedded(settings_hs().set("JWT_LEEWAY_SECS", 0)).await;
    let mut claims = grant("alice", &["r1", "r2"]);
    let exp = now() + 2;
    claims["exp"] = json!(exp);
    let token = hs(&claims);
    let mut alice = with_token(&c, 0, &token).await;
    alice.join(json!({"type": "join", "room": "r1"})).await;
    let mut bob = with_token(&c, 0, &hs(&grant("bob", &["r1"]))).await;
    bob.join(json!({"type": "join", "room": "r1"})).await;

    while now() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still connected and in the room.
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": {"sdp": "x"}}))
        .await;
    let signal = bob.recv_type_skipping_presence("signal").await;
    assert_eq!(signal["from"], "alice");
    // But a new join on it is refused, and so is a new connection.
    alice.request_ok(json!({"type": "leave"})).await;
    let e = alice
        .request_error(json!({"type": "join", "room": "r2"}), "UNAUTHORIZED")
        .await;
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    refused(&c, 0, &token, "expired").await;
}

/// base64(HMAC-SHA1(secret, username)), computed here independently.
fn expected_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

const TURN_SECRET: &str = "turn-shared-secret";

fn turn_settings(base: Settings) -> Settings {
    base.set("STUN_URLS", "stun:stun.example.com:3478")
        .set(
            "TURN_URLS",
            "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349",
        )
        .set("TURN_SECRET", TURN_SECRET)
        .set("TURN_TTL_SECS", 600)
}

#[track_caller]
fn assert_ice(joined: &Value, peer: &str) {
    let ice = &joined["ice_servers"];
    assert_eq!(
        ice[0],
        json!({"urls": ["stun:stun.example.com:3478"]}),
        "{ice}"
    );
    let turn = &ice[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.com:3478?transport=udp",
            "turns:turn.example.com:5349"
        ])
    );
    let username = turn["username"].as_str().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, peer);
    let expiry: u64 = expiry.parse().unwrap();
    let want = now() + 600;
    assert!(
        expiry + 10 >= want && expiry <= want + 1,
        "expiry {expiry} vs {want}"
    );
    assert_eq!(
        turn["credential"].as_str().unwrap(),
        expected_credential(TURN_SECRET, username)
    );
    assert_ne!(
        turn["credential"].as_str().unwrap(),
        expected_credential("wrong", username)
    );
    assert_eq!(ice.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn joined_carries_ice_servers_with_turn_credentials() {
    let c = Cluster::embedded(turn_settings(Settings::new())).await;
    let mut a = c.connect(0).await;
    let joined = a
        .join(json!({"type": "join", "room": "r", "peer": "alice"}))
        .await;
    assert_ice(&joined, "alice");
    // Fresh on a resumed `joined` too.
    let session = joined["session"].as_str().unwrap().to_owned();
    a.close().await;
    let mut b = c.connect(0).await;
    let resumed = b
        .join(json!({"type": "join", "room": "r", "resume": session}))
        .await;
    assert_ice(&resumed, "alice");
    drop(c);

    let stun_only =
        Cluster::embedded(Settings::new().set("STUN_URLS", "stun:a:3478,stuns:b")).await;
    let mut a = stun_only.connect(0).await;
    let joined = a
        .join(json!({"type": "join", "room": "r", "peer": "x"}))
        .await;
    assert_eq!(
        joined["ice_servers"],
        json!([{"urls": ["stun:a:3478", "stuns:b"]}])
    );
}

#[tokio::test]
async fn operational_endpoints_reveal_no_names_and_status_needs_the_admin_token() {
    let c = Cluster::embedded(settings_hs().set("ADMIN_TOKEN", ADMIN)).await;
    let mut a = with_token(
        &c,
        0,
        &hs(&grant("peer-hidden-name", &["room-hidden-name"])),
    )
    .await;
    a.join(json!({"type": "join", "room": "room-hidden-name"}))
        .await;
    for path in ["/health", "/ready", "/metrics"] {
        let (status, body) = http_get(&c, 0, path, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains("hidden-name"),
            "{path} reveals a name: {body}"
        );
    }
    let (status, body) = http_get(&c, 0, "/status", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(ADMIN));
    let (status, _) = http_get(&c, 0, "/status", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {ADMIN}");
    let (status, body) = http_get(&c, 0, "/status", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("hidden-name"), "{body}");
    // The admin token is no upgrade token.
    refused(&c, 0, ADMIN, "well-formed").await;
}

// ---- the binary's command line ----

fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_token_command_mints_tokens_the_server_accepts() {
    let (code, stdout, stderr) = run_binary(
        &["token", "--sub", "alice", "--room", "team-*", "--ttl", "1h"],
        &[("JWT_SECRET", SECRET)],
    );
    assert_eq!(code, 0, "{stderr}");
    let token = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout:?}"
    );
    let c = Cluster::embedded(settings_hs()).await;
    let mut a = with_token(&c, 0, token).await;
    let joined = a.join(json!({"type": "join", "room": "team-9"})).await;
    assert_eq!(joined["peer"], "alice");

    // Signed with a private key and a kid, for a JWKS server.
    let dir = TempDir::new("auth");
    let ec = KeyPair::generate(&dir, "ec", Algorithm::ES256);
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[ec.jwk("dev-1")]);
    let key = ec.private_pem.display().to_string();
    let (code, stdout, stderr) = run_binary(
        &[
            "token",
            "--sub",
            "bob",
            "--room",
            "r",
            "--role",
            "viewer",
            "--private-key-file",
            &key,
            "--kid",
            "dev-1",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let c = Cluster::embedded(Settings::new().set("JWT_JWKS_FILE", jwks.display())).await;
    let mut b = with_token(&c, 0, stdout.trim()).await;
    b.request_error(
        json!({"type": "join", "room": "r", "role": "host"}),
        "FORBIDDEN",
    )
    .await;
    b.join(json!({"type": "join", "room": "r"})).await;

    let (code, _, stderr) = run_binary(&["token", "--sub", "alice", "--room", "r"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--secret"), "{stderr}");
}

#[test]
fn bad_auth_and_ice_settings_are_one_line_config_errors() {
    let dir = TempDir::new("auth");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, "{\"keys\": []}").unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    let missing = dir.join("missing.pem");
    // A P-384 public key (not ES256) and a private key.
    let p384_key = dir.join("p384.key.pem");
    let p384 = dir.join("p384.pem");
    let openssl = |args: &[&str]| openssl(dir.path(), args);
    let (key_s, pub_s) = (p384_key.to_str().unwrap(), p384.to_str().unwrap());
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        key_s,
    ]);
    openssl(&["pkey", "-in", key_s, "-pubout", "-out", pub_s]);
    let jwks_s = jwks.display().to_string();
    let broken_s = broken.display().to_string();
    let missing_s = missing.display().to_string();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("JWT_SECRET", SECRET), ("JWT_JWKS_FILE", &jwks_s)],
            "JWT_SECRET",
        ),
        (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
        (
            vec![("JWT_PUBLIC_KEY_FILE", &missing_s)],
            "JWT_PUBLIC_KEY_FILE",
        ),
        (vec![("JWT_PUBLIC_KEY_FILE", pub_s)], "P-256"),
        (vec![("JWT_PUBLIC_KEY_FILE", key_s)], "private key"),
        (vec![("JWT_JWKS_FILE", &broken_s)], "JWT_JWKS_FILE"),
        (vec![("JWT_JWKS_FILE", &jwks_s)], "JWT_JWKS_FILE"),
        (vec![("JWT_ISSUER", "x")], "JWT_ISSUER"),
        (vec![("TURN_SECRET", "s")], "TURN_SECRET"),
        (vec![("TURN_URLS", "turn:x")], "TURN_URLS"),
        (vec![("STUN_URLS", "http://x")], "STUN_URLS"),
        (
            vec![("ALLOWED_ORIGINS", "app.example.com")],
            "ALLOWED_ORIGINS",
        ),
        (vec![("JWT_LEEWAY_SECS", "99999")], "JWT_LEEWAY_SECS"),
    ];
    for (env, setting) in cases {
        let (code, stdout, stderr) = run_binary(&["print-config"], &env);
        assert_eq!(code, 2, "{env:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{env:?}: {stderr}");
        assert!(stderr.contains(setting), "{env:?}: {stderr}");
        assert!(!stderr.contains(SECRET), "{stderr}");
    }
    // print-config redacts the secrets.
    let (code, stdout, stderr) = run_binary(
        &["print-config"],
        &[
            ("JWT_SECRET", SECRET),
            ("ADMIN_TOKEN", ADMIN),
            ("TURN_URLS", "turn:x"),
            ("TURN_SECRET", TURN_SECRET),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    for secret in [SECRET, ADMIN, TURN_SECRET] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
}

// ---- two Redis-backed nodes ----

#[tokio::test]
async fn redis_cluster_grants_resume_and_ice_across_nodes() {
    let c = Cluster::redis(2, turn_settings(settings_hs())).await;
    let alice_token = hs(&grant("alice", &["team-*"]));
    let mut alice = with_token(&c, 0, &alice_token).await;
    let joined = alice.join(json!({"type": "join", "room": "team-1"})).await;
    assert_eq!(joined["peer"], "alice");
    assert_ice(&joined, "alice");

    // The other node refuses the same bad tokens.
    let mut expired = grant("bob", &["team-1"]);
    expired["exp"] = json!(now() - 120);
    refused(&c, 1, &hs(&expired), "expired").await;
    let wrong = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
        &grant("bob", &["team-1"]),
    );
    refused(&c, 1, &wrong, "signature").await;

    // Grants on node 1 for a room whose peers sit on node 0.
    let mut eve = with_token(&c, 1, &hs(&grant("eve", &["lobby"]))).await;
    eve.request_error(json!({"type": "join", "room": "team-1"}), "FORBIDDEN")
        .await;
    let mut bob_claims = grant("bob", &["team-1"]);
    bob_claims["role"] = json!("viewer");
    let mut bob = with_token(&c, 1, &hs(&bob_claims)).await;
    bob.request_error(
        json!({"type": "join", "room": "team-1", "peer": "alice"}),
        "FORBIDDEN",
    )
    .await;
    bob.request_error(
        json!({"type": "join", "room": "team-1", "role": "host"}),
        "FORBIDDEN",
    )
    .await;
    let bob_joined = bob.join(json!({"type": "join", "room": "team-1"})).await;
    assert_eq!(bob_joined["peer"], "bob");
    assert_ice(&bob_joined, "bob");
    let seen = alice.recv_type("peer_joined").await;
    assert_eq!(seen["peer"]["role"], "viewer");

    // Alice resumes on node 1 with her token; bob's token cannot take her session.
    let session = joined["session"].as_str().unwrap().to_owned();
    let mut carol = with_token(&c, 1, &hs(&grant("carol", &["team-*"]))).await;
    carol
        .request_error(
            json!({"type": "join", "room": "team-1", "peer": "alice", "resume": session}),
            "FORBIDDEN",
        )
        .await;
    drop(alice);
    let mut back = with_token(&c, 1, &alice_token).await;
    let resumed = back
        .join(json!({"type": "join", "room": "team-1", "resume": session}))
        .await;
    assert_eq!(resumed["peer"], "alice");
    assert_ice(&resumed, "alice");
    back.request_ok(json!({"type": "signal", "to": "bob", "payload": 1}))
        .await;
    assert_eq!(
        bob.recv_type_skipping_presence("signal").await["from"],
        "alice"
    );
    let as_carol = carol
        .join(json!({"type": "join", "room": "team-1", "resume": session}))
        .await;
    assert_eq!(as_carol["peer"], "carol");
    c.assert_alive();
}

#[tokio::test]
async fn redis_cluster_jwks_rotation_reaches_every_node() {
    let dir = TempDir::new("auth");
    let keys = jwks_keys(&dir);
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[keys[0].jwk("k1"), keys[1].jwk("k2")]);
    let c = Cluster::redis(2, Settings::new().set("JWT_JWKS_FILE", jwks.display())).await;
    jwks_rotation_case(&c, &jwks, &keys).await;
    c.assert_alive();
}

/// The duplicate-identity rule with auth on (a page reload): a join whose
/// token names a peer already in the room takes it over. The old connection
/// closes with 4000, the others see `peer_left{reason:"replaced"}` then
/// `peer_joined`, the room's state survives even when the old peer was alone
/// in it, and the old session token resumes nothing. The new connection is on
/// the other node when there are two, so the close crosses nodes.
async fn takeover_case(c: &Cluster) {
    let last = c.len() - 1;
    let alice_token = hs(&grant("alice", &["team-*"]));
    let bob_token = hs(&grant("bob", &["team-*"]));

    // Alone in the room: the state must outlive her replacement.
    let mut alice = with_token(c, 0, &alice_token).await;
    let joined = alice.join(json!({"type": "join", "room": "team-1"})).await;
    let old_session = joined["session"].as_str().unwrap().to_owned();
    alice
        .request_ok(json!({"type": "set_state", "patch": {"topic": "x"}}))
        .await;
    let mut reloaded = with_token(c, last, &alice_token).await;
    let again = reloaded
        .join(json!({"type": "join", "room": "team-1"}))
        .await;
    assert_eq!(again["peer"], "alice");
    assert_eq!(again["state"]["data"], json!({"topic": "x"}), "{again}");
    assert_eq!(again["peers"], json!([]), "{again}");
    assert_ne!(again["session"], json!(old_session));
    alice.expect_close(4000).await;

    // With someone else in the room: they see the replacement.
    let mut bob = with_token(c, 0, &bob_token).await;
    bob.join(json!({"type": "join", "room": "team-1"})).await;
    reloaded.recv_type("peer_joined").await;
    let mut third = with_token(c, 0, &alice_token).await;
    let joined = third.join(json!({"type": "join", "room": "team-1"})).await;
    assert_eq!(joined["peer"], "alice");
    let peers: Vec<&str> = joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["bob"], "{joined}");
    reloaded.expect_close(4000).await;
    let left = bob.recv_type("peer_left").await;
    assert_eq!(
        (&left["peer"], &left["reason"]),
        (&json!("alice"), &json!("replaced"))
    );
    let back = bob.recv_type("peer_joined").await;
    assert_eq!(back["peer"]["peer"], "alice");
    bob.assert_quiet().await;

    // The replaced session resumes nothing: its token is a fresh join (a
    // takeover again, recovered false).
    let mut stale = with_token(c, last, &alice_token).await;
    let fresh = stale
        .join(json!({"type": "join", "room": "team-1", "resume": old_session}))
        .await;
    assert_eq!(
        (&fresh["peer"], &fresh["recovered"]),
        (&json!("alice"), &json!(false))
    );
    third.expect_close(4000).await;
    let left = bob.recv_type("peer_left").await;
    assert_eq!(left["reason"], "replaced");
    bob.recv_type("peer_joined").await;
    // Signals reach the newest connection.
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 1}}))
        .await;
    let signal = stale.recv_type("signal").await;
    assert_eq!(
        (&signal["from"], &signal["payload"]),
        (&json!("bob"), &json!({"n": 1}))
    );
    // The room history saw each replacement as a leave and a join, and the
    // room never ended in between.
    let bearer = format!("Bearer {HISTORY_KEY}");
    let history = support::http::get_with(
        c.addr(last),
        "/api/v1/rooms/team-1/events",
        &[("Authorization", &bearer)],
    )
    .await
    .json();
    let seen: Vec<String> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["data"]["reason"].as_str() {
            Some(reason) => format!("{} {reason}", e["type"].as_str().unwrap()),
            None => e["type"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "room_started",
            "peer_joined",
            "state_changed",
            "peer_left replaced",
            "peer_joined",
            "peer_joined",
            "peer_left replaced",
            "peer_joined",
            "peer_left replaced",
            "peer_joined"
        ],
        "{history}"
    );
    c.assert_alive();
}

#[tokio::test]
async fn a_join_as_the_same_subject_takes_the_peer_over_on_one_node() {
    takeover_case(&Cluster::embedded(settings_hs().set("API_KEYS", HISTORY_KEY)).await).await;
}

#[tokio::test]
async fn a_join_as_the_same_subject_takes_the_peer_over_across_nodes() {
    takeover_case(&Cluster::redis(2, settings_hs().set("API_KEYS", HISTORY_KEY)).await).await;
}
