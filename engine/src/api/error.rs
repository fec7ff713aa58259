//! The API's error type and its JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.
//! Internal details are logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::cloudevent::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON of the expected shape (400).
    #[error("{0}")]
    BadRequest(String),
    /// A query parameter could not be parsed (400); names the parameter.
    #[error("{0}")]
    BadQuery(FieldError),
    /// A field broke a rule (422), or names something that does not exist.
    #[error("{0}")]
    Invalid(FieldError),
    /// A referenced resource does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The body's media type is not one this route takes (415).
    #[error("{0}")]
    UnsupportedMediaType(FieldError),
    /// The body is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// Our fault (500): logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store is overloaded or shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// The request conflicts with the object's state (409).
    #[error("{0}")]
    Conflict(String),
    /// No API key, or one that is not valid (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The key is valid but its scope does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The route exists but not with this method (405).
    #[error("this route does not take that method")]
    MethodNotAllowed,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(FieldError {
            field: field.into(),
            message: message.into(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Busy(m) => ApiError::Unavailable(format!(
                "the engine cannot keep up ({m}); nothing was stored, try again shortly"
            )),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            // A deadlock or conflict between processes, broken by failing
            // this request's transaction: nothing was stored, try again.
            other if other.is_transient() => ApiError::Unavailable(format!(
                "the store could not complete this now ({other}); nothing was stored, try again shortly"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        if e.field == "body" {
            ApiError::BadRequest(e.to_string())
        } else if e.field == "content-type" {
            ApiError::UnsupportedMediaType(e)
        } else {
            ApiError::Invalid(e)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::BadQuery(e) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(e.field.clone()),
            ),
            ApiError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some(e.field.clone()),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::UnsupportedMediaType(e) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Some(e.field.clone()),
            ),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
        };
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error answering a request");
                "something went wrong; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code, "message": message });
        if let Some(field) = field {
            error["field"] = field.into();
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Overload and shutdown pass quickly; say when to come back.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
