//! What the host reads from `spin.toml` (manifest version 2), resolved the way Spin 3.5 does:
//! application variables (required or defaulted, overridden by `--variable`-style values and
//! `SPIN_VARIABLE_<NAME>`), component variables as `{{ name }}` templates over them, and the
//! component's `allowed_outbound_hosts`, templates included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::allowed::AllowedHosts;

#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    variables: HashMap<String, AppVariable>,
    components: HashMap<String, ComponentDecl>,
    pub http_routes: Vec<(String, String)>,
    pub cron_triggers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct AppVariable {
    default: Option<String>,
    required: bool,
}

#[derive(Debug, Clone)]
struct ComponentDecl {
    source: String,
    variables: HashMap<String, String>,
    allowed_outbound_hosts: Vec<String>,
}

impl Manifest {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Table = text.parse().context("spin.toml is not TOML")?;
        if doc.get("spin_manifest_version").and_then(|v| v.as_integer()) != Some(2) {
            bail!("spin.toml must have spin_manifest_version = 2");
        }
        let mut variables = HashMap::new();
        for (name, decl) in doc.get("variables").and_then(|v| v.as_table()).into_iter().flatten() {
            check_variable_name(name)?;
            let default = decl.get("default").and_then(|v| v.as_str()).map(str::to_owned);
            let required = decl.get("required").and_then(|v| v.as_bool()).unwrap_or(false);
            if required == default.is_some() {
                bail!("variable {name}: exactly one of `default` and `required = true` must be given");
            }
            variables.insert(name.clone(), AppVariable { default, required });
        }
        let mut components = HashMap::new();
        for (id, decl) in doc.get("component").and_then(|v| v.as_table()).into_iter().flatten() {
            let source = decl
                .get("source")
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow!("component {id}: source must be a path"))?
                .to_owned();
            let mut vars = HashMap::new();
            for (name, v) in decl.get("variables").and_then(|v| v.as_table()).into_iter().flatten() {
                check_variable_name(name)?;
                let v =
                    v.as_str().ok_or_else(|| anyhow!("component {id}: variable {name} must be a string"))?;
                vars.insert(name.clone(), v.to_owned());
            }
            let allowed = decl
                .get("allowed_outbound_hosts")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("component {id}: host must be a string"))
                })
                .collect::<Result<Vec<_>>>()?;
            components.insert(
                id.clone(),
                ComponentDecl { source, variables: vars, allowed_outbound_hosts: allowed },
            );
        }
        let triggers = doc.get("trigger").and_then(|v| v.as_table());
        let list = |kind: &str, key: &str| -> Result<Vec<(String, String)>> {
            triggers
                .and_then(|t| t.get(kind))
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .map(|t| {
                    let component = t.get("component").and_then(|v| v.as_str());
                    let value = t.get(key).and_then(|v| v.as_str());
                    match (component, value) {
                        (Some(c), Some(v)) => Ok((v.to_owned(), c.to_owned())),
                        _ => Err(anyhow!("[[trigger.{kind}]] needs component and {key}")),
                    }
                })
                .collect()
        };
        let manifest = Self {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            variables,
            http_routes: list("http", "route")?,
            cron_triggers: list("cron", "cron_expression")?,
            components,
        };
        for (expr, component) in &manifest.cron_triggers {
            check_cron_expression(expr).with_context(|| format!("cron trigger for {component}"))?;
        }
        for (_, component) in manifest.http_routes.iter().chain(&manifest.cron_triggers) {
            if !manifest.components.contains_key(component) {
                bail!("trigger names unknown component {component}");
            }
        }
        Ok(manifest)
    }

    /// The names of the application variables (`[variables]`).
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// The `[[trigger.http]]` routes served by `component`.
    pub fn routes_of(&self, component: &str) -> Vec<String> {
        self.http_routes.iter().filter(|(_, c)| c == component).map(|(route, _)| route.clone()).collect()
    }

    pub fn component_ids(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    pub fn component_source(&self, id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(&self.component(id)?.source))
    }

    fn component(&self, id: &str) -> Result<&ComponentDecl> {
        self.components.get(id).ok_or_else(|| anyhow!("no component {id} in spin.toml"))
    }

    /// Resolves everything a component instance needs, failing like `spin up` does at startup
    /// when a required variable has no value or an allowed host is malformed.
    pub fn resolve(
        &self,
        component_id: &str,
        overrides: &HashMap<String, String>,
    ) -> Result<ResolvedComponent> {
        self.resolve_with_env(component_id, overrides, |name| std::env::var(name).ok())
    }

    /// [`Manifest::resolve`] with `env` in place of the process environment (`SPIN_VARIABLE_*`).
    pub fn resolve_with_env(
        &self,
        component_id: &str,
        overrides: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedComponent> {
        let component = self.component(component_id)?;
        let mut app_values = HashMap::new();
        for (name, decl) in &self.variables {
            let value = overrides
                .get(name)
                .cloned()
                .or_else(|| env(&format!("SPIN_VARIABLE_{}", name.to_uppercase())))
                .or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    app_values.insert(name.clone(), v);
                }
                None if decl.required => bail!("no value for required variable {name:?}"),
                None => {}
            }
        }
        for name in overrides.keys() {
            if !self.variables.contains_key(name) {
                bail!("variable {name:?} is not declared in spin.toml");
            }
        }
        let mut variables = HashMap::new();
        for (name, template) in &component.variables {
            variables.insert(name.clone(), render(template, &app_values)?);
        }
        // Literal entries are checked at startup, as `spin up` does; templated ones only when the
        // component dials out.
        let literal: Vec<String> =
            component.allowed_outbound_hosts.iter().filter(|t| !t.contains("{{")).cloned().collect();
        AllowedHosts::parse(&literal)?;
        let hosts = component
            .allowed_outbound_hosts
            .iter()
            .map(|t| render(t, &app_values))
            .collect::<Result<Vec<_>>>()?;
        Ok(ResolvedComponent { variables, allowed: AllowedHosts::parse_resolved(&hosts) })
    }
}

