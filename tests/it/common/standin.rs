//! The stand-in servers' own runtime, on threads of its own (as xh's test server does). A test
//! blocks its thread while the tool runs (`Run::run`); the servers the tool talks to (the fault
//! proxy, the ECR, STS and Pushgateway stand-ins) keep answering, because none of them, nor any
//! client they use, lives on the test's runtime.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stand-ins")
            .enable_all()
            .build()
            .expect("the stand-ins' runtime")
    })
}

/// Runs `task` on the stand-ins' runtime, for as long as the test binary runs.
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    runtime().spawn(task);
}

/// Runs `make` on the stand-ins' runtime and hands back what it made: a kube `Client` made there
/// keeps its connection tasks there.
pub async fn made_there<T: Send + 'static>(make: impl Future<Output = T> + Send + 'static) -> T {
    runtime().spawn(make).await.expect("stand-in task")
}

/// A loopback listener registered with the stand-ins' runtime, and its `http://` URL.
pub fn listen() -> (tokio::net::TcpListener, String) {
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std.set_nonblocking(true).unwrap();
    let url = format!("http://{}", std.local_addr().unwrap());
    let _there = runtime().enter();
    (tokio::net::TcpListener::from_std(std).unwrap(), url)
}

/// Serves `answer` (given the shared `state`) on a loopback port, one request per connection,
/// until the test binary ends; returns its URL.
pub fn serve<S, F, Fut>(state: Arc<S>, answer: F) -> String
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send,
{
    let (listener, url) = listen();
    spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (state, answer) = (state.clone(), answer.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (state, answer) = (state.clone(), answer.clone());
                    async move { Ok::<_, Infallible>(answer(state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

/// A TCP server that accepts connections and never answers: an STS or ECR that hangs. Also
/// gives the number of connections so far.
pub fn blackhole() -> (String, impl Fn() -> usize) {
    let (listener, url) = listen();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, move || count.load(Ordering::SeqCst))
}
