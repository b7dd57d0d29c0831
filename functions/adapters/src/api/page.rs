//! The Alerts page: one HTML document with its styles and script inline, built into the binary
//! (nothing is loaded from elsewhere), served by the same router in every deployment. It reads
//! and acts through the documented API only.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, as shipped.
pub const ALERTS_PAGE: &str = include_str!("../../assets/alerts.html");

/// `GET /` and `GET /alerts`.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        ALERTS_PAGE,
    )
}
