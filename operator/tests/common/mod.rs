//! Shared helpers for the operator's lab tests: each test gets its own
//! load-balancer class, pool label, application namespace and operator
//! namespace, so tests run in parallel against one real apiserver without
//! seeing each other's objects.
#![allow(dead_code, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod control;
pub mod tls;
pub mod webhook;

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use barelb_core::names::CLEANUP_FINALIZER;
use barelb_testsupport::lab::{DeleteOnDrop, Lab, lab, lab_dir, output_text};
use barelb_testsupport::unique_name;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

pub const TEST_LABEL: &str = "barelb.io/test";

/// One test's private slice of the lab.
pub struct Instance {
    pub lab: Lab,
    pub client: kube::Client,
    pub id: String,
    pub class: String,
    pub ns: String,
    guards: Vec<DeleteOnDrop>,
    operators: usize,
}

/// A running barelb-operator process, killed on drop.
pub struct Operator {
    child: Child,
    pub log: std::path::PathBuf,
}

impl Operator {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGKILL: a crash, no graceful hand-over.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// SIGTERM, as a rolling restart stops it (it hands its Lease over),
    /// then waits up to 15 s for it to exit before killing it.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Instance {
    /// Runs before the guards delete the namespaces. The operators made
    /// from this instance are gone by now (dropped first), so the cleanup
    /// finalizers they put on the test's Services would hold those
    /// namespaces' deletion in the shared lab for good: taken off here.
    fn drop(&mut self) {
        // A test's webhook (failurePolicy Fail in some) would refuse the
        // patches below with its operator gone: it goes first.
        let _ = self.lab.kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            &format!("barelb-{}", self.id),
            "--ignore-not-found",
        ]);
        let listed = self.lab.kubectl(&[
            "get",
            "services",
            "--all-namespaces",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name} {.metadata.finalizers}{"\n"}{end}"#,
        ]);
        let prefix = format!("{}-", self.id);
        let text = String::from_utf8_lossy(&listed.stdout);
        for line in text.lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(ns), Some(name), Some(finalizers)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if ns.starts_with(&prefix) && finalizers.contains(CLEANUP_FINALIZER) {
                let patch = serde_json::json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [CLEANUP_FINALIZER]}});
                let _ = self.lab.kubectl(&[
                    "-n",
                    ns,
                    "patch",
                    "service",
                    name,
                    "--type=strategic",
                    "-p",
                    &patch.to_string(),
                ]);
            }
        }
    }
}

impl Instance {
    pub async fn new(test: &str) -> Self {
        let lab = lab(test);
        lab.install_crds();
        let id = unique_name("t");
        let ns = format!("{id}-app");
        let out = lab.kubectl(&["create", "namespace", &ns]);
        assert!(out.status.success(), "{}", output_text(&out));
        // The label scopes this test's webhook (namespaceSelector) to its namespaces.
        let out = lab.kubectl(&["label", "namespace", &ns, &format!("{TEST_LABEL}={id}")]);
        assert!(out.status.success(), "{}", output_text(&out));
        let guards = vec![
            lab.delete_on_drop("namespace", &ns, &[]),
            lab.delete_on_drop("namespace", &format!("{id}-op"), &[]),
        ];
        let client = lab.client().await.expect("lab client");
        Instance {
            class: format!("test.barelb.io/{id}"),
            lab,
            client,
            id,
            ns,
            guards,
            operators: 0,
        }
    }

    /// Starts an operator that serves only this test's class and pools.
    pub fn operator(&mut self, extra: &[&str]) -> Operator {
        self.operator_at("127.0.0.1:0", extra)
    }

