//! A test host for the whatrack-jobs component: wasmtime 48 with the interfaces Spin 3.5
//! gives a spin-sdk 5.2 component, over real connections.
//!
//! - [`manifest`]: reads `spin.toml` and resolves variables and allowed hosts as Spin does.
//! - [`allowed`]: `allowed_outbound_hosts`, enforced on HTTP, Postgres and Redis alike.
//! - `pg`, `redis_host`: the Spin Postgres and Redis interfaces.
//! - `children`: header fields as children of their request or response, as Spin's wasmtime has
//!   them, so a guest that drops a parent first traps here as it does under Spin.
//! - This file: the store, the linker, and [`App`], which serves HTTP requests to the component,
//!   calls its cron export, and keeps what the component printed.
//!
//! Test tooling only: it is not part of the product.

pub mod allowed;
mod children;
pub mod manifest;
mod pg;
mod redis_host;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::allowed::AllowedHosts;
use crate::manifest::Manifest;

pub use pg::PgConnection;
pub use redis_host::RedisConnection;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "whatrack:test-host/spin-imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": crate::RedisConnection,
            "spin:postgres/postgres.connection": crate::PgConnection,
        },
    });
}

mod cron_bindings {
    wasmtime::component::bindgen!({
        path: "../wit/spin-cron.wit",
        world: "fermyon:spin-cron/spin-cron",
        exports: { default: async },
    });
}

use bindings::fermyon::spin::variables;

/// wasmtime 48 has its own error type; tests speak anyhow.
trait WasmResult<T> {
    fn wasm(self) -> Result<T>;
}

impl<T> WasmResult<T> for wasmtime::Result<T> {
    fn wasm(self) -> Result<T> {
        self.map_err(|e| anyhow!("{e:?}"))
    }
}

/// What every instance of one app shares.
pub(crate) struct AppState {
    pub(crate) variables: HashMap<String, String>,
    pub(crate) allowed: AllowedHosts,
    pub(crate) pg_pool: pg::PgPool,
}

pub struct State {
    limits: PeakMemory,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(crate) app: Arc<AppState>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Grants every memory growth (as Spin does, up to its limits) and remembers the largest linear
/// memory an instance of the app reached.
struct PeakMemory(Arc<AtomicUsize>);

impl wasmtime::ResourceLimiter for PeakMemory {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.0.fetch_max(desired, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Refuses outbound HTTP that `allowed_outbound_hosts` does not list, before any connection.
struct OutboundHooks {
    app: Arc<AppState>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let url = request.uri().to_string();
        match self.app.allowed.check(&url) {
            Ok(true) => {}
            Ok(false) => return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) }),
            Err(broken) => {
                return Box::new(async move { Err(wasmtime_wasi_http::Error::InternalError(Some(broken))) })
            }
        }
        let _ = fut;
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

impl variables::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self.app.variables.get(&name).cloned().ok_or(variables::Error::Undefined(name)))
    }
}

/// The compiled component and a linker with everything Spin provides; build once per test binary.
pub struct Runtime {
    engine: Engine,
    component: Component,
    linker: Linker<State>,
}

impl Runtime {
    pub fn load(wasm: impl AsRef<Path>) -> Result<Self> {
        let wasm = wasm.as_ref();
        let engine = Engine::default();
        let component = Component::from_file(&engine, wasm).wasm().with_context(|| {
            format!("loading {} (build it with cargo build --target wasm32-wasip2 --release)", wasm.display())
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).wasm()?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).wasm()?;
        children::add_to_linker(&mut linker).wasm()?;
        bindings::SpinImports::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s).wasm()?;
        Ok(Self { engine, component, linker })
    }

    /// The names of what the component imports and exports, as `wasm-tools component wit` lists
    /// them (`wasi:http/types@0.2.6`, `handle-cron-event`, ...).
    pub fn world(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.component.component_type();
        let imports = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let exports = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        (imports, exports)
    }

    /// Prepares `component_id` of the manifest with the given variable values (as
    /// `spin up --variable name=value` would), failing where `spin up` would fail to start.
    pub fn app(
        &self,
        manifest: &Manifest,
        component_id: &str,
        variables: &HashMap<String, String>,
    ) -> Result<App> {
        let resolved = manifest.resolve(component_id, variables)?;
        let pre = self.linker.instantiate_pre(&self.component).wasm()?;
        Ok(App {
            pre,
            routes: manifest.routes_of(component_id),
            state: Arc::new(AppState {
                variables: resolved.variables,
                allowed: resolved.allowed,
                pg_pool: pg::PgPool::default(),
            }),
            output: Arc::new(Mutex::new(String::new())),
            in_flight: Arc::default(),
            engine: self.engine.clone(),
            peak_memory: Arc::default(),
        })
    }
}

