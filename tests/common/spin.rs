//! The real `spin up`, for the tests that run under it as well as in the test host.
//!
//! `WHATRACK_RUNTIME=spin` (Spin 3.x, the `spin` on PATH) or `spin4` (the `spin4` on PATH) makes
//! [`super::app`] start the app under that CLI instead of loading it into the test host: a copy
//! of the project's own `spin.toml` in a temporary folder (sources pointed at the built `.wasm`,
//! no cron schedules, so that only what the test does runs), the test's variables as
//! `SPIN_VARIABLE_*`, a port of its own on 127.0.0.1, and requests over real HTTP. The
//! component's output is read from the `.spin/logs/` Spin writes beside that copy.
//!
//! [`super::Schedules`] keeps the cron schedules instead, every one of them firing every
//! [`EVERY_SECONDS`], run by whichever cron plugin that CLI has installed;
//! `WHATRACK_SPIN_DATA_HOME` points Spin at another plugin store (`XDG_DATA_HOME`), such as the
//! one `../shared/spin/install.sh` fills with the Spin 4 line's cron plugin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// How long `spin up` may take to serve; it compiles the component on a cold cache.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A request that gets no answer in this long fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each cron schedule fires in a scheduled copy of the manifest.
pub const EVERY_SECONDS: u64 = 2;

/// Which CLI runs the app, from `WHATRACK_RUNTIME`; `None` means the test host.
pub fn cli() -> Option<String> {
    match std::env::var("WHATRACK_RUNTIME").ok()?.as_str() {
        "" | "host" => None,
        cli @ ("spin" | "spin4") => Some(cli.to_owned()),
        other => panic!("WHATRACK_RUNTIME={other}: expected host, spin or spin4"),
    }
}

/// One `spin up`, killed (with the folder it ran from removed) when dropped.
pub struct SpinUp {
    child: tokio::process::Child,
    dir: PathBuf,
    addr: String,
    /// What Spin itself printed on stderr (its own errors, a trap among them).
    errors: Arc<Mutex<String>>,
}

impl SpinUp {
    /// Serves the HTTP routes of `manifest_text` (a `spin.toml` whose sources are relative to
    /// the project) under `cli`, with `variables`; with `scheduled`, its cron schedules too,
    /// each firing every [`EVERY_SECONDS`].
    pub async fn start(
        cli: &str,
        manifest_text: &str,
        variables: &HashMap<String, String>,
        scheduled: bool,
    ) -> Result<Self> {
        Self::start_with_env(cli, manifest_text, variables, scheduled, &[]).await
    }

    /// [`SpinUp::start`] with `env` added to Spin's own environment (e.g. its OpenTelemetry
    /// exporter's settings).
    pub async fn start_with_env(
        cli: &str,
        manifest_text: &str,
        variables: &HashMap<String, String>,
        scheduled: bool,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let every = scheduled.then(|| format!("*/{EVERY_SECONDS} * * * * *"));
        let (dir, mut command) = spin_up(cli, manifest_text, variables, every.as_deref())?;
        let addr = free_addr()?;
        command.args(["--listen", &addr]).envs(env.iter().copied());
        let mut child = command.spawn().with_context(|| format!("starting {cli} up (is {cli} on PATH?)"))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut spin = Self { child, dir, addr, errors: Arc::default() };
        let said = spin.wait_until_serving(stdout, stderr).await;
        said.with_context(|| format!("{cli} up did not start serving"))?;
        Ok(spin)
    }

