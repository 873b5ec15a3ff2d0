//! `scripts/dev.sh` as a newcomer runs it, under the real Spin (`WHATRACK_RUNTIME=spin` or
//! `spin4`; the script itself runs `spin build --up`): the app answers on 127.0.0.1:3000 with the
//! secret the script printed, and `--demo` puts both jobs to work within a minute, which the
//! dashboard, served by Spin, shows in Chromium (its screenshot is `target/console-demo.png`, and
//! under Spin 3 the test writes it to `docs/console.png`, the README's picture). Both use the script's fixed ports (3000, and the demo
//! stand-ins' 3901 and 3902), so they run one after the other in one test.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `scripts/dev.sh <args>` in a process group of its own, stopped (TERM, then KILL) when dropped.
struct DevScript(tokio::process::Child);

impl DevScript {
    fn start(args: &[&str], path: &str) -> Self {
        let child = tokio::process::Command::new("bash")
            .arg(root().join("scripts/dev.sh"))
            .args(args)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        DevScript(child)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill").args([signal, "--", &format!("-{pid}")]).status();
        }
    }
}

impl Drop for DevScript {
    fn drop(&mut self) {
        self.signal("-TERM");
        std::thread::sleep(Duration::from_secs(1));
        self.signal("-KILL");
    }
}

const APP: &str = "http://127.0.0.1:3000";

/// PATH with `spin` meaning the CLI under test (`spin4` is linked in as `spin` for it).
fn path_for(cli: &str) -> String {
    let path = std::env::var("PATH").unwrap();
    if cli == "spin" {
        return path;
    }
    let bin = std::env::temp_dir().join(format!("dev-spin-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let which = std::process::Command::new("which").arg(cli).output().unwrap();
    let real = String::from_utf8(which.stdout).unwrap().trim().to_owned();
    let _ = std::fs::remove_file(bin.join("spin"));
    std::os::unix::fs::symlink(real, bin.join("spin")).unwrap();
    format!("{}:{path}", bin.display())
}

async fn get(path: &str, secret: &str) -> Option<(u16, Value)> {
    common::process::request("127.0.0.1:3000", "GET", path, &[("x-cron-secret", secret)]).await
}

async fn wait_until(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "under spin up only: scripts/test.sh runs it with WHATRACK_RUNTIME set"]
async fn dev_sh_and_its_demo_run_under_spin() {
    let cli = common::spin::cli().expect("WHATRACK_RUNTIME=spin or spin4: dev.sh runs spin build --up");
    let path = path_for(&cli);
    assert!(
        tokio::net::TcpStream::connect("127.0.0.1:3000").await.is_err(),
        "something already listens on 127.0.0.1:3000 (a dev.sh running?)"
    );

    // The plain script: a secret of its own, the app on :3000.
    let dev = DevScript::start(&[], &path);
    let secret_file = root().join(".spin/dev-secret");
    wait_until(Duration::from_secs(600), "dev.sh serving", async || {
        let Ok(secret) = std::fs::read_to_string(&secret_file) else { return false };
        get("/api/v1/jobs/whatsapp-health-check", secret.trim()).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let secret = std::fs::read_to_string(&secret_file).unwrap().trim().to_owned();
    let run = common::process::request(
        "127.0.0.1:3000",
        "POST",
        "/api/v1/jobs/whatsapp-health-check",
        &[("x-cron-secret", &secret)],
    )
    .await
    .expect("an answer");
    assert_eq!((run.0, &run.1["success"]), (200, &Value::Bool(true)), "{}", run.1);
    drop(dev);
    wait_until(Duration::from_secs(20), "dev.sh stopped", async || {
        tokio::net::TcpStream::connect("127.0.0.1:3000").await.is_err()
    })
    .await;

    // The demo: within a minute of serving, both jobs are at work on the seeded estate: the
    // estate checked, the two webhooks the processor takes delivered, the flaky one on its third
    // attempt, and the poison one dead-lettered beside the one seeded dead.
    let demo = DevScript::start(&["--demo"], &path);
    wait_until(Duration::from_secs(300), "the demo serving", async || {
        get("/api/v1/jobs/whatsapp-health-check", &secret).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let db = connect(&format!("{}/whatrack_jobs_demo", admin_base())).await;
    wait_until(Duration::from_secs(60), "both jobs at work", async || {
        let ran: i64 = db
            .query_one(
                "SELECT count(DISTINCT \"jobType\") FROM job_runs WHERE status IN ('succeeded', 'partial')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let queue = db
            .query_one(
                "SELECT count(*) FILTER (WHERE processed), count(*) FILTER (WHERE \"deadAt\" IS NOT NULL) \
                 FROM whatsapp_webhook_logs",
                &[],
            )
            .await
            .unwrap();
        let (delivered, dead): (i64, i64) = (queue.get(0), queue.get(1));
        ran == 2 && delivered == 3 && dead == 2
    })
    .await;
    let (status, console) = get("/api/v1/jobs/console", &secret).await.expect("the console's figures");
    assert_eq!(status, 200, "{console}");

    let screenshot = root().join("target/console-demo.png");
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/screenshot.mjs"))
        .args([APP, secret.as_str(), screenshot.to_str().unwrap()])
        .output()
        .await
        .expect("node (scripts/test.sh installs Node.js, Chromium and playwright-core)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["jobs"], serde_json::json!(["whatsapp-health-check", "webhook-retry"]), "{seen}");
    assert!(seen["runRows"].as_array().unwrap().iter().all(|n| n.as_u64() > Some(0)), "runs shown: {seen}");
    // What the README's picture promises: the estate sorted after the first run, and the one
    // business Meta holds shown as held (its two numbers not checked), not as a finding.
    let health = &seen["health"];
    assert_eq!(
        [&health["healthy"], &health["warning"], &health["error"]],
        ["6", "3", "3"],
        "healthy x6; expiring, flagged, limited; banned, expired, undecryptable: {seen}"
    );
    let healthy = console["connections"].as_array().unwrap().iter().find(|c| c["health"] == "healthy");
    assert_eq!(health["healthy"].as_str(), healthy.map(|c| c["count"].to_string()).as_deref(), "{seen}");
    assert_eq!(seen["heldShown"], true, "{seen}");
    let held = &seen["held"][0];
    assert_eq!((held[0].as_str(), held[2].as_str()), (Some("demo-waba-9"), Some("2")), "{seen}");
    let job_held = seen["jobHeld"]["whatsapp-health-check"].as_str().unwrap_or_default();
    assert!(job_held.contains("Meta holds business demo-waba-9 until"), "{seen}");
    // The README's picture is this test's, under Spin 3 (the line the README's commands name).
    if cli == "spin" {
        std::fs::copy(&screenshot, root().join("docs/console.png")).unwrap();
    }
    drop(demo);
}
