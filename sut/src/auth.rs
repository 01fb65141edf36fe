//! Who is calling: HS256 JWT validation as production does it, or the mock-user mode for load
//! tests that bypass auth. Also mints tokens, for the harness and the tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

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

/// The claims the service reads and the harness mints.
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
                Ok(Caller { user_id: user_id.to_owned(), namespace: namespace.clone() })
            }
            Authenticator::Jwt { key, namespace } => {
                let token = bearer_token(headers)?;
                let claims = decode(token, key)?;
                if claims.namespace != *namespace {
                    return Err(AuthError::Rejected(format!("namespace '{}' is not '{namespace}'", claims.namespace)));
                }
                if claims.sub.is_empty() {
                    return Err(AuthError::Rejected("empty subject".into()));
                }
                Ok(Caller { user_id: claims.sub, namespace: claims.namespace })
            }
        }
    }
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

fn decode(token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, key, &validation).map(|data| data.claims).map_err(|e| match e.kind() {
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed(format!("not a JWT: {e}"))
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

    #[test]
    fn mock_mode_reads_the_header_or_falls_back_to_the_default_user() {
        let auth = Authenticator::Mock { namespace: "test".into() };
        assert_eq!(auth.authenticate(&HeaderMap::new()).unwrap().user_id, DEFAULT_MOCK_USER);
        let mut headers = HeaderMap::new();
        headers.insert(MOCK_USER_HEADER, "user-000042".parse().unwrap());
        assert_eq!(auth.authenticate(&headers).unwrap().user_id, "user-000042");
    }
}
