//! A real Jaeger (v1.76.0's `jaeger`, built by `tests/lab build` from its Go
//! module into `target/jaeger/`): OTLP/gRPC in, in-memory storage, and the
//! query API the tests (and the demo's user) read traces from.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::argocd::free_port;
use crate::observability::curl;

/// The Jaeger binary `tests/lab build` makes.
pub fn binary() -> PathBuf {
    crate::repo_root().join("target/jaeger/jaeger")
}

/// A Jaeger process with its own configuration.
#[derive(Debug)]
pub struct Jaeger {
    /// Where barelb sends spans (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp: String,
    /// The query API and UI, on loopback.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

/// One span of a trace, as the query API gives it.
#[derive(Clone, Debug)]
pub struct Span {
    pub operation: String,
    /// The `service.name` of the process that made it.
    pub service: String,
    pub span_id: String,
    pub parent: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Span {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Jaeger {
    /// Starts Jaeger receiving OTLP/gRPC on `otlp_addr` (loopback, or the
    /// lab's own control-plane address so that Pods on the lab's nodes reach
    /// it) and answering queries on a free loopback port; waits until both
    /// listen.
    pub fn start(dir: PathBuf, otlp_addr: IpAddr) -> Jaeger {
        std::fs::create_dir_all(&dir).expect("jaeger directory");
        let (otlp_port, http, grpc) = (free_port(), free_port(), free_port());
        let otlp_host = match otlp_addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let config = format!(
            r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    traces:
      level: none
extensions:
  jaeger_query:
    # Jaeger traces its own queries to localhost:4317 unless told not to.
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{http}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {otlp_host}:{otlp_port}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
        );
        let conf = dir.join("jaeger.yaml");
        std::fs::write(&conf, config).expect("jaeger.yaml");
        let log = std::fs::File::create(dir.join("jaeger.log")).expect("jaeger.log");
        let child = Command::new(binary())
            .arg("--config")
            .arg(format!("file:{}", conf.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start target/jaeger/jaeger (tests/lab build makes it)");
        let j = Jaeger {
            otlp: format!("http://{otlp_host}:{otlp_port}"),
            url: format!("http://127.0.0.1:{http}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let otlp_sock = std::net::SocketAddr::new(otlp_addr, otlp_port);
        while curl(&[&format!("{}/api/services", j.url)]).is_none()
            || std::net::TcpStream::connect_timeout(&otlp_sock, Duration::from_millis(200)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "jaeger did not start: {}",
                j.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        j
    }

    /// `GET /api/PATH`'s `data` (an empty array when there is none).
    fn api(&self, path_and_query: &[&str]) -> Value {
        let body = curl(path_and_query).unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"].clone()
    }

    /// The services that sent spans.
    pub fn services(&self) -> Vec<String> {
        self.api(&[&format!("{}/api/services", self.url)])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    }

    /// Trace ids of the last hour's traces holding a span `operation` of
    /// `service` whose tags include every `tags` pair.
    pub fn find(&self, service: &str, operation: &str, tags: &[(&str, &str)]) -> Vec<String> {
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let url = format!("{}/api/traces", self.url);
        self.api(&[
            "-G",
            &url,
            "--data-urlencode",
            &format!("service={service}"),
            "--data-urlencode",
            &format!("operation={operation}"),
            "--data-urlencode",
            &format!("tags={}", Value::Object(tags)),
            "--data-urlencode",
            "lookback=1h",
            "--data-urlencode",
            "limit=50",
        ])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["traceID"].as_str().map(str::to_string))
        .collect()
    }

    /// Every span of trace `id`.
    pub fn trace(&self, id: &str) -> Vec<Span> {
        let data = self.api(&[&format!("{}/api/traces/{id}", self.url)]);
        let Some(trace) = data.as_array().and_then(|a| a.first()) else {
            return Vec::new();
        };
        let processes = &trace["processes"];
        trace["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Span {
                    operation: text(&s["operationName"]),
                    service: processes[s["processID"].as_str().unwrap_or_default()]["serviceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    span_id: text(&s["spanID"]),
                    parent: s["references"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["refType"] == "CHILD_OF")
                        .and_then(|r| r["spanID"].as_str().map(str::to_string)),
                    tags: s["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| (text(&t["key"]), text(&t["value"])))
                        .collect(),
                }
            })
            .collect()
    }

    pub fn log_tail(&self) -> String {
        crate::log_tail(&self.dir.join("jaeger.log"), 15)
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
