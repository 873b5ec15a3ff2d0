//! spin.toml as `spin up` reads it: the triggers, and the variables each component resolves.

mod common;

use common::*;

#[test]
fn triggers_and_schedules() {
    let m = manifest();
    assert_eq!(
        m.http_routes,
        [
            ("/api/v1/jobs/...".to_string(), "jobs-http".to_string()),
            ("/api/v1/whatsapp/webhook".to_string(), "jobs-http".to_string()),
            ("/api/v1/metrics".to_string(), "jobs-http".to_string())
        ]
    );
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
    let text = String::from_utf8(out.stdout).unwrap();
    let allowance: toml::Value =
        text.parse::<toml::Table>().unwrap()["variables"]["outbound_requests_per_hour"].clone();
    assert_eq!(
        allowance["default"].as_str(),
        Some("450"),
        "below Fermyon Cloud's 500 outbound requests an hour"
    );
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
    assert_eq!(exports, ["handle-cron-event", "wasi:cli/run@0.2.0", "wasi:http/incoming-handler@0.2.0"]);
}

fn yaml_documents(file: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

/// The SpinApp runs the HTTP component only, twice, with every variable spin.toml declares taken
/// from the Secret, which offers each of them.
#[test]
fn the_spinapp_wires_every_variable_from_the_secret() {
    let app = &yaml_documents("spinapp.yaml")[0];
    assert_eq!(app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(app["kind"], "SpinApp");
    let spec = &app["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["components"], serde_yaml::to_value(["jobs-http"]).unwrap());
    let wired: std::collections::BTreeMap<String, &serde_yaml::Value> = spec["variables"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_owned(), &v["valueFrom"]["secretKeyRef"]))
        .collect();
    let declared: std::collections::BTreeSet<String> =
        manifest().variable_names().map(str::to_owned).collect();
    assert_eq!(wired.keys().cloned().collect::<std::collections::BTreeSet<_>>(), declared);
    let secret_text = std::fs::read_to_string(root().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    for (name, key_ref) in wired {
        assert_eq!(
            (key_ref["name"].as_str(), key_ref["key"].as_str()),
            (Some("whatrack-jobs"), Some(name.as_str()))
        );
        let required = ["cron_secret", "database_url", "redis_url"].contains(&name.as_str());
        assert_eq!(key_ref["optional"].as_bool().unwrap_or(false), !required, "{name}");
        assert!(secret_text.contains(&format!("{name}: ")), "secret.example.yaml offers {name}");
    }
}

/// Kubernetes schedules have no seconds: `0 0 2 * * *` is `0 2 * * *`.
fn without_seconds(spin: &str) -> String {
    let fields: Vec<&str> = spin.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{spin}");
    assert_eq!(fields[0], "0", "{spin}: Kubernetes cannot run at a second other than 0");
    fields[1..].join(" ")
}

/// The CronJobs call the job routes on spin.toml's schedules, in UTC, one run at a time, with
/// the secret from the Secret.
#[test]
fn the_cronjobs_follow_the_cron_triggers() {
    let m = manifest();
    let jobs = yaml_documents("cronjobs.yaml");
    assert_eq!(jobs.len(), m.cron_triggers.len());
    for (expression, component) in &m.cron_triggers {
        let job_type = m.resolve(component, &base_variables()).unwrap().variables["job"].clone();
        let route = format!("http://whatrack-jobs/api/v1/jobs/{job_type}");
        let job = jobs
            .iter()
            .find(|j| {
                j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|a| a.as_str() == Some(route.as_str()))
            })
            .unwrap_or_else(|| panic!("no CronJob calls {route}"));
        let spec = &job["spec"];
        assert_eq!(spec["schedule"].as_str().unwrap(), without_seconds(expression), "{job_type}");
        assert_eq!(spec["timeZone"], "Etc/UTC");
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        let container = &spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let env = &container["env"][0];
        assert_eq!(env["valueFrom"]["secretKeyRef"]["key"], "cron_secret");
        let args: Vec<&str> =
            container["args"].as_sequence().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert!(args.contains(&"x-cron-secret: $(CRON_SECRET)") && args.contains(&"POST"), "{args:?}");
    }
}

fn command_manifest() -> toml::Table {
    std::fs::read_to_string(root().join("deploy/spin-command.toml")).unwrap().parse().unwrap()
}

/// The command app runs either job as one component: the same .wasm as spin.toml's, the
/// variables its door and both jobs read (tests below), each declared with spin.toml's default or
/// requirement, and the job.
#[test]
fn the_command_manifest_matches_spin_toml() {
    let (spin, command) = (spin_toml(), command_manifest());
    assert_eq!(command["trigger"]["command"][0]["component"].as_str(), Some("job"));
    assert_eq!(command["trigger"].as_table().unwrap().len(), 1, "the command trigger only");
    let cron = &spin["component"]["cron-webhook-retry"];
    let job = &command["component"]["job"];
    assert_eq!(
        job["source"].as_str().unwrap().strip_prefix("../"),
        cron["source"].as_str(),
        "the same .wasm, relative to deploy/"
    );
    let declared = command["variables"].as_table().unwrap();
    for (name, declaration) in declared {
        match name.as_str() {
            "job" => assert_eq!(declaration, &toml::Value::Table(toml::toml! { default = "" })),
            name => {
                assert_eq!(Some(declaration), spin["variables"].get(name), "{name}: as spin.toml declares it")
            }
        }
    }
    let listed: std::collections::BTreeSet<&String> = job["variables"].as_table().unwrap().keys().collect();
    assert_eq!(listed, declared.keys().collect(), "the component lists what the app declares");
}

/// The command CronJobs run the command app with SpinKube's shim on spin.toml's schedules, one
/// at a time, each variable of the command app from the Secret and the job by name.
#[test]
fn the_command_cronjobs_follow_the_cron_triggers() {
    let m = manifest();
    let command = command_manifest();
    let declared = command["variables"].as_table().unwrap();
    let jobs = yaml_documents("command-cronjobs.yaml");
    assert_eq!(jobs.len(), m.cron_triggers.len());
    for (expression, component) in &m.cron_triggers {
        let job_type = m.resolve(component, &base_variables()).unwrap().variables["job"].clone();
        let job = jobs
            .iter()
            .find(|j| {
                let env = &j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"];
                env[0]["name"] == "SPIN_VARIABLE_JOB" && env[0]["value"].as_str() == Some(job_type.as_str())
            })
            .unwrap_or_else(|| panic!("no command CronJob runs {job_type}"));
        let spec = &job["spec"];
        assert_eq!(spec["schedule"].as_str().unwrap(), without_seconds(expression), "{job_type}");
        assert_eq!(
            (spec["timeZone"].as_str(), spec["concurrencyPolicy"].as_str()),
            (Some("Etc/UTC"), Some("Forbid"))
        );
        assert!(spec["startingDeadlineSeconds"].as_u64().is_some_and(|s| s > 0), "{job_type}");
        assert!(spec["jobTemplate"]["spec"]["backoffLimit"].as_u64().is_some(), "{job_type}");
        let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(
            (pod["runtimeClassName"].as_str(), pod["restartPolicy"].as_str()),
            (Some("wasmtime-spin-v2"), Some("Never"))
        );
        let env = pod["containers"][0]["env"].as_sequence().unwrap();
        let wired: std::collections::BTreeMap<String, &serde_yaml::Value> = env[1..]
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), &e["valueFrom"]["secretKeyRef"]))
            .collect();
        // What this job reads: its cron component's list.
        let expected: std::collections::BTreeSet<String> = spin_toml()["component"][component.as_str()]
            ["variables"]
            .as_table()
            .unwrap()
            .keys()
            .filter(|n| *n != "job")
            .map(|n| format!("SPIN_VARIABLE_{}", n.to_uppercase()))
            .collect();
        assert_eq!(wired.keys().cloned().collect::<std::collections::BTreeSet<_>>(), expected, "{job_type}");
        for (env_name, key_ref) in wired {
            let name = env_name.trim_start_matches("SPIN_VARIABLE_").to_lowercase();
            assert_eq!(
                (key_ref["name"].as_str(), key_ref["key"].as_str()),
                (Some("whatrack-jobs"), Some(name.as_str()))
            );
            let required = declared[&name].get("required").is_some();
            assert_eq!(key_ref["optional"].as_bool().unwrap_or(false), !required, "{name}");
        }
    }
}

