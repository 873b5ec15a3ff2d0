//! The component in a host process of its own (the test host's `serve` binary), so that a test
//! can run replicas side by side and kill one for real.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::root;

pub struct Served {
    child: Child,
    pub addr: String,
}

impl Served {
    /// Starts `serve` for the HTTP component with `vars`, and waits until it accepts connections.
    pub async fn start(vars: &HashMap<String, String>) -> Served {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        let mut cmd = Command::new(root().join("target/debug/serve"));
        cmd.arg("--manifest").arg(root().join("spin.toml")).arg("--listen").arg(&addr);
        for (name, value) in vars {
            cmd.arg("--variable").arg(format!("{name}={value}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("target/debug/serve (scripts/test.sh builds it)");
        let served = Served { child, addr };
        let started = Instant::now();
        while TcpStream::connect(&served.addr).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// `kill -9`: the process ends wherever it is, with nothing cleaned up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
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

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
