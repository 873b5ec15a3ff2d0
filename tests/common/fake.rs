//! Fake outside services on 127.0.0.1: an HTTP server whose answers a test scripts and which
//! records every request, and a TCP proxy a test can cut to make a real server "go down".

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A canned answer: what a fake server sends back to one request.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            headers: vec![("content-type".into(), "text/html".into())],
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

pub struct FakeHttp {
    pub url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    gauge: Arc<Gauge>,
}

/// Requests being answered right now, and the most there ever were at once.
#[derive(Default)]
struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl FakeHttp {
    pub async fn start(handler: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let gauge: Arc<Gauge> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let (log2, handler2, gauge2) = (log.clone(), handler.clone(), gauge.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, handler, gauge) = (log2.clone(), handler2.clone(), gauge2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, handler, gauge) = (log.clone(), handler.clone(), gauge.clone());
                        async move {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = gauge.now.fetch_add(1, SeqCst) + 1;
                            gauge.max.fetch_max(now, SeqCst);
                            let (parts, body) = req.into_parts();
                            // Like servers behind proxies that refuse chunked requests: a body
                            // must come with its length.
                            let chunked = parts.method == http::Method::POST
                                && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let rec = Recorded {
                                method: parts.method.to_string(),
                                target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            log.lock().unwrap().push(rec.clone());
                            let reply =
                                if chunked { Canned::text(411, "Length Required") } else { handler(&rec) };
                            tokio::time::sleep(reply.delay).await;
                            gauge.now.fetch_sub(1, SeqCst);
                            let mut resp = hyper::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FakeHttp { url: format!("http://{addr}"), log, gauge }
    }

    /// The most requests this server was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.gauge.max.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

/// Forwards 127.0.0.1:<port> to a real server until cut; after `cut()` every open connection
/// is closed and new ones are refused, as if the server had gone away.
#[derive(Clone)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut stop = cut_rx.clone();
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { return };
                        let mut stop = cut_rx.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = stop.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        TcpProxy { addr, cut }
    }

    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}
