//! The `tocsin` command's calls to a running server.

use serde_json::Value;

/// The environment variable the `tocsin` command takes its token from.
pub const TOKEN_VAR: &str = "TOCSIN_TOKEN";

/// The HTTP client of every `tocsin` command that calls a server: it sends the token in
/// `TOCSIN_TOKEN` (if set) as `Authorization: Bearer`.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var(TOKEN_VAR)
        && !token.trim().is_empty()
        && let Ok(mut value) =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
    {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// GETs `url` as JSON (see [`answer`]).
pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    answer(url, client.get(url).send().await).await
}

/// A server's answer as JSON, or a message with its status and `detail`. Transport errors are
/// shown without the URL's query (it may hold a token).
pub async fn answer(
    url: &str,
    response: reqwest::Result<reqwest::Response>,
) -> Result<Value, String> {
    let r = response.map_err(|e| format!("cannot reach {url}: {}", e.without_url()))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{status}: {}",
            body.get("detail").and_then(Value::as_str).unwrap_or("")
        ))
    }
}
