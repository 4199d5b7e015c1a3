//! Reading Kubernetes objects (and compose services) out of parsed YAML.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

/// The documents of a YAML file, empty ones (comments only) left out.
pub fn load(file: &str, text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|err| panic!("{file} is not valid YAML: {err}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// A string field, or a panic naming `what`.
pub fn string<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, found {node:?}"))
}

pub fn integer(node: &Yaml, what: &str) -> i64 {
    node.as_i64()
        .unwrap_or_else(|| panic!("{what} should be an integer, found {node:?}"))
}

pub fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    match node {
        Yaml::Array(items) => items,
        Yaml::BadValue => &[],
        other => panic!("{what} should be a list, found {other:?}"),
    }
}

/// A map of strings to strings (labels, annotations, selectors); the API
/// server refuses any other value, such as an unquoted `true` or `9090`.
pub fn string_map(node: &Yaml, what: &str) -> BTreeMap<String, String> {
    let Some(hash) = node.as_hash() else {
        panic!("{what} should be a map, found {node:?}");
    };
    hash.iter()
        .map(|(key, value)| {
            let key = string(key, what).to_owned();
            let value = string(value, &format!("{what}.{key}")).to_owned();
            (key, value)
        })
        .collect()
}

/// Whether `selector` (non-empty) picks pods carrying `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// The containers of a pod spec, native sidecars (init containers) first.
pub fn containers(pod: &Yaml) -> Vec<&Yaml> {
    list(&pod["initContainers"], "initContainers")
        .iter()
        .chain(list(&pod["containers"], "containers"))
        .collect()
}

pub fn name(container: &Yaml) -> &str {
    string(&container["name"], "a container's name")
}

/// A list of strings: a container's `command`, a probe's `exec.command`.
pub fn strings(node: &Yaml, what: &str) -> Vec<String> {
    list(node, what)
        .iter()
        .map(|item| string(item, what).to_owned())
        .collect()
}

/// Whether this container runs sessiond (its command says so).
pub fn runs_sessiond(container: &Yaml) -> bool {
    strings(&container["command"], "command")
        .first()
        .map(String::as_str)
        == Some("sessiond")
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Value(String),
    Secret { name: String, key: String },
}

pub fn env(container: &Yaml) -> Vec<(String, EnvSource)> {
    let who = name(container);
    list(&container["env"], "env")
        .iter()
        .map(|var| {
            let var_name = string(&var["name"], "env name").to_owned();
            let what = format!("container {who}, env {var_name}");
            let source = if !var["value"].is_badvalue() {
                // Kubernetes takes only strings here: `value: 2` is refused.
                EnvSource::Value(string(&var["value"], &what).to_owned())
            } else {
                let secret = &var["valueFrom"]["secretKeyRef"];
                EnvSource::Secret {
                    name: string(&secret["name"], &what).to_owned(),
                    key: string(&secret["key"], &what).to_owned(),
                }
            };
            (var_name, source)
        })
        .collect()
}

/// The literal values of `env`.
pub fn env_values(env: &[(String, EnvSource)]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|(name, source)| match source {
            EnvSource::Value(value) => Some((name.clone(), value.clone())),
            EnvSource::Secret { .. } => None,
        })
        .collect()
}

/// The container port called `port_name`.
pub fn port(container: &Yaml, port_name: &str) -> Option<i64> {
    list(&container["ports"], "ports")
        .iter()
        .find(|port| port["name"].as_str() == Some(port_name))
        .map(|port| integer(&port["containerPort"], "containerPort"))
}

/// The volume mounted at `mount_path`, and that volume's definition.
pub fn volume_at<'a>(pod: &'a Yaml, container: &'a Yaml, mount_path: &str) -> Option<&'a Yaml> {
    let mount = list(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|mount| mount["mountPath"].as_str() == Some(mount_path))?;
    let volume_name = string(&mount["name"], "volumeMounts name");
    list(&pod["volumes"], "volumes")
        .iter()
        .find(|volume| volume["name"].as_str() == Some(volume_name))
}

/// A field set on the container's securityContext, else on the pod's.
pub fn security<'a>(pod: &'a Yaml, container: &'a Yaml, field: &str) -> &'a Yaml {
    let own = &container["securityContext"][field];
    if own.is_badvalue() {
        &pod["securityContext"][field]
    } else {
        own
    }
}

/// Every probe of a container, by kind (`readinessProbe`, …).
pub fn probes(container: &Yaml) -> Vec<(&'static str, &Yaml)> {
    ["startupProbe", "readinessProbe", "livenessProbe"]
        .into_iter()
        .filter(|kind| !container[*kind].is_badvalue())
        .map(|kind| (kind, &container[kind]))
        .collect()
}
