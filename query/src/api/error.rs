//! The API's single error type and its single mapping to HTTP status and JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::reader::QueryError;

/// Every way a request can fail. [`IntoResponse`] is the one place that maps errors to
/// HTTP statuses; bodies are `{"error": "<kind>", "reason": "<why>"}` for 4xx and
/// `{"error": "internal error"}` for 5xx (the detail only goes to the log).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed or out-of-range parameter (400, `"bad request"`).
    #[error("{0}")]
    BadRequest(String),
    /// The `q` query string does not parse (400, `"invalid query"`).
    #[error("{0}")]
    InvalidQuery(String),
    /// No such route (404, `"not found"`).
    #[error("no such endpoint")]
    NotFound,
    /// A server-side failure (500); the detail is logged, never returned.
    #[error("{0}")]
    Internal(String),
    /// The request took longer than the server allows (503, `"unavailable"`).
    #[error("the request timed out")]
    Timeout,
    /// The request body is larger than allowed (413, `"payload too large"`).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The route exists but not for this method (405, `"method not allowed"`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// API tokens are configured and the request has no valid `Authorization: Bearer`
    /// token (401, `"unauthorized"`, with `WWW-Authenticate: Bearer`).
    #[error("a valid API token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The server is shedding load to protect something that must not fall behind (503,
    /// `"unavailable"`, with `Retry-After: 1`); the string says what, for the client.
    #[error("{0}; retry shortly")]
    Busy(&'static str),
}

impl ApiError {
    /// The error for a bare status produced by a tower layer or the router (timeout, body
    /// limit, wrong method), so those responses get the same JSON shape.
    pub fn from_layer_status(status: StatusCode) -> Option<Self> {
        Some(match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            _ => return None,
        })
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidQuery(reason) => ApiError::InvalidQuery(reason),
            e @ QueryError::InvalidParameter { .. } => ApiError::BadRequest(e.to_string()),
            QueryError::Index(e) => ApiError::Internal(format!("index: {e}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid query"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            ApiError::Timeout | ApiError::Busy(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload too large"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        let reason = if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "request failed");
            None
        } else {
            Some(self.to_string())
        };
        let mut resp = (status, Json(ErrorBody { error, reason })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(self, ApiError::Busy(_)) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, String) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn status_map_and_no_leak_in_5xx() {
        assert_eq!(
            body(ApiError::Internal("disk /var/lib/x exploded".into())).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"internal error"}"#.to_string()
            )
        );
        assert_eq!(
            body(ApiError::BadRequest("limit too big".into())).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"error":"bad request","reason":"limit too big"}"#.to_string()
            )
        );
        let idx = QueryError::Index(tantivy::TantivyError::InternalError("secret".into()));
        let (status, text) = body(idx.into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!text.contains("secret"));
    }
}
