//! The deploy files as they load: the cloud manifest (`scripts/cloud-manifest.sh`) serving the
//! routes with no schedule, and the Kubernetes Secret's variables (`deploy/kubernetes/
//! secret.example.yaml`) taken as they are shown, in the test host or under `spin up`
//! (`WHATRACK_RUNTIME`).

mod common;

use std::collections::HashMap;

use common::*;

fn cloud_manifest() -> String {
    let out =
        std::process::Command::new("bash").arg(root().join("scripts/cloud-manifest.sh")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The manifest for hosts without custom triggers serves every job route.
#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_manifest_serves_the_job_routes() {
    let env = Env::new().await;
    let app = app_of(&cloud_manifest(), "jobs-http", &env.variables("http://127.0.0.1:9")).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let status = call(&app, "GET", "/api/v1/jobs/webhook-retry", &[("x-cron-secret", SECRET)]).await;
    assert_eq!(status.status, 200, "{}", status.json);
    assert_eq!(env.job_runs().await.len(), 1, "only the run asked for");
}

/// Every variable the Secret offers, uncommented with the value it shows, and the ones an
/// operator must fill in pointed at this test's services: the app loads and runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_secret_as_shown_loads() {
    let env = Env::new().await;
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    let mut vars: HashMap<String, String> = text
        .lines()
        .skip_while(|l| !l.starts_with("stringData:"))
        .skip(1)
        .filter_map(|l| l.trim().trim_start_matches("# ").split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    assert!(vars.len() >= 30, "the Secret's keys were read: {vars:?}");
    let filled = env.variables("http://127.0.0.1:9");
    for name in
        ["cron_secret", "database_url", "redis_url", "database_host", "redis_host", "token_encryption_key"]
    {
        vars.insert(name.into(), filled[name].clone());
    }
    let app = app("jobs-http", &vars).await;
    let r = post_health(&app).await;
    assert_eq!(r.status, 200, "{}", r.json);
}
