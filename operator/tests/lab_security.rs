//! What an attacker on the network gets from the operator's TLS listeners:
//! TLS 1.2 and 1.3 only, strong suites only, the CA's key only in its
//! Secret, and serving certificates that renew before they expire without
//! a restart or a dropped speaker. Probed with Debian's openssl against the
//! real operator in the lab.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use common::control::{cluster_with, wait_until};
use common::tls::{Target, assert_modern_only, served_leaf, x509};
use common::{Instance, free_local_addr, http_get};

/// The value of the first sample of `metric` with `labels` in `text`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_channel_speaks_modern_tls_and_renews_its_certificate_under_a_live_speaker() {
    let mut c = cluster_with(
        "security-control-tls",
        &["node-a"],
        &["--serving-cert-lifetime", "15s"],
    )
    .await;
    let na = c.node_name("node-a");
    let token = c.register_node("node-a");
    let (_speaker, speaker_log) = c.speaker("node-a", &na, &token);
    wait_until("the speaker connects", Duration::from_secs(20), || {
        c.op.log_text().contains("speaker connected")
    });
    let target = Target::Unix(c.dir.join("control.sock"));
    let ca = c.ca.display().to_string();

    // The first certificate, verified against the published CA.
    let first = served_leaf(&target);
    let (_, first_serial) = x509(&first, &["-serial"]);
    let (ok, text) = common::tls::handshake(&target, &["-CAfile", &ca, "-verify_return_error"]);
    assert!(ok, "the served chain verifies against the CA: {text}");

    let suites = assert_modern_only(&target, "control channel");
    eprintln!("control channel TLS 1.2 suites: {suites:?}");

    // Failed handshakes are counted, and logged once (not per attempt).
    let metrics = http_get(&c.metrics, "/metrics");
    let failed = sample(
        &metrics,
        "barelb_tls_handshake_failures_total",
        "listener=\"control\"",
    )
    .unwrap_or(0.0);
    assert!(failed >= 2.0, "{metrics}");
    let logged = c.op.log_text().matches("TLS handshake failed").count();
    assert_eq!(logged, 1, "{}", c.op.log_text());
    let expiry = sample(
        &metrics,
        "barelb_serving_certificate_expiry_timestamp_seconds",
        "listener=\"control\"",
    )
    .unwrap();
    assert!(
        expiry > now_unix() && expiry < now_unix() + 16.0,
        "{expiry}"
    );

    // Renewed at two thirds of 15 s, by the same process.
    let pid = c.op.pid();
    let started = Instant::now();
    let mut second = String::new();
    wait_until("a renewed certificate", Duration::from_secs(20), || {
        second = served_leaf(&target);
        x509(&second, &["-serial"]).1 != first_serial
    });
    eprintln!("renewed after {:?}", started.elapsed());
    assert!(c.op.is_running());
    assert_eq!(c.op.pid(), pid);
    assert!(c.op.log_text().contains("serving certificate renewed"));

    // Once the first has expired, new handshakes still verify...
    wait_until(
        "the first certificate expires",
        Duration::from_secs(20),
        || !x509(&first, &["-checkend", "0"]).0,
    );
    let (ok, text) = common::tls::handshake(&target, &["-CAfile", &ca, "-verify_return_error"]);
    assert!(ok, "after the first certificate expired: {text}");
    // ...and the speaker, connected under the first, never left.
    let oplog = c.op.log_text();
    assert_eq!(
        oplog.matches("speaker connected node=").count(),
        1,
        "{oplog}"
    );
    assert!(!oplog.contains("speaker disconnected"), "{oplog}");
    let slog = std::fs::read_to_string(&speaker_log).unwrap();
    assert_eq!(slog.matches("control stream up").count(), 1, "{slog}");
    assert!(!slog.contains("control stream down"), "{slog}");

    // The CA's key stays in its Secret: the ConfigMap speakers read holds
    // the certificate only, and no key is in any ConfigMap or the log.
    let cms = c
        .inst
        .lab
        .kubectl(&["get", "configmaps", "-n", &c.op_ns, "-o", "json"]);
    assert!(cms.status.success(), "{}", output_text(&cms));
    let cms: serde_json::Value = serde_json::from_slice(&cms.stdout).unwrap();
    let ca_cm = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "barelb-control-ca")
        .expect("the CA ConfigMap");
    let keys: Vec<_> = ca_cm["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt"]);
    assert!(!cms.to_string().contains("PRIVATE KEY"));
    assert!(!c.op.log_text().contains("PRIVATE KEY"));
    let secret = c.inst.lab.kubectl(&[
        "get",
        "secret",
        "barelb-control-ca",
        "-n",
        &c.op_ns,
        "-o",
        "jsonpath={.data.ca\\.key}",
    ]);
    assert!(
        secret.status.success() && !secret.stdout.is_empty(),
        "{}",
        output_text(&secret)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_speaks_modern_tls_and_renews_its_certificate() {
    let mut inst = Instance::new("security-webhook-tls").await;
    let metrics = free_local_addr();
    let (op, config) = inst.webhook_operator(&metrics, &["--serving-cert-lifetime", "12s"]);
    let mut url = String::new();
    wait_until("the webhook is registered", Duration::from_secs(30), || {
        let out = inst.lab.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            &config,
            "-o",
            "jsonpath={.webhooks[0].clientConfig.url}",
        ]);
        url = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success() && !url.is_empty()
    });
    let addr = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let target = Target::Tcp(addr);
    wait_until("the webhook serves", Duration::from_secs(30), || {
        common::tls::handshake(&target, &[]).0
    });
    let suites = assert_modern_only(&target, "webhook");
    eprintln!("webhook TLS 1.2 suites: {suites:?}");
    let text = http_get(&metrics, "/metrics");
    assert!(
        sample(
            &text,
            "barelb_tls_handshake_failures_total",
            "listener=\"webhook\""
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    // Logged once per peer address, however many probes failed.
    assert_eq!(op.log_text().matches("TLS handshake failed").count(), 1);

    let first = served_leaf(&target);
    let (_, serial) = x509(&first, &["-serial"]);
    wait_until("a renewed certificate", Duration::from_secs(20), || {
        x509(&served_leaf(&target), &["-serial"]).1 != serial
    });
    // The caBundle did not change (same CA), so the apiserver keeps
    // trusting the renewed certificate: a review still goes through.
    let ns = inst.ns.clone();
    let pool = inst.pool(
        "p",
        r#"{addresses: ["198.18.210.0/30"], announce: {mode: L2}}"#,
    );
    assert!(!pool.is_empty());
    inst.service(
        "after-renewal",
        serde_json::json!({}),
        serde_json::json!({}),
    )
    .await;
    let reviewed = http_get(&metrics, "/metrics");
    assert!(
        reviewed.contains("barelb_admission_requests_total{kind=\"services\",result=\"allowed\"}"),
        "namespace {ns}: {reviewed}"
    );
}
