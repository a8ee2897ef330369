//! Tenancy, one table: every way a tenant can name an address or a pool —
//! annotations, `spec.loadBalancerIP`, `spec.loadBalancerClass`, another
//! namespace's sharing key, an update after admission, and all of these
//! while the webhook is down — either refused or never given an address of
//! a pool the tenant's policy forbids. Against the lab's apiserver, with
//! the team-match example policy: namespace team=db may use only pools
//! labelled team=db.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use common::webhook::{namespace, refused, service_yaml, team_policy};
use common::{Instance, free_local_addr, ips};
use ipnet::IpNet;

/// What must come of a row with the webhook up. With it down, every
/// `Denied` row is admitted and the allocator must refuse it
/// (PolicyDenied), the Service keeping what it had from its own pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `kubectl apply` is refused by the webhook, naming the policy.
    Denied,
    /// Admitted, and addressed from the tenant's own pool only.
    OwnPoolOnly,
    /// Admitted, never addressed (not barelb's Service).
    NoAddress,
}

struct Row {
    route: &'static str,
    name: &'static str,
    annotations: String,
    spec: String,
    /// The claim is an update: the Service is applied first without one.
    update: bool,
    outcome: Outcome,
}

fn row(
    route: &'static str,
    name: &'static str,
    annotations: &str,
    spec: &str,
    outcome: Outcome,
) -> Row {
    Row {
        route,
        name,
        annotations: annotations.into(),
        spec: spec.into(),
        update: false,
        outcome,
    }
}

/// The rows whose route is a change of a Service admitted without a claim.
fn update(
    route: &'static str,
    name: &'static str,
    annotations: &str,
    spec: &str,
    outcome: Outcome,
) -> Row {
    Row {
        update: true,
        ..row(route, name, annotations, spec, outcome)
    }
}

/// The Service's class line, for rows that replace it.
fn with_class(t: &Instance, yaml: String, class: Option<&str>) -> String {
    let line = format!("  loadBalancerClass: {}\n", t.class);
    match class {
        Some(c) => yaml.replace(&line, &format!("  loadBalancerClass: {c}\n")),
        None => yaml.replace(&line, ""),
    }
}

async fn addresses(t: &Instance, ns: &str, name: &str) -> Vec<IpAddr> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(t.client.clone(), ns);
    api.get(name).await.map(|s| ips(&s)).unwrap_or_default()
}

async fn allocated_reason(t: &Instance, ns: &str, name: &str) -> Option<(String, String)> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(t.client.clone(), ns);
    let svc = api.get(name).await.ok()?;
    svc.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "barelb.io/Allocated")
        .map(|c| (c.reason, c.message))
}

