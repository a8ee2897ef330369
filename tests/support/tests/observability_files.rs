//! The dashboards and alerts barelb ships, checked offline: promtool checks
//! the rules and runs their unit tests (each alert fires in one case and
//! stays quiet in another), every alert links a runbook that exists, the
//! copies (PrometheusRule, the chart's files, the dashboards' ConfigMap)
//! match their sources, and the dashboards follow Grafana's conventions so
//! they import with no edits. The lab test `lab_observability` proves the
//! queries against a real Prometheus.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::process::Command;

use barelb_testsupport::lab::output_text;
use barelb_testsupport::observability::{Dashboard, dashboards, rules_file};
use barelb_testsupport::repo_root;
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool (Debian's prometheus; scripts/setup installs it): {e}")
        });
    assert!(
        out.status.success(),
        "promtool {args:?}: {}",
        output_text(&out)
    );
    output_text(&out)
}

fn alerts() -> Vec<Value> {
    rules_file()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_quiet_in_its_unit_tests() {
    for file in [
        "deploy/prometheus/barelb.rules.yaml",
        "deploy/helm/barelb/files/barelb.rules.yaml",
    ] {
        promtool(&["check", "rules", file]);
    }
    promtool(&[
        "test",
        "rules",
        "deploy/prometheus/tests/barelb.rules.test.yaml",
    ]);
    let tests = yaml("deploy/prometheus/tests/barelb.rules.test.yaml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let fires = cases.iter().any(|c| {
            c["alertname"] == name && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())
        });
        let quiet = cases.iter().any(|c| {
            c["alertname"] == name && c["exp_alerts"].as_array().is_some_and(Vec::is_empty)
        });
        assert!(
            fires && quiet,
            "{name}: needs a case where it fires and one where it does not (fires {fires}, quiet {quiet})"
        );
    }
}