    /// Starts an operator that also serves the admission webhook on a free
    /// loopback port, registered as `barelb-<id>` for this test's namespaces
    /// and objects only (failurePolicy Ignore unless `extra` says otherwise,
    /// so a test that fails never leaves a webhook blocking the lab).
    /// Returns the operator and the webhook's configuration name.
    pub fn webhook_operator(&mut self, metrics_addr: &str, extra: &[&str]) -> (Operator, String) {
        let addr = free_local_addr();
        let name = format!("barelb-{}", self.id);
        let selector = format!("{TEST_LABEL}={}", self.id);
        // Deleted first on drop: before the pools and namespaces it guards.
        self.guards.insert(
            0,
            self.lab
                .delete_on_drop("validatingwebhookconfiguration", &name, &[]),
        );
        let mut args: Vec<&str> = vec![
            "--webhook=true",
            "--webhook-addr",
            &addr,
            "--webhook-config-name",
            &name,
            "--webhook-namespace-selector",
            &selector,
            "--webhook-object-selector",
            &selector,
        ];
        let url = format!("https://{addr}");
        args.extend(["--webhook-url", &url]);
        if !extra
            .iter()
            .any(|a| a.starts_with("--webhook-failure-policy"))
        {
            args.extend(["--webhook-failure-policy", "Ignore"]);
        }
        args.extend(extra);
        let op = self.operator_at(metrics_addr, &args);
        (op, name)
    }