/// One component of the app, ready to serve.
pub struct App {
    pre: InstancePre<State>,
    /// Its `[[trigger.http]]` routes: a request for any other path never reaches it (404), as
    /// under Spin.
    routes: Vec<String>,
    state: Arc<AppState>,
    output: Arc<Mutex<String>>,
    /// Requests answered whose component still works (Spin lets a handler go on after its
    /// answer): what they print is kept when they end, and [`App::output`] waits for them.
    in_flight: Arc<InFlight>,
    engine: Engine,
    peak_memory: Arc<AtomicUsize>,
}

/// What one call may print; beyond it a write fails, as a full pipe would.
const OUTPUT_CAPACITY: usize = 64 << 20;

impl App {
    fn store(&self) -> (Store<State>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let state = State {
            limits: PeakMemory(self.peak_memory.clone()),
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks { app: self.state.clone() },
            app: self.state.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        (store, stdout, stderr)
    }

    fn keep_output(&self, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
        keep_output(&self.output, stdout, stderr);
    }

    /// The largest linear memory (bytes) an instance reached since the last call, which resets it.
    pub fn take_peak_memory(&self) -> usize {
        self.peak_memory.swap(0, Ordering::Relaxed)
    }

    /// Everything the component has printed so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.in_flight.wait_idle();
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the component printed since the last call, forgetting it (for long-running use).
    pub fn take_output(&self) -> String {
        self.in_flight.wait_idle();
        std::mem::take(&mut *self.output.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends one HTTP request to the component's `wasi:http/incoming-handler` and collects the
    /// whole response. As under Spin, the answer comes back once its body is complete, while the
    /// component may still be working (the front door forwards after answering); a trap after
    /// the answer is in the output.
    pub async fn request(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (mut store, stdout, stderr) = self.store();
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() {
            let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
            parts.uri = format!("http://127.0.0.1:3000{path}").parse()?;
        }
        let path = parts.uri.path().to_owned();
        if let Some(refused) = refused_by_spins_server(&parts) {
            return Ok(http::Response::builder().status(refused).body(Bytes::new())?);
        }
        if !self.routes.iter().any(|route| manifest::route_matches(route, &path)) {
            let not_found = http::Response::builder().status(http::StatusCode::NOT_FOUND);
            return Ok(not_found.body(Bytes::new())?);
        }
        for (name, value) in [
            ("spin-full-url", parts.uri.to_string()),
            ("spin-path-info", path.clone()),
            ("spin-client-addr", "127.0.0.1:0".to_owned()),
        ] {
            parts.headers.insert(name, value.parse()?);
        }
        let body =
            Full::new(body).map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} });
        let req = http::Request::from_parts(parts, body);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, req).wasm()?;
        let out = store.data_mut().http().new_response_outparam(sender).wasm()?;
        let proxy = ProxyPre::new(self.pre.clone()).wasm()?;
        let task = tokio::spawn(async move {
            let proxy = proxy.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, out).await
        });
        let response = match receiver.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => return Err(anyhow!("component answered with error code {code:?}")),
            Err(_) => {
                let result = task.await?;
                self.keep_output(&stdout, &stderr);
                return Err(anyhow!("component never set a response: {result:?}"));
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| anyhow!("reading response body: {e:?}"));
        if task.is_finished() || body.is_err() {
            task.await?.map_err(|e| anyhow!("component trapped: {e:?}"))?;
            self.keep_output(&stdout, &stderr);
        } else {
            let (output, in_flight) = (self.output.clone(), self.in_flight.clone());
            in_flight.started();
            tokio::spawn(async move {
                let ended = task.await;
                keep_output(&output, &stdout, &stderr);
                if !matches!(ended, Ok(Ok(()))) {
                    let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
                    out.push_str(&format!("test host: the component trapped after its answer: {ended:?}\n"));
                }
                in_flight.ended();
            });
        }
        Ok(http::Response::from_parts(parts, body?.to_bytes()))
    }

    /// Calls the component's `handle-cron-event` as the cron trigger does.
    pub async fn cron(&self, timestamp: u64) -> Result<Result<(), String>> {
        let (mut store, stdout, stderr) = self.store();
        let instance = self.pre.instantiate_async(&mut store).await.wasm()?;
        let cron = cron_bindings::SpinCron::new(&mut store, &instance).wasm()?;
        let result = cron
            .call_handle_cron_event(
                &mut store,
                cron_bindings::fermyon::spin_cron::cron_types::Metadata { timestamp },
            )
            .await;
        self.keep_output(&stdout, &stderr);
        Ok(result.wasm()?.map_err(|cron_bindings::fermyon::spin_cron::cron_types::Error::Other(msg)| msg))
    }

    /// Calls the component's `wasi:cli/run` once, as Spin's command trigger (0.5.0) does: what
    /// `run` returns is discarded, `Err` included (the process exits 0), while a trap or any
    /// WASI `exit`, `exit(0)` included, fails the run ("Exited with i32 exit status 0").
    pub async fn run_command(&self) -> Result<CommandRun> {
        let (mut store, stdout, stderr) = self.store();
        let instance = self.pre.instantiate_async(&mut store).await.wasm()?;
        let command = wasmtime_wasi::p2::bindings::Command::new(&mut store, &instance).wasm()?;
        let called = command.wasi_cli_run().call_run(&mut store).await;
        let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
        let mut run = CommandRun { succeeded: called.is_ok(), stdout: text(&stdout), stderr: text(&stderr) };
        if let Err(e) = called {
            run.stderr.push_str(&match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => format!("Error: Exited with i32 exit status {}\n", exit.0),
                None => format!("Error: {e:?}\n"),
            });
        }
        self.keep_output(&stdout, &stderr);
        Ok(run)
    }
}

