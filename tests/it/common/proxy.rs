//! A plain-HTTP proxy in front of the real kube-apiserver that injects the faults
//! `fault.rs` describes: status codes, hangs, a concurrent write, a late answer.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kube::Client;

use super::fault::{Fault, Rule};
use super::standin;

pub struct FaultProxy {
    pub url: String,
    log: Arc<Mutex<Vec<(String, String, u16)>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

/// A request as the proxy forwarded it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: String,
}

impl FaultProxy {
    /// A proxy that forwards everything: it only records what went by.
    pub async fn forwarding() -> Self {
        Self::start(|_, _, _| Fault::Forward).await
    }

    /// A proxy that asks `rule` what to do with each request. It runs on the stand-ins'
    /// runtime, with an admin client of its own made there (see `standin.rs`).
    pub async fn start(rule: impl Fn(&str, &str, usize) -> Fault + Send + Sync + 'static) -> Self {
        let upstream = standin::made_there(super::cluster::admin()).await;
        let (listener, url) = standin::listen();
        let rule: Arc<Rule> = Arc::new(rule);
        let log: Arc<Mutex<Vec<(String, String, u16)>>> = Arc::default();
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (log2, sent2) = (log.clone(), sent.clone());
        standin::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, rule, log, sent, seen) = (
                    upstream.clone(),
                    rule.clone(),
                    log2.clone(),
                    sent2.clone(),
                    seen.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (upstream, rule, log, sent, seen) = (
                            upstream.clone(),
                            rule.clone(),
                            log.clone(),
                            sent.clone(),
                            seen.clone(),
                        );
                        async move {
                            Ok::<_, Infallible>(
                                handle(req, upstream, &*rule, log, sent, seen).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, log, sent }
    }

    /// Every request forwarded to the server, with its content type and body.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// (method, path, status) of every request seen, in order.
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.log.lock().unwrap().clone()
    }

    /// A kubeconfig (in `dir`) that points at the proxy.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("proxy-kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: unused\ncontexts:\n- name: p\n  context: {{cluster: p, user: u}}\ncurrent-context: p\n",
                self.url
            ),
        )
        .unwrap();
        path
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: Client,
    rule: &Rule,
    log: Arc<Mutex<Vec<(String, String, u16)>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let n = {
        let mut seen = seen.lock().unwrap();
        let n = seen
            .iter()
            .filter(|(m, p)| *m == method && *p == path)
            .count();
        seen.push((method.clone(), path.clone()));
        n
    };
    let record = |code: u16| {
        log.lock()
            .unwrap()
            .push((method.clone(), path.clone(), code))
    };
    let mut hold = None;
    match rule(&method, &path, n) {
        Fault::Forward => {}
        Fault::SlowAnswer(d) => hold = Some(d),
        Fault::Before(f) => f(upstream.clone()).await,
        Fault::Hang => {
            record(0);
            std::future::pending::<()>().await;
        }
        Fault::Garbage => {
            record(200);
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{not json")))
                .unwrap();
        }
        Fault::Status { code, retry_after } => {
            record(code);
            let reason = if code == 429 {
                "TooManyRequests"
            } else {
                "InternalError"
            };
            let details = retry_after.map_or(String::new(), |s| {
                format!(r#","details":{{"retryAfterSeconds":{s}}}"#)
            });
            let body = format!(
                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected {code}","reason":"{reason}","code":{code}{details}}}"#
            );
            let mut resp = Response::builder()
                .status(code)
                .header("content-type", "application/json");
            if let Some(s) = retry_after {
                resp = resp.header("retry-after", s.to_string());
            }
            return resp.body(Full::new(Bytes::from(body))).unwrap();
        }
    }
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    sent.lock().unwrap().push(Sent {
        method: method.clone(),
        path: path.clone(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let mut fwd = http::Request::builder().method(parts.method).uri(parts.uri);
    for (k, v) in &parts.headers {
        if k != http::header::AUTHORIZATION && k != http::header::HOST {
            fwd = fwd.header(k, v);
        }
    }
    let fwd = fwd.body(kube::client::Body::from(bytes.to_vec())).unwrap();
    match upstream.send(fwd).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            record(parts.status.as_u16());
            let bytes = body.collect_bytes().await.unwrap_or_default();
            if let Some(d) = hold {
                tokio::time::sleep(d).await;
            }
            let mut out = Response::builder().status(parts.status);
            for (k, v) in &parts.headers {
                if k != http::header::TRANSFER_ENCODING && k != http::header::CONTENT_LENGTH {
                    out = out.header(k, v);
                }
            }
            out.body(Full::new(bytes)).unwrap()
        }
        Err(e) => {
            record(502);
            Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap()
        }
    }
}