    /// Waits until the apiserver routes this test's Services to the webhook:
    /// a server-side dry run naming a pool that does not exist is refused.
    pub fn wait_webhook(&self) {
        let probe = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: probe, namespace: {ns}, annotations: {{barelb.io/pool: no-such-pool}}}}\nspec: {{type: LoadBalancer, loadBalancerClass: {class}, ports: [{{port: 80}}]}}\n",
            ns = self.ns,
            class = self.class
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.lab.apply_args(&probe, &["--dry-run=server"]);
            if !out.status.success() && output_text(&out).contains("no-such-pool") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook never answered: {}",
                output_text(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Like [`Instance::operator`], serving metrics on `metrics_addr`.
    pub fn operator_at(&mut self, metrics_addr: &str, extra: &[&str]) -> Operator {
        let cmd = Command::new(env!("CARGO_BIN_EXE_barelb-operator"));
        self.spawn_operator(cmd, metrics_addr, extra)
    }

    /// Like [`Instance::operator_at`], inside network namespace `ns`
    /// (where a relay must bring the apiserver to 127.0.0.1).
    pub fn operator_in(
        &mut self,
        ns: &barelb_testsupport::netlab::Netns,
        metrics_addr: &str,
        extra: &[&str],
    ) -> Operator {
        let cmd = ns.command(env!("CARGO_BIN_EXE_barelb-operator"));
        self.spawn_operator(cmd, metrics_addr, extra)
    }

    fn spawn_operator(&mut self, mut cmd: Command, metrics_addr: &str, extra: &[&str]) -> Operator {
        self.operators += 1;
        let logs = lab_dir().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{}-operator-{}.log", self.id, self.operators));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .args([
                "--load-balancer-class",
                &self.class,
                "--handle-classless=false",
                "--pool-selector",
                &format!("{TEST_LABEL}={}", self.id),
                "--namespace",
                &format!("{}-op", self.id),
                "--metrics-addr",
                metrics_addr,
                "--identity",
                &format!("{}-{}", self.id, self.operators),
            ])
            // The webhook is opt-in for tests (see webhook_operator): most
            // tests exercise the allocator, which must hold without it.
            .args(if extra.iter().any(|a| a.starts_with("--webhook")) {
                &[][..]
            } else {
                &["--webhook=false"][..]
            })
            // So is the control channel (lab_control.rs turns it on).
            .args(if extra.iter().any(|a| a.starts_with("--control")) {
                &[][..]
            } else {
                &["--control=false"][..]
            })
            .args(extra)
            .env("KUBECONFIG", &self.lab.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("BARELB_TEST_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn barelb-operator");
        Operator { child, log }
    }

    /// Deletes `resource/name` when the test ends.
    pub fn guard(&mut self, resource: &str, name: &str) {
        self.guards
            .push(self.lab.delete_on_drop(resource, name, &[]));
    }

    /// A Pod in `ns`, force-deleted on drop: no kubelet in the lab confirms
    /// a graceful deletion, and its namespace would stay Terminating.
    pub fn guard_pod(&mut self, ns: &str, pod: &str) {
        self.guards.push(self.lab.delete_on_drop(
            "pod",
            pod,
            &["-n", ns, "--force", "--grace-period=0"],
        ));
    }

    /// Applies an AddressPool labelled for this test; deleted on drop.
    pub fn pool(&mut self, name: &str, spec: &str) -> String {
        let full = format!("{}-{name}", self.id);
        let yaml = format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata:\n  name: {full}\n  labels: {{{TEST_LABEL}: {}}}\nspec: {spec}\n",
            self.id
        );
        let out = self.lab.apply(&yaml);
        assert!(out.status.success(), "pool {full}: {}", output_text(&out));
        self.guards
            .push(self.lab.delete_on_drop("addresspool", &full, &[]));
        full
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a LoadBalancer Service of this test's class. `spec` and
    /// `annotations` are merged into a minimal one (port 80/TCP).
    pub async fn service(&self, name: &str, spec: Value, annotations: Value) {
        let mut full_spec = json!({"type": "LoadBalancer", "loadBalancerClass": self.class, "ports": [{"port": 80}]});
        merge(&mut full_spec, spec);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": full_spec,
        }))
        .unwrap();
        self.services()
            .create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("create service {name}: {e}"));
    }

    pub async fn delete_service(&self, name: &str) {
        self.services()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// Polls until the Service is gone (30 s): a deletion the cleanup
    /// finalizer held until the operator released the Service.
    pub async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(svc) = self.services().get_opt(name).await.unwrap() {
            assert!(
                Instant::now() < deadline,
                "service {name}: still there 30 s after its deletion; finalizers {:?}",
                svc.metadata.finalizers
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, name: &str) -> Service {
        self.services().get(name).await.unwrap()
    }

    /// Polls until `pred` holds for the Service (30 s), returning it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Service) -> bool,
    ) -> Service {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let svc = self.get(name).await;
            if pred(&svc) {
                return svc;
            }
            if Instant::now() > deadline {
                panic!(
                    "service {name}: timed out waiting for {what}; status: {:?}",
                    svc.status
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the Service has exactly `n` addresses; returns them.
    pub async fn wait_ips(&self, name: &str, n: usize) -> Vec<IpAddr> {
        let svc = self
            .wait_for(name, &format!("{n} address(es)"), |s| {
                ips(s).len() == n && allocated(s).is_some()
            })
            .await;
        ips(&svc)
    }

    /// Waits until the Allocated condition has `reason`; returns its message.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> String {
        let svc = self
            .wait_for(name, &format!("reason {reason}"), |s| {
                allocated(s).is_some_and(|(_, r, _)| r == reason)
            })
            .await;
        allocated(&svc).map(|(_, _, m)| m).unwrap_or_default()
    }

    /// Reasons of the events recorded on a Service.
    pub fn events(&self, name: &str) -> Vec<(String, String)> {
        let out = self.lab.kubectl(&[
            "get",
            "events",
            "-n",
            &self.ns,
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.reportingComponent}{\"\\t\"}{.reason}{\"\\t\"}{.message}{\"\\n\"}{end}",
        ]);
        // Only barelb's own: the apiserver reports on Services too (e.g.
        // ClusterIPNotAllocated while its repair loop catches up).
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '\t');
                let (by, reason, message) = (parts.next()?, parts.next()?, parts.next()?);
                (by == "barelb-operator").then(|| (reason.to_string(), message.to_string()))
            })
            .collect()
    }

    /// Events on a Service once at least `n` exist (events are written
    /// asynchronously, after the status), polled for up to 30 s.
    pub async fn wait_events(&self, name: &str, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let evs = self.events(name);
            if evs.len() >= n || Instant::now() > deadline {
                return evs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `.status` of one of this test's pools.
    pub fn pool_status(&self, name: &str) -> Value {
        let out = self
            .lab
            .kubectl(&["get", "addresspool", name, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["status"].clone()
    }

    pub async fn wait_pool(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.pool_status(name);
            if pred(&st) {
                return st;
            }
            if Instant::now() > deadline {
                panic!("pool {name}: timed out waiting for {what}; status: {st}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The Service's ingress addresses, read as the operator reads them.
pub fn ips(svc: &Service) -> Vec<IpAddr> {
    barelb_core::request::ingress_ips(svc)
}

/// `(status, reason, message)` of the `barelb.io/Allocated` condition.
pub fn allocated(svc: &Service) -> Option<(String, String, String)> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "barelb.io/Allocated")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// A loopback address with a port nobody listens on right now.
pub fn free_local_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `GET path` over plain HTTP/1.0 on loopback; the body, or "" until it answers.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