/// How a command run ended (`wasi:cli/run` returned `Ok`: the process's exit status 0), and
/// what it printed.
#[derive(Debug, Clone)]
pub struct CommandRun {
    pub succeeded: bool,
    pub stdout: String,
    pub stderr: String,
}

/// What Spin's HTTP server (hyper 1, HTTP/1.1) reads of a request head at the most: a head that
/// fills its read buffer (8 KiB + 100 x 4 KiB) or has more than 100 header fields is answered 431.
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
const MAX_HEADERS: usize = 100;

/// The requests Spin's HTTP trigger answers itself, with an empty body, before any component
/// sees them: a head too large (431, hyper's limits above), and a header value that is not
/// UTF-8 (500, "Error processing request: invalid utf-8 sequence", seen under Spin 3.5.0).
fn refused_by_spins_server(parts: &http::request::Parts) -> Option<http::StatusCode> {
    let line = parts.method.as_str().len() + parts.uri.to_string().len() + 12;
    let fields: usize = parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if line + fields + 2 >= MAX_HEAD_BYTES || parts.headers.len() > MAX_HEADERS {
        return Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if parts.headers.values().any(|value| std::str::from_utf8(value.as_bytes()).is_err()) {
        return Some(http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    None
}

/// Serves `app` over HTTP/1 on `listener` until the process ends, printing what the component
/// prints (the `serve` binary, and the host processes the fault tests start and kill).
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use wasmtime_wasi_http::io::TokioIo;
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(answer(&app, req).await) }
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
    // What this request printed so far; what it prints after its answer comes with a later one.
    eprint!("{}", std::mem::take(&mut *app.output.lock().unwrap_or_else(|p| p.into_inner())));
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

fn keep_output(output: &Mutex<String>, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
    let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
    for pipe in [stdout, stderr] {
        let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
        if std::env::var_os("TEST_HOST_ECHO").is_some() {
            eprint!("{text}");
        }
        out.push_str(&text);
    }
}

/// How many answered requests are still running.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    /// The longest [`App::output`] waits for them.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn started(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn ended(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.idle.notify_all();
    }

    /// Blocks until none runs; on a multi-threaded runtime, letting its other tasks (those
    /// requests among them) move to another worker meanwhile.
    fn wait_idle(&self) {
        let wait = || {
            let count = self.count.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.idle.wait_timeout_while(count, Self::PATIENCE, |n| *n > 0);
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}
