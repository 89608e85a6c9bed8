//! A fake Firebase Cloud Messaging on loopback, in the shape of Google's
//! APIs: `POST /token` (the service account's `token_uri`) takes an
//! RFC 7523 JWT-bearer grant, checks the JWT's header (RS256, the key id),
//! claims (issuer, FCM scope, audience, an hour at most) and its RSA
//! signature against the account's public key, and issues access tokens
//! (counting them); `POST /v1/projects/{project}/messages:send` checks the
//! bearer token (unknown or revoked → 401 UNAUTHENTICATED), the project and
//! the message, and answers a message name or FCM's error with its
//! `FcmError` detail. Device tokens script the answer by prefix:
//! - `dead…` → 404 UNREGISTERED;
//! - `foreign…` → 403 SENDER_ID_MISMATCH;
//! - `busy…` → 429 QUOTA_EXCEEDED with `Retry-After: 30` the first time,
//!   then success;
//! - `revoke…` → before its first send every issued access token is
//!   revoked (as when the account's key was rotated), so it gets a 401.

use super::codec::form_get;
use crate::support::{FakeProvider, Received, Reply};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub const PROJECT: &str = "herald-test";
pub const CLIENT_EMAIL: &str = "herald-push@herald-test.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Default)]
struct State {
    valid: HashSet<String>,
    issued: usize,
    sent: u64,
}

/// The fake FCM and its token endpoint.
pub struct FakeFcm {
    pub provider: FakeProvider,
    state: Arc<Mutex<State>>,
}

fn fcm_error(status: u16, grpc: &str, code: Option<&str>, message: &str) -> Reply {
    let details: Vec<Value> = code
        .map(|c| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}))
        .into_iter()
        .collect();
    Reply::json(
        status,
        json!({"error": {"code": status, "message": message, "status": grpc, "details": details}}),
    )
}

impl FakeFcm {
    pub fn start() -> FakeFcm {
        let public = std::fs::read_to_string(
            crate::support::repo_root().join("tests/fixtures/fcm/public.pem"),
        )
        .expect("tests/fixtures/fcm/public.pem");
        let key = VerifyingKey::<sha2::Sha256>::new(
            rsa::RsaPublicKey::from_public_key_pem(&public).expect("a public key"),
        );
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let provider = FakeProvider::start(move |req, earlier| {
            let mut state = shared.lock().unwrap();
            if req.path == "/token" {
                return token(&key, req, &mut state);
            }
            send(req, earlier, &mut state)
        });
        FakeFcm { provider, state }
    }

    /// The fixture service account with its `token_uri` on this fake.
    pub fn service_account(&self) -> String {
        let path = crate::support::repo_root().join("tests/fixtures/fcm/service-account.json");
        let mut account: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).unwrap();
        account["token_uri"] = json!(self.provider.url("/token"));
        account.to_string()
    }

    /// Access tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().issued
    }

    /// The messages sent to `device`, as FCM received them.
    pub fn messages_to(&self, device: &str) -> Vec<Value> {
        self.provider
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/messages:send"))
            .map(|r| r.json())
            .filter(|b| b["message"]["token"] == device)
            .collect()
    }
}

/// The JWT-bearer grant: header, claims and signature checked.
fn token(key: &VerifyingKey<sha2::Sha256>, req: &Received, state: &mut State) -> Reply {
    let form = super::codec::form_decode(&req.body);
    let invalid = |why: &str| {
        Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if form_get(&form, "grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Reply::json(400, json!({"error": "unsupported_grant_type"}));
    }
    let jwt = form_get(&form, "assertion").unwrap_or("");
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return invalid(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
        );
    }
    let part = |i: usize| -> Value {
        URL_SAFE_NO_PAD
            .decode(parts[i])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let (header, claims) = (part(0), part(1));
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .ok()
        .and_then(|b| Signature::try_from(b.as_slice()).ok());
    let signed = format!("{}.{}", parts[0], parts[1]);
    let Some(signature) = signature else {
        return invalid("Invalid JWT Signature.");
    };
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return invalid("Invalid JWT Signature.");
    }
    let lifetime =
        claims["exp"].as_u64().unwrap_or(0) as i64 - claims["iat"].as_u64().unwrap_or(0) as i64;
    if header["alg"] != "RS256"
        || header["kid"] != KEY_ID
        || claims["iss"] != CLIENT_EMAIL
        || claims["scope"] != SCOPE
        || !claims["aud"].as_str().unwrap_or("").ends_with("/token")
        || !(1..=3600).contains(&lifetime)
    {
        return invalid(&format!(
            "Invalid JWT: unexpected header {header} or claims {claims}"
        ));
    }
    state.issued += 1;
    let access = format!("ya29.fake-{}", state.issued);
    state.valid.insert(access.clone());
    Reply::json(
        200,
        json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// `messages:send`: bearer token, project and message checked.
fn send(req: &Received, earlier: &[Received], state: &mut State) -> Reply {
    if req.path != format!("/v1/projects/{PROJECT}/messages:send") {
        return fcm_error(404, "NOT_FOUND", None, "Requested entity was not found.");
    }
    let body = req.json();
    let device = body["message"]["token"].as_str().unwrap_or("").to_string();
    let first_time = !earlier.iter().any(|r| {
        r.path.ends_with("/messages:send") && r.json()["message"]["token"] == device.as_str()
    });
    if device.starts_with("revoke") && first_time {
        state.valid.clear();
    }
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !state.valid.contains(bearer) {
        return fcm_error(
            401,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let title = body["message"]["notification"]["title"]
        .as_str()
        .unwrap_or("");
    if device.is_empty() || title.is_empty() {
        return fcm_error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "Invalid JSON payload received.",
        );
    }
    if device.starts_with("dead") {
        return fcm_error(
            404,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        );
    }
    if device.starts_with("foreign") {
        return fcm_error(
            403,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        );
    }
    if device.starts_with("busy") && first_time {
        let mut reply = fcm_error(
            429,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded for quota metric 'Send requests'.",
        );
        reply.headers.push(("retry-after".into(), "30".into()));
        return reply;
    }
    state.sent += 1;
    Reply::json(
        200,
        json!({"name": format!("projects/{PROJECT}/messages/0:{}%31bd1c96", 1_500_415_314_455_276u64 + state.sent)}),
    )
}
