//! The admission webhook against the lab's real apiserver, through a real
//! kubectl: denials at `kubectl apply` with the one-line message, no bypass
//! by any claim route, server-side dry run, pool and policy validation, and
//! the allocator still refusing what the webhook never saw.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use common::webhook::{namespace, refused, service_yaml, team_policy};
use common::{Instance, TEST_LABEL, free_local_addr, http_get, ip, ips};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_is_refused_for_forbidden_claims_by_every_route() {
    let mut t =
        Instance::new("operator::kubectl_apply_is_refused_for_forbidden_claims_by_every_route")
            .await;
    let metrics = free_local_addr();
    let (op, _) = t.webhook_operator(&metrics, &[]);
    let web = namespace(&mut t, "web", &["team=web"]);
    let db = namespace(&mut t, "db", &["team=db"]);
    t.wait_webhook();
    let pool = t.pool(
        "web",
        r#"{addresses: ["198.51.100.32/29"], announce: {mode: L2}}"#,
    );
    let out = t.lab.kubectl(&["label", "addresspool", &pool, "team=web"]);
    assert!(out.status.success());
    let policy = team_policy(&t);
    let out = t.lab.apply(&policy);
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("loadbalancerpolicy", &format!("{}-team-match", t.id));
    t.wait_webhook();

    // Named pool from the wrong team: one line naming namespace, pool, policy, rule and fix.
    let deadline = Instant::now() + Duration::from_secs(15);
    let msg = loop {
        // The webhook sees the policy once its watch delivers it.
        let yaml = service_yaml(&t, &db, "api", &format!("barelb.io/pool: {pool}"), "");
        let out = t.lab.apply(&yaml);
        if !out.status.success() {
            break refused(&t, &yaml, "services.barelb.io");
        }
        t.lab
            .kubectl(&["delete", "service", "-n", &db, "api", "--wait=false"]);
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        msg,
        format!(
            "Service {db}/api: namespace {db} may not use AddressPool {pool}: LoadBalancerPolicy {id}-team-match rule namespace-team-matches-pool-team: pool {pool} belongs to team web; label the namespace team=web or use your team's pool",
            id = t.id
        )
    );
    // Every other route to the same pool is refused too.
    let by_ips = service_yaml(&t, &db, "by-ips", "barelb.io/ips: 198.51.100.33", "");
    assert!(refused(&t, &by_ips, "services.barelb.io").contains("LoadBalancerPolicy"));
    let by_lb_ip = service_yaml(&t, &db, "by-lbip", "", "  loadBalancerIP: 198.51.100.34\n");
    assert!(refused(&t, &by_lb_ip, "services.barelb.io").contains("LoadBalancerPolicy"));
    // The only pool is forbidden: an automatic claim is refused as well.
    let auto = service_yaml(&t, &db, "auto", "", "");
    assert!(refused(&t, &auto, "services.barelb.io").contains("LoadBalancerPolicy"));

    // Server-side dry run goes through the webhook and creates nothing.
    let ok = service_yaml(&t, &web, "site", &format!("barelb.io/pool: {pool}"), "");
    let out = t.lab.apply_args(&ok, &["--dry-run=server"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("server dry run"));
    let bad_dry = t.lab.apply_args(&by_ips, &["--dry-run=server"]);
    assert!(!bad_dry.status.success() && output_text(&bad_dry).contains("denied the request"));
    let gone = t.lab.kubectl(&["get", "service", "-n", &web, "site"]);
    assert!(!gone.status.success(), "a dry run created the Service");

    // The same Service in the team's namespace is admitted and addressed.
    let out = t.lab.apply(&ok);
    assert!(out.status.success(), "{}", output_text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = t.lab.kubectl(&[
            "get",
            "service",
            "-n",
            &web,
            "site",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        if String::from_utf8_lossy(&out.stdout) == "198.51.100.32" {
            break;
        }
        assert!(Instant::now() < deadline, "site never got its address");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing refused was created.
    for name in ["api", "by-ips", "by-lbip", "auto"] {
        let out = t.lab.kubectl(&["get", "service", "-n", &db, name]);
        assert!(!out.status.success(), "{name} exists");
    }

    let body = http_get(&metrics, "/metrics");
    assert!(
        body.lines().any(|l| l
            .starts_with("barelb_admission_requests_total{kind=\"services\",result=\"denied\"}")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "barelb_policy_denials_total{{policy=\"{}-team-match\"}}",
            t.id
        )),
        "{body}"
    );
    assert!(
        body.lines().any(
            |l| l.starts_with("barelb_admission_duration_seconds_bucket")
                && l.contains("kind=\"services\"")
        ),
        "{body}"
    );
    drop(op);
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_policies_and_peers_are_validated_and_the_operator_stays_healthy() {
    let mut t = Instance::new(
        "operator::pools_policies_and_peers_are_validated_and_the_operator_stays_healthy",
    )
    .await;
    let metrics = free_local_addr();
    let (mut op, _) = t.webhook_operator(&metrics, &[]);
    t.wait_webhook();
    let first = t.pool(
        "first",
        r#"{addresses: ["198.51.100.48/29"], announce: {mode: L2}}"#,
    );
    t.service("held", json!({}), json!({})).await;
    assert_eq!(t.wait_ips("held", 1).await, [ip("198.51.100.48")]);

    let id = t.id.clone();
    let pool_yaml = |name: &str, addresses: &str, annotations: &str| {
        format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata:\n  name: {name}\n  labels: {{{TEST_LABEL}: {id}}}\n  annotations: {{{annotations}}}\nspec: {{addresses: [{addresses}], announce: {{mode: L2}}}}\n"
        )
    };
    // Overlap, named.
    let second = format!("{}-second", t.id);
    t.guard("addresspool", &second);
    let msg = refused(
        &t,
        &pool_yaml(&second, "198.51.100.52/30", ""),
        "addresspools.barelb.io",
    );
    assert_eq!(
        msg,
        format!(
            "AddressPool {second}: 198.51.100.52/30 overlaps 198.51.100.48/29 of AddressPool {first}; pools must not share addresses, change one of them"
        )
    );
    // An IPv6 range written backwards (the apiserver's CEL cannot order IPv6).
    let msg = refused(
        &t,
        &pool_yaml(&second, "\"2001:db8:5::9-2001:db8:5::1\"", ""),
        "addresspools.barelb.io",
    );
    assert!(msg.contains("invalid address entry"), "{msg}");
    // Shrinking away the held address: refused with the Service named...
    let shrink = pool_yaml(&first, "198.51.100.52/30", "");
    let msg = refused(&t, &shrink, "addresspools.barelb.io");
    assert!(
        msg.contains(&format!("{}/held (198.51.100.48)", t.ns))
            && msg.contains("barelb.io/allow-orphan"),
        "{msg}"
    );
    // ...and deleting the pool too.
    let out = t
        .lab
        .kubectl(&["delete", "addresspool", &first, "--wait=false"]);
    assert!(
        !out.status.success() && output_text(&out).contains("deleting it leaves 1"),
        "{}",
        output_text(&out)
    );
    let policy_yaml = |name: &str, expression: &str| {
        format!(
            "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata:\n  name: {name}\n  labels: {{{TEST_LABEL}: {id}}}\nspec:\n  poolSelector: {{matchLabels: {{{TEST_LABEL}: {id}}}}}\n  rules:\n  - name: the-rule\n    expression: {}\n",
            serde_json::to_string(expression).unwrap()
        )
    };
    let pol = format!("{}-pol", t.id);
    t.guard("loadbalancerpolicy", &pol);
    let msg = refused(
        &t,
        &policy_yaml(&pol, "namespace.name =="),
        "loadbalancerpolicies.barelb.io",
    );
    assert!(
        msg.starts_with(&format!("LoadBalancerPolicy {pol} rule the-rule: ")) && msg.contains("1:"),
        "{msg}"
    );
    let l = "[0,1,2,3,4,5,6,7,8,9]";
    let huge = format!("{l}.all(a, {l}.all(b, {l}.all(c, {l}.all(d, a + b + c + d >= 0))))");
    let msg = refused(
        &t,
        &policy_yaml(&pol, &huge),
        "loadbalancerpolicies.barelb.io",
    );
    assert!(msg.contains("comprehensions nested 3 deep"), "{msg}");
    let deep = format!("{}true{}", "(".repeat(300), ")".repeat(300));
    let msg = refused(
        &t,
        &policy_yaml(&pol, &deep),
        "loadbalancerpolicies.barelb.io",
    );
    assert!(msg.contains("brackets nested"), "{msg}");
    // A policy that would refuse the Service already holding an address: admitted, with a warning.
    let out = t
        .lab
        .apply(&policy_yaml(&pol, "namespace.name == 'nobody'"));
    assert!(out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("would deny 1 Service(s)") && stderr.contains(&format!("{}/held", t.ns)),
        "{stderr}"
    );

    // With allow-orphan the edit goes through, with a warning.
    let out = t.lab.apply(&pool_yaml(
        &first,
        "198.51.100.52/30",
        "barelb.io/allow-orphan: \"true\"",
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Warning: AddressPool"),
        "{}",
        output_text(&out)
    );

    // Every example policy passes the schema and the webhook.
    let dir = barelb_testsupport::repo_root().join("policies/examples");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Labelled so this test's webhook (objectSelector) reviews it too.
        let (head, rest) = text.split_once("metadata:\n").unwrap();
        let text = format!(
            "{head}metadata:\n  labels: {{{TEST_LABEL}: {}}}\n{rest}",
            t.id
        );
        let out = t.lab.apply_args(&text, &["--dry-run=server"]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            output_text(&out)
        );
    }

    let peer = format!("{}-peer", t.id);
    t.guard("bgppeer", &peer);
    let msg = refused(
        &t,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {peer}\n  labels: {{{TEST_LABEL}: {}}}\nspec: {{peerAddress: 127.0.0.1, peerASN: 64500, myASN: 64501}}\n",
            t.id
        ),
        "bgppeers.barelb.io",
    );
    assert!(
        msg.starts_with(&format!(
            "BGPPeer {peer}: peerAddress 127.0.0.1 cannot be a router"
        )),
        "{msg}"
    );

    // Still healthy, still serving.
    assert!(http_get(&metrics, "/healthz").contains("ok"));
    t.wait_webhook();
    assert!(op.is_running(), "operator exited; log:\n{}", op.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_admitted_while_the_webhook_is_down_is_still_refused_by_the_allocator() {
    let mut t = Instance::new(
        "operator::a_claim_admitted_while_the_webhook_is_down_is_still_refused_by_the_allocator",
    )
    .await;
    let pool = t.pool(
        "closed",
        r#"{addresses: ["198.51.100.56/30"], announce: {mode: L2}}"#,
    );
    let policy = format!("{}-closed", t.id);
    let out = t.lab.apply(&format!(
        "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata:\n  name: {policy}\n  labels: {{{TEST_LABEL}: {id}}}\nspec:\n  poolSelector: {{matchLabels: {{{TEST_LABEL}: {id}}}}}\n  rules:\n  - name: nobody\n    expression: \"namespace.name == 'nobody'\"\n    message: this pool is closed\n",
        id = t.id
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("loadbalancerpolicy", &policy);
    let lease = barelb_testsupport::lab::FAST_LEASE;
    let (mut first, _) = t.webhook_operator(&free_local_addr(), &lease);
    t.wait_webhook();
    let yaml = service_yaml(&t, &t.ns, "sneaky", &format!("barelb.io/pool: {pool}"), "");
    assert!(refused(&t, &yaml, "services.barelb.io").contains("this pool is closed"));

    // The webhook goes away (failurePolicy Ignore): the apiserver admits the claim...
    first.kill();
    let out = t.lab.apply(&yaml);
    assert!(out.status.success(), "{}", output_text(&out));
    // ...and the allocator refuses it.
    let _second = t.operator(&lease);
    let msg = t.wait_reason("sneaky", "PolicyDenied").await;
    assert!(msg.contains("this pool is closed"), "{msg}");
    assert!(ips(&t.get("sneaky").await).is_empty());
}

/// A Service of `type_` (and of this test's class when a LoadBalancer),
/// in `ns`, as YAML.
fn plain_service(t: &Instance, ns: &str, name: &str, type_: &str) -> String {
    let class = if type_ == "LoadBalancer" {
        format!("\n  loadBalancerClass: {}", t.class)
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  type: {type_}{class}\n  ports: [{{port: 80}}]\n"
    )
}

/// Registered with its defaults (every namespace, failurePolicy Fail) and
/// nothing answering at its URL, the webhook blocks only LoadBalancer
/// Services of its class outside the cluster's own namespaces; the
/// configuration belongs to the install's ClusterRole and goes with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_webhook_blocks_nothing_but_its_own_load_balancers() {
    let mut t =
        Instance::new("operator::a_dead_webhook_blocks_nothing_but_its_own_load_balancers").await;
    let name = format!("barelb-{}", t.id);
    let owner = format!("{}-owner", t.id);
    let out = t.lab.kubectl(&[
        "create",
        "clusterrole",
        &owner,
        "--verb=get",
        "--resource=nodes",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("clusterrole", &owner);
    t.guard("validatingwebhookconfiguration", &name);
    let (serve, dead) = (free_local_addr(), free_local_addr());
    let dead_url = format!("https://{dead}");
    // Services: the defaults under test. Our own kinds: this test's only,
    // so the dead endpoint refuses no other test's policies or peers.
    let objects = format!("{TEST_LABEL}={}", t.id);
    let _op = t.operator_at(
        &free_local_addr(),
        &[
            "--webhook-object-selector",
            &objects,
            "--webhook=true",
            "--webhook-addr",
            &serve,
            "--webhook-config-name",
            &name,
            "--webhook-url",
            &dead_url,
            "--webhook-failure-policy",
            "Fail",
            "--webhook-owner-cluster-role",
            &owner,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let owners = loop {
        let out = t.lab.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            &name,
            "-o",
            "jsonpath={.metadata.ownerReferences[*].name}",
        ]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "never registered: {}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(owners, owner);

    let op_ns = format!("{}-op", t.id);
    let created = |ns: &str, svc: &str, type_: &str| {
        let out = t.lab.apply(&plain_service(&t, ns, svc, type_));
        assert!(
            out.status.success(),
            "{type_} Service {ns}/{svc} was blocked: {}",
            output_text(&out)
        );
    };
    let suffix = &t.id;
    created(&t.ns, "plain", "ClusterIP");
    created(&t.ns, "nodeport", "NodePort");
    created("kube-system", &format!("{suffix}-plain"), "ClusterIP");
    // The cluster's own namespaces and the operator's are never sent to us.
    created("kube-system", &format!("{suffix}-lb"), "LoadBalancer");
    created(&op_ns, "lb", "LoadBalancer");
    for svc in [format!("{suffix}-plain"), format!("{suffix}-lb")] {
        t.lab.kubectl(&[
            "delete",
            "service",
            "-n",
            "kube-system",
            &svc,
            "--wait=false",
        ]);
    }
    // A LoadBalancer of its class elsewhere follows the failure policy.
    let out = t.lab.apply(&plain_service(&t, &t.ns, "lb", "LoadBalancer"));
    assert!(!out.status.success(), "a dead webhook let it through");
    assert!(
        output_text(&out).contains("failed calling webhook \"services.barelb.io\""),
        "{}",
        output_text(&out)
    );

    // Uninstalling (the ClusterRole goes) removes the configuration.
    let out = t.lab.kubectl(&["delete", "clusterrole", &owner]);
    assert!(out.status.success(), "{}", output_text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = t.lab.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            &name,
            "--ignore-not-found",
            "-o",
            "name",
        ]);
        if out.status.success() && out.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the configuration outlived its owner"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A keep-alive connection left idle after one answer, as the apiserver
/// pools them: `openssl s_client`, which ends when the server closes it.
struct IdleConnection {
    child: std::process::Child,
    // Held open: s_client would otherwise end on its own input's end.
    _stdin: std::process::ChildStdin,
    closed: std::sync::mpsc::Receiver<()>,
}

impl IdleConnection {
    fn open(url: &str) -> Self {
        use std::io::{Read, Write};
        let host_port = url.trim_start_matches("https://");
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client", "-connect", host_port, "-quiet", "-alpn", "http/1.1",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"GET /validate/services HTTP/1.1\r\nHost: webhook\r\n\r\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (answered_tx, answered) = std::sync::mpsc::channel();
        let (closed_tx, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.starts_with(b"HTTP/1.1 ") {
                    let _ = answered_tx.send(());
                }
            }
            let _ = closed_tx.send(());
        });
        answered
            .recv_timeout(Duration::from_secs(5))
            .expect("an answer on the kept-alive connection");
        assert!(
            closed.try_recv().is_err(),
            "the webhook closed a kept-alive connection after one answer"
        );
        Self {
            child,
            _stdin: stdin,
            closed,
        }
    }

    fn closed_within(&self, wait: Duration) -> bool {
        self.closed.recv_timeout(wait).is_ok()
    }
}

impl Drop for IdleConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -i` of the webhook's URL over HTTP/1.1 (as the apiserver calls
/// webhooks): status line and headers, or None when nothing answered.
fn webhook_headers(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--http1.1",
            "-i",
            "-m",
            "2",
            &format!("{url}/validate/services"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_lowercase())
}

#[tokio::test]
async fn after_sigterm_the_webhook_goes_on_answering_for_the_drain_each_answer_closing_its_connection()
 {
    let mut t = Instance::new(
        "operator::after_sigterm_the_webhook_goes_on_answering_for_the_drain_each_answer_closing_its_connection",
    )
    .await;
    let (op, name) = t.webhook_operator(&free_local_addr(), &["--webhook-drain", "2s"]);
    t.wait_webhook();
    let out = t.lab.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        &name,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.url}",
    ]);
    let url = String::from_utf8_lossy(&out.stdout).to_string();
    let url = url.split("/validate").next().unwrap().to_string();
    let before = webhook_headers(&url).expect("the webhook answers");
    assert!(!before.contains("connection: close"), "{before}");
    let idle = IdleConnection::open(&url);

    let sigterm = Instant::now();
    let out = std::process::Command::new("kill")
        .args(["-TERM", &op.pid().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = webhook_headers(&url).expect("the webhook still answers while draining");
    assert!(draining.contains("connection: close"), "{draining}");
    // The idle pooled connection is closed by the drain, not left for the
    // process's exit (when it may be under a request): closed while the
    // webhook still answers.
    assert!(
        idle.closed_within(Duration::from_secs(1)),
        "an idle connection still open 1.3 s after SIGTERM"
    );
    assert!(
        webhook_headers(&url).is_some(),
        "the idle connection was closed only when the webhook stopped"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while webhook_headers(&url).is_some() {
        assert!(
            Instant::now() < deadline,
            "the webhook still answers 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = sigterm.elapsed();
    assert!(
        stopped >= Duration::from_secs(2),
        "stopped answering {stopped:?} after SIGTERM, before the 2 s drain"
    );
    drop(op);
}
