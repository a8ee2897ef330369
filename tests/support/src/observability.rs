//! barelb's shipped dashboards and alerts as tests read them, and a real
//! Prometheus (Debian's) to run their queries against: started on loopback
//! with a scrape configuration written for the test, stopped by PID on drop.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::repo_root;

/// deploy/prometheus/barelb.rules.yaml, parsed.
pub fn rules_file() -> Value {
    let path = repo_root().join("deploy/prometheus/barelb.rules.yaml");
    let text = std::fs::read_to_string(&path).expect("barelb.rules.yaml");
    serde_yaml::from_str(&text).expect("barelb.rules.yaml is YAML")
}

/// One dashboard of deploy/grafana/.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// Its file name, e.g. `barelb-overview.json`.
    pub file: String,
    pub json: Value,
}

/// Every dashboard in deploy/grafana/, by file name.
pub fn dashboards() -> Vec<Dashboard> {
    let dir = repo_root().join("deploy/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/grafana")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| Dashboard {
            file: p.file_name().unwrap_or_default().to_string_lossy().into(),
            json: serde_json::from_str(&std::fs::read_to_string(&p).expect("dashboard"))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect()
}

impl Dashboard {
    /// Every panel, also those inside collapsed rows.
    pub fn panels(&self) -> Vec<&Value> {
        let mut all = Vec::new();
        for p in self.json["panels"].as_array().into_iter().flatten() {
            all.push(p);
            all.extend(p["panels"].as_array().into_iter().flatten());
        }
        all
    }

    /// (panel title, query) of every query, with the template variables as
    /// Grafana substitutes them when "All" is chosen (`allValue`) and the
    /// interval variables as `interval`.
    pub fn queries(&self, interval: &str) -> Vec<(String, String)> {
        let vars: Vec<(String, String)> = self.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_string(),
                    v["allValue"].as_str().unwrap_or(".*").to_string(),
                )
            })
            .collect();
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let mut q = t["expr"].as_str().unwrap_or_default().to_string();
                for v in ["$__rate_interval", "$__interval", "$__range"] {
                    q = q.replace(v, interval);
                }
                for (name, all) in &vars {
                    q = q.replace(&format!("${{{name}}}"), all);
                    q = q.replace(&format!("${name}"), all);
                }
                out.push((p["title"].as_str().unwrap_or_default().to_string(), q));
            }
        }
        out
    }

    /// The barelb_ metrics its queries name.
    pub fn metric_names(&self) -> BTreeSet<String> {
        self.queries("5m")
            .iter()
            .flat_map(|(_, q)| metric_names(q))
            .collect()
    }
}

/// The `barelb_…` metric names in `text` (a query, a rules file).
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("barelb_") {
        let tail = &rest[i..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Not a metric: a word that only starts so (none today), or the
        // runbook anchors' lower-case alert names (barelbpool…), which
        // have no underscore after the prefix.
        names.insert(name.clone());
        rest = &tail[name.len().max(1)..];
    }
    names
}

/// The body of a GET to loopback (curl ARGS), or None when it failed.
pub(crate) fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10"])
        .args(args)
        .output()
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    // A failed query's body says why: keep it for the caller's message.
    (out.status.success() || body.starts_with('{')).then_some(body)
}

/// A Prometheus process with its own data directory.
#[derive(Debug)]
pub struct Prometheus {
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port with `config` (YAML) and
    /// waits until it is ready.
    pub fn start(dir: PathBuf, config: &str) -> Prometheus {
        std::fs::create_dir_all(dir.join("data")).expect("prometheus directory");
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let port = crate::argocd::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian's prometheus; scripts/setup installs it)");
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(&[&format!("{}/-/ready", p.url)]).is_none() {
            assert!(
                Instant::now() < deadline,
                "prometheus did not get ready: {}",
                p.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The result of an instant query, or panics with Prometheus' error.
    pub fn query(&self, q: &str) -> Vec<Value> {
        let url = format!("{}/api/v1/query", self.url);
        let body =
            curl(&["-G", &url, "--data-urlencode", &format!("query={q}")]).unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(v["status"], "success", "query {q}: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v1/PATH`'s `data`.
    pub fn api(&self, path: &str) -> Value {
        let body = curl(&[&format!("{}/api/v1/{path}", self.url)]).unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// The scrape targets' health, as (scrape URL, health, last error).
    pub fn targets(&self) -> Vec<(String, String, String)> {
        let body = curl(&[&format!("{}/api/v1/targets", self.url)]).unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("scrapeUrl"), s("health"), s("lastError"))
            })
            .collect()
    }

    pub fn log_tail(&self) -> String {
        crate::log_tail(&self.dir.join("prometheus.log"), 15)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}