fn base_variables() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        ("cron_secret".to_string(), SECRET.to_string()),
        ("database_url".to_string(), "postgres://u@localhost/db".to_string()),
        ("redis_url".to_string(), "redis://localhost:6379".to_string()),
    ])
}

/// `scripts/dev.sh` accepts the cron plugin versions the suite runs the component under (0.3 to
/// 0.5) and newer ones (the plugin index's current one, 0.6.0 in 2026-06, with a line naming the
/// tested versions), and refuses only those known not to work, saying what to run; a fake
/// `spin` stands in for each installed state, and the real one for the state of this machine
/// when it is on PATH.
#[test]
fn the_cron_plugin_check_names_the_version_to_install() {
    for (listed, ok) in [
        ("trigger-cron 0.4.2 [installed]\n", true),
        ("trigger-command 0.5.0 [installed]\ntrigger-cron 0.3.0 [installed]\n", true),
        ("trigger-cron 0.5.0 [installed]\nkube 0.3.0 [installed]\n", true),
        ("trigger-cron 0.6.0 [installed]\n", true),
        ("trigger-cron 1.2.0 [installed]\n", true),
        ("trigger-cron 0.2.1 [installed]\n", false),
        ("kube 0.3.0 [installed]\n", false),
    ] {
        let bin = std::env::temp_dir().join(format!("fake-spin-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&bin).unwrap();
        let spin = bin.join("spin");
        std::fs::write(&spin, format!("#!/bin/sh\nprintf '{}'\n", listed.replace('\n', "\\n"))).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&spin).status().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/check-cron-plugin.sh"))
            .env("PATH", path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&bin).unwrap();
        assert_eq!(out.status.success(), ok, "{listed}");
        let said = String::from_utf8_lossy(&out.stderr);
        if !ok {
            assert!(said.contains("spin plugins install trigger-cron --version 0.4.2 --yes"), "{said}");
        }
        let newer = listed.contains("0.6.0") || listed.contains("1.2.0");
        assert_eq!(
            said.contains("newer than the versions this component was run under (0.3.0 and 0.5.0)"),
            newer,
            "{said}"
        );
        assert!(!newer || said.lines().count() == 1, "one line: {said}");
    }
    let real = std::process::Command::new("spin").args(["plugins", "list", "--installed"]).output();
    if let Some(listed) = real.ok().filter(|out| out.status.success()) {
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let cron = listed.lines().find(|l| l.starts_with("trigger-cron ")).unwrap_or_default();
        let version = cron.split_whitespace().nth(1).unwrap_or_default();
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/check-cron-plugin.sh"))
            .output()
            .unwrap();
        let known_not_to_work = ["0.0.", "0.1.", "0.2."].iter().any(|line| version.starts_with(line));
        assert_eq!(out.status.success(), !version.is_empty() && !known_not_to_work, "real spin: {listed}");
    }
}

/// The component reads an `allowed_outbound_hosts` entry without a port with the same default
/// ports as the test host, whose table is Spin's.
#[test]
fn entries_default_to_the_ports_spin_gives_them() {
    for scheme in ["http", "https", "postgres", "postgresql", "redis", "rediss", "mysql", "mqtt", "ftp", "*"]
    {
        assert_eq!(
            whatrack_jobs::urls::spin_default_port(scheme),
            spin_test_host::allowed::well_known_port(scheme),
            "{scheme}"
        );
    }
}

fn spin_toml() -> toml::Table {
    std::fs::read_to_string(root().join("spin.toml")).unwrap().parse().unwrap()
}

/// Records the name of every variable read, answering from `values`.
struct Recording {
    values: std::collections::HashMap<&'static str, String>,
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Recording {
    fn new(values: &[(&'static str, String)]) -> Self {
        Self { values: values.iter().cloned().collect(), read: Default::default() }
    }

    fn names(self) -> std::collections::BTreeSet<String> {
        self.read.into_inner()
    }
}

impl whatrack_jobs::config::Source for Recording {
    fn get(&self, name: &'static str) -> Result<Option<String>, whatrack_jobs::config::ConfigError> {
        self.read.borrow_mut().insert(name.to_owned());
        Ok(self.values.get(name).cloned())
    }
}

/// What every setting needs to load.
fn required_values() -> [(&'static str, String); 5] {
    [
        ("cron_secret", SECRET.to_owned()),
        ("encryption_keys", format!("{{\"v1\":\"{KEY}\"}}")),
        ("database_url", "postgres://u:p@localhost:5432/db".to_owned()),
        ("redis_url", "redis://localhost:6379".to_owned()),
        // The default host entry's, which is checked against it once set.
        ("webhook_processor_url", "https://webhook-processor.invalid/hook".to_owned()),
    ]
}

/// What a run of `job` reads (the cron and command doors load exactly this, then the `job`
/// variable that named it).
fn read_by_a_run(job: whatrack_jobs::jobs::JobType) -> std::collections::BTreeSet<String> {
    let src = Recording::new(&required_values());
    if let Err(e) = whatrack_jobs::runner::Settings::from_source(job, &src) {
        panic!("{}: {e}", job.as_str());
    }
    let mut names = src.names();
    names.insert("job".to_owned());
    names
}

/// What the HTTP door's routes read, each its own settings: the secret, a status, the front
/// door's, a run of each job, the shared settings, the overview's, the console's, a redrive's.
fn read_by_the_routes() -> std::collections::BTreeSet<String> {
    use whatrack_jobs::jobs::{webhook_retry::policy::Rules, JobType, StatusSettings};
    use whatrack_jobs::{config, console, front_door, runner};
    let src = Recording::new(&required_values());
    let loaded = [
        config::Secrets::from_source(&src).err(),
        front_door::Settings::from_source(&src).err(),
        config::Config::from_source(&src).err(),
        runner::overview::Settings::from_source(&src).err(),
        console::Settings::from_source(&src).err(),
        Rules::from_source(&src).err(),
    ];
    for job in JobType::ALL {
        assert!(
            StatusSettings::from_source(job, &src).is_ok()
                && runner::Settings::from_source(job, &src).is_ok()
        );
    }
    assert!(loaded.iter().all(Option::is_none), "{loaded:?}");
    src.names()
}

/// The variables that are `allowed_outbound_hosts` entries.
const HOSTS: [&str; 5] =
    ["database_host", "redis_host", "meta_graph_url", "webhook_processor_host", "alert_webhook_host"];

/// Each component lists exactly the variables its code reads (a variable forgotten there reads
/// as unset, silently; one listed but never read is a setting that does nothing there), each as
/// itself, and allows the hosts of the systems it reaches and no others.
#[test]
fn each_component_lists_the_variables_its_code_reads() {
    use whatrack_jobs::jobs::JobType;
    let expected = |list: &toml::Table, id: &str| match list.get("job").and_then(|j| j.as_str()) {
        None => read_by_the_routes(),
        Some("{{ job }}") => JobType::ALL.into_iter().flat_map(read_by_a_run).collect(),
        Some(job) => read_by_a_run(JobType::parse(job).unwrap_or_else(|| panic!("{id}: job {job}"))),
    };
    let (spin, command) = (spin_toml(), command_manifest());
    let components =
        spin["component"].as_table().unwrap().iter().chain(command["component"].as_table().unwrap());
    let mut checked = 0;
    for (id, component) in components {
        let list = component["variables"].as_table().unwrap();
        let read = expected(list, id);
        let listed: std::collections::BTreeSet<String> = list.keys().cloned().collect();
        assert_eq!(listed, read, "{id}: listed (left) and read (right)");
        for (name, value) in list.iter().filter(|(n, _)| *n != "job") {
            assert_eq!(value.as_str(), Some(format!("{{{{ {name} }}}}").as_str()), "{id}.{name}");
        }
        let allowed: std::collections::BTreeSet<&str> = component["allowed_outbound_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let reached: Vec<String> =
            HOSTS.iter().filter(|h| read.contains(**h)).map(|h| format!("{{{{ {h} }}}}")).collect();
        assert_eq!(allowed, reached.iter().map(String::as_str).collect(), "{id}: allowed_outbound_hosts");
        checked += 1;
    }
    assert_eq!(checked, 4, "jobs-http, the two cron components and the command app's");
    let declared: std::collections::BTreeSet<String> =
        spin["variables"].as_table().unwrap().keys().cloned().collect();
    assert_eq!(declared, read_by_the_routes(), "every variable the app declares is read by some route");
    let cron_health = read_by_a_run(JobType::HealthCheck);
    assert!(
        !cron_health.contains("meta_webhook_verify_token") && !cron_health.contains("webhook_processor_url")
    );
}

/// A variable's default in spin.toml is the one the code applies when the variable is unset:
/// for each default, every setting read with it set is the one read without it.
#[test]
fn spin_toml_defaults_are_the_components_defaults() {
    use whatrack_jobs::jobs::{health_check, webhook_retry};
    use whatrack_jobs::{config, console, front_door, runner};

    let everything = |src: &Recording| {
        let all = (
            config::Config::from_source(src).ok(),
            config::Secrets::from_source(src).ok(),
            health_check::Settings::from_source(src).ok(),
            webhook_retry::Settings::from_source(src).ok(),
            front_door::Settings::from_source(src).ok(),
            runner::overview::Settings::from_source(src).ok(),
            runner::retention::Settings::from_source(src).ok(),
            console::Settings::from_source(src).ok(),
        );
        assert!(all.0.is_some() && all.1.is_some() && all.2.is_some() && all.3.is_some() && all.4.is_some());
        all
    };
    let required = required_values();
    let manifest = spin_toml();
    let mut compared = 0;
    for (name, declaration) in manifest["variables"].as_table().unwrap() {
        let is_required = required.iter().any(|(r, _)| r == name);
        let Some(default) = declaration.get("default").and_then(|d| d.as_str()) else {
            assert!(is_required, "{name}: no default, and not required");
            continue;
        };
        if is_required {
            continue;
        }
        let name: &'static str = name.clone().leak();
        let unset = Recording::new(&required);
        let mut set = required.to_vec();
        set.push((name, default.to_owned()));
        assert!(
            everything(&Recording::new(&set)) == everything(&unset),
            "{name}: spin.toml's default {default:?} is not the code's"
        );
        compared += 1;
    }
    assert!(compared >= 30, "{compared} defaults compared");
}
