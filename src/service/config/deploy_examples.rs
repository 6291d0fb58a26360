//! The configurations `deploy/` ships load as `serve` loads them: the
//! Kubernetes ConfigMap's `config.toml`, and the ECS task definition's
//! `IVS_AUTH__SECTION__KEY` variables, written as the file they stand for.
//! `.ci/deploy_check.py` checks the manifests themselves.

use std::fmt::Write as _;
use std::path::Path;

use super::{Config, IvsMode};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn load(toml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, toml).unwrap();
    Config::load(Some(&file)).unwrap_or_else(|e| panic!("{e}\n--- the file:\n{toml}"))
}

/// The block scalar under `config.toml: |`, unindented.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "config.toml: |")
        .skip(1)
        .peekable();
    let first = lines.peek().expect("a config.toml: | block");
    let indent = first.len() - first.trim_start().len();
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A stand-in for the Secret's admin-token-sha256 (any hash but the empty string's).
const ADMIN_HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn the_kubernetes_configmap_loads() {
    let toml = configmap_toml(&read("deploy/kubernetes/configmap.yaml"));
    // deployment.yaml sets admin.token_sha256 from the Secret.
    let toml = toml.replacen(
        "[admin]\n",
        &format!("[admin]\ntoken_sha256 = \"{ADMIN_HASH}\"\n"),
        1,
    );
    let config = load(&toml);
    assert_eq!(config.ivs.mode, IvsMode::Aws);
    assert!(config.admin.is_some());
}

#[test]
fn the_ecs_task_definitions_environment_loads() {
    let task: serde_json::Value =
        serde_json::from_str(&read("deploy/ecs/task-definition.json")).unwrap();
    let container = &task["containerDefinitions"][0];
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let environment = container["environment"].as_array().unwrap();
    // The secret's value comes from Secrets Manager at run time.
    let secrets = container["secrets"].as_array().unwrap().iter().map(|s| {
        (
            s["name"].as_str().unwrap(),
            "a-stand-in-for-the-secret-at-least-32-bytes",
        )
    });
    let variables = environment
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .chain(secrets);
    for (name, value) in variables {
        let Some(key) = name.strip_prefix("IVS_AUTH__") else {
            continue;
        };
        let (section, key) = key
            .to_lowercase()
            .split_once("__")
            .map(|(s, k)| (s.to_owned(), k.to_owned()))
            .unwrap();
        // As figment's Env provider reads a value: a number or boolean, else a string.
        let value = if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
            value.to_owned()
        } else {
            serde_json::Value::from(value).to_string()
        };
        match sections.iter_mut().find(|(s, _)| *s == section) {
            Some((_, keys)) => keys.push((key, value)),
            None => sections.push((section, vec![(key, value)])),
        }
    }
    let mut toml = String::new();
    for (section, keys) in &sections {
        writeln!(toml, "[{section}]").unwrap();
        for (key, value) in keys {
            writeln!(toml, "{key} = {value}").unwrap();
        }
    }
    let config = load(&toml);
    assert_eq!(config.ivs.mode, IvsMode::Aws);
}
