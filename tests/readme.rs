//! The documentation, read out of itself so that it cannot drift: every route and method of the
//! API table (`docs/api.md`) answers (no 404, no 405); every curl line of that page's examples and
//! of the README's runs as written against the app (served by the test host on a port of its
//! own, or by `spin up`), answering JSON of the shape shown under it; every link of the README
//! and the guides resolves, to a file and to a heading.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::fake::{Canned, FakeHttp};
use common::seed::{self, Webhook};
use common::*;
use serde_json::{json, Value};

const JOBS: [&str; 2] = ["whatsapp-health-check", "webhook-retry"];

/// The API page.
fn api_section() -> String {
    std::fs::read_to_string(root().join("docs/api.md")).unwrap()
}

/// The README's curl example.
fn front_page_example() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("## Try it with curl").expect("the README's curl example");
    let end = readme[start..].find("\n## Guides").map_or(readme.len(), |e| start + e);
    readme[start..end].to_owned()
}

/// `(method, path)` of every row of the API table, `{jobType}` expanded to each job.
fn table_routes(section: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.trim_start_matches("| `").split('`').next().unwrap();
        let (method, target) = cell.split_once(' ').unwrap();
        let path = target.split('?').next().unwrap();
        for job in JOBS {
            let path = path.replace("{jobType}", job);
            if !routes.contains(&(method.to_owned(), path.clone())) {
                routes.push((method.to_owned(), path));
            }
        }
    }
    routes
}

/// One curl command of an example block and the answer the README shows under it (`# ...`
/// lines), if any.
struct Example {
    command: String,
    documented: String,
}

fn examples(section: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    for block in section.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let mut pending = String::new();
        for line in block.lines() {
            if line.starts_with("SECRET=") || line.starts_with("BASE=") {
                continue;
            }
            if let Some(answer) = line.strip_prefix('#') {
                if let Some(last) = out.last_mut() {
                    last.documented.push_str(answer.trim());
                }
                continue;
            }
            pending.push_str(line);
            pending.push('\n');
            if !line.ends_with('\\') {
                out.push(Example { command: std::mem::take(&mut pending), documented: String::new() });
            }
        }
    }
    out
}

/// The keys of an object and of the objects inside it, as paths: the shape of an answer.
fn shape(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let path = format!("{prefix}{k}");
            shape(v, &format!("{path}."), out);
            out.insert(path);
        }
    }
}

fn shape_of(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    shape(v, "", &mut out);
    out
}

/// The app with a processor that accepts everything, and one dead-lettered webhook to redrive;
/// its base URL.
async fn served(env: &Env, processor: &FakeHttp) -> (TestApp, String) {
    seed::webhook(&env.db, Webhook { dead: true, retry_count: 3, ..Default::default() }).await;
    let mut vars = env.variables("http://127.0.0.1:9");
    vars.insert("webhook_processor_url".into(), format!("{}/hook", processor.url));
    vars.insert("webhook_processor_host".into(), processor.url.clone());
    let app = app("jobs-http", &vars).await;
    let base = match &app {
        TestApp::Spin(spin) => spin.url(),
        TestApp::Host(_) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(spin_test_host::serve(Arc::new(host_app("jobs-http", &vars)), listener));
            base
        }
    };
    (app, base)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_of_the_api_table_answers() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let (app, _) = served(&env, &processor).await;
    let routes = table_routes(&api_section());
    assert!(routes.len() >= 15, "the table was read: {routes:?}");
    for (method, path) in &routes {
        let r = call(&app, method, path, &[("x-cron-secret", SECRET)]).await;
        assert!(![404, 405].contains(&r.status), "{method} {path}: {} {}", r.status, r.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_curl_examples_run_as_written() {
    let env = Env::new().await;
    let processor = FakeHttp::start(|_| Canned::json(200, json!({}))).await;
    let (_app, base) = served(&env, &processor).await;
    let front_page = examples(&front_page_example());
    assert_eq!(front_page.len(), 2, "the README's example was read");
    let examples: Vec<Example> = examples(&api_section()).into_iter().chain(front_page).collect();
    assert!(examples.len() >= 9, "the examples were read");
    for example in &examples {
        let out = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &example.command])
            .env("SECRET", SECRET)
            .env("BASE", &base)
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {}", example.command, String::from_utf8_lossy(&out.stderr));
        let answer: Value =
            serde_json::from_str(&said).unwrap_or_else(|_| panic!("{}: {said}", example.command));
        assert_eq!(answer["success"], true, "{}: {answer}", example.command);
        if !example.documented.is_empty() {
            let documented: Value = serde_json::from_str(&example.documented)
                .unwrap_or_else(|e| panic!("the README's answer to {}is not JSON ({e})", example.command));
            assert_eq!(shape_of(&answer), shape_of(&documented), "{}", example.command);
        }
    }
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as dashes.
fn anchor_of(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor_of(line.trim_start_matches('#').trim()));
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_guides_resolves() {
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    assert!(pages.len() >= 10, "the guides: {pages:?}");
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in link_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            assert!(file.exists(), "{}: a link to {target}, which is not there", page.display());
            if !anchor.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&file).unwrap());
                assert!(
                    headings.contains(anchor),
                    "{}: no heading #{anchor} in {}",
                    page.display(),
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} links checked");
    // The front page stays one.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.lines().count() <= 250, "README.md is the front page: {} lines", readme.lines().count());
}

/// The targets of a Markdown text's links (`[label](target)`), code blocks left out.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let mut rest = if in_code { "" } else { line };
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}
