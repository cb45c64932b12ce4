//! An ECR stand-in whose answers a test controls (moto's token always expired in 2015, and it
//! never returns a malformed token). Speaks just enough HTTP/1.1 for the AWS SDK.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct FakeEcr {
    pub url: String,
    calls: Arc<AtomicUsize>,
    body: Arc<Mutex<String>>,
    /// (region, access key id) from each request's SigV4 Authorization header.
    signed: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeEcr {
    /// Answers every GetAuthorizationToken with `body` (a JSON document).
    pub async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(body));
        let signed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (c, b, sg) = (calls.clone(), body.clone(), signed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (c, b, sg) = (c.clone(), b.clone(), sg.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers, then the body by Content-Length.
                    let header_end = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < header_end + len {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    // Credential=<key>/<date>/<region>/ecr/aws4_request
                    if let Some(cred) = head.split("credential=").nth(1) {
                        let parts: Vec<&str> = cred.split('/').collect();
                        if parts.len() > 2 {
                            sg.lock()
                                .unwrap()
                                .push((parts[2].to_string(), parts[0].to_ascii_uppercase()));
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    let body = b.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: fake\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            url,
            calls,
            body,
            signed,
        }
    }

    /// A well-formed answer for `AWS:<password>` expiring at `expires_at` (Unix seconds).
    pub fn token_body(password: &str, expires_at: i64, account: &str, region: &str) -> String {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
        format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires_at},"proxyEndpoint":"https://{account}.dkr.ecr.{region}.amazonaws.com"}}]}}"#
        )
    }

    pub fn set_body(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    /// (region, access key id) of every call so far.
    pub fn signed(&self) -> Vec<(String, String)> {
        self.signed.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}
