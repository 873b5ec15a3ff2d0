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
    /// When it arrived.
    pub at: std::time::Instant,
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
                            let at = std::time::Instant::now();
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
                                at,
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

    /// As an alert receiver: the `text` of each alert it was sent, each a JSON body.
    pub fn alert_texts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                assert_eq!(r.header("content-type"), Some("application/json"));
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                v["text"].as_str().unwrap().to_owned()
            })
            .collect()
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

/// How a broken peer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Accepts the connection, reads the request, and never answers.
    Silent,
    /// A proper answer, one byte a second.
    Trickle,
    /// Headers and the start of the body, then the connection closes.
    ClosesMidResponse,
    /// A 200 with a 50 MB body.
    Huge,
    /// `HTTP/1.1 twohundred OK`.
    MalformedStatusLine,
}

/// A peer speaking broken HTTP over raw TCP; `pick` chooses the behaviour from the request's
/// head (request line and headers, as text).
pub struct BrokenHttp {
    pub url: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl BrokenHttp {
    pub async fn start(pick: impl Fn(&str) -> Broken + Send + Sync + 'static) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pick = Arc::new(pick);
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let pick = pick.clone();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    let _ = stream.read_exact(&mut body).await;
                    let ok_body = br#"{"id":"x","status":"CONNECTED","health_status":{"can_send_message":"AVAILABLE"}}"#;
                    match pick(&head) {
                        Broken::Silent => tokio::time::sleep(Duration::from_secs(120)).await,
                        Broken::Trickle => {
                            let answer = [
                                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", ok_body.len())
                                    .into_bytes(),
                                ok_body.to_vec(),
                            ]
                            .concat();
                            for b in answer {
                                if stream.write_all(&[b]).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        Broken::ClosesMidResponse => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\":")
                                .await;
                        }
                        Broken::Huge => {
                            let size = 50 << 20;
                            let header = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n");
                            if stream.write_all(header.as_bytes()).await.is_err() {
                                return;
                            }
                            let chunk = vec![b'a'; 64 << 10];
                            for _ in 0..size / chunk.len() {
                                if stream.write_all(&chunk).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Broken::MalformedStatusLine => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 twohundred OK\r\ncontent-length: 2\r\n\r\n{}")
                                .await;
                        }
                    }
                });
            }
        });
        BrokenHttp { url, requests }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}
