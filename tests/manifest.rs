//! spin.toml as `spin up` reads it: the triggers, and the variables each component resolves.

mod common;

use common::*;

#[test]
fn triggers_and_schedules() {
    let m = manifest();
    assert_eq!(m.http_routes, [("/api/v1/jobs/...".to_string(), "jobs-http".to_string())]);
    assert!(m.cron_triggers.contains(&("0 0 2 * * *".to_string(), "cron-health-check".to_string())));
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
