//! RFC 9457 problem details: the one error shape of the HTTP API, with
//! stable `type` values, and the mapping from port errors and from poem's
//! own request errors.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use tollgate_ports::api::ApiError;
use tollgate_ports::inbound::LoginError;

/// The `WWW-Authenticate` challenge of a 401.
const CHALLENGE: &str = "Bearer realm=\"tollgate\", Basic realm=\"tollgate\"";

/// The prefix of every problem `type`.
pub(crate) const TYPE_PREFIX: &str = "urn:tollgate:problem:";

/// An RFC 9457 problem. `type` is one of `urn:tollgate:problem:` followed by
/// `bad-request`, `unauthorized`, `forbidden`, `not-found`,
/// `method-not-allowed`, `conflict`, `precondition-failed`,
/// `payload-too-large`, `unsupported-media-type`, `range-not-satisfiable`,
/// `not-implemented`, `insufficient-storage`, `unavailable` or `internal`.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Problem")]
pub(crate) struct ProblemDetails {
    /// A stable URI naming the kind of problem.
    #[oai(rename = "type")]
    pub(crate) kind: String,
    /// A short summary of the kind.
    pub(crate) title: String,
    /// The HTTP status code.
    pub(crate) status: u16,
    /// What went wrong with this request.
    pub(crate) detail: String,
    /// For `precondition-failed`: the resource's current version.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) current_version: Option<u64>,
}

/// Every error answer of the API.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "from_request_error")]
pub(crate) enum Problem {
    /// The request is malformed or invalid.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<ProblemDetails>),
    /// No valid credentials.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<ProblemDetails>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The credentials do not allow this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<ProblemDetails>),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<ProblemDetails>),
    /// The resource exists or its state does not allow the change.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<ProblemDetails>),
    /// `If-Match` names another version than the current one.
    #[oai(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Json<ProblemDetails>),
    /// The body is larger than the server accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<ProblemDetails>),
    /// The body's media type is not accepted.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<ProblemDetails>),
    /// The requested range is outside the file.
    #[oai(status = 416, content_type = "application/problem+json")]
    RangeNotSatisfiable(
        Json<ProblemDetails>,
        #[oai(header = "Content-Range")] String,
    ),
    /// The server failed; the cause was logged.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<ProblemDetails>),
    /// The operation is not supported by the storage.
    #[oai(status = 501, content_type = "application/problem+json")]
    NotImplemented(Json<ProblemDetails>),
    /// The server cannot answer now.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<ProblemDetails>),
    /// The user's quota is exhausted.
    #[oai(status = 507, content_type = "application/problem+json")]
    InsufficientStorage(Json<ProblemDetails>),
}

pub(crate) fn details(status: StatusCode, detail: impl Into<String>) -> ProblemDetails {
    let (slug, title) = slug(status);
    ProblemDetails {
        kind: format!("{TYPE_PREFIX}{slug}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail: detail.into(),
        current_version: None,
    }
}

pub(crate) fn slug(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad-request", "Bad request"),
        401 => ("unauthorized", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        409 => ("conflict", "Conflict"),
        412 => ("precondition-failed", "Precondition failed"),
        413 => ("payload-too-large", "Payload too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        416 => ("range-not-satisfiable", "Range not satisfiable"),
        501 => ("not-implemented", "Not implemented"),
        507 => ("insufficient-storage", "Insufficient storage"),
        503 => ("unavailable", "Service unavailable"),
        _ if status.is_client_error() => ("bad-request", "Bad request"),
        _ => ("internal", "Internal error"),
    }
}

impl Problem {
    pub(crate) fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::BadRequest(Json(details(StatusCode::BAD_REQUEST, detail)))
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::Unauthorized(
            Json(details(StatusCode::UNAUTHORIZED, detail)),
            CHALLENGE.to_string(),
        )
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Problem {
        Problem::NotFound(Json(details(StatusCode::NOT_FOUND, detail)))
    }
}

impl From<ApiError> for Problem {
    fn from(err: ApiError) -> Problem {
        let detail = err.to_string();
        match err {
            ApiError::Invalid(_) => Problem::bad_request(detail),
            ApiError::Forbidden(_) => {
                Problem::Forbidden(Json(details(StatusCode::FORBIDDEN, detail)))
            }
            ApiError::NotFound(_) => Problem::not_found(detail),
            ApiError::Conflict(_) => Problem::Conflict(Json(details(StatusCode::CONFLICT, detail))),
            ApiError::VersionMismatch { current } => {
                let mut body = details(StatusCode::PRECONDITION_FAILED, detail);
                body.current_version = Some(current);
                Problem::PreconditionFailed(Json(body))
            }
            ApiError::Unavailable => {
                Problem::Unavailable(Json(details(StatusCode::SERVICE_UNAVAILABLE, detail)))
            }
        }
    }
}

impl From<LoginError> for Problem {
    fn from(err: LoginError) -> Problem {
        match err {
            LoginError::Denied | LoginError::SecondFactorRequired => {
                Problem::unauthorized("the credentials were not accepted")
            }
            LoginError::Unavailable => Problem::Unavailable(Json(details(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication is unavailable",
            ))),
        }
    }
}

/// Turns poem-openapi's request errors (bad JSON, unknown fields, wrong
/// types, bad parameters, missing credentials) into problems.
fn from_request_error(err: poem::Error) -> Problem {
    let status = err.status();
    let detail = err.to_string();
    match status {
        StatusCode::UNAUTHORIZED => Problem::unauthorized(detail),
        StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::PayloadTooLarge(Json(details(StatusCode::PAYLOAD_TOO_LARGE, detail)))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Problem::UnsupportedMediaType(Json(details(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail)))
        }
        _ => Problem::bad_request(detail),
    }
}

/// The response for an error that did not come from an API operation
/// (unknown route, wrong method, oversize body).
pub(crate) fn response_for(err: poem::Error) -> poem::Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let detail = if status.is_server_error() {
        tracing::error!(error = %err, "an HTTP request failed");
        "the server failed to answer; the cause was logged".to_string()
    } else {
        err.to_string()
    };
    let body = details(status, detail);
    let json = serde_json::json!({
        "type": body.kind,
        "title": body.title,
        "status": body.status,
        "detail": body.detail,
    });
    let mut res = poem::Response::builder()
        .status(status)
        .content_type("application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        res = res.header(poem::http::header::WWW_AUTHENTICATE, CHALLENGE);
    }
    res.body(json.to_string())
}
