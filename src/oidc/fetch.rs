//! Fetching a published document as IAM does: HTTPS GET, certificate checked against the
//! system's CAs (SSL_CERT_FILE / SSL_CERT_DIR add a private one), JSON expected.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use serde_json::Value;

/// Far above any discovery document or JWKS; a bigger answer is not one.
const MAX_BODY: usize = 1 << 20;

/// GETs `url` over HTTPS and parses the body as JSON, within `timeout`.
pub(crate) async fn json(url: &str, timeout: Duration) -> Result<Value, String> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn get(url: &str) -> Result<Value, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no CA certificates: {e}"))?
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(https);
    let request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| crate::error::chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}
