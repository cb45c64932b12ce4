//! An ECR stand-in whose answers a test controls (moto's token always expired in 2015, and it
//! never returns a malformed token). An HTTP/1.1 server (hyper, as in `proxy.rs`) that answers
//! every request as GetAuthorizationToken.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::standin::serve;

pub struct FakeEcr {
    pub url: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    calls: AtomicUsize,
    body: Mutex<String>,
    /// (region, access key id) from each request's SigV4 Authorization header.
    signed: Mutex<Vec<(String, String)>>,
}

impl FakeEcr {
    /// Answers every GetAuthorizationToken with `body` (a JSON document).
    pub async fn start(body: String) -> Self {
        let state = Arc::new(State {
            body: Mutex::new(body),
            ..State::default()
        });
        let url = serve(state.clone(), |s, req| async move { s.answer(req).await });
        Self { url, state }
    }

    /// A well-formed answer for `AWS:<password>` expiring at `expires_at` (Unix seconds).
    pub fn token_body(password: &str, expires_at: i64, account: &str, region: &str) -> String {
        let endpoint = format!("https://{account}.dkr.ecr.{region}.amazonaws.com");
        Self::answer(password, expires_at, &endpoint)
    }

    /// A well-formed token for `AWS:<password>` with any `proxyEndpoint` (a JSON string).
    pub fn answer(password: &str, expires_at: i64, proxy_endpoint: &str) -> String {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
        serde_json::json!({"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": expires_at,
            "proxyEndpoint": proxy_endpoint,
        }]})
        .to_string()
    }

    /// [`token_body`](Self::token_body) for the test account and region, valid for 12 hours
    /// from now, as real ECR answers.
    pub fn valid_for_12h(password: &str) -> String {
        let expires_at = jiff::Timestamp::now().as_second() + 12 * 3600;
        Self::token_body(password, expires_at, super::ACCOUNT, super::REGION)
    }

    pub fn set_body(&self, body: String) {
        *self.state.body.lock().unwrap() = body;
    }

    /// (region, access key id) of every call so far.
    pub fn signed(&self) -> Vec<(String, String)> {
        self.state.signed.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Counts calls like [`calls`](Self::calls), for use where `self` cannot be borrowed.
    pub fn call_counter(&self) -> impl Fn() -> usize + Clone + Send + Sync + 'static {
        let state = self.state.clone();
        move || state.calls.load(Ordering::SeqCst)
    }
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        // Credential=<key>/<date>/<region>/ecr/aws4_request
        let credential = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .map(|c| c.split('/').map(str::to_string).collect::<Vec<_>>());
        if let Some([key, _date, region, ..]) = credential.as_deref() {
            self.signed
                .lock()
                .unwrap()
                .push((region.clone(), key.clone()));
        }
        // The whole request is read before the answer, as a real server does.
        let _ = req.into_body().collect().await;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let body = self.body.lock().unwrap().clone();
        Response::builder()
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amzn-requestid", "fake")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }
}
