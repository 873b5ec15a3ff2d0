//! Serves one component of the app over HTTP on loopback with the test host, for trying the
//! routes with curl on a machine without Spin (scripts/dev.sh falls back to it). HTTP only: no
//! cron schedule fires here; call the job routes instead.
//!
//!   serve [--manifest spin.toml] [--component jobs-http] [--listen 127.0.0.1:3000] [--variable name=value]...

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use spin_test_host::manifest::Manifest;
use spin_test_host::Runtime;
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
    spin_test_host::serve(app, listener).await
}