    /// Waits for Spin's "Serving http://..." line; whatever Spin says before it (an error,
    /// usually) becomes the error.
    async fn wait_until_serving(
        &mut self,
        stdout: tokio::process::ChildStdout,
        stderr: tokio::process::ChildStderr,
    ) -> Result<()> {
        let mut lines = BufReader::new(stdout).lines();
        let mut said = Vec::new();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) if line.starts_with("Serving http://") => break,
                Ok(Ok(Some(line))) => said.push(line),
                Ok(_) => {
                    let mut err = String::new();
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut { stderr }, &mut err).await;
                    bail!("it exited: {}\n{err}", said.join("\n"));
                }
                Err(_) => bail!("nothing served after {START_TIMEOUT:?}: {}", said.join("\n")),
            }
        }
        // Keep draining both pipes so that Spin never blocks on a full one.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut errors = BufReader::new(stderr).lines();
        let kept = self.errors.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = errors.next_line().await {
                if std::env::var_os("TEST_HOST_ECHO").is_some() {
                    eprintln!("spin: {line}");
                }
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        Ok(())
    }

    /// Sends `req` (its URI a path) over HTTP/1.1 and reads the whole answer.
    pub async fn request(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| anyhow!("spin up gave no answer in {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let stream = TcpStream::connect(&self.addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(http::header::HOST, self.addr.parse()?);
        let resp = sender.send_request(http::Request::from_parts(parts, Full::new(body))).await?;
        let (parts, body) = resp.into_parts();
        Ok(http::Response::from_parts(parts, body.collect().await?.to_bytes()))
    }

    /// What the components printed, stdout and stderr, from Spin's log files.
    pub fn output(&self) -> String {
        let logs = self.dir.join(".spin/logs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect()
    }

    /// Where it serves: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it serves: `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What Spin itself has printed on stderr so far.
    pub fn errors(&self) -> String {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The peak resident memory (`VmHWM`) of `spin up` and the trigger processes it started,
    /// summed, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let group = self.child.id()?;
        let mut total = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let dir = entry.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { continue };
            // pid (comm) state ppid pgrp ...: the fields after the command's closing parenthesis.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if after.split_whitespace().nth(2).and_then(|g| g.parse::<u32>().ok()) != Some(group) {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
            total += kb.unwrap_or(0) * 1024;
        }
        Some(total)
    }

    /// `kill -9` of `spin up` and the trigger processes it started: they end wherever they are,
    /// with nothing cleaned up.
    pub fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let group = format!("-{pid}");
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cli up --from <a local copy of manifest_text>` in a fresh folder, with `variables` as Spin's
/// environment and nothing else of ours, both pipes taken; the folder is the caller's to remove.
fn spin_up(
    cli: &str,
    manifest_text: &str,
    variables: &HashMap<String, String>,
    every: Option<&str>,
) -> Result<(PathBuf, tokio::process::Command)> {
    let dir = std::env::temp_dir().join(format!("whatrack-spin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("spin.toml"), local_copy(manifest_text, &super::built_wasm_dir(), every))?;
    let mut command = tokio::process::Command::new(cli);
    command
        .args(["up", "--from"])
        .arg(dir.join("spin.toml"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // `spin up` runs each trigger as a child process of its own: the whole group is
        // stopped at the end, not just `spin up`.
        .process_group(0)
        .kill_on_drop(true);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SPIN_VARIABLE_")) {
        command.env_remove(name);
    }
    for (name, value) in variables {
        command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
    }
    if let Some(store) = std::env::var_os("WHATRACK_SPIN_DATA_HOME") {
        command.env("XDG_DATA_HOME", store);
    }
    Ok((dir, command))
}

/// Runs the command app of `manifest_text` (its sources relative to the project) under `cli`
/// until it exits, as `scripts/run-job.sh` does: how it exited and what it printed. Spin writes
/// a component's stdout to its own stderr (and prints "Logging component stdio to ..." on its
/// stdout), so the component's output is read from the files of `--log-dir`, as the script does.
pub async fn run_command(
    cli: &str,
    manifest_text: &str,
    variables: &HashMap<String, String>,
) -> Result<spin_test_host::CommandRun> {
    let (dir, mut command) = spin_up(cli, manifest_text, variables, None)?;
    let logs = dir.join("logs");
    command.arg("--quiet").arg("--log-dir").arg(&logs);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await;
    let read = |file: &str| std::fs::read_to_string(logs.join(file)).unwrap_or_default();
    let (stdout, stderr) = (read("job_stdout.txt"), read("job_stderr.txt"));
    let _ = std::fs::remove_dir_all(&dir);
    let out =
        out.with_context(|| format!("{cli} up of the command app still running after {COMMAND_TIMEOUT:?}"))??;
    Ok(spin_test_host::CommandRun {
        succeeded: out.status.success(),
        stdout,
        stderr: stderr + String::from_utf8_lossy(&out.stderr).as_ref(),
    })
}

/// A command run's longest wait: a job under the tests' budgets, and Spin's start.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The manifest with its sources made absolute, and each cron schedule either taken out (so
/// that nothing runs that the test did not ask for) or, with `every`, set to that expression.
/// Without schedules the cron components stay (a component without a trigger is not an error
/// to Spin).
pub fn local_copy(manifest_text: &str, wasm_dir: &Path, every: Option<&str>) -> String {
    let mut out = String::new();
    let mut in_cron_trigger = false;
    for line in manifest_text.lines() {
        if line.starts_with('[') {
            in_cron_trigger = line.trim() == "[[trigger.cron]]";
        }
        let line = match (in_cron_trigger, every) {
            (true, None) => continue,
            (true, Some(every)) if line.starts_with("cron_expression") => {
                format!("cron_expression = \"{every}\"")
            }
            _ => match line.strip_prefix("source = \"target/wasm32-wasip2/release/") {
                Some(file) => format!("source = \"{}/{file}", wasm_dir.display()),
                None => line.to_owned(),
            },
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A port nobody listens on now, for `spin up --listen`.
fn free_addr() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}
