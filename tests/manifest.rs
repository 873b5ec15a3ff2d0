//! spin.toml as `spin up` reads it: the triggers, and the variables each component resolves.

mod common;

use common::*;

#[test]
fn triggers_and_schedules() {
    let m = manifest();
    assert_eq!(m.http_routes, [("/api/v1/jobs/...".to_string(), "jobs-http".to_string())]);
    assert!(m.cron_triggers.contains(&("0 0 2 * * *".to_string(), "cron-health-check".to_string())));
    assert!(m.cron_triggers.contains(&("0 */5 * * * *".to_string(), "cron-webhook-retry".to_string())));
    for id in m.component_ids() {
        assert!(
            m.component_source(id).unwrap().ends_with("target/wasm32-wasip2/release/whatrack_jobs.wasm"),
            "{id}"
        );
    }
}

#[tokio::test]
async fn every_component_resolves_with_the_documented_variables() {
    let env = Env::new().await;
    let m = manifest();
    for id in m.component_ids() {
        m.resolve(id, &env.variables("https://graph.facebook.com")).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    // An operator's typo is refused at startup, as `spin up --variable` does.
    let mut vars = env.variables("https://graph.facebook.com");
    vars.insert("databse_url".into(), "x".into());
    assert!(m.resolve("jobs-http", &vars).is_err());
}

#[test]
fn the_cloud_manifest_has_the_routes_and_no_cron() {
    let out =
        std::process::Command::new("bash").arg(root().join("scripts/cloud-manifest.sh")).output().unwrap();
    assert!(out.status.success());
    let path = std::env::temp_dir().join(format!("spin.cloud.{}.toml", std::process::id()));
    std::fs::write(&path, &out.stdout).unwrap();
    let cloud = spin_test_host::manifest::Manifest::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(cloud.cron_triggers.is_empty());
    assert_eq!(cloud.http_routes, manifest().http_routes);
    assert_eq!(cloud.component_ids().collect::<Vec<_>>(), ["jobs-http"]);
    let vars = std::collections::HashMap::from([
        ("cron_secret".to_string(), SECRET.to_string()),
        ("database_url".to_string(), "postgres://u@localhost/db".to_string()),
        ("redis_url".to_string(), "redis://localhost:6379".to_string()),
    ]);
    cloud.resolve("jobs-http", &vars).unwrap();
}

/// The component asks only for what Spin 3.5 (and the cron plugin) give a spin-sdk 5.2
/// component, and exports what the HTTP and cron triggers call.
#[test]
fn the_component_imports_only_what_spin_provides() {
    let (imports, exports) = runtime().world();
    println!("imports: {imports:?}");
    let provided = |name: &str| {
        let wasi_02 = name.starts_with("wasi:") && name.contains("@0.2.");
        wasi_02
            || [
                "fermyon:spin/redis@2.0.0",
                "fermyon:spin/variables@2.0.0",
                "spin:postgres/postgres@4.0.0",
                "fermyon:spin-cron/cron-types@2.0.0",
            ]
            .contains(&name)
    };
    let unexpected: Vec<_> = imports.iter().filter(|i| !provided(i)).collect();
    assert!(unexpected.is_empty(), "imports Spin does not provide: {unexpected:?} (all: {imports:?})");
    for used in ["fermyon:spin/redis@2.0.0", "fermyon:spin/variables@2.0.0", "spin:postgres/postgres@4.0.0"] {
        assert!(imports.iter().any(|i| i == used), "{used} missing from {imports:?}");
    }
    assert!(imports.iter().any(|i| i.starts_with("wasi:http/outgoing-handler@0.2.")), "{imports:?}");
    let mut exports = exports;
    exports.sort();
    assert_eq!(exports, ["handle-cron-event", "wasi:http/incoming-handler@0.2.0"]);
}
