//! The Argo CD examples in gitops-examples/argocd. The health checks run
//! with Debian's lua5.1 (the Lua Argo CD embeds) on fixtures laid out as
//! Argo CD's own `resource_customizations/<group>/<Kind>/health_test.yaml`:
//! every case gives the status and message it promises, and the argocd-cm
//! snippet users paste carries exactly the tested script for each kind. The
//! example Applications point at paths that exist and retry with refresh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const KINDS: [&str; 3] = ["AddressPool", "LoadBalancerPolicy", "BGPPeer"];

fn dir() -> PathBuf {
    barelb_testsupport::repo_root().join("gitops-examples/argocd")
}

fn script() -> String {
    std::fs::read_to_string(dir().join("health/health.lua")).unwrap()
}

/// `v` as a Lua table constructor (arrays 1-based, so `ipairs` walks them).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// (status, message) the script returns for `obj`, as Argo CD calls it:
/// `obj` a global, the script's return value the health.
fn health(script: &str, obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(obj)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 (scripts/setup installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua5.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_string(), message.to_string())
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_gets_the_health_its_test_promises() {
    let script = script();
    let mut seen = std::collections::BTreeSet::new();
    for kind in KINDS {
        let base = dir().join("health/barelb.io").join(kind);
        let tests = yaml(&base.join("health_test.yaml"));
        let cases = tests["tests"].as_array().unwrap();
        assert!(cases.len() >= 4, "{kind}: too few cases");
        for case in cases {
            let input = case["inputPath"].as_str().unwrap();
            let obj = yaml(&base.join(input));
            assert_eq!(obj["kind"], kind, "{kind}/{input}");
            let want = &case["healthStatus"];
            let (status, message) = health(&script, &obj);
            assert_eq!(
                (status.as_str(), message.as_str()),
                (
                    want["status"].as_str().unwrap(),
                    want["message"].as_str().unwrap()
                ),
                "{kind}/{input}"
            );
            seen.insert(status);
        }
    }
    // Every branch is covered: in force, refused, and waiting.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["Degraded", "Healthy", "Progressing"]
    );
}

#[test]
fn the_argocd_cm_snippet_carries_the_tested_script_for_each_kind() {
    let cm = yaml(&dir().join("argocd-cm-health.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().unwrap();
    let script = script();
    for kind in KINDS {
        let key = format!("resource.customizations.health.barelb.io_{kind}");
        assert_eq!(
            data.get(&key).and_then(Value::as_str),
            Some(script.as_str()),
            "{key} differs from health/health.lua"
        );
    }
    assert_eq!(data.len(), KINDS.len(), "{:?}", data.keys());
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The pool repo's Application: waits for the CRDs, retries while the
/// webhook starts, and takes the newest commit on each retry.
fn check_pool_app(app: &Value) {
    let sync = &app["spec"]["syncPolicy"];
    assert_eq!(sync["retry"]["refresh"], true, "{app}");
    assert!(
        sync["syncOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "SkipDryRunOnMissingResource=true"),
        "{app}"
    );
    let path = app["spec"]["source"]["path"].as_str().unwrap();
    let dir = barelb_testsupport::repo_root()
        .join("gitops-examples/pool-repo")
        .join(path);
    assert!(
        dir.join("kustomization.yaml").is_file(),
        "{}",
        dir.display()
    );
}

#[test]
fn the_example_applications_install_the_chart_before_the_pools_and_retry_with_refresh() {
    let lab = documents(&dir().join("pool-repo-lab.yaml"));
    let app = lab.iter().find(|d| d["kind"] == "Application").unwrap();
    check_pool_app(app);
    let apps = documents(&dir().join("app-of-apps.yaml"));
    let wave = |a: &Value| {
        a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    let chart = apps
        .iter()
        .find(|a| a["metadata"]["name"] == "barelb-chart")
        .unwrap();
    let pools = apps
        .iter()
        .find(|a| a["metadata"]["name"] == "barelb-pools")
        .unwrap();
    assert!(wave(chart) < wave(pools));
    let path = chart["spec"]["source"]["path"].as_str().unwrap();
    assert!(
        barelb_testsupport::repo_root()
            .join(path)
            .join("Chart.yaml")
            .is_file(),
        "{path}"
    );
    check_pool_app(pools);
}
