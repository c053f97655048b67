//! Errors at the API edge, mapped once to Kubernetes `Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::types::{ListMeta, Status};

/// Everything a metrics request can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed (path, selector, name).
    #[error("{0}")]
    BadRequest(String),
    /// 401: the credentials are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such metric, object or path.
    #[error("{0}")]
    NotFound(String),
    /// 500: the backend failed, or a rule cannot work.
    #[error("{0}")]
    Internal(String),
    /// 502: a server we forward to answered something we cannot pass on.
    #[error("{0}")]
    BadGateway(String),
    /// 503: the adapter cannot answer yet.
    #[error("{0}")]
    Unavailable(String),
    /// 429: too many requests in flight; the client should retry after a second.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    /// 414: the request path is longer than any this server serves.
    #[error("{0}")]
    UriTooLong(String),
    /// 504: the request did not finish within `--request-timeout`.
    #[error("Timeout: request did not complete within the allotted timeout")]
    Timeout,
}

impl ApiError {
    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `Status` object the client receives.
    pub fn to_status(&self) -> Status {
        let (reason, message) = match self {
            ApiError::BadRequest(m) => ("BadRequest", m.clone()),
            ApiError::Unauthorized(m) => ("Unauthorized", m.clone()),
            ApiError::Forbidden(m) => ("Forbidden", m.clone()),
            ApiError::NotFound(m) => ("NotFound", m.clone()),
            ApiError::Internal(m) => ("InternalError", format!("Internal error occurred: {m}")),
            // Kubernetes has no reason of its own for 502; the code says what it is.
            ApiError::BadGateway(m) => ("InternalError", m.clone()),
            ApiError::Unavailable(m) => ("ServiceUnavailable", m.clone()),
            ApiError::TooManyRequests => ("TooManyRequests", self.to_string()),
            ApiError::UriTooLong(m) => ("RequestURITooLong", m.clone()),
            ApiError::Timeout => ("Timeout", self.to_string()),
        };
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Failure",
            message,
            reason,
            code: self.status_code().as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status_code();
        if code.is_server_error() {
            tracing::warn!(code = code.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(code = code.as_u16(), error = %self, "request rejected");
        }
        let retry = matches!(self, ApiError::TooManyRequests);
        let status = self.to_status();
        let mut response = (code, axum::Json(status.clone())).into_response();
        // For the audit log's `responseStatus`, without parsing the body back.
        response.extensions_mut().insert(status);
        if retry {
            // As kube-apiserver's max-in-flight filter: clients back off and retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_kubernetes_shape() {
        let s = serde_json::to_value(
            ApiError::NotFound("the server could not find the metric m for pods".into())
                .to_status(),
        )
        .unwrap();
        assert_eq!(
            s,
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"the server could not find the metric m for pods","reason":"NotFound","code":404})
        );
        let s = ApiError::Internal("unable to fetch metrics".into()).to_status();
        assert_eq!(
            s.message,
            "Internal error occurred: unable to fetch metrics"
        );
        assert_eq!((s.reason, s.code), ("InternalError", 500));
        assert_eq!(ApiError::BadRequest("x".into()).to_status().code, 400);
        assert_eq!(
            ApiError::Unavailable("x".into()).to_status().reason,
            "ServiceUnavailable"
        );
    }
}
