//! Serves one component of the app over HTTP on loopback with the test host, for trying the
//! routes with curl on a machine without Spin (scripts/dev.sh falls back to it). HTTP only: no
//! cron schedule fires here; call the job routes instead.
//!
//!   serve [--manifest spin.toml] [--component jobs-http] [--listen 127.0.0.1:3000] [--variable name=value]...

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use spin_test_host::manifest::Manifest;
use spin_test_host::{App, Runtime};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<()> {
    let mut manifest = "spin.toml".to_owned();
    let mut component = "jobs-http".to_owned();
    let mut listen = "127.0.0.1:3000".to_owned();
    let mut variables = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" => manifest = value()?,
            "--component" => component = value()?,
            "--listen" => listen = value()?,
            "--variable" => {
                let pair = value()?;
                let (name, v) = pair.split_once('=').ok_or_else(|| anyhow!("--variable wants name=value"))?;
                variables.insert(name.to_owned(), v.to_owned());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let manifest = Manifest::load(&manifest)?;
    let runtime = Runtime::load(manifest.component_source(&component)?)?;
    let app = Arc::new(runtime.app(&manifest, &component, &variables)?);
    let listener = TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    eprintln!("serving component {component} on http://{listen} (test host; no cron schedules)");
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&app, req).await) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(app: &App, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let result = match body.collect().await {
        Ok(body) => app.request(hyper::Request::from_parts(parts, body.to_bytes())).await,
        Err(e) => Err(anyhow!("reading the request body: {e}")),
    };
    eprint!("{}", app.take_output());
    match result {
        Ok(resp) => resp.map(Full::new),
        Err(e) => {
            eprintln!("test host: {e:#}");
            let mut resp = hyper::Response::new(Full::new(Bytes::from("component failed\n")));
            *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
    }
}
