//! The challenge service's one error type and its HTTP mapping. Bodies follow the production
//! gateway's shape `{"code": <gRPC code>, "message": "…", "details": []}`; the details of 5xx
//! errors are logged, never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::events::store::StoreError;
use crate::reward::GrantError;

/// Everything a REST request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or garbled `Authorization` header.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A token that is not acceptable.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A request the API cannot read (a path segment that is not UTF-8, say).
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown challenge or goal, a goal not in that challenge, or no such route.
    #[error("{0}")]
    NotFound(String),
    /// A route that exists, called with another method.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// The request took longer than the server's request timeout.
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// Goal not completed, or prerequisites not met.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Goal already claimed.
    #[error("{0}")]
    AlreadyClaimed(String),
    /// The reward platform failed or was too slow.
    #[error("reward grant failed")]
    RewardGrant(#[from] GrantError),
    /// The database is unreachable.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// Anything else.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            ApiError::DatabaseUnavailable(error)
        } else {
            ApiError::Internal(error.into())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => ApiError::DatabaseUnavailable(e),
            StoreError::Rejected(e) | StoreError::Failed(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Malformed(_) => ApiError::Unauthenticated(error.to_string()),
            AuthError::Rejected(_) => ApiError::PermissionDenied(error.to_string()),
        }
    }
}

/// gRPC status codes used in error bodies.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

impl ApiError {
    /// The HTTP status and gRPC code of this error.
    pub fn status(&self) -> (StatusCode, i32) {
        match self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED),
            ApiError::PermissionDenied(_) => (StatusCode::FORBIDDEN, code::PERMISSION_DENIED),
            ApiError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, code::NOT_FOUND),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, code::UNIMPLEMENTED),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, code::DEADLINE_EXCEEDED),
            ApiError::FailedPrecondition(_) => (StatusCode::BAD_REQUEST, code::FAILED_PRECONDITION),
            ApiError::AlreadyClaimed(_) => (StatusCode::CONFLICT, code::ALREADY_EXISTS),
            ApiError::RewardGrant(_) => (StatusCode::BAD_GATEWAY, code::INTERNAL),
            ApiError::DatabaseUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            // The chain (reward platform body, SQL error) is for operators, not callers.
            tracing::error!(error = ?self, "request failed");
        }
        (status, Json(json!({"code": code, "message": self.to_string(), "details": []}))).into_response()
    }
}
