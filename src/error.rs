//! The one error type HTTP handlers return. Each variant maps to a status and a short JSON body;
//! internal causes are logged with the request's span and never sent to the client.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not in the one format the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many attempts from this person or address; the response carries `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        retry_after_secs: u64,
        message: String,
    },
    /// A passing failure whose message tells the person what to do (nothing was used up).
    #[error("{0}")]
    TryAgain(String),
    /// A failure no retry fixes until an admin acts (a provider refusing Passkey's credentials);
    /// the message tells the person to contact one.
    #[error("{0}")]
    NeedsAdmin(String),
    #[error("service unavailable")]
    Unavailable(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TryAgain(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NeedsAdmin(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::TryAgain(_) => "try_again",
            ApiError::NeedsAdmin(_) => "contact_admin",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// 429: too many attempts; try again in `retry_after_secs`.
    pub fn too_many(retry_after_secs: u64) -> Self {
        ApiError::TooManyRequests {
            retry_after_secs,
            message: format!("Too many attempts. Try again in {retry_after_secs} seconds."),
        }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound,
            StoreError::StatusConflict { .. }
            | StoreError::IllegalTransition(_)
            | StoreError::Conflict(_)
            | StoreError::Refused(_) => ApiError::Conflict(e.to_string()),
            StoreError::Unavailable(_) => ApiError::Unavailable(Some(Box::new(e))),
            StoreError::Invalid(_) | StoreError::Database(_) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?std::error::Error::source(&**cause), "request failed")
            }
            ApiError::Unavailable(Some(cause)) => {
                tracing::warn!(error = %cause, "dependency unavailable")
            }
            _ => tracing::debug!(status = status.as_u16(), error = %self, "request refused"),
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_hide_their_cause_from_the_client() {
        let err = ApiError::internal(std::io::Error::other(
            "password authentication failed for user app",
        ));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"code":"internal","message":"internal error"}}"#
        );
    }

    #[test]
    fn store_errors_map_to_the_statuses_a_client_can_act_on() {
        use crate::domain::RequestStatus;
        let conflict = StoreError::StatusConflict {
            request_id: 7,
            expected: RequestStatus::Pending,
            actual: RequestStatus::Approved,
        };
        let api: ApiError = conflict.into();
        assert_eq!(api.status(), StatusCode::CONFLICT);
        assert_eq!(api.to_string(), "request 7 is APPROVED, not PENDING");
        assert_eq!(
            ApiError::from(StoreError::NotFound("request")).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(StoreError::Unavailable(sqlx::Error::PoolTimedOut)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_database_out_of_reach_is_a_503_teams_retries_not_a_500() {
        let unreachable = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        ];
        for e in unreachable {
            let what = e.to_string();
            let api = ApiError::from(StoreError::from(e));
            assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        }
        let api = ApiError::from(StoreError::from(sqlx::Error::RowNotFound));
        assert_ne!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
        let api = ApiError::from(StoreError::from(sqlx::Error::Protocol("bad row".into())));
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
