//! The component in a process of its own, so that a test can run replicas side by side and kill
//! one for real. Under `spin up` (`WHATRACK_RUNTIME`, see [`super::spin`]) the process is
//! `spin up` itself; otherwise it is this test binary again, running only its ignored
//! `host_process` test, which serves the app (the test host's `serve`) when it finds the
//! variables below: no other binary to build.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub struct Served {
    process: Process,
    pub addr: String,
}

enum Process {
    Host(Child),
    Spin(super::spin::SpinUp),
}

impl Served {
    /// Starts a process serving the HTTP component with `vars`, and waits until it accepts
    /// connections.
    pub async fn start(vars: &HashMap<String, String>) -> Served {
        if let Some(cli) = super::spin::cli() {
            let manifest = std::fs::read_to_string(super::root().join("spin.toml")).unwrap();
            let spin = super::spin::SpinUp::start(&cli, &manifest, vars, false).await.expect("spin up");
            let addr = spin.addr().to_owned();
            return Served { process: Process::Spin(spin), addr };
        }
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "host_process", "--nocapture"])
            .env(LISTEN, &addr)
            .env(VARIABLES, serde_json::to_string(vars).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let served = Served { process: Process::Host(child), addr };
        let started = Instant::now();
        while TcpStream::connect(&served.addr).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the host process did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// `kill -9`: the process ends wherever it is, with nothing cleaned up.
    pub fn kill(&mut self) {
        match &mut self.process {
            Process::Host(child) => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            Process::Spin(spin) => spin.kill(),
        }
    }

    /// A POST to `path` with the secret, left to answer (or not) in the background.
    pub fn post_in_background(&self, path: &'static str) -> JoinHandle<Option<(u16, Value)>> {
        let addr = self.addr.clone();
        tokio::spawn(async move { request(&addr, "POST", path, &[("x-cron-secret", super::SECRET)]).await })
    }

    /// Kills the process while `pending` waits, and checks that it never got an answer.
    pub async fn kill_during(&mut self, pending: JoinHandle<Option<(u16, Value)>>) {
        self.kill();
        let answer = pending.await.unwrap();
        assert!(answer.is_none(), "the killed host answered: {answer:?}");
    }

    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, Value)> {
        request(&self.addr, method, path, headers).await
    }
}

/// One request to the host at `addr`, on a connection of its own; `None` when the process died
/// before answering.
pub async fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, Value)> {
    {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

const LISTEN: &str = "WHATRACK_HOST_LISTEN";
const VARIABLES: &str = "WHATRACK_HOST_VARIABLES";

/// The body of the `host_process` test: serves the HTTP component when started by
/// [`Served::start`], and returns at once otherwise.
pub async fn serve_if_asked() {
    let (Ok(addr), Ok(vars)) = (std::env::var(LISTEN), std::env::var(VARIABLES)) else { return };
    let vars: HashMap<String, String> = serde_json::from_str(&vars).unwrap();
    let app = std::sync::Arc::new(super::host_app("jobs-http", &vars));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    spin_test_host::serve(app, listener).await.unwrap();
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Process::Host(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
