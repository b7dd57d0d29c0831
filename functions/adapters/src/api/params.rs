//! Query parameters, read one way for every listing: a time, a count, a value of the model's
//! vocabulary, each refused with a `detail` that names the parameter.

use axum::http::StatusCode;
use tocsin_core::model::Timestamp;

use super::ApiError;

fn bad(status: StatusCode, msg: String) -> ApiError {
    ApiError::new(status, msg)
}

/// A value of the model's vocabulary (a severity, an event kind): 422 when it is not one.
pub fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e: T::Err| {
        bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid `{name}`: {e}"),
        )
    })
}

/// An ISO-8601 time.
pub fn time(name: &str, v: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(v).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("Invalid `{name}` `{v}`: expected an ISO-8601 time"),
        )
    })
}

/// An ISO-8601 time, or a span back from `now` (`7d`, `90m`).
pub fn moment(name: &str, v: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    Timestamp::parse_or_ago(v, now).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("Invalid `{name}` `{v}`: expected an ISO-8601 time or a span back from now, such as 7d"),
        )
    })
}

/// A whole number.
pub fn count(name: &str, v: &str) -> Result<usize, ApiError> {
    v.parse().map_err(|_| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("Invalid `{name}` `{v}`: expected a whole number"),
        )
    })
}
