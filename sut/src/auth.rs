//! Who is calling: HS256 JWT validation as production does it, or the mock-user mode for load
//! tests that bypass auth. Also mints tokens, for the harness and the tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::challenges::{IdProblem, MAX_ID_CHARS, id_problem};

/// The header that names the user when auth is disabled.
pub const MOCK_USER_HEADER: &str = "x-mock-user-id";

/// The user named when auth is disabled and no mock header is sent.
pub const DEFAULT_MOCK_USER: &str = "test-user-123";

/// How the challenge service authenticates callers.
#[derive(Clone)]
pub enum Authenticator {
    /// `Authorization: Bearer <HS256 JWT>`; `namespace` claim must equal the service's.
    Jwt {
        /// Decoding key from the shared secret.
        key: DecodingKey,
        /// The namespace tokens must carry.
        namespace: String,
    },
    /// No validation: `X-Mock-User-Id` names the user.
    Mock {
        /// The namespace callers are placed in.
        namespace: String,
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::Jwt { namespace, .. } => write!(f, "Jwt {{ namespace: {namespace} }}"),
            Authenticator::Mock { namespace } => write!(f, "Mock {{ namespace: {namespace} }}"),
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id (`sub`).
    pub user_id: String,
    /// The caller's namespace.
    pub namespace: String,
}

/// Why a request is not authenticated. Maps to 401 (`Missing`, `Malformed`) or 403 (`Rejected`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    Missing,
    /// The header is not `Bearer <token>`, or the token is not a JWT at all.
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    /// A well-formed token that is not acceptable (signature, expiry, namespace).
    #[error("token rejected: {0}")]
    Rejected(String),
}

/// The claims the harness mints (the service reads `sub`, `namespace` and `exp`; `iat` is
/// optional, as in JWT).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's namespace.
    pub namespace: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
}

impl Authenticator {
    /// JWT mode with an HS256 shared secret.
    pub fn jwt(secret: &[u8], namespace: &str) -> Self {
        Authenticator::Jwt { key: DecodingKey::from_secret(secret), namespace: namespace.to_owned() }
    }

    /// Authenticates a request from its headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        match self {
            Authenticator::Mock { namespace } => {
                let user_id = headers
                    .get(MOCK_USER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .unwrap_or(DEFAULT_MOCK_USER);
                if let Some(problem) = user_id_problem(user_id) {
                    return Err(AuthError::Malformed(format!("{MOCK_USER_HEADER}: {problem}")));
                }
                Ok(Caller { user_id: user_id.to_owned(), namespace: namespace.clone() })
            }
            Authenticator::Jwt { key, namespace } => {
                let token = bearer_token(headers)?;
                let claims = decode(token, key)?;
                let sub = match claims.get("sub") {
                    Some(serde_json::Value::String(sub)) => sub,
                    Some(other) => return Err(AuthError::Rejected(format!("claim sub is {other}, not a string"))),
                    None => return Err(AuthError::Rejected("claim sub is missing".into())),
                };
                if let Some(problem) = user_id_problem(sub) {
                    return Err(AuthError::Rejected(format!("claim sub: {problem}")));
                }
                match claims.get("namespace") {
                    Some(serde_json::Value::String(ns)) if ns == namespace => {}
                    Some(other) => {
                        return Err(AuthError::Rejected(format!("claim namespace {other} is not '{namespace}'")));
                    }
                    None => return Err(AuthError::Rejected("claim namespace is missing".into())),
                }
                Ok(Caller { user_id: sub.clone(), namespace: namespace.clone() })
            }
        }
    }
}

/// Why `user_id` cannot name a user: what the schema cannot store (empty, over 100 characters, a
/// control character), or `.`/`..`, which no URL can carry as a path segment.
fn user_id_problem(user_id: &str) -> Option<String> {
    match id_problem(user_id) {
        _ if user_id.is_empty() => Some("the user id is empty".into()),
        _ if matches!(user_id, "." | "..") => Some(format!("'{user_id}' cannot be a user id")),
        Some(IdProblem::TooLong(chars)) => {
            Some(format!("the user id has {chars} characters; at most {MAX_ID_CHARS} are stored"))
        }
        Some(IdProblem::Control(c)) => {
            Some(format!("the user id contains the control character U+{:04X}", u32::from(c)))
        }
        None => None,
    }
}

/// The warning a service with auth disabled (`mock`) gives when it listens beyond loopback:
/// anyone who can reach it can then act as any user.
pub fn exposure_warning(mock_auth: bool, host: &str) -> Option<String> {
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (mock_auth && !loopback).then(|| {
        format!(
            "auth is disabled (--auth-mode mock) and the service listens on {host}, beyond loopback: \
             anyone who reaches it can act as any user by sending {MOCK_USER_HEADER}"
        )
    })
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("not visible ASCII".into()))?;
    let (scheme, token) =
        value.split_once(' ').ok_or_else(|| AuthError::Malformed("expected 'Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed("expected 'Bearer <token>'".into()));
    }
    Ok(token.trim())
}

/// Verifies the token's signature and expiry; its claims as a JSON object. A token that is not
/// three base64url parts with a JSON header is malformed (401); any other failure, or a correctly
/// signed token whose claims are unusable, is a rejected token (403).
fn decode(token: &str, key: &DecodingKey) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
    if token.split('.').count() != 3 {
        return Err(AuthError::Malformed("not a JWT: expected three dot-separated parts".into()));
    }
    jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(format!("not a JWT: {e}")))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::MissingRequiredClaim(claim) => {
                AuthError::Rejected(format!("claim {claim} is missing or not a number of seconds"))
            }
            ErrorKind::Json(_) => {
                AuthError::Rejected(format!("the token's claims do not have the expected shape: {e}"))
            }
            _ => AuthError::Rejected(e.to_string()),
        })
}