#[test]
fn every_alert_says_what_and_which_and_links_a_runbook_that_exists() {
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let base = "https://github.com/barelb/barelb/blob/main/docs/runbooks.md#";
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let a = &alert["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                a[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = a["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {base}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: docs/runbooks.md has no section `## {name}`"
        );
        assert!(
            alert["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
    }
}

#[test]
fn the_prometheus_rule_the_chart_and_the_configmap_carry_the_same_rules_and_dashboards() {
    let rules = rules_file();
    assert_eq!(
        yaml("deploy/prometheus/prometheusrule.yaml")["spec"],
        rules,
        "deploy/prometheus/prometheusrule.yaml: its spec must be barelb.rules.yaml"
    );
    assert_eq!(
        read("deploy/helm/barelb/files/barelb.rules.yaml"),
        read("deploy/prometheus/barelb.rules.yaml"),
        "copy deploy/prometheus/barelb.rules.yaml to deploy/helm/barelb/files/"
    );
    let cm = yaml("deploy/grafana/barelb-dashboards.configmap.yaml");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = cm["data"].as_object().unwrap();
    let shipped: Vec<Dashboard> = dashboards();
    assert_eq!(data.len(), shipped.len(), "{:?}", data.keys());
    for d in &shipped {
        let in_cm: Value = serde_json::from_str(data[&d.file].as_str().unwrap()).unwrap();
        assert_eq!(in_cm, d.json, "the ConfigMap's {} differs", d.file);
        assert_eq!(
            read(&format!("deploy/helm/barelb/files/grafana/{}", d.file)),
            read(&format!("deploy/grafana/{}", d.file)),
            "copy deploy/grafana/{} to deploy/helm/barelb/files/grafana/",
            d.file
        );
    }
}

fn datasource_is_the_variable(what: &str, ds: &Value) {
    assert_eq!(
        ds,
        &serde_json::json!({"type": "prometheus", "uid": "${datasource}"}),
        "{what}: the datasource must be the $datasource variable (no hard-coded uid)"
    );
}

#[test]
fn the_dashboards_import_with_no_edits() {
    let shipped = dashboards();
    assert_eq!(
        shipped
            .iter()
            .map(|d| d.json["title"].clone())
            .collect::<Vec<_>>(),
        ["barelb / Node", "barelb / Overview"]
    );
    let mut uids = BTreeSet::new();
    for d in &shipped {
        let j = &d.json;
        let file = &d.file;
        assert!(
            j["uid"]
                .as_str()
                .is_some_and(|u| u.len() <= 40 && uids.insert(u.to_string())),
            "{file}: a uid of its own"
        );
        assert!(
            j["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
            "{file}: schemaVersion"
        );
        assert!(
            j.get("id").is_none_or(Value::is_null),
            "{file}: no instance id"
        );
        let vars = j["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("a datasource variable");
        assert_eq!(
            (&ds["type"], &ds["query"]),
            (&"datasource".into(), &"prometheus".into()),
            "{file}"
        );
        let mut names: BTreeSet<String> = ["__rate_interval", "__interval", "__range"]
            .map(String::from)
            .into();
        for v in vars.iter().filter(|v| v["name"] != "datasource") {
            let name = v["name"].as_str().unwrap();
            datasource_is_the_variable(&format!("{file} variable {name}"), &v["datasource"]);
            assert!(
                v["definition"]
                    .as_str()
                    .unwrap()
                    .starts_with("label_values("),
                "{file} ${name}: from label_values"
            );
            names.insert(name.to_string());
        }
        let mut ids = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap();
            let what = format!("{file} panel {title:?}");
            assert!(
                ids.insert(p["id"].as_u64().expect("a panel id")),
                "{what}: its id is taken"
            );
            assert!(p["gridPos"]["w"].as_u64().is_some(), "{what}: gridPos");
            if p["type"] == "row" {
                continue;
            }
            datasource_is_the_variable(&what, &p["datasource"]);
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{what}: no unit"
            );
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: no description"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{what}: no query");
            for t in targets {
                datasource_is_the_variable(&what, &t["datasource"]);
                let expr = t["expr"].as_str().unwrap();
                for var in expr.split('$').skip(1) {
                    let var: String = var
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        names.contains(&var),
                        "{what}: ${var} is not a variable of the dashboard"
                    );
                }
            }
        }
    }
}

#[test]
fn every_metric_a_dashboard_or_alert_names_is_one_the_code_registers() {
    // The names registered in the operator's and speaker's registries
    // (prefix barelb_; counters end _total, histograms in seconds).
    let mut registered = BTreeSet::new();
    for file in [
        "operator/src/metrics.rs",
        "speaker/src/metrics/l2.rs",
        "speaker/src/metrics/bgp.rs",
    ] {
        let text = read(file);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("registry.register") {
            rest = &rest[i..];
            let unit = rest.starts_with("registry.register_with_unit");
            let name = rest.split('"').nth(1).unwrap();
            let block = &rest[..rest.find(");").unwrap()];
            let field = block
                .trim_end()
                .rsplit("m.")
                .next()
                .unwrap()
                .trim_end_matches(',')
                .trim_end_matches(".clone()")
                .trim();
            let kind = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("pub {field}:")))
                .unwrap_or_else(|| panic!("{file}: field {field}"));
            let full = format!("barelb_{name}{}", if unit { "_seconds" } else { "" });
            if kind.contains("Counter") {
                registered.insert(format!("{full}_total"));
            } else if kind.contains("Histogram") {
                for s in ["", "_bucket", "_sum", "_count"] {
                    registered.insert(format!("{full}{s}"));
                }
            } else {
                registered.insert(full);
            }
            rest = &rest[1..];
        }
    }
    assert!(registered.len() > 30, "{registered:?}");
    let mut named = barelb_testsupport::observability::metric_names(&read(
        "deploy/prometheus/barelb.rules.yaml",
    ));
    for d in dashboards() {
        named.extend(d.metric_names());
    }
    let unknown: Vec<&String> = named.difference(&registered).collect();
    assert!(unknown.is_empty(), "named but not exported: {unknown:?}");
}
