//! The `tocsin` command's calls to a running server.

use serde_json::Value;

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