/// Mints an HS256 token for `user_id` in `namespace`, valid for `ttl`.
pub fn mint_token(secret: &[u8], user_id: &str, namespace: &str, ttl: Duration) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    mint_token_with_expiry(secret, user_id, namespace, now + ttl.as_secs())
}

/// Mints an HS256 token with an explicit expiry (seconds since the epoch), e.g. one in the past.
pub fn mint_token_with_expiry(secret: &[u8], user_id: &str, namespace: &str, exp: u64) -> String {
    let claims =
        Claims { sub: user_id.to_owned(), namespace: namespace.to_owned(), exp, iat: exp.saturating_sub(3600) };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .expect("HS256 encoding of plain claims cannot fail")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers_with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn jwt_mode_distinguishes_missing_malformed_and_rejected() {
        let auth = Authenticator::jwt(b"secret", "test");
        assert_eq!(auth.authenticate(&HeaderMap::new()), Err(AuthError::Missing));
        assert!(matches!(auth.authenticate(&headers_with("Basic abc")), Err(AuthError::Malformed(_))));
        assert!(matches!(auth.authenticate(&headers_with("Bearer garbage")), Err(AuthError::Malformed(_))));
        let forged = mint_token(b"other", "u1", "test", Duration::from_secs(60));
        assert!(matches!(auth.authenticate(&headers_with(&format!("Bearer {forged}"))), Err(AuthError::Rejected(_))));
        let expired = mint_token_with_expiry(b"secret", "u1", "test", 1_000);
        assert!(matches!(auth.authenticate(&headers_with(&format!("Bearer {expired}"))), Err(AuthError::Rejected(_))));
        let elsewhere = mint_token(b"secret", "u1", "prod", Duration::from_secs(60));
        assert!(matches!(
            auth.authenticate(&headers_with(&format!("Bearer {elsewhere}"))),
            Err(AuthError::Rejected(_))
        ));
        let good = mint_token(b"secret", "u1", "test", Duration::from_secs(60));
        assert_eq!(
            auth.authenticate(&headers_with(&format!("Bearer {good}"))).unwrap(),
            Caller { user_id: "u1".into(), namespace: "test".into() }
        );
    }

    fn signed(claims: &serde_json::Value) -> HeaderMap {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"secret"))
            .unwrap();
        headers_with(&format!("Bearer {token}"))
    }

    fn in_an_hour() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600
    }

    #[test]
    fn a_correctly_signed_token_needs_no_iat() {
        let auth = Authenticator::jwt(b"secret", "test");
        let caller = auth.authenticate(&signed(&json!({"sub": "u1", "namespace": "test", "exp": in_an_hour()})));
        assert_eq!(caller, Ok(Caller { user_id: "u1".into(), namespace: "test".into() }));
    }

    #[test]
    fn correctly_signed_tokens_with_unusable_claims_are_rejected_not_malformed() {
        let auth = Authenticator::jwt(b"secret", "test");
        let exp = in_an_hour();
        for (claims, names) in [
            (json!({"sub": "u1", "exp": exp}), "namespace"),
            (json!({"sub": "u1", "namespace": 7, "exp": exp}), "namespace"),
            (json!({"sub": 42, "namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": ["u1"], "namespace": "test", "exp": exp}), "claims"),
            (json!({"namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": "", "namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": "u\u{0}1", "namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": "x".repeat(101), "namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": "..", "namespace": "test", "exp": exp}), "sub"),
            (json!({"sub": "u1", "namespace": "test"}), "exp"),
            (json!({"sub": "u1", "namespace": "test", "exp": "tomorrow"}), "exp"),
        ] {
            match auth.authenticate(&signed(&claims)) {
                Err(AuthError::Rejected(why)) => assert!(why.contains(names), "{claims}: {why}"),
                other => panic!("{claims}: {other:?}"),
            }
        }
    }

    #[test]
    fn mock_mode_refuses_user_ids_the_schema_cannot_store() {
        let auth = Authenticator::Mock { namespace: "test".into() };
        let mut headers = HeaderMap::new();
        headers.insert(MOCK_USER_HEADER, "x".repeat(101).parse().unwrap());
        assert!(matches!(auth.authenticate(&headers), Err(AuthError::Malformed(why)) if why.contains("101")));
        headers.insert(MOCK_USER_HEADER, "a\tb".parse().unwrap());
        assert!(matches!(auth.authenticate(&headers), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn mock_auth_warns_when_the_service_listens_beyond_loopback() {
        assert_eq!(exposure_warning(true, "127.0.0.1"), None);
        assert_eq!(exposure_warning(true, "localhost"), None);
        assert_eq!(exposure_warning(true, "::1"), None);
        assert_eq!(exposure_warning(false, "0.0.0.0"), None);
        for host in ["0.0.0.0", "10.1.2.3", "::", "example.com"] {
            assert!(exposure_warning(true, host).is_some_and(|w| w.contains(host)), "{host}");
        }
    }

    #[test]
    fn mock_mode_reads_the_header_or_falls_back_to_the_default_user() {
        let auth = Authenticator::Mock { namespace: "test".into() };
        assert_eq!(auth.authenticate(&HeaderMap::new()).unwrap().user_id, DEFAULT_MOCK_USER);
        let mut headers = HeaderMap::new();
        headers.insert(MOCK_USER_HEADER, "user-000042".parse().unwrap());
        assert_eq!(auth.authenticate(&headers).unwrap().user_id, "user-000042");
    }
}