pub struct ResolvedComponent {
    pub variables: HashMap<String, String>,
    pub allowed: AllowedHosts,
}

/// Spin's variable names: lower-case letters, digits and single underscores, starting with a letter.
fn check_variable_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !ok {
        bail!("invalid variable name {name:?}");
    }
    Ok(())
}

/// `{{ name }}` substitution; an unknown name is an error, as in Spin.
fn render(template: &str, values: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end =
            rest[start..].find("}}").ok_or_else(|| anyhow!("unclosed template in {template:?}"))? + start;
        let name = rest[start + 2..end].trim();
        let value = values
            .get(name)
            .ok_or_else(|| anyhow!("template {template:?}: no value for variable {name:?}"))?;
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The cron plugin's syntax: 6 or 7 fields, seconds first. A classic 5-field expression makes
/// `spin up` exit with `ParseSchedule`, and so it fails here.
/// Whether Spin's HTTP trigger sends `path` to a component with `route`: `/x/...` takes `/x` and
/// everything under it, any other route its path alone; a trailing slash makes no difference.
pub fn route_matches(route: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    match route.strip_suffix("/...") {
        Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
        None => path == route.trim_end_matches('/'),
    }
}

fn check_cron_expression(expr: &str) -> Result<()> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        bail!("ParseSchedule: {expr:?} has {fields} fields; the cron trigger wants 6 or 7 (seconds first)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_and_refuses_unknown() {
        let vals = HashMap::from([("a".to_string(), "x".to_string())]);
        assert_eq!(render("pre {{ a }}-{{a}}", &vals).unwrap(), "pre x-x");
        assert!(render("{{ b }}", &vals).is_err());
    }

    fn write_manifest(body: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("spin-{}-{}.toml", std::process::id(), body.len()));
        std::fs::write(&path, format!("spin_manifest_version = 2\n{body}")).unwrap();
        path
    }

    #[test]
    fn routes_match_as_spin_routes_them() {
        for (route, path, served) in [
            ("/api/v1/jobs/...", "/api/v1/jobs", true),
            ("/api/v1/jobs/...", "/api/v1/jobs/ui/app.js", true),
            ("/api/v1/jobs/...", "/api/v1/jobsx", false),
            ("/api/v1/metrics", "/api/v1/metrics", true),
            ("/api/v1/metrics", "/api/v1/metrics/", true),
            ("/api/v1/metrics", "/api/v1/metrics/x", false),
            ("/api/v1/metrics", "/api/v1/jobs", false),
            ("/...", "/anything/at/all", true),
        ] {
            assert_eq!(route_matches(route, path), served, "{route} {path}");
        }
    }

    #[test]
    fn variables_resolve_like_spin() {
        let path = write_manifest(
            r#"
[variables]
zz_required = { required = true }
zz_env = { default = "from-default" }
zz_override = { default = "from-default" }
zz_plain = { default = "from-default" }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
allowed_outbound_hosts = ["http://{{ zz_plain }}.example:8080"]
[component.c.variables]
all = "{{ zz_required }}/{{ zz_env }}/{{ zz_override }}/{{ zz_plain }}"
"#,
        );
        let m = Manifest::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // Safety of set_var: the variable name is used by this test alone.
        unsafe {
            std::env::set_var("SPIN_VARIABLE_ZZ_ENV", "from-env");
            std::env::set_var("SPIN_VARIABLE_ZZ_OVERRIDE", "from-env");
        }
        let overrides = HashMap::from([
            ("zz_required".to_string(), "given".to_string()),
            ("zz_override".to_string(), "from-flag".to_string()),
        ]);
        let c = m.resolve("c", &overrides).unwrap();
        assert_eq!(c.variables["all"], "given/from-env/from-flag/from-default");
        assert!(c.allowed.allows("http://from-default.example:8080/x"));
        assert!(
            m.resolve("c", &HashMap::new()).is_err(),
            "a required variable without a value stops startup"
        );
    }

    #[test]
    fn five_field_cron_refused() {
        assert!(check_cron_expression("0 2 * * *").is_err());
        assert!(check_cron_expression("0 0 2 * * *").is_ok());
    }

    #[test]
    fn variable_names() {
        assert!(check_variable_name("cron_secret").is_ok());
        assert!(check_variable_name("CronSecret").is_err());
        assert!(check_variable_name("a__b").is_err());
    }
}
