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

    // The pool first, so the webhook's view holds it Ready by the time the
    // Service is reviewed (a review before that is let through with a
    // "no Ready pool" warning: still a review, but not the one meant here).
    let ns = inst.ns.clone();
    let pool = inst.pool(
        "p",
        r#"{addresses: ["198.18.210.0/30"], announce: {mode: L2}}"#,
    );
    let first = served_leaf(&target);
    let (_, serial) = x509(&first, &["-serial"]);
    wait_until("a renewed certificate", Duration::from_secs(20), || {
        x509(&served_leaf(&target), &["-serial"]).1 != serial
    });
    inst.wait_pool(&pool, "Ready", |s| {
        s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
    .await;
    // The caBundle did not change (same CA), so the apiserver keeps
    // trusting the renewed certificate: a review still goes through
    // (the failure policy is Ignore, so only the webhook's own count
    // shows that it was asked).
    inst.service(
        "after-renewal",
        serde_json::json!({}),
        serde_json::json!({}),
    )
    .await;
    let reviewed = http_get(&metrics, "/metrics");
    let through: f64 = ["allowed", "warned"]
        .iter()
        .filter_map(|r| {
            sample(
                &reviewed,
                "barelb_admission_requests_total",
                &format!("kind=\"services\",result=\"{r}\""),
            )
        })
        .sum();
    assert!(through >= 1.0, "namespace {ns}: {reviewed}");
}

/// base64url without padding (JWT segments).
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A ServiceAccount token signed with the lab apiserver's own key, as
/// the apiserver would issue it for `pod`, expiring at `exp` (Unix time):
/// a real token, save its lifetime, which TokenRequest will not make
/// shorter than ten minutes.
fn minted_token(c: &common::control::Cluster, pod: &str, exp: u64) -> String {
    let uid = |kind: &str, name: &str| {
        let out = c.inst.lab.kubectl(&[
            "get",
            kind,
            name,
            "-n",
            &c.op_ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let now = now_unix() as u64;
    let claims = serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{}:barelb-speaker", c.op_ns),
        "aud": ["barelb-control"],
        "iat": now - 3600, "nbf": now - 3600, "exp": exp,
        "kubernetes.io": {
            "namespace": c.op_ns,
            "serviceaccount": {"name": "barelb-speaker", "uid": uid("serviceaccount", "barelb-speaker")},
            "pod": {"name": pod, "uid": uid("pod", pod)},
        },
    });
    let signed = format!(
        "{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let key = barelb_testsupport::lab::lab_dir().join("state/sa.key");
    let key = key.display().to_string();
    let sig = common::tls::openssl(&["dgst", "-sha256", "-sign", &key], signed.as_bytes());
    assert!(sig.status.success());
    format!("{signed}.{}", b64url(&sig.stdout))
}

/// One rogue: what it presents, from where, and what the operator must say.
struct Rogue {
    what: &'static str,
    /// The namespace it runs in and the node it claims to be.
    from: &'static str,
    claims: &'static str,
    token: std::path::PathBuf,
    ca: std::path::PathBuf,
    /// `barelb_control_refused_total` reason, or None: refused by TLS.
    reason: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread")]
async fn rogue_speakers_are_refused_logged_once_counted_and_change_nothing() {
    let mut c =
        common::control::cluster_in_namespace("security-rogues", &["node-a", "node-b"], &[]).await;
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    c.inst.pool(
        "l2",
        "{addresses: [198.18.0.200-198.18.0.220], announce: {mode: L2}}",
    );
    let token_a = c.register_node("node-a");
    let token_b = c.register_node("node-b");
    let (_legit, legit_log) = c.speaker("node-a", &na, &token_a);
    wait_until("node-a's speaker connects", Duration::from_secs(20), || {
        c.op.log_text().contains("speaker connected node=")
    });
    let vip = common::control::service_with_endpoint(&mut c, "web", &na).await;
    let client = c.topo.host("client");
    let mac_a = c.topo.host("node-a").mac.to_lowercase();
    wait_until(
        "node-a announces the Service",
        Duration::from_secs(20),
        || common::control::arp_answers(client, &vip) == [mac_a.clone()],
    );

    // The rogues' credentials.
    let file = |name: &str, body: &str| {
        let p = c.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let lab = c.inst.lab.clone();
    let kubectl_token = |args: &[&str]| {
        let mut all = vec!["create", "token"];
        all.extend(args);
        let out = lab.kubectl(&all);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let no_token = file("token-empty", "");
    let expired = file(
        "token-expired",
        &minted_token(&c, "speaker-node-b", now_unix() as u64 - 600),
    );
    // The same minting, unexpired, is accepted: the expired one is refused
    // for its expiry alone.
    let fresh = file(
        "token-minted",
        &minted_token(&c, "speaker-node-b", now_unix() as u64 + 3600),
    );
    let wrong_audience = file(
        "token-audience",
        &kubectl_token(&[
            "barelb-speaker",
            "-n",
            &c.op_ns,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "speaker-node-b",
            "--duration",
            "1h",
        ]),
    );
    let out = c
        .inst
        .lab
        .kubectl(&["create", "serviceaccount", "intruder", "-n", &c.op_ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = c.inst.lab.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: intruder\n  namespace: {ns}\nspec:\n  nodeName: {nb}\n  serviceAccountName: intruder\n  containers: [{{name: x, image: x}}]\n",
        ns = c.op_ns
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    let op_ns = c.op_ns.clone();
    c.inst.guard_pod(&op_ns, "intruder");
    let other_sa = file(
        "token-intruder",
        &kubectl_token(&[
            "intruder",
            "-n",
            &c.op_ns,
            "--audience",
            "barelb-control",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "intruder",
            "--duration",
            "1h",
        ]),
    );
    let other_ca = c.dir.join("other-ca.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=not-barelb", "-days", "1", "-keyout"])
        .arg(c.dir.join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));

    let ca = c.ca.clone();
    let rogues = [
        Rogue {
            what: "no token",
            from: "node-b",
            claims: "node-b",
            token: no_token,
            ca: ca.clone(),
            reason: Some("no-token"),
        },
        Rogue {
            what: "an expired token",
            from: "node-b",
            claims: "node-b",
            token: expired,
            ca: ca.clone(),
            reason: Some("invalid-token"),
        },
        Rogue {
            what: "a token for another audience",
            from: "node-b",
            claims: "node-b",
            token: wrong_audience,
            ca: ca.clone(),
            reason: Some("wrong-audience"),
        },
        Rogue {
            what: "another ServiceAccount's token",
            from: "node-b",
            claims: "node-b",
            token: other_sa,
            ca: ca.clone(),
            reason: Some("wrong-service-account"),
        },
        Rogue {
            what: "a token for a pod on another node",
            from: "node-b",
            claims: "node-b",
            token: token_a.clone(),
            ca: ca.clone(),
            reason: Some("wrong-node"),
        },
        Rogue {
            what: "a valid token replayed from another node's address",
            from: "node-b",
            claims: "node-a",
            token: token_a.clone(),
            ca: ca.clone(),
            reason: Some("wrong-source"),
        },
        Rogue {
            what: "a client without the CA",
            from: "node-b",
            claims: "node-b",
            token: token_b.clone(),
            ca: other_ca,
            reason: None,
        },
    ];
    let mut table = vec![
        "| rogue speaker | refused as | attempts counted | log lines |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for r in &rogues {
        let claims = c.node_name(r.claims);
        let (metric, labels) = match r.reason {
            Some(reason) => (
                "barelb_control_refused_total",
                format!("reason=\"{reason}\""),
            ),
            None => (
                "barelb_tls_handshake_failures_total",
                "listener=\"control\"".to_string(),
            ),
        };
        let count = || sample(&c.scrape(), metric, &labels).unwrap_or(0.0);
        let before = count();
        let (mut p, log) = c.speaker_with_ca(r.from, &claims, &r.token, &r.ca);
        let mut attempts = 0.0;
        wait_until(
            &format!("{}: refused three times", r.what),
            Duration::from_secs(30),
            || {
                attempts = count() - before;
                attempts >= 3.0
            },
        );
        p.kill();
        let oplog = c.op.log_text();
        let logged = match r.reason {
            Some(reason) => oplog
                .lines()
                .filter(|l| {
                    l.contains("speaker refused") && l.contains(&format!("reason=\"{reason}\""))
                })
                .count(),
            None => oplog
                .lines()
                .filter(|l| l.contains("TLS handshake failed"))
                .count(),
        };
        assert_eq!(logged, 1, "{}: logged once\n{oplog}", r.what);
        let slog = std::fs::read_to_string(&log).unwrap();
        assert!(!slog.contains("control stream up"), "{}: {slog}", r.what);
        if r.reason == Some("invalid-token") {
            assert!(oplog.contains("expired"), "{oplog}");
        }
        table.push(format!(
            "| {} | {} | {attempts} | {logged} |",
            r.what,
            r.reason.unwrap_or("TLS handshake failure")
        ));
    }
    eprintln!("{}", table.join("\n"));

    // Nothing a rogue sent was applied: node-a alone answers, its stream
    // never dropped, no other speaker was ever connected.
    assert_eq!(
        common::control::arp_answers(client, &vip),
        std::slice::from_ref(&mac_a)
    );
    let oplog = c.op.log_text();
    assert_eq!(
        oplog.matches("speaker connected node=").count(),
        1,
        "{oplog}"
    );
    assert!(!oplog.contains("speaker disconnected"), "{oplog}");
    assert_eq!(
        sample(&c.scrape(), "barelb_control_speakers_connected", "").or_else(|| {
            c.scrape()
                .lines()
                .find_map(|l| l.strip_prefix("barelb_control_speakers_connected "))
                .and_then(|v| v.trim().parse().ok())
        }),
        Some(1.0)
    );
    assert!(
        !std::fs::read_to_string(&legit_log)
            .unwrap()
            .contains("control stream down")
    );

    // The minted token, unexpired, is a real credential: node-b connects.
    let (_b, blog) = c.speaker("node-b", &nb, &fresh);
    wait_until(
        "a freshly minted token is accepted",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&blog)
                .unwrap_or_default()
                .contains("control stream up")
        },
    );
}