/// Polls `f` for up to `secs`.
async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_gets_no_address_of_a_forbidden_pool_by_any_route() {
    let mut t = Instance::new("operator::a_tenant_gets_no_address_of_a_forbidden_pool").await;
    let lease = barelb_testsupport::lab::FAST_LEASE;
    let (mut op, _) = t.webhook_operator(&free_local_addr(), &lease);
    let web = namespace(&mut t, "web", &["team=web"]);
    let db = namespace(&mut t, "db", &["team=db"]);
    let theirs: IpNet = "198.51.100.64/29".parse().unwrap();
    let own: IpNet = "198.51.100.72/29".parse().unwrap();
    let pool_web = t.pool(
        "web",
        &format!("{{addresses: [\"{theirs}\"], announce: {{mode: L2}}}}"),
    );
    let pool_db = t.pool(
        "db",
        &format!("{{addresses: [\"{own}\"], announce: {{mode: L2}}}}"),
    );
    for (pool, team) in [(&pool_web, "web"), (&pool_db, "db")] {
        let out = t
            .lab
            .kubectl(&["label", "addresspool", pool, &format!("team={team}")]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let out = t.lab.apply(&team_policy(&t));
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("loadbalancerpolicy", &format!("{}-team-match", t.id));
    t.wait_webhook();

    // The other team's Service, sharing key "shared", on their first address.
    let first_theirs = "198.51.100.64";
    let shared = service_yaml(
        &t,
        &web,
        "site",
        &format!("barelb.io/ips: {first_theirs}, barelb.io/sharing-key: shared"),
        "",
    );
    let out = t.lab.apply(&shared);
    assert!(out.status.success(), "{}", output_text(&out));
    eventually("web's Service is addressed", 30, || async {
        addresses(&t, &web, "site").await == [first_theirs.parse::<IpAddr>().unwrap()]
    })
    .await;

    let pool_ann = format!("barelb.io/pool: {pool_web}");
    let ips_ann = "barelb.io/ips: 198.51.100.65".to_string();
    let lb_ip = "  loadBalancerIP: 198.51.100.66\n";
    use Outcome::*;
    let rows = vec![
        row(
            "annotation barelb.io/pool",
            "by-pool",
            &pool_ann,
            "",
            Denied,
        ),
        row("annotation barelb.io/ips", "by-ips", &ips_ann, "", Denied),
        row("spec.loadBalancerIP", "by-lbip", "", lb_ip, Denied),
        row(
            "another namespace's sharing key and its address",
            "by-sharing",
            &format!("barelb.io/sharing-key: shared, barelb.io/ips: {first_theirs}"),
            "",
            Denied,
        ),
        row(
            "another namespace's sharing key alone",
            "by-key",
            "barelb.io/sharing-key: shared",
            "",
            OwnPoolOnly,
        ),
        row("no claim (automatic)", "auto", "", "", OwnPoolOnly),
        row(
            "spec.loadBalancerClass of another implementation, with the pool",
            "other-class",
            &pool_ann,
            "",
            NoAddress,
        ),
        row(
            "no spec.loadBalancerClass (class-less, not served here), with the pool",
            "no-class",
            &pool_ann,
            "",
            NoAddress,
        ),
        update(
            "update adds barelb.io/pool after admission",
            "upd-pool",
            &pool_ann,
            "",
            Denied,
        ),
        update(
            "update sets spec.loadBalancerIP after admission",
            "upd-lbip",
            "",
            lb_ip,
            Denied,
        ),
    ];
    let mut table = vec![
        "| route (namespace team=db, pool of team=web) | webhook up | webhook down |".to_string(),
        "|---|---|---|".to_string(),
    ];
    let mut results = Vec::new();
    for r in &rows {
        let class = match r.name {
            "other-class" => Some(Some("example.com/other")),
            "no-class" => Some(None),
            _ => None,
        };
        let yaml = |ann: &str, spec: &str| {
            let y = service_yaml(&t, &db, r.name, ann, spec);
            match class {
                Some(c) => with_class(&t, y, c),
                None => y,
            }
        };
        if r.update {
            let out = t.lab.apply(&yaml("", ""));
            assert!(out.status.success(), "{}", output_text(&out));
            eventually(&format!("{} is addressed first", r.name), 30, || async {
                addresses(&t, &db, r.name)
                    .await
                    .iter()
                    .any(|a| own.contains(a))
            })
            .await;
        }
        let full = yaml(&r.annotations, &r.spec);
        let outcome = match r.outcome {
            Denied => {
                let msg = refused(&t, &full, "services.barelb.io");
                assert!(
                    msg.contains("team-match") && msg.contains(&pool_web),
                    "{}: {msg}",
                    r.route
                );
                "refused by the webhook"
            }
            _ => {
                let out = t.lab.apply(&full);
                assert!(out.status.success(), "{}: {}", r.route, output_text(&out));
                match r.outcome {
                    OwnPoolOnly => "admitted; addressed from team=db's pool",
                    _ => "admitted; never addressed (another implementation's)",
                }
            }
        };
        results.push(outcome);
    }
    // Settle, then check what each admitted row got.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in &rows {
        let got = addresses(&t, &db, r.name).await;
        assert!(
            !got.iter().any(|a| theirs.contains(a)),
            "{}: {got:?}",
            r.route
        );
        match r.outcome {
            OwnPoolOnly => assert!(
                got.len() == 1 && own.contains(&got[0]),
                "{}: {got:?}",
                r.route
            ),
            NoAddress => assert!(got.is_empty(), "{}: {got:?}", r.route),
            _ => {}
        }
    }

    // The same claims with the webhook down (failurePolicy Ignore): the
    // apiserver admits each, and the allocator refuses each.
    op.kill();
    let _allocator = t.operator(&lease);
    let mut down = Vec::new();
    for r in &rows {
        // What the webhook refused, the allocator must refuse.
        if r.outcome != Denied {
            down.push("the same (nothing for the webhook to refuse)");
            continue;
        }
        let name = format!("{}-down", r.name);
        let svc = |ann: &str, spec: &str| service_yaml(&t, &db, &name, ann, spec);
        if r.update {
            let out = t.lab.apply(&svc("", ""));
            assert!(out.status.success(), "{}", output_text(&out));
            eventually(&format!("{name} is addressed first"), 30, || async {
                addresses(&t, &db, &name)
                    .await
                    .iter()
                    .any(|a| own.contains(a))
            })
            .await;
        }
        let had = addresses(&t, &db, &name).await;
        let out = t.lab.apply(&svc(&r.annotations, &r.spec));
        assert!(
            out.status.success(),
            "{}: admitted without the webhook: {}",
            r.route,
            output_text(&out)
        );
        eventually(&format!("{}: PolicyDenied", r.route), 30, || async {
            allocated_reason(&t, &db, &name)
                .await
                .is_some_and(|(reason, msg)| reason == "PolicyDenied" && msg.contains("team-match"))
        })
        .await;
        let now = addresses(&t, &db, &name).await;
        assert!(
            !now.iter().any(|a| theirs.contains(a)),
            "{}: {now:?}",
            r.route
        );
        assert_eq!(now, had, "{}: keeps what it had", r.route);
        down.push(if had.is_empty() {
            "admitted; refused by the allocator (PolicyDenied), no address"
        } else {
            "admitted; refused by the allocator (PolicyDenied), keeps its team=db address"
        });
    }
    for ((r, up), down) in rows.iter().zip(results).zip(down) {
        table.push(format!("| {} | {up} | {down} |", r.route));
    }
    eprintln!("{}", table.join("\n"));
    // The other team's Service never lost its address.
    assert_eq!(
        addresses(&t, &web, "site").await,
        [first_theirs.parse::<IpAddr>().unwrap()]
    );
}
